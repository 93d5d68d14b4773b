//! A token due for refresh never makes its caller wait: the refresh runs in the background,
//! a failed one keeps the valid token and waits 30 s before trying again, and an expired
//! token is never served.

#![allow(missing_docs)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use entra_emulator::{Emulator, Fault, FaultRule};
use entra_identity::{
    AccessTokenInfo, ClientAssertionCredential, ManualClock, TokenRequestOptions,
};

use common::{GRAPH, TENANT};

const TOKEN_PATH: &str = "/oauth2/v2.0/token";

/// Token requests the emulator received, those that met a fault included.
fn requests(emulator: &Emulator) -> usize {
    common::token_requests(emulator).len()
}

async fn token(credential: &ClientAssertionCredential) -> AccessTokenInfo {
    credential
        .get_token_info(&[GRAPH], TokenRequestOptions::new())
        .await
        .expect("token")
}

/// Whether two answers carry the same token (compared without printing it).
fn same(a: &AccessTokenInfo, b: &AccessTokenInfo) -> bool {
    a.token.expose_secret() == b.token.expose_secret()
}

/// Waits (up to 20 s) until `done` holds.
async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !done().await {
        assert!(started.elapsed() < Duration::from_secs(20), "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_runs_in_the_background_and_a_failed_one_keeps_the_valid_token() {
    let emulator = common::emulator().await;
    let clock = ManualClock::starting_now();
    let (builder, _) = common::builder(&emulator, TENANT);
    let credential = builder
        .clock(Arc::new(clock.clone()))
        .build()
        .expect("credential");
    let first = token(&credential).await;
    assert_eq!(requests(&emulator), 1);

    // 100 s before expiry (inside the 300 s window) while the endpoint hangs for 3 s: every
    // caller, the one that starts the refresh included, gets the valid token at once.
    clock.set(first.expires_on - 100);
    emulator.inject_fault(FaultRule {
        path: TOKEN_PATH.to_owned(),
        count: 1,
        fault: Fault::Delay { millis: 3_000 },
    });
    let started = Instant::now();
    for _ in 0..5 {
        let served = token(&credential).await;
        assert!(same(&served, &first), "the cached token was not served");
    }
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "callers waited {:?} for a refresh",
        started.elapsed()
    );
    // The refresh lands in the background, once.
    eventually("the background refresh never landed", async || {
        !same(&token(&credential).await, &first)
    })
    .await;
    assert_eq!(requests(&emulator), 2, "one refresh for all the callers");
    let second = token(&credential).await;
    assert!(second.expires_on > first.expires_on);

    // A failed refresh: the valid token stays in use, and the next attempt waits 30 s.
    clock.set(second.expires_on - 100);
    emulator.inject_fault(FaultRule {
        path: TOKEN_PATH.to_owned(),
        count: 100,
        fault: Fault::Html { status: Some(400) },
    });
    let served = token(&credential).await;
    assert!(same(&served, &second), "the cached token was not served");
    eventually("the refresh was not attempted", async || {
        requests(&emulator) > 2
    })
    .await;
    // Let the failed attempt settle (a retry policy may try more than once).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let attempted = requests(&emulator);
    for offset in [0, 10, 29] {
        clock.set(second.expires_on - 100 + offset);
        let served = token(&credential).await;
        assert!(same(&served, &second), "the cached token was not served");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(requests(&emulator), attempted, "no new attempt within 30 s");
    emulator.clear_faults();
    clock.set(second.expires_on - 100 + 30);
    let served = token(&credential).await;
    assert!(
        same(&served, &second),
        "the caller starting the retry still gets the valid token at once"
    );
    eventually("the retry after 30 s never landed", async || {
        !same(&token(&credential).await, &second)
    })
    .await;
    let third = token(&credential).await;

    // Expired, with the endpoint failing: an error, never the expired token.
    clock.set(third.expires_on);
    emulator.inject_fault(FaultRule {
        path: TOKEN_PATH.to_owned(),
        count: 100,
        fault: Fault::Html { status: Some(400) },
    });
    let outcome = credential
        .get_token(&[GRAPH], TokenRequestOptions::new())
        .await;
    assert!(outcome.is_err(), "an expired token was served");
}
