//! `entra demo`: both credentials end to end against an embedded emulator, offline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use entra_emulator::{
    ApplicationConfig, CertificateConfig, Emulator, EmulatorConfig, FederatedCredentialConfig,
    TenantConfig, UserConfig, UserTokenRequest,
};
use entra_identity::TokenRequestOptions;
use entra_identity::{
    ClientAssertionCredential, HttpOptions, MapEnvironment, OnBehalfOfApplication,
};
use serde_json::Value;

use crate::Failure;
use crate::output::say;

const TENANT: &str = "contoso.onmicrosoft.com";
const MIDDLE_TIER: &str = "5b0f7a3c-1d2e-4f60-8a9b-0c1d2e3f4a5b";
const WORKLOAD: &str = "6c1a8b4d-2e3f-4a71-9bac-1d2e3f4a5b6c";
const USER: &str = "adele@contoso.onmicrosoft.com";
const WORKLOAD_SUBJECT: &str = "system:serviceaccount:shop:orders";
const DOWNSTREAM_SCOPE: &str = "api://downstream/Orders.Read";

pub(crate) async fn run() -> Result<(), Failure> {
    let started = Instant::now();
    say!("entra demo: both credentials against an offline Entra ID emulator\n")?;

    let emulator = Emulator::builder()
        .config(config())
        .start()
        .await
        .context("cannot start the emulator")?;
    let info = emulator.info();
    let tenant = &info.tenants[0];
    say!(
        "1. Emulator on {} (TLS, its own CA), tenant {} = {}",
        emulator.url(),
        TENANT,
        tenant.id
    )?;
    say!("   middle-tier API {MIDDLE_TIER} with a generated certificate")?;
    say!("   workload {WORKLOAD} trusting federated tokens for {WORKLOAD_SUBJECT}")?;
    say!("   downstream API api://downstream, user {USER}\n")?;

    // Nothing from the real environment leaks in: the demo stays on loopback.
    let environment = Arc::new(MapEnvironment::new());
    let http = HttpOptions::default().trust_pem(emulator.ca_pem());

    // ClientAssertionCredential: workload identity with a federated token.
    let federated = emulator.mint_federated_token(WORKLOAD_SUBJECT, None, 3600)?;
    let credential = ClientAssertionCredential::builder(TENANT, WORKLOAD, move || {
        let token = federated.clone();
        async move { Ok::<_, std::io::Error>(token) }
    })
    .authority(emulator.url())
    .http_options(http.clone())
    .environment(environment.clone())
    .build()
    .map_err(Failure::configuration)?;
    let scope = "api://downstream/.default";
    let (first, first_time) =
        timed(credential.get_token(&[scope], TokenRequestOptions::new())).await;
    let first = first.map_err(Failure::authentication)?;
    say!("2. ClientAssertionCredential (federated workload token) -> {scope}")?;
    say!("   token from Entra ID in {}", millis(first_time))?;
    show_claims(
        first.token.expose_secret(),
        &["aud", "appid", "tid", "idtyp", "exp"],
    )?;
    let (second, second_time) =
        timed(credential.get_token(&[scope], TokenRequestOptions::new())).await;
    second.map_err(Failure::authentication)?;
    say!(
        "   the same call again: served from the cache in {}",
        micros(second_time)
    )?;
    say!(
        "   token requests so far: {}\n",
        emulator.counters().token_requests
    )?;

    // OnBehalfOfCredential: the middle tier exchanges the user's token.
    let certificate_path = tenant
        .applications
        .iter()
        .find(|app| app.client_id == MIDDLE_TIER)
        .and_then(|app| app.certificates[0].combined_pem_path.clone())
        .context("the emulator wrote no certificate")?;
    let certificate = std::fs::read(&certificate_path)?;
    let application = OnBehalfOfApplication::builder(TENANT, MIDDLE_TIER)
        .client_certificate(certificate)
        .authority(emulator.url())
        .instance_discovery_host(emulator.url())
        .http_options(http)
        .environment(environment)
        .build()
        .map_err(Failure::configuration)?;
    let incoming = emulator.mint_user_token(&UserTokenRequest {
        user: USER.to_owned(),
        audience: MIDDLE_TIER.to_owned(),
        ..UserTokenRequest::default()
    })?;
    let obo = application
        .credential_for(incoming)
        .map_err(Failure::configuration)?;
    let (token, obo_time) =
        timed(obo.get_token(&[DOWNSTREAM_SCOPE], TokenRequestOptions::new())).await;
    let token = token.map_err(Failure::authentication)?;
    say!("3. OnBehalfOfCredential (certificate, PS256) for {USER} -> {DOWNSTREAM_SCOPE}")?;
    say!("   exchanged the user's token in {}", millis(obo_time))?;
    show_claims(
        token.token.expose_secret(),
        &["aud", "upn", "oid", "scp", "azp"],
    )?;
    let signed = emulator
        .requests()
        .into_iter()
        .rev()
        .find_map(|request| request.client_auth)
        .unwrap_or_default();
    say!("   the emulator verified the client assertion: {signed}\n")?;

    let (cae, cae_time) = timed(obo.get_token(
        &[DOWNSTREAM_SCOPE],
        TokenRequestOptions::new().enable_cae(true),
    ))
    .await;
    let cae = cae.map_err(Failure::authentication)?;
    say!(
        "4. The same with Continuous Access Evaluation (enable_cae) in {}",
        millis(cae_time)
    )?;
    show_claims(cae.token.expose_secret(), &["xms_cc", "exp"])?;
    let hours = (cae.expires_on - now()) as f64 / 3600.0;
    say!("   a CAE token lives longer: about {hours:.0} hours\n")?;

    say!("5. A request for a tenant the credential does not allow:")?;
    match obo
        .get_token(
            &[DOWNSTREAM_SCOPE],
            TokenRequestOptions::new().tenant_id("fabrikam.onmicrosoft.com"),
        )
        .await
    {
        Ok(_) => say!("   unexpectedly allowed")?,
        Err(error) => say!("   refused before any request: {error}")?,
    }

    let counters = emulator.counters();
    say!(
        "\nSummary: {} token requests, {} tokens issued, {} instance discovery, all on loopback, in {}.",
        counters.token_requests,
        counters.tokens_issued,
        counters.instance_discovery_requests,
        millis(started.elapsed())
    )?;
    say!(
        "\nNext, a middle-tier API on these credentials (an incoming token validated, a call on \
         the user's behalf, a revoked session's claims challenge answered): \
         cargo run -p entra-identity-web --example middle_tier"
    )?;
    Ok(())
}

fn config() -> EmulatorConfig {
    EmulatorConfig {
        tenants: vec![TenantConfig {
            domains: vec![TENANT.to_owned()],
            applications: vec![
                ApplicationConfig {
                    name: "middle-tier-api".to_owned(),
                    client_id: Some(MIDDLE_TIER.to_owned()),
                    certificates: vec![CertificateConfig::default()],
                    ..ApplicationConfig::default()
                },
                ApplicationConfig {
                    name: "orders-workload".to_owned(),
                    client_id: Some(WORKLOAD.to_owned()),
                    federated_credentials: vec![FederatedCredentialConfig {
                        subject: WORKLOAD_SUBJECT.to_owned(),
                        ..FederatedCredentialConfig::default()
                    }],
                    roles: vec!["Orders.Read.All".to_owned()],
                    ..ApplicationConfig::default()
                },
                ApplicationConfig {
                    name: "downstream-api".to_owned(),
                    app_id_uri: Some("api://downstream".to_owned()),
                    ..ApplicationConfig::default()
                },
            ],
            users: vec![UserConfig {
                upn: USER.to_owned(),
                name: Some("Adele Vance".to_owned()),
                ..UserConfig::default()
            }],
            ..TenantConfig::default()
        }],
        ..EmulatorConfig::default()
    }
}

async fn timed<T>(future: impl Future<Output = T>) -> (T, Duration) {
    let started = Instant::now();
    let output = future.await;
    (output, started.elapsed())
}

fn millis(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1e3)
}

fn micros(duration: Duration) -> String {
    format!("{:.1} µs", duration.as_secs_f64() * 1e6)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Prints chosen claims of a token (decoded, not verified).
fn show_claims(token: &str, names: &[&str]) -> Result<(), Failure> {
    let (_, claims) = entra_cli::jwt::decode(token)?;
    for name in names {
        let value = claims.get(*name).cloned().unwrap_or(Value::Null);
        let shown = match (name, value.as_i64()) {
            (&"exp", Some(exp)) => entra_cli::jwt::utc_text(exp).unwrap_or_default(),
            _ => value.to_string(),
        };
        say!("   {name:>7}: {shown}")?;
    }
    Ok(())
}
