//! `WWW-Authenticate` bearer challenges (RFC 6750), and the claims challenges of Continuous
//! Access Evaluation: `Bearer error="insufficient_claims", claims="<base64 JSON>"`.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};

/// The longest `WWW-Authenticate` value read; Entra's claims challenges are a few hundred bytes.
pub const MAX_CHALLENGE_BYTES: usize = 8 * 1024;

/// A `Bearer` challenge with an error code and a description, such as
/// `Bearer error="invalid_token", error_description="the token has expired"`. Quotes,
/// backslashes and control characters in the description are dropped, so any text is safe.
pub fn bearer_error(error: &str, description: &str) -> String {
    format!(
        "Bearer error=\"{}\", error_description=\"{}\"",
        quotable(error),
        quotable(description)
    )
}

/// A claims challenge to pass back to a caller: `Bearer error="insufficient_claims",
/// error_description=..., claims="<base64 of claims>"`, as Entra-protected resources send.
/// `claims` is the JSON the caller's next token request must carry.
pub fn insufficient_claims(claims: &str, description: &str) -> String {
    format!(
        "Bearer error=\"insufficient_claims\", error_description=\"{}\", claims=\"{}\"",
        quotable(description),
        STANDARD.encode(claims)
    )
}

/// The claims a `WWW-Authenticate` value demands: the decoded JSON of the `claims` parameter
/// of a `Bearer` challenge whose `error` is `insufficient_claims`. `None` for any other
/// challenge, or for a `claims` value that is not base64 of a JSON object.
pub fn claims_from_challenge(header: &str) -> Option<String> {
    if header.len() > MAX_CHALLENGE_BYTES {
        return None;
    }
    let params = bearer_params(header)?;
    let error = params
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("error"));
    if error.is_none_or(|(_, value)| value != "insufficient_claims") {
        return None;
    }
    let (_, encoded) = params
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("claims"))?;
    let decoded = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(encoded.trim()).ok())?;
    let text = String::from_utf8(decoded).ok()?;
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Object(_)) => Some(text),
        _ => None,
    }
}

/// The auth-params of the first `Bearer` challenge in a `WWW-Authenticate` value.
fn bearer_params(header: &str) -> Option<Vec<(String, String)>> {
    let mut rest = header.trim_start();
    // Find the `Bearer` scheme, possibly after other challenges.
    loop {
        let scheme_end = rest.find([' ', ',']).unwrap_or(rest.len());
        if rest[..scheme_end].eq_ignore_ascii_case("bearer") {
            rest = &rest[scheme_end..];
            break;
        }
        // Skip to the next comma outside quotes and try again.
        let mut in_quotes = false;
        let mut escaped = false;
        let next = rest.char_indices().find(|&(_, c)| {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quotes = !in_quotes;
            } else if c == ',' && !in_quotes {
                return true;
            }
            false
        })?;
        rest = rest[next.0 + 1..].trim_start();
    }
    let mut params = Vec::new();
    loop {
        rest = rest.trim_start_matches([' ', ',', '\t']);
        let Some(equals) = rest.find('=') else {
            break;
        };
        let name = rest[..equals].trim();
        if name.is_empty() || name.contains([' ', '"']) {
            // The start of another challenge: the Bearer one ended.
            break;
        }
        rest = rest[equals + 1..].trim_start();
        let value = if let Some(quoted) = rest.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((index, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        end = Some(index);
                        break;
                    }
                    c => value.push(c),
                }
            }
            rest = &quoted[end? + 1..];
            value
        } else {
            let end = rest.find([',', ' ']).unwrap_or(rest.len());
            let value = rest[..end].to_owned();
            rest = &rest[end..];
            value
        };
        params.push((name.to_owned(), value));
    }
    Some(params)
}

/// `text` without the characters a quoted-string cannot hold as they are.
fn quotable(text: &str) -> String {
    text.chars()
        .filter(|c| !matches!(c, '"' | '\\') && !c.is_control())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLAIMS: &str = r#"{"access_token":{"nbf":{"essential":true,"value":"1602720255"}}}"#;

    #[test]
    fn entra_claims_challenges_are_read() {
        // The shape Microsoft Graph sends.
        let header = format!(
            "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", \
             client_id=\"00000003-0000-0000-c000-000000000000\", error=\"insufficient_claims\", claims=\"{}\"",
            STANDARD.encode(CLAIMS)
        );
        assert_eq!(claims_from_challenge(&header).as_deref(), Some(CLAIMS));
        // Our own, after another scheme, unpadded.
        let ours = insufficient_claims(CLAIMS, "session \"revoked\"");
        assert!(ours.contains("error_description=\"session revoked\""));
        assert_eq!(
            claims_from_challenge(&format!("Basic realm=\"a,b\", {ours}")).as_deref(),
            Some(CLAIMS)
        );
        let unpadded = format!(
            "Bearer error=insufficient_claims, claims={}",
            STANDARD_NO_PAD.encode(CLAIMS)
        );
        assert_eq!(claims_from_challenge(&unpadded).as_deref(), Some(CLAIMS));
    }

    #[test]
    fn other_challenges_and_garbage_give_nothing() {
        let encoded = STANDARD.encode(CLAIMS);
        for header in [
            String::new(),
            "Bearer".to_owned(),
            "Bearer error=\"invalid_token\"".to_owned(),
            format!("Bearer error=\"invalid_token\", claims=\"{encoded}\""),
            format!("Basic error=\"insufficient_claims\", claims=\"{encoded}\""),
            "Bearer error=\"insufficient_claims\", claims=\"!!!\"".to_owned(),
            format!(
                "Bearer error=\"insufficient_claims\", claims=\"{}\"",
                STANDARD.encode("[1]")
            ),
            "Bearer error=\"insufficient_claims\", claims=\"unterminated".to_owned(),
            "Bearer =, ==, \"\\".to_owned(),
            format!(
                "Bearer error=\"insufficient_claims\", claims=\"{}\"",
                "A".repeat(MAX_CHALLENGE_BYTES)
            ),
        ] {
            assert_eq!(claims_from_challenge(&header), None, "{header:.60}");
        }
    }

    #[test]
    fn descriptions_cannot_break_out_of_their_quotes() {
        let header = bearer_error("invalid_token", "a\"b\\c\r\nSet-Cookie: x");
        assert_eq!(
            header,
            "Bearer error=\"invalid_token\", error_description=\"abcSet-Cookie: x\""
        );
    }
}
