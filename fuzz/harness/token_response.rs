//! Token endpoint responses, success and error bodies, as `get_token` reads them.
//!
//! Input: the HTTP status (2 bytes, big-endian), the time the request was sent (8 bytes,
//! big-endian, signed Unix seconds), then the body. Shorter inputs are a body alone, answered
//! with 200 at a fixed time.

use entra_identity::internal::{merge_claims, read_token_response};

/// Reads `data` as a token response and checks what a success promises.
pub(crate) fn run(data: &[u8]) {
    let (status, request_time, body) = match data {
        [s0, s1, t0, t1, t2, t3, t4, t5, t6, t7, body @ ..] => (
            u16::from_be_bytes([*s0, *s1]),
            i64::from_be_bytes([*t0, *t1, *t2, *t3, *t4, *t5, *t6, *t7]),
            body,
        ),
        body => (200, 1_700_000_000, body),
    };
    // A secret marked as such in the body must never reach a message nor a `Debug`.
    let marked = access_token(body).filter(|token| token.contains("SECRET"));
    for content_type in [None, Some("application/json; charset=utf-8")] {
        match read_token_response(status, content_type, body, request_time) {
            Ok((info, refresh_token)) => {
                assert!(status < 400, "a success from HTTP {status}");
                assert!(!info.token.expose_secret().trim().is_empty(), "empty token");
                assert!(info.expires_on > request_time, "expired on arrival");
                // The type heads an `Authorization` header: an HTTP token, nothing else.
                assert!(
                    !info.token_type.is_empty()
                        && info.token_type.bytes().all(|byte| {
                            byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
                        }),
                    "the token type {:?} cannot head an Authorization header",
                    info.token_type
                );
                if let Some(refresh_token) = &refresh_token {
                    assert!(
                        !refresh_token.expose_secret().is_empty(),
                        "empty refresh token"
                    );
                }
                if let Some(secret) = &marked {
                    let shown = format!("{:?} {refresh_token:?}", info.token);
                    assert!(!shown.contains(secret.as_str()), "a token in a Debug");
                }
            }
            Err(error) => {
                let shown = format!("{error} {error:?}");
                let _ = (error.is_transient(), error.retry_after());
                let mut source = std::error::Error::source(&error);
                let mut causes = String::new();
                while let Some(cause) = source {
                    causes.push_str(&format!("{cause} {cause:?}"));
                    source = cause.source();
                }
                match error.entra() {
                    // A claims challenge goes back into the next request, merged for CAE.
                    Some(entra) => {
                        if let Some(claims) = entra.claims.as_deref() {
                            let _ = merge_claims(Some(claims), true);
                        }
                    }
                    // Not Entra ID's error body: nothing of the body is told.
                    None => {
                        if let Some(secret) = &marked {
                            assert!(!shown.contains(secret.as_str()), "the body in an error");
                            assert!(!causes.contains(secret.as_str()), "the body in a cause");
                        }
                    }
                }
            }
        }
    }
}

/// The body's `access_token` string, when the body is a JSON object with one.
fn access_token(body: &[u8]) -> Option<String> {
    match serde_json::from_slice::<serde_json::Value>(body).ok()? {
        serde_json::Value::Object(mut fields) => match fields.remove("access_token")? {
            serde_json::Value::String(token) => Some(token),
            _ => None,
        },
        _ => None,
    }
}
