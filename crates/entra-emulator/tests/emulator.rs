//! The emulator's behaviour over real TLS, through its public API and HTTP endpoints.

mod common;

use common::*;
use entra_emulator::{Fault, FaultRule, SettingsUpdate, TokenSettingsUpdate, UserTokenRequest};
use serde_json::{Value, json};

fn user_token(harness: &Harness, audience: &str, expires_in_secs: i64) -> String {
    harness
        .emulator
        .mint_user_token(&UserTokenRequest {
            user: USER.to_owned(),
            audience: audience.to_owned(),
            expires_in_secs: Some(expires_in_secs),
            ..UserTokenRequest::default()
        })
        .expect("user token")
}

fn secret_form<'a>(client_id: &'a str, scope: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("grant_type", "client_credentials"),
        ("client_id", client_id),
        ("client_secret", SECRET),
        ("scope", scope),
    ]
}

async fn assertion_grant(harness: &Harness, client_id: &str, assertion: &str) -> (u16, Value) {
    harness
        .post_token(
            DOMAIN,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", assertion),
                ("scope", "api://downstream/.default"),
            ],
        )
        .await
}

#[tokio::test]
async fn client_secret_gets_an_app_token_with_entra_claims() {
    let harness = start().await;
    let (status, body) = harness
        .post_token(TENANT, &secret_form(API, "api://downstream/.default"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3599);
    assert_eq!(body["ext_expires_in"], 3599);
    assert!(body.get("refresh_in").is_none());
    let claims = claims(body["access_token"].as_str().expect("token"));
    assert_eq!(claims["aud"], "api://downstream");
    assert_eq!(claims["tid"], TENANT);
    assert_eq!(claims["appid"], API);
    assert_eq!(claims["azp"], API);
    assert_eq!(claims["idtyp"], "app");
    assert_eq!(claims["roles"], json!(["Reader"]));
    assert_eq!(
        claims["iss"],
        format!("{}/{TENANT}/v2.0", harness.emulator.url())
    );
    assert_eq!(
        claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat"),
        3599
    );
    assert!(claims.get("xms_cc").is_none());
    let counters = harness.emulator.counters();
    assert_eq!((counters.token_requests, counters.tokens_issued), (1, 1));
}

#[tokio::test]
async fn the_same_app_in_another_tenant_gets_that_tenants_token() {
    let harness = start().await;
    let graph = secret_form(API, "https://graph.microsoft.com/.default");
    let (status, body) = harness.post_token(OTHER_TENANT, &graph).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        claims(body["access_token"].as_str().expect("token"))["tid"],
        OTHER_TENANT
    );

    // The downstream API is registered in the first tenant only.
    let downstream = secret_form(API, "api://downstream/.default");
    let (status, body) = harness.post_token(OTHER_TENANT, &downstream).await;
    assert_eq!(
        (status, code(&body), body["error"].as_str()),
        (400, 500_011, Some("invalid_resource"))
    );
}

#[tokio::test]
async fn secret_errors_have_entra_codes_and_shape() {
    let harness = start().await;
    let mut wrong = secret_form(API, "api://downstream/.default");
    wrong[2].1 = "not-the-secret";
    let response = harness
        .http
        .post(harness.token_url(TENANT))
        .header("client-request-id", "5b5bd9f7-0000-4000-8000-000000000001")
        .header("return-client-request-id", "true")
        .form(&wrong)
        .send()
        .await
        .expect("response");
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()["client-request-id"],
        "5b5bd9f7-0000-4000-8000-000000000001"
    );
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"], "invalid_client");
    assert_eq!(code(&body), 7_000_215);
    assert_eq!(
        body["correlation_id"],
        "5b5bd9f7-0000-4000-8000-000000000001"
    );
    let description = body["error_description"].as_str().expect("description");
    assert!(description.starts_with("AADSTS7000215: "), "{description}");
    for field in ["Trace ID: ", "Correlation ID: ", "Timestamp: "] {
        assert!(description.contains(field), "{description}");
    }

    let (status, body) = harness
        .post_token(
            TENANT,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", API),
                ("scope", "x/.default"),
            ],
        )
        .await;
    assert_eq!((status, code(&body)), (401, 7_000_218));

    let (status, body) = harness
        .post_token("nobody.example", &secret_form(API, "x/.default"))
        .await;
    assert_eq!(
        (status, code(&body), body["error"].as_str()),
        (400, 90_002, Some("invalid_request"))
    );

    let unknown = "99999999-0000-0000-0000-000000000000";
    let (status, body) = harness
        .post_token(TENANT, &secret_form(unknown, "x/.default"))
        .await;
    assert_eq!(
        (status, code(&body), body["error"].as_str()),
        (400, 700_016, Some("unauthorized_client"))
    );
}

#[tokio::test]
async fn certificate_assertions_are_verified_claim_by_claim() {
    let harness = start().await;
    let (key, cert) = harness.certificate(API);

    let good = AssertionSpec::new(&harness, API, DOMAIN);
    let (status, body) = assertion_grant(&harness, API, &good.sign(&key, &cert)).await;
    assert_eq!(status, 200, "{body}");

    // The token endpoint named by the tenant's GUID is the same audience.
    let by_id = AssertionSpec {
        aud: harness.token_url(TENANT),
        ..AssertionSpec::new(&harness, API, DOMAIN)
    };
    assert_eq!(
        assertion_grant(&harness, API, &by_id.sign(&key, &cert))
            .await
            .0,
        200
    );

    let rs256 = AssertionSpec {
        alg: "RS256",
        thumbprint_header: "x5t",
        ..AssertionSpec::new(&harness, API, DOMAIN)
    };
    assert_eq!(
        assertion_grant(&harness, API, &rs256.sign(&key, &cert))
            .await
            .0,
        200
    );

    let log = harness.emulator.requests();
    let methods: Vec<_> = log.iter().filter_map(|r| r.client_auth.clone()).collect();
    assert_eq!(methods[0], "certificate PS256 x5t#S256");
    assert_eq!(methods[2], "certificate RS256 x5t");

    // A key that is not the registered certificate's: the signature fails.
    let (other_key, _) = harness.certificate(SNI_APP);
    let forged = AssertionSpec::new(&harness, API, DOMAIN).sign(&other_key, &cert);
    let (status, body) = assertion_grant(&harness, API, &forged).await;
    assert_eq!((status, code(&body)), (401, 700_027), "{body}");

    let wrong_aud = AssertionSpec {
        aud: "https://login.microsoftonline.com/x/oauth2/v2.0/token".into(),
        ..AssertionSpec::new(&harness, API, DOMAIN)
    };
    let (status, body) = assertion_grant(&harness, API, &wrong_aud.sign(&key, &cert)).await;
    assert_eq!((status, code(&body)), (401, 700_023), "{body}");

    let wrong_iss = AssertionSpec {
        iss: SNI_APP.into(),
        ..AssertionSpec::new(&harness, API, DOMAIN)
    };
    let (status, body) = assertion_grant(&harness, API, &wrong_iss.sign(&key, &cert)).await;
    assert_eq!((status, code(&body)), (401, 700_021), "{body}");

    // Expired beyond the five minutes of allowed skew.
    let expired = AssertionSpec {
        exp: now() - 301,
        ..AssertionSpec::new(&harness, API, DOMAIN)
    };
    let (status, body) = assertion_grant(&harness, API, &expired.sign(&key, &cert)).await;
    assert_eq!((status, code(&body)), (401, 700_024), "{body}");
    let within_skew = AssertionSpec {
        exp: now() - 60,
        ..AssertionSpec::new(&harness, API, DOMAIN)
    };
    assert_eq!(
        assertion_grant(&harness, API, &within_skew.sign(&key, &cert))
            .await
            .0,
        200
    );

    let (status, body) = assertion_grant(&harness, API, "not-a-jwt").await;
    assert_eq!((status, code(&body)), (401, 50_027), "{body}");
}

#[tokio::test]
async fn replayed_jti_is_refused_only_when_replay_protection_is_on() {
    let harness = start().await;
    let (key, cert) = harness.certificate(API);
    let assertion = AssertionSpec::new(&harness, API, DOMAIN).sign(&key, &cert);
    // Entra accepts an assertion until it expires (MSAL reuses them), so the default does too.
    assert_eq!(assertion_grant(&harness, API, &assertion).await.0, 200);
    assert_eq!(assertion_grant(&harness, API, &assertion).await.0, 200);

    let settings = harness.emulator.update_settings(&SettingsUpdate {
        reject_replayed_assertions: Some(true),
        ..SettingsUpdate::default()
    });
    assert!(settings.reject_replayed_assertions);
    let fresh = AssertionSpec::new(&harness, API, DOMAIN).sign(&key, &cert);
    assert_eq!(assertion_grant(&harness, API, &fresh).await.0, 200);
    let (status, body) = assertion_grant(&harness, API, &fresh).await;
    assert_eq!((status, code(&body)), (401, 50_027), "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .expect("text")
            .contains("already been used")
    );
}

#[tokio::test]
async fn subject_name_issuer_apps_require_the_chain() {
    let harness = start().await;
    let (key, cert) = harness.certificate(SNI_APP);
    let bare = AssertionSpec::new(&harness, SNI_APP, DOMAIN).sign(&key, &cert);
    let (status, body) = assertion_grant(&harness, SNI_APP, &bare).await;
    assert_eq!((status, code(&body)), (401, 700_027), "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .expect("text")
            .contains("x5c")
    );

    let chained = AssertionSpec {
        with_chain: true,
        ..AssertionSpec::new(&harness, SNI_APP, DOMAIN)
    };
    let (status, body) = assertion_grant(&harness, SNI_APP, &chained.sign(&key, &cert)).await;
    assert_eq!(status, 200, "{body}");
    let last = harness.emulator.requests().pop().expect("logged");
    assert_eq!(
        last.client_auth.as_deref(),
        Some("certificate PS256 x5t#S256 x5c")
    );
}

#[tokio::test]
async fn federated_credentials_check_issuer_subject_and_audience() {
    let harness = start().await;
    let subject = "system:serviceaccount:ns:workload";
    let token = harness
        .emulator
        .mint_federated_token(subject, None, 600)
        .expect("token");
    let (status, body) = assertion_grant(&harness, WORKLOAD, &token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        harness.emulator.requests()[0].client_auth.as_deref(),
        Some("federated")
    );

    let other_subject = harness
        .emulator
        .mint_federated_token("someone-else", None, 600)
        .expect("t");
    assert_eq!(
        code(&assertion_grant(&harness, WORKLOAD, &other_subject).await.1),
        700_213
    );

    let other_audience = harness
        .emulator
        .mint_federated_token(subject, Some("api://elsewhere"), 600)
        .expect("t");
    assert_eq!(
        code(&assertion_grant(&harness, WORKLOAD, &other_audience).await.1),
        700_212
    );

    let expired = harness
        .emulator
        .mint_federated_token(subject, None, -600)
        .expect("t");
    assert_eq!(
        code(&assertion_grant(&harness, WORKLOAD, &expired).await.1),
        700_024
    );

    // A token from an issuer the application does not trust.
    let (key, _) = harness.certificate(API);
    let stranger = sign_jwt(
        &key,
        &json!({ "alg": "RS256", "typ": "JWT" }),
        &json!({ "iss": "https://issuer.example", "sub": subject, "aud": "api://AzureADTokenExchange", "exp": now() + 600 }),
    );
    assert_eq!(
        code(&assertion_grant(&harness, WORKLOAD, &stranger).await.1),
        700_211
    );
}

#[tokio::test]
async fn on_behalf_of_exchanges_a_user_token_and_refreshes_it() {
    let harness = start().await;
    let incoming = user_token(&harness, "api://middle-tier", 3600);
    let form = [
        ("grant_type", OBO_GRANT),
        ("client_id", API),
        ("client_secret", SECRET),
        ("requested_token_use", "on_behalf_of"),
        ("assertion", incoming.as_str()),
        ("client_info", "1"),
        (
            "scope",
            "api://downstream/Data.Read offline_access openid profile",
        ),
    ];
    let (status, body) = harness.post_token(TENANT, &form).await;
    assert_eq!(status, 200, "{body}");
    let access = claims(body["access_token"].as_str().expect("token"));
    assert_eq!(access["aud"], "api://downstream");
    assert_eq!(access["oid"], USER);
    assert_eq!(access["scp"], "Data.Read");
    assert_eq!(access["azp"], API);
    assert_eq!(
        access["preferred_username"],
        "megan@fabrikam.onmicrosoft.com"
    );
    let id_token = claims(body["id_token"].as_str().expect("id token"));
    assert_eq!(id_token["aud"], API);
    assert_eq!(id_token["oid"], USER);
    let client_info: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            body["client_info"].as_str().expect("client_info"),
        )
        .expect("base64"),
    )
    .expect("json");
    assert_eq!(client_info, json!({ "uid": USER, "utid": TENANT }));

    // offline_access asks for a refresh token; it is not a permission the token carries.
    assert_eq!(body["scope"], "api://downstream/Data.Read openid profile");
    let refresh_token = body["refresh_token"].as_str().expect("refresh token");
    let (status, refreshed) = harness
        .post_token(
            TENANT,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", API),
                ("client_secret", SECRET),
                ("refresh_token", refresh_token),
                ("scope", "api://downstream/Data.Read offline_access"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{refreshed}");
    assert_eq!(
        claims(refreshed["access_token"].as_str().expect("token"))["oid"],
        USER
    );

    let (status, body) = harness
        .post_token(
            TENANT,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", API),
                ("client_secret", SECRET),
                ("refresh_token", "emu.rt.made-up"),
                ("scope", "api://downstream/Data.Read"),
            ],
        )
        .await;
    assert_eq!(
        (status, code(&body), body["error"].as_str()),
        (400, 70_000, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn on_behalf_of_rejects_bad_user_assertions() {
    let harness = start().await;
    let harness = &harness;
    let obo = |assertion: String, client_id: &'static str| async move {
        let form = [
            ("grant_type", OBO_GRANT),
            ("client_id", client_id),
            ("client_secret", SECRET),
            ("requested_token_use", "on_behalf_of"),
            ("assertion", assertion.as_str()),
            ("scope", "api://downstream/Data.Read"),
        ];
        harness.post_token(TENANT, &form).await
    };

    let (status, body) = obo(user_token(harness, API, -3600), API).await;
    assert_eq!((status, code(&body)), (400, 500_133), "{body}");

    let (status, body) = obo(user_token(harness, "api://someone-else", 3600), API).await;
    assert_eq!((status, code(&body)), (400, 500_131), "{body}");

    // A user of this tenant, but a token issued by another tenant.
    let foreign = harness
        .emulator
        .mint_user_token(&UserTokenRequest {
            user: USER.to_owned(),
            audience: API.to_owned(),
            tenant: Some(OTHER_TENANT.to_owned()),
            ..UserTokenRequest::default()
        })
        .expect("token");
    let (status, body) = obo(foreign, API).await;
    assert_eq!((status, code(&body)), (400, 50_020), "{body}");

    let mut forged = user_token(harness, API, 3600);
    forged.push_str("AAAA");
    let (status, body) = obo(forged, API).await;
    assert_eq!(
        (status, code(&body), body["error"].as_str()),
        (400, 50_013, Some("invalid_grant"))
    );

    // Consent: the application may ask for Data.Read only.
    let (status, _) = obo(user_token(harness, CONSENTED, 3600), CONSENTED).await;
    assert_eq!(status, 200);
    let form = [
        ("grant_type", OBO_GRANT),
        ("client_id", CONSENTED),
        ("client_secret", SECRET),
        ("requested_token_use", "on_behalf_of"),
        ("assertion", &user_token(harness, CONSENTED, 3600)),
        ("scope", "api://downstream/Data.Write"),
    ];
    let (status, body) = harness.post_token(TENANT, &form).await;
    assert_eq!(
        (status, code(&body), body["suberror"].as_str()),
        (400, 65_001, Some("consent_required"))
    );
}

#[tokio::test]
async fn cp1_claims_give_long_lived_cae_tokens_and_refresh_in_is_configurable() {
    let harness = start().await;
    let mut form = secret_form(API, "api://downstream/.default");
    form.push((
        "claims",
        r#"{"access_token":{"xms_cc":{"values":["CP1"]}}}"#,
    ));
    let (status, body) = harness.post_token(TENANT, &form).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expires_in"], 86_399);
    // Long-lived tokens carry a hint to refresh them halfway.
    assert_eq!(body["refresh_in"], 43_199);
    assert_eq!(
        claims(body["access_token"].as_str().expect("token"))["xms_cc"],
        json!(["CP1"])
    );

    harness.emulator.update_settings(&SettingsUpdate {
        tokens: Some(TokenSettingsUpdate {
            access_token_lifetime_secs: Some(7200),
            refresh_in_secs: Some(Some(3600)),
            ..TokenSettingsUpdate::default()
        }),
        ..SettingsUpdate::default()
    });
    let (_, body) = harness
        .post_token(TENANT, &secret_form(API, "api://downstream/.default"))
        .await;
    assert_eq!(
        (body["expires_in"].as_u64(), body["refresh_in"].as_u64()),
        (Some(7200), Some(3600))
    );
}

#[tokio::test]
async fn bad_input_gets_entra_shaped_errors() {
    let harness = start().await;
    let post_raw = |body: Vec<u8>| {
        harness
            .http
            .post(harness.token_url(TENANT))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let expect = |status: u16, code: u64| {
        move |(actual, body): (u16, Value)| {
            assert_eq!((actual, common::code(&body)), (status, code), "{body}");
            assert!(
                body["error_description"]
                    .as_str()
                    .expect("text")
                    .starts_with(&format!("AADSTS{code}:"))
            );
        }
    };
    let read = |response: reqwest::Response| async move {
        let status = response.status().as_u16();
        (status, response.json::<Value>().await.expect("json"))
    };

    expect(400, 9_002_313)(
        read(
            post_raw(b"grant_type=client_credentials&scope=\xff\xfe".to_vec())
                .await
                .expect("r"),
        )
        .await,
    );
    expect(413, 9_002_313)(read(post_raw(vec![b'a'; 300 * 1024]).await.expect("r")).await);
    expect(400, 900_144)(read(post_raw(b"client_id=x".to_vec()).await.expect("r")).await);
    expect(400, 70_003)(read(post_raw(b"grant_type=password".to_vec()).await.expect("r")).await);
    expect(400, 9_002_313)(
        read(
            post_raw(b"grant_type=a&grant_type=b".to_vec())
                .await
                .expect("r"),
        )
        .await,
    );

    let missing_scope = [
        ("grant_type", "client_credentials"),
        ("client_id", API),
        ("client_secret", SECRET),
    ];
    expect(400, 900_144)(harness.post_token(TENANT, &missing_scope).await);
    expect(400, 70_011)(
        harness
            .post_token(TENANT, &secret_form(API, "api://downstream/Data.Read"))
            .await,
    );
    expect(400, 70_011)(
        harness
            .post_token(TENANT, &secret_form(API, "a/.default b/.default"))
            .await,
    );
    let mut bad_claims = secret_form(API, "api://downstream/.default");
    bad_claims.push(("claims", "{not json"));
    expect(400, 9_002_313)(harness.post_token(TENANT, &bad_claims).await);

    // The server is still healthy afterwards.
    assert_eq!(
        harness
            .post_token(TENANT, &secret_form(API, "api://downstream/.default"))
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn injected_faults_happen_once_each_then_service_resumes() {
    let harness = start().await;
    let token_path = "/oauth2/v2.0/token";
    let inject = |fault: Fault| {
        harness.emulator.inject_fault(FaultRule {
            path: token_path.to_owned(),
            count: 1,
            fault,
        });
    };
    let send = || {
        harness
            .http
            .post(harness.token_url(TENANT))
            .form(&secret_form(API, "api://downstream/.default"))
            .send()
    };

    inject(Fault::Status {
        status: 429,
        retry_after: Some(7),
    });
    let response = send().await.expect("response");
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "7");
    assert_eq!(
        response.json::<Value>().await.expect("json")["error"],
        "temporarily_unavailable"
    );

    inject(Fault::Drop);
    assert!(send().await.is_err(), "a dropped connection is an error");

    inject(Fault::Truncate);
    let truncated = match send().await {
        Ok(response) => response.bytes().await.is_err(),
        Err(_) => true,
    };
    assert!(truncated, "a truncated body is an error");

    inject(Fault::Garbage);
    let response = send().await.expect("response");
    assert_eq!(response.status(), 200);
    assert!(response.json::<Value>().await.is_err());

    inject(Fault::Html { status: None });
    let response = send().await.expect("response");
    assert_eq!(response.status(), 502);
    assert!(response.text().await.expect("text").contains("<html>"));

    inject(Fault::Delay { millis: 300 });
    let started = std::time::Instant::now();
    assert_eq!(send().await.expect("response").status(), 200);
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));

    assert_eq!(send().await.expect("response").status(), 200);
    assert_eq!(harness.emulator.counters().faults_injected, 6);
    let faults: Vec<_> = harness
        .emulator
        .requests()
        .iter()
        .filter_map(|r| r.fault.clone())
        .collect();
    assert_eq!(
        faults,
        [
            "status 429",
            "drop",
            "truncate",
            "garbage",
            "html",
            "delay 300ms"
        ]
    );
}

#[tokio::test]
async fn metadata_endpoints_describe_the_tenant() {
    let harness = start().await;
    let base = harness.emulator.url().to_owned();
    let get = |url: String| async { harness.http.get(url).send().await.expect("response") };

    let config: Value = get(format!(
        "{base}/{DOMAIN}/v2.0/.well-known/openid-configuration"
    ))
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(
        config["token_endpoint"],
        format!("{base}/{TENANT}/oauth2/v2.0/token")
    );
    assert_eq!(config["issuer"], format!("{base}/{TENANT}/v2.0"));
    let unknown = get(format!(
        "{base}/nobody/v2.0/.well-known/openid-configuration"
    ))
    .await;
    assert_eq!(unknown.status(), 400);
    assert_eq!(code(&unknown.json().await.expect("json")), 90_002);

    // The keys verify a token the emulator issued.
    let keys: Value = get(config["jwks_uri"].as_str().expect("jwks").to_owned())
        .await
        .json()
        .await
        .expect("json");
    let (_, body) = harness
        .post_token(TENANT, &secret_form(API, "api://downstream/.default"))
        .await;
    let token = body["access_token"].as_str().expect("token");
    let header: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            token.split('.').next().expect("header"),
        )
        .expect("b64"),
    )
    .expect("json");
    assert_eq!(keys["keys"][0]["kid"], header["kid"]);
    assert_eq!(keys["keys"][0]["kty"], "RSA");

    let discovery = |version: &str, host: &str| {
        format!(
            "{base}/common/discovery/instance?api-version={version}&authorization_endpoint=https://{host}/{TENANT}/oauth2/v2.0/authorize"
        )
    };
    let own_host = base.trim_start_matches("https://").to_owned();
    let v11: Value = get(discovery("1.1", &own_host))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        v11["tenant_discovery_endpoint"],
        format!("{base}/{TENANT}/v2.0/.well-known/openid-configuration")
    );
    assert_eq!(v11["metadata"][0]["preferred_network"], own_host);
    let v10: Value = get(discovery("1.0", "login.microsoftonline.com"))
        .await
        .json()
        .await
        .expect("json");
    assert!(v10.get("metadata").is_none());
    let unknown = get(discovery("1.1", "login.evil.example")).await;
    assert_eq!(unknown.status(), 400);
    let body: Value = unknown.json().await.expect("json");
    assert_eq!(
        (body["error"].as_str(), code(&body)),
        (Some("invalid_instance"), 50_049)
    );
}

#[tokio::test]
async fn the_request_log_never_holds_secrets() {
    let harness = start().await;
    let incoming = user_token(&harness, API, 3600);
    let form = [
        ("grant_type", OBO_GRANT),
        ("client_id", API),
        ("client_secret", SECRET),
        ("requested_token_use", "on_behalf_of"),
        ("assertion", incoming.as_str()),
        ("scope", "api://downstream/Data.Read offline_access"),
    ];
    let (_, body) = harness.post_token(TENANT, &form).await;
    let refresh_token = body["refresh_token"]
        .as_str()
        .expect("refresh token")
        .to_owned();
    harness
        .http
        .post(harness.token_url(TENANT))
        .header("authorization", "Bearer secret-header-value")
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", API),
            ("client_secret", SECRET),
            ("refresh_token", refresh_token.as_str()),
            ("scope", "api://downstream/Data.Read"),
        ])
        .send()
        .await
        .expect("response");

    let log = harness.emulator.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].form["client_secret"], "[redacted]");
    assert_eq!(
        log[0].form["scope"],
        "api://downstream/Data.Read offline_access"
    );
    let dump = serde_json::to_string(&log).expect("json");
    for secret in [
        SECRET,
        incoming.as_str(),
        refresh_token.as_str(),
        "secret-header-value",
    ] {
        assert!(!dump.contains(secret), "the log holds a secret");
    }

    // The admin API serves the same log.
    let admin = format!("{}/_emulator/requests", harness.emulator.url());
    let served: Vec<Value> = harness
        .http
        .get(admin)
        .send()
        .await
        .expect("r")
        .json()
        .await
        .expect("json");
    assert_eq!(served.len(), 2);
}

#[tokio::test]
async fn the_admin_api_registers_and_mints() {
    let harness = start().await;
    let admin = format!("{}/_emulator", harness.emulator.url());
    let tenant: Value = harness
        .http
        .post(format!("{admin}/tenants"))
        .json(&json!({ "domains": ["new.example"], "users": [{ "upn": "ann@new.example" }] }))
        .send()
        .await
        .expect("r")
        .json()
        .await
        .expect("json");
    let tenant_id = tenant["id"].as_str().expect("generated id").to_owned();
    let app: Value = harness
        .http
        .post(format!("{admin}/tenants/new.example/applications"))
        .json(&json!({ "name": "late", "generate_secret": true }))
        .send()
        .await
        .expect("r")
        .json()
        .await
        .expect("json");
    let client_id = app["client_id"].as_str().expect("client id");
    let secret = app["secrets"][0].as_str().expect("secret");
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", client_id),
        ("client_secret", secret),
        ("scope", "https://graph.microsoft.com/.default"),
    ];
    let (status, body) = harness.post_token(&tenant_id, &form).await;
    assert_eq!(status, 200, "{body}");

    let minted: Value = harness
        .http
        .post(format!("{admin}/tokens/user"))
        .json(&json!({ "user": "ann@new.example", "audience": client_id }))
        .send()
        .await
        .expect("r")
        .json()
        .await
        .expect("json");
    let claims = claims(minted["access_token"].as_str().expect("token"));
    assert_eq!(claims["aud"], client_id);
    assert_eq!(claims["tid"], tenant_id);

    let duplicate = harness
        .http
        .post(format!("{admin}/tenants"))
        .json(&json!({ "id": tenant_id }))
        .send()
        .await
        .expect("r");
    assert_eq!(duplicate.status(), 400);

    let counters: Value = harness
        .http
        .get(format!("{admin}/counters"))
        .send()
        .await
        .expect("r")
        .json()
        .await
        .expect("json");
    assert_eq!(counters["tokens_issued"], 1);
}

/// `client_secret_basic`: the ID and secret, each URL-encoded, joined by `:`, base64-encoded.
fn basic(client_id: &str, secret: &str) -> String {
    use base64::Engine as _;
    let encode = |text: &str| form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
    let joined = format!("{}:{}", encode(client_id), encode(secret));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(joined)
    )
}

#[tokio::test]
async fn client_secret_basic_is_accepted_as_entra_accepts_it() {
    let harness = start().await;
    let post = |authorization: String, form: Vec<(&'static str, &'static str)>| {
        let request = harness
            .http
            .post(harness.token_url(TENANT))
            .header("authorization", authorization)
            .form(&form);
        async move {
            let response = request.send().await.expect("response");
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.expect("json"))
        }
    };
    let scope_only = vec![
        ("grant_type", "client_credentials"),
        ("scope", "api://downstream/.default"),
    ];
    // No client_id in the body: the header's is used.
    let (status, body) = post(basic(API, SECRET), scope_only.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["access_token"].is_string(), "{body}");
    // The same client_id in the body (another case) is fine.
    let mut with_id = scope_only.clone();
    with_id.push(("client_id", "10000000-0000-0000-0000-000000000001"));
    let (status, body) = post(basic(&API.to_uppercase(), SECRET), with_id).await;
    assert_eq!(status, 200, "{body}");
    // A different one is an error.
    let mut other_id = scope_only.clone();
    other_id.push(("client_id", "20000000-0000-0000-0000-000000000002"));
    let (status, body) = post(basic(API, SECRET), other_id).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|text| text.contains("does not match")),
        "{body}"
    );
    // A wrong secret is the usual invalid_client.
    let (status, body) = post(basic(API, "not-the-secret"), scope_only.clone()).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "invalid_client");
    // The header and a secret in the body at once: refused.
    let mut both = scope_only.clone();
    both.push(("client_secret", SECRET));
    let (status, _) = post(basic(API, SECRET), both).await;
    assert_eq!(status, 400);
    // Not base64, or no colon: malformed.
    let (status, _) = post("Basic %%%".to_owned(), scope_only.clone()).await;
    assert_eq!(status, 400);
    let (status, _) = post(
        format!(
            "Basic {}",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "no-colon")
        ),
        scope_only,
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn forms_with_thousands_of_fields_are_refused_cheaply() {
    let harness = start().await;
    let body: String = (0..5_000).map(|i| format!("f{i}=x&")).collect();
    let response = harness
        .http
        .post(harness.token_url(TENANT))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("response");
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("json");
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|text| text.contains("more than 64 parameters")),
        "{body}"
    );
}

/// A client assertion whose thumbprint header holds `thumbprint` as given.
fn assertion_with_thumbprint(
    harness: &Harness,
    client_id: &str,
    key: &[u8],
    header_name: &str,
    thumbprint: &str,
) -> String {
    let spec = AssertionSpec::new(harness, client_id, DOMAIN);
    let mut header = json!({ "alg": "RS256", "typ": "JWT" });
    header[header_name] = json!(thumbprint);
    let now = now();
    let claims = json!({
        "aud": spec.aud, "iss": spec.iss, "sub": spec.sub, "jti": spec.jti,
        "nbf": now, "iat": now, "exp": spec.exp,
    });
    sign_jwt(key, &header, &claims)
}

#[tokio::test]
async fn thumbprints_are_accepted_in_either_base64_alphabet_padded_or_not() {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    use sha2::Digest as _;

    let harness = start().await;
    // Register certificates until both digests have a '+' or '/' in standard base64 (each
    // certificate has a better than even chance; 40 tries fail with odds below 1e-12).
    // (client ID, PKCS#8 key, digest) for SHA-1 then SHA-256.
    type Found = Option<(String, Vec<u8>, Vec<u8>)>;
    let mut found: [Found; 2] = [None, None];
    for attempt in 0..40 {
        if found.iter().all(Option::is_some) {
            break;
        }
        let client_id = format!("30000000-0000-0000-0000-{attempt:012}");
        let app = harness
            .emulator
            .register_application(
                TENANT,
                &entra_emulator::ApplicationConfig {
                    name: format!("thumbprint-{attempt}"),
                    client_id: Some(client_id.clone()),
                    certificates: vec![entra_emulator::CertificateConfig::default()],
                    ..entra_emulator::ApplicationConfig::default()
                },
            )
            .expect("registered");
        let certificate = &app.certificates[0];
        let key = pem::parse(certificate.key_pem.as_deref().expect("key"))
            .expect("key pem")
            .into_contents();
        let der = pem::parse(&certificate.cert_pem)
            .expect("cert pem")
            .into_contents();
        let digests = [
            sha1::Sha1::digest(&der).to_vec(),
            sha2::Sha256::digest(&der).to_vec(),
        ];
        for (slot, digest) in found.iter_mut().zip(digests) {
            if slot.is_none() && STANDARD.encode(&digest).contains(['+', '/']) {
                *slot = Some((client_id.clone(), key.clone(), digest));
            }
        }
    }

    for ((client_id, key, digest), header_name) in found
        .into_iter()
        .map(|slot| slot.expect("a thumbprint with '+' or '/'"))
        .zip(["x5t", "x5t#S256"])
    {
        for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
            let thumbprint = engine.encode(&digest);
            let assertion =
                assertion_with_thumbprint(&harness, &client_id, &key, header_name, &thumbprint);
            let (status, body) = assertion_grant(&harness, &client_id, &assertion).await;
            assert_eq!(status, 200, "{header_name} = {thumbprint}: {body}");
        }
        // Another certificate's thumbprint is still refused.
        let mut wrong = digest.clone();
        wrong[0] ^= 1;
        let assertion = assertion_with_thumbprint(
            &harness,
            &client_id,
            &key,
            header_name,
            &STANDARD.encode(&wrong),
        );
        let (status, body) = assertion_grant(&harness, &client_id, &assertion).await;
        assert_eq!((status, code(&body)), (401, 700_027), "{body}");
    }
}

#[tokio::test]
async fn v1_metadata_and_keys_have_entras_shape_and_a_region() {
    let harness = start().await;
    let base = harness.emulator.url().to_owned();
    let get_json = |url: String| async {
        let response = harness.http.get(url).send().await.expect("response");
        (
            response.status().as_u16(),
            response.json::<Value>().await.expect("json"),
        )
    };

    let (status, v1) = get_json(format!("{base}/{DOMAIN}/.well-known/openid-configuration")).await;
    assert_eq!(status, 200, "{v1}");
    assert_eq!(v1["issuer"], format!("https://sts.windows.net/{TENANT}/"));
    assert_eq!(
        v1["token_endpoint"],
        format!("{base}/{TENANT}/oauth2/token")
    );
    assert_eq!(
        v1["authorization_endpoint"],
        format!("{base}/{TENANT}/oauth2/authorize")
    );
    assert_eq!(v1["jwks_uri"], format!("{base}/{TENANT}/discovery/keys"));
    assert_eq!(v1["microsoft_multi_refresh_token"], true);
    assert_eq!(v1["scopes_supported"], json!(["openid"]));
    assert_eq!(v1["tenant_region_scope"], "NA");

    let (_, common) = get_json(format!("{base}/common/.well-known/openid-configuration")).await;
    assert_eq!(common["issuer"], "https://sts.windows.net/{tenantid}/");
    assert_eq!(common["jwks_uri"], format!("{base}/common/discovery/keys"));
    assert_eq!(common["tenant_region_scope"], Value::Null);

    let (status, unknown) =
        get_json(format!("{base}/nobody/.well-known/openid-configuration")).await;
    assert_eq!((status, code(&unknown)), (400, 90_002));

    let (_, v2) = get_json(format!(
        "{base}/{TENANT}/v2.0/.well-known/openid-configuration"
    ))
    .await;
    assert_eq!(v2["tenant_region_scope"], "NA");

    // The v1 key sets are the v2 key set.
    let (_, v2_keys) = get_json(v2["jwks_uri"].as_str().expect("jwks").to_owned()).await;
    assert!(v2_keys["keys"][0]["kid"].is_string(), "{v2_keys}");
    for url in [
        v1["jwks_uri"].as_str().expect("jwks").to_owned(),
        format!("{base}/common/discovery/keys"),
    ] {
        let (status, keys) = get_json(url.clone()).await;
        assert_eq!((status, &keys), (200, &v2_keys), "{url}");
    }

    // The region is configurable.
    let europe = start_with(entra_emulator::EmulatorConfig {
        tenant_region_scope: Some("EU".to_owned()),
        ..config()
    })
    .await;
    let document: Value = europe
        .http
        .get(format!(
            "{}/{TENANT}/.well-known/openid-configuration",
            europe.emulator.url()
        ))
        .send()
        .await
        .expect("response")
        .json()
        .await
        .expect("json");
    assert_eq!(document["tenant_region_scope"], "EU");
}

/// `GET /_emulator` is how a newcomer finds the admin API: each endpoint it lists must answer
/// (not 404 or 405), so the list cannot drift from the routes.
#[tokio::test]
async fn every_endpoint_the_admin_index_lists_is_routed() {
    let harness = start().await;
    let listing: Value = harness
        .http
        .get(format!("{}/_emulator", harness.emulator.url()))
        .send()
        .await
        .expect("index")
        .json()
        .await
        .expect("json");
    let endpoints = listing["endpoints"].as_array().expect("endpoints");
    assert!(endpoints.len() >= 15, "{listing}");
    for endpoint in endpoints {
        let method = endpoint["method"].as_str().expect("method");
        let url = endpoint["url"]
            .as_str()
            .expect("url")
            .replace("{tenant}", TENANT);
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method name");
        // An empty JSON object: enough to reach the handler, which may refuse it as a bad body.
        let status = harness
            .http
            .request(method.clone(), &url)
            .json(&json!({}))
            .send()
            .await
            .expect("answer")
            .status();
        assert!(
            status != reqwest::StatusCode::NOT_FOUND
                && status != reqwest::StatusCode::METHOD_NOT_ALLOWED,
            "{method} {url}: {status}"
        );
    }
}
