//! The credentials.

#[cfg(feature = "azure-core")]
mod azure;
pub(crate) mod client_assertion;
pub(crate) mod core;
pub(crate) mod on_behalf_of;

/// The builder methods every credential has, over a `common: CommonOptions` field.
macro_rules! common_builder_methods {
    () => {
        /// The authority host, such as `login.microsoftonline.com` (the default, unless
        /// `AZURE_AUTHORITY_HOST` is set) or one of [`crate::AzureAuthorityHosts`]. A bare host
        /// gets `https://`; anything but https is refused.
        #[must_use]
        pub fn authority(mut self, authority: impl Into<String>) -> Self {
            self.common.authority = Some(authority.into());
            self
        }

        /// Tenants besides the configured one that requests may name with `tenant_id`; `"*"`
        /// allows any tenant.
        #[must_use]
        pub fn additionally_allowed_tenants<I, T>(mut self, tenants: I) -> Self
        where
            I: IntoIterator<Item = T>,
            T: Into<String>,
        {
            self.common.additionally_allowed_tenants =
                tenants.into_iter().map(Into::into).collect();
            self
        }

        /// Persistent token caching (see [`crate::TokenCachePersistenceOptions`]).
        #[must_use]
        pub fn cache_persistence_options(
            mut self,
            options: crate::TokenCachePersistenceOptions,
        ) -> Self {
            self.common.cache_persistence_options = Some(options);
            self
        }

        /// A token cache shared by a fleet through an external store such as Redis, behind
        /// the in-memory cache (see [`crate::DistributedCache`]).
        #[must_use]
        pub fn distributed_cache(mut self, cache: crate::DistributedCache) -> Self {
            self.common.distributed = Some(cache);
            self
        }

        /// HTTP options: extra trusted CAs, timeouts, retries (see [`crate::HttpOptions`]).
        /// Credentials built with one [`crate::TokenCache`] and equal options share a
        /// connection pool; a credential with a cache of its own has its own.
        #[must_use]
        pub fn http_options(mut self, options: crate::HttpOptions) -> Self {
            self.common.http = options;
            self
        }

        /// A token cache to share with other credentials (each credential has its own by
        /// default).
        #[must_use]
        pub fn token_cache(mut self, cache: crate::TokenCache) -> Self {
            self.common.cache = Some(cache);
            self
        }

        /// The clock (the system clock by default); tests use [`crate::ManualClock`].
        #[must_use]
        pub fn clock(mut self, clock: std::sync::Arc<dyn crate::Clock>) -> Self {
            self.common.clock = Some(clock);
            self
        }

        /// Where environment variables are read (the process environment by default).
        #[must_use]
        pub fn environment(mut self, environment: std::sync::Arc<dyn crate::Environment>) -> Self {
            self.common.environment = Some(environment);
            self
        }
    };
}

pub(crate) use common_builder_methods;
