//! Persistent token caching: the options, and the cache files they name.

pub(crate) mod msal_file;
pub(crate) mod platform_store;
#[cfg(all(target_os = "linux", feature = "secret-service"))]
pub(crate) mod secret_service;

use std::path::PathBuf;
use std::sync::Arc;

use crate::cache::persistent::msal_file::{MsalCacheFile, Store};
use crate::environment::Environment;
use crate::error::{BoxError, BuildError, ErrorSource};

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
///   The file `~/.IdentityService/<name>.nocae|.cae` holds no tokens: it is touched on every
///   write, and its time tells other processes to read the cache again. The default
///   collection must be unlocked, as it is after a desktop login or
///   `gnome-keyring-daemon --unlock`: a server cannot answer a password prompt, so nothing
///   waits on one. A Secret Service that asks for one anyway is given up after 10 seconds and
///   left alone for 5 minutes; reads and writes of the cache fail meanwhile, and tokens come
///   from Entra ID. Building a credential never waits on D-Bus: the process's first token
///   request that reads the cache connects to the Secret Service and checks it (a few
///   milliseconds, off the async runtime's workers); later ones, of any credential, share
///   that connection. This needs the `secret-service` feature (on by default); without it
///   Linux has no secret store.
/// - **macOS**: encrypted by the login Keychain, as a generic password of the service
///   `Microsoft.Developer.IdentityService` and the account `MSALCache` (for the default
///   cache; other caches use their own name), with `~/.IdentityService/<name>.nocae|.cae` as
///   the signal file, as azure-identity does.
/// - **Windows**: the file `%LOCALAPPDATA%\.IdentityService\<name>.nocae|.cae`, encrypted by
///   the Data Protection API for the current user, as azure-identity does.
///
/// The macOS and Windows stores are built only on their own targets, which this project's CI
/// does not build; the Linux store is tested against a real gnome-keyring.
///
/// When there is no usable secret store, the cache cannot be used, unless
/// `allow_unencrypted_storage` is set: then the cache is the file
/// `~/.IdentityService/<name>.nocae|.cae` itself, readable by its owner only, as
/// azure-identity does. What is known without waiting (no secret store on this platform, no
/// session bus) fails the build with [`BuildError::PersistenceUnavailable`]; a Secret Service
/// found unusable when first used (a locked keyring, no Secret Service on the bus, no answer)
/// fails each token request with [`CredentialError::CredentialUnavailable`], saying why,
/// until it is usable.
///
/// [`CredentialError::CredentialUnavailable`]: crate::CredentialError::CredentialUnavailable
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
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

    /// The cache's name, which separates it from other applications' caches (`msal.cache` by
    /// default).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Allows (or forbids, the default) storing the cache unencrypted when no encryption is
    /// available.
    pub fn allow_unencrypted_storage(mut self, allow: bool) -> Self {
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

/// The longest cache name: with `.nocae.lockfile` appended it stays under the 255 bytes most
/// file systems allow in a name.
const MAX_NAME_BYTES: usize = 200;

/// Whether `name` can name the cache's files and keyring items: not empty, not hidden, no
/// path separators or control characters (NUL included), not too long.
fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && !name.starts_with('.')
        && !name.contains(['/', '\\'])
        && !name.chars().any(char::is_control)
}

impl Persistence {
    /// The caches `options` name: encrypted by the platform's secret store when one is
    /// reachable, otherwise (only when allowed) in files under the user's home directory.
    pub(crate) fn open(
        options: &TokenCachePersistenceOptions,
        environment: &dyn Environment,
    ) -> Result<Self, BuildError> {
        let name = &options.name;
        if !is_plain_file_name(name) {
            // The name is shown escaped and cut short: it may hold anything.
            let shown: String = name.escape_debug().take(80).collect();
            return Err(BuildError::PersistenceUnavailable {
                reason: format!(
                    "\"{shown}\" is not a valid cache name: use a plain file name of at most \
                     {MAX_NAME_BYTES} bytes, without control characters"
                ),
                source: None,
            });
        }
        // azure-identity keeps the caches under %LOCALAPPDATA% on Windows, under the home
        // directory elsewhere.
        let var = |name: &str| environment.var(name).filter(|value| !value.is_empty());
        let base = cfg!(windows)
            .then(|| var("LOCALAPPDATA"))
            .flatten()
            .or_else(|| var("HOME"))
            .or_else(|| var("USERPROFILE"))
            .ok_or_else(|| BuildError::PersistenceUnavailable {
                reason: "no home directory (HOME) for the token cache".to_owned(),
                source: None,
            })?;
        let directory = PathBuf::from(base).join(".IdentityService");
        let allow_file = options.allow_unencrypted_storage;
        let stores = match SecretStore::open(environment) {
            Ok(secret_store) => [
                secret_store.store(name, ".nocae", allow_file),
                secret_store.store(name, ".cae", allow_file),
            ],
            Err(reason) if options.allow_unencrypted_storage => {
                tracing::info!(
                    "the token cache is stored unencrypted, as allowed: encryption is \
                     unavailable: {}",
                    crate::error::Chain(&*reason)
                );
                [Store::File, Store::File]
            }
            Err(reason) => {
                return Err(BuildError::PersistenceUnavailable {
                    reason: "cache encryption is unavailable; set allow_unencrypted_storage to \
                             keep the cache in a file only its owner can read"
                        .to_owned(),
                    source: Some(ErrorSource::new(reason)),
                });
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
#[cfg(all(target_os = "linux", feature = "secret-service"))]
struct SecretStore(Arc<secret_service::SecretServiceConnection>);

#[cfg(all(target_os = "linux", feature = "secret-service"))]
impl SecretStore {
    fn open(environment: &dyn Environment) -> Result<Self, BoxError> {
        // Its errors name the Secret Service.
        secret_service::SecretServiceConnection::shared(environment)
            .map(Self)
            .map_err(Into::into)
    }

    /// Where the cache `<name><suffix>` goes: the item azure-identity uses for it, or the
    /// file when `allow_file` and the Secret Service turns out to be unusable.
    fn store(&self, name: &str, suffix: &str, allow_file: bool) -> Store {
        Store::SecretService {
            connection: self.0.clone(),
            schema: format!("{name}{suffix}"),
            allow_file,
            on_file: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

/// The macOS Keychain.
#[cfg(target_os = "macos")]
struct SecretStore;

#[cfg(target_os = "macos")]
impl SecretStore {
    fn open(_environment: &dyn Environment) -> Result<Self, BoxError> {
        Ok(Self)
    }

    /// Where the cache `<name><suffix>` goes: the Keychain item azure-identity uses for it.
    fn store(&self, name: &str, suffix: &str, _allow_file: bool) -> Store {
        Store::Keychain {
            account: platform_store::keychain_account(name, suffix),
        }
    }
}

/// Windows' Data Protection API.
#[cfg(windows)]
struct SecretStore;

#[cfg(windows)]
impl SecretStore {
    fn open(_environment: &dyn Environment) -> Result<Self, BoxError> {
        Ok(Self)
    }

    fn store(&self, _name: &str, _suffix: &str, _allow_file: bool) -> Store {
        Store::DataProtection
    }
}

/// No store for secrets on this platform, or on Linux without the `secret-service` feature.
#[cfg(not(any(
    all(target_os = "linux", feature = "secret-service"),
    target_os = "macos",
    windows
)))]
struct SecretStore;

#[cfg(not(any(
    all(target_os = "linux", feature = "secret-service"),
    target_os = "macos",
    windows
)))]
impl SecretStore {
    fn open(_environment: &dyn Environment) -> Result<Self, BoxError> {
        Err(if cfg!(target_os = "linux") {
            "the Secret Service is not built in (the `secret-service` feature of entra-identity \
             is off)"
                .into()
        } else {
            "no platform secret store is supported on this platform".into()
        })
    }

    // Never reached here, since opening always fails, but `open`'s callers need it.
    #[allow(dead_code)]
    fn store(&self, _name: &str, _suffix: &str, _allow_file: bool) -> Store {
        Store::File
    }
}
