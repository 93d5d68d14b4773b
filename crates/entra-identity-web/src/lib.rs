//! The middle tier on Microsoft Entra ID, the Rust counterpart of Microsoft.Identity.Web:
//!
//! - [`Validator`]: validates the access tokens callers send (RS256 signatures with the
//!   authority's keys, issuer per tenant, audience, lifetime, scopes and roles), with typed
//!   [`Rejection`]s;
//! - with the default `axum` feature, [`axum`](crate::axum): an extractor and a tower layer
//!   that validate `Authorization: Bearer`, answer 401/403 with a proper `WWW-Authenticate`,
//!   and hand the handler the caller's claims and an on-behalf-of credential;
//! - [`DownstreamApi`]: calls another API with a token from any
//!   [`TokenCredential`](entra_identity::TokenCredential), answering Continuous Access
//!   Evaluation claims challenges.
//!
//! It is a separate crate from `entra-identity` so that the credential library stays free of
//! the web server and JWT validation dependencies.

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
