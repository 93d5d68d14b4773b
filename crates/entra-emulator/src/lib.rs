//! An offline, Microsoft Entra ID compatible token service, for tests and local development.
//!
//! The emulator serves HTTPS on loopback with a CA it generates, and speaks the parts of Entra
//! ID's v2.0 protocol that confidential applications use:
//!
//! - `POST /{tenant}/oauth2/v2.0/token` with `client_credentials` (a client secret, a
//!   certificate-signed client assertion, or a federated token), the on-behalf-of
//!   `jwt-bearer` grant, and `refresh_token`;
//! - `GET /{tenant}/v2.0/.well-known/openid-configuration` and
//!   `GET /{tenant}/discovery/v2.0/keys`, and their v1.0 counterparts
//!   `GET /{tenant}/.well-known/openid-configuration` and `GET /{tenant}/discovery/keys`;
//! - `GET /common/discovery/instance` (instance discovery, API versions 1.0 and 1.1).
//!
//! Errors carry Entra's body (`error`, `error_description` starting `AADSTSnnnn:`,
//! `error_codes`, `trace_id`, `correlation_id`, `timestamp`) and real AADSTS codes. Tokens are
//! RS256 JWTs. For tests it mints user tokens (the incoming assertion of on-behalf-of) and
//! federated tokens, logs requests with secrets redacted, counts them, and injects faults. The
//! same operations are available over HTTP under `/_emulator` (see [`admin`]).
//!
//! It is a separate implementation of the server side and shares no code with the
//! `entra-identity` client library, so that a misunderstanding of the protocol cannot hide in
//! both.
//!
//! ```no_run
//! # async fn example() -> Result<(), entra_emulator::Error> {
//! use entra_emulator::{Emulator, EmulatorConfig};
//!
//! let emulator = Emulator::builder().config(EmulatorConfig::sample()).start().await?;
//! let info = emulator.info();
//! let app = &info.tenants[0].applications[0];
//! println!("POST {}/{}/oauth2/v2.0/token as {}", emulator.url(), info.tenants[0].id, app.client_id);
//! // Trust emulator.ca_pem() in the HTTP client, then ask for a token.
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

mod aad_error;
pub mod admin;
pub mod config;
mod directory;
mod discovery;
mod info;
mod jwt;
mod observe;
mod pki;
mod resource;
mod server;
mod state;
mod token;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use crate::admin::{
    FederatedTokenRequest, Settings, SettingsUpdate, USER_CLIENT_APP_ID, UserTokenRequest,
};
pub use crate::config::{
    ApplicationConfig, CertificateConfig, EmulatorConfig, FederatedCredentialConfig, TenantConfig,
    TokenSettings, TokenSettingsUpdate, TrustedIssuerConfig, UserConfig,
};
pub use crate::info::{
    ApplicationInfo, CertificateInfo, EmulatorInfo, FederatedCredentialInfo, TenantInfo, UserInfo,
};
pub use crate::observe::{Counters, Fault, FaultRule, RequestRecord};
pub use crate::resource::SessionRevocation;

use crate::directory::{DEFAULT_FEDERATED_AUDIENCE, Directory, write_private};
use crate::jwt::SigningKey;
use crate::pki::CertificateAuthority;
use crate::state::{ExpiringMap, Shared};

/// The default cap on request bodies: far above any real token request.
const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;

/// The default header and body read timeouts, in milliseconds.
const DEFAULT_TIMEOUT_MS: u64 = 10_000;
/// The cap on connections served at once where the descriptor limit is unknown.
#[cfg(not(unix))]
const FALLBACK_MAX_CONNECTIONS: usize = 512;
/// The most connections served at once by default, whatever the descriptor limit.
const MOST_CONNECTIONS: usize = 16_384;

/// The default cap on connections served at once: half the file descriptors the process may
/// open (the other half is for everything else it does, such as the clients of an in-process
/// test), between 64 and 16,384.
fn default_max_connections() -> usize {
    #[cfg(unix)]
    {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        match limit.current {
            Some(soft) => usize::try_from(soft / 2)
                .unwrap_or(MOST_CONNECTIONS)
                .clamp(64, MOST_CONNECTIONS),
            None => MOST_CONNECTIONS,
        }
    }
    #[cfg(not(unix))]
    {
        FALLBACK_MAX_CONNECTIONS
    }
}

/// The region Entra names in the metadata of tenants in North America.
const DEFAULT_TENANT_REGION_SCOPE: &str = "NA";

/// Why the emulator could not start or register something.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration (or a registration) is not valid.
    #[error("invalid emulator configuration: {0}")]
    Config(String),
    /// Generating or reading a key or certificate failed.
    #[error("key or certificate handling failed: {0}")]
    Pki(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The listening socket could not be opened.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The TLS configuration was refused.
    #[error("TLS setup failed: {0}")]
    Tls(String),
}

impl Error {
    pub(crate) fn pki(error: impl std::fmt::Display) -> Self {
        Self::Pki(error.to_string())
    }

    pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| Self::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// Configures and starts an [`Emulator`].
#[derive(Debug, Default)]
pub struct EmulatorBuilder {
    config: EmulatorConfig,
    state_dir: Option<PathBuf>,
    port: u16,
}

impl EmulatorBuilder {
    /// What to register and how to issue tokens.
    pub fn config(mut self, config: EmulatorConfig) -> Self {
        self.config = config;
        self
    }

    /// Where to write the CA and application key material; when unset, a new temporary
    /// directory with a random name (mode 0700 on Unix), removed when the emulator is dropped
    /// or fails to start.
    pub fn state_dir(mut self, path: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(path.into());
        self
    }

    /// The TCP port on 127.0.0.1; 0 (the default) picks a free one.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Generates the CA and keys, registers the configuration and starts serving on the
    /// current tokio runtime.
    ///
    /// # Errors
    ///
    /// A configuration that cannot be registered, a port that cannot be bound, or a state
    /// directory that cannot be written.
    pub async fn start(self) -> Result<Emulator, Error> {
        let (state_dir, temp_dir) = match self.state_dir {
            Some(path) => (path, None),
            None => {
                let mut builder = tempfile::Builder::new();
                builder.prefix("entra-emulator-");
                // Private keys and secrets go here: only the owner may list or read it.
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt as _;
                    builder.permissions(std::fs::Permissions::from_mode(0o700));
                }
                let temp = builder
                    .tempdir()
                    .map_err(Error::io(Path::new("temporary directory")))?;
                (temp.path().to_owned(), Some(temp))
            }
        };
        std::fs::create_dir_all(&state_dir).map_err(Error::io(&state_dir))?;

        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| Error::Bind { address, source })?;
        let port = listener
            .local_addr()
            .map_err(|source| Error::Bind { address, source })?
            .port();

        let ca = CertificateAuthority::generate()?;
        let ca_pem_path = state_dir.join("ca.pem");
        write_private(&ca_pem_path, ca.pem().as_bytes())?;
        let (chain, key) = ca.server_certificate()?;
        let acceptor = server::tls_acceptor(chain, key)?;
        let signing = SigningKey::generate(&ca)?;

        let mut directory = Directory::default();
        for issuer in &self.config.trusted_issuers {
            directory.add_trusted_issuer(issuer)?;
        }
        let shared = Arc::new(Shared {
            base_url: format!("https://127.0.0.1:{port}"),
            localhost_url: format!("https://localhost:{port}"),
            ca,
            ca_pem_path,
            state_dir,
            signing,
            directory: RwLock::new(directory),
            settings: RwLock::new(self.config.tokens.clone()),
            refresh_tokens: Mutex::new(ExpiringMap::with_capacity(state::MAX_REMEMBERED)),
            used_jtis: Mutex::new(ExpiringMap::with_capacity(state::MAX_REMEMBERED)),
            reject_replayed_assertions: AtomicBool::new(self.config.reject_replayed_assertions),
            max_body_bytes: self.config.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES),
            known_authority_hosts: self.config.known_authority_hosts.clone(),
            tenant_region_scope: self
                .config
                .tenant_region_scope
                .clone()
                .unwrap_or_else(|| DEFAULT_TENANT_REGION_SCOPE.to_owned()),
            log: Default::default(),
            counters: Default::default(),
            faults: Default::default(),
            revocations: Default::default(),
        });
        for tenant in &self.config.tenants {
            shared.register_tenant(tenant)?;
        }

        let router = routes(shared.clone());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let millis =
            |value: Option<u64>| Duration::from_millis(value.unwrap_or(DEFAULT_TIMEOUT_MS));
        let limits = server::ConnectionLimits {
            header_read_timeout: millis(self.config.header_read_timeout_ms),
            body_read_timeout: millis(self.config.body_read_timeout_ms),
            max_connections: self
                .config
                .max_connections
                .unwrap_or_else(default_max_connections),
        };
        tokio::spawn(server::serve(
            listener,
            acceptor,
            router,
            shared.clone(),
            limits,
            shutdown_rx,
        ));
        tracing::info!(url = %shared.base_url, "entra emulator listening");
        Ok(Emulator {
            shared,
            shutdown,
            _temp_dir: temp_dir,
        })
    }
}

fn routes(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(token::token_endpoint))
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(discovery::openid_configuration),
        )
        .route("/{tenant}/discovery/v2.0/keys", get(discovery::keys))
        .route(
            "/{tenant}/.well-known/openid-configuration",
            get(discovery::openid_configuration_v1),
        )
        .route("/{tenant}/discovery/keys", get(discovery::keys))
        .route(
            "/common/discovery/instance",
            get(discovery::instance_discovery),
        )
        .route("/federation/keys", get(discovery::keys))
        .route(resource::RESOURCE_PATH, get(resource::protected_data))
        .route(resource::REVOCATIONS_PATH, post(resource::revoke))
        .nest(admin::ADMIN_PREFIX, admin::router())
        .with_state(shared)
}

/// A running emulator. Dropping it stops the server.
#[derive(Debug)]
pub struct Emulator {
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    _temp_dir: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl Emulator {
    /// Starts configuring an emulator.
    pub fn builder() -> EmulatorBuilder {
        EmulatorBuilder::default()
    }

    /// The base URL, such as `https://127.0.0.1:49152`; also the authority host to give a
    /// credential.
    pub fn url(&self) -> &str {
        &self.shared.base_url
    }

    /// The token endpoint of `tenant`.
    pub fn token_endpoint(&self, tenant: &str) -> String {
        format!("{}/{tenant}/oauth2/v2.0/token", self.shared.base_url)
    }

    /// The CA certificate (PEM) that HTTP clients must trust to talk to the emulator.
    pub fn ca_pem(&self) -> String {
        self.shared.ca.pem()
    }

    /// The file holding [`Emulator::ca_pem`].
    pub fn ca_pem_path(&self) -> &Path {
        &self.shared.ca_pem_path
    }

    /// The `iss` of federated tokens minted by [`Emulator::mint_federated_token`].
    pub fn federation_issuer(&self) -> String {
        self.shared.federation_issuer()
    }

    /// Everything registered, with credentials and file paths.
    pub fn info(&self) -> EmulatorInfo {
        self.shared.info()
    }

    /// Writes [`Emulator::info`] as JSON to `path` (readable only by its owner: it holds
    /// secrets).
    ///
    /// # Errors
    ///
    /// The file cannot be written.
    pub fn write_info_file(&self, path: &Path) -> Result<(), Error> {
        let json = serde_json::to_vec_pretty(&self.info())
            .map_err(|e| Error::Config(format!("cannot serialise info: {e}")))?;
        write_private(path, &json)
    }

    /// Registers a tenant with its applications and users.
    ///
    /// # Errors
    ///
    /// An invalid or duplicate tenant name, or an application or user that cannot be
    /// registered.
    pub fn register_tenant(&self, config: &TenantConfig) -> Result<TenantInfo, Error> {
        self.shared.register_tenant(config)
    }

    /// Registers an application in `tenant` (its ID or a domain).
    ///
    /// # Errors
    ///
    /// No such tenant, a duplicate client ID, or an unreadable certificate.
    pub fn register_application(
        &self,
        tenant: &str,
        config: &ApplicationConfig,
    ) -> Result<ApplicationInfo, Error> {
        self.shared.register_application(tenant, config)
    }

    /// Registers a user in `tenant`.
    ///
    /// # Errors
    ///
    /// No such tenant, or a duplicate user.
    pub fn register_user(&self, tenant: &str, config: &UserConfig) -> Result<UserInfo, Error> {
        self.shared.register_user(tenant, config)
    }

    /// Mints a user's access token for an application: the incoming assertion an
    /// on-behalf-of exchange starts from.
    ///
    /// # Errors
    ///
    /// No such user or tenant, or no audience.
    pub fn mint_user_token(&self, request: &UserTokenRequest) -> Result<String, Error> {
        self.shared.mint_user_token(request).map(|(token, _)| token)
    }

    /// Mints a federated token (a workload identity token) from the emulator's own issuer,
    /// with audience `api://AzureADTokenExchange` unless another is given.
    ///
    /// # Errors
    ///
    /// Signing failed.
    pub fn mint_federated_token(
        &self,
        subject: &str,
        audience: Option<&str>,
        expires_in_secs: i64,
    ) -> Result<String, Error> {
        let audience = audience.unwrap_or(DEFAULT_FEDERATED_AUDIENCE);
        self.shared
            .mint_federated(subject, audience, expires_in_secs)
    }

    /// The requests served so far (oldest first), secrets redacted.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.log.snapshot()
    }

    /// Forgets the request log.
    pub fn clear_requests(&self) {
        self.shared.log.clear();
    }

    /// Totals since start or the last reset.
    pub fn counters(&self) -> Counters {
        self.shared.counters.snapshot()
    }

    /// Sets every counter to zero.
    pub fn reset_counters(&self) {
        self.shared.counters.reset();
    }

    /// Arms a fault for the next matching requests.
    pub fn inject_fault(&self, rule: FaultRule) {
        self.shared.faults.add(rule);
    }

    /// Disarms every fault.
    pub fn clear_faults(&self) {
        self.shared.faults.clear();
    }

    /// The settings in force.
    pub fn settings(&self) -> Settings {
        self.shared.settings_view()
    }

    /// Changes settings while the emulator runs; returns the new settings.
    pub fn update_settings(&self, update: &SettingsUpdate) -> Settings {
        self.shared.update_settings(update)
    }

    /// The protected resource's URL (`GET` with a bearer token from this emulator).
    pub fn resource_url(&self) -> String {
        format!("{}{}", self.shared.base_url, resource::RESOURCE_PATH)
    }

    /// Revokes a user's session (see [`SessionRevocation`]); returns the revocation time.
    /// Waits for the next whole second, when the revocation takes effect.
    ///
    /// # Errors
    ///
    /// No such user.
    pub async fn revoke_session(&self, revocation: &SessionRevocation) -> Result<i64, Error> {
        self.shared.revoke_session(revocation).await
    }

    /// Stops accepting connections and closes the open ones.
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.shutdown();
    }
}
