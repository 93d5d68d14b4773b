//! `entra decode`: a JWT's header and claims, readable, not verified.

use std::io::Read as _;

use anyhow::Context as _;
use entra_cli::jwt::{annotate, decode};

use crate::Failure;
use crate::output::say;

#[derive(Debug, clap::Args)]
pub(crate) struct DecodeArgs {
    /// The JWT; read from standard input when absent or `-`.
    token: Option<String>,
}

/// The most read from standard input: a token with large claims is a few kilobytes.
const MAX_INPUT: u64 = 1024 * 1024;

pub(crate) fn run(args: &DecodeArgs) -> Result<(), Failure> {
    let token = match args.token.as_deref() {
        Some(token) if token != "-" => token.to_owned(),
        _ => {
            let mut text = String::new();
            std::io::stdin()
                .take(MAX_INPUT + 1)
                .read_to_string(&mut text)
                .context("cannot read a token from standard input")
                .map_err(Failure::configuration)?;
            if text.len() as u64 > MAX_INPUT {
                return Err(Failure::configuration(anyhow::anyhow!(
                    "standard input holds more than {MAX_INPUT} bytes: not a token"
                )));
            }
            text
        }
    };
    let (header, claims) = decode(&token).map_err(Failure::configuration)?;
    say!("NOT VERIFIED: the signature was not checked; do not trust these claims.")?;
    say!("header:\n{}", serde_json::to_string_pretty(&header)?)?;
    say!(
        "claims:\n{}",
        serde_json::to_string_pretty(&annotate(claims))?
    )
}
