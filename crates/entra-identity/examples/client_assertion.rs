//! Workload identity: a Kubernetes pod gets a token with the projected service account token.
//!
//! ```sh
//! AZURE_TENANT_ID=... AZURE_CLIENT_ID=... AZURE_FEDERATED_TOKEN_FILE=/var/run/secrets/azure/tokens/azure-identity-token \
//!   cargo run -p entra-identity --example client_assertion -- https://vault.azure.net/.default
//! ```

use entra_identity::{ClientAssertionCredential, FileAssertion};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let scope = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "https://vault.azure.net/.default".into());
    let environment = entra_identity::ProcessEnvironment;
    let source = FileAssertion::from_environment(&environment)
        .ok_or("AZURE_FEDERATED_TOKEN_FILE is not set")?;
    let credential = ClientAssertionCredential::new(
        &std::env::var("AZURE_TENANT_ID")?,
        &std::env::var("AZURE_CLIENT_ID")?,
        source,
    )?;
    let token = credential
        .get_token_info(&[&scope], Default::default())
        .await?;
    println!(
        "a {} token, expires at {}, refresh at {:?}",
        token.token_type, token.expires_on, token.refresh_on
    );
    Ok(())
}
