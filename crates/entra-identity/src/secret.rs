//! Secret values: wiped from memory when the last copy is dropped, never printed.
//!
//! Each kind of secret has its own type. They implement neither `Display` nor `Serialize` nor
//! `PartialEq`, and their `Debug` prints only the type name. Clones share one allocation, so
//! a secret is not copied around memory. The value comes out only through `expose_secret`.

use std::fmt;
use std::sync::Arc;

use zeroize::Zeroizing;

macro_rules! secret_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name(Arc<Zeroizing<String>>);

        impl $name {
            /// Wraps a secret value.
            pub fn new(value: impl Into<String>) -> Self {
                Self(Arc::new(Zeroizing::new(value.into())))
            }

            /// The secret itself.
            ///
            /// # Security
            ///
            /// Whatever this is passed to must not log, print or persist it.
            pub fn expose_secret(&self) -> &str {
                self.0.as_str()
            }

            /// Whether the value is empty.
            pub fn is_empty(&self) -> bool {
                self.0.is_empty()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "([redacted])"))
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self::new(value)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self::new(value)
            }
        }
    };
}

/// An access token: the bearer credential a client presents to a resource.
///
/// Like the other secret types: wiped when the last copy is dropped, never printed, compared
/// or serialised. A token served from the cache shares the cache's copy.
#[derive(Clone)]
pub struct AccessTokenSecret(TokenRepr);

#[derive(Clone)]
enum TokenRepr {
    Owned(Arc<Zeroizing<String>>),
    Shared(Arc<dyn SharedSecret>),
}

impl AccessTokenSecret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(TokenRepr::Owned(Arc::new(Zeroizing::new(value.into()))))
    }

    /// The secret itself.
    ///
    /// # Security
    ///
    /// Whatever this is passed to must not log, print or persist it.
    pub fn expose_secret(&self) -> &str {
        match &self.0 {
            TokenRepr::Owned(value) => value.as_str(),
            TokenRepr::Shared(token) => token.secret(),
        }
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.expose_secret().is_empty()
    }

    /// A copy kept elsewhere (by the token cache, beside the token's times), shared without
    /// allocating.
    pub(crate) fn shared(token: Arc<dyn SharedSecret>) -> Self {
        Self(TokenRepr::Shared(token))
    }
}

/// A secret that lives inside another allocation, such as the token cache's entry, and is
/// wiped when that is dropped.
pub(crate) trait SharedSecret: Send + Sync {
    /// The secret itself.
    fn secret(&self) -> &str;
}

impl fmt::Debug for AccessTokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessTokenSecret([redacted])")
    }
}

impl From<String> for AccessTokenSecret {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl From<&str> for AccessTokenSecret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

secret_type!(
    /// A client secret of an application registration.
    ClientSecret
);
secret_type!(
    /// A client assertion: a signed JWT that proves the application's identity.
    ClientAssertion
);
secret_type!(
    /// The user's access token that an on-behalf-of exchange starts from.
    UserAssertion
);
secret_type!(
    /// A refresh token.
    RefreshToken
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let values = [
            format!("{:?}", AccessTokenSecret::new("tok-123")),
            format!("{:?}", ClientSecret::new("tok-123")),
            format!("{:?}", ClientAssertion::new("tok-123")),
            format!("{:?}", UserAssertion::new("tok-123")),
            format!("{:?}", RefreshToken::new("tok-123")),
        ];
        for shown in values {
            assert!(!shown.contains("tok-123"), "{shown}");
            assert!(shown.ends_with("([redacted])"), "{shown}");
        }
    }

    #[test]
    fn clones_share_one_value() {
        let secret = ClientSecret::new("s");
        let copy = secret.clone();
        assert!(std::ptr::eq(secret.expose_secret(), copy.expose_secret()));
    }
}
