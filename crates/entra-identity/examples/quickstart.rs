//! A Kubernetes workload gets a token for Key Vault (workload identity): the projected
//! service account token is the client assertion, read again whenever it rotates.

use entra_identity::{ClientAssertionCredential, FileAssertion, TokenRequestOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let credential = ClientAssertionCredential::new(
        "72f988bf-86f1-41af-91ab-2d7cd011db47", // the tenant (directory) ID
        "11111111-2222-3333-4444-555555555555", // the application's client ID
        FileAssertion::new("/var/run/secrets/azure/tokens/azure-identity-token"),
    )?;
    let scopes = ["https://vault.azure.net/.default"];
    let token = credential
        .get_token(&scopes, TokenRequestOptions::default())
        .await?;
    println!("got a token, valid until {} (Unix time)", token.expires_on);
    Ok(())
}
