//! The middle tier on Microsoft Entra ID, the Rust counterpart of Microsoft.Identity.Web.
//!
//! A web API that Entra ID protects must do three things, which this crate does:
//!
//! - **validate the access tokens callers send**: [`Validator`] checks the RS256 signature
//!   with the authority's keys (from its OpenID metadata and JWKS, cached, refreshed when a
//!   token names an unknown key, at most once per interval), the issuer per tenant (one, a
//!   list, or any, with Entra's `{tenantid}` issuer checked against `tid`), v1.0 and v2.0
//!   tokens, the audience (client ID or App ID URI), the lifetime (with a clock skew) and the
//!   required scopes (`scp`) or app roles (`roles`). Refusals are typed ([`Rejection`]);
//!   hostile input never panics and is read up to a size cap.
//! - **act on the caller's behalf**: with the default `axum` feature, the [`axum`] module's
//!   `Caller` extractor and `BearerLayer` validate `Authorization: Bearer`, answer 401 or 403
//!   with a proper `WWW-Authenticate`, and hand the handler the claims and an
//!   `OnBehalfOfCredential` for the caller, from one shared
//!   [`OnBehalfOfApplication`](entra_identity::OnBehalfOfApplication).
//! - **call downstream APIs and answer Continuous Access Evaluation challenges**:
//!   [`DownstreamApi`] attaches a token from any
//!   [`TokenCredential`](entra_identity::TokenCredential) and, on a 401 with
//!   `error="insufficient_claims"`, gets a new token carrying the demanded claims and retries
//!   once. When Entra ID refuses the on-behalf-of exchange itself and sends claims, the
//!   [`DownstreamError::ClaimsChallenge`] goes back to the caller as a 401 challenge
//!   ([`challenge`]).
//!
//! It is a separate crate from `entra-identity` so that the credential library stays free of
//! the web server and JWT validation dependencies. The signatures are verified by
//! `jsonwebtoken` with its `aws_lc_rs` backend (the provider rustls and the library use);
//! enabling its `rust_crypto` feature too, anywhere in the build, makes `jsonwebtoken` refuse
//! to choose and panic on first use.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use axum::{Json, Router, extract::State, routing::get};
//! use entra_identity::OnBehalfOfApplication;
//! use entra_identity_web::axum::{Caller, MiddleTier};
//! use entra_identity_web::{DownstreamApi, DownstreamError, Validator};
//!
//! #[derive(Clone)]
//! struct App { tier: MiddleTier, graph: DownstreamApi, http: reqwest::Client }
//! impl axum::extract::FromRef<App> for MiddleTier {
//!     fn from_ref(app: &App) -> Self { app.tier.clone() }
//! }
//!
//! async fn profile(State(app): State<App>, caller: Caller) -> Result<Json<serde_json::Value>, DownstreamError> {
//!     let credential = caller.on_behalf_of().expect("configured").expect("a validated token");
//!     let request = app.http.get("https://graph.microsoft.com/v1.0/me").build()?;
//!     Ok(Json(app.graph.send(&credential, request).await?.json().await?))
//! }
//!
//! let tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47";
//! let client_id = "11111111-2222-3333-4444-555555555555";
//! let validator = Validator::builder()
//!     .tenant(tenant)
//!     .audience(client_id)
//!     .audience("api://my-api")
//!     .required_scopes(["access_as_user"])
//!     .build()?;
//! let application = OnBehalfOfApplication::builder(tenant, client_id)
//!     .client_secret(std::env::var("AZURE_CLIENT_SECRET")?)
//!     .build()?;
//! let http = reqwest::Client::new();
//! let app = App {
//!     tier: MiddleTier::new(validator).on_behalf_of(application),
//!     graph: DownstreamApi::new(http.clone(), ["https://graph.microsoft.com/User.Read"]),
//!     http,
//! };
//! let router: Router = Router::new().route("/profile", get(profile)).with_state(app);
//! # let _ = router; Ok(()) }
//! ```
//!
//! `examples/middle_tier.rs` runs the whole flow offline against the `entra-emulator`.

#![forbid(unsafe_code)]

#[cfg(feature = "axum")]
pub mod axum;
pub mod challenge;
mod downstream;
mod validate;

pub use crate::downstream::{DownstreamApi, DownstreamError};
pub use crate::validate::{
    Claims, DEFAULT_CLOCK_SKEW, DEFAULT_KEY_LIFETIME, DEFAULT_MAX_TOKEN_BYTES,
    DEFAULT_MIN_KEY_REFRESH_INTERVAL, PUBLIC_CLOUD_AUTHORITY, Rejection, Validator,
    ValidatorBuildError, ValidatorBuilder,
};

/// Internals exposed for the fuzz targets. Not part of the stable API.
#[doc(hidden)]
pub mod internal {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use crate::{Rejection, Validator, ValidatorBuilder};

    /// `builder`'s validator with only the RSA key `(n, e)` (base64url) named `kid`: it
    /// never fetches keys, so a validation completes in one poll. `None` for an unusable key
    /// or builder.
    pub fn offline_validator(
        builder: ValidatorBuilder,
        kid: &str,
        n: &str,
        e: &str,
    ) -> Option<Validator> {
        builder.build().ok()?.with_fixed_key(kid, n, e)
    }

    /// Validates `token` with an offline validator in one poll: `None` if it had to wait
    /// (which an offline validator never does).
    pub fn validate_now(
        validator: &Validator,
        token: &str,
    ) -> Option<Result<crate::Claims, Rejection>> {
        let mut future = pin!(validator.validate(token));
        match future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Ready(outcome) => Some(outcome),
            Poll::Pending => None,
        }
    }

    /// The claim checks alone (lifetime, audience, issuer, scopes) on `claims`, a JSON
    /// object's bytes.
    ///
    /// # Errors
    ///
    /// [`Rejection::Malformed`] for bytes that are not a JSON object; the check's rejection.
    pub fn check_claims(validator: &Validator, claims: &[u8]) -> Result<(), Rejection> {
        let claims: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(claims).map_err(|_| Rejection::Malformed)?;
        validator.check_claims(&claims)
    }
}
