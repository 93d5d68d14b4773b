//! Options of persistent token caching.

/// Configuration of persistent token caching, as both credentials accept it.
///
/// Persistent storage (MSAL-compatible files, encrypted by the platform's secret store unless
/// unencrypted storage is allowed) is not built yet: a credential given these options logs a
/// warning and caches tokens in memory.
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
