//! ClientAssertionCredential through its public API, against the emulator over TLS.

mod common;

use std::sync::Arc;

use common::*;
use entra_emulator::{Fault, FaultRule, SettingsUpdate, TokenSettingsUpdate};
use entra_identity::{
    ClientAssertionCredential, CredentialError, FailureKind, ManualClock, MapEnvironment,
    TokenRequestOptions,
};

#[tokio::test]
async fn gets_a_token_and_serves_it_from_cache_without_calling_the_source_again() {
    let emulator = emulator().await;
    let (credential, calls) = credential(&emulator);
    let token = credential
        .get_token(&[GRAPH], TokenRequestOptions::new())
        .await
        .expect("token");
    let claims = claims(token.token.expose_secret());
    assert_eq!(claims["aud"], "https://graph.microsoft.com");
    assert_eq!(claims["tid"], TENANT);
    assert_eq!(claims["appid"], WORKLOAD);
    // The credential counts from when it sent the request, the emulator from when it got it.
    assert!((token.expires_on - claims["exp"].as_i64().expect("exp")).abs() <= 1);

    let again = credential
        .get_token(&[GRAPH], TokenRequestOptions::new())
        .await
        .expect("cached");
    assert_eq!(again.token.expose_secret(), token.token.expose_secret());
    assert_eq!(
        calls.count(),
        1,
        "the assertion source runs only for network requests"
    );
    assert_eq!(emulator.counters().token_requests, 1);
}

#[tokio::test]
async fn the_request_is_what_azure_identity_sends() {
    let emulator = emulator().await;
    let (credential, _) = credential(&emulator);
    credential
        .get_token(&[GRAPH], TokenRequestOptions::new())
        .await
        .expect("token");
    let request = token_requests(&emulator).pop().expect("one request");
    assert_eq!(request.path, format!("/{TENANT}/oauth2/v2.0/token"));
    assert_eq!(request.client_auth.as_deref(), Some("federated"));
    let form = &request.form;
    assert_eq!(form["client_assertion"], "[redacted]");
    assert_eq!(
        form["client_assertion_type"],
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    );
    assert_eq!(form["client_id"], WORKLOAD);
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(form["scope"], GRAPH);
    assert!(!form.contains_key("claims"));
    let headers = &request.headers;
    assert!(uuid::Uuid::parse_str(&headers["client-request-id"]).is_ok());
    assert_eq!(headers["return-client-request-id"], "true");
    assert!(
        headers["user-agent"].starts_with("entra-identity/"),
        "{}",
        headers["user-agent"]
    );
}

#[tokio::test]
async fn get_token_info_reports_type_and_refresh_time() {
    let emulator = emulator().await;
    emulator.update_settings(&SettingsUpdate {
        tokens: Some(TokenSettingsUpdate {
            refresh_in_secs: Some(Some(600)),
            ..TokenSettingsUpdate::default()
        }),
        ..SettingsUpdate::default()
    });
    let clock = ManualClock::starting_now();
    let (multi_builder, _) = builder(&emulator, TENANT);
    let credential = multi_builder
        .clock(Arc::new(clock.clone()))
        .build()
        .expect("credential");
    let start = entra_identity::Clock::now(&clock);
    let info = credential
        .get_token_info(&[GRAPH], TokenRequestOptions::default())
        .await
        .expect("info");
    assert_eq!(info.token_type, "Bearer");
    assert_eq!(info.expires_on, start + 3599);
    assert_eq!(info.refresh_on, Some(start + 600));

    // Past refresh_on: the cached token at once, one proactive refresh in the background,
    // then the new token is served.
    clock.advance(601);
    let served = credential
        .get_token_info(&[GRAPH], TokenRequestOptions::default())
        .await
        .expect("cached");
    assert_eq!(served.refresh_on, Some(start + 600));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let refreshed = loop {
        let info = credential
            .get_token_info(&[GRAPH], TokenRequestOptions::default())
            .await
            .expect("refreshed");
        if info.refresh_on != Some(start + 600) {
            break info;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no background refresh"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(emulator.counters().token_requests, 2);
    assert_eq!(refreshed.refresh_on, Some(start + 601 + 600));
}

#[tokio::test]
async fn cae_tokens_and_plain_tokens_are_cached_apart() {
    let emulator = emulator().await;
    let (credential, _) = credential(&emulator);
    let plain = credential
        .get_token(&[GRAPH], TokenRequestOptions::new())
        .await
        .expect("plain");
    let cae = credential
        .get_token(&[GRAPH], TokenRequestOptions::new().enable_cae(true))
        .await
        .expect("cae");
    assert!(claims(plain.token.expose_secret()).get("xms_cc").is_none());
    assert_eq!(
        claims(cae.token.expose_secret())["xms_cc"],
        serde_json::json!(["CP1"])
    );
    let requests = token_requests(&emulator);
    assert_eq!(requests.len(), 2);
    let sent: serde_json::Value = serde_json::from_str(&requests[1].form["claims"]).expect("json");
    assert_eq!(
        sent,
        serde_json::json!({ "access_token": { "xms_cc": { "values": ["CP1"] } } })
    );
    // Both are cached now.
    credential
        .get_token(&[GRAPH], TokenRequestOptions::new().enable_cae(true))
        .await
        .expect("cae again");
    credential
        .get_token(&[GRAPH], TokenRequestOptions::new())
        .await
        .expect("plain again");
    assert_eq!(token_requests(&emulator).len(), 2);
}

#[tokio::test]
async fn a_claims_challenge_bypasses_the_cache_and_is_merged_with_cae() {
    let emulator = emulator().await;
    let (credential, calls) = credential(&emulator);
    credential
        .get_token(&[GRAPH], TokenRequestOptions::new())
        .await
        .expect("first");
    let challenge = r#"{"access_token":{"nbf":{"essential":true,"value":"1700000000"}}}"#;
    credential
        .get_token(
            &[GRAPH],
            TokenRequestOptions::new()
                .claims(challenge)
                .enable_cae(true),
        )
        .await
        .expect("challenged");
    let requests = token_requests(&emulator);
    assert_eq!(requests.len(), 2, "the challenge went to Entra ID");
    assert_eq!(calls.count(), 2);
    let sent: serde_json::Value = serde_json::from_str(&requests[1].form["claims"]).expect("json");
    assert_eq!(
        sent,
        serde_json::json!({ "access_token": {
            "nbf": { "essential": true, "value": "1700000000" },
            "xms_cc": { "values": ["CP1"] } } })
    );
    let error = credential
        .get_token(
            &[GRAPH],
            TokenRequestOptions::new()
                .claims("{not json")
                .enable_cae(true),
        )
        .await
        .expect_err("bad");
    assert!(
        matches!(error, CredentialError::InvalidRequest(_)),
        "{error:?}"
    );
}

#[tokio::test]
async fn several_scopes_are_sent_together() {
    let emulator = emulator().await;
    let (credential, _) = credential(&emulator);
    // Entra refuses two resources in one client-credentials request, and says so.
    let error = credential
        .get_token(&[GRAPH, DOWNSTREAM], TokenRequestOptions::new())
        .await
        .expect_err("70011");
    assert_eq!(error.entra().expect("entra error").error_codes, [70_011]);
    let request = token_requests(&emulator).pop().expect("sent");
    assert_eq!(request.form["scope"], format!("{GRAPH} {DOWNSTREAM}"));
}

#[tokio::test]
async fn tenants_follow_the_multi_tenant_rules() {
    let emulator = emulator().await;
    let (credential, _) = credential(&emulator);
    let error = credential
        .get_token(
            &[GRAPH],
            TokenRequestOptions::new().tenant_id(SECOND_TENANT),
        )
        .await
        .expect_err("not allowed");
    let failure = error.client_authentication().expect("authentication error");
    assert_eq!(failure.kind(), FailureKind::TenantNotAllowed);
    assert!(failure.message().contains("additionally_allowed_tenants"));
    assert!(
        token_requests(&emulator).is_empty(),
        "refused before any request"
    );

    let (multi_builder, _) = builder(&emulator, TENANT);
    let multi = multi_builder
        .additionally_allowed_tenants([SECOND_TENANT])
        .build()
        .expect("credential");
    let first = multi
        .get_token(&[GRAPH], TokenRequestOptions::new())
        .await
        .expect("default tenant");
    let second = multi
        .get_token(
            &[GRAPH],
            TokenRequestOptions::new().tenant_id(SECOND_TENANT),
        )
        .await
        .expect("second");
    let by_domain = multi
        .get_token(&[GRAPH], TokenRequestOptions::new().tenant_id(DOMAIN))
        .await;
    assert_eq!(claims(first.token.expose_secret())["tid"], TENANT);
    assert_eq!(claims(second.token.expose_secret())["tid"], SECOND_TENANT);
    assert!(by_domain.is_err(), "the domain is not in the allowed list");
    // Each tenant is cached apart.
    multi
        .get_token(
            &[GRAPH],
            TokenRequestOptions::new().tenant_id(SECOND_TENANT),
        )
        .await
        .expect("cached");
    multi
        .get_token(&[GRAPH], TokenRequestOptions::new())
        .await
        .expect("cached");
    assert_eq!(token_requests(&emulator).len(), 2);

    let (multi_builder, _) = builder(&emulator, TENANT);
    let disabled = multi_builder
        .environment(Arc::new(
            MapEnvironment::new().with("AZURE_IDENTITY_DISABLE_MULTITENANTAUTH", "false"),
        ))
        .build()
        .expect("credential");
    let token = disabled
        .get_token(
            &[GRAPH],
            TokenRequestOptions::new().tenant_id("unexpected-tenant"),
        )
        .await
        .expect("default");
    assert_eq!(claims(token.token.expose_secret())["tid"], TENANT);

    let error = multi
        .get_token(&[GRAPH], TokenRequestOptions::new().tenant_id("bad/tenant"))
        .await
        .expect_err("invalid");
    assert!(matches!(error, CredentialError::InvalidRequest(_)));
}

#[tokio::test]
async fn entra_errors_carry_their_fields() {
    let emulator = emulator().await;
    let (source, _) = federated_source(&emulator, "someone-else");
    let credential = ClientAssertionCredential::builder(TENANT, WORKLOAD, source)
        .authority(emulator.url())
        .http_options(http(&emulator))
        .build()
        .expect("credential");
    let error = credential
        .get_token(&[GRAPH], TokenRequestOptions::new())
        .await
        .expect_err("refused");
    let failure = error.client_authentication().expect("authentication error");
    assert_eq!(failure.kind(), FailureKind::Service);
    assert_eq!(failure.status(), Some(401));
    assert!(!failure.is_transient());
    let entra = failure.entra().expect("entra fields");
    assert_eq!(entra.error, "invalid_client");
    assert_eq!(entra.error_codes, [700_213]);
    assert!(entra.trace_id.is_some());
    let sent_id =
        token_requests(&emulator).pop().expect("sent").headers["client-request-id"].clone();
    assert_eq!(entra.correlation_id.as_deref(), Some(sent_id.as_str()));
    assert!(
        error
            .to_string()
            .starts_with("Microsoft Entra ID error '(invalid_client) AADSTS700213: "),
        "{error}"
    );
}

#[tokio::test]
async fn transient_failures_are_retried_and_bad_bodies_are_clear_errors() {
    let emulator = emulator().await;
    let (credential, _) = credential(&emulator);
    let token_path = "/oauth2/v2.0/token".to_owned();
    emulator.inject_fault(FaultRule {
        path: token_path.clone(),
        count: 1,
        fault: Fault::Status {
            status: 429,
            retry_after: Some(0),
        },
    });
    emulator.inject_fault(FaultRule {
        path: token_path.clone(),
        count: 1,
        fault: Fault::Drop,
    });
    credential
        .get_token(&[GRAPH], TokenRequestOptions::new())
        .await
        .expect("succeeds on the third attempt");
    assert_eq!(token_requests(&emulator).len(), 3);

    for (fault, kind) in [
        (Fault::Garbage, FailureKind::InvalidResponse),
        (
            Fault::Html { status: Some(400) },
            FailureKind::InvalidResponse,
        ),
    ] {
        let (fresh, _) = credential_for(&emulator);
        emulator.inject_fault(FaultRule {
            path: token_path.clone(),
            count: 1,
            fault: fault.clone(),
        });
        let outcome = fresh
            .get_token(&[DOWNSTREAM], TokenRequestOptions::new())
            .await;
        let error = outcome.expect_err(&format!("{fault:?} gives an error"));
        let failure = error.client_authentication().expect("authentication error");
        assert_eq!(failure.kind(), kind, "{fault:?}: {failure:?}");
        assert!(!failure.is_transient());
    }

    // A response cut short is retried like a dropped connection; when it keeps happening the
    // error says so.
    let (fresh, _) = credential_for(&emulator);
    emulator.inject_fault(FaultRule {
        path: token_path.clone(),
        count: 1,
        fault: Fault::Truncate,
    });
    fresh
        .get_token(&[DOWNSTREAM], TokenRequestOptions::new())
        .await
        .expect("retried");
    let (fresh, _) = credential_for(&emulator);
    emulator.inject_fault(FaultRule {
        path: token_path.clone(),
        count: 4,
        fault: Fault::Truncate,
    });
    let error = fresh
        .get_token(&[DOWNSTREAM], TokenRequestOptions::new())
        .await
        .expect_err("cut short");
    let failure = error.client_authentication().expect("authentication error");
    assert_eq!(failure.kind(), FailureKind::Transport, "{failure:?}");
    assert!(failure.is_transient());

    // A 503 that never ends: the retries are bounded and the error says it is transient.
    emulator.inject_fault(FaultRule {
        path: token_path,
        count: 10,
        fault: Fault::Status {
            status: 503,
            retry_after: None,
        },
    });
    let (fresh, _) = credential_for(&emulator);
    let before = token_requests(&emulator).len();
    let error = fresh
        .get_token(&[DOWNSTREAM], TokenRequestOptions::new())
        .await
        .expect_err("unavailable");
    assert!(error.is_transient());
    assert_eq!(
        token_requests(&emulator).len() - before,
        4,
        "one attempt and three retries"
    );
    emulator.clear_faults();
}

fn credential_for(emulator: &entra_emulator::Emulator) -> (ClientAssertionCredential, Calls) {
    credential(emulator)
}

#[tokio::test]
async fn no_scopes_and_closed_credentials_are_errors_not_panics() {
    let emulator = emulator().await;
    let (credential, _) = credential(&emulator);
    let error = credential
        .get_token(&[], TokenRequestOptions::new())
        .await
        .expect_err("no scopes");
    assert!(matches!(error, CredentialError::InvalidRequest(_)));
    credential
        .get_token(&[GRAPH], TokenRequestOptions::new())
        .await
        .expect("token");
    credential.close().await;
    let error = credential
        .get_token(&[GRAPH], TokenRequestOptions::new())
        .await
        .expect_err("closed");
    assert!(
        matches!(error, CredentialError::CredentialUnavailable(_)),
        "{error:?}"
    );
}

#[tokio::test]
async fn the_source_failing_is_a_client_assertion_error() {
    let emulator = emulator().await;
    let credential = ClientAssertionCredential::builder(
        TENANT,
        WORKLOAD,
        entra_identity::assertion_fn(|| Err::<String, _>("the token file is missing")),
    )
    .authority(emulator.url())
    .http_options(http(&emulator))
    .build()
    .expect("credential");
    let error = credential
        .get_token(&[GRAPH], TokenRequestOptions::new())
        .await
        .expect_err("fails");
    let failure = error.client_authentication().expect("authentication error");
    assert_eq!(failure.kind(), FailureKind::ClientAssertion);
    // The message says what failed; the function's own error, why.
    assert!(!failure.message().contains("the token file is missing"));
    let cause = std::error::Error::source(&error).map(ToString::to_string);
    assert_eq!(cause.as_deref(), Some("the token file is missing"));
    assert!(token_requests(&emulator).is_empty());
}

#[tokio::test]
async fn a_thousand_callers_on_a_cold_key_make_one_request() {
    let emulator = emulator().await;
    let (credential, calls) = credential(&emulator);
    let mut callers = Vec::new();
    for _ in 0..1000 {
        let credential = credential.clone();
        callers.push(tokio::spawn(async move {
            credential
                .get_token(&[GRAPH], TokenRequestOptions::new())
                .await
        }));
    }
    let mut tokens = std::collections::HashSet::new();
    for caller in callers {
        let token = caller.await.expect("task").expect("token");
        tokens.insert(token.token.expose_secret().to_owned());
    }
    assert_eq!(tokens.len(), 1);
    assert_eq!(emulator.counters().token_requests, 1);
    assert_eq!(calls.count(), 1);
}

#[tokio::test]
async fn a_cached_read_does_not_wait_for_another_scopes_fetch() {
    let emulator = emulator().await;
    let (credential, _) = credential(&emulator);
    credential
        .get_token(&[GRAPH], TokenRequestOptions::new())
        .await
        .expect("cached");
    emulator.inject_fault(FaultRule {
        path: "/oauth2/v2.0/token".into(),
        count: 1,
        fault: Fault::Delay { millis: 2_000 },
    });
    let slow = {
        let credential = credential.clone();
        tokio::spawn(async move {
            credential
                .get_token(&[DOWNSTREAM], TokenRequestOptions::new())
                .await
        })
    };
    // Let the slow fetch reach the emulator, then read the cached scope.
    while token_requests(&emulator).len() < 2 && emulator.counters().requests < 2 {
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    credential
        .get_token(&[GRAPH], TokenRequestOptions::new())
        .await
        .expect("cached read");
    assert!(
        !slow.is_finished(),
        "the cached read finished while the other fetch was still running"
    );
    slow.await.expect("task").expect("slow token");
}

#[tokio::test]
async fn configuration_errors_are_typed() {
    let source = || async { Ok::<_, std::io::Error>("x") };
    let error = ClientAssertionCredential::new("my tenant", WORKLOAD, source).expect_err("tenant");
    assert_eq!(error, entra_identity::BuildError::InvalidTenantId);
    let source = || async { Ok::<_, std::io::Error>("x") };
    let error = ClientAssertionCredential::builder(TENANT, WORKLOAD, source)
        .authority("http://login.example")
        .build()
        .expect_err("http");
    assert!(
        error
            .to_string()
            .contains("must be a TLS protected (https) URL")
    );
    let source = || async { Ok::<_, std::io::Error>("x") };
    let env = MapEnvironment::new().with("AZURE_AUTHORITY_HOST", "http://insecure.example");
    let error = ClientAssertionCredential::builder(TENANT, WORKLOAD, source)
        .environment(Arc::new(env))
        .build()
        .expect_err("http from the environment");
    assert!(matches!(
        error,
        entra_identity::BuildError::InvalidAuthority { .. }
    ));
    let source = || async { Ok::<_, std::io::Error>("x") };
    assert!(ClientAssertionCredential::new(TENANT, "", source).is_err());
}

#[tokio::test]
async fn the_authority_comes_from_the_environment() {
    let emulator = emulator().await;
    let (source, _) = federated_source(&emulator, SUBJECT);
    let host = emulator.url().trim_start_matches("https://").to_owned();
    let credential = ClientAssertionCredential::builder(TENANT, WORKLOAD, source)
        .http_options(http(&emulator))
        .environment(Arc::new(
            MapEnvironment::new().with("AZURE_AUTHORITY_HOST", host),
        ))
        .build()
        .expect("credential");
    credential
        .get_token(&[GRAPH], TokenRequestOptions::new())
        .await
        .expect("token from the emulator");
    assert_eq!(emulator.counters().token_requests, 1);
}

#[tokio::test]
async fn extra_ca_from_ssl_cert_file() {
    let emulator = emulator().await;
    let (source, _) = federated_source(&emulator, SUBJECT);
    let ca = emulator.ca_pem_path().to_string_lossy().into_owned();
    let credential = ClientAssertionCredential::builder(TENANT, WORKLOAD, source)
        .authority(emulator.url())
        .environment(Arc::new(MapEnvironment::new().with("SSL_CERT_FILE", ca)))
        .build()
        .expect("credential");
    credential
        .get_token(&[GRAPH], TokenRequestOptions::new())
        .await
        .expect("trusted through SSL_CERT_FILE");

    // Without it the emulator's certificate is not trusted.
    let (source, _) = federated_source(&emulator, SUBJECT);
    let untrusting = ClientAssertionCredential::builder(TENANT, WORKLOAD, source)
        .authority(emulator.url())
        .environment(Arc::new(MapEnvironment::new()))
        .http_options(
            entra_identity::HttpOptions::default().retry(entra_identity::RetryPolicy::none()),
        )
        .build()
        .expect("credential");
    let error = untrusting
        .get_token(&[GRAPH], TokenRequestOptions::new())
        .await
        .expect_err("untrusted");
    assert_eq!(
        error.client_authentication().map(|e| e.kind()),
        Some(FailureKind::Transport)
    );
}

#[tokio::test]
async fn a_shared_cache_serves_the_same_application_only() {
    let emulator = emulator().await;
    let cache = entra_identity::TokenCache::default();
    let (first_builder, _) = builder(&emulator, TENANT);
    let (second_builder, second_calls) = builder(&emulator, TENANT);
    let first = first_builder
        .token_cache(cache.clone())
        .build()
        .expect("credential");
    let second = second_builder
        .token_cache(cache.clone())
        .build()
        .expect("credential");
    let token = first
        .get_token(&[GRAPH], TokenRequestOptions::new())
        .await
        .expect("token");
    let shared = second
        .get_token(&[GRAPH], TokenRequestOptions::new())
        .await
        .expect("shared");
    assert_eq!(shared.token.expose_secret(), token.token.expose_secret());
    assert_eq!(
        second_calls.count(),
        0,
        "the second credential never went to Entra ID"
    );

    // Another client ID with the same cache gets its own token (case 21 of the Python suite).
    let other_app = ClientAssertionCredential::builder(
        TENANT,
        "10000000-0000-0000-0000-00000000000f",
        || async { Ok::<_, std::io::Error>("not-a-jwt") },
    )
    .authority(emulator.url())
    .http_options(http(&emulator))
    .token_cache(cache.clone())
    .build()
    .expect("credential");
    let error = other_app
        .get_token(&[GRAPH], TokenRequestOptions::new())
        .await
        .expect_err("its own request");
    assert_eq!(error.entra().expect("entra").error_codes, [700_016]);
    assert_eq!(token_requests(&emulator).len(), 2);
}

#[tokio::test]
async fn failures_are_not_cached_and_permanent_errors_are_not_retried() {
    let emulator = emulator().await;
    let (source, calls) = federated_source(&emulator, "not-the-subject");
    let credential = ClientAssertionCredential::builder(TENANT, WORKLOAD, source)
        .authority(emulator.url())
        .http_options(http(&emulator))
        .build()
        .expect("credential");
    // Case 3 of the GetTokenMixin suite: four failing calls, four requests.
    for _ in 0..4 {
        credential
            .get_token(&[GRAPH], TokenRequestOptions::new())
            .await
            .expect_err("refused");
    }
    assert_eq!(calls.count(), 4);
    assert_eq!(token_requests(&emulator).len(), 4, "a 401 is never retried");

    // Case 17: a 403 is reported with its text, once.
    let (fresh, _) = credential_for(&emulator);
    emulator.inject_fault(FaultRule {
        path: "/oauth2/v2.0/token".into(),
        count: 1,
        fault: Fault::Status {
            status: 403,
            retry_after: None,
        },
    });
    let error = fresh
        .get_token(&[GRAPH], TokenRequestOptions::new())
        .await
        .expect_err("403");
    assert_eq!(
        error.client_authentication().and_then(|e| e.status()),
        Some(403)
    );
    assert!(
        error.to_string().contains("temporarily_unavailable"),
        "{error}"
    );
    assert_eq!(token_requests(&emulator).len(), 5);
}
