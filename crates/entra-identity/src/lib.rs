//! Microsoft Entra ID access tokens for confidential applications.
//!
//! - [`ClientAssertionCredential`]: a service principal proves itself with a JWT assertion
//!   that a function or a file supplies (workload identity, a managed identity as a federated
//!   credential, an assertion signed elsewhere).
//! - [`OnBehalfOfCredential`]: a middle-tier API exchanges the access token a user sent it for
//!   a token to a downstream API, proving its own identity with a client secret, a certificate
//!   (PEM or PKCS#12, pure Rust) or an assertion function. [`OnBehalfOfApplication`] serves
//!   many users from one application: one credential per request, one shared bounded cache.
//!
//! Every credential has `get_token`, `get_token_info` (with `refresh_on` and `token_type`) and
//! `close`, taking [`TokenRequestOptions`]: a claims challenge, a per-request tenant, Continuous
//! Access Evaluation. They implement [`TokenCredential`], which is dyn-compatible, so a service
//! can hold an `Arc<dyn TokenCredential>` chosen at start-up; with the default `azure-core`
//! feature they also implement `azure_core::credentials::TokenCredential` for the Azure SDK for
//! Rust. The methods are inherent too, so calls compile whichever of the two traits is in
//! scope.
//!
//! Terms: a *tenant* is an Entra ID directory; the *authority* is the host that issues tokens
//! (`login.microsoftonline.com` in the public cloud); an *assertion* is a signed JWT that
//! proves who the caller is.
//!
//! Tokens are cached in memory per application, tenant, scopes and CAE flag. A cached token is
//! served without locking or allocating; one request per key is in flight however many callers
//! ask; tokens are refreshed proactively (at Entra's `refresh_in`, or five minutes before
//! expiry) by one caller while the others keep using the cached token.
//!
//! Connection pools: credentials built with one [`TokenCache`] and equal [`HttpOptions`] share
//! one, and the credentials of one [`OnBehalfOfApplication`] share the application's; a
//! credential with a cache of its own has its own, as does one asking for
//! [`HttpOptions::dedicated_pool`]. A pool keeps a connection pool per tokio runtime, so a
//! credential works on any runtime; nothing is shared process-wide. A builder's `http_client`
//! takes a `reqwest::Client` of your own instead.
//!
//! Secrets (client secrets, assertions, tokens, certificate keys and passwords) never appear in
//! `Debug` output, logs or errors. What is wiped from memory when dropped, exactly:
//!
//! - the secret types ([`ClientAssertion`], the access and refresh tokens) and the certificate
//!   bytes and password given to a builder;
//! - the token request's form body, and the copy of it each attempt hands to reqwest (wiped
//!   when the HTTP stack drops it);
//! - the response body as read (grown without leaving copies behind), and the access and
//!   refresh tokens, moved out of the parsed JSON without a copy;
//! - the buffer a [`FileAssertion`] reads its file into.
//!
//! Not wiped: what hyper and rustls copy into their own buffers (the request as written to
//! the TLS connection, the response as decrypted and its chunks), the other values of the
//! parsed response (and serde_json's scratch buffer, used only for strings with escapes),
//! the PEM blocks parsed from a certificate, decrypted key material inside aws-lc,
//! p12-keystore and the `pkcs8` crate, and anything the
//! allocator or the operating system copied (swap, core dumps).
//!
//! # Examples
//!
//! Workload identity on Kubernetes: the assertion is the projected service account token,
//! re-read whenever it rotates.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use entra_identity::{ClientAssertionCredential, FileAssertion, TokenRequestOptions};
//!
//! let credential = ClientAssertionCredential::new(
//!     &std::env::var("AZURE_TENANT_ID")?,
//!     &std::env::var("AZURE_CLIENT_ID")?,
//!     FileAssertion::new(std::env::var("AZURE_FEDERATED_TOKEN_FILE")?),
//! )?;
//! let scopes = ["https://storage.azure.com/.default"];
//! let token = credential.get_token(&scopes, TokenRequestOptions::default()).await?;
//! println!("expires at {}", token.expires_on);
//! # Ok(()) }
//! ```
//!
//! A plain function as the assertion source, like azure-identity's `func`:
//!
//! ```no_run
//! # fn sign_elsewhere() -> Result<String, std::io::Error> { Ok(String::new()) }
//! # fn example() -> Result<(), entra_identity::BuildError> {
//! use entra_identity::{ClientAssertionCredential, assertion_fn};
//!
//! let credential = ClientAssertionCredential::new("contoso.onmicrosoft.com", "client-id", assertion_fn(sign_elsewhere))?;
//! # let _ = credential; Ok(()) }
//! ```
//!
//! Options: another cloud, other tenants, a shared cache, an extra trusted CA (a private cloud,
//! or the `entra-emulator` in tests), retries:
//!
//! ```no_run
//! # fn example(ca_pem: String) -> Result<(), entra_identity::BuildError> {
//! use std::time::Duration;
//! use entra_identity::{AzureAuthorityHosts, ClientAssertionCredential, FileAssertion, HttpOptions, RetryPolicy, TokenCache};
//!
//! let cache = TokenCache::with_capacity(50_000);
//! let credential = ClientAssertionCredential::builder("tenant-id", "client-id", FileAssertion::new("/var/run/token"))
//!     .authority(AzureAuthorityHosts::AZURE_GOVERNMENT)
//!     .additionally_allowed_tenants(["*"])
//!     .token_cache(cache.clone())
//!     .http_options(
//!         HttpOptions::default()
//!             .trust_pem(ca_pem)
//!             .request_timeout(Duration::from_secs(10))
//!             .retry(RetryPolicy::default().max_retries(5)),
//!     )
//!     .build()?;
//! # let _ = credential; Ok(()) }
//! ```
//!
//! Another tenant, Continuous Access Evaluation, a claims challenge from a resource, and the
//! token's refresh time:
//!
//! ```no_run
//! # async fn example(credential: entra_identity::ClientAssertionCredential, challenge: &str) -> Result<(), entra_identity::CredentialError> {
//! use entra_identity::TokenRequestOptions;
//!
//! let scopes = ["https://graph.microsoft.com/.default"];
//! let other_tenant = credential
//!     .get_token(&scopes, TokenRequestOptions::new().tenant_id("fabrikam.onmicrosoft.com"))
//!     .await?;
//! let info = credential
//!     .get_token_info(&scopes, TokenRequestOptions::new().claims(challenge).enable_cae(true))
//!     .await?;
//! println!("{} token, refresh at {:?}", info.token_type, info.refresh_on);
//! # let _ = other_tenant; Ok(()) }
//! ```
//!
//! Errors say what Entra ID answered:
//!
//! ```no_run
//! # async fn example(credential: entra_identity::ClientAssertionCredential) {
//! use entra_identity::TokenRequestOptions;
//!
//! let scopes = ["https://vault.azure.net/.default"];
//! match credential.get_token(&scopes, TokenRequestOptions::default()).await {
//!     Ok(token) => println!("expires at {}", token.expires_on),
//!     Err(error) if error.is_transient() => eprintln!("try again later: {error}"),
//!     Err(error) => match error.entra() {
//!         Some(entra) => eprintln!("AADSTS{:?}, trace {:?}", entra.error_codes, entra.trace_id),
//!         None => eprintln!("{error}"),
//!     },
//! }
//! # }
//! ```
//!
//! With the Azure SDK for Rust (the default `azure-core` feature):
//!
//! ```no_run
//! # #[cfg(feature = "azure-core")]
//! # fn example(credential: entra_identity::ClientAssertionCredential) {
//! use std::sync::Arc;
//!
//! let credential: Arc<dyn azure_core::credentials::TokenCredential> = Arc::new(credential);
//! // Pass `credential` to any Azure SDK client's constructor.
//! # let _ = credential; }
//! ```

#![forbid(unsafe_code)]

mod cache;
mod client_auth;
mod credential;
mod endpoint;
mod environment;
mod error;
mod secret;
mod token;

#[cfg(feature = "redis")]
pub use crate::cache::distributed::RedisStore;
pub use crate::cache::distributed::{DistributedCache, DistributedStore, StoreFuture};
pub use crate::cache::memory::TokenCache;
pub use crate::cache::persistent::TokenCachePersistenceOptions;
pub use crate::client_auth::assertion::{
    AZURE_FEDERATED_TOKEN_FILE, AssertionFn, AssertionFuture, ClientAssertionSource, FileAssertion,
    assertion_fn,
};
pub use crate::credential::client_assertion::{
    ClientAssertionCredential, ClientAssertionCredentialBuilder,
};
pub use crate::credential::on_behalf_of::{
    OnBehalfOfApplication, OnBehalfOfApplicationBuilder, OnBehalfOfCredential,
    OnBehalfOfCredentialBuilder,
};
pub use crate::endpoint::authority::{
    AZURE_AUTHORITY_HOST, Authority, AzureAuthorityHosts, TenantId,
};
pub use crate::endpoint::http::{HttpOptions, RetryPolicy, SSL_CERT_FILE};
pub use crate::endpoint::tenant::AZURE_IDENTITY_DISABLE_MULTITENANTAUTH;
pub use crate::environment::{
    Clock, Environment, ManualClock, MapEnvironment, ProcessEnvironment, SystemClock,
};
pub use crate::error::{
    BoxError, BuildError, CertificateError, ClientAuthenticationError, CredentialError,
    CredentialUnavailableError, EntraError, ErrorSource, FailureKind,
};
pub use crate::secret::{
    AccessTokenSecret, ClientAssertion, ClientSecret, RefreshToken, UserAssertion,
};
pub use crate::token::{
    AccessToken, AccessTokenInfo, CloseFuture, TokenCredential, TokenFuture, TokenRequestOptions,
};

/// Internals exposed for the crate's benchmarks and fuzz targets. Not part of the stable API.
#[doc(hidden)]
pub mod internal {
    use crate::client_auth::certificate::{CertificateSigner, ClientCertificate};

    /// A parsed client certificate that signs client assertions, as the credentials use it.
    #[derive(Debug)]
    pub struct AssertionSigner(CertificateSigner);

    impl AssertionSigner {
        /// Parses PEM or PKCS#12 bytes.
        ///
        /// # Errors
        ///
        /// The certificate cannot be used.
        pub fn new(
            certificate: &[u8],
            password: Option<&[u8]>,
        ) -> Result<Self, crate::CertificateError> {
            let certificate = ClientCertificate::from_bytes(certificate, password)?;
            Ok(Self(CertificateSigner::new(certificate, false)))
        }

        /// An assertion, reused while it is for the same audience and under five minutes old.
        pub fn assertion(
            &self,
            client_id: &str,
            audience: &str,
            now: i64,
        ) -> Option<crate::ClientAssertion> {
            self.0.assertion(client_id, audience, now, false).ok()
        }
    }

    /// A token cache file in MSAL's format, as persistent caching writes it.
    ///
    /// Its methods block (on files, locks and D-Bus): call them from a plain thread or
    /// `spawn_blocking`, never from an async task.
    #[derive(Debug)]
    pub struct CacheFile(crate::cache::persistent::msal_file::MsalCacheFile);

    impl CacheFile {
        /// The file at `path`.
        pub fn new(path: impl Into<std::path::PathBuf>) -> Self {
            Self(crate::cache::persistent::msal_file::MsalCacheFile::new(
                path.into(),
                crate::cache::persistent::msal_file::Store::File,
            ))
        }

        /// The cache `schema` (`<name>.nocae` or `.cae`) kept by the Secret Service on the
        /// bus at `bus_address`, signalled by the file at `path`.
        ///
        /// # Errors
        ///
        /// The Secret Service cannot be used.
        #[cfg(all(target_os = "linux", feature = "secret-service"))]
        pub fn in_secret_service(
            path: impl Into<std::path::PathBuf>,
            schema: &str,
            bus_address: &str,
        ) -> Result<Self, String> {
            let environment =
                crate::MapEnvironment::new().with("DBUS_SESSION_BUS_ADDRESS", bus_address);
            let connection =
                crate::cache::persistent::secret_service::SecretServiceConnection::open(
                    &environment,
                )
                .map_err(|error| error.to_string())?;
            Ok(Self(
                crate::cache::persistent::msal_file::MsalCacheFile::new(
                    path.into(),
                    crate::cache::persistent::msal_file::Store::SecretService {
                        connection: std::sync::Arc::new(connection),
                        schema: schema.to_owned(),
                        allow_file: false,
                        on_file: std::sync::atomic::AtomicBool::new(false),
                    },
                ),
            ))
        }

        /// Adds an application's access token, under the file's lock.
        ///
        /// # Errors
        ///
        /// The file or its lock cannot be written.
        #[allow(clippy::too_many_arguments)]
        pub fn store_access_token(
            &self,
            client_id: &str,
            environment: &str,
            realm: &str,
            scope: &str,
            secret: &str,
            expires_on: i64,
            now: i64,
        ) -> std::io::Result<()> {
            let entry = crate::cache::persistent::msal_file::EntryScope {
                client_key: client_id,
                environment,
                realm,
            };
            let token = crate::cache::persistent::msal_file::CachedAccessToken {
                secret: secret.to_owned(),
                expires_on,
                refresh_on: None,
                token_type: "Bearer".to_owned(),
            };
            self.0.store(&entry, &[scope], &token, None, now)
        }

        /// The secret of a valid access token for `scope`, if the file holds one.
        ///
        /// # Errors
        ///
        /// The file cannot be read or is not a token cache.
        pub fn find_access_token(
            &self,
            client_id: &str,
            environment: &str,
            realm: &str,
            scope: &str,
            now: i64,
        ) -> std::io::Result<Option<String>> {
            let entry = crate::cache::persistent::msal_file::EntryScope {
                client_key: client_id,
                environment,
                realm,
            };
            Ok(self
                .0
                .find_access_token(&entry, &[scope], now)?
                .map(|token| token.secret))
        }
    }

    /// Parses a token endpoint response body (for fuzzing): whether it is a usable token.
    pub fn parse_token_response(status: u16, body: &[u8]) -> bool {
        crate::endpoint::protocol::parse_token_response(status, None, body, 0).is_ok()
    }

    /// Reads a token endpoint response as the credentials do: its status, `Content-Type`
    /// and body, for a request sent at `request_time` (Unix seconds). A success is the token
    /// and the refresh token, if any.
    ///
    /// # Errors
    ///
    /// What `get_token` returns for this response: an Entra ID error (with its claims
    /// challenge, if any), or an invalid response.
    pub fn read_token_response(
        status: u16,
        content_type: Option<&str>,
        body: &[u8],
        request_time: i64,
    ) -> Result<(crate::AccessTokenInfo, Option<crate::RefreshToken>), crate::CredentialError> {
        crate::endpoint::protocol::parse_token_response(status, content_type, body, request_time)
            .map(|response| (response.info, response.refresh_token))
    }

    /// The `claims` form field a token request sends: the caller's claims (such as a claims
    /// challenge), with the CP1 client capability merged in when `enable_cae`.
    ///
    /// # Errors
    ///
    /// With CAE, claims that are not a JSON object, or whose `access_token` is not one.
    pub fn merge_claims(
        claims: Option<&str>,
        enable_cae: bool,
    ) -> Result<Option<String>, crate::CredentialError> {
        crate::endpoint::protocol::merge_claims(claims, enable_cae)
    }

    /// A `Retry-After` header's value as a wait from `now`: delta-seconds or an HTTP date;
    /// `None` when it is neither.
    pub fn parse_retry_after(
        value: &str,
        now: std::time::SystemTime,
    ) -> Option<std::time::Duration> {
        crate::endpoint::http::parse_retry_after(value, now)
    }

    /// A token cache document in MSAL's unified format, read and changed in memory by the
    /// same code as the persistent cache ([`CacheFile`] adds the file, its lock and the
    /// secret stores). Its strings are wiped when it is dropped.
    pub struct CacheDocument(crate::cache::persistent::msal_file::Document);

    impl std::fmt::Debug for CacheDocument {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            // The document holds secrets: its sections only.
            f.debug_struct("CacheDocument")
                .field("sections", &self.0.0.keys().collect::<Vec<_>>())
                .finish_non_exhaustive()
        }
    }

    impl CacheDocument {
        /// Parses a cache document as the persistent cache reads one: empty (or white space
        /// only) is an empty cache.
        ///
        /// # Errors
        ///
        /// The bytes are not a token cache (not a JSON object).
        pub fn parse(bytes: &[u8]) -> std::io::Result<Self> {
            use crate::cache::persistent::msal_file::{Document, parse_document};
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(Self(Document::default()));
            }
            parse_document(bytes)
                .map(|map| Self(Document(map)))
                .map_err(|()| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "the document is not a token cache",
                    )
                })
        }

        /// The secret of a valid access token for `scope`, as [`CacheFile`] finds it.
        pub fn find_access_token(
            &self,
            client_id: &str,
            environment: &str,
            realm: &str,
            scope: &str,
            now: i64,
        ) -> Option<String> {
            let entry = crate::cache::persistent::msal_file::EntryScope {
                client_key: client_id,
                environment,
                realm,
            };
            crate::cache::persistent::msal_file::access_token_in(&self.0.0, &entry, &[scope], now)
                .map(|token| token.secret)
        }

        /// The refresh token for `scope`, if exactly one matches.
        pub fn find_refresh_token(
            &self,
            client_id: &str,
            environment: &str,
            scope: &str,
        ) -> Option<String> {
            let entry = crate::cache::persistent::msal_file::EntryScope {
                client_key: client_id,
                environment,
                realm: "",
            };
            crate::cache::persistent::msal_file::refresh_token_in(&self.0.0, &entry, &[scope])
        }

        /// Adds an application's access token (and a refresh token when given) as
        /// [`CacheFile`] does, pruning what no reader can use any more.
        #[allow(clippy::too_many_arguments)]
        pub fn store_access_token(
            &mut self,
            client_id: &str,
            environment: &str,
            realm: &str,
            scope: &str,
            secret: &str,
            expires_on: i64,
            refresh_token: Option<&str>,
            now: i64,
        ) {
            let entry = crate::cache::persistent::msal_file::EntryScope {
                client_key: client_id,
                environment,
                realm,
            };
            let token = crate::cache::persistent::msal_file::CachedAccessToken {
                secret: secret.to_owned(),
                expires_on,
                refresh_on: None,
                token_type: "Bearer".to_owned(),
            };
            crate::cache::persistent::msal_file::store_tokens(
                &mut self.0.0,
                &entry,
                &[scope],
                &token,
                refresh_token,
                now,
            );
        }

        /// The document as the persistent cache writes it.
        ///
        /// # Errors
        ///
        /// The document cannot be serialized (never for a parsed document).
        pub fn to_bytes(&self) -> std::io::Result<zeroize::Zeroizing<Vec<u8>>> {
            Ok(zeroize::Zeroizing::new(serde_json::to_vec(&self.0.0)?))
        }
    }
}
