//! `entra token`: an access token through either credential.

use std::io::Read as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, anyhow};
use entra_identity::{
    AccessTokenInfo, BuildError, CertificateError, ClientAssertionCredential, CredentialError,
    FailureKind, FileAssertion, HttpOptions, OnBehalfOfCredential, TokenCachePersistenceOptions,
    TokenCredential, TokenRequestOptions,
};
use serde_json::json;

use crate::failure::{EXIT_STATUS_HELP, Failure};
use crate::output::say;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum TokenCommand {
    /// A service principal proves itself with a JWT assertion (workload identity, a federated
    /// credential, an assertion signed elsewhere).
    #[command(after_help = EXIT_STATUS_HELP)]
    ClientAssertion {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        assertion: AssertionArgs,
    },
    /// A middle-tier API exchanges a user's token for a token to a downstream API.
    #[command(after_help = EXIT_STATUS_HELP)]
    OnBehalfOf {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        assertion: AssertionArgs,
        #[command(flatten)]
        client: ClientArgs,
        /// The user's access token (the user assertion): a file, or `-` for standard input.
        #[arg(long, value_name = "FILE|-")]
        user_assertion_file: String,
        /// Skip instance discovery (validation of the authority host).
        #[arg(long)]
        disable_instance_discovery: bool,
    },
}

/// What every credential takes.
#[derive(Debug, clap::Args)]
pub(crate) struct CommonArgs {
    /// The tenant (directory) ID or a domain of it.
    #[arg(long, env = "AZURE_TENANT_ID", hide_env_values = true)]
    tenant_id: String,
    /// The application's client ID.
    #[arg(long, env = "AZURE_CLIENT_ID", hide_env_values = true)]
    client_id: String,
    /// A scope to request; repeat for several.
    #[arg(long = "scope", required = true, value_name = "SCOPE")]
    scopes: Vec<String>,
    /// The authority host (https only), such as login.microsoftonline.us.
    #[arg(long, env = "AZURE_AUTHORITY_HOST", hide_env_values = true)]
    authority: Option<String>,
    /// A tenant requests may name besides the configured one; `*` for any. Repeatable.
    #[arg(
        long = "additionally-allowed-tenant",
        env = "AZURE_ADDITIONALLY_ALLOWED_TENANTS",
        value_delimiter = ';',
        hide_env_values = true,
        value_name = "TENANT"
    )]
    additionally_allowed_tenants: Vec<String>,
    /// Request the token from this tenant instead of the configured one.
    #[arg(long = "request-tenant", value_name = "TENANT")]
    request_tenant: Option<String>,
    /// Additional claims (a JSON object), such as a claims challenge from a resource.
    #[arg(long, value_name = "JSON", value_parser = json_object)]
    claims: Option<String>,
    /// Request a Continuous Access Evaluation token.
    #[arg(long)]
    enable_cae: bool,
    /// A PEM file of extra trusted CA certificates (a private cloud, the emulator).
    #[arg(long, value_name = "PEM")]
    ca_file: Option<PathBuf>,
    /// Keep tokens in the persistent cache of this name, shared with other processes and
    /// with azure-identity: encrypted by the platform's secret store (on Linux the Secret
    /// Service, e.g. an unlocked GNOME Keyring), else refused unless unencrypted storage is
    /// allowed.
    #[arg(long, value_name = "NAME")]
    cache_name: Option<String>,
    /// Allow the persistent cache to be stored unencrypted when no encryption is available.
    #[arg(long, requires = "cache_name")]
    allow_unencrypted_cache: bool,
    /// What to print: JSON shaped as `az account get-access-token` prints it (accessToken,
    /// expiresOn and refreshOn in local time, expires_on in POSIX seconds, tenant as the
    /// token's tenant ID, tokenType), the bare token, or an Authorization header line.
    #[arg(long, value_enum, default_value_t = Output::Json)]
    output: Output,
}

/// Client assertions from a file or a command.
#[derive(Debug, clap::Args)]
pub(crate) struct AssertionArgs {
    /// A file holding the client assertion, read again for every request. Without this flag
    /// or --assertion-command, AZURE_FEDERATED_TOKEN_FILE names the file (for on-behalf-of,
    /// only when no other client credential is given).
    // Not `env`: clap would count the variable as the flag, so that --assertion-command,
    // --certificate or --client-secret-env would conflict with it wherever it is set (every
    // workload identity pod).
    #[arg(long, value_name = "FILE")]
    assertion_file: Option<PathBuf>,
    /// A command (run by `sh -c`) whose standard output is the client assertion.
    #[arg(long, value_name = "COMMAND", conflicts_with = "assertion_file")]
    assertion_command: Option<String>,
}

/// A secret or a certificate.
#[derive(Debug, clap::Args)]
pub(crate) struct ClientArgs {
    /// Read the client secret from this environment variable. AZURE_CLIENT_SECRET is used when
    /// no other client credential is given.
    // One client credential: the others are usage errors (they live in `AssertionArgs` too,
    // which the client-assertion command has without this struct, hence the conflicts here).
    #[arg(
        long,
        value_name = "VARIABLE",
        conflicts_with_all = ["certificate", "assertion_file", "assertion_command"]
    )]
    client_secret_env: Option<String>,
    /// A certificate with its private key: PEM or PKCS#12.
    #[arg(
        long,
        env = "AZURE_CLIENT_CERTIFICATE_PATH",
        hide_env_values = true,
        value_name = "FILE",
        conflicts_with_all = ["assertion_file", "assertion_command"]
    )]
    certificate: Option<PathBuf>,
    /// Read the certificate's password from this environment variable.
    #[arg(
        long,
        value_name = "VARIABLE",
        default_value = "AZURE_CLIENT_CERTIFICATE_PASSWORD"
    )]
    certificate_password_env: String,
    /// Send the certificate chain (x5c) for subject name/issuer authentication.
    // The variable as azure-identity reads it, `true` or `1` (any case); empty, `false`, `0`,
    // `no`, `off` are false rather than a usage error.
    #[arg(
        long,
        env = "AZURE_CLIENT_SEND_CERTIFICATE_CHAIN",
        hide_env_values = true,
        value_parser = clap::builder::FalseyValueParser::new()
    )]
    send_certificate_chain: bool,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Output {
    Json,
    Token,
    Header,
}

pub(crate) async fn run(command: TokenCommand) -> Result<(), Failure> {
    let (common, info) = match command {
        TokenCommand::ClientAssertion { common, assertion } => {
            let source = assertion_source(&assertion)?
                .or_else(federated_token_file)
                .ok_or_else(|| {
                    Failure::usage(anyhow!(
                        "a client assertion is needed: give --assertion-file or \
                         --assertion-command, or set AZURE_FEDERATED_TOKEN_FILE"
                    ))
                })?;
            let mut builder = ClientAssertionCredential::builder(
                &common.tenant_id,
                &common.client_id,
                BoxedSource(source),
            )
            .additionally_allowed_tenants(common.additionally_allowed_tenants.clone())
            .http_options(http_options(&common)?);
            if let Some(authority) = &common.authority {
                builder = builder.authority(authority);
            }
            if let Some(persistence) = persistence(&common) {
                builder = builder.cache_persistence_options(persistence);
            }
            let credential = builder
                .build()
                .map_err(|error| build_failure(error, None))?;
            let info = request(&credential, &common).await?;
            (common, info)
        }
        TokenCommand::OnBehalfOf {
            common,
            assertion,
            client,
            user_assertion_file,
            disable_instance_discovery,
        } => {
            let user_assertion = read_user_assertion(&user_assertion_file)?;
            let mut builder =
                OnBehalfOfCredential::builder(&common.tenant_id, &common.client_id, user_assertion)
                    .additionally_allowed_tenants(common.additionally_allowed_tenants.clone())
                    .disable_instance_discovery(disable_instance_discovery)
                    .http_options(http_options(&common)?);
            if let Some(authority) = &common.authority {
                builder = builder.authority(authority);
            }
            if let Some(persistence) = persistence(&common) {
                builder = builder.cache_persistence_options(persistence);
            }
            builder = client_credential(builder, &client, &assertion)?;
            let credential = builder
                .build()
                .map_err(|error| build_failure(error, Some(&client)))?;
            let info = request(&credential, &common).await?;
            (common, info)
        }
    };
    print(&common, &info)
}

async fn request(
    credential: &impl TokenCredential,
    common: &CommonArgs,
) -> Result<AccessTokenInfo, Failure> {
    let scopes: Vec<&str> = common.scopes.iter().map(String::as_str).collect();
    let mut options = TokenRequestOptions::new().enable_cae(common.enable_cae);
    options.claims = common.claims.as_deref();
    options.tenant_id = common.request_tenant.as_deref();
    credential
        .get_token_info(&scopes, options)
        .await
        .map_err(|error| credential_failure(error, common))
}

/// A failed token request, by kind: what Entra ID refused, what is wrong here, and what may
/// work later.
fn credential_failure(error: CredentialError, common: &CommonArgs) -> Failure {
    let Some(authentication) = error.client_authentication() else {
        // An invalid request (a malformed tenant), or a credential that cannot work here (a
        // persistent cache without a secret store).
        return Failure::configuration(error);
    };
    match authentication.kind() {
        FailureKind::TenantNotAllowed => {
            let Some(tenant) = common.request_tenant.as_deref() else {
                return Failure::configuration(error);
            };
            Failure::configuration(anyhow!(
                "tokens for tenant {tenant} are not allowed: pass --additionally-allowed-tenant \
                 {tenant} (or add it to AZURE_ADDITIONALLY_ALLOWED_TENANTS, `;`-separated), or \
                 `*` to allow any tenant"
            ))
        }
        // The assertion file or command is ours to fix, not Entra's.
        FailureKind::ClientAssertion => Failure::configuration(error),
        _ if refused_certificate(&error) => Failure::configuration(error),
        FailureKind::Throttled => Failure::transient(error),
        _ if authentication.is_transient() => Failure::transient(error),
        // Failing for good before Entra ID refused anything: an authority whose host does
        // not resolve, or that does not answer as Entra ID does (--authority), or that is not
        // well known (--disable-instance-discovery).
        FailureKind::Transport
        | FailureKind::Timeout
        | FailureKind::InvalidResponse
        | FailureKind::InstanceDiscovery => Failure::configuration(error),
        _ => Failure::authentication(error),
    }
}

/// Whether a TLS certificate the server presented was refused, somewhere in `error`'s causes:
/// a missing --ca-file, not a network failure.
fn refused_certificate(error: &CredentialError) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = cause {
        // The HTTP stack wraps the TLS error in I/O errors (nested), whose `source()` skips
        // what they wrap: look inside each.
        let mut inner = error;
        while let Some(wrapped) = inner
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            inner = wrapped;
        }
        if matches!(
            inner.downcast_ref::<rustls::Error>(),
            Some(rustls::Error::InvalidCertificate(_))
        ) {
            return true;
        }
        cause = error.source();
    }
    false
}

/// A credential that cannot be built, in the CLI's words where the library names its own
/// parameters.
fn build_failure(error: BuildError, client: Option<&ClientArgs>) -> Failure {
    let message = match (&error, client) {
        (BuildError::InvalidAuthority { authority }, _) => format!(
            "--authority (or AZURE_AUTHORITY_HOST) '{authority}' is invalid: it must be an \
             https URL"
        ),
        (BuildError::InvalidTenantId, _) => "--tenant-id (or AZURE_TENANT_ID) is invalid: a \
             tenant is a GUID or a domain name such as contoso.onmicrosoft.com"
            .to_owned(),
        (BuildError::EmptyUserAssertion, _) => {
            "the user assertion (--user-assertion-file) is empty".to_owned()
        }
        (BuildError::InvalidCertificate(reason), Some(client)) => {
            let path = client
                .certificate
                .as_deref()
                .map(|path| path.display().to_string())
                .unwrap_or_default();
            let variable = &client.certificate_password_env;
            match reason {
                CertificateError::WrongPassword | CertificateError::PasswordRequired
                    if non_empty_var(variable).is_none() =>
                {
                    format!(
                        "the certificate {path} is protected by a password: set {variable} \
                         (or name another variable with --certificate-password-env)"
                    )
                }
                CertificateError::WrongPassword => {
                    format!("the password in {variable} does not open the certificate {path}")
                }
                _ => format!("cannot use the certificate {path}: {reason}"),
            }
        }
        _ => return Failure::configuration(error),
    };
    Failure::configuration(anyhow!(message))
}

/// `--claims` must be a JSON object: checked before anything is sent.
fn json_object(text: &str) -> Result<String, String> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(_)) => Ok(text.to_owned()),
        Ok(_) => Err("a JSON object is expected, such as {\"access_token\":{...}}".to_owned()),
        Err(error) => Err(format!("not JSON: {error}")),
    }
}

fn print(common: &CommonArgs, info: &AccessTokenInfo) -> Result<(), Failure> {
    let token = info.token.expose_secret();
    match common.output {
        Output::Token => say!("{token}"),
        Output::Header => say!("Authorization: {} {token}", info.token_type),
        Output::Json => {
            // As az: the tenant the token is for (its `tid`); the tenant asked for when the
            // token is not a JWT.
            let tenant = entra_cli::jwt::decode(token)
                .ok()
                .and_then(|(_, claims)| claims.get("tid")?.as_str().map(str::to_owned))
                .unwrap_or_else(|| {
                    common
                        .request_tenant
                        .clone()
                        .unwrap_or_else(|| common.tenant_id.clone())
                });
            let document = json!({
                "accessToken": token,
                "expiresOn": az_time(info.expires_on),
                "expires_on": info.expires_on,
                "tokenType": info.token_type,
                "tenant": tenant,
                "refreshOn": info.refresh_on.and_then(az_time),
            });
            say!("{}", serde_json::to_string_pretty(&document)?)
        }
    }
}

/// A time as `az account get-access-token` prints `expiresOn`: local time (the TZ variable,
/// else the system's zone), `%Y-%m-%d %H:%M:%S.%f`. Our times are whole seconds.
fn az_time(unix: i64) -> Option<String> {
    let local = jiff::Timestamp::from_second(unix)
        .ok()?
        .to_zoned_datetime(jiff::tz::TimeZone::system());
    Some(format!("{}.000000", local.strftime("%Y-%m-%d %H:%M:%S")))
}

fn http_options(common: &CommonArgs) -> Result<HttpOptions, Failure> {
    let mut options = HttpOptions::default();
    if let Some(path) = &common.ca_file {
        let pem = read_file_capped(path, MAX_CA_FILE)
            .with_context(|| format!("cannot read the CA file {}", path.display()))
            .map_err(Failure::configuration)?;
        let pem = String::from_utf8(pem).map_err(|_| {
            Failure::configuration(anyhow!("the CA file {} is not PEM text", path.display()))
        })?;
        options = options.trust_pem(pem);
    }
    Ok(options)
}

fn persistence(common: &CommonArgs) -> Option<TokenCachePersistenceOptions> {
    common.cache_name.as_ref().map(|name| {
        TokenCachePersistenceOptions::new()
            .name(name)
            .allow_unencrypted_storage(common.allow_unencrypted_cache)
    })
}

/// The assertion source the flags name, if any.
fn assertion_source(
    args: &AssertionArgs,
) -> Result<Option<Box<dyn entra_identity::ClientAssertionSource>>, Failure> {
    if let Some(command) = &args.assertion_command {
        let command = Arc::new(command.clone());
        let source = move || {
            let command = command.clone();
            async move { run_assertion_command(&command).await }
        };
        return Ok(Some(Box::new(source)));
    }
    Ok(args.assertion_file.as_ref().map(|path| {
        Box::new(FileAssertion::new(path)) as Box<dyn entra_identity::ClientAssertionSource>
    }))
}

async fn run_assertion_command(command: &str) -> Result<String, entra_identity::BoxError> {
    let output = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .await
        .map_err(|error| format!("cannot run the assertion command: {error}"))?;
    if !output.status.success() {
        return Err(format!("the assertion command failed with {}", output.status).into());
    }
    let assertion = String::from_utf8(output.stdout)
        .map_err(|_| "the assertion command printed something that is not UTF-8")?;
    let assertion = assertion.trim().to_owned();
    if assertion.is_empty() {
        return Err("the assertion command printed nothing".into());
    }
    Ok(assertion)
}

/// The file AZURE_FEDERATED_TOKEN_FILE names, when set.
fn federated_token_file() -> Option<Box<dyn entra_identity::ClientAssertionSource>> {
    std::env::var_os("AZURE_FEDERATED_TOKEN_FILE")
        .filter(|path| !path.is_empty())
        .map(|path| {
            Box::new(FileAssertion::new(PathBuf::from(path)))
                as Box<dyn entra_identity::ClientAssertionSource>
        })
}

/// An environment variable's value, unless unset or empty.
fn non_empty_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// The one client credential: a secret, a certificate or an assertion.
fn client_credential(
    builder: entra_identity::OnBehalfOfCredentialBuilder,
    client: &ClientArgs,
    assertion: &AssertionArgs,
) -> Result<entra_identity::OnBehalfOfCredentialBuilder, Failure> {
    let mut source = assertion_source(assertion)?;
    let mut secret = match client.client_secret_env.as_deref() {
        Some(variable) => Some(non_empty_var(variable).ok_or_else(|| {
            Failure::configuration(anyhow!(
                "the environment variable {variable} holds no client secret"
            ))
        })?),
        None => None,
    };
    // At most one of them: clap refuses the others together (a usage error).
    let given = secret.is_some() || client.certificate.is_some() || source.is_some();
    // AZURE_FEDERATED_TOKEN_FILE, then AZURE_CLIENT_SECRET, count only when nothing else
    // was asked for.
    if !given {
        source = federated_token_file();
        if source.is_none() {
            secret = non_empty_var("AZURE_CLIENT_SECRET");
        }
    }
    let builder = if let Some(secret) = secret {
        builder.client_secret(secret)
    } else if let Some(path) = &client.certificate {
        let bytes = read_file_capped(path, MAX_CERTIFICATE)
            .with_context(|| format!("cannot read the certificate {}", path.display()))
            .map_err(Failure::configuration)?;
        let mut builder = builder
            .client_certificate(bytes)
            .send_certificate_chain(client.send_certificate_chain);
        let password = std::env::var(&client.certificate_password_env).ok();
        if let Some(password) = password.filter(|password| !password.is_empty()) {
            builder = builder.password(password);
        }
        builder
    } else if let Some(source) = source {
        builder.client_assertion_func(BoxedSource(source))
    } else {
        return Err(Failure::usage(anyhow!(
            "a client credential is needed: --client-secret-env (or AZURE_CLIENT_SECRET), \
             --certificate (or AZURE_CLIENT_CERTIFICATE_PATH), --assertion-file (or \
             AZURE_FEDERATED_TOKEN_FILE) or --assertion-command"
        )));
    };
    Ok(builder)
}

/// A boxed source is a source.
struct BoxedSource(Box<dyn entra_identity::ClientAssertionSource>);

impl entra_identity::ClientAssertionSource for BoxedSource {
    fn client_assertion(&self) -> entra_identity::AssertionFuture<'_> {
        self.0.client_assertion()
    }
}

/// The most read of a user assertion: a token with many claims is a few kilobytes.
const MAX_USER_ASSERTION: u64 = 1024 * 1024;
/// The most read of a certificate file; the library accepts 1 MiB.
const MAX_CERTIFICATE: u64 = 4 * 1024 * 1024;
/// The most read of a CA file, as much as the library reads of SSL_CERT_FILE.
const MAX_CA_FILE: u64 = 4 * 1024 * 1024;

fn read_user_assertion(path: &str) -> Result<String, Failure> {
    let bytes = if path == "-" {
        read_capped(std::io::stdin(), MAX_USER_ASSERTION)
            .context("cannot read the user assertion from standard input")
    } else {
        std::fs::File::open(path)
            .and_then(|file| read_capped(file, MAX_USER_ASSERTION))
            .with_context(|| format!("cannot read the user assertion {path}"))
    };
    let text = String::from_utf8(bytes.map_err(Failure::configuration)?).map_err(|_| {
        Failure::configuration(anyhow!("the user assertion {path} is not UTF-8 text"))
    })?;
    Ok(text.trim().to_owned())
}

/// A file's bytes, at most `limit` of them: a larger file is an error, not a long read.
fn read_file_capped(path: &std::path::Path, limit: u64) -> std::io::Result<Vec<u8>> {
    std::fs::File::open(path).and_then(|file| read_capped(file, limit))
}

/// What `reader` gives, at most `limit` bytes.
fn read_capped(reader: impl std::io::Read, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::other(format!("larger than {limit} bytes")));
    }
    Ok(bytes)
}
