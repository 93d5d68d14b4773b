//! The test authority: the emulator with a middle-tier API, its user, a downstream API and a
//! daemon with an app role.

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use entra_emulator::{
    ApplicationConfig, Emulator, EmulatorConfig, FederatedCredentialConfig, TenantConfig,
    UserConfig, UserTokenRequest,
};
use entra_identity_web::{Validator, ValidatorBuilder};
use serde_json::Value;

pub const TENANT: &str = "aaaaaaaa-0000-0000-0000-000000000001";
pub const OTHER_TENANT: &str = "bbbbbbbb-0000-0000-0000-000000000002";
/// The middle-tier API the tokens are for.
pub const API: &str = "10000000-0000-0000-0000-000000000010";
pub const API_URI: &str = "api://middle-tier";
pub const API_SECRET: &str = "middle-tier-secret-4f1c9a2e7b";
/// The API it calls on the user's behalf.
pub const DOWNSTREAM: &str = "10000000-0000-0000-0000-000000000020";
pub const DOWNSTREAM_URI: &str = "api://downstream";
pub const DOWNSTREAM_SCOPE: &str = "api://downstream/Data.Read";
/// A daemon calling the API as itself, with the `Data.Write` role.
pub const DAEMON: &str = "10000000-0000-0000-0000-000000000030";
pub const DAEMON_SUBJECT: &str = "system:serviceaccount:ns:daemon";
pub const USER: &str = "20000000-0000-0000-0000-000000000010";

pub fn config() -> EmulatorConfig {
    let user = UserConfig {
        object_id: Some(USER.to_owned()),
        upn: "user@fabrikam.onmicrosoft.com".to_owned(),
        name: Some("A User".to_owned()),
    };
    EmulatorConfig {
        tenants: vec![
            TenantConfig {
                id: Some(TENANT.to_owned()),
                applications: vec![
                    ApplicationConfig {
                        name: "middle-tier".to_owned(),
                        client_id: Some(API.to_owned()),
                        app_id_uri: Some(API_URI.to_owned()),
                        secrets: vec![API_SECRET.to_owned()],
                        ..ApplicationConfig::default()
                    },
                    ApplicationConfig {
                        name: "downstream".to_owned(),
                        client_id: Some(DOWNSTREAM.to_owned()),
                        app_id_uri: Some(DOWNSTREAM_URI.to_owned()),
                        ..ApplicationConfig::default()
                    },
                    ApplicationConfig {
                        name: "daemon".to_owned(),
                        client_id: Some(DAEMON.to_owned()),
                        roles: vec!["Data.Write".to_owned()],
                        federated_credentials: vec![FederatedCredentialConfig {
                            subject: DAEMON_SUBJECT.to_owned(),
                            ..FederatedCredentialConfig::default()
                        }],
                        ..ApplicationConfig::default()
                    },
                ],
                users: vec![user],
                ..TenantConfig::default()
            },
            TenantConfig {
                id: Some(OTHER_TENANT.to_owned()),
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

/// An HTTP client that trusts the emulator's CA.
pub fn http(emulator: &Emulator) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(emulator.ca_pem().as_bytes()).expect("ca"),
        )
        .build()
        .expect("client")
}

/// A validator for the middle tier, single tenant, with the emulator as authority.
pub fn validator_builder(emulator: &Emulator) -> ValidatorBuilder {
    Validator::builder()
        .authority(emulator.url())
        .http_client(http(emulator))
        .tenant(TENANT)
        .audience(API)
        .audience(API_URI)
}

pub fn validator(emulator: &Emulator) -> Validator {
    validator_builder(emulator).build().expect("validator")
}

/// The user's token to the middle tier.
pub fn user_token(emulator: &Emulator) -> String {
    mint(emulator, UserTokenRequest::default())
}

/// A user token, `request`'s fields overriding the defaults (the user, the middle tier as
/// audience).
pub fn mint(emulator: &Emulator, request: UserTokenRequest) -> String {
    let request = UserTokenRequest {
        user: if request.user.is_empty() {
            USER.to_owned()
        } else {
            request.user
        },
        audience: if request.audience.is_empty() {
            API.to_owned()
        } else {
            request.audience
        },
        ..request
    };
    emulator.mint_user_token(&request).expect("user token")
}

/// How often the emulator served its JWKS.
pub fn key_fetches(emulator: &Emulator) -> usize {
    emulator
        .requests()
        .iter()
        .filter(|record| record.path.ends_with("/discovery/v2.0/keys"))
        .count()
}

/// A JWT's segment decoded.
pub fn segment(token: &str, index: usize) -> Value {
    let part = token.split('.').nth(index).expect("segment");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("b64")).expect("json")
}

pub fn encode(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// An application token for the daemon, from the library's client assertion credential.
pub async fn daemon_token(emulator: &Emulator, scope: &str) -> String {
    let federated = emulator
        .mint_federated_token(DAEMON_SUBJECT, None, 3600)
        .expect("federated token");
    let credential =
        entra_identity::ClientAssertionCredential::builder(TENANT, DAEMON, move || {
            let token = federated.clone();
            async move { Ok::<_, std::io::Error>(token) }
        })
        .authority(emulator.url())
        .http_options(entra_identity::HttpOptions::default().trust_pem(emulator.ca_pem()))
        .environment(Arc::new(entra_identity::MapEnvironment::new()))
        .build()
        .expect("credential");
    credential
        .get_token(&[scope], entra_identity::TokenRequestOptions::default())
        .await
        .expect("daemon token")
        .token
        .expose_secret()
        .to_owned()
}
