//! What the benchmarks share: an emulator with the workload they get tokens for, and
//! credentials for it.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use entra_emulator::{
    ApplicationConfig, Emulator, EmulatorConfig, FederatedCredentialConfig, TenantConfig,
};
use entra_identity::{ClientAssertionCredentialBuilder, HttpOptions, MapEnvironment};

pub const TENANT: &str = "aaaaaaaa-0000-0000-0000-000000000001";
pub const CLIENT: &str = "10000000-0000-0000-0000-000000000003";
pub const SCOPE: &str = "https://graph.microsoft.com/.default";
const SUBJECT: &str = "bench";

/// The emulator, with the workload (federated credential for `bench`) and `others` in its
/// tenant, and an assertion for the workload valid for an hour.
pub async fn workload_emulator(others: Vec<ApplicationConfig>) -> (Emulator, String) {
    let workload = ApplicationConfig {
        client_id: Some(CLIENT.into()),
        federated_credentials: vec![FederatedCredentialConfig {
            subject: SUBJECT.into(),
            ..FederatedCredentialConfig::default()
        }],
        ..ApplicationConfig::default()
    };
    let config = EmulatorConfig {
        tenants: vec![TenantConfig {
            id: Some(TENANT.into()),
            applications: std::iter::once(workload).chain(others).collect(),
            ..TenantConfig::default()
        }],
        ..EmulatorConfig::default()
    };
    let emulator = Emulator::builder()
        .config(config)
        .start()
        .await
        .expect("emulator");
    let assertion = emulator
        .mint_federated_token(SUBJECT, None, 3600)
        .expect("assertion");
    (emulator, assertion)
}

/// A credential builder for the workload, trusting the emulator, with an empty environment.
pub fn workload_credential(
    emulator: &Emulator,
    assertion: &str,
) -> ClientAssertionCredentialBuilder {
    let assertion = assertion.to_owned();
    entra_identity::ClientAssertionCredential::builder(TENANT, CLIENT, move || {
        let assertion = assertion.clone();
        async move { Ok::<_, std::io::Error>(assertion) }
    })
    .authority(emulator.url())
    .http_options(HttpOptions::default().trust_pem(emulator.ca_pem()))
    .environment(Arc::new(MapEnvironment::new()))
}

/// A `reqwest` client trusting the emulator, to share a warm connection pool between
/// credentials that each have a token cache (and so a pool) of their own.
pub fn trusting_client(emulator: &Emulator) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .tls_certs_merge([
            reqwest::Certificate::from_pem(emulator.ca_pem().as_bytes()).expect("emulator CA")
        ])
        .build()
        .expect("reqwest client")
}
