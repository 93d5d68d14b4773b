//! A middle-tier API end to end, offline, against an embedded Entra ID emulator:
//!
//! 1. a user's token comes in and is validated;
//! 2. the API calls a downstream API on the user's behalf (on-behalf-of, CAE declared);
//! 3. the user's session is revoked: the downstream API answers with a claims challenge,
//!    which the middle tier answers (a new token carrying the claims) transparently;
//! 4. a revocation that requires signing in again: the middle tier passes the challenge back
//!    to its caller (401 `insufficient_claims`), who signs in again and succeeds;
//! 5. forged, `alg: none` and wrong-audience tokens are refused.
//!
//! Run it with `cargo run -p entra-identity-web --example middle_tier`. It checks every step
//! and exits with an error if one does not behave as described.

use std::error::Error;
use std::sync::Arc;

use axum::extract::{FromRef, State};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use entra_emulator::{
    ApplicationConfig, Emulator, EmulatorConfig, SessionRevocation, TenantConfig, UserConfig,
    UserTokenRequest,
};
use entra_identity::{HttpOptions, MapEnvironment, OnBehalfOfApplication};
use entra_identity_web::axum::{Caller, MiddleTier};
use entra_identity_web::challenge::claims_from_challenge;
use entra_identity_web::{DownstreamApi, DownstreamError, Validator};
use serde_json::{Value, json};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const MIDDLE_TIER: &str = "5b0f7a3c-1d2e-4f60-8a9b-0c1d2e3f4a5b";
const MIDDLE_TIER_SECRET: &str = "demo-middle-tier-secret";
const USER: &str = "adele@contoso.onmicrosoft.com";
const DOWNSTREAM_SCOPE: &str = "api://downstream/Orders.Read";

type Outcome<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// The middle tier's state: how it validates callers, and the downstream API.
#[derive(Clone)]
struct Api {
    tier: MiddleTier,
    downstream: DownstreamApi,
    http: reqwest::Client,
    resource: String,
}

impl FromRef<Api> for MiddleTier {
    fn from_ref(api: &Api) -> Self {
        api.tier.clone()
    }
}

/// `GET /orders`: the caller's orders, read from the downstream API on their behalf.
async fn orders(State(api): State<Api>, caller: Caller) -> Result<Json<Value>, DownstreamError> {
    let Some(Ok(credential)) = caller.on_behalf_of() else {
        return Err(DownstreamError::Token(
            entra_identity::CredentialError::InvalidRequest("no on-behalf-of".to_owned()),
        ));
    };
    let request = api.http.get(&api.resource).build()?;
    let response = api.downstream.send(&credential, request).await?;
    let status = response.status().as_u16();
    let body: Value = response.json().await?;
    Ok(Json(json!({
        "caller": caller.claims().get_str("preferred_username"),
        "downstream_status": status,
        "downstream": body,
    })))
}

fn config() -> EmulatorConfig {
    EmulatorConfig {
        tenants: vec![TenantConfig {
            id: Some(TENANT.to_owned()),
            domains: vec!["contoso.onmicrosoft.com".to_owned()],
            applications: vec![
                ApplicationConfig {
                    name: "orders-middle-tier".to_owned(),
                    client_id: Some(MIDDLE_TIER.to_owned()),
                    app_id_uri: Some("api://orders".to_owned()),
                    secrets: vec![MIDDLE_TIER_SECRET.to_owned()],
                    ..ApplicationConfig::default()
                },
                ApplicationConfig {
                    name: "downstream".to_owned(),
                    app_id_uri: Some("api://downstream".to_owned()),
                    ..ApplicationConfig::default()
                },
            ],
            users: vec![UserConfig {
                upn: USER.to_owned(),
                name: Some("Adele Vance".to_owned()),
                ..UserConfig::default()
            }],
        }],
        ..EmulatorConfig::default()
    }
}

/// What the middle tier answered: status, `WWW-Authenticate`, body.
struct Answer {
    status: u16,
    challenge: Option<String>,
    body: Value,
}

async fn call(client: &reqwest::Client, url: &str, token: &str) -> Outcome<Answer> {
    let response = client.get(url).bearer_auth(token).send().await?;
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let body = response.json().await.unwrap_or(Value::Null);
    Ok(Answer {
        status,
        challenge,
        body,
    })
}

fn check(condition: bool, what: &str) -> Outcome<()> {
    if condition {
        Ok(())
    } else {
        Err(format!("the demo did not behave as described: {what}").into())
    }
}

fn user_token(emulator: &Emulator, audience: &str) -> Outcome<String> {
    Ok(emulator.mint_user_token(&UserTokenRequest {
        user: USER.to_owned(),
        audience: audience.to_owned(),
        scopes: vec!["Orders.Read".to_owned()],
        ..UserTokenRequest::default()
    })?)
}

fn count(emulator: &Emulator, path_end: &str) -> usize {
    emulator
        .requests()
        .iter()
        .filter(|record| record.path.ends_with(path_end))
        .count()
}

#[tokio::main]
async fn main() -> Outcome<()> {
    println!("A middle-tier API on entra-identity-web, against an offline Entra ID emulator\n");
    let emulator = Emulator::builder().config(config()).start().await?;
    let trusting = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(
            emulator.ca_pem().as_bytes(),
        )?)
        .build()?;

    // The middle tier: validates callers, acts on their behalf.
    let validator = Validator::builder()
        .authority(emulator.url())
        .http_client(trusting.clone())
        .tenant(TENANT)
        .audience(MIDDLE_TIER)
        .audience("api://orders")
        .required_scopes(["Orders.Read"])
        .build()?;
    validator.prefetch_keys().await?;
    let application = OnBehalfOfApplication::builder(TENANT, MIDDLE_TIER)
        .client_secret(MIDDLE_TIER_SECRET)
        .authority(emulator.url())
        .instance_discovery_host(emulator.url())
        .http_options(HttpOptions::default().trust_pem(emulator.ca_pem()))
        .environment(Arc::new(MapEnvironment::new()))
        .build()?;
    let api = Api {
        tier: MiddleTier::new(validator).on_behalf_of(application),
        downstream: DownstreamApi::new(trusting.clone(), [DOWNSTREAM_SCOPE]),
        http: trusting,
        resource: emulator.resource_url(),
    };
    let router = Router::new().route("/orders", get(orders)).with_state(api);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/orders", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, router).await });
    println!("1. Emulator on {} (tenant {TENANT})", emulator.url());
    println!(
        "   middle tier on {url}, downstream API at {}\n",
        emulator.resource_url()
    );

    let client = reqwest::Client::new();
    let token = user_token(&emulator, MIDDLE_TIER)?;
    let answer = call(&client, &url, &token).await?;
    println!("2. {USER} calls GET /orders with their token");
    println!(
        "   -> {} {}",
        answer.status,
        serde_json::to_string(&answer.body)?
    );
    check(
        answer.status == 200 && answer.body["downstream_status"] == 200,
        "the first call",
    )?;
    check(
        answer.body["downstream"]["xms_cc"] == json!(["CP1"]),
        "a CAE token downstream",
    )?;
    println!(
        "   the token was validated, exchanged on the user's behalf (CAE) and used downstream\n"
    );

    emulator
        .revoke_session(&SessionRevocation {
            user: USER.to_owned(),
            sign_in_required: false,
        })
        .await?;
    let (exchanges, resource_calls) = (
        count(&emulator, "/oauth2/v2.0/token"),
        count(&emulator, "/resource/data"),
    );
    let answer = call(&client, &url, &token).await?;
    println!("3. The session is revoked; the user calls again");
    println!(
        "   -> {} (downstream {}): the downstream API challenged the cached token \
         (insufficient_claims),",
        answer.status, answer.body["downstream_status"]
    );
    println!(
        "      the middle tier got a token with the demanded claims ({} exchange) and retried \
         ({} downstream calls)\n",
        count(&emulator, "/oauth2/v2.0/token") - exchanges,
        count(&emulator, "/resource/data") - resource_calls
    );
    check(
        answer.status == 200 && answer.body["downstream_status"] == 200,
        "the challenge answered",
    )?;
    check(
        count(&emulator, "/resource/data") - resource_calls == 2,
        "one retry",
    )?;

    emulator
        .revoke_session(&SessionRevocation {
            user: USER.to_owned(),
            sign_in_required: true,
        })
        .await?;
    let answer = call(&client, &url, &token).await?;
    let claims = answer.challenge.as_deref().and_then(claims_from_challenge);
    println!("4. The session is revoked and the user must sign in again");
    println!(
        "   -> {} WWW-Authenticate: {}",
        answer.status,
        answer.challenge.as_deref().unwrap_or("(none)")
    );
    println!("      claims: {}", claims.as_deref().unwrap_or("(none)"));
    check(
        answer.status == 401 && claims.is_some(),
        "the challenge passed back",
    )?;
    let fresh = user_token(&emulator, MIDDLE_TIER)?;
    let answer = call(&client, &url, &fresh).await?;
    println!(
        "   the user signs in again (a new token) -> {}\n",
        answer.status
    );
    check(answer.status == 200, "a new sign-in works")?;

    println!("5. Hostile tokens");
    let parts: Vec<&str> = fresh.split('.').collect();
    let mut claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1])?)?;
    claims["scp"] = json!("Orders.ReadWrite.All");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        parts[2]
    );
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    let elsewhere = user_token(&emulator, "api://downstream")?;
    for (what, token) in [
        ("claims changed, signature kept", forged.as_str()),
        ("alg: none", none.as_str()),
        ("a token for another API", elsewhere.as_str()),
    ] {
        let answer = call(&client, &url, token).await?;
        println!(
            "   {what}: {} {}",
            answer.status,
            answer.challenge.as_deref().unwrap_or("")
        );
        check(answer.status == 401, what)?;
    }
    println!("\nEvery step behaved as described.");
    Ok(())
}
