//! What the emulator's benches share: one tenant with one application that has a secret.

use entra_emulator::{ApplicationConfig, Emulator, EmulatorConfig, TenantConfig};

pub(crate) const TENANT: &str = "bench.example";
pub(crate) const CLIENT_ID: &str = "b0000000-0000-0000-0000-000000000001";
pub(crate) const SECRET: &str = "bench-secret";

/// An emulator with the bench's tenant and application.
pub(crate) async fn start_emulator() -> Emulator {
    let config = EmulatorConfig {
        tenants: vec![TenantConfig {
            domains: vec![TENANT.to_owned()],
            applications: vec![ApplicationConfig {
                client_id: Some(CLIENT_ID.to_owned()),
                secrets: vec![SECRET.to_owned()],
                ..ApplicationConfig::default()
            }],
            ..TenantConfig::default()
        }],
        ..EmulatorConfig::default()
    };
    Emulator::builder()
        .config(config)
        .start()
        .await
        .expect("emulator")
}

/// A client builder that trusts the emulator's CA.
pub(crate) fn trusting_client(emulator: &Emulator) -> reqwest::ClientBuilder {
    reqwest::Client::builder().add_root_certificate(
        reqwest::Certificate::from_pem(emulator.ca_pem().as_bytes()).expect("ca"),
    )
}
