//! Persistent token caching: the options, and the cache files they name.

use std::path::PathBuf;
use std::sync::Arc;

use crate::environment::Environment;
use crate::error::BuildError;
use crate::msal_file::{MsalCacheFile, Store};

/// Configuration of persistent token caching, as both credentials accept it.
///
/// Tokens are kept in MSAL's unified cache format, in azure-identity's places, so Python
/// azure-identity and msal on the same machine share them; plain and CAE tokens are kept apart
/// (`<name>.nocae` and `<name>.cae`), and writers from several processes take msal-extensions'
/// `.lockfile` in turn.
///
/// - **Linux**: encrypted by the Secret Service (GNOME Keyring, KWallet, KeePassXC) on the
///   session bus (`DBUS_SESSION_BUS_ADDRESS`, or `$XDG_RUNTIME_DIR/bus`), in the item of the
///   default collection that msal-extensions uses (label `MSALCache`, attributes
///   `xdg:schema = <name>.nocae|.cae` and `MsalClientID = Microsoft.Developer.IdentityService`).
///   The file `~/.IdentityService/<name>.nocae|.cae` stays empty: its time tells other
///   processes to read the cache again. The default collection must be unlocked, as it is
///   after a desktop login or `gnome-keyring-daemon --unlock`: a server cannot answer a
///   password prompt, so none is ever shown.
/// - **Other platforms**: no secret store is supported yet (azure-identity uses the Keychain on
///   macOS and a DPAPI-protected file on Windows).
///
/// When there is no usable secret store, building the credential fails with
/// [`BuildError::PersistenceUnavailable`], saying why, unless `allow_unencrypted_storage` is
/// set: then the cache is the file `~/.IdentityService/<name>.nocae|.cae` itself, readable by
/// its owner only, as azure-identity does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenCachePersistenceOptions {
    name: String,
    allow_unencrypted_storage: bool,
}

impl Default for TokenCachePersistenceOptions {
    fn default() -> Self {
        Self {
            name: "msal.cache".to_owned(),
            allow_unencrypted_storage: false,
        }
    }
}

impl TokenCachePersistenceOptions {
    /// The default options: name `msal.cache`, encrypted storage only.
    pub fn new() -> Self {
        Self::default()
    }

    /// The cache's name, which separates it from other applications' caches.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the cache may be stored unencrypted when no encryption is available.
    pub fn allow_unencrypted_storage(&self) -> bool {
        self.allow_unencrypted_storage
    }

    /// Sets the cache's name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Allows (or forbids) unencrypted storage.
    pub fn with_allow_unencrypted_storage(mut self, allow: bool) -> Self {
        self.allow_unencrypted_storage = allow;
        self
    }
}

/// The two cache files of a credential: plain and CAE tokens apart.
#[derive(Debug)]
pub(crate) struct Persistence {
    plain: Arc<MsalCacheFile>,
    cae: Arc<MsalCacheFile>,
}

impl Persistence {
    /// The caches `options` name: encrypted by the platform's secret store when one is
    /// reachable, otherwise (only when allowed) in files under the user's home directory.
    pub(crate) fn open(
        options: &TokenCachePersistenceOptions,
        environment: &dyn Environment,
    ) -> Result<Self, BuildError> {
        let name = &options.name;
        if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
            return Err(BuildError::PersistenceUnavailable(format!(
                "'{name}' is not a valid cache name: use a plain file name"
            )));
        }
        let home = environment
            .var("HOME")
            .or_else(|| environment.var("USERPROFILE"))
            .filter(|home| !home.is_empty())
            .ok_or_else(|| {
                BuildError::PersistenceUnavailable(
                    "no home directory (HOME) for the token cache".to_owned(),
                )
            })?;
        let directory = PathBuf::from(home).join(".IdentityService");
        let stores = match SecretStore::open(environment) {
            Ok(secret_store) => [
                secret_store.store(name, ".nocae"),
                secret_store.store(name, ".cae"),
            ],
            Err(reason) if options.allow_unencrypted_storage => {
                tracing::info!(
                    "the token cache is stored unencrypted, as allowed: encryption is \
                     unavailable: {reason}"
                );
                [Store::File, Store::File]
            }
            Err(reason) => {
                return Err(BuildError::PersistenceUnavailable(format!(
                    "cache encryption is unavailable: {reason}; set allow_unencrypted_storage \
                     to keep the cache in a file only its owner can read"
                )));
            }
        };
        let [plain, cae] = stores;
        Ok(Self {
            plain: Arc::new(MsalCacheFile::new(
                directory.join(format!("{name}.nocae")),
                plain,
            )),
            cae: Arc::new(MsalCacheFile::new(
                directory.join(format!("{name}.cae")),
                cae,
            )),
        })
    }

    /// The file for CAE or plain tokens.
    pub(crate) fn file(&self, cae: bool) -> Arc<MsalCacheFile> {
        if cae {
            self.cae.clone()
        } else {
            self.plain.clone()
        }
    }
}

/// The platform's store for secrets, which encrypts the cache.
#[cfg(target_os = "linux")]
struct SecretStore(Arc<crate::secret_service::SecretServiceConnection>);

#[cfg(target_os = "linux")]
impl SecretStore {
    fn open(environment: &dyn Environment) -> Result<Self, String> {
        crate::secret_service::SecretServiceConnection::open(environment)
            .map(|connection| Self(Arc::new(connection)))
            .map_err(|reason| format!("the Secret Service cannot be used: {reason}"))
    }

    /// Where the cache `<name><suffix>` goes: the item azure-identity uses for it.
    fn store(&self, name: &str, suffix: &str) -> Store {
        Store::SecretService {
            connection: self.0.clone(),
            schema: format!("{name}{suffix}"),
        }
    }
}

/// The platform's store for secrets: none is supported on this platform yet.
#[cfg(not(target_os = "linux"))]
struct SecretStore;

#[cfg(not(target_os = "linux"))]
impl SecretStore {
    fn open(_environment: &dyn Environment) -> Result<Self, String> {
        Err("no platform secret store is supported on this platform yet".to_owned())
    }

    fn store(&self, _name: &str, _suffix: &str) -> Store {
        Store::File
    }
}
