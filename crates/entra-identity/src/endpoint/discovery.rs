//! Instance discovery: before using an authority host Entra ID does not publish as well-known,
//! ask Entra whether it knows it.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use serde_json::Value;

use crate::endpoint::authority::Authority;
use crate::endpoint::http::HttpClient;
use crate::error::{ClientAuthenticationError, CredentialError, FailureKind};

/// Where instance discovery asks by default: MSAL Python's `WORLD_WIDE` host, which
/// azure-identity asks through it, so an egress allow-list written for either lets us through.
pub(crate) const DEFAULT_DISCOVERY_HOST: &str = "login.microsoftonline.com";
/// The discovery API version MSAL Python asks for when it validates an authority.
const DISCOVERY_API_VERSION: &str = "1.0";
/// How long a successful discovery is trusted.
const VALIDITY_SECS: i64 = 24 * 3600;

/// Entra ID's well-known authority hosts, which need no discovery.
const WELL_KNOWN_HOSTS: &[&str] = &[
    "login.microsoftonline.com",
    "login.microsoft.com",
    "login.windows.net",
    "sts.windows.net",
    "login.chinacloudapi.cn",
    "login.partner.microsoftonline.cn",
    "login.microsoftonline.de",
    "login-us.microsoftonline.com",
    "login.microsoftonline.us",
    "login.usgovcloudapi.net",
    "login.sovcloud-identity.fr",
    "login.sovcloud-identity.de",
    "login.sovcloud-identity.sg",
];

/// How a credential validates its authority.
#[derive(Clone, Debug)]
pub(crate) struct InstanceDiscovery {
    /// The discovery host, such as `https://login.microsoftonline.com`, or a base URL for tests.
    endpoint: String,
}

impl InstanceDiscovery {
    /// Discovery for `authority`, or `None` when none is needed: discovery is disabled, the
    /// host is well-known, the tenant is `adfs`, or the authority is on loopback and no
    /// discovery host was chosen (a loopback authority is a local test authority).
    pub(crate) fn for_authority(
        authority: &Authority,
        disabled: bool,
        discovery_host: Option<&str>,
    ) -> Option<Self> {
        let host = authority.host().to_ascii_lowercase();
        let hostname = host
            .rsplit_once(':')
            .map_or(host.as_str(), |(name, _)| name);
        let loopback =
            hostname == "localhost" || hostname.starts_with("127.") || hostname == "[::1]";
        if disabled
            || WELL_KNOWN_HOSTS.contains(&hostname)
            || (loopback && discovery_host.is_none())
        {
            return None;
        }
        let endpoint = match discovery_host.unwrap_or(DEFAULT_DISCOVERY_HOST) {
            with_scheme if with_scheme.contains("://") => {
                with_scheme.trim_end_matches('/').to_owned()
            }
            bare => format!("https://{}", bare.trim_end_matches('/')),
        };
        Some(Self { endpoint })
    }

    /// Checks the authority for `tenant` once a day, as MSAL Python does:
    /// `GET {discovery}/common/discovery/instance?authorization_endpoint={authority}/{tenant}/oauth2/v2.0/authorize&api-version=1.0`.
    pub(crate) async fn validate(
        &self,
        http: &HttpClient,
        authority: &Authority,
        tenant: &str,
        now: i64,
    ) -> Result<(), CredentialError> {
        let cache_key = (self.endpoint.clone(), authority.as_str().to_owned());
        if validated()
            .get(&cache_key)
            .is_some_and(|valid_until| *valid_until > now)
        {
            return Ok(());
        }
        let authorize = format!("{}/{tenant}/oauth2/v2.0/authorize", authority.as_str());
        let url = url::Url::parse_with_params(
            &format!("{}/common/discovery/instance", self.endpoint),
            &[
                ("authorization_endpoint", authorize.as_str()),
                ("api-version", DISCOVERY_API_VERSION),
            ],
        )
        .map_err(|error| CredentialError::InvalidRequest(format!("bad discovery URL: {error}")))?;
        http.get(url.as_str())
            .await
            .map_err(|error| request_failed(authority, error))
            .and_then(|response| judge_answer(authority, response.status, &response.body))
            .map_err(CredentialError::ClientAuthentication)?;
        validated().insert(cache_key, now + VALIDITY_SECS);
        Ok(())
    }
}

fn failure(message: String) -> ClientAuthenticationError {
    ClientAuthenticationError::new(FailureKind::InstanceDiscovery, message)
}

/// Discovery's request failed: as transient as the request's failure, which is the source (a
/// timeout or a dropped connection is transient, and so is a 408, 429 or 5xx answer once the
/// retries are spent).
fn request_failed(
    authority: &Authority,
    error: ClientAuthenticationError,
) -> ClientAuthenticationError {
    failure(format!("Instance discovery of {authority} failed")).caused_by(error)
}

/// What discovery's answer says of the authority: known (a 200 naming its metadata), unknown
/// (`invalid_instance`, never transient), or nothing clear (transient only for 408, 429 and
/// 5xx; an answer that is not JSON keeps the JSON error as the source).
fn judge_answer(
    authority: &Authority,
    status: u16,
    body: &[u8],
) -> Result<(), ClientAuthenticationError> {
    let (body, unreadable) = match serde_json::from_slice::<Value>(body) {
        Ok(body) => (body, None),
        Err(error) => (Value::Null, Some(error)),
    };
    if body.get("error").and_then(Value::as_str) == Some("invalid_instance") {
        return Err(failure(format!(
            "The authority provided, {authority}, is not well-known. If this authority is \
             valid and trustworthy, you can disable this check with \
             disable_instance_discovery(true) when building the credential."
        )));
    }
    if status == 200 && body.get("tenant_discovery_endpoint").is_some() {
        return Ok(());
    }
    let unexpected = failure(format!(
        "Instance discovery of {authority} gave an unexpected answer (HTTP {status})"
    ))
    .with_status(status);
    Err(match unreadable {
        Some(error) => unexpected.with_source(error),
        None => unexpected,
    })
}

/// Authorities validated recently, shared by every credential in the process.
fn validated() -> std::sync::MutexGuard<'static, HashMap<(String, String), i64>> {
    static VALIDATED: OnceLock<Mutex<HashMap<(String, String), i64>>> = OnceLock::new();
    VALIDATED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authority(text: &str) -> Authority {
        Authority::parse(text).expect("authority")
    }

    #[test]
    fn discovery_is_skipped_where_it_cannot_help() {
        let public = authority("login.microsoftonline.com");
        assert!(InstanceDiscovery::for_authority(&public, false, None).is_none());
        let private = authority("login.contoso.example");
        assert!(InstanceDiscovery::for_authority(&private, true, None).is_none());
        let found = InstanceDiscovery::for_authority(&private, false, None).expect("needed");
        assert_eq!(found.endpoint, "https://login.microsoftonline.com");
        let local = authority("https://127.0.0.1:8443");
        assert!(InstanceDiscovery::for_authority(&local, false, None).is_none());
        let chosen = InstanceDiscovery::for_authority(&local, false, Some("https://127.0.0.1:9"))
            .expect("chosen host");
        assert_eq!(chosen.endpoint, "https://127.0.0.1:9");
    }

    #[test]
    fn answers_are_transient_when_asking_again_can_help() {
        let authority = authority("login.contoso.example");
        let known = br#"{"tenant_discovery_endpoint":"https://login.contoso.example/t/v2.0/.well-known/openid-configuration"}"#;
        assert!(judge_answer(&authority, 200, known).is_ok());
        for status in [408, 429, 500, 502, 503, 504] {
            let body = br#"{"error":"temporarily_unavailable"}"#;
            let error = judge_answer(&authority, status, body).expect_err("failed");
            assert!(error.is_transient(), "HTTP {status}");
            assert_eq!(error.status(), Some(status));
            assert_eq!(error.kind(), FailureKind::InstanceDiscovery);
        }
        for status in [200, 400, 401, 403, 404] {
            let error = judge_answer(&authority, status, b"{}").expect_err("failed");
            assert!(!error.is_transient(), "HTTP {status}");
        }
        let unknown = br#"{"error":"invalid_instance","error_description":"AADSTS50049"}"#;
        for status in [400, 500] {
            let error = judge_answer(&authority, status, unknown).expect_err("unknown");
            assert!(!error.is_transient(), "HTTP {status}");
            assert!(error.message().contains("disable_instance_discovery"));
        }
        let garbage = judge_answer(&authority, 200, b"<html>").expect_err("garbage");
        assert!(!garbage.is_transient());
        let cause = std::error::Error::source(&garbage).expect("the JSON error");
        assert!(cause.is::<serde_json::Error>());
    }

    #[test]
    fn failed_requests_are_as_transient_as_their_failure() {
        let authority = authority("login.contoso.example");
        let timeout =
            ClientAuthenticationError::new(FailureKind::Timeout, "timed out").transient(true);
        let error = request_failed(&authority, timeout);
        assert!(error.is_transient());
        assert_eq!(error.kind(), FailureKind::InstanceDiscovery);
        let cause = std::error::Error::source(&error)
            .and_then(|cause| cause.downcast_ref::<ClientAuthenticationError>())
            .expect("the request's failure");
        assert_eq!(cause.kind(), FailureKind::Timeout);
        assert!(!error.to_string().contains("timed out"), "{error}");
        let refused = ClientAuthenticationError::new(FailureKind::InvalidResponse, "too large")
            .with_status(200);
        let error = request_failed(&authority, refused);
        assert!(!error.is_transient());
        assert_eq!(error.status(), Some(200));
    }
}
