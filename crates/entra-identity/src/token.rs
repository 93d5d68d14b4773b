//! What credentials return, what they accept, and the trait they implement.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::error::CredentialError;
use crate::secret::AccessTokenSecret;

/// An access token and when it expires.
///
/// Fields may be added in later releases: read them, and build one with
/// [`AccessToken::new`] (in a test double, for example).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct AccessToken {
    /// The token.
    pub token: AccessTokenSecret,
    /// When it expires, in seconds since the Unix epoch.
    pub expires_on: i64,
}

impl AccessToken {
    /// A token that expires at `expires_on` (seconds since the Unix epoch).
    pub fn new(token: impl Into<AccessTokenSecret>, expires_on: i64) -> Self {
        Self {
            token: token.into(),
            expires_on,
        }
    }
}

/// An access token with everything known about it.
///
/// Fields may be added in later releases: read them, and build one with
/// [`AccessTokenInfo::new`] and its `with_` methods.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct AccessTokenInfo {
    /// The token.
    pub token: AccessTokenSecret,
    /// When it expires, in seconds since the Unix epoch.
    pub expires_on: i64,
    /// The token type, `Bearer` unless Entra ID said otherwise.
    pub token_type: Cow<'static, str>,
    /// When the credential will refresh it proactively, in seconds since the Unix epoch.
    pub refresh_on: Option<i64>,
}

impl AccessTokenInfo {
    /// A `Bearer` token that expires at `expires_on` (seconds since the Unix epoch), with no
    /// refresh time.
    pub fn new(token: impl Into<AccessTokenSecret>, expires_on: i64) -> Self {
        Self {
            token: token.into(),
            expires_on,
            token_type: Cow::Borrowed("Bearer"),
            refresh_on: None,
        }
    }

    /// The same token, with another type.
    #[must_use]
    pub fn with_token_type(mut self, token_type: impl Into<Cow<'static, str>>) -> Self {
        self.token_type = token_type.into();
        self
    }

    /// The same token, to be refreshed at `refresh_on` (seconds since the Unix epoch).
    #[must_use]
    pub fn with_refresh_on(mut self, refresh_on: Option<i64>) -> Self {
        self.refresh_on = refresh_on;
        self
    }
}

impl From<AccessTokenInfo> for AccessToken {
    fn from(info: AccessTokenInfo) -> Self {
        Self {
            token: info.token,
            expires_on: info.expires_on,
        }
    }
}

/// Options of a token request; the default asks for a plain token from the configured tenant.
///
/// ```
/// use entra_identity::TokenRequestOptions;
///
/// # let challenge = "";
/// let options = TokenRequestOptions::new()
///     .tenant_id("fabrikam.onmicrosoft.com")
///     .claims(challenge)
///     .enable_cae(true);
/// # let _ = options;
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenRequestOptions<'a> {
    /// Additional claims, such as a claims challenge from a resource. A request with claims
    /// always goes to Entra ID, bypassing the cache.
    pub claims: Option<&'a str>,
    /// The tenant to request the token from, subject to `additionally_allowed_tenants`.
    pub tenant_id: Option<&'a str>,
    /// Request a token for Continuous Access Evaluation (declares the `CP1` capability).
    pub enable_cae: bool,
}

impl<'a> TokenRequestOptions<'a> {
    /// The defaults: no claims, the configured tenant, no CAE.
    pub const fn new() -> Self {
        Self {
            claims: None,
            tenant_id: None,
            enable_cae: false,
        }
    }

    /// Adds claims, such as a claims challenge from a resource's `WWW-Authenticate` header.
    #[must_use]
    pub const fn claims(mut self, claims: &'a str) -> Self {
        self.claims = Some(claims);
        self
    }

    /// Asks another tenant, subject to the credential's `additionally_allowed_tenants`.
    #[must_use]
    pub const fn tenant_id(mut self, tenant_id: &'a str) -> Self {
        self.tenant_id = Some(tenant_id);
        self
    }

    /// Asks for a token for Continuous Access Evaluation, or not.
    #[must_use]
    pub const fn enable_cae(mut self, enable_cae: bool) -> Self {
        self.enable_cae = enable_cae;
        self
    }
}

/// A source of access tokens.
///
/// Implemented by every credential of this crate, and dyn-compatible: a service can hold
/// `Arc<dyn TokenCredential>` chosen at start-up, and a test can implement it with a double.
/// The credentials also have inherent methods of the same names, so calls compile with
/// `azure_core::credentials::TokenCredential` in scope too.
///
/// Methods return a [`TokenFuture`]: already complete when a cached token answers, so the hit
/// path neither allocates nor awaits; boxed only when a request must be made.
///
/// ```
/// use std::sync::Arc;
/// use entra_identity::{AccessTokenInfo, TokenCredential, TokenFuture, TokenRequestOptions};
///
/// /// Always the same token: a test double.
/// #[derive(Debug)]
/// struct Fixed;
///
/// impl TokenCredential for Fixed {
///     fn get_token_info<'a>(
///         &'a self,
///         _scopes: &'a [&'a str],
///         _options: TokenRequestOptions<'a>,
///     ) -> TokenFuture<'a, AccessTokenInfo> {
///         TokenFuture::ready(Ok(AccessTokenInfo::new("token", i64::MAX)))
///     }
/// }
///
/// # async fn example() -> Result<(), entra_identity::CredentialError> {
/// let credential: Arc<dyn TokenCredential> = Arc::new(Fixed);
/// let token = credential.get_token(&["scope"], TokenRequestOptions::default()).await?;
/// # let _ = token; Ok(()) }
/// ```
pub trait TokenCredential: Send + Sync + fmt::Debug {
    /// Requests an access token for `scopes` (at least one).
    ///
    /// # Errors
    ///
    /// [`CredentialError::InvalidRequest`] for no scopes or a malformed tenant or claims;
    /// [`CredentialError::CredentialUnavailable`] after [`TokenCredential::close`];
    /// [`CredentialError::ClientAuthentication`] when authentication fails.
    fn get_token<'a>(
        &'a self,
        scopes: &'a [&'a str],
        options: TokenRequestOptions<'a>,
    ) -> TokenFuture<'a, AccessToken> {
        self.get_token_info(scopes, options).map(AccessToken::from)
    }

    /// Requests an access token for `scopes`, with its type and refresh time.
    ///
    /// # Errors
    ///
    /// As [`TokenCredential::get_token`].
    fn get_token_info<'a>(
        &'a self,
        scopes: &'a [&'a str],
        options: TokenRequestOptions<'a>,
    ) -> TokenFuture<'a, AccessTokenInfo>;

    /// Releases the credential's resources; later requests fail with
    /// [`CredentialError::CredentialUnavailable`]. Does nothing by default.
    fn close(&self) -> CloseFuture<'_> {
        CloseFuture::done()
    }
}

impl<T: TokenCredential + ?Sized> TokenCredential for Arc<T> {
    fn get_token<'a>(
        &'a self,
        scopes: &'a [&'a str],
        options: TokenRequestOptions<'a>,
    ) -> TokenFuture<'a, AccessToken> {
        (**self).get_token(scopes, options)
    }

    fn get_token_info<'a>(
        &'a self,
        scopes: &'a [&'a str],
        options: TokenRequestOptions<'a>,
    ) -> TokenFuture<'a, AccessTokenInfo> {
        (**self).get_token_info(scopes, options)
    }

    fn close(&self) -> CloseFuture<'_> {
        (**self).close()
    }
}

impl<T: TokenCredential + ?Sized> TokenCredential for Box<T> {
    fn get_token<'a>(
        &'a self,
        scopes: &'a [&'a str],
        options: TokenRequestOptions<'a>,
    ) -> TokenFuture<'a, AccessToken> {
        (**self).get_token(scopes, options)
    }

    fn get_token_info<'a>(
        &'a self,
        scopes: &'a [&'a str],
        options: TokenRequestOptions<'a>,
    ) -> TokenFuture<'a, AccessTokenInfo> {
        (**self).get_token_info(scopes, options)
    }

    fn close(&self) -> CloseFuture<'_> {
        (**self).close()
    }
}

/// The future of a token request: complete at once when a cached token answers (no
/// allocation), a boxed future otherwise.
#[must_use = "futures do nothing unless awaited"]
pub struct TokenFuture<'a, T> {
    state: TokenFutureState<'a, T>,
}

enum TokenFutureState<'a, T> {
    /// The outcome, taken when polled. The error is boxed to keep the ready case small.
    Ready(Option<Result<T, Box<CredentialError>>>),
    Pending(Pin<Box<dyn Future<Output = Result<T, CredentialError>> + Send + 'a>>),
}

impl<'a, T> TokenFuture<'a, T> {
    /// A request already answered.
    pub fn ready(outcome: Result<T, CredentialError>) -> Self {
        Self {
            state: TokenFutureState::Ready(Some(outcome.map_err(Box::new))),
        }
    }

    /// A request still to be made: `future` is boxed.
    pub fn new(future: impl Future<Output = Result<T, CredentialError>> + Send + 'a) -> Self {
        Self {
            state: TokenFutureState::Pending(Box::pin(future)),
        }
    }

    /// The same request, its answer converted by `convert`; a ready answer stays ready.
    pub fn map<U>(self, convert: fn(T) -> U) -> TokenFuture<'a, U>
    where
        T: 'a,
        U: 'a,
    {
        match self.state {
            TokenFutureState::Ready(outcome) => TokenFuture {
                state: TokenFutureState::Ready(outcome.map(|outcome| outcome.map(convert))),
            },
            TokenFutureState::Pending(future) => {
                TokenFuture::new(async move { future.await.map(convert) })
            }
        }
    }
}

// The ready outcome is only ever moved out whole, never pinned: the future is `Unpin`
// whatever `T` is.
impl<T> Unpin for TokenFuture<'_, T> {}

impl<T> Future for TokenFuture<'_, T> {
    type Output = Result<T, CredentialError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().state {
            TokenFutureState::Ready(outcome) => Poll::Ready(match outcome.take() {
                Some(outcome) => outcome.map_err(|error| *error),
                None => Err(CredentialError::InvalidRequest(
                    "token future polled after completion".into(),
                )),
            }),
            TokenFutureState::Pending(future) => future.as_mut().poll(cx),
        }
    }
}

impl<T> fmt::Debug for TokenFuture<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            TokenFutureState::Ready(Some(Ok(_))) => "ready",
            TokenFutureState::Ready(Some(Err(_))) => "failed",
            TokenFutureState::Ready(None) => "taken",
            TokenFutureState::Pending(_) => "pending",
        };
        f.debug_struct("TokenFuture")
            .field("state", &state)
            .finish()
    }
}

/// The future of [`TokenCredential::close`].
#[must_use = "futures do nothing unless awaited"]
pub struct CloseFuture<'a> {
    future: Option<Pin<Box<dyn Future<Output = ()> + Send + 'a>>>,
}

impl<'a> CloseFuture<'a> {
    /// Closing is already done.
    pub fn done() -> Self {
        Self { future: None }
    }

    /// Closing finishes when `future` does; it is boxed.
    pub fn new(future: impl Future<Output = ()> + Send + 'a) -> Self {
        Self {
            future: Some(Box::pin(future)),
        }
    }
}

impl Future for CloseFuture<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.get_mut().future {
            Some(future) => future.as_mut().poll(cx),
            None => Poll::Ready(()),
        }
    }
}

impl fmt::Debug for CloseFuture<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloseFuture")
            .field("done", &self.future.is_none())
            .finish()
    }
}
