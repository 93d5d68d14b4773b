//! axum and tower integration: validate `Authorization: Bearer`, answer refusals with a
//! proper `WWW-Authenticate`, and hand handlers the caller.
//!
//! Two ways in, which can be combined:
//!
//! - the [`Caller`] extractor, with a [`MiddleTier`] in the router's state (through
//!   [`FromRef`]): each handler that takes a `Caller` is protected;
//! - the [`BearerLayer`] (from [`MiddleTier::layer`]): every route under it is protected, and
//!   handlers may still take the `Caller` it validated.
//!
//! ```no_run
//! # fn example(validator: entra_identity_web::Validator, application: entra_identity::OnBehalfOfApplication) {
//! use axum::{Router, routing::get};
//! use entra_identity_web::axum::{Caller, MiddleTier};
//!
//! async fn me(caller: Caller) -> String {
//!     format!("hello {}", caller.claims().object_id().unwrap_or("?"))
//! }
//!
//! let tier = MiddleTier::new(validator).on_behalf_of(application);
//! let app: Router = Router::new().route("/me", get(me)).with_state(tier);
//! # let _ = app; }
//! ```

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use entra_identity::{BuildError, OnBehalfOfApplication, OnBehalfOfCredential, UserAssertion};

use crate::challenge::{bearer_error, insufficient_claims};
use crate::{Claims, DownstreamError, Rejection, Validator};

/// What the integration needs: the validator and, to call downstream APIs on the caller's
/// behalf, the on-behalf-of application. Cheap to clone.
#[derive(Clone, Debug)]
pub struct MiddleTier {
    validator: Validator,
    application: Option<OnBehalfOfApplication>,
}

impl MiddleTier {
    /// Validates with `validator`; no on-behalf-of credentials.
    pub fn new(validator: Validator) -> Self {
        Self {
            validator,
            application: None,
        }
    }

    /// Hands each caller an on-behalf-of credential from `application` (one application,
    /// one shared cache, for all callers).
    #[must_use]
    pub fn on_behalf_of(mut self, application: OnBehalfOfApplication) -> Self {
        self.application = Some(application);
        self
    }

    /// A tower layer that refuses requests without a valid bearer token.
    pub fn layer(&self) -> BearerLayer {
        BearerLayer { tier: self.clone() }
    }

    /// The validator.
    pub fn validator(&self) -> &Validator {
        &self.validator
    }

    /// Validates the `Authorization` header of a request.
    ///
    /// # Errors
    ///
    /// [`AuthRejection`] (a response) when there is no valid bearer token.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, AuthRejection> {
        let token = bearer_token(headers).map_err(AuthRejection)?;
        let claims = self
            .validator
            .validate(token)
            .await
            .map_err(AuthRejection)?;
        Ok(Caller {
            claims,
            assertion: UserAssertion::from(token),
            application: self.application.clone(),
        })
    }
}

/// The authenticated caller: the claims of their validated token, and credentials acting on
/// their behalf.
#[derive(Clone)]
pub struct Caller {
    claims: Claims,
    assertion: UserAssertion,
    application: Option<OnBehalfOfApplication>,
}

impl fmt::Debug for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Caller")
            .field("object_id", &self.claims.object_id())
            .field("tenant_id", &self.claims.tenant_id())
            .finish_non_exhaustive()
    }
}

impl Caller {
    /// The validated claims.
    pub fn claims(&self) -> &Claims {
        &self.claims
    }

    /// The caller's token, as sent: the user assertion of an on-behalf-of exchange.
    pub fn token(&self) -> &UserAssertion {
        &self.assertion
    }

    /// An on-behalf-of credential for this caller from the middle tier's application (cheap:
    /// one SHA-256). `None` when the [`MiddleTier`] has no application.
    ///
    /// # Errors
    ///
    /// Never for a validated token (an empty assertion is the only failure).
    pub fn on_behalf_of(&self) -> Option<Result<OnBehalfOfCredential, BuildError>> {
        self.application
            .as_ref()
            .map(|application| application.credential_for(self.assertion.clone()))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller
where
    MiddleTier: FromRef<S>,
{
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AuthRejection> {
        if let Some(caller) = parts.extensions.get::<Self>() {
            return Ok(caller.clone());
        }
        MiddleTier::from_ref(state)
            .authenticate(&parts.headers)
            .await
    }
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer_token(headers: &HeaderMap) -> Result<&str, Rejection> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(Rejection::Missing);
    };
    if values.next().is_some() {
        return Err(Rejection::Malformed);
    }
    let value = value.to_str().map_err(|_| Rejection::Malformed)?;
    let (scheme, token) = value.split_once(' ').ok_or(Rejection::Missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        // Another scheme is no bearer token.
        return Err(Rejection::Missing);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(Rejection::Malformed);
    }
    Ok(token)
}

/// A refused request, as a response: 401 with `WWW-Authenticate: Bearer` (and
/// `error="invalid_token"` when a token was sent), 403 with `error="insufficient_scope"`
/// for a missing scope or role, 503 when the signing keys are unavailable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthRejection(pub Rejection);

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        let rejection = self.0;
        let (status, challenge) = match (&rejection, rejection.error_code()) {
            (Rejection::KeysUnavailable, _) => (StatusCode::SERVICE_UNAVAILABLE, None),
            (_, None) => (StatusCode::UNAUTHORIZED, Some("Bearer".to_owned())),
            (Rejection::MissingScope, Some(code)) => (
                StatusCode::FORBIDDEN,
                Some(bearer_error(code, &rejection.to_string())),
            ),
            (_, Some(code)) => (
                StatusCode::UNAUTHORIZED,
                Some(bearer_error(code, &rejection.to_string())),
            ),
        };
        let mut response = (status, rejection.to_string()).into_response();
        if let Some(challenge) = challenge.and_then(|text| HeaderValue::try_from(text).ok()) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge);
        }
        response
    }
}

/// A downstream failure, as a response: a claims challenge goes back to the caller as 401
/// with `WWW-Authenticate: Bearer error="insufficient_claims", claims="..."` (as
/// Microsoft.Identity.Web does), so that their client can get a token satisfying it; any
/// other failure is 502 Bad Gateway, without details.
impl IntoResponse for DownstreamError {
    fn into_response(self) -> Response {
        match self.claims_challenge() {
            Some(claims) => {
                let challenge = insufficient_claims(
                    claims,
                    "the identity provider requires the user's interaction",
                );
                let mut response = (StatusCode::UNAUTHORIZED, "claims challenge").into_response();
                if let Ok(value) = HeaderValue::try_from(challenge) {
                    response
                        .headers_mut()
                        .insert(header::WWW_AUTHENTICATE, value);
                }
                response
            }
            None => {
                tracing::warn!(error = %self, "downstream call failed");
                (StatusCode::BAD_GATEWAY, "the downstream call failed").into_response()
            }
        }
    }
}

/// Refuses requests without a valid bearer token, and puts the [`Caller`] in the request's
/// extensions for handlers. Made by [`MiddleTier::layer`].
#[derive(Clone, Debug)]
pub struct BearerLayer {
    tier: MiddleTier,
}

impl<S> tower::Layer<S> for BearerLayer {
    type Service = BearerService<S>;

    fn layer(&self, inner: S) -> BearerService<S> {
        BearerService {
            inner,
            tier: self.tier.clone(),
        }
    }
}

/// The service of a [`BearerLayer`].
#[derive(Clone, Debug)]
pub struct BearerService<S> {
    inner: S,
    tier: MiddleTier,
}

impl<S, B> tower::Service<Request<B>> for BearerService<S>
where
    S: tower::Service<Request<B>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // The clone that was made ready is the one that serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let tier = self.tier.clone();
        Box::pin(async move {
            match tier.authenticate(request.headers()).await {
                Ok(caller) => {
                    request.extensions_mut().insert(caller);
                    inner.call(request).await
                }
                Err(rejection) => Ok(rejection.into_response()),
            }
        })
    }
}
