//! Errors: [`BuildError`] when a credential cannot be built, [`CredentialError`] when it cannot
//! produce a token.
//!
//! Every error's message says what failed, and its [`std::error::Error::source`] chain says
//! why, down to the root cause: the `reqwest::Error` and `std::io::Error` of a failed
//! connection, the `serde_json::Error` of an answer that is not JSON, the error a client
//! assertion function or a cache store returned. Messages do not repeat their cause's text:
//! print the whole chain to see everything.

use std::error::Error as StdError;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

/// Any error a source of client assertions or a cache store returns.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// The error that caused another, shared so that the error holding it stays `Clone`.
///
/// It dereferences to the cause. The holder's [`std::error::Error::source`] returns the cause
/// itself, not this wrapper, so `downcast_ref` finds the cause's own type; for that reason
/// `ErrorSource` is not an `Error` of its own.
#[derive(Clone)]
pub struct ErrorSource(Arc<dyn StdError + Send + Sync>);

impl ErrorSource {
    pub(crate) fn new(error: impl Into<BoxError>) -> Self {
        Self(Arc::from(error.into()))
    }
}

impl Deref for ErrorSource {
    type Target = dyn StdError + Send + Sync + 'static;

    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

impl fmt::Debug for ErrorSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for ErrorSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

/// Why a credential could not be built. Nothing was sent anywhere.
///
/// Build errors compare equal when they say the same: the same variant with the same fields,
/// whatever error caused them (causes, such as I/O errors, cannot be compared).
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The authority is not a plain https URL: another scheme, no host, control characters or
    /// whitespace anywhere in it, a backslash, userinfo (`user@`), a query or a fragment.
    #[error(
        "'{authority}' is an invalid authority. The value must be a TLS protected (https) URL."
    )]
    InvalidAuthority {
        /// The authority as given.
        authority: String,
    },
    /// A tenant ID that is neither a GUID nor a domain-like name: empty, longer than 253
    /// characters, with characters outside `[A-Za-z0-9.-]` (so no percent-encoding, slash,
    /// whitespace or control character), or with an empty label (`.`, `..`, `a..b`, `.a`).
    #[error(
        "Invalid tenant ID provided. You can locate your tenant ID by following the \
         instructions here: https://learn.microsoft.com/partner-center/find-ids-and-domain-names"
    )]
    InvalidTenantId,
    /// The client ID is empty.
    #[error("the client ID must not be empty")]
    MissingClientId,
    /// An additional trusted CA certificate could not be read.
    #[error("invalid CA certificate ({origin}): {reason}")]
    InvalidCertificateAuthority {
        /// Where the certificate came from.
        origin: String,
        /// What is wrong with it.
        reason: String,
        /// The error behind it: the `std::io::Error` of reading the file, or the PEM parser's.
        source: Option<ErrorSource>,
    },
    /// No client credential: one of a secret, a certificate or an assertion function is needed.
    #[error(
        "Either \"client_certificate\", \"client_secret\", or \"client_assertion_func\" must be provided"
    )]
    NoClientCredential,
    /// More than one client credential.
    #[error(
        "It is invalid to specify more than one of the following: \"client_assertion_func\", \
         \"client_certificate\" or \"client_secret\"."
    )]
    ConflictingClientCredentials,
    /// A password without a certificate.
    #[error("A password was given but no client certificate")]
    PasswordWithoutCertificate,
    /// The on-behalf-of user assertion is empty.
    #[error("\"user_assertion\" must not be empty.")]
    EmptyUserAssertion,
    /// The client certificate cannot be used; the source says why.
    #[error("\"client_certificate\" is not a valid certificate in PEM or PKCS12 format")]
    InvalidCertificate(#[source] CertificateError),
    /// Persistent token caching cannot be set up as asked.
    #[error("persistent token cache unavailable: {reason}")]
    PersistenceUnavailable {
        /// What is missing.
        reason: String,
        /// The error behind it, such as the platform secret store's.
        source: Option<ErrorSource>,
    },
    /// The HTTP client could not be created; the source is reqwest's error.
    #[error("cannot create the HTTP client")]
    HttpClient(#[source] ErrorSource),
}

impl PartialEq for BuildError {
    /// The same variant with the same fields; causes are not compared.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::InvalidAuthority { authority: a }, Self::InvalidAuthority { authority: b }) => {
                a == b
            }
            (
                Self::InvalidCertificateAuthority {
                    origin: a,
                    reason: reason_a,
                    ..
                },
                Self::InvalidCertificateAuthority {
                    origin: b,
                    reason: reason_b,
                    ..
                },
            ) => a == b && reason_a == reason_b,
            (Self::InvalidCertificate(a), Self::InvalidCertificate(b)) => a == b,
            (
                Self::PersistenceUnavailable { reason: a, .. },
                Self::PersistenceUnavailable { reason: b, .. },
            ) => a == b,
            (Self::InvalidTenantId, Self::InvalidTenantId)
            | (Self::MissingClientId, Self::MissingClientId)
            | (Self::NoClientCredential, Self::NoClientCredential)
            | (Self::ConflictingClientCredentials, Self::ConflictingClientCredentials)
            | (Self::PasswordWithoutCertificate, Self::PasswordWithoutCertificate)
            | (Self::EmptyUserAssertion, Self::EmptyUserAssertion)
            | (Self::HttpClient(_), Self::HttpClient(_)) => true,
            _ => false,
        }
    }
}

impl Eq for BuildError {}

/// Why a credential could not produce a token.
///
/// The wrapping variants are transparent: the message and the source are those of the error
/// they hold.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// The credential cannot attempt authentication: it lacks required data or state, for
    /// example because it was closed.
    #[error(transparent)]
    CredentialUnavailable(CredentialUnavailableError),
    /// Authentication was attempted and failed: Entra ID refused it, the response could not be
    /// understood, the network failed, or the request was not allowed by the credential's
    /// configuration (a tenant outside `additionally_allowed_tenants`).
    #[error(transparent)]
    ClientAuthentication(ClientAuthenticationError),
    /// The request itself is invalid: no scopes, a malformed tenant ID or claims.
    #[error("invalid token request: {0}")]
    InvalidRequest(String),
}

impl CredentialError {
    /// The authentication failure, if this is one.
    pub fn client_authentication(&self) -> Option<&ClientAuthenticationError> {
        match self {
            Self::ClientAuthentication(error) => Some(error),
            _ => None,
        }
    }

    /// What Entra ID answered, if it answered with an error.
    pub fn entra(&self) -> Option<&EntraError> {
        self.client_authentication()
            .and_then(ClientAuthenticationError::entra)
    }

    /// Whether trying again later may succeed (a transient failure: 408, 429, 5xx, a network
    /// error or a timeout).
    pub fn is_transient(&self) -> bool {
        self.client_authentication()
            .is_some_and(ClientAuthenticationError::is_transient)
    }

    /// How long Entra ID asked the client to wait, for a [`FailureKind::Throttled`] failure
    /// (see [`ClientAuthenticationError::retry_after`]).
    pub fn retry_after(&self) -> Option<Duration> {
        self.client_authentication()
            .and_then(ClientAuthenticationError::retry_after)
    }

    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        Self::CredentialUnavailable(CredentialUnavailableError {
            message: message.into(),
            source: None,
        })
    }

    /// Unavailable because of `source`.
    #[cfg_attr(
        not(all(target_os = "linux", feature = "secret-service")),
        allow(dead_code)
    )]
    pub(crate) fn unavailable_because(
        message: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> Self {
        Self::CredentialUnavailable(CredentialUnavailableError {
            message: message.into(),
            source: Some(ErrorSource::new(source)),
        })
    }
}

/// The credential lacks required data, state or platform support.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub struct CredentialUnavailableError {
    message: String,
    /// The error behind it, such as the platform secret store's.
    source: Option<ErrorSource>,
}

impl CredentialUnavailableError {
    /// The reason.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// What kind of authentication failure happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureKind {
    /// Entra ID answered with an error body.
    Service,
    /// Entra ID's answer could not be understood (empty, not JSON, truncated, HTML).
    InvalidResponse,
    /// The request did not reach Entra ID or its answer did not arrive.
    Transport,
    /// The request took longer than allowed.
    Timeout,
    /// The requested tenant is not allowed by the credential's configuration.
    TenantNotAllowed,
    /// The client assertion could not be obtained.
    ClientAssertion,
    /// The authority failed instance discovery.
    InstanceDiscovery,
    /// Entra ID is throttling: it answered 429 (or 503) with a `Retry-After` that ends beyond
    /// the request's time budget ([`HttpOptions::total_timeout`](crate::HttpOptions::total_timeout))
    /// or beyond [`RetryPolicy::max_delay`](crate::RetryPolicy::max_delay), so the credential
    /// did not wait. Transient: [`ClientAuthenticationError::retry_after`] says when to try
    /// again.
    Throttled,
}

/// Authentication failed. When Entra ID sent an error, [`ClientAuthenticationError::entra`]
/// carries its fields.
///
/// The message says what failed; [`std::error::Error::source`] gives the cause when there is
/// one: the `reqwest::Error` of a failed request (itself caused by an `std::io::Error`, a TLS
/// error or a timeout), the `serde_json::Error` of an answer that is not JSON, the error the
/// client assertion function or a cache store returned, or, for an instance discovery that
/// failed, the failure of its request. An Entra ID error answer is a root cause itself.
#[derive(Clone)]
pub struct ClientAuthenticationError {
    kind: FailureKind,
    message: String,
    status: Option<u16>,
    entra: Option<Box<EntraError>>,
    transient: bool,
    retry_after: Option<Duration>,
    source: Option<ErrorSource>,
}

impl ClientAuthenticationError {
    pub(crate) fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            status: None,
            entra: None,
            transient: false,
            retry_after: None,
            source: None,
        }
    }

    /// Records how long the server asked the client to wait.
    pub(crate) fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }

    pub(crate) fn from_entra(status: u16, entra: EntraError) -> Self {
        let message = match &entra.error_description {
            Some(description) => {
                format!(
                    "Microsoft Entra ID error '({}) {}'",
                    entra.error, description
                )
            }
            None => format!("Microsoft Entra ID error '{}'", entra.error),
        };
        Self {
            kind: FailureKind::Service,
            message,
            status: Some(status),
            transient: is_transient_status(status) || entra.error == "temporarily_unavailable",
            entra: Some(Box::new(entra)),
            retry_after: None,
            source: None,
        }
    }

    pub(crate) fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self.transient = self.transient || is_transient_status(status);
        self
    }

    pub(crate) fn transient(mut self, transient: bool) -> Self {
        self.transient = transient;
        self
    }

    /// Sets the cause.
    pub(crate) fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(ErrorSource::new(source));
        self
    }

    /// This failure, caused by the failure of a request it made: the status and whether
    /// trying again can help are the cause's.
    pub(crate) fn caused_by(mut self, cause: Self) -> Self {
        self.status = self.status.or(cause.status);
        self.transient = cause.transient;
        self.with_source(cause)
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> FailureKind {
        self.kind
    }

    /// The message, which for an Entra error reads
    /// `Microsoft Entra ID error '(invalid_client) AADSTS7000215: ...'`.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The HTTP status of Entra ID's answer, if one arrived.
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// Entra ID's error fields, if it sent an error body.
    pub fn entra(&self) -> Option<&EntraError> {
        self.entra.as_deref()
    }

    /// The AADSTS codes Entra ID sent (empty when it sent none).
    pub fn error_codes(&self) -> &[u32] {
        self.entra
            .as_deref()
            .map_or(&[], |entra| entra.error_codes.as_slice())
    }

    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        self.transient
    }

    /// How long Entra ID asked the client to wait before trying again (its `Retry-After`,
    /// given in seconds or as an HTTP date), when it asked and the credential did not wait:
    /// set on [`FailureKind::Throttled`] errors.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl fmt::Debug for ClientAuthenticationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientAuthenticationError")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .field("status", &self.status)
            .field("entra", &self.entra)
            .field("transient", &self.transient)
            .field("retry_after", &self.retry_after)
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for ClientAuthenticationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for ClientAuthenticationError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn StdError + 'static))
    }
}

/// A message and the error behind it, for the layers with no error type of their own (a file
/// assertion, the Secret Service): the message says what failed, the source why.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct ContextError {
    message: String,
    source: BoxError,
}

impl ContextError {
    pub(crate) fn new(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self {
            message: message.into(),
            source: source.into(),
        }
    }
}

/// Shows an error and its causes, `message: cause: cause`, for log lines. A cause whose text
/// the error before it already shows (as some libraries' errors do) is left out.
pub(crate) struct Chain<'a>(pub(crate) &'a (dyn StdError + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.0.to_string();
        f.write_str(&shown)?;
        let mut cause = self.0.source();
        while let Some(error) = cause {
            let text = error.to_string();
            if !shown.contains(&text) {
                write!(f, ": {text}")?;
            }
            shown = text;
            cause = error.source();
        }
        Ok(())
    }
}

/// The fields of an error body from Entra ID's token endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EntraError {
    /// The OAuth error, such as `invalid_client`.
    pub error: String,
    /// The description, starting `AADSTSnnnn:`.
    pub error_description: Option<String>,
    /// The AADSTS codes.
    pub error_codes: Vec<u32>,
    /// Entra's trace ID for the request.
    pub trace_id: Option<String>,
    /// The correlation ID: the `client-request-id` the credential sent.
    pub correlation_id: Option<String>,
    /// When Entra ID saw the request.
    pub timestamp: Option<String>,
    /// A finer classification, such as `consent_required`.
    pub suberror: Option<String>,
    /// A claims challenge to pass back in the next token request.
    pub claims: Option<String>,
}

/// Why a client certificate was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateError {
    /// Neither PEM nor a PKCS#12 file that opens.
    #[error("Failed to deserialize certificate in PEM or PKCS12 format")]
    Unreadable,
    /// No private key in the file.
    #[error("The certificate must include its private key")]
    MissingPrivateKey,
    /// A private key but no certificate.
    #[error("The private key's certificate is missing")]
    MissingCertificate,
    /// A key that is not RSA.
    #[error("The certificate must have an RSA private key because RS256 is used for signing")]
    NotRsa,
    /// An encrypted key and no password.
    #[error("Password was not given but private key is encrypted")]
    PasswordRequired,
    /// A password for a key that is not encrypted.
    #[error("Password was given but private key is not encrypted.")]
    PasswordNotNeeded,
    /// The password does not decrypt the key (or open the PKCS#12 file).
    #[error("Incorrect password, could not decrypt key")]
    WrongPassword,
    /// The key is not the certificate's.
    #[error("The private key does not belong to the certificate")]
    KeyDoesNotMatchCertificate,
    /// The OpenSSL-specific encrypted PEM format (`Proc-Type: 4,ENCRYPTED`).
    #[error(
        "Legacy encrypted PEM keys are not supported; convert the key to encrypted PKCS#8 with \
         `openssl pkcs8 -topk8`"
    )]
    LegacyEncryptedPem,
    /// The certificate input (PEM or PKCS#12 bytes) is larger than accepted (1 MiB; a PEM
    /// file with a key and a long chain is a few kilobytes).
    #[error("The certificate is larger than {limit} bytes")]
    #[non_exhaustive]
    TooLarge {
        /// The largest input accepted, in bytes.
        limit: usize,
    },
    /// The encrypted key (or PKCS#12 file) asks for a key derivation costlier than the
    /// limits allow: PBKDF2 iterations above 1,000,000, or scrypt with N·r·p above 2^23
    /// (N = 2^20, r = 8, p = 1: 1 GiB of memory). Re-encrypt the key with cheaper
    /// parameters, such as OpenSSL's defaults.
    #[error("The key derivation the certificate asks for exceeds a limit: {limit}")]
    #[non_exhaustive]
    KeyDerivationTooCostly {
        /// Which limit, and the value asked for, such as
        /// `PBKDF2 iterations 100000000 (at most 1000000)`.
        limit: String,
    },
}

/// 408, 429 and 5xx: statuses after which trying again can help.
pub(crate) fn is_transient_status(status: u16) -> bool {
    status == 408 || status == 429 || (500..600).contains(&status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entra_errors_display_like_azure_identity() {
        let error = ClientAuthenticationError::from_entra(
            401,
            EntraError {
                error: "invalid_client".into(),
                error_description: Some("AADSTS7000215: Invalid client secret provided.".into()),
                error_codes: vec![7_000_215],
                ..EntraError::default()
            },
        );
        assert_eq!(
            error.to_string(),
            "Microsoft Entra ID error '(invalid_client) AADSTS7000215: Invalid client secret provided.'"
        );
        assert_eq!(error.error_codes(), [7_000_215]);
        assert!(!error.is_transient());
        let unavailable = ClientAuthenticationError::from_entra(
            503,
            EntraError {
                error: "temporarily_unavailable".into(),
                ..EntraError::default()
            },
        );
        assert!(unavailable.is_transient());
        assert_eq!(
            unavailable.to_string(),
            "Microsoft Entra ID error 'temporarily_unavailable'"
        );
    }

    #[test]
    fn transient_statuses() {
        for status in [408, 429, 500, 502, 503, 504] {
            assert!(is_transient_status(status), "{status}");
        }
        for status in [200, 400, 401, 403, 404] {
            assert!(!is_transient_status(status), "{status}");
        }
    }

    #[test]
    fn wrapping_variants_forward_message_and_source() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let failure = ClientAuthenticationError::new(FailureKind::Transport, "The request failed")
            .with_source(io);
        let error = CredentialError::ClientAuthentication(failure);
        assert_eq!(error.to_string(), "The request failed");
        let cause = error.source().expect("the I/O error, not the wrapper");
        assert_eq!(
            cause
                .downcast_ref::<std::io::Error>()
                .map(std::io::Error::kind),
            Some(std::io::ErrorKind::ConnectionRefused)
        );
        assert!(cause.source().is_none());
        let closed = CredentialError::unavailable("closed");
        assert_eq!(closed.to_string(), "closed");
        assert!(closed.source().is_none());
        assert!(matches!(
            closed,
            CredentialError::CredentialUnavailable(ref unavailable) if unavailable.message() == "closed"
        ));
        let invalid = CredentialError::InvalidRequest("no scope".into());
        assert_eq!(invalid.to_string(), "invalid token request: no scope");
    }

    #[test]
    fn build_errors_compare_without_their_causes() {
        let unreadable = |kind| BuildError::InvalidCertificateAuthority {
            origin: "SSL_CERT_FILE=/ca.pem".into(),
            reason: "the file cannot be read".into(),
            source: Some(ErrorSource::new(std::io::Error::from(kind))),
        };
        assert_eq!(
            unreadable(std::io::ErrorKind::NotFound),
            unreadable(std::io::ErrorKind::PermissionDenied)
        );
        assert_eq!(
            unreadable(std::io::ErrorKind::NotFound).to_string(),
            "invalid CA certificate (SSL_CERT_FILE=/ca.pem): the file cannot be read"
        );
        let cause = unreadable(std::io::ErrorKind::NotFound);
        let cause = cause.source().expect("cause");
        assert!(
            cause.is::<std::io::Error>(),
            "the cause itself, not a wrapper"
        );
        assert_ne!(
            BuildError::PersistenceUnavailable {
                reason: "a".into(),
                source: None
            },
            BuildError::PersistenceUnavailable {
                reason: "b".into(),
                source: None
            }
        );
        assert_ne!(BuildError::InvalidTenantId, BuildError::MissingClientId);
        assert_eq!(BuildError::InvalidTenantId, BuildError::InvalidTenantId);
    }

    #[test]
    fn chains_show_each_cause_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("library error: {0}")]
        struct Repeating(#[source] std::io::Error);
        let error = ContextError::new(
            "cannot read the file",
            Repeating(std::io::Error::other("disk on fire")),
        );
        assert_eq!(
            Chain(&error).to_string(),
            "cannot read the file: library error: disk on fire"
        );
    }
}
