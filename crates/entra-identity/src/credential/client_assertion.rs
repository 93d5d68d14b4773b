//! `ClientAssertionCredential`: a service principal proves itself with a JWT assertion that a
//! function (or a file) supplies.

use std::fmt;
use std::sync::Arc;

use crate::cache::memory::{FetchFuture, Fetched, Hints};
use crate::client_auth::assertion::ClientAssertionSource;
use crate::credential::common_builder_methods;
use crate::credential::core::{CommonOptions, Core, Lookup, OwnedRequest, serve_and_refresh};
use crate::endpoint::protocol::{FormBody, JWT_BEARER_ASSERTION_TYPE, merge_claims};
use crate::error::{BuildError, ClientAuthenticationError, CredentialError, FailureKind};
use crate::token::{
    AccessToken, AccessTokenInfo, CloseFuture, TokenCredential, TokenFuture, TokenRequestOptions,
};

/// Authenticates a service principal with a JWT assertion.
///
/// The assertion source is called every time the credential requests a new token, and never
/// when a cached token answers. Use it for workload identity (see
/// [`crate::FileAssertion`]), a managed identity acting as a federated credential, or an
/// assertion signed elsewhere.
///
/// Cloning is cheap: clones share the configuration, the cache and the connection pool.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use entra_identity::{ClientAssertionCredential, TokenRequestOptions};
///
/// let credential = ClientAssertionCredential::new(
///     "72f988bf-86f1-41af-91ab-2d7cd011db47",
///     "11111111-2222-3333-4444-555555555555",
///     || async { Ok::<_, std::io::Error>(std::fs::read_to_string("/var/run/token")?) },
/// )?;
/// let scopes = ["https://vault.azure.net/.default"];
/// let token = credential.get_token(&scopes, TokenRequestOptions::default()).await?;
/// # let _ = token; Ok(()) }
/// ```
#[derive(Clone)]
pub struct ClientAssertionCredential {
    inner: Arc<Inner>,
}

struct Inner {
    core: Core,
    source: Box<dyn ClientAssertionSource>,
    /// This credential's usual partitions (plain and CAE), for cache hits without hashing.
    hints: Arc<Hints>,
}

impl fmt::Debug for ClientAssertionCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientAssertionCredential")
            .field("authority", &self.inner.core.authority)
            .field("tenant_id", self.inner.core.tenants.default_tenant())
            .field("client_id", &self.inner.core.client_id)
            .finish_non_exhaustive()
    }
}

impl ClientAssertionCredential {
    /// A credential for `client_id` in `tenant_id` with default options.
    ///
    /// # Errors
    ///
    /// An invalid tenant ID, an empty client ID, or an invalid `AZURE_AUTHORITY_HOST`.
    pub fn new(
        tenant_id: &str,
        client_id: &str,
        source: impl ClientAssertionSource + 'static,
    ) -> Result<Self, BuildError> {
        Self::builder(tenant_id, client_id, source).build()
    }

    /// Starts building a credential with options.
    pub fn builder(
        tenant_id: &str,
        client_id: &str,
        source: impl ClientAssertionSource + 'static,
    ) -> ClientAssertionCredentialBuilder {
        ClientAssertionCredentialBuilder {
            tenant_id: tenant_id.to_owned(),
            client_id: client_id.to_owned(),
            source: Box::new(source),
            common: CommonOptions::default(),
        }
    }

    /// The configured tenant.
    pub fn tenant_id(&self) -> &str {
        self.inner.core.tenants.default_tenant().as_str()
    }

    /// The application's client ID.
    pub fn client_id(&self) -> &str {
        &self.inner.core.client_id
    }

    /// The request a cache miss sends.
    fn fetcher(
        inner: &Arc<Inner>,
        request: &OwnedRequest,
    ) -> impl FnOnce(&str, Option<crate::RefreshToken>) -> FetchFuture + use<> {
        let inner = inner.clone();
        let scope = request.scopes.join(" ");
        let claims = request.claims.clone();
        let enable_cae = request.enable_cae;
        move |tenant, _refresh_token| {
            let tenant = tenant.to_owned();
            Box::pin(async move {
                let claims = merge_claims(claims.as_deref(), enable_cae)?;
                let assertion = inner.source.client_assertion().await.map_err(|error| {
                    CredentialError::ClientAuthentication(
                        ClientAuthenticationError::new(
                            FailureKind::ClientAssertion,
                            "the client assertion source failed",
                        )
                        .with_source(error),
                    )
                })?;
                let body = FormBody::new()
                    .field("client_assertion", assertion.expose_secret())
                    .field("client_assertion_type", JWT_BEARER_ASSERTION_TYPE)
                    .field("client_id", &inner.core.client_id)
                    .field("grant_type", "client_credentials")
                    .field("scope", &scope)
                    .optional("claims", claims.as_deref())
                    .finish();
                inner.core.post(&tenant, body).await.map(Fetched::from)
            })
        }
    }
}

impl ClientAssertionCredential {
    /// A token request: answered at once from the cache when it can be.
    fn token_future(
        &self,
        scopes: &[&str],
        options: TokenRequestOptions<'_>,
    ) -> TokenFuture<'static, AccessTokenInfo> {
        match self
            .inner
            .core
            .lookup(scopes, options, None, &self.inner.hints)
        {
            Ok(Lookup::Hit(token)) => TokenFuture::ready(Ok(token)),
            Err(error) => TokenFuture::ready(Err(error)),
            Ok(Lookup::Refresh(token, request)) => {
                let inner = self.inner.clone();
                let refresh = async move {
                    let fetch = Self::fetcher(&inner, &request);
                    inner.core.refresh(&request, None, fetch).await
                };
                serve_and_refresh(self.inner.core.name, token, refresh)
            }
            Ok(Lookup::Miss(request)) => {
                let inner = self.inner.clone();
                TokenFuture::new(async move {
                    let fetch = Self::fetcher(&inner, &request);
                    inner.core.fetch(&request, None, fetch).await
                })
            }
        }
    }
}

impl ClientAssertionCredential {
    /// Requests an access token for `scopes` (see [`TokenCredential::get_token`]). A cached
    /// token answers at once, without allocating.
    ///
    /// # Errors
    ///
    /// As [`TokenCredential::get_token`].
    pub fn get_token<'a>(
        &'a self,
        scopes: &'a [&'a str],
        options: TokenRequestOptions<'a>,
    ) -> TokenFuture<'a, AccessToken> {
        if let Some(token) = self.inner.core.hot(scopes, &options, &self.inner.hints) {
            return TokenFuture::ready(Ok(token));
        }
        self.token_future(scopes, options).map(AccessToken::from)
    }

    /// Requests an access token for `scopes`, with its type and refresh time (see
    /// [`TokenCredential::get_token_info`]).
    ///
    /// # Errors
    ///
    /// As [`TokenCredential::get_token`].
    pub fn get_token_info<'a>(
        &'a self,
        scopes: &'a [&'a str],
        options: TokenRequestOptions<'a>,
    ) -> TokenFuture<'a, AccessTokenInfo> {
        self.token_future(scopes, options)
    }

    /// Closes the credential and its clones at once: later requests fail with
    /// [`CredentialError::CredentialUnavailable`].
    pub fn close(&self) -> CloseFuture<'_> {
        self.inner.core.close();
        CloseFuture::done()
    }
}

impl TokenCredential for ClientAssertionCredential {
    fn get_token<'a>(
        &'a self,
        scopes: &'a [&'a str],
        options: TokenRequestOptions<'a>,
    ) -> TokenFuture<'a, AccessToken> {
        Self::get_token(self, scopes, options)
    }

    fn get_token_info<'a>(
        &'a self,
        scopes: &'a [&'a str],
        options: TokenRequestOptions<'a>,
    ) -> TokenFuture<'a, AccessTokenInfo> {
        Self::get_token_info(self, scopes, options)
    }

    fn close(&self) -> CloseFuture<'_> {
        Self::close(self)
    }
}

/// Builds a [`ClientAssertionCredential`].
#[must_use = "a builder does nothing until `build` is called"]
pub struct ClientAssertionCredentialBuilder {
    tenant_id: String,
    client_id: String,
    source: Box<dyn ClientAssertionSource>,
    common: CommonOptions,
}

impl fmt::Debug for ClientAssertionCredentialBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientAssertionCredentialBuilder")
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl ClientAssertionCredentialBuilder {
    common_builder_methods!(common);

    /// Builds the credential. Nothing is sent until the first token request.
    ///
    /// # Errors
    ///
    /// An invalid tenant ID or authority, an empty client ID, or an unreadable extra CA.
    pub fn build(self) -> Result<ClientAssertionCredential, BuildError> {
        let core = Core::build(
            "ClientAssertionCredential",
            &self.tenant_id,
            &self.client_id,
            self.common,
        )?;
        Ok(ClientAssertionCredential {
            inner: Arc::new(Inner {
                core,
                source: self.source,
                hints: Arc::default(),
            }),
        })
    }
}
