//! The quick start against the offline emulator, started in this process: the credential is
//! pointed at the emulator's authority and trusts its CA. Nothing leaves the machine.

use entra_emulator::{Emulator, EmulatorConfig};
use entra_identity::{ClientAssertionCredential, HttpOptions, TokenRequestOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The documented sample: tenant contoso.onmicrosoft.com, a workload application with a
    // federated credential for a Kubernetes service account, a downstream API.
    let emulator = Emulator::builder()
        .config(EmulatorConfig::sample())
        .start()
        .await?;
    // What Kubernetes would project into the pod: a token from the trusted issuer.
    let federated_token =
        emulator.mint_federated_token("system:serviceaccount:default:workload", None, 3600)?;

    let credential = ClientAssertionCredential::builder(
        "contoso.onmicrosoft.com",
        "22222222-3333-4444-5555-666666666666", // the sample's workload
        move || {
            let assertion = federated_token.clone();
            async move { Ok::<_, std::io::Error>(assertion) }
        },
    )
    .authority(emulator.url())
    .http_options(HttpOptions::default().trust_pem(emulator.ca_pem()))
    .build()?;
    let scopes = ["api://downstream/.default"];
    let token = credential
        .get_token(&scopes, TokenRequestOptions::default())
        .await?;
    println!(
        "got a token from the emulator, valid until {}",
        token.expires_on
    );
    Ok(())
}
