//! `entra decode`: a JWT's header and claims, readable, not verified.

use std::io::Read as _;

use anyhow::Context as _;
use entra_cli::jwt::{annotate, decode};

use crate::Failure;

#[derive(Debug, clap::Args)]
pub(crate) struct DecodeArgs {
    /// The JWT; read from standard input when absent or `-`.
    token: Option<String>,
}

pub(crate) fn run(args: &DecodeArgs) -> Result<(), Failure> {
    let token = match args.token.as_deref() {
        Some(token) if token != "-" => token.to_owned(),
        _ => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read standard input")?;
            text
        }
    };
    let (header, claims) = decode(&token).map_err(Failure::configuration)?;
    println!("NOT VERIFIED: the signature was not checked; do not trust these claims.");
    println!("header:\n{}", serde_json::to_string_pretty(&header)?);
    println!(
        "claims:\n{}",
        serde_json::to_string_pretty(&annotate(claims))?
    );
    Ok(())
}
