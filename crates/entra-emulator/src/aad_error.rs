//! Errors in Entra ID's shape: an OAuth `error`, an AADSTS code, and the trace fields.

use axum::http::StatusCode;
use serde_json::{Value, json};

/// An error response as Entra's token endpoint sends it.
#[derive(Clone, Debug)]
pub(crate) struct AadError {
    pub(crate) status: StatusCode,
    pub(crate) error: &'static str,
    pub(crate) code: u32,
    pub(crate) message: String,
    pub(crate) suberror: Option<&'static str>,
    pub(crate) claims: Option<String>,
}

impl AadError {
    fn new(status: StatusCode, error: &'static str, code: u32, message: impl Into<String>) -> Self {
        Self {
            status,
            error,
            code,
            message: message.into(),
            suberror: None,
            claims: None,
        }
    }

    /// AADSTS900144: a required form field is missing.
    pub(crate) fn missing_parameter(name: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900_144,
            format!("The request body must contain the following parameter: '{name}'."),
        )
    }

    /// AADSTS9002313: the request could not be parsed.
    pub(crate) fn malformed(detail: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            9_002_313,
            format!("Invalid request. Request is malformed or invalid. {detail}"),
        )
    }

    /// The body was larger than the emulator accepts.
    pub(crate) fn body_too_large(limit: usize) -> Self {
        Self {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            ..Self::malformed(&format!("The request body is larger than {limit} bytes."))
        }
    }

    /// AADSTS70003: an unknown grant type.
    pub(crate) fn unsupported_grant_type(grant_type: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70_003,
            format!("The app requested an unsupported grant type '{grant_type}'."),
        )
    }

    /// AADSTS90002: no such tenant.
    pub(crate) fn tenant_not_found(tenant: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90_002,
            format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID \
                 and are signing into the correct cloud."
            ),
        )
    }

    /// AADSTS700016: no such application in the tenant.
    pub(crate) fn application_not_found(client_id: &str, tenant: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700_016,
            format!(
                "Application with identifier '{client_id}' was not found in the directory \
                 '{tenant}'. This can happen if the application has not been installed by the \
                 administrator of the tenant or consented to by any user in the tenant."
            ),
        )
    }

    /// AADSTS7000215: wrong client secret.
    pub(crate) fn invalid_client_secret() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7_000_215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the \
             client secret value, not the client secret ID, for a secret added to app.",
        )
    }

    /// AADSTS7000218: neither a secret nor an assertion.
    pub(crate) fn missing_client_credential() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7_000_218,
            "The request body must contain the following parameter: 'client_assertion' or \
             'client_secret'.",
        )
    }

    /// AADSTS700027: the client assertion's signature or key is not acceptable.
    pub(crate) fn assertion_signature(detail: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            700_027,
            format!("Client assertion failed signature validation. {detail}"),
        )
    }

    /// AADSTS700021: the assertion's `iss`/`sub` is not the client ID.
    pub(crate) fn assertion_client_mismatch() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            700_021,
            "Client assertion application identifier doesn't match 'client_id' parameter.",
        )
    }

    /// AADSTS700023: the assertion's `aud` is not this token endpoint.
    pub(crate) fn assertion_audience(expected: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            700_023,
            format!(
                "Client assertion audience claim does not match Realm issuer. Expected '{expected}'."
            ),
        )
    }

    /// AADSTS700024: the assertion is outside its validity window.
    pub(crate) fn assertion_time_range(detail: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            700_024,
            format!("Client assertion is not within its valid time range. {detail}"),
        )
    }

    /// AADSTS50027: the assertion is not a usable JWT, or was already used.
    pub(crate) fn invalid_jwt(detail: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            50_027,
            format!("JWT token is invalid or malformed. {detail}"),
        )
    }

    /// AADSTS700211/700212/700213: no federated credential matches the presented token.
    pub(crate) fn federated_mismatch(code: u32, what: &str, value: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            code,
            format!(
                "No matching federated identity record found for presented assertion {what} '{value}'."
            ),
        )
    }

    /// AADSTS70011: the scope is not valid for the grant.
    pub(crate) fn invalid_scope(detail: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            70_011,
            format!("The provided value for the input parameter 'scope' is not valid. {detail}"),
        )
    }

    /// AADSTS50013: the user assertion cannot be trusted.
    pub(crate) fn user_assertion_invalid(detail: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            50_013,
            format!("Assertion failed signature validation. {detail}"),
        )
    }

    /// AADSTS500131: the user assertion was issued to another application.
    pub(crate) fn user_assertion_audience(presented: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            500_131,
            format!(
                "Assertion audience does not match the Client app presenting the assertion. The \
                 audience in the assertion was '{presented}'."
            ),
        )
    }

    /// AADSTS500133: the user assertion has expired or is not yet valid.
    pub(crate) fn user_assertion_expired(now: i64, exp: i64) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            500_133,
            format!(
                "Assertion is not within its valid time range. Ensure that the access token is \
                 not expired before using it for user assertion, or request a new token. Current \
                 time: {}, expiry time of assertion {}.",
                format_time(now),
                format_time(exp)
            ),
        )
    }

    /// AADSTS50020: the user of an on-behalf-of assertion is not in the request's tenant.
    pub(crate) fn user_not_in_tenant(upn: &str, issuer: &str, tenant: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            50_020,
            format!(
                "User account '{upn}' from identity provider '{issuer}' does not exist in tenant \
                 '{tenant}' and cannot access the application in that tenant."
            ),
        )
    }

    /// AADSTS500011: no such resource (API) in the tenant.
    pub(crate) fn resource_not_found(resource: &str, tenant: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_resource",
            500_011,
            format!(
                "The resource principal named {resource} was not found in the tenant named \
                 {tenant}. This can happen if the application has not been installed by the \
                 administrator of the tenant or consented to by any user in the tenant."
            ),
        )
    }

    /// AADSTS65001: the delegated permission was never consented.
    pub(crate) fn consent_required(client_id: &str, app_name: &str, scope: &str) -> Self {
        Self {
            suberror: Some("consent_required"),
            ..Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                65_001,
                format!(
                    "The user or administrator has not consented to use the application with ID \
                     '{client_id}' named '{app_name}'. Send an interactive authorization request \
                     for this user and resource. Scope: '{scope}'."
                ),
            )
        }
    }

    /// AADSTS70000 / AADSTS700082: a refresh token that cannot be redeemed.
    pub(crate) fn bad_refresh_token(expired: bool) -> Self {
        if expired {
            Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                700_082,
                "The refresh token has expired due to inactivity.",
            )
        } else {
            Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                70_000,
                "Provided grant is invalid or malformed.",
            )
        }
    }

    /// AADSTS50049: instance discovery does not know the authority host.
    pub(crate) fn invalid_instance() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_instance",
            50_049,
            "Unknown or invalid instance.",
        )
    }

    /// A generic status with a `temporarily_unavailable` body, for fault injection.
    pub(crate) fn injected(status: StatusCode) -> Self {
        Self::new(
            status,
            "temporarily_unavailable",
            90_033,
            "A transient error has occurred. Please try again.",
        )
    }

    /// The JSON body, with a fresh trace ID and `correlation_id` set to the caller's
    /// `client-request-id` when it sent one.
    pub(crate) fn body(&self, base_url: &str, correlation_id: &str, now: i64) -> Value {
        let trace_id = uuid::Uuid::new_v4().to_string();
        let timestamp = format_time(now);
        let description = format!(
            "AADSTS{}: {}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}\r\nTimestamp: {timestamp}",
            self.code, self.message
        );
        let mut body = json!({
            "error": self.error,
            "error_description": description,
            "error_codes": [self.code],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": format!("{base_url}/error?code={}", self.code),
        });
        if let Some(suberror) = self.suberror {
            body["suberror"] = json!(suberror);
        }
        if let Some(claims) = &self.claims {
            body["claims"] = json!(claims);
        }
        body
    }
}

/// Entra's timestamp format: `2024-01-01 00:00:00Z`.
pub(crate) fn format_time(unix_seconds: i64) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z");
    time::OffsetDateTime::from_unix_timestamp(unix_seconds)
        .ok()
        .and_then(|moment| moment.format(&format).ok())
        .unwrap_or_else(|| unix_seconds.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_entra_shape() {
        let body = AadError::invalid_client_secret().body("https://e", "corr-1", 1_700_000_000);
        assert_eq!(body["error"], "invalid_client");
        assert_eq!(body["error_codes"], json!([7_000_215]));
        assert_eq!(body["correlation_id"], "corr-1");
        assert_eq!(body["timestamp"], "2023-11-14 22:13:20Z");
        let description = body["error_description"].as_str().expect("text");
        assert!(description.starts_with("AADSTS7000215: Invalid client secret"));
        assert!(description.contains("\r\nTrace ID: "));
        assert!(description.ends_with("Timestamp: 2023-11-14 22:13:20Z"));
        assert!(description.contains(body["trace_id"].as_str().expect("trace")));
    }

    #[test]
    fn consent_error_carries_suberror() {
        let body = AadError::consent_required("c", "n", "s").body("https://e", "x", 0);
        assert_eq!(body["suberror"], "consent_required");
        assert_eq!(body["error"], "invalid_grant");
    }
}
