//! The emulator as a protected resource: v1.0 user tokens, the resource's token checks, and
//! session revocation with Continuous Access Evaluation claims challenges, over TLS.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::*;
use entra_emulator::UserTokenRequest;
use serde_json::{Value, json};

const CP1: &str = r#"{"access_token":{"xms_cc":{"values":["CP1"]}}}"#;

/// A delegated token for the downstream API, from an on-behalf-of exchange of a fresh user
/// token; with CAE when `claims` declares CP1.
async fn downstream_token(harness: &Harness, claims: Option<&str>) -> (u16, Value) {
    let assertion = harness
        .emulator
        .mint_user_token(&UserTokenRequest {
            user: USER.to_owned(),
            audience: API.to_owned(),
            ..UserTokenRequest::default()
        })
        .expect("user token");
    obo(harness, &assertion, claims).await
}

async fn obo(harness: &Harness, assertion: &str, claims: Option<&str>) -> (u16, Value) {
    let mut form = vec![
        ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
        ("client_id", API),
        ("client_secret", SECRET),
        ("requested_token_use", "on_behalf_of"),
        ("scope", "api://downstream/Data.Read"),
        ("assertion", assertion),
    ];
    if let Some(claims) = claims {
        form.push(("claims", claims));
    }
    harness.post_token(TENANT, &form).await
}

/// GET the resource: (status, WWW-Authenticate, body).
async fn get_resource(harness: &Harness, token: Option<&str>) -> (u16, Option<String>, Value) {
    let mut request = harness.http.get(harness.emulator.resource_url());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("response");
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|value| value.to_str().expect("ascii").to_owned());
    (status, challenge, response.json().await.expect("json"))
}

async fn revoke(harness: &Harness, sign_in_required: bool) -> i64 {
    let response = harness
        .http
        .post(format!("{}/_emulator/resource/revocations", harness.emulator.url()))
        .json(&json!({ "user": "megan@fabrikam.onmicrosoft.com", "sign_in_required": sign_in_required }))
        .send()
        .await
        .expect("response");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    body["revoked_at"].as_i64().expect("revoked_at")
}

fn token_of(body: &Value) -> &str {
    body["access_token"].as_str().expect("access_token")
}

#[tokio::test]
async fn v1_user_tokens_have_the_v1_issuer_and_appid() {
    let harness = start().await;
    let token = harness
        .emulator
        .mint_user_token(&UserTokenRequest {
            user: USER.to_owned(),
            audience: "api://middle-tier".to_owned(),
            version: Some("1.0".to_owned()),
            ..UserTokenRequest::default()
        })
        .expect("v1 token");
    let claims = claims(&token);
    assert_eq!(claims["ver"], "1.0");
    assert_eq!(
        claims["iss"],
        format!("{}/{TENANT}/", harness.emulator.url())
    );
    assert!(claims.get("azp").is_none());
    assert!(claims["appid"].is_string());
    let refused = harness.emulator.mint_user_token(&UserTokenRequest {
        user: USER.to_owned(),
        audience: API.to_owned(),
        version: Some("3.0".to_owned()),
        ..UserTokenRequest::default()
    });
    assert!(refused.is_err());
}

#[tokio::test]
async fn the_resource_checks_its_tokens() {
    let harness = start().await;
    let (status, body) = downstream_token(&harness, None).await;
    assert_eq!(status, 200, "{body}");
    let token = token_of(&body);
    let (status, _, seen) = get_resource(&harness, Some(token)).await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["oid"], USER);
    assert_eq!(seen["aud"], "api://downstream");

    let (status, challenge, _) = get_resource(&harness, None).await;
    assert_eq!((status, challenge.as_deref()), (401, Some("Bearer")));

    let mut tampered = token.to_owned();
    let index = tampered.len() - 10;
    let replacement = if &tampered[index..=index] == "A" {
        "B"
    } else {
        "A"
    };
    tampered.replace_range(index..=index, replacement);
    let (status, challenge, _) = get_resource(&harness, Some(&tampered)).await;
    assert_eq!(status, 401);
    assert!(
        challenge
            .expect("challenge")
            .contains("error=\"invalid_token\"")
    );

    // A token for an application the tenant does not have.
    let foreign = harness
        .emulator
        .mint_user_token(&UserTokenRequest {
            user: USER.to_owned(),
            audience: "api://nobody".to_owned(),
            ..UserTokenRequest::default()
        })
        .expect("token");
    assert_eq!(get_resource(&harness, Some(&foreign)).await.0, 401);
}

#[tokio::test]
async fn a_revoked_session_challenges_cae_tokens_until_a_newer_one_comes() {
    let harness = start().await;
    let (_, cae) = downstream_token(&harness, Some(CP1)).await;
    let (_, plain) = downstream_token(&harness, None).await;
    let cae = token_of(&cae).to_owned();
    let plain = token_of(&plain).to_owned();
    assert_eq!(get_resource(&harness, Some(&cae)).await.0, 200);

    let revoked_at = revoke(&harness, false).await;

    let (status, challenge, _) = get_resource(&harness, Some(&cae)).await;
    assert_eq!(status, 401);
    let challenge = challenge.expect("challenge");
    assert!(
        challenge.contains("error=\"insufficient_claims\""),
        "{challenge}"
    );
    let encoded = challenge
        .split("claims=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("claims");
    let demanded: Value =
        serde_json::from_slice(&STANDARD.decode(encoded).expect("base64")).expect("json");
    assert_eq!(
        demanded,
        json!({"access_token": {"nbf": {"essential": true, "value": revoked_at.to_string()}}})
    );
    // Tokens without CAE are not evaluated continuously: they work until they expire.
    assert_eq!(get_resource(&harness, Some(&plain)).await.0, 200);

    // Without sign-in required, the same user token is exchanged again for a newer token,
    // which the resource accepts.
    let (status, body) = downstream_token(&harness, Some(CP1)).await;
    assert_eq!(status, 200, "{body}");
    assert!(claims(token_of(&body))["nbf"].as_i64().expect("nbf") >= revoked_at);
    assert_eq!(get_resource(&harness, Some(token_of(&body))).await.0, 200);
}

#[tokio::test]
async fn a_revocation_requiring_sign_in_refuses_older_user_tokens_with_the_challenge() {
    let harness = start().await;
    let assertion = harness
        .emulator
        .mint_user_token(&UserTokenRequest {
            user: USER.to_owned(),
            audience: API.to_owned(),
            ..UserTokenRequest::default()
        })
        .expect("user token");
    assert_eq!(obo(&harness, &assertion, Some(CP1)).await.0, 200);
    let revoked_at = revoke(&harness, true).await;
    let (status, body) = obo(&harness, &assertion, Some(CP1)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(body["error_codes"], json!([50173]));
    let demanded: Value =
        serde_json::from_str(body["claims"].as_str().expect("claims")).expect("json");
    assert_eq!(
        demanded["access_token"]["nbf"]["value"],
        revoked_at.to_string()
    );
    // A token from a new sign-in is exchanged.
    assert_eq!(downstream_token(&harness, Some(CP1)).await.0, 200);
}
