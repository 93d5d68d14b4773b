//! HTTP that belongs to the user: credentials work on any tokio runtime, whichever runtime
//! first used their connection pool, and users can hand in a `reqwest::Client` of their own.
//! Against the emulator over TLS.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use entra_emulator::{Emulator, Fault, FaultRule, UserConfig, UserTokenRequest};
use entra_identity::{
    BuildError, ClientAssertionCredential, FailureKind, HttpOptions, MapEnvironment,
    OnBehalfOfApplication, RetryPolicy, SSL_CERT_FILE, TokenCache, TokenRequestOptions,
};
use tokio::runtime::Runtime;

/// A request on a connection whose runtime is not running would wait this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// Far more than a token request takes, far less than [`REQUEST_TIMEOUT`].
const PROMPTLY: Duration = Duration::from_millis(2_000);
/// A third resource the emulator knows.
const VAULT: &str = "https://vault.azure.net/.default";

/// The emulator, served from a runtime of its own that keeps running throughout.
struct Server {
    emulator: Emulator,
    _runtime: Runtime,
}

fn server() -> Server {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("server runtime");
    let emulator = runtime.block_on(emulator());
    Server {
        emulator,
        _runtime: runtime,
    }
}

/// A `current_thread` runtime: between `block_on` calls nothing drives it, so a connection
/// it owns goes nowhere.
fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Options that trust the emulator, fail fast and never retry.
fn fail_fast(emulator: &Emulator) -> HttpOptions {
    HttpOptions::default()
        .trust_pem(emulator.ca_pem())
        .request_timeout(REQUEST_TIMEOUT)
        .retry(RetryPolicy::none())
}

fn credential_with(emulator: &Emulator, cache: &TokenCache) -> ClientAssertionCredential {
    let (builder, _) = builder(emulator, TENANT);
    builder
        .http_options(fail_fast(emulator))
        .token_cache(cache.clone())
        .build()
        .expect("credential")
}

/// Runs a token request for `scope` on `runtime`, and says how long it took.
fn timed<T, E: std::fmt::Display>(
    runtime: &Runtime,
    scope: &str,
    request: impl Future<Output = Result<T, E>>,
) -> Duration {
    let started = Instant::now();
    let outcome = runtime.block_on(request);
    let elapsed = started.elapsed();
    if let Err(error) = outcome {
        panic!("no token for {scope} after {elapsed:?}: {error}");
    }
    elapsed
}

/// Gets a token for `scope` on `runtime`, and says how long that took.
fn token_on(runtime: &Runtime, credential: &ClientAssertionCredential, scope: &str) -> Duration {
    timed(
        runtime,
        scope,
        credential.get_token_info(&[scope], TokenRequestOptions::default()),
    )
}

#[test]
fn a_pool_first_used_on_an_idle_runtime_serves_another_runtime_promptly() {
    let server = server();
    let cache = TokenCache::default();
    let first = credential_with(&server.emulator, &cache);
    let second = credential_with(&server.emulator, &cache);

    let a = runtime();
    token_on(&a, &first, GRAPH);
    // `a` stays alive, idle: its connection to the emulator sits in the shared pool.
    let b = runtime();
    let elapsed = token_on(&b, &second, DOWNSTREAM);
    assert!(elapsed < PROMPTLY, "runtime b waited {elapsed:?}");
    assert_eq!(server.emulator.counters().token_requests, 2);
    drop(a);
}

#[test]
fn one_credential_serves_two_runtimes() {
    let server = server();
    let credential = credential_with(&server.emulator, &TokenCache::default());

    let a = runtime();
    token_on(&a, &credential, GRAPH);
    let b = runtime();
    let elapsed = token_on(&b, &credential, DOWNSTREAM);
    assert!(elapsed < PROMPTLY, "runtime b waited {elapsed:?}");
    // And back: `a` is driven again and its own connection still works.
    let elapsed = token_on(&a, &credential, VAULT);
    assert!(elapsed < PROMPTLY, "runtime a waited {elapsed:?}");
}

#[test]
fn a_pool_outlives_the_runtime_that_first_used_it() {
    let server = server();
    let credential = credential_with(&server.emulator, &TokenCache::default());

    let a = runtime();
    token_on(&a, &credential, GRAPH);
    drop(a);
    let b = runtime();
    let elapsed = token_on(&b, &credential, DOWNSTREAM);
    assert!(elapsed < PROMPTLY, "runtime b waited {elapsed:?}");
}

#[test]
fn a_credential_serves_a_multi_thread_runtime_after_a_current_thread_one() {
    let server = server();
    let credential = credential_with(&server.emulator, &TokenCache::default());

    let a = runtime();
    token_on(&a, &credential, GRAPH);
    let b = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let elapsed = token_on(&b, &credential, DOWNSTREAM);
    assert!(elapsed < PROMPTLY, "runtime b waited {elapsed:?}");
}

#[test]
fn the_credentials_of_one_on_behalf_of_application_serve_any_runtime() {
    let server = server();
    let emulator = &server.emulator;
    let users: Vec<String> = (0..2)
        .map(|index| {
            let user = emulator
                .register_user(
                    TENANT,
                    &UserConfig {
                        object_id: None,
                        upn: format!("user{index}@{DOMAIN}"),
                        name: None,
                    },
                )
                .expect("user");
            emulator
                .mint_user_token(&UserTokenRequest {
                    user: user.object_id,
                    audience: WORKLOAD.to_owned(),
                    ..UserTokenRequest::default()
                })
                .expect("user token")
        })
        .collect();
    let (source, _) = federated_source(emulator, SUBJECT);
    let application = OnBehalfOfApplication::builder(TENANT, WORKLOAD)
        .client_assertion_func(source)
        .authority(emulator.url())
        .instance_discovery_host(emulator.url())
        .http_options(fail_fast(emulator))
        .environment(Arc::new(MapEnvironment::new()))
        .build()
        .expect("application");

    let a = runtime();
    let first = application
        .credential_for(users[0].as_str())
        .expect("credential");
    timed(
        &a,
        DOWNSTREAM,
        first.get_token_info(&[DOWNSTREAM], TokenRequestOptions::default()),
    );
    // `a` stays alive, idle, holding the application's connection.
    let b = runtime();
    let second = application
        .credential_for(users[1].as_str())
        .expect("credential");
    let elapsed = timed(
        &b,
        DOWNSTREAM,
        second.get_token_info(&[DOWNSTREAM], TokenRequestOptions::default()),
    );
    assert!(elapsed < PROMPTLY, "runtime b waited {elapsed:?}");
}

/// A `reqwest` client that trusts the emulator and marks its requests.
fn users_client(emulator: &Emulator) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-test-client", "the user's".parse().expect("header"));
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .tls_certs_merge([
            reqwest::Certificate::from_pem(emulator.ca_pem().as_bytes()).expect("emulator CA")
        ])
        .default_headers(headers)
        .build()
        .expect("client")
}

/// A credential whose own options trust nothing but the system's CAs, which do not include the
/// emulator's.
fn untrusting(
    emulator: &Emulator,
    options: HttpOptions,
) -> entra_identity::ClientAssertionCredentialBuilder {
    let (source, _) = federated_source(emulator, SUBJECT);
    ClientAssertionCredential::builder(TENANT, WORKLOAD, source)
        .authority(emulator.url())
        .environment(Arc::new(MapEnvironment::new()))
        .http_options(options)
}

#[tokio::test]
async fn a_users_client_sends_the_requests() {
    let emulator = emulator().await;
    let options = HttpOptions::default().retry(RetryPolicy::none());
    let own = untrusting(&emulator, options.clone())
        .build()
        .expect("credential");
    let error = own
        .get_token_info(&[GRAPH], TokenRequestOptions::default())
        .await
        .expect_err("the emulator's CA is not trusted");
    assert_eq!(
        error.client_authentication().map(|error| error.kind()),
        Some(FailureKind::Transport)
    );

    let credential = untrusting(&emulator, options)
        .http_client(users_client(&emulator))
        .build()
        .expect("credential");
    credential
        .get_token_info(&[GRAPH], TokenRequestOptions::default())
        .await
        .expect("trusted by the user's client");
    let request = token_requests(&emulator).pop().expect("a token request");
    assert_eq!(
        request.headers.get("x-test-client").map(String::as_str),
        Some("the user's")
    );
    assert_eq!(
        request.headers.get("x-client-sku").map(String::as_str),
        Some("entra-identity-rust")
    );
}

#[tokio::test]
async fn the_request_timeout_and_retries_apply_to_a_users_client() {
    let emulator = emulator().await;
    let credential = untrusting(
        &emulator,
        HttpOptions::default()
            .request_timeout(Duration::from_millis(300))
            .retry(
                RetryPolicy::default()
                    .max_retries(1)
                    .initial_delay(Duration::from_millis(10)),
            ),
    )
    .http_client(users_client(&emulator))
    .build()
    .expect("credential");

    // A 503 is retried once.
    emulator.inject_fault(FaultRule {
        path: "/oauth2/v2.0/token".to_owned(),
        count: 1,
        fault: Fault::Status {
            status: 503,
            retry_after: None,
        },
    });
    credential
        .get_token_info(&[GRAPH], TokenRequestOptions::default())
        .await
        .expect("token after one retry");
    let counters = emulator.counters();
    assert_eq!((counters.faults_injected, counters.tokens_issued), (1, 1));

    // The user's client has no timeout; the options' timeout ends each attempt.
    emulator.inject_fault(FaultRule {
        path: "/oauth2/v2.0/token".to_owned(),
        count: 2,
        fault: Fault::Delay { millis: 3_000 },
    });
    let started = Instant::now();
    let error = credential
        .get_token_info(&[DOWNSTREAM], TokenRequestOptions::default())
        .await
        .expect_err("timed out");
    let elapsed = started.elapsed();
    assert_eq!(
        error.client_authentication().map(|error| error.kind()),
        Some(FailureKind::Timeout)
    );
    assert!(elapsed < Duration::from_millis(1_500), "{elapsed:?}");
}

/// Writes the emulator's CA to a file of its own, which the test can then spoil.
fn ca_file(emulator: &Emulator) -> (tempfile::TempDir, std::path::PathBuf) {
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = directory.path().join("ca.pem");
    std::fs::write(&path, emulator.ca_pem()).expect("write");
    (directory, path)
}

#[tokio::test]
async fn credentials_of_one_cache_share_a_pool_and_read_ssl_cert_file_once() {
    let emulator = emulator().await;
    let (_directory, path) = ca_file(&emulator);
    let environment = Arc::new(MapEnvironment::new().with(SSL_CERT_FILE, path.to_string_lossy()));
    let cache = TokenCache::default();
    let options = HttpOptions::default().retry(RetryPolicy::none());
    let build = |options: HttpOptions, cache: &TokenCache| {
        untrusting(&emulator, options)
            .environment(environment.clone())
            .token_cache(cache.clone())
            .build()
    };
    let first = build(options.clone(), &cache).expect("credential");

    // Spoiled, the file would fail any credential that reads it.
    std::fs::write(&path, "not a certificate").expect("write");
    let second = build(options.clone(), &cache).expect("the shared pool, the file not read again");
    for (credential, scope) in [(&first, GRAPH), (&second, DOWNSTREAM)] {
        credential
            .get_token_info(&[scope], TokenRequestOptions::default())
            .await
            .expect("trusted through the file as it was");
    }
    for (what, outcome) in [
        (
            "a dedicated pool",
            build(options.clone().dedicated_pool(), &cache),
        ),
        (
            "a cache of its own",
            build(options.clone(), &TokenCache::default()),
        ),
        (
            "other options",
            build(options.request_timeout(Duration::from_secs(5)), &cache),
        ),
    ] {
        assert!(
            matches!(outcome, Err(BuildError::InvalidCertificateAuthority { .. })),
            "{what} reads the file: {outcome:?}"
        );
    }
}

#[test]
fn an_ssl_cert_file_over_the_size_cap_fails_the_build_quickly() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let large = directory.path().join("large.pem");
    std::fs::write(&large, vec![b'A'; 4 * 1024 * 1024 + 1]).expect("write");
    let mut paths = vec![large.to_string_lossy().into_owned()];
    // Endless: read in full, it would never end.
    if cfg!(unix) {
        paths.push("/dev/zero".to_owned());
    }
    for path in paths {
        let source = || async { Ok::<_, std::io::Error>("never asked for".to_owned()) };
        let started = Instant::now();
        let outcome = ClientAssertionCredential::builder(TENANT, WORKLOAD, source)
            .environment(Arc::new(
                MapEnvironment::new().with(SSL_CERT_FILE, path.clone()),
            ))
            .build();
        let elapsed = started.elapsed();
        match outcome {
            Err(BuildError::InvalidCertificateAuthority { origin, reason, .. }) => {
                assert_eq!(origin, format!("{SSL_CERT_FILE}={path}"));
                assert!(reason.contains("larger than 4194304 bytes"), "{reason}");
            }
            other => panic!("{path}: {other:?}"),
        }
        assert!(elapsed < Duration::from_secs(2), "{path}: {elapsed:?}");
    }
}
