//! Persistent token caching: the options, and the cache files they name.

use std::path::PathBuf;
use std::sync::Arc;

use crate::environment::Environment;
use crate::error::BuildError;
use crate::msal_file::MsalCacheFile;

/// Configuration of persistent token caching, as both credentials accept it.
///
/// Tokens go to `~/.IdentityService/<name>.nocae` (and `.cae` for CAE tokens) in MSAL's
/// unified cache format, shared with Python azure-identity and msal and safe for concurrent
/// processes. Only unencrypted storage is available so far: without
/// `allow_unencrypted_storage`, building a credential fails with
/// [`BuildError::PersistenceUnavailable`].
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
    /// The files `options` name, under the user's home directory.
    pub(crate) fn open(
        options: &TokenCachePersistenceOptions,
        environment: &dyn Environment,
    ) -> Result<Self, BuildError> {
        if !options.allow_unencrypted_storage {
            return Err(BuildError::PersistenceUnavailable(
                "cache encryption is not available: no platform secret store is supported yet; \
                 set allow_unencrypted_storage to keep the cache in a file only its owner can read"
                    .to_owned(),
            ));
        }
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
        Ok(Self {
            plain: Arc::new(MsalCacheFile::new(directory.join(format!("{name}.nocae")))),
            cae: Arc::new(MsalCacheFile::new(directory.join(format!("{name}.cae")))),
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
