//! `azure_core::credentials::TokenCredential` for every credential of this crate, so they plug
//! into the official Azure SDK for Rust clients.
//!
//! azure_core's options carry no claims, tenant or CAE flag: requests through this trait use
//! the credential's defaults. Use [`crate::TokenCredential`] for the rest.

use azure_core::credentials::{AccessToken, TokenRequestOptions};
use azure_core::error::ErrorKind;

use crate::{ClientAssertionCredential, OnBehalfOfCredential};

/// Converts our error into azure_core's, keeping it as the source.
fn to_azure_error(error: crate::CredentialError) -> azure_core::Error {
    let message = error.to_string();
    azure_core::Error::with_error(ErrorKind::Credential, error, message)
}

fn to_azure_token(token: crate::AccessToken) -> azure_core::Result<AccessToken> {
    let expires_on =
        time::OffsetDateTime::from_unix_timestamp(token.expires_on).map_err(|error| {
            azure_core::Error::with_error(
                ErrorKind::DataConversion,
                error,
                "token expiry out of range",
            )
        })?;
    Ok(AccessToken::new(
        token.token.expose_secret().to_owned(),
        expires_on,
    ))
}

macro_rules! azure_token_credential {
    ($credential:ty) => {
        #[async_trait::async_trait]
        impl azure_core::credentials::TokenCredential for $credential {
            async fn get_token(
                &self,
                scopes: &[&str],
                _options: Option<TokenRequestOptions<'_>>,
            ) -> azure_core::Result<AccessToken> {
                let token =
                    <$credential>::get_token(self, scopes, crate::TokenRequestOptions::new())
                        .await
                        .map_err(to_azure_error)?;
                to_azure_token(token)
            }
        }
    };
}

azure_token_credential!(ClientAssertionCredential);
azure_token_credential!(OnBehalfOfCredential);
