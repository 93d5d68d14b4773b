//! What credentials return, what they accept, and the trait they implement.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::error::CredentialError;
use crate::secret::AccessTokenSecret;

/// An access token and when it expires.
#[derive(Clone, Debug)]
pub struct AccessToken {
    /// The token.
    pub token: AccessTokenSecret,
    /// When it expires, in seconds since the Unix epoch.
    pub expires_on: i64,
}

/// An access token with everything known about it.
#[derive(Clone, Debug)]
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

impl From<AccessTokenInfo> for AccessToken {
    fn from(info: AccessTokenInfo) -> Self {
        Self {
            token: info.token,
            expires_on: info.expires_on,
        }
    }
}

/// Options of a token request. Unset fields keep the credential's defaults.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokenRequestOptions<'a> {
    /// Additional claims, such as a claims challenge from a resource. A request with claims
    /// always goes to Entra ID, bypassing the cache.
    pub claims: Option<&'a str>,
    /// The tenant to request the token from, subject to `additionally_allowed_tenants`.
    pub tenant_id: Option<&'a str>,
    /// Request a token for Continuous Access Evaluation (declares the `CP1` capability).
    pub enable_cae: bool,
}

/// A source of access tokens.
///
/// Implemented by every credential of this crate. Methods return `Send` futures so callers
/// can spawn them.
pub trait TokenCredential: Send + Sync {
    /// Requests an access token for `scopes` (at least one).
    ///
    /// `claims`, `tenant_id` and `enable_cae` are as in [`TokenRequestOptions`].
    ///
    /// # Errors
    ///
    /// [`CredentialError::InvalidRequest`] for no scopes or a malformed tenant or claims;
    /// [`CredentialError::CredentialUnavailable`] after [`TokenCredential::close`];
    /// [`CredentialError::ClientAuthentication`] when authentication fails.
    fn get_token<'a>(
        &'a self,
        scopes: &'a [&'a str],
        claims: Option<&'a str>,
        tenant_id: Option<&'a str>,
        enable_cae: bool,
    ) -> impl Future<Output = Result<AccessToken, CredentialError>> + Send + 'a {
        let options = TokenRequestOptions {
            claims,
            tenant_id,
            enable_cae,
        };
        let info = self.get_token_info(scopes, options);
        async move { info.await.map(AccessToken::from) }
    }

    /// Requests an access token for `scopes`, with its type and refresh time.
    ///
    /// # Errors
    ///
    /// As [`TokenCredential::get_token`].
    fn get_token_info(
        &self,
        scopes: &[&str],
        options: TokenRequestOptions<'_>,
    ) -> impl Future<Output = Result<AccessTokenInfo, CredentialError>> + Send;

    /// Releases the credential's resources; later requests fail with
    /// [`CredentialError::CredentialUnavailable`].
    fn close(&self) -> impl Future<Output = ()> + Send;
}

/// The future of our credentials' token requests: ready at once on a cache hit (small, no
/// allocation; an error is boxed to keep the ready case small), boxed only when a request
/// must be made.
pub(crate) enum TokenFuture<T> {
    Ready(Option<Result<T, Box<CredentialError>>>),
    Pending(Pin<Box<dyn Future<Output = Result<T, CredentialError>> + Send>>),
}

impl TokenFuture<AccessTokenInfo> {
    pub(crate) fn ready(outcome: Result<AccessTokenInfo, CredentialError>) -> Self {
        Self::Ready(Some(outcome.map_err(Box::new)))
    }

    /// The same request, answering with an [`AccessToken`].
    pub(crate) fn into_access_token(self) -> TokenFuture<AccessToken> {
        match self {
            Self::Ready(outcome) => TokenFuture::Ready(outcome.map(|o| o.map(AccessToken::from))),
            Self::Pending(future) => {
                TokenFuture::Pending(Box::pin(async move { future.await.map(AccessToken::from) }))
            }
        }
    }
}

impl<T: Unpin> Future for TokenFuture<T> {
    type Output = Result<T, CredentialError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Self::Ready(outcome) => Poll::Ready(match outcome.take() {
                Some(outcome) => outcome.map_err(|error| *error),
                None => Err(CredentialError::InvalidRequest(
                    "token future polled after completion".into(),
                )),
            }),
            Self::Pending(future) => future.as_mut().poll(cx),
        }
    }
}
