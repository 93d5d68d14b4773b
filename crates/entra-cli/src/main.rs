//! `entra`: Microsoft Entra ID tokens for confidential applications, from the command line.
//!
//! - `entra token client-assertion|on-behalf-of ...` gets a token through either credential;
//! - `entra decode [JWT]` shows a JWT's header and claims (unverified);
//! - `entra demo` runs both flows against an embedded emulator, offline;
//! - `entra emulator` runs the offline Entra ID emulator.

#![forbid(unsafe_code)]

mod decode;
mod demo;
mod emulator;
mod token;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit status for a failed authentication (Entra ID refused, or could not be reached).
const EXIT_AUTHENTICATION: u8 = 3;
/// Exit status for an invalid configuration (bad flags values, unreadable files).
const EXIT_CONFIGURATION: u8 = 4;
/// Exit status for anything else.
const EXIT_FAILURE: u8 = 1;

/// Microsoft Entra ID access tokens for confidential applications.
#[derive(Debug, Parser)]
#[command(name = "entra", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Get an access token through a credential.
    ///
    /// Secrets are never taken as flag values: the client secret and certificate password are
    /// read from environment variables, assertions and user tokens from files or a command.
    #[command(subcommand)]
    Token(Box<token::TokenCommand>),
    /// Show a JWT's header and claims. The signature is NOT verified.
    Decode(decode::DecodeArgs),
    /// Run both credentials against an embedded emulator, offline, and explain what happens.
    Demo,
    /// Run the offline Entra ID emulator on 127.0.0.1 until interrupted, or mint a token
    /// from the running one.
    ///
    /// With no --config it registers the documented sample: tenant
    /// contoso.onmicrosoft.com with a middle-tier API (secret and certificate), a workload
    /// with a federated credential, a downstream API and one user. It writes a JSON info file
    /// naming its URL, its CA certificate and every credential. `mint-user-token` and
    /// `mint-federated-token` print a token for `entra token` from the running emulator.
    Emulator(emulator::EmulatorArgs),
}

/// A failure with the exit status it deserves.
#[derive(Debug)]
pub(crate) struct Failure {
    status: u8,
    error: anyhow::Error,
}

impl Failure {
    pub(crate) fn authentication(error: impl Into<anyhow::Error>) -> Self {
        Self {
            status: EXIT_AUTHENTICATION,
            error: error.into(),
        }
    }

    pub(crate) fn configuration(error: impl Into<anyhow::Error>) -> Self {
        Self {
            status: EXIT_CONFIGURATION,
            error: error.into(),
        }
    }
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(error: E) -> Self {
        Self {
            status: EXIT_FAILURE,
            error: error.into(),
        }
    }
}

/// Whether a TLS certificate the server presented was refused, somewhere in `error`'s causes.
fn refused_certificate(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        // The HTTP stack wraps the TLS error in I/O errors (nested), whose `source()` skips
        // what they wrap: look inside each.
        let mut inner: &(dyn std::error::Error + 'static) = cause;
        while let Some(wrapped) = inner
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            inner = wrapped;
        }
        matches!(
            inner.downcast_ref::<rustls::Error>(),
            Some(rustls::Error::InvalidCertificate(_))
        )
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ENTRA_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Token(command) => token::run(*command).await,
            Command::Decode(args) => decode::run(&args),
            Command::Demo => demo::run().await,
            Command::Emulator(args) => emulator::run(args).await,
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            // The message says what failed and its causes why, down to the root cause.
            eprintln!("error: {}", failure.error);
            let mut previous = failure.error.to_string();
            for cause in failure.error.chain().skip(1) {
                let text = cause.to_string();
                // Some libraries' errors repeat their cause's text: show it once.
                if !previous.contains(&text) {
                    eprintln!("  caused by: {text}");
                }
                previous = text;
            }
            if refused_certificate(&failure.error) {
                // The library names its own options; this is how the CLI gives a CA.
                eprintln!(
                    "  hint: to trust a private CA (the emulator's, a proxy's), pass its PEM \
                     certificate with --ca-file PATH, or name a PEM file in SSL_CERT_FILE"
                );
            }
            ExitCode::from(failure.status)
        }
    }
}
