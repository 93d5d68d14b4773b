//! `entra decode`: a JWT's header and claims, readable, not verified.
//!
//! Input: the text given to the command (standard input is read as UTF-8, so other bytes
//! never reach the decoder).

/// Decodes the token in `data` and prints it as the command does, to a string.
pub(crate) fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok((header, claims)) = entra_cli::jwt::decode(text) {
        let claims = entra_cli::jwt::annotate(claims);
        serde_json::to_string_pretty(&header).expect("header printed");
        serde_json::to_string_pretty(&claims).expect("claims printed");
    }
}
