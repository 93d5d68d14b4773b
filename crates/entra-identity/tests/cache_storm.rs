//! The storm a middle tier meets: more active users than its token cache holds, each sending
//! several requests at once. Every round must cost at most one token request per user (one per
//! user not still cached: single-flight holds whatever eviction does), the cache must stay
//! within its limits, and once the storm is over a user's repeated call must be a hit.

#![allow(missing_docs)]

mod common;

use std::sync::Arc;

use entra_emulator::{ApplicationConfig, Emulator, EmulatorConfig, TenantConfig, UserConfig};
use entra_identity::{MapEnvironment, OnBehalfOfApplication, TokenCache, TokenRequestOptions};

use common::TENANT;

const API: &str = "10000000-0000-0000-0000-000000000001";
const SECRET: &str = "middle-tier-secret";
const SCOPE: &str = "api://downstream/Data.Read";
const USERS: usize = 200;
const CONCURRENT: usize = 5;
const ROUNDS: usize = 4;
const CAPACITY: usize = 50;
const MAX_BYTES: usize = 2 * 1024 * 1024;

fn user_oid(index: usize) -> String {
    format!("20000000-0000-0000-0000-{index:012}")
}

fn config() -> EmulatorConfig {
    let api = |client_id: &str, name: &str| ApplicationConfig {
        name: name.to_owned(),
        client_id: Some(client_id.to_owned()),
        ..ApplicationConfig::default()
    };
    EmulatorConfig {
        tenants: vec![TenantConfig {
            id: Some(TENANT.to_owned()),
            applications: vec![
                ApplicationConfig {
                    secrets: vec![SECRET.to_owned()],
                    ..api(API, "middle-tier")
                },
                ApplicationConfig {
                    app_id_uri: Some("api://downstream".to_owned()),
                    ..api("10000000-0000-0000-0000-000000000005", "downstream")
                },
            ],
            users: (0..USERS)
                .map(|index| UserConfig {
                    object_id: Some(user_oid(index)),
                    upn: format!("user{index}@fabrikam.onmicrosoft.com"),
                    name: None,
                })
                .collect(),
            ..TenantConfig::default()
        }],
        ..EmulatorConfig::default()
    }
}

fn user_assertion(emulator: &Emulator, user: usize) -> String {
    emulator
        .mint_user_token(&entra_emulator::UserTokenRequest {
            user: user_oid(user),
            audience: API.to_owned(),
            expires_in_secs: Some(3600),
            ..entra_emulator::UserTokenRequest::default()
        })
        .expect("user token")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_more_users_than_the_cache_holds_costs_one_request_per_missing_user() {
    let emulator = Emulator::builder()
        .config(config())
        .start()
        .await
        .expect("emulator");
    let cache = TokenCache::with_limits(CAPACITY, MAX_BYTES);
    let application = OnBehalfOfApplication::builder(TENANT, API)
        .client_secret(SECRET)
        .authority(emulator.url())
        .instance_discovery_host(emulator.url())
        .http_options(common::http(&emulator))
        .environment(Arc::new(MapEnvironment::new()))
        .token_cache(cache.clone())
        .build()
        .expect("application");
    let assertions: Vec<String> = (0..USERS)
        .map(|user| user_assertion(&emulator, user))
        .collect();

    let mut previous: Vec<Option<String>> = vec![None; USERS];
    for round in 0..ROUNDS {
        let before = emulator.counters().token_requests;
        let users: Vec<_> = assertions
            .iter()
            .enumerate()
            .map(|(user, assertion)| {
                let application = application.clone();
                let assertion = assertion.clone();
                tokio::spawn(async move {
                    // The user's requests arrive together: each has its own credential, as a
                    // middle tier builds one per incoming request.
                    let requests = (0..CONCURRENT).map(|_| {
                        let credential = application
                            .credential_for(assertion.as_str())
                            .expect("credential");
                        async move {
                            credential
                                .get_token(&[SCOPE], TokenRequestOptions::new())
                                .await
                                .expect("token")
                        }
                    });
                    let tokens = futures_util::future::join_all(requests).await;
                    for token in &tokens {
                        let oid = common::claims(token.token.expose_secret())["oid"].clone();
                        assert_eq!(oid, user_oid(user), "a user got another user's token");
                    }
                    // Every exchange mints a token of its own: one token for all of the
                    // user's requests means one request (or none: a cache hit).
                    let first = tokens[0].token.expose_secret();
                    assert!(
                        tokens
                            .iter()
                            .all(|token| token.token.expose_secret() == first),
                        "user {user}: more than one token request for concurrent callers"
                    );
                    first.to_owned()
                })
            })
            .collect();
        let mut hits = 0;
        for (user, task) in users.into_iter().enumerate() {
            let token = task.await.expect("user task");
            if previous[user].as_deref() == Some(token.as_str()) {
                hits += 1;
            }
            previous[user] = Some(token);
        }
        let requests = emulator.counters().token_requests - before;
        // Only users still cached from the round before are served without a request.
        assert!(hits <= CAPACITY, "round {round}: {hits} users were hits");
        assert_eq!(
            requests,
            (USERS - hits) as u64,
            "round {round}: one token request per user not cached"
        );
        assert!(
            cache.bytes() <= cache.max_bytes(),
            "round {round}: {} bytes counted, limit {}",
            cache.bytes(),
            cache.max_bytes()
        );
        assert!(
            cache.len() <= cache.capacity(),
            "round {round}: {} entries, capacity {}",
            cache.len(),
            cache.capacity()
        );
    }

    // After the storm the cache still caches: a user's second call in a row is a hit.
    let credential = application
        .credential_for(assertions[7].as_str())
        .expect("credential");
    credential
        .get_token(&[SCOPE], TokenRequestOptions::new())
        .await
        .expect("first call");
    let before = emulator.counters().token_requests;
    credential
        .get_token(&[SCOPE], TokenRequestOptions::new())
        .await
        .expect("second call");
    let fresh = application
        .credential_for(assertions[7].as_str())
        .expect("credential");
    fresh
        .get_token(&[SCOPE], TokenRequestOptions::new())
        .await
        .expect("third call, another credential");
    assert_eq!(
        emulator.counters().token_requests,
        before,
        "the second and third calls were hits"
    );
    assert!(!cache.is_empty());
}
