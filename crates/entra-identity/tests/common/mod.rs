//! A test authority: the emulator with the applications these tests use.

#![allow(dead_code, unreachable_pub, missing_docs)]

#[cfg(all(target_os = "linux", feature = "secret-service"))]
pub mod keyring;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use entra_emulator::{
    ApplicationConfig, Emulator, EmulatorConfig, FederatedCredentialConfig, TenantConfig,
};
use entra_identity::{
    ClientAssertionCredential, ClientAssertionCredentialBuilder, HttpOptions, RetryPolicy,
};
use serde_json::Value;

pub const TENANT: &str = "aaaaaaaa-0000-0000-0000-000000000001";
pub const DOMAIN: &str = "fabrikam.onmicrosoft.com";
pub const SECOND_TENANT: &str = "bbbbbbbb-0000-0000-0000-000000000002";
pub const WORKLOAD: &str = "10000000-0000-0000-0000-000000000003";
pub const SUBJECT: &str = "system:serviceaccount:ns:workload";
pub const GRAPH: &str = "https://graph.microsoft.com/.default";
pub const DOWNSTREAM: &str = "api://downstream/.default";

pub fn config() -> EmulatorConfig {
    let workload = || ApplicationConfig {
        name: "workload".to_owned(),
        client_id: Some(WORKLOAD.to_owned()),
        federated_credentials: vec![FederatedCredentialConfig {
            subject: SUBJECT.to_owned(),
            ..FederatedCredentialConfig::default()
        }],
        ..ApplicationConfig::default()
    };
    EmulatorConfig {
        tenants: vec![
            TenantConfig {
                id: Some(TENANT.to_owned()),
                domains: vec![DOMAIN.to_owned()],
                applications: vec![
                    workload(),
                    ApplicationConfig {
                        name: "downstream".to_owned(),
                        app_id_uri: Some("api://downstream".to_owned()),
                        ..ApplicationConfig::default()
                    },
                ],
                ..TenantConfig::default()
            },
            TenantConfig {
                id: Some(SECOND_TENANT.to_owned()),
                applications: vec![workload()],
                ..TenantConfig::default()
            },
        ],
        ..EmulatorConfig::default()
    }
}

pub async fn emulator() -> Emulator {
    Emulator::builder()
        .config(config())
        .start()
        .await
        .expect("emulator starts")
}

/// Counts how often the assertion source runs.
#[derive(Clone, Default)]
pub struct Calls(Arc<AtomicUsize>);

impl Calls {
    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// A source handing out a federated token from the emulator's issuer, counting calls.
pub fn federated_source(
    emulator: &Emulator,
    subject: &str,
) -> (impl entra_identity::ClientAssertionSource + 'static, Calls) {
    let token = emulator
        .mint_federated_token(subject, None, 3600)
        .expect("federated token");
    let calls = Calls::default();
    let counter = calls.clone();
    let source = move || {
        counter.0.fetch_add(1, Ordering::SeqCst);
        let token = token.clone();
        async move { Ok::<_, std::io::Error>(token) }
    };
    (source, calls)
}

/// Options that trust the emulator and retry quickly.
pub fn http(emulator: &Emulator) -> HttpOptions {
    HttpOptions::default()
        .trust_pem(emulator.ca_pem())
        .retry(RetryPolicy::default().initial_delay(std::time::Duration::from_millis(10)))
}

pub fn builder(emulator: &Emulator, tenant: &str) -> (ClientAssertionCredentialBuilder, Calls) {
    let (source, calls) = federated_source(emulator, SUBJECT);
    let builder = ClientAssertionCredential::builder(tenant, WORKLOAD, source)
        .authority(emulator.url())
        .http_options(http(emulator))
        .environment(Arc::new(entra_identity::MapEnvironment::new()));
    (builder, calls)
}

pub fn credential(emulator: &Emulator) -> (ClientAssertionCredential, Calls) {
    let (builder, calls) = builder(emulator, TENANT);
    (builder.build().expect("credential"), calls)
}

/// The claims of a JWT, unverified.
pub fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("three parts");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("b64");
    serde_json::from_slice(&bytes).expect("json")
}

pub fn token_requests(emulator: &Emulator) -> Vec<entra_emulator::RequestRecord> {
    emulator
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/oauth2/v2.0/token"))
        .collect()
}

/// The on-behalf-of middle tier [`register_middle_tier`] adds: a secret and a
/// password-protected PKCS#12 certificate.
pub const MIDDLE_TIER: &str = "10000000-0000-0000-0000-000000000010";
pub const MIDDLE_TIER_SECRET: &str = "middle-tier-secret-4f1c9a2e7b";
pub const MIDDLE_TIER_PFX_PASSWORD: &str = "pfx-password-83d0c6e1";
/// The user whose tokens the middle tier exchanges.
pub const USER: &str = "20000000-0000-0000-0000-000000000010";
/// A delegated scope of the downstream API.
pub const DOWNSTREAM_SCOPE: &str = "api://downstream/Data.Read";

/// Registers the on-behalf-of middle tier and its user in [`TENANT`]; returns the middle
/// tier's certificate.
pub fn register_middle_tier(emulator: &Emulator) -> entra_emulator::CertificateInfo {
    let application = emulator
        .register_application(
            TENANT,
            &ApplicationConfig {
                name: "middle-tier".to_owned(),
                client_id: Some(MIDDLE_TIER.to_owned()),
                secrets: vec![MIDDLE_TIER_SECRET.to_owned()],
                certificates: vec![entra_emulator::CertificateConfig {
                    pkcs12_password: Some(MIDDLE_TIER_PFX_PASSWORD.to_owned()),
                    ..entra_emulator::CertificateConfig::default()
                }],
                ..ApplicationConfig::default()
            },
        )
        .expect("middle tier");
    emulator
        .register_user(
            TENANT,
            &entra_emulator::UserConfig {
                object_id: Some(USER.to_owned()),
                upn: "user@fabrikam.onmicrosoft.com".to_owned(),
                name: None,
            },
        )
        .expect("user");
    application.certificates[0].clone()
}

/// The user's access token to the middle tier: the incoming assertion of an exchange.
pub fn user_assertion(emulator: &Emulator, expires_in_secs: i64) -> String {
    emulator
        .mint_user_token(&entra_emulator::UserTokenRequest {
            user: USER.to_owned(),
            audience: MIDDLE_TIER.to_owned(),
            expires_in_secs: Some(expires_in_secs),
            ..entra_emulator::UserTokenRequest::default()
        })
        .expect("user token")
}

/// An on-behalf-of builder for the middle tier, with instance discovery asked of the
/// emulator; give it a client credential.
pub fn obo_builder(
    emulator: &Emulator,
    user_assertion: &str,
) -> entra_identity::OnBehalfOfCredentialBuilder {
    entra_identity::OnBehalfOfCredential::builder(TENANT, MIDDLE_TIER, user_assertion)
        .authority(emulator.url())
        .instance_discovery_host(emulator.url())
        .http_options(http(emulator))
        .environment(Arc::new(entra_identity::MapEnvironment::new()))
}
