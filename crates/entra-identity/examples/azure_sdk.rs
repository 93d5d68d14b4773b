//! With the Azure SDK for Rust: the credential is an `azure_core` `TokenCredential`, so any
//! SDK client accepts it. Here a bare azure_core pipeline with the bearer-token policy calls a
//! resource.
//!
//! ```sh
//! AZURE_TENANT_ID=... AZURE_CLIENT_ID=... AZURE_FEDERATED_TOKEN_FILE=... \
//!   cargo run -p entra-identity --example azure_sdk -- https://myvault.vault.azure.net/secrets?api-version=7.4
//! ```

use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use azure_core::http::policies::Policy;
use azure_core::http::policies::auth::BearerTokenAuthorizationPolicy;
use azure_core::http::{ClientOptions, Method, Pipeline, Request, Url};
use entra_identity::{ClientAssertionCredential, FileAssertion};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url: Url = std::env::args()
        .nth(1)
        .ok_or("pass a resource URL")?
        .parse()?;
    let credential: Arc<dyn TokenCredential> = Arc::new(ClientAssertionCredential::new(
        &std::env::var("AZURE_TENANT_ID")?,
        &std::env::var("AZURE_CLIENT_ID")?,
        FileAssertion::new(std::env::var("AZURE_FEDERATED_TOKEN_FILE")?),
    )?);
    let bearer: Arc<dyn Policy> = Arc::new(BearerTokenAuthorizationPolicy::new(
        credential,
        ["https://vault.azure.net/.default"],
    ));
    let pipeline = Pipeline::new(
        Some("example"),
        Some(env!("CARGO_PKG_VERSION")),
        ClientOptions::default(),
        Vec::new(),
        vec![bearer],
        None,
    );
    let mut request = Request::new(url, Method::Get);
    let response = pipeline
        .send(&azure_core::http::Context::new(), &mut request, None)
        .await?;
    println!("{}", response.status());
    Ok(())
}
