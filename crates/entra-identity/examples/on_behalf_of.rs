//! A middle-tier web API: one application, a credential per incoming request.
//!
//! ```sh
//! AZURE_TENANT_ID=... AZURE_CLIENT_ID=... AZURE_CLIENT_CERTIFICATE_PATH=cert.pem \
//!   cargo run -p entra-identity --example on_behalf_of -- "<the user's access token>"
//! ```

use entra_identity::TokenRequestOptions;
use entra_identity::{OnBehalfOfApplication, TokenCache};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // At start-up: the application, its certificate and one bounded cache for every user.
    let certificate = std::fs::read(std::env::var("AZURE_CLIENT_CERTIFICATE_PATH")?)?;
    let application = OnBehalfOfApplication::builder(
        &std::env::var("AZURE_TENANT_ID")?,
        &std::env::var("AZURE_CLIENT_ID")?,
    )
    .client_certificate(certificate)
    .token_cache(TokenCache::with_limits(100_000, 256 * 1024 * 1024))
    .build()?;

    // Per request: the bearer token the caller sent is the user assertion.
    let incoming = std::env::args()
        .nth(1)
        .ok_or("pass the user's access token")?;
    let credential = application.credential_for(incoming)?;
    match credential
        .get_token(
            &["https://graph.microsoft.com/User.Read"],
            TokenRequestOptions::new(),
        )
        .await
    {
        Ok(token) => println!(
            "a token for Microsoft Graph, expires at {}",
            token.expires_on
        ),
        Err(error) => {
            // A claims challenge (MFA, Conditional Access) must go back to the caller.
            if let Some(claims) = error.entra().and_then(|entra| entra.claims.as_deref()) {
                println!("send this claims challenge to the client: {claims}");
            }
            return Err(error.into());
        }
    }
    Ok(())
}
