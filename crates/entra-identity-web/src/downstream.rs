//! Calling a downstream API with a token from any credential, and answering its Continuous
//! Access Evaluation claims challenges.

use std::fmt;

use entra_identity::{CredentialError, TokenCredential, TokenRequestOptions};
use reqwest::header::{AUTHORIZATION, HeaderValue, WWW_AUTHENTICATE};

use crate::challenge::claims_from_challenge;

/// A downstream API called with tokens for fixed scopes.
///
/// [`DownstreamApi::send`] attaches a token from the credential it is given (an
/// on-behalf-of credential for the caller, or the service's own). When the API answers 401
/// with a claims challenge (`WWW-Authenticate: Bearer error="insufficient_claims",
/// claims="..."`), it asks the credential for a new token carrying those claims (which
/// bypasses the token cache), sends the request once more and returns the second answer,
/// whatever it is.
///
/// ```no_run
/// # async fn example(caller: entra_identity::OnBehalfOfCredential) -> Result<(), entra_identity_web::DownstreamError> {
/// use entra_identity_web::DownstreamApi;
///
/// let api = DownstreamApi::new(reqwest::Client::new(), ["api://downstream/Data.Read"]);
/// let request = reqwest::Client::new().get("https://downstream.example/data").build()?;
/// let response = api.send(&caller, request).await?;
/// # let _ = response; Ok(()) }
/// ```
#[derive(Clone)]
pub struct DownstreamApi {
    http: reqwest::Client,
    scopes: Vec<String>,
    enable_cae: bool,
}

impl fmt::Debug for DownstreamApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DownstreamApi")
            .field("scopes", &self.scopes)
            .field("enable_cae", &self.enable_cae)
            .finish_non_exhaustive()
    }
}

/// Why a downstream call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DownstreamError {
    /// Entra ID refused the token request with a claims challenge: the user must sign in
    /// again (or satisfy a policy). Pass `claims` back to the caller, as
    /// [`crate::challenge::insufficient_claims`] does; with the `axum` feature this error
    /// answers 401 with that challenge by itself.
    #[error("Entra ID requires the user's interaction: {source}")]
    ClaimsChallenge {
        /// The claims the caller's next token must carry (JSON).
        claims: String,
        /// Entra ID's answer.
        #[source]
        source: CredentialError,
    },
    /// The token request failed otherwise.
    #[error("cannot get a token for the downstream API: {0}")]
    Token(#[source] CredentialError),
    /// The request could not be sent, or its token is not a valid header value.
    #[error("the downstream request failed: {0}")]
    Http(#[from] reqwest::Error),
}

impl DownstreamError {
    /// The claims of a [`DownstreamError::ClaimsChallenge`].
    pub fn claims_challenge(&self) -> Option<&str> {
        match self {
            Self::ClaimsChallenge { claims, .. } => Some(claims),
            _ => None,
        }
    }
}

impl DownstreamApi {
    /// Calls with `http`, asking for tokens for `scopes`. Continuous Access Evaluation is
    /// declared (the `CP1` capability): the API may then send claims challenges, which this
    /// client answers.
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(
        http: reqwest::Client,
        scopes: I,
    ) -> Self {
        Self {
            http,
            scopes: scopes.into_iter().map(Into::into).collect(),
            enable_cae: true,
        }
    }

    /// Whether tokens are requested for Continuous Access Evaluation; on by default.
    #[must_use]
    pub fn enable_cae(mut self, enable: bool) -> Self {
        self.enable_cae = enable;
        self
    }

    /// Sends `request` with a bearer token from `credential`, answering one claims challenge.
    /// A request whose body cannot be cloned (a stream) is sent once: a challenge to it is
    /// returned as the answer.
    ///
    /// # Errors
    ///
    /// [`DownstreamError::ClaimsChallenge`] when Entra ID refuses the token for lack of the
    /// user's interaction; [`DownstreamError::Token`] for other token failures;
    /// [`DownstreamError::Http`] when the request cannot be sent.
    pub async fn send<C: TokenCredential + ?Sized>(
        &self,
        credential: &C,
        request: reqwest::Request,
    ) -> Result<reqwest::Response, DownstreamError> {
        let retry = request.try_clone();
        let response = self.attempt(credential, request, None).await?;
        if response.status() != reqwest::StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let claims = response
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .find_map(claims_from_challenge);
        match (claims, retry) {
            (Some(claims), Some(retry)) => {
                tracing::debug!("the downstream API sent a claims challenge; retrying once");
                self.attempt(credential, retry, Some(&claims)).await
            }
            _ => Ok(response),
        }
    }

    async fn attempt<C: TokenCredential + ?Sized>(
        &self,
        credential: &C,
        mut request: reqwest::Request,
        claims: Option<&str>,
    ) -> Result<reqwest::Response, DownstreamError> {
        let scopes: Vec<&str> = self.scopes.iter().map(String::as_str).collect();
        let mut options = TokenRequestOptions::new().enable_cae(self.enable_cae);
        if let Some(claims) = claims {
            options = options.claims(claims);
        }
        let token = credential
            .get_token(&scopes, options)
            .await
            .map_err(classify)?;
        let mut value = HeaderValue::try_from(format!("Bearer {}", token.token.expose_secret()))
            .map_err(|_| {
                DownstreamError::Token(CredentialError::InvalidRequest(
                    "the token is not a valid header value".to_owned(),
                ))
            })?;
        value.set_sensitive(true);
        request.headers_mut().insert(AUTHORIZATION, value);
        Ok(self.http.execute(request).await?)
    }
}

/// A token failure that carries a claims challenge is the user's to answer.
fn classify(error: CredentialError) -> DownstreamError {
    let claims = error
        .entra()
        .and_then(|entra| entra.claims.clone())
        .filter(|claims| !claims.trim().is_empty());
    match claims {
        Some(claims) => DownstreamError::ClaimsChallenge {
            claims,
            source: error,
        },
        None => DownstreamError::Token(error),
    }
}
