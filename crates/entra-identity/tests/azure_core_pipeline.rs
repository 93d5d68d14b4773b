//! `ClientAssertionCredential` in a real azure_core pipeline: `BearerTokenAuthorizationPolicy`
//! authorizes requests with our token, and our failures surface as azure_core errors.

#![cfg(feature = "azure-core")]
#![allow(missing_docs)]

use std::error::Error as _;
use std::sync::Arc;

use azure_core::credentials::TokenCredential as AzureTokenCredential;
use azure_core::error::ErrorKind;
use azure_core::http::policies::Policy;
use azure_core::http::policies::auth::BearerTokenAuthorizationPolicy;
use azure_core::http::{
    ClientOptions, Context, Method, Pipeline, PipelineSendOptions, Request, StatusCode, Transport,
    Url,
};
use entra_emulator::{
    ApplicationConfig, Emulator, EmulatorConfig, FederatedCredentialConfig, RequestRecord,
    TenantConfig,
};
use entra_identity::{ClientAssertionCredential, CredentialError, HttpOptions, MapEnvironment};
use sha2::Digest as _;

const TENANT: &str = "aaaaaaaa-0000-0000-0000-000000000001";
const WORKLOAD: &str = "10000000-0000-0000-0000-000000000003";
const SUBJECT: &str = "system:serviceaccount:ns:workload";
const GRAPH: &str = "https://graph.microsoft.com/.default";
const RESOURCE_PATH: &str = "/resource/ping";

async fn emulator() -> Emulator {
    let config = EmulatorConfig {
        tenants: vec![TenantConfig {
            id: Some(TENANT.to_owned()),
            applications: vec![ApplicationConfig {
                name: "workload".to_owned(),
                client_id: Some(WORKLOAD.to_owned()),
                federated_credentials: vec![FederatedCredentialConfig {
                    subject: SUBJECT.to_owned(),
                    ..FederatedCredentialConfig::default()
                }],
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
        .expect("emulator starts")
}

/// Our credential, presenting a federated token for `subject`, trusting the emulator.
fn credential(emulator: &Emulator, subject: &str) -> ClientAssertionCredential {
    let token = emulator
        .mint_federated_token(subject, None, 3600)
        .expect("federated token");
    let source = move || {
        let token = token.clone();
        async move { Ok::<_, std::io::Error>(token) }
    };
    ClientAssertionCredential::builder(TENANT, WORKLOAD, source)
        .authority(emulator.url())
        .http_options(HttpOptions::default().trust_pem(emulator.ca_pem()))
        .environment(Arc::new(MapEnvironment::new()))
        .build()
        .expect("credential")
}

/// A pipeline as an Azure SDK client builds one: the bearer policy per try, over a reqwest
/// transport that trusts the emulator's CA.
fn pipeline(emulator: &Emulator, credential: Arc<dyn AzureTokenCredential>) -> Pipeline {
    let http = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(emulator.ca_pem().as_bytes()).expect("CA"),
        )
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .expect("reqwest client");
    let options = ClientOptions {
        transport: Some(Transport::new(Arc::new(http))),
        ..ClientOptions::default()
    };
    let auth: Arc<dyn Policy> = Arc::new(BearerTokenAuthorizationPolicy::new(credential, [GRAPH]));
    Pipeline::new(
        Some("entra-identity-tests"),
        Some("0.0.0"),
        options,
        Vec::new(),
        vec![auth],
        None,
    )
}

fn resource_request(emulator: &Emulator) -> Request {
    let url: Url = format!("{}{RESOURCE_PATH}", emulator.url())
        .parse()
        .expect("URL");
    Request::new(url, Method::Get)
}

/// `[redacted sha256:xxxxxxxx]` as the emulator logs a header value.
fn fingerprint(value: &str) -> String {
    let digest = sha2::Sha256::digest(value.as_bytes());
    let prefix: String = digest[..4]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("[redacted sha256:{prefix}]")
}

fn resource_requests(emulator: &Emulator) -> Vec<RequestRecord> {
    emulator
        .requests()
        .into_iter()
        .filter(|record| record.path == RESOURCE_PATH)
        .collect()
}

fn token_requests(emulator: &Emulator) -> usize {
    emulator
        .requests()
        .iter()
        .filter(|record| record.path.ends_with("/oauth2/v2.0/token"))
        .count()
}

#[tokio::test]
async fn bearer_policy_sends_our_token_and_shares_our_cache() {
    let emulator = emulator().await;
    let credential = credential(&emulator, SUBJECT);
    let shared: Arc<dyn AzureTokenCredential> = Arc::new(credential.clone());
    // Two pipelines: each bearer policy keeps its own copy of the token, so only our cache can
    // keep the second from asking Entra again.
    let first = pipeline(&emulator, shared.clone());
    let second = pipeline(&emulator, shared);

    for pipeline in [&first, &second] {
        let mut request = resource_request(&emulator);
        let options = PipelineSendOptions {
            skip_checks: true,
            ..PipelineSendOptions::default()
        };
        let response = pipeline
            .send(&Context::new(), &mut request, Some(options))
            .await
            .expect("the pipeline sends the request");
        assert_eq!(response.status(), StatusCode::NotFound);
    }

    // The token our credential holds for that scope, through our own trait (a cache hit).
    let token = entra_identity::TokenCredential::get_token(
        &credential,
        &[GRAPH],
        entra_identity::TokenRequestOptions::new(),
    )
    .await
    .expect("token");
    let expected = fingerprint(&format!("Bearer {}", token.token.expose_secret()));

    let sent = resource_requests(&emulator);
    assert_eq!(sent.len(), 2, "{sent:#?}");
    for record in &sent {
        assert_eq!(record.method, "GET");
        assert_eq!(record.status, 404);
        assert_eq!(
            record.headers.get("authorization"),
            Some(&expected),
            "the resource request carries `Bearer <our token>`"
        );
    }
    assert_eq!(token_requests(&emulator), 1, "one token request in all");
    assert_eq!(emulator.counters().token_requests, 1);
}

#[tokio::test]
async fn authentication_failure_surfaces_as_azure_core_error() {
    let emulator = emulator().await;
    let credential = credential(&emulator, "system:serviceaccount:ns:intruder");
    let pipeline = pipeline(&emulator, Arc::new(credential));

    let mut request = resource_request(&emulator);
    let error = pipeline
        .send(&Context::new(), &mut request, None)
        .await
        .expect_err("authentication fails");

    assert_eq!(error.kind(), &ErrorKind::Credential, "{error:?}");
    // The retry policy wraps a non-transport error in its own message; under it is the
    // azure_core error our credential returned, naming the AADSTS code, and under that ours.
    let inner = error
        .source()
        .and_then(|source| source.downcast_ref::<azure_core::Error>())
        .expect("the credential's azure_core error");
    assert_eq!(inner.kind(), &ErrorKind::Credential);
    assert!(inner.to_string().contains("AADSTS700213"), "{inner}");
    let ours = inner
        .source()
        .and_then(|source| source.downcast_ref::<CredentialError>())
        .expect("our CredentialError is the source");
    let entra = ours.entra().expect("Entra's error body");
    assert_eq!(entra.error_codes, [700_213]);

    assert!(
        resource_requests(&emulator).is_empty(),
        "nothing is sent to the resource without a token"
    );
    assert_eq!(token_requests(&emulator), 1);
}

#[tokio::test]
async fn authentication_failure_message_names_the_aadsts_code() {
    let emulator = emulator().await;
    let credential = credential(&emulator, "system:serviceaccount:ns:intruder");
    let error = AzureTokenCredential::get_token(&credential, &[GRAPH], None)
        .await
        .expect_err("authentication fails");
    assert_eq!(error.kind(), &ErrorKind::Credential);
    assert!(error.to_string().contains("AADSTS700213"), "{error}");
}
