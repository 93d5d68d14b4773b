//! A JWT's header and claims, readable, not verified (`entra decode`).

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

/// The header and claims of a compact JWT, also as `entra token --output header` prints it
/// (`Authorization: Bearer <JWT>`). The signature is not checked.
///
/// # Errors
///
/// The text is not three dot-separated parts whose first two are base64url JSON.
pub fn decode(token: &str) -> anyhow::Result<(Value, Value)> {
    let token = token.trim();
    let token = token
        .strip_prefix("Authorization:")
        .map_or(token, str::trim_start);
    let token = token.strip_prefix("Bearer ").unwrap_or(token);
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        bail!(
            "not a JWT: expected three dot-separated parts, found {}",
            parts.len()
        );
    }
    let part = |index: usize, name: &str| -> anyhow::Result<Value> {
        let bytes = URL_SAFE_NO_PAD
            .decode(parts[index].trim_end_matches('='))
            .with_context(|| format!("the {name} is not base64url"))?;
        serde_json::from_slice(&bytes).with_context(|| format!("the {name} is not JSON"))
    };
    Ok((part(0, "header")?, part(1, "claims")?))
}

/// Adds readable UTC times beside the numeric date claims (`iat`, `nbf`, `exp`).
pub fn annotate(mut claims: Value) -> Value {
    if let Value::Object(map) = &mut claims {
        for name in ["iat", "nbf", "exp"] {
            let readable = map.get(name).and_then(Value::as_i64).and_then(utc_text);
            if let Some(text) = readable {
                map.insert(format!("{name} (UTC)"), Value::String(text));
            }
        }
    }
    claims
}

/// A readable UTC time, such as `1970-01-01 00:00:00 UTC`; `None` outside the years the
/// `time` crate can represent.
pub fn utc_text(unix: i64) -> Option<String> {
    let format =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()?
        .format(&format)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_header_and_claims() {
        let encode = |json: &str| URL_SAFE_NO_PAD.encode(json);
        let token = format!(
            "{}.{}.sig",
            encode(r#"{"alg":"RS256"}"#),
            encode(r#"{"exp":0,"sub":"x"}"#)
        );
        let (header, claims) = decode(&format!("Bearer {token}\n")).expect("decoded");
        assert!(decode(&format!("Authorization: Bearer {token}")).is_ok());
        assert_eq!(header["alg"], "RS256");
        assert_eq!(annotate(claims)["exp (UTC)"], "1970-01-01 00:00:00 UTC");
        assert!(decode("a.b").is_err());
        assert!(decode("!!.e30.x").is_err());
    }
}
