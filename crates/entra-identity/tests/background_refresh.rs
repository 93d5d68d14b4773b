//! A token due for refresh never makes its caller wait: the refresh runs in the background,
//! a failed one keeps the valid token and waits 30 s before trying again, a hanging one gives
//! up at its 30 s deadline, and an expired token is never served.

#![allow(missing_docs)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use entra_emulator::{Emulator, Fault, FaultRule};
use entra_identity::{
    AccessTokenInfo, ClientAssertionCredential, ManualClock, TokenRequestOptions,
};
use futures_util::FutureExt as _;

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

/// Collects what the tracing subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }
}

/// A request answered from the cache, without waiting: `None` if it would have waited.
fn at_once(credential: &ClientAssertionCredential) -> Option<AccessTokenInfo> {
    credential
        .get_token_info(&[GRAPH], TokenRequestOptions::new())
        .now_or_never()
        .map(|outcome| outcome.expect("token"))
}

/// Lets the other tasks and the loopback network run until `done` holds, without moving
/// tokio's paused clock (yielding never advances it; only a park with nothing to do does).
/// Bounded in rounds, not in wall time, so that a stopped process does not fail it.
async fn settle(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..1_000_000 {
        if done() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("{what}");
}

/// The background refresh has a deadline of its own: with the endpoint hanging and HTTP
/// timeouts far longer, the caller that starts the refresh gets the valid token at once, the
/// refresh gives up after 30 s (not before), and after the retry delay the next caller starts a
/// new request (a refresh still in flight would be joined instead). Tokio's clock is paused
/// once the first token is in, so the 30 s take no wall time.
#[tokio::test(flavor = "current_thread")]
async fn a_hanging_background_refresh_gives_up_at_its_deadline() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let emulator = common::emulator().await;
    let clock = ManualClock::starting_now();
    let (builder, _) = common::builder(&emulator, TENANT);
    // Only the refresh's own deadline can end a hanging request.
    let hour = Duration::from_secs(3600);
    let http = common::http(&emulator)
        .connect_timeout(hour)
        .request_timeout(hour)
        .total_timeout(hour);
    let credential = builder
        .clock(Arc::new(clock.clone()))
        .http_options(http)
        .build()
        .expect("credential");
    let first = token(&credential).await;
    // Requests as they arrive (the request log has them once answered).
    let arrived = || emulator.counters().requests;
    let before = arrived();

    tokio::time::pause();
    let paused = tokio::time::Instant::now();
    // 100 s before expiry, and the endpoint takes a week to answer the next request.
    clock.set(first.expires_on - 100);
    emulator.inject_fault(FaultRule {
        path: TOKEN_PATH.to_owned(),
        count: 1,
        fault: Fault::Delay {
            millis: 7 * 24 * 3600 * 1000,
        },
    });
    let served = at_once(&credential).expect("the caller starting the refresh waited");
    assert!(same(&served, &first), "the cached token was not served");
    settle("the refresh never reached the endpoint", || {
        emulator.counters().faults_injected == 1
    })
    .await;
    assert_eq!(arrived(), before + 1);

    tokio::time::sleep_until(paused + Duration::from_secs(29)).await;
    assert!(
        !captured.text().contains("gave up"),
        "the refresh gave up before its deadline: {}",
        captured.text()
    );
    let served = at_once(&credential).expect("a caller waited for the hanging refresh");
    assert!(same(&served, &first), "the cached token was not served");
    tokio::time::sleep_until(paused + Duration::from_secs(31)).await;
    assert!(
        captured.text().contains("gave up after 30 s"),
        "the refresh did not give up at its deadline; logged: {:?}",
        captured.text()
    );
    assert_eq!(arrived(), before + 1, "the hanging request was retried");

    // The retry delay (the credential's clock) has passed: the next caller still gets the
    // valid token at once, and starts a new request, which lands.
    clock.set(first.expires_on - 100 + 30);
    let served = at_once(&credential).expect("the caller starting the retry waited");
    assert!(same(&served, &first), "the cached token was not served");
    settle("no new refresh after the retry delay", || {
        arrived() == before + 2
    })
    .await;
    settle("the new refresh never landed", || {
        at_once(&credential).is_some_and(|token| !same(&token, &first))
    })
    .await;
    let refreshed = at_once(&credential).expect("cached");
    assert!(refreshed.expires_on > first.expires_on);
    assert_eq!(arrived(), before + 2);
    assert_eq!(
        requests(&emulator),
        2,
        "the first token and the new refresh's"
    );
}
