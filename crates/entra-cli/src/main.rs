//! `entra`: Microsoft Entra ID tokens for confidential applications, from the command line.
//!
//! - `entra token client-assertion|on-behalf-of ...` gets a token through either credential;
//! - `entra decode [JWT]` shows a JWT's header and claims (unverified);
//! - `entra demo` runs both flows against an embedded emulator, offline;
//! - `entra emulator` runs the offline Entra ID emulator.
//!
//! Each failure is said once, on standard error, and its kind is the exit status
//! ([`failure::EXIT_STATUS_HELP`]).

#![forbid(unsafe_code)]

mod decode;
mod demo;
mod emulator;
mod failure;
mod output;
mod token;

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub(crate) use failure::Failure;

/// Microsoft Entra ID access tokens for confidential applications.
#[derive(Debug, Parser)]
#[command(name = "entra", version, about, after_help = failure::EXIT_STATUS_HELP)]
struct Cli {
    /// Log more to standard error: -v the library's warnings (a failure is then logged as well
    /// as said on the `error:` line), -vv its debug messages, -vvv everything. ENTRA_LOG, a
    /// tracing filter such as `entra_identity=debug`, replaces this.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
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
    #[command(after_help = failure::EXIT_STATUS_HELP)]
    Emulator(emulator::EmulatorArgs),
}

/// The log filter for `-v` given `verbose` times, unless ENTRA_LOG gives one.
///
/// By default the library's own report of a failed token request is off: the CLI says the
/// same failure on its `error:` line, in its own words. So are the TLS verifier's errors,
/// which the error's causes carry. Warnings about what went on despite a problem (a cache
/// that could not be written, CA certificates ignored) stay.
fn log_filter(verbose: u8) -> tracing_subscriber::EnvFilter {
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("ENTRA_LOG") {
        return filter;
    }
    tracing_subscriber::EnvFilter::new(match verbose {
        0 => "warn,entra_identity::credential=error,rustls_platform_verifier=off",
        1 => "warn",
        2 => "warn,entra_identity=debug",
        _ => "debug,entra_identity=trace",
    })
}

/// Colour only for a person: standard error is a terminal and NO_COLOR is unset or empty.
fn colour() -> bool {
    std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
}

/// Log output without carriage returns: a library message can quote Entra's CR LF
/// descriptions, which would garble a terminal line or show as `^M` in a file.
struct PlainLines<W>(W);

impl<W: std::io::Write> std::io::Write for PlainLines<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for part in buf.split(|&byte| byte == b'\r') {
            self.0.write_all(part)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(log_filter(cli.verbose))
        .with_ansi(colour())
        .with_writer(|| PlainLines(std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            let failure =
                Failure::from(anyhow::Error::new(error).context("cannot start the async runtime"));
            failure.report();
            return ExitCode::from(failure.status().code());
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
            failure.report();
            ExitCode::from(failure.status().code())
        }
    }
}
