//! Why a token was refused.

/// Why an access token was refused.
///
/// The messages name the check that failed and never repeat what the token holds, so they are
/// safe to send back in a `WWW-Authenticate` header's `error_description`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// The request carries no bearer token.
    #[error("no bearer token")]
    Missing,
    /// The token is larger than the validator reads.
    #[error("the token is larger than {limit} bytes")]
    TooLarge {
        /// The configured cap, in bytes.
        limit: usize,
    },
    /// Not a compact JWT: three base64url segments, a JSON header and JSON claims.
    #[error("the token is not a well-formed JWT")]
    Malformed,
    /// The header names an algorithm other than RS256 (what Entra ID signs with): `none`, an
    /// HMAC, or anything else.
    #[error("the token's signing algorithm is not accepted")]
    UnsupportedAlgorithm,
    /// The header's `kid` names none of the authority's signing keys, even after a refresh
    /// (or a refresh was not allowed yet).
    #[error("the token's signing key is not one of the authority's")]
    UnknownKey,
    /// The signature does not verify with the key the header names.
    #[error("the token's signature is not valid")]
    BadSignature,
    /// The token expired (`exp`, beyond the allowed clock skew).
    #[error("the token has expired")]
    Expired,
    /// The token is not valid yet (`nbf`, beyond the allowed clock skew).
    #[error("the token is not valid yet")]
    NotYetValid,
    /// The token's `aud` is none of this API's client ID or application ID URIs.
    #[error("the token is not for this API")]
    WrongAudience,
    /// The token's issuer is not an accepted tenant's (`iss` and `tid`).
    #[error("the token's issuer is not accepted")]
    WrongIssuer,
    /// The token grants none of the required delegated scopes (`scp`) or app roles (`roles`).
    #[error("the token grants none of the required scopes or roles")]
    MissingScope,
    /// The authority's OpenID metadata or signing keys could not be fetched.
    #[error("the authority's signing keys are unavailable")]
    KeysUnavailable,
}

impl Rejection {
    /// The OAuth 2.0 bearer token error code (RFC 6750 section 3.1) for this rejection:
    /// `insufficient_scope` for [`Rejection::MissingScope`], `invalid_token` otherwise, and none
    /// for [`Rejection::Missing`] (a request without credentials gets a bare challenge) or
    /// [`Rejection::KeysUnavailable`] (the API's fault, not the caller's).
    pub fn error_code(&self) -> Option<&'static str> {
        match self {
            Self::Missing | Self::KeysUnavailable => None,
            Self::MissingScope => Some("insufficient_scope"),
            _ => Some("invalid_token"),
        }
    }
}
