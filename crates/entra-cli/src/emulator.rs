//! `entra emulator`: the offline Entra ID emulator as a process.

use std::path::PathBuf;

use anyhow::Context as _;
use entra_emulator::{Emulator, EmulatorConfig};

use crate::Failure;
use crate::failure::Status;
use crate::output::say;

#[derive(Debug, clap::Args)]
pub(crate) struct EmulatorArgs {
    /// A TOML configuration file (see the entra-emulator crate's `EmulatorConfig`).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The port to listen on; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Where to write the CA and application key material.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Where to write the info file; `<state dir>/info.json` by default.
    #[arg(long, value_name = "FILE")]
    info_file: Option<PathBuf>,
}

pub(crate) async fn run(args: EmulatorArgs) -> Result<(), Failure> {
    let config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))
                .map_err(Failure::configuration)?;
            EmulatorConfig::from_toml(&text)
                .with_context(|| format!("invalid configuration in {}", path.display()))
                .map_err(Failure::configuration)?
        }
        None => EmulatorConfig::sample(),
    };
    let state_dir = match args.state_dir {
        Some(dir) => dir,
        None => std::env::temp_dir().join(format!("entra-emulator-{}", std::process::id())),
    };
    let emulator = Emulator::builder()
        .config(config)
        .port(args.port)
        .state_dir(&state_dir)
        .start()
        .await
        .map_err(start_failure)?;
    let info_file = args
        .info_file
        .unwrap_or_else(|| state_dir.join("info.json"));
    emulator
        .write_info_file(&info_file)
        .context("cannot write the info file")
        .map_err(Failure::configuration)?;

    say!("entra emulator listening on {}", emulator.url())?;
    say!("  CA certificate: {}", emulator.ca_pem_path().display())?;
    say!("  info file:      {}", info_file.display())?;
    for tenant in emulator.info().tenants {
        say!("  tenant {} ({})", tenant.id, tenant.domains.join(", "))?;
        for app in tenant.applications {
            say!("    application {} {}", app.client_id, app.name)?;
        }
        for user in tenant.users {
            say!("    user {} {}", user.object_id, user.upn)?;
        }
    }
    say!("Press Ctrl-C to stop.")?;

    shutdown_signal().await;
    emulator.shutdown();
    Ok(())
}

/// Why the emulator did not start: what the user gave (a port in use, a configuration, a
/// directory) is a configuration failure.
fn start_failure(error: entra_emulator::Error) -> Failure {
    match &error {
        entra_emulator::Error::Bind { address, source }
            if source.kind() == std::io::ErrorKind::AddrInUse =>
        {
            Failure::configuration(anyhow::anyhow!(
                "cannot start the emulator: port {} is in use; choose another with --port, \
                 or --port 0 for a free one",
                address.port()
            ))
        }
        entra_emulator::Error::Bind { .. }
        | entra_emulator::Error::Config(_)
        | entra_emulator::Error::Io { .. } => {
            Failure::configuration(anyhow::Error::new(error).context("cannot start the emulator"))
        }
        _ => Failure::new(
            Status::Internal,
            anyhow::Error::new(error).context("cannot start the emulator"),
        ),
    }
}

/// Waits for Ctrl-C or, on Unix, SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
