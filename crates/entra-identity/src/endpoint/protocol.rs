//! The token endpoint's wire format: form bodies, claims, responses and error bodies.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::value::RawValue;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::error::{ClientAuthenticationError, CredentialError, EntraError, FailureKind};
use crate::secret::{AccessTokenSecret, RefreshToken};
use crate::token::AccessTokenInfo;

/// The `client_assertion_type` of JWT client assertions.
pub(crate) const JWT_BEARER_ASSERTION_TYPE: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Tokens of this lifetime or longer get a proactive refresh time at half their lifetime when
/// Entra ID sends no `refresh_in`.
const LONG_LIVED_SECS: i64 = 7200;

/// The claims that ask for a CAE token: the `CP1` client capability.
const CP1_CLAIMS: &str = r#"{"access_token":{"xms_cc":{"values":["CP1"]}}}"#;

/// The `claims` form field for a request: the caller's claims, with the CP1 capability merged
/// in when CAE is enabled. The caller's values are kept as they were written (numbers
/// included, which a round trip through `f64` would change); only the `access_token` object
/// is rewritten, with `xms_cc` set.
///
/// # Errors
///
/// With CAE, claims that are not a JSON object are an [`CredentialError::InvalidRequest`].
pub(crate) fn merge_claims(
    claims: Option<&str>,
    enable_cae: bool,
) -> Result<Option<String>, CredentialError> {
    /// A JSON object whose values are kept as written.
    type RawObject = BTreeMap<String, Box<RawValue>>;
    let claims = claims.filter(|claims| !claims.trim().is_empty());
    if !enable_cae {
        return Ok(claims.map(str::to_owned));
    }
    let Some(claims) = claims else {
        return Ok(Some(CP1_CLAIMS.to_owned()));
    };
    let invalid = || CredentialError::InvalidRequest("claims must be a JSON object".to_owned());
    let mut parsed: RawObject = serde_json::from_str(claims).map_err(|_| invalid())?;
    let mut access_token: RawObject = match parsed.get("access_token") {
        Some(raw) => serde_json::from_str(raw.get()).map_err(|_| invalid())?,
        None => RawObject::new(),
    };
    let merge = |access_token: &mut RawObject, parsed: &mut RawObject| {
        access_token.insert(
            "xms_cc".to_owned(),
            RawValue::from_string(r#"{"values":["CP1"]}"#.to_owned())?,
        );
        parsed.insert(
            "access_token".to_owned(),
            serde_json::value::to_raw_value(access_token)?,
        );
        serde_json::to_string(parsed)
    };
    // Serializing what was just parsed cannot fail.
    merge(&mut access_token, &mut parsed)
        .map(Some)
        .map_err(|_| invalid())
}

/// A form body under construction. It holds secrets, so it is wiped when dropped, and it is
/// allocated once at a size no token request exceeds, so no copy is left behind by growth.
pub(crate) struct FormBody {
    body: Zeroizing<String>,
}

impl FormBody {
    pub(crate) fn new() -> Self {
        Self {
            body: Zeroizing::new(String::with_capacity(8 * 1024)),
        }
    }

    pub(crate) fn field(mut self, name: &str, value: &str) -> Self {
        if !self.body.is_empty() {
            self.body.push('&');
        }
        self.body
            .extend(url::form_urlencoded::byte_serialize(name.as_bytes()));
        self.body.push('=');
        self.body
            .extend(url::form_urlencoded::byte_serialize(value.as_bytes()));
        self
    }

    pub(crate) fn optional(self, name: &str, value: Option<&str>) -> Self {
        match value {
            Some(value) if !value.is_empty() => self.field(name, value),
            _ => self,
        }
    }

    pub(crate) fn finish(self) -> Zeroizing<String> {
        self.body
    }
}

/// A successful token response.
#[derive(Debug)]
pub(crate) struct TokenResponse {
    pub(crate) info: AccessTokenInfo,
    pub(crate) refresh_token: Option<RefreshToken>,
}

/// Reads a token endpoint response. `request_time` is when the request was sent; expiry and
/// refresh times count from it.
///
/// A success needs a non-empty `access_token` and a lifetime: `expires_in` above zero, and an
/// expiry (from `expires_on`, else `expires_in`) after `request_time`; a `token_type`, when
/// given, must be an HTTP authentication scheme (it heads the `Authorization` header).
/// Anything less is an [`FailureKind::InvalidResponse`] error, so it is never returned nor
/// cached.
///
/// Error messages never include the body: a malformed success body may hold a token. The
/// access and refresh tokens are moved, not copied, out of the parsed JSON into their
/// zeroizing types; the other parsed values (and serde_json's scratch buffer, used only for
/// strings with escapes) are not wiped, and hold nothing secret in a well-formed answer.
pub(crate) fn parse_token_response(
    status: u16,
    content_type: Option<&str>,
    body: &[u8],
    request_time: i64,
) -> Result<TokenResponse, CredentialError> {
    let unexpected = |what: &str| {
        let content_type = content_type.unwrap_or("no content type");
        ClientAuthenticationError::new(
            FailureKind::InvalidResponse,
            format!(
                "Unexpected response from Microsoft Entra ID (HTTP {status}, {content_type}, \
                 {} bytes): {what}",
                body.len()
            ),
        )
        .with_status(status)
    };
    let invalid = |what: &str| CredentialError::ClientAuthentication(unexpected(what));
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(CredentialError::ClientAuthentication(
            ClientAuthenticationError::new(
                FailureKind::InvalidResponse,
                format!("No response content from Microsoft Entra ID (HTTP {status})"),
            )
            .with_status(status),
        ));
    }
    let mut fields = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(fields)) => fields,
        Ok(_) => return Err(invalid("the body is not a JSON object")),
        // serde_json's errors give a position, never the text.
        Err(error) => {
            return Err(CredentialError::ClientAuthentication(
                unexpected("the body is not a JSON object").with_source(error),
            ));
        }
    };
    if fields.contains_key("error") {
        return Err(CredentialError::ClientAuthentication(
            ClientAuthenticationError::from_entra(status, entra_error(&fields)),
        ));
    }
    if status >= 400 {
        return Err(invalid("an error status without an error body"));
    }
    let mut token = match fields.remove("access_token") {
        Some(Value::String(token)) => Zeroizing::new(token),
        _ => return Err(invalid("the response has no access_token")),
    };
    if token.trim().is_empty() {
        return Err(invalid("the access_token is empty"));
    }
    let refresh_token = match fields.remove("refresh_token") {
        Some(Value::String(token)) => Some(Zeroizing::new(token)),
        _ => None,
    };
    let expires_in = seconds(fields.get("expires_in"));
    if expires_in.is_some_and(|expires_in| expires_in <= 0) {
        return Err(invalid("the token's lifetime (expires_in) is not positive"));
    }
    let expires_on = match (seconds(fields.get("expires_on")), expires_in) {
        (Some(expires_on), _) => expires_on,
        (None, Some(expires_in)) => request_time.saturating_add(expires_in),
        (None, None) => {
            return Err(invalid(
                "the response says nothing of when the token expires",
            ));
        }
    };
    if expires_on <= request_time {
        return Err(invalid("the token had already expired when it arrived"));
    }
    let refresh_on = match (seconds(fields.get("refresh_in")), expires_in) {
        (Some(refresh_in), _) => Some(request_time.saturating_add(refresh_in)),
        (None, Some(expires_in)) if expires_in >= LONG_LIVED_SECS => {
            Some(request_time.saturating_add(expires_in / 2))
        }
        _ => None,
    };
    let token_type = match fields.get("token_type").and_then(Value::as_str) {
        None | Some("Bearer") | Some("bearer") => Cow::Borrowed("Bearer"),
        // It heads the `Authorization` header the token is sent in: nothing else fits there.
        Some(other) if !is_authentication_scheme(other) => {
            return Err(invalid(
                "the token_type is not an HTTP authentication scheme",
            ));
        }
        Some(other) => Cow::Owned(other.to_owned()),
    };
    Ok(TokenResponse {
        info: AccessTokenInfo {
            token: AccessTokenSecret::new(std::mem::take(&mut *token)),
            expires_on,
            token_type,
            refresh_on,
        },
        refresh_token: refresh_token
            .filter(|token| !token.is_empty())
            .map(|mut token| RefreshToken::new(std::mem::take(&mut *token))),
    })
}

/// Whether `text` is an HTTP authentication scheme (RFC 9110's `token`: one or more
/// `tchar`), so that `<scheme> <token>` is a well-formed `Authorization` header.
fn is_authentication_scheme(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte))
}

/// A seconds field that may be a number or a numeric string.
fn seconds(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Number(number) => number
            .as_i64()
            .or_else(|| number.as_f64().map(|v| v as i64)),
        Value::String(text) => text.trim().parse::<f64>().ok().map(|v| v as i64),
        _ => None,
    }
}

fn entra_error(fields: &Map<String, Value>) -> EntraError {
    let text = |name: &str| fields.get(name).and_then(Value::as_str).map(str::to_owned);
    EntraError {
        error: text("error").unwrap_or_else(|| "unknown_error".to_owned()),
        error_description: text("error_description"),
        error_codes: fields
            .get("error_codes")
            .and_then(Value::as_array)
            .map(|codes| {
                codes
                    .iter()
                    .filter_map(Value::as_u64)
                    .filter_map(|c| u32::try_from(c).ok())
                    .collect()
            })
            .unwrap_or_default(),
        trace_id: text("trace_id"),
        correlation_id: text("correlation_id"),
        timestamp: text("timestamp"),
        suberror: text("suberror"),
        claims: text("claims"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cae_merges_cp1_into_claims() {
        assert_eq!(merge_claims(None, false).expect("ok"), None);
        assert_eq!(merge_claims(Some("  "), false).expect("ok"), None);
        assert_eq!(
            merge_claims(Some("{\"a\":1}"), false)
                .expect("ok")
                .as_deref(),
            Some("{\"a\":1}")
        );
        let merged = merge_claims(None, true).expect("ok").expect("claims");
        assert_eq!(
            serde_json::from_str::<Value>(&merged).expect("json"),
            serde_json::json!({ "access_token": { "xms_cc": { "values": ["CP1"] } } })
        );
        let merged = merge_claims(Some(r#"{"access_token": {"essential": "true"}}"#), true)
            .expect("ok")
            .expect("claims");
        assert_eq!(
            serde_json::from_str::<Value>(&merged).expect("json"),
            serde_json::json!({ "access_token": { "essential": "true", "xms_cc": { "values": ["CP1"] } } })
        );
        assert!(merge_claims(Some("not json"), true).is_err());
        assert!(merge_claims(Some(r#"{"access_token": 5}"#), true).is_err());
        assert!(merge_claims(Some(r#"{"access_token": null}"#), true).is_err());
        assert!(merge_claims(Some("[]"), true).is_err());
    }

    /// Found by the `claims` fuzz target: the merge re-serialized the caller's claims through
    /// `f64`, so `-2222E272` was sent as `-2.2220000000000002e275` (and a large integer lost
    /// its digits); merging the result again changed it again.
    #[test]
    fn cae_keeps_the_callers_claims_as_written() {
        let claims = r#"{"x": -2222E272, "access_token": {"nbf": {"essential": true, "value": 123456789012345678901234567890}}, "id_token": {"a": 0.1}}"#;
        let merged = merge_claims(Some(claims), true)
            .expect("ok")
            .expect("claims");
        for written in [
            r#""x":-2222E272"#,
            r#""value": 123456789012345678901234567890"#,
            r#""id_token":{"a": 0.1}"#,
            r#""xms_cc":{"values":["CP1"]}"#,
        ] {
            assert!(merged.contains(written), "{written} in {merged}");
        }
        let again = merge_claims(Some(&merged), true)
            .expect("ok")
            .expect("claims");
        assert_eq!(again, merged);
    }

    #[test]
    fn success_bodies_give_expiry_and_refresh_times() {
        let body =
            br#"{"token_type":"Bearer","expires_in":3600,"refresh_in":100,"access_token":"AT"}"#;
        let response = parse_token_response(200, None, body, 1000).expect("ok");
        assert_eq!(response.info.token.expose_secret(), "AT");
        assert_eq!(
            (response.info.expires_on, response.info.refresh_on),
            (4600, Some(1100))
        );
        let body = br#"{"expires_in":"7200","access_token":"AT"}"#;
        let response = parse_token_response(200, None, body, 1000).expect("ok");
        assert_eq!(
            (response.info.expires_on, response.info.refresh_on),
            (8200, Some(4600))
        );
        assert_eq!(response.info.token_type, "Bearer");
        let body = br#"{"expires_in":3600,"access_token":"AT","refresh_token":"RT"}"#;
        let response = parse_token_response(200, None, body, 0).expect("ok");
        assert_eq!(response.info.refresh_on, None);
        assert_eq!(response.refresh_token.expect("rt").expose_secret(), "RT");
    }

    #[test]
    fn unusable_tokens_are_invalid_responses() {
        let cases: [&[u8]; 8] = [
            br#"{"expires_in":3600,"access_token":""}"#,
            br#"{"expires_in":3600,"access_token":"  "}"#,
            br#"{"expires_in":3600,"access_token":null}"#,
            br#"{"expires_in":3600,"access_token":42}"#,
            br#"{"expires_in":0,"access_token":"AT"}"#,
            br#"{"expires_in":-3600,"access_token":"AT"}"#,
            br#"{"expires_in":"-1","access_token":"AT"}"#,
            br#"{"expires_on":999,"access_token":"AT"}"#,
        ];
        for body in cases {
            let error = parse_token_response(200, None, body, 1000).expect_err("invalid");
            let auth = error.client_authentication().expect("authentication error");
            assert_eq!(
                auth.kind(),
                FailureKind::InvalidResponse,
                "{}",
                String::from_utf8_lossy(body)
            );
            assert!(!auth.is_transient());
        }
        // An expiry one second after the request is still a token.
        assert!(
            parse_token_response(
                200,
                None,
                br#"{"expires_on":1001,"access_token":"AT"}"#,
                1000
            )
            .is_ok()
        );
    }

    /// Found by the `token_response` fuzz target: `"token_type": ""` was a success, and so
    /// was any text, though the type heads the `Authorization` header (`entra token --output
    /// header` printed `Authorization:  <token>`).
    #[test]
    fn token_types_that_are_no_authentication_scheme_are_invalid_responses() {
        for token_type in [
            "",
            " ",
            "Bearer ",
            "Bear er",
            "Bearer\r\nX-Injected: 1",
            "Bé",
        ] {
            let body = serde_json::json!({
                "access_token": "AT", "expires_in": 3600, "token_type": token_type,
            })
            .to_string();
            let error = parse_token_response(200, None, body.as_bytes(), 0).expect_err(token_type);
            let auth = error.client_authentication().expect("authentication error");
            assert_eq!(auth.kind(), FailureKind::InvalidResponse, "{token_type:?}");
        }
        for (token_type, read) in [("bearer", "Bearer"), ("pop", "pop"), ("N_A", "N_A")] {
            let body = serde_json::json!({
                "access_token": "AT", "expires_in": 3600, "token_type": token_type,
            })
            .to_string();
            let response = parse_token_response(200, None, body.as_bytes(), 0).expect("ok");
            assert_eq!(response.info.token_type, read);
        }
    }

    #[test]
    fn error_bodies_become_typed_entra_errors() {
        let body = br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.","error_codes":[7000215],"trace_id":"t","correlation_id":"c","timestamp":"ts","claims":"{}"}"#;
        let error = parse_token_response(401, None, body, 0).expect_err("error");
        let entra = error.entra().expect("entra");
        assert_eq!(entra.error_codes, [7_000_215]);
        assert_eq!(entra.trace_id.as_deref(), Some("t"));
        assert_eq!(entra.claims.as_deref(), Some("{}"));
        assert_eq!(
            error.client_authentication().and_then(|e| e.status()),
            Some(401)
        );
        // An error body wins even with a success status, as in azure-identity.
        assert!(parse_token_response(200, None, br#"{"error":"x"}"#, 0).is_err());
    }

    #[test]
    fn malformed_bodies_are_clear_errors_that_never_echo_the_body() {
        let cases: [(u16, &[u8]); 6] = [
            (200, b""),
            (200, b"<html>oops</html>"),
            (200, br#"{"access_token":"SECRET-TOKEN""#),
            (200, br#"{"access_token":"SECRET-TOKEN"}"#),
            (502, b"<html>Bad Gateway</html>"),
            (500, b"{}"),
        ];
        for (status, body) in cases {
            let error =
                parse_token_response(status, Some("text/html"), body, 0).expect_err("error");
            let auth = error.client_authentication().expect("authentication error");
            assert_eq!(auth.kind(), FailureKind::InvalidResponse);
            assert!(!auth.message().contains("SECRET-TOKEN"));
            assert_eq!(auth.is_transient(), status >= 500);
            // What serde_json said is the cause when the body is not JSON at all.
            let cause = std::error::Error::source(&error);
            assert_eq!(
                cause.is_some_and(|cause| cause.is::<serde_json::Error>()),
                !body.is_empty() && serde_json::from_slice::<Value>(body).is_err(),
                "{body:?}"
            );
            assert!(!cause.is_some_and(|cause| format!("{cause}{cause:?}").contains("SECRET")));
        }
    }

    #[test]
    fn form_bodies_are_urlencoded() {
        let body = FormBody::new()
            .field("client_secret", "a+b/c=")
            .field("scope", "https://x/.default y")
            .optional("claims", None)
            .optional("empty", Some(""))
            .finish();
        assert_eq!(
            body.as_str(),
            "client_secret=a%2Bb%2Fc%3D&scope=https%3A%2F%2Fx%2F.default+y"
        );
    }
}
