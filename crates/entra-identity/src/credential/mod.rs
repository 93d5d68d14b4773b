//! The credentials.

#[cfg(feature = "azure-core")]
mod azure;
pub(crate) mod client_assertion;
pub(crate) mod core;
pub(crate) mod on_behalf_of;

/// The builder methods every credential has, over a `CommonOptions` field at `$($field).+`.
macro_rules! common_builder_methods {
    ($($field:ident).+) => {
        /// The authority host, such as `login.microsoftonline.com` (the default, unless
        /// `AZURE_AUTHORITY_HOST` is set) or one of [`crate::AzureAuthorityHosts`]. A bare host
        /// gets `https://`; anything but https is refused.
        pub fn authority(mut self, authority: impl Into<String>) -> Self {
            self.$($field).+.authority = Some(authority.into());
            self
        }

        /// Tenants besides the configured one that requests may name with `tenant_id`; `"*"`
        /// allows any tenant.
        pub fn additionally_allowed_tenants<I, T>(mut self, tenants: I) -> Self
        where
            I: IntoIterator<Item = T>,
            T: Into<String>,
        {
            self.$($field).+.additionally_allowed_tenants =
                tenants.into_iter().map(Into::into).collect();
            self
        }

        /// Persistent token caching (see [`crate::TokenCachePersistenceOptions`]).
        pub fn cache_persistence_options(
            mut self,
            options: crate::TokenCachePersistenceOptions,
        ) -> Self {
            self.$($field).+.cache_persistence_options = Some(options);
            self
        }

        /// A token cache shared by a fleet through an external store such as Redis, behind
        /// the in-memory cache (see [`crate::DistributedCache`]).
        pub fn distributed_cache(mut self, cache: crate::DistributedCache) -> Self {
            self.$($field).+.distributed = Some(cache);
            self
        }

        /// HTTP options: extra trusted CAs, timeouts, retries, a dedicated pool (see
        /// [`crate::HttpOptions`]). Credentials built with one [`crate::TokenCache`] and equal
        /// options share a connection pool; a credential with a cache of its own has its own.
        pub fn http_options(mut self, options: crate::HttpOptions) -> Self {
            self.$($field).+.http = options;
            self
        }

        /// Sends the requests to Entra ID through this `reqwest` client (reqwest 0.13) instead
        /// of a connection pool of the credential's.
        ///
        /// Build it with `.redirect(reqwest::redirect::Policy::none())`. Entra ID does not
        /// redirect token requests and the credential never follows a redirect itself, but a
        /// client that does would send the form, with its client assertion or secret, again
        /// to wherever a 307 or 308 response points.
        ///
        /// The request timeout and retry policy of [`HttpOptions`](crate::HttpOptions) still
        /// apply to every request; its trusted CAs, connect timeout and `SSL_CERT_FILE` do not:
        /// the client's own configuration decides those. Unlike the credential's own pools,
        /// which keep a connection pool per tokio runtime, a `reqwest::Client` has a single
        /// pool whose connections are driven by the runtime that opened them: if you use the
        /// credential from several runtimes, a request can wait on a connection of a runtime
        /// that is not running. Use the client on one runtime, or on runtimes that keep
        /// running.
        pub fn http_client(mut self, client: reqwest::Client) -> Self {
            self.$($field).+.http_client = Some(client);
            self
        }

        /// A token cache to share with other credentials (each credential has its own by
        /// default).
        pub fn token_cache(mut self, cache: crate::TokenCache) -> Self {
            self.$($field).+.cache = Some(cache);
            self
        }

        /// The clock (the system clock by default); tests use [`crate::ManualClock`].
        pub fn clock(mut self, clock: std::sync::Arc<dyn crate::Clock>) -> Self {
            self.$($field).+.clock = Some(clock);
            self
        }

        /// Where environment variables are read (the process environment by default).
        pub fn environment(mut self, environment: std::sync::Arc<dyn crate::Environment>) -> Self {
            self.$($field).+.environment = Some(environment);
            self
        }
    };
}

pub(crate) use common_builder_methods;
