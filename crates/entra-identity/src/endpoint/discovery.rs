//! Instance discovery: before using an authority host Entra ID does not publish as well-known,
//! ask Entra whether it knows it.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use serde_json::Value;

use crate::endpoint::authority::Authority;
use crate::endpoint::http::HttpClient;
use crate::error::{ClientAuthenticationError, CredentialError, FailureKind};

/// Where instance discovery asks by default.
pub(crate) const DEFAULT_DISCOVERY_HOST: &str = "login.microsoft.com";
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
    /// The discovery host, such as `login.microsoft.com`, or a base URL for tests.
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

    /// Checks the authority for `tenant` once a day.
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
                ("api-version", "1.1"),
                ("authorization_endpoint", authorize.as_str()),
            ],
        )
        .map_err(|error| CredentialError::InvalidRequest(format!("bad discovery URL: {error}")))?;
        let failure = |message: String| {
            CredentialError::ClientAuthentication(ClientAuthenticationError::new(
                FailureKind::InstanceDiscovery,
                message,
            ))
        };
        let response = http.get(url.as_str()).await.map_err(|error| {
            failure(format!("Instance discovery of {authority} failed: {error}"))
        })?;
        let body: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
        if body.get("error").and_then(Value::as_str) == Some("invalid_instance") {
            return Err(failure(format!(
                "The authority provided, {authority}, is not well-known. If this authority is \
                 valid and trustworthy, you can disable this check with \
                 disable_instance_discovery(true) when building the credential."
            )));
        }
        if response.status != 200 || body.get("tenant_discovery_endpoint").is_none() {
            return Err(CredentialError::ClientAuthentication(
                ClientAuthenticationError::new(
                    FailureKind::InstanceDiscovery,
                    format!(
                        "Instance discovery of {authority} gave an unexpected answer (HTTP {})",
                        response.status
                    ),
                )
                .with_status(response.status),
            ));
        }
        validated().insert(cache_key, now + VALIDITY_SECS);
        Ok(())
    }
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
        assert_eq!(found.endpoint, "https://login.microsoft.com");
        let local = authority("https://127.0.0.1:8443");
        assert!(InstanceDiscovery::for_authority(&local, false, None).is_none());
        let chosen = InstanceDiscovery::for_authority(&local, false, Some("https://127.0.0.1:9"))
            .expect("chosen host");
        assert_eq!(chosen.endpoint, "https://127.0.0.1:9");
    }
}
