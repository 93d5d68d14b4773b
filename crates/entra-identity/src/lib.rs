//! Microsoft Entra ID access tokens for confidential applications.
//!
//! - [`ClientAssertionCredential`]: a service principal proves itself with a JWT assertion
//!   that a function or a file supplies (workload identity, a managed identity as a federated
//!   credential, an assertion signed elsewhere).
//!
//! Every credential implements [`TokenCredential`] (`get_token`, `get_token_info` with
//! `refresh_on` and `token_type`, `close`), accepting claims challenges, a per-request tenant
//! and Continuous Access Evaluation; with the default `azure-core` feature they also implement
//! `azure_core::credentials::TokenCredential` for the Azure SDK for Rust.
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
//! Secrets (client assertions, tokens) are wiped from memory when dropped and never appear in
//! `Debug` output, logs or errors.

#![forbid(unsafe_code)]

mod assertion;
mod authority;
#[cfg(feature = "azure-core")]
mod azure;
mod cache;
mod core;
mod credential;
mod environment;
mod error;
mod http;
mod persistence;
mod protocol;
mod secret;
mod tenant;
mod token;

pub use crate::assertion::{
    AZURE_FEDERATED_TOKEN_FILE, AssertionFn, AssertionFuture, BoxError, ClientAssertionSource,
    FileAssertion, assertion_fn,
};
pub use crate::authority::{AZURE_AUTHORITY_HOST, Authority, AzureAuthorityHosts, TenantId};
pub use crate::cache::TokenCache;
pub use crate::credential::client_assertion::{
    ClientAssertionCredential, ClientAssertionCredentialBuilder,
};
pub use crate::environment::{
    Clock, Environment, ManualClock, MapEnvironment, ProcessEnvironment, SystemClock,
};
pub use crate::error::{
    BuildError, ClientAuthenticationError, CredentialError, CredentialUnavailableError, EntraError,
    FailureKind,
};
pub use crate::http::{HttpOptions, RetryPolicy, SSL_CERT_FILE};
pub use crate::persistence::TokenCachePersistenceOptions;
pub use crate::secret::{
    AccessTokenSecret, ClientAssertion, ClientSecret, RefreshToken, UserAssertion,
};
pub use crate::tenant::AZURE_IDENTITY_DISABLE_MULTITENANTAUTH;
pub use crate::token::{AccessToken, AccessTokenInfo, TokenCredential, TokenRequestOptions};
