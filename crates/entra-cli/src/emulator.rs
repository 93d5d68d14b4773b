//! `entra emulator`: the offline Entra ID emulator as a process, and the tokens a test needs
//! from it (a user's access token, a federated token), minted through its admin API.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};
use entra_emulator::{
    Emulator, EmulatorConfig, EmulatorInfo, FederatedTokenRequest, UserTokenRequest,
};
use serde_json::Value;

use crate::Failure;
use crate::failure::Status;
use crate::output::say;

/// The environment variable naming the info file, for the emulator and the mint commands.
const INFO_FILE_ENV: &str = "ENTRA_EMULATOR_INFO";
/// The most a mint answer may hold: a token and a few fields.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// A session, for `entra emulator --help` (docs/emulator.md has it with its output).
const SESSION_HELP: &str = "\
A session (bash, jq; docs/emulator.md shows it with its output):

  export ENTRA_EMULATOR_INFO=$PWD/emulator.json
  entra emulator > emulator.log &
  until grep -q '^Press Ctrl-C' emulator.log; do sleep 0.1; done
  AUTHORITY=$(jq -r .url \"$ENTRA_EMULATOR_INFO\"); CA=$(jq -r .ca_pem_path \"$ENTRA_EMULATOR_INFO\")
  COMMON=(--tenant-id contoso.onmicrosoft.com --authority \"$AUTHORITY\" --ca-file \"$CA\"
          --scope api://downstream/.default)
  API=11111111-2222-3333-4444-555555555555 WORKLOAD=22222222-3333-4444-5555-666666666666

  # On behalf of a user, the middle tier proving itself with its secret:
  export AZURE_CLIENT_SECRET=$(jq -r '.tenants[0].applications[0].secrets[0]' \"$ENTRA_EMULATOR_INFO\")
  entra emulator mint-user-token --audience api://$API \\
    | entra token on-behalf-of \"${COMMON[@]}\" --client-id $API --user-assertion-file -

  # Workload identity, a federated token minted for every request:
  entra token client-assertion \"${COMMON[@]}\" --client-id $WORKLOAD \\
    --assertion-command \"entra emulator mint-federated-token\"

  kill %1; wait   # stops the emulator, which removes its private state directory";

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, after_long_help = SESSION_HELP)]
pub(crate) struct EmulatorArgs {
    #[command(subcommand)]
    command: Option<EmulatorCommand>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, clap::Subcommand)]
enum EmulatorCommand {
    /// Print a user's access token for an application (the user assertion that
    /// `entra token on-behalf-of --user-assertion-file -` exchanges), minted by the running
    /// emulator.
    MintUserToken(MintUserTokenArgs),
    /// Print a federated token for a subject from the emulator's own issuer (the client
    /// assertion of `entra token client-assertion` and workload identity).
    MintFederatedToken(MintFederatedTokenArgs),
}

/// Running the emulator.
#[derive(Debug, clap::Args)]
struct RunArgs {
    /// A TOML configuration file (see the entra-emulator crate's `EmulatorConfig`).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The port to listen on; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Where to write the CA and application key material; kept on exit. Without it, a new
    /// private directory (mode 0700, random name) in the temporary directory, removed on exit,
    /// Ctrl-C or SIGTERM.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Where to write the info file; `<state dir>/info.json` by default.
    #[arg(long, value_name = "FILE", env = INFO_FILE_ENV)]
    info_file: Option<PathBuf>,
}

/// Where the running emulator is described.
#[derive(Debug, clap::Args)]
struct InfoFileArg {
    /// The running emulator's info file (as `entra emulator` printed it).
    #[arg(long, value_name = "FILE", env = INFO_FILE_ENV)]
    info_file: PathBuf,
}

#[derive(Debug, clap::Args)]
struct MintUserTokenArgs {
    #[command(flatten)]
    info: InfoFileArg,
    /// The application the token is for (the middle-tier API): its client ID or application
    /// ID URI.
    #[arg(long, value_name = "APP")]
    audience: String,
    /// The user, by object ID or UPN; the first user of the info file by default.
    #[arg(long, value_name = "USER")]
    user: Option<String>,
    /// The issuing tenant; the user's home tenant by default.
    #[arg(long, value_name = "TENANT")]
    tenant: Option<String>,
    /// A delegated permission for the token's `scp`; repeat for several (`access_as_user`
    /// when none).
    #[arg(long = "scope", value_name = "SCOPE")]
    scopes: Vec<String>,
    /// Seconds until the token expires; negative for an expired token.
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true)]
    expires_in: Option<i64>,
}

#[derive(Debug, clap::Args)]
struct MintFederatedTokenArgs {
    #[command(flatten)]
    info: InfoFileArg,
    /// The token's subject (`sub`); the first federated credential's subject that the
    /// emulator issues for, by default.
    #[arg(long, value_name = "SUBJECT")]
    subject: Option<String>,
    /// The token's audience; `api://AzureADTokenExchange` by default.
    #[arg(long, value_name = "AUDIENCE")]
    audience: Option<String>,
    /// Seconds until the token expires; negative for an expired token.
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true)]
    expires_in: Option<i64>,
}

pub(crate) async fn run(args: EmulatorArgs) -> Result<(), Failure> {
    match args.command {
        None => serve(args.run).await,
        Some(EmulatorCommand::MintUserToken(mint)) => mint_user_token(mint).await,
        Some(EmulatorCommand::MintFederatedToken(mint)) => mint_federated_token(mint).await,
    }
}

async fn serve(args: RunArgs) -> Result<(), Failure> {
    // Listen for signals before anything is created, so that none is missed (and none kills
    // the process, leaving the state directory behind) however early it comes.
    let shutdown = ShutdownSignal::listen()?;
    raise_descriptor_limit();
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
    let mut builder = Emulator::builder().config(config).port(args.port);
    // Without --state-dir the emulator makes its own private temporary directory and removes
    // it when dropped: on return from here, whether the start failed or a signal came.
    if let Some(dir) = &args.state_dir {
        builder = builder.state_dir(dir);
    }
    let emulator = builder.start().await.map_err(start_failure)?;
    let state_dir = emulator
        .ca_pem_path()
        .parent()
        .map(Path::to_owned)
        .unwrap_or_default();
    let info_file = args
        .info_file
        .unwrap_or_else(|| state_dir.join("info.json"));
    emulator
        .write_info_file(&info_file)
        .context("cannot write the info file")
        .map_err(Failure::configuration)?;

    say!("entra emulator listening on {}", emulator.url())?;
    say!("  state directory: {}", state_dir.display())?;
    say!("  CA certificate:  {}", emulator.ca_pem_path().display())?;
    say!("  info file:       {}", info_file.display())?;
    for tenant in emulator.info().tenants {
        say!("  tenant {} ({})", tenant.id, tenant.domains.join(", "))?;
        for app in tenant.applications {
            say!("    application {} {}", app.client_id, app.name)?;
        }
        for user in tenant.users {
            say!("    user {} {}", user.object_id, user.upn)?;
        }
    }
    say!("  admin endpoints: {}/_emulator", emulator.url())?;
    say!("Press Ctrl-C to stop.")?;

    shutdown.wait().await;
    emulator.shutdown();
    Ok(())
}

async fn mint_user_token(args: MintUserTokenArgs) -> Result<(), Failure> {
    let info = read_info(&args.info.info_file)?;
    let user = match args.user {
        Some(user) => user,
        None => info
            .tenants
            .iter()
            .flat_map(|tenant| tenant.users.iter())
            .next()
            .map(|user| user.upn.clone())
            .ok_or_else(|| {
                Failure::configuration(anyhow!("the emulator has no user: pass --user"))
            })?,
    };
    let request = UserTokenRequest {
        user,
        audience: args.audience,
        tenant: args.tenant,
        scopes: args.scopes,
        expires_in_secs: args.expires_in,
        ..UserTokenRequest::default()
    };
    let answer = post_admin(&info, "/tokens/user", &serde_json::to_value(&request)?).await?;
    print_token(&answer, "access_token")
}

async fn mint_federated_token(args: MintFederatedTokenArgs) -> Result<(), Failure> {
    let info = read_info(&args.info.info_file)?;
    let subject = match args.subject {
        Some(subject) => subject,
        None => info
            .tenants
            .iter()
            .flat_map(|tenant| tenant.applications.iter())
            .flat_map(|app| app.federated_credentials.iter())
            .find(|credential| credential.issuer == info.federation_issuer)
            .map(|credential| credential.subject.clone())
            .ok_or_else(|| {
                Failure::configuration(anyhow!(
                    "no federated credential trusts the emulator's issuer: pass --subject"
                ))
            })?,
    };
    let request = FederatedTokenRequest {
        subject,
        audience: args.audience,
        expires_in_secs: args.expires_in,
    };
    let answer = post_admin(&info, "/tokens/federated", &serde_json::to_value(&request)?).await?;
    print_token(&answer, "token")
}

fn read_info(path: &Path) -> Result<EmulatorInfo, Failure> {
    let text = std::fs::read_to_string(path)
        .with_context(|| {
            format!(
                "cannot read the emulator's info file {} (is `entra emulator` running?)",
                path.display()
            )
        })
        .map_err(Failure::configuration)?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not an emulator info file", path.display()))
        .map_err(Failure::configuration)
}

/// Posts to an admin endpoint of the emulator the info file describes, trusting its CA only.
async fn post_admin(info: &EmulatorInfo, path: &str, body: &Value) -> Result<Value, Failure> {
    let ca = reqwest::Certificate::from_pem(info.ca_pem.as_bytes())
        .context("the info file's CA certificate is not valid PEM")
        .map_err(Failure::configuration)?;
    let client = reqwest::Client::builder()
        .tls_certs_only([ca])
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .context("cannot build the HTTP client")?;
    let url = format!("{}{path}", info.admin_url);
    let mut response = client
        .post(&url)
        .json(body)
        .send()
        .await
        .with_context(|| format!("cannot reach the emulator at {url} (is it running?)"))?;
    let status = response.status();
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.context("cannot read the answer")? {
        if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(anyhow!("the emulator's answer is too large").into());
        }
        bytes.extend_from_slice(&chunk);
    }
    let answer: Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("the emulator answered {status} with no JSON"))?;
    if !status.is_success() {
        let reason = answer["error"].as_str().unwrap_or("no reason given");
        return Err(Failure::configuration(anyhow!(
            "the emulator refused to mint the token: {reason}"
        )));
    }
    Ok(answer)
}

/// Prints the token alone on standard output, for a shell to pipe.
fn print_token(answer: &Value, field: &str) -> Result<(), Failure> {
    let token = answer[field]
        .as_str()
        .ok_or_else(|| anyhow!("the emulator's answer has no {field}"))?;
    say!("{token}")?;
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

/// Raises the soft limit on open files to the hard limit (at most 65,536): the emulator's
/// default connection cap is half the soft limit, and a soft limit of 1,024 (a common default)
/// would let a few hundred stalled clients make others wait.
fn raise_descriptor_limit() {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        const MOST: u64 = 65_536;
        let limit = getrlimit(Resource::Nofile);
        let wanted = limit.maximum.unwrap_or(MOST).min(MOST);
        if limit.current.is_some_and(|current| current < wanted) {
            // Best effort: the emulator works, with a lower cap, if this is refused.
            let _ = setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: Some(wanted),
                    maximum: limit.maximum,
                },
            );
        }
    }
}

/// Ctrl-C (SIGINT) and, on Unix, SIGTERM, listened for from creation.
struct ShutdownSignal {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignal {
    fn listen() -> Result<Self, Failure> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
                terminate: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {})
        }
    }

    async fn wait(self) {
        #[cfg(unix)]
        {
            let Self {
                mut interrupt,
                mut terminate,
            } = self;
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
