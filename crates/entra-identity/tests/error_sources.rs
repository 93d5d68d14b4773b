//! Every error reaches its root cause through `source()`: the reqwest and I/O errors of a
//! failed connection, the JSON error of an unreadable answer, the assertion function's own
//! error, the store's error. Messages say what failed; the chain says why, once. Against the
//! emulator over TLS wherever a server is involved.

mod common;

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use entra_emulator::{Emulator, Fault, FaultRule};
use entra_identity::{
    AccessTokenInfo, BuildError, ClientAssertionCredential, ClientAuthenticationError,
    CredentialError, CredentialUnavailableError, DistributedCache, DistributedStore, FailureKind,
    FileAssertion, HttpOptions, MapEnvironment, RetryPolicy, SSL_CERT_FILE, StoreFuture,
    TokenCredential, TokenRequestOptions,
};

/// The one call shape token requests take here.
async fn request(
    credential: &impl TokenCredential,
    scope: &str,
) -> Result<AccessTokenInfo, CredentialError> {
    credential
        .get_token_info(&[scope], TokenRequestOptions::default())
        .await
}

/// The error and its causes, outermost first.
fn chain<'a>(error: &'a (dyn Error + 'static)) -> Vec<&'a (dyn Error + 'static)> {
    std::iter::successors(Some(error), |&error| error.source()).collect()
}

/// The first error of type `T` in the chain.
fn find<'a, T: Error + 'static>(error: &'a (dyn Error + 'static)) -> Option<&'a T> {
    chain(error)
        .into_iter()
        .find_map(|error| error.downcast_ref::<T>())
}

/// The root cause, if it is a `T`.
fn root<'a, T: Error + 'static>(error: &'a (dyn Error + 'static)) -> Option<&'a T> {
    chain(error).last()?.downcast_ref::<T>()
}

/// The chain as a CLI prints it: `message: cause: cause`.
fn rendered(error: &(dyn Error + 'static)) -> String {
    chain(error)
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}

/// This crate's layers say what failed and leave why to their cause: printing the whole chain
/// never shows the same text twice in a row, and no message of ours embeds its cause's text.
fn assert_causes_told_once(error: &(dyn Error + 'static)) {
    let layers = chain(error);
    for pair in layers.windows(2) {
        let (outer, inner) = (pair[0], pair[1]);
        let (outer_text, inner_text) = (outer.to_string(), inner.to_string());
        assert_ne!(outer_text, inner_text, "repeated: {}", rendered(error));
        let ours = std::ptr::addr_eq(outer, error)
            || outer.is::<ClientAuthenticationError>()
            || outer.is::<CredentialError>()
            || outer.is::<BuildError>();
        if ours {
            assert!(
                !outer_text.contains(&inner_text),
                "'{outer_text}' embeds its cause '{inner_text}'"
            );
        }
    }
}

fn failure(error: &CredentialError) -> &ClientAuthenticationError {
    error
        .client_authentication()
        .unwrap_or_else(|| panic!("an authentication failure: {error:?}"))
}

/// An assertion function's own error, to be found again at the end of the chain.
#[derive(Debug)]
struct VaultDown {
    attempt: u32,
}

impl fmt::Display for VaultDown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the vault is down (attempt {})", self.attempt)
    }
}

impl Error for VaultDown {}

/// A credential whose assertion is never sent anywhere that checks it.
fn unchecked_credential(authority: &str, http: HttpOptions) -> ClientAssertionCredential {
    ClientAssertionCredential::builder(TENANT, WORKLOAD, || async {
        Ok::<_, std::io::Error>("unchecked-assertion")
    })
    .authority(authority)
    .http_options(http)
    .environment(Arc::new(MapEnvironment::new()))
    .build()
    .expect("credential")
}

#[test]
fn every_public_error_is_a_shareable_std_error() {
    fn shareable<E: Error + Send + Sync + 'static>() {}
    fn cloneable<E: Clone>() {}
    shareable::<CredentialError>();
    shareable::<ClientAuthenticationError>();
    shareable::<CredentialUnavailableError>();
    shareable::<BuildError>();
    shareable::<entra_identity::CertificateError>();
    cloneable::<CredentialError>();
    cloneable::<ClientAuthenticationError>();
    cloneable::<CredentialUnavailableError>();
    cloneable::<BuildError>();
}

#[tokio::test]
async fn a_refused_connection_keeps_the_reqwest_and_io_errors() {
    // A loopback port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let credential = unchecked_credential(
        &format!("https://127.0.0.1:{port}"),
        HttpOptions::default().retry(RetryPolicy::none()),
    );
    let error = request(&credential, GRAPH).await.expect_err("refused");
    assert_eq!(failure(&error).kind(), FailureKind::Transport);
    assert!(error.is_transient());
    let transport = find::<reqwest::Error>(&error).expect("the reqwest error");
    assert!(transport.is_connect(), "{transport:?}");
    let io = root::<std::io::Error>(&error).expect("the I/O error");
    assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused);
    assert!(!error.to_string().contains("refused"), "{error}");
    assert_causes_told_once(&error);
}

#[tokio::test]
async fn a_timeout_keeps_the_reqwest_error() {
    let emulator = emulator().await;
    emulator.inject_fault(FaultRule {
        path: "/oauth2/v2.0/token".into(),
        count: 1,
        fault: Fault::Delay { millis: 5_000 },
    });
    let credential = unchecked_credential(
        emulator.url(),
        HttpOptions::default()
            .trust_pem(emulator.ca_pem())
            .request_timeout(Duration::from_millis(300))
            .retry(RetryPolicy::none()),
    );
    let error = request(&credential, GRAPH).await.expect_err("too slow");
    assert_eq!(failure(&error).kind(), FailureKind::Timeout);
    assert!(error.is_transient());
    let transport = find::<reqwest::Error>(&error).expect("the reqwest error");
    assert!(transport.is_timeout(), "{transport:?}");
    assert_causes_told_once(&error);
}

#[tokio::test]
async fn an_untrusted_server_certificate_shows_in_the_chain() {
    let emulator = emulator().await;
    // The emulator's CA is not trusted.
    let credential = unchecked_credential(
        emulator.url(),
        HttpOptions::default().retry(RetryPolicy::none()),
    );
    let error = request(&credential, GRAPH).await.expect_err("untrusted");
    assert_eq!(failure(&error).kind(), FailureKind::Transport);
    assert!(find::<reqwest::Error>(&error).is_some_and(reqwest::Error::is_connect));
    let whole = rendered(&error);
    assert!(whole.to_lowercase().contains("certificate"), "{whole}");
    // The message says what failed and how to trust a CA, not the cause's text again.
    let message = error.to_string();
    assert!(message.contains("trust_pem"), "{message}");
    assert!(!message.contains("UnknownIssuer"), "{message}");
    assert!(!message.contains("invalid peer certificate"), "{message}");
    assert_causes_told_once(&error);
    assert!(emulator.requests().is_empty(), "no request got through");
}

#[tokio::test]
async fn an_unparseable_answer_keeps_the_json_error() {
    let emulator = emulator().await;
    let (credential, _) = credential(&emulator);
    for fault in [Fault::Garbage, Fault::Html { status: Some(400) }] {
        emulator.inject_fault(FaultRule {
            path: "/oauth2/v2.0/token".into(),
            count: 1,
            fault: fault.clone(),
        });
        let error = request(&credential, GRAPH).await.expect_err("garbage");
        assert_eq!(failure(&error).kind(), FailureKind::InvalidResponse);
        assert!(!error.is_transient(), "{fault:?}");
        assert!(
            find::<serde_json::Error>(&error).is_some(),
            "{fault:?}: {}",
            rendered(&error)
        );
        assert!(!error.to_string().contains("garbage"), "{error}");
        assert_causes_told_once(&error);
    }
}

#[tokio::test]
async fn an_entra_error_body_is_the_root_cause_itself() {
    let emulator = emulator().await;
    let (source, _) = federated_source(&emulator, "someone-else");
    let credential = ClientAssertionCredential::builder(TENANT, WORKLOAD, source)
        .authority(emulator.url())
        .http_options(http(&emulator))
        .environment(Arc::new(MapEnvironment::new()))
        .build()
        .expect("credential");
    let error = request(&credential, GRAPH).await.expect_err("refused");
    let entra = error.entra().expect("Entra's fields");
    assert_eq!(entra.error_codes, [700_213]);
    assert_eq!(failure(&error).kind(), FailureKind::Service);
    assert!(error.source().is_none(), "{:?}", error.source());
    assert!(
        error
            .to_string()
            .starts_with("Microsoft Entra ID error '(invalid_client) AADSTS700213")
    );
}

#[tokio::test]
async fn a_client_assertion_functions_error_is_the_root_cause() {
    let credential = ClientAssertionCredential::builder(TENANT, WORKLOAD, || async {
        Err::<String, _>(VaultDown { attempt: 7 })
    })
    .authority("https://127.0.0.1:9")
    .environment(Arc::new(MapEnvironment::new()))
    .build()
    .expect("credential");
    let error = request(&credential, GRAPH).await.expect_err("no assertion");
    assert_eq!(failure(&error).kind(), FailureKind::ClientAssertion);
    assert_eq!(
        root::<VaultDown>(&error)
            .expect("the function's error")
            .attempt,
        7
    );
    assert!(!error.to_string().contains("vault"), "{error}");
    assert_causes_told_once(&error);
}

#[tokio::test]
async fn an_on_behalf_of_assertion_functions_error_is_the_root_cause() {
    let emulator = emulator().await;
    register_middle_tier(&emulator);
    let credential = obo_builder(&emulator, &user_assertion(&emulator, 3600))
        .client_assertion_func(|| async { Err::<String, _>(VaultDown { attempt: 3 }) })
        .build()
        .expect("credential");
    let error = request(&credential, DOWNSTREAM_SCOPE)
        .await
        .expect_err("no assertion");
    assert_eq!(failure(&error).kind(), FailureKind::ClientAssertion);
    assert_eq!(
        root::<VaultDown>(&error)
            .expect("the function's error")
            .attempt,
        3
    );
    assert!(!error.to_string().contains("vault"), "{error}");
    assert_causes_told_once(&error);
    assert!(token_requests(&emulator).is_empty());
}

#[tokio::test]
async fn a_missing_assertion_file_is_an_io_not_found() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("missing-token");
    let credential =
        ClientAssertionCredential::builder(TENANT, WORKLOAD, FileAssertion::new(&path))
            .authority("https://127.0.0.1:9")
            .environment(Arc::new(MapEnvironment::new()))
            .build()
            .expect("credential");
    let error = request(&credential, GRAPH).await.expect_err("no file");
    assert_eq!(failure(&error).kind(), FailureKind::ClientAssertion);
    let io = root::<std::io::Error>(&error).expect("the I/O error");
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    assert!(
        rendered(&error).contains("missing-token"),
        "{}",
        rendered(&error)
    );
    assert_causes_told_once(&error);
}

#[test]
fn a_missing_ssl_cert_file_is_an_io_not_found() {
    let environment = MapEnvironment::new().with(SSL_CERT_FILE, "/nonexistent/extra-ca.pem");
    let error = ClientAssertionCredential::builder(TENANT, WORKLOAD, || async {
        Ok::<_, std::io::Error>("assertion")
    })
    .environment(Arc::new(environment))
    .build()
    .expect_err("no CA file");
    assert!(
        matches!(error, BuildError::InvalidCertificateAuthority { .. }),
        "{error:?}"
    );
    let io = root::<std::io::Error>(&error).expect("the I/O error");
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    assert!(
        error.to_string().contains("/nonexistent/extra-ca.pem"),
        "{error}"
    );
    assert_causes_told_once(&error);
}

#[test]
fn an_unreadable_extra_ca_keeps_the_pem_error() {
    let broken = "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n";
    let error = ClientAssertionCredential::builder(TENANT, WORKLOAD, || async {
        Ok::<_, std::io::Error>("assertion")
    })
    .http_options(HttpOptions::default().trust_pem(broken))
    .environment(Arc::new(MapEnvironment::new()))
    .build()
    .expect_err("broken CA");
    assert!(
        matches!(error, BuildError::InvalidCertificateAuthority { .. }),
        "{error:?}"
    );
    assert!(error.source().is_some(), "{error:?}");
    assert_causes_told_once(&error);
}

#[tokio::test]
async fn a_wrong_certificate_password_is_the_cause_of_an_invalid_certificate() {
    let emulator = emulator().await;
    let certificate = register_middle_tier(&emulator);
    let pfx = std::fs::read(certificate.pkcs12_path.as_ref().expect("PKCS#12")).expect("pfx");
    let error = obo_builder(&emulator, &user_assertion(&emulator, 3600))
        .client_certificate(pfx)
        .password("not-the-password")
        .build()
        .expect_err("wrong password");
    assert_eq!(
        error,
        BuildError::InvalidCertificate(entra_identity::CertificateError::WrongPassword)
    );
    assert_eq!(
        root::<entra_identity::CertificateError>(&error),
        Some(&entra_identity::CertificateError::WrongPassword)
    );
    assert_causes_told_once(&error);
}

/// A distributed store that is down.
struct DownStore;

#[derive(Debug)]
struct StoreDown;

impl fmt::Display for StoreDown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the store is down")
    }
}

impl Error for StoreDown {}

impl DistributedStore for DownStore {
    fn get<'a>(&'a self, _key: &'a str) -> StoreFuture<'a, Option<Vec<u8>>> {
        Box::pin(async { Err(StoreDown.into()) })
    }

    fn set<'a>(&'a self, _key: &'a str, _value: Vec<u8>, _ttl: Duration) -> StoreFuture<'a, ()> {
        Box::pin(async { Err(StoreDown.into()) })
    }
}

#[tokio::test]
async fn an_unavailable_distributed_cache_keeps_the_stores_error() {
    let emulator = emulator().await;
    let (builder, _) = builder(&emulator, TENANT);
    let credential = builder
        .distributed_cache(
            DistributedCache::new(DownStore, "k1", [7; 32]).fail_when_unavailable(true),
        )
        .build()
        .expect("credential");
    let error = request(&credential, GRAPH).await.expect_err("store down");
    assert!(error.is_transient());
    assert!(root::<StoreDown>(&error).is_some(), "{}", rendered(&error));
    assert!(!error.to_string().contains("store is down"), "{error}");
    assert_causes_told_once(&error);
}

/// The Secret Service is connected at the first token request (never in `build()`), so a bus
/// socket that is not there fails that request, keeping the socket's error.
#[cfg(all(target_os = "linux", feature = "secret-service"))]
#[tokio::test]
async fn a_secret_service_that_is_not_there_keeps_the_bus_error() {
    let dir = tempfile::tempdir().expect("dir");
    let environment = MapEnvironment::new()
        .with("HOME", dir.path().to_string_lossy())
        .with(
            "DBUS_SESSION_BUS_ADDRESS",
            format!("unix:path={}", dir.path().join("no-bus").display()),
        );
    let credential = ClientAssertionCredential::builder(TENANT, WORKLOAD, || async {
        Ok::<_, std::io::Error>("assertion")
    })
    .environment(Arc::new(environment))
    .cache_persistence_options(
        entra_identity::TokenCachePersistenceOptions::new().name("error-sources"),
    )
    .build()
    .expect("build() does not connect to D-Bus");
    let error = credential
        .get_token(
            &["https://graph.microsoft.com/.default"],
            TokenRequestOptions::default(),
        )
        .await
        .expect_err("no Secret Service");
    assert!(
        matches!(error, CredentialError::CredentialUnavailable(_)),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("allow_unencrypted_storage"),
        "{error}"
    );
    // zbus hands out its I/O errors in an `Arc`.
    let io = root::<std::io::Error>(&error)
        .or_else(|| root::<Arc<std::io::Error>>(&error).map(|io| &**io))
        .expect("the socket's I/O error");
    assert_eq!(
        io.kind(),
        std::io::ErrorKind::NotFound,
        "{}",
        rendered(&error)
    );
    assert_causes_told_once(&error);
}

/// An on-behalf-of credential whose instance discovery meets `fault` every time.
async fn discovery_failure(
    emulator: &Emulator,
    fault: Fault,
    http: HttpOptions,
) -> CredentialError {
    emulator.clear_faults();
    emulator.inject_fault(FaultRule {
        path: "/discovery/instance".into(),
        count: 100,
        fault,
    });
    let credential = obo_builder(emulator, &user_assertion(emulator, 3600))
        .client_secret(MIDDLE_TIER_SECRET)
        .http_options(http)
        .build()
        .expect("credential");
    let error = request(&credential, DOWNSTREAM_SCOPE)
        .await
        .expect_err("discovery fails");
    emulator.clear_faults();
    assert_eq!(
        failure(&error).kind(),
        FailureKind::InstanceDiscovery,
        "{error:?}"
    );
    assert!(token_requests(emulator).is_empty());
    assert_causes_told_once(&error);
    error
}

#[tokio::test]
async fn instance_discovery_failures_are_transient_when_retrying_can_help() {
    let emulator = emulator().await;
    register_middle_tier(&emulator);
    let quick = || {
        HttpOptions::default()
            .trust_pem(emulator.ca_pem())
            .retry(RetryPolicy::none())
    };
    for status in [408, 429, 500, 502, 503, 504] {
        let fault = Fault::Status {
            status,
            retry_after: None,
        };
        let error = discovery_failure(&emulator, fault, quick()).await;
        assert!(error.is_transient(), "HTTP {status}: {error:?}");
        assert_eq!(failure(&error).status(), Some(status));
    }
    // Retried, and still failing.
    let error = discovery_failure(
        &emulator,
        Fault::Status {
            status: 503,
            retry_after: Some(0),
        },
        http(&emulator),
    )
    .await;
    assert!(error.is_transient(), "{error:?}");

    let error = discovery_failure(&emulator, Fault::Drop, quick()).await;
    assert!(error.is_transient(), "{error:?}");
    let cause = find::<ClientAuthenticationError>(error.source().expect("a cause"))
        .expect("the request's failure");
    assert_eq!(cause.kind(), FailureKind::Transport);
    assert!(
        find::<reqwest::Error>(&error).is_some(),
        "{}",
        rendered(&error)
    );

    let slow = quick().request_timeout(Duration::from_millis(300));
    let error = discovery_failure(&emulator, Fault::Delay { millis: 5_000 }, slow).await;
    assert!(error.is_transient(), "{error:?}");
    assert!(find::<reqwest::Error>(&error).is_some_and(reqwest::Error::is_timeout));

    for status in [400, 403, 404] {
        let fault = Fault::Status {
            status,
            retry_after: None,
        };
        let error = discovery_failure(&emulator, fault, quick()).await;
        assert!(!error.is_transient(), "HTTP {status}: {error:?}");
    }
    let error = discovery_failure(&emulator, Fault::Garbage, quick()).await;
    assert!(!error.is_transient(), "{error:?}");
    assert!(
        find::<serde_json::Error>(&error).is_some(),
        "{}",
        rendered(&error)
    );
}

#[tokio::test]
async fn an_unknown_authority_is_not_transient() {
    let emulator = emulator().await;
    register_middle_tier(&emulator);
    let credential = entra_identity::OnBehalfOfCredential::builder(
        TENANT,
        MIDDLE_TIER,
        user_assertion(&emulator, 3600),
    )
    .client_secret(MIDDLE_TIER_SECRET)
    .authority("login.unknown-cloud.example")
    .instance_discovery_host(emulator.url())
    .http_options(http(&emulator))
    .environment(Arc::new(MapEnvironment::new()))
    .build()
    .expect("credential");
    let error = request(&credential, DOWNSTREAM_SCOPE)
        .await
        .expect_err("invalid instance");
    assert_eq!(failure(&error).kind(), FailureKind::InstanceDiscovery);
    assert!(!error.is_transient(), "{error:?}");
    assert!(error.to_string().contains("disable_instance_discovery"));
}
