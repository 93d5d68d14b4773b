//! The middle tier end to end, against the emulator over TLS: the axum extractor and layer,
//! on-behalf-of calls to the emulator's protected resource, and its Continuous Access
//! Evaluation claims challenges after a session is revoked.

mod common;

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{FromRef, State};
use axum::http::{Request, StatusCode, header};
use axum::routing::get;
use axum::{Extension, Json, Router};
use common::*;
use entra_emulator::{Emulator, SessionRevocation, UserTokenRequest};
use entra_identity::{
    AccessTokenInfo, HttpOptions, MapEnvironment, OnBehalfOfApplication, TokenCredential,
    TokenFuture, TokenRequestOptions,
};
use entra_identity_web::axum::{Caller, MiddleTier};
use entra_identity_web::challenge::claims_from_challenge;
use entra_identity_web::{DownstreamApi, DownstreamError};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

#[derive(Clone)]
struct App {
    tier: MiddleTier,
    downstream: DownstreamApi,
    http: reqwest::Client,
    resource: String,
}

impl FromRef<App> for MiddleTier {
    fn from_ref(app: &App) -> Self {
        app.tier.clone()
    }
}

fn application(emulator: &Emulator) -> OnBehalfOfApplication {
    OnBehalfOfApplication::builder(TENANT, API)
        .client_secret(API_SECRET)
        .authority(emulator.url())
        .instance_discovery_host(emulator.url())
        .http_options(HttpOptions::default().trust_pem(emulator.ca_pem()))
        .environment(Arc::new(MapEnvironment::new()))
        .build()
        .expect("application")
}

fn app(emulator: &Emulator, tier: MiddleTier) -> Router {
    Router::new()
        .route("/me", get(me))
        .route("/data", get(data))
        .with_state(App {
            tier,
            downstream: DownstreamApi::new(http(emulator), [DOWNSTREAM_SCOPE]),
            http: http(emulator),
            resource: emulator.resource_url(),
        })
}

fn tier(emulator: &Emulator) -> MiddleTier {
    MiddleTier::new(validator(emulator)).on_behalf_of(application(emulator))
}

async fn me(caller: Caller) -> Json<Value> {
    Json(json!({ "oid": caller.claims().object_id() }))
}

/// Calls the protected resource on the caller's behalf and reports what it answered.
async fn data(State(app): State<App>, caller: Caller) -> Result<Json<Value>, DownstreamError> {
    let credential = caller
        .on_behalf_of()
        .expect("an application")
        .expect("a credential");
    let request = app.http.get(&app.resource).build()?;
    let response = app.downstream.send(&credential, request).await?;
    let status = response.status().as_u16();
    let body: Value = response.json().await?;
    Ok(Json(json!({ "status": status, "body": body })))
}

struct Answer {
    status: StatusCode,
    challenge: Option<String>,
    body: Value,
}

async fn call(router: &Router, path: &str, token: Option<&str>) -> Answer {
    let mut request = Request::get(path);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    let status = response.status();
    let challenge = response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|value| value.to_str().expect("ascii").to_owned());
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        challenge,
        body,
    }
}

fn resource_calls(emulator: &Emulator) -> usize {
    emulator
        .requests()
        .iter()
        .filter(|record| record.path == "/resource/data")
        .count()
}

fn token_requests(emulator: &Emulator) -> Vec<entra_emulator::RequestRecord> {
    emulator
        .requests()
        .into_iter()
        .filter(|record| record.path.ends_with("/oauth2/v2.0/token"))
        .collect()
}

#[tokio::test]
async fn the_extractor_admits_valid_callers_and_challenges_the_others() {
    let emulator = emulator().await;
    let router = app(&emulator, tier(&emulator));

    let ok = call(&router, "/me", Some(&user_token(&emulator))).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.body["oid"], USER);

    let none = call(&router, "/me", None).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(none.challenge.as_deref(), Some("Bearer"));

    let expired = mint(
        &emulator,
        UserTokenRequest {
            expires_in_secs: Some(-3600),
            ..UserTokenRequest::default()
        },
    );
    let answer = call(&router, "/me", Some(&expired)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        answer.challenge.as_deref(),
        Some("Bearer error=\"invalid_token\", error_description=\"the token has expired\"")
    );

    let elsewhere = mint(
        &emulator,
        UserTokenRequest {
            audience: DOWNSTREAM_URI.to_owned(),
            ..UserTokenRequest::default()
        },
    );
    let answer = call(&router, "/me", Some(&elsewhere)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(
        answer
            .challenge
            .as_deref()
            .is_some_and(|c| c.starts_with("Bearer error=\"invalid_token\""))
    );

    // One character of the signature changed.
    let mut forged = user_token(&emulator);
    let index = forged.len() - 10;
    let replacement = if &forged[index..=index] == "A" {
        "B"
    } else {
        "A"
    };
    forged.replace_range(index..=index, replacement);
    let answer = call(&router, "/me", Some(&forged)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        answer.challenge.as_deref(),
        Some(
            "Bearer error=\"invalid_token\", error_description=\"the token's signature is not valid\""
        )
    );
}

#[tokio::test]
async fn a_missing_scope_is_403_insufficient_scope() {
    let emulator = emulator().await;
    let validator = validator_builder(&emulator)
        .required_scopes(["Data.Write"])
        .build()
        .expect("validator");
    let router = app(&emulator, MiddleTier::new(validator));
    let answer = call(&router, "/me", Some(&user_token(&emulator))).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(
        answer.challenge.as_deref(),
        Some(
            "Bearer error=\"insufficient_scope\", error_description=\"the token grants none of the required scopes or roles\""
        )
    );
}

#[tokio::test]
async fn the_layer_protects_every_route_and_hands_over_the_caller() {
    let emulator = emulator().await;
    let tier = tier(&emulator);
    let router = Router::new()
        .route("/plain", get(|| async { Json(json!({ "reached": true })) }))
        .route(
            "/who",
            get(|Extension(caller): Extension<Caller>| async move {
                Json(json!({
                    "oid": caller.claims().object_id(),
                    "debug": format!("{caller:?} {:?}", caller.on_behalf_of()),
                }))
            }),
        )
        .layer(tier.layer());
    let refused = call(&router, "/plain", None).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused.body, Value::Null, "the handler ran");
    let refused = call(&router, "/plain", Some("garbage")).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);

    let token = user_token(&emulator);
    let admitted = call(&router, "/plain", Some(&token)).await;
    assert_eq!(admitted.status, StatusCode::OK);
    assert_eq!(admitted.body["reached"], true);
    let who = call(&router, "/who", Some(&token)).await;
    assert_eq!(who.body["oid"], USER);
    // The caller's token never shows in Debug output (theirs nor their credential's).
    let debug = who.body["debug"].as_str().expect("debug");
    assert!(debug.contains(USER), "{debug}");
    let signature = token.rsplit('.').next().expect("signature");
    assert!(!debug.contains(signature), "{debug}");
}

#[tokio::test]
async fn a_revoked_session_is_challenged_and_the_challenge_answered() {
    let emulator = emulator().await;
    let router = app(&emulator, tier(&emulator));
    let token = user_token(&emulator);

    let first = call(&router, "/data", Some(&token)).await;
    assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
    assert_eq!(first.body["status"], 200);
    assert_eq!(first.body["body"]["oid"], USER);
    assert_eq!(first.body["body"]["aud"], DOWNSTREAM_URI);
    assert_eq!(first.body["body"]["xms_cc"], json!(["CP1"]));
    assert_eq!(token_requests(&emulator).len(), 1);

    // The cached downstream token serves the next call.
    call(&router, "/data", Some(&token)).await;
    assert_eq!(token_requests(&emulator).len(), 1);
    assert_eq!(resource_calls(&emulator), 2);

    emulator
        .revoke_session(&SessionRevocation {
            user: USER.to_owned(),
            sign_in_required: false,
        })
        .await
        .expect("revoked");

    // The resource refuses the cached token with a claims challenge; the client gets a new
    // token with those claims (bypassing the cache) and the retry succeeds.
    let after = call(&router, "/data", Some(&token)).await;
    assert_eq!(after.status, StatusCode::OK);
    assert_eq!(after.body["status"], 200, "{:?}", after.body);
    assert_eq!(resource_calls(&emulator), 4);
    let requests = token_requests(&emulator);
    assert_eq!(requests.len(), 2);
    let claims = requests[1].form.get("claims").expect("claims sent");
    assert!(claims.contains("\"nbf\""), "{claims}");
    assert!(claims.contains("CP1"), "{claims}");

    // The new token is cached: no challenge, no exchange.
    let again = call(&router, "/data", Some(&token)).await;
    assert_eq!(again.body["status"], 200);
    assert_eq!(token_requests(&emulator).len(), 2);
    assert_eq!(resource_calls(&emulator), 5);
}

#[tokio::test]
async fn a_refused_exchange_passes_the_challenge_back_to_the_caller() {
    let emulator = emulator().await;
    let router = app(&emulator, tier(&emulator));
    let token = user_token(&emulator);
    assert_eq!(
        call(&router, "/data", Some(&token)).await.body["status"],
        200
    );

    emulator
        .revoke_session(&SessionRevocation {
            user: USER.to_owned(),
            sign_in_required: true,
        })
        .await
        .expect("revoked");

    // The resource challenges; the new exchange of the old user token is refused with a
    // claims challenge, which goes back to the caller as 401.
    let refused = call(&router, "/data", Some(&token)).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let challenge = refused.challenge.expect("a challenge");
    let claims = claims_from_challenge(&challenge).expect("claims in the challenge");
    assert!(claims.contains("\"nbf\""), "{claims}");

    // The user signs in again: a new token works.
    let fresh = user_token(&emulator);
    let answer = call(&router, "/data", Some(&fresh)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body["status"], 200, "{:?}", answer.body);
}

/// Hands out one fixed token whatever is asked, recording the claims of each request.
#[derive(Debug)]
struct FixedToken {
    token: String,
    claims: Mutex<Vec<Option<String>>>,
}

impl TokenCredential for FixedToken {
    fn get_token_info<'a>(
        &'a self,
        _scopes: &'a [&'a str],
        options: TokenRequestOptions<'a>,
    ) -> TokenFuture<'a, AccessTokenInfo> {
        self.claims
            .lock()
            .expect("lock")
            .push(options.claims.map(str::to_owned));
        TokenFuture::ready(Ok(AccessTokenInfo::new(self.token.clone(), i64::MAX)))
    }
}

#[tokio::test]
async fn a_challenge_is_answered_once_and_the_second_answer_returned() {
    let emulator = emulator().await;
    // A CAE token for the downstream API, issued before the revocation.
    let credential = application(&emulator)
        .credential_for(user_token(&emulator))
        .expect("credential");
    let old = credential
        .get_token(
            &[DOWNSTREAM_SCOPE],
            TokenRequestOptions::new().enable_cae(true),
        )
        .await
        .expect("token");
    emulator
        .revoke_session(&SessionRevocation {
            user: USER.to_owned(),
            sign_in_required: false,
        })
        .await
        .expect("revoked");

    let fixed = FixedToken {
        token: old.token.expose_secret().to_owned(),
        claims: Mutex::default(),
    };
    let api = DownstreamApi::new(http(&emulator), [DOWNSTREAM_SCOPE]);
    let request = http(&emulator)
        .get(emulator.resource_url())
        .build()
        .expect("request");
    let before = resource_calls(&emulator);
    let response = api.send(&fixed, request).await.expect("sent");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resource_calls(&emulator), before + 2, "one retry, no more");
    let asked = fixed.claims.lock().expect("lock").clone();
    assert_eq!(asked.len(), 2);
    assert_eq!(asked[0], None);
    assert!(
        asked[1].as_deref().is_some_and(|c| c.contains("nbf")),
        "{asked:?}"
    );

    // Without CAE the resource does not challenge, and nothing is retried.
    let plain = credential
        .get_token(&[DOWNSTREAM_SCOPE], TokenRequestOptions::new())
        .await
        .expect("token");
    let fixed = FixedToken {
        token: plain.token.expose_secret().to_owned(),
        claims: Mutex::default(),
    };
    let request = http(&emulator)
        .get(emulator.resource_url())
        .build()
        .expect("request");
    let response = api.send(&fixed, request).await.expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(fixed.claims.lock().expect("lock").len(), 1);
}

#[tokio::test]
async fn unavailable_signing_keys_are_503_without_a_challenge() {
    let emulator = emulator().await;
    // A tenant the authority does not know: no metadata, no keys.
    let validator = entra_identity_web::Validator::builder()
        .authority(emulator.url())
        .http_client(http(&emulator))
        .tenant("cccccccc-0000-0000-0000-000000000003")
        .audience(API)
        .build()
        .expect("validator");
    let router = app(&emulator, MiddleTier::new(validator));
    let answer = call(&router, "/me", Some(&user_token(&emulator))).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.challenge, None);
}
