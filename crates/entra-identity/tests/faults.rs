//! Every fault bounded, every bad input a typed error (issue 12): throttling beyond the time
//! budget, untrusted servers and unknown hosts, responses that are not tokens, tenants and
//! authorities that are not what they seem, key-derivation bombs and oversized inputs.
//! Against the emulator over TLS.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use common::*;
use entra_emulator::{Emulator, Fault, FaultRule};
use entra_identity::{
    BuildError, CertificateError, ClientAssertionCredential, CredentialError, FailureKind,
    FileAssertion, HttpOptions, MapEnvironment, RetryPolicy, TokenRequestOptions,
};

fn inject(emulator: &Emulator, fault: Fault) {
    emulator.inject_fault(FaultRule {
        path: "/oauth2/v2.0/token".to_owned(),
        count: 1,
        fault,
    });
}

fn tenant(tenant: &str) -> TokenRequestOptions<'_> {
    TokenRequestOptions::new().tenant_id(tenant)
}

/// A `Retry-After` of a day: the request fails at once, after one attempt, as transient
/// throttling that carries the server's wish.
#[tokio::test]
async fn a_retry_after_beyond_the_budget_fails_at_once_as_throttling() {
    let emulator = emulator().await;
    let (credential, _) = credential(&emulator);
    inject(
        &emulator,
        Fault::Status {
            status: 429,
            retry_after: Some(100_000),
        },
    );
    let outcome = tokio::time::timeout(
        Duration::from_secs(20),
        credential.get_token_info(&[GRAPH], TokenRequestOptions::default()),
    )
    .await
    .expect("returned within the budget");
    let error = outcome.expect_err("throttled");
    let auth = error.client_authentication().expect("authentication error");
    assert_eq!(auth.status(), Some(429));
    assert_eq!(auth.kind(), FailureKind::Throttled);
    assert_eq!(error.retry_after(), Some(Duration::from_secs(100_000)));
    assert!(error.is_transient());
    assert_eq!(token_requests(&emulator).len(), 1, "one attempt");
}

/// A hung endpoint costs no more than the budget, whatever the per-attempt timeout.
#[tokio::test]
async fn a_hung_endpoint_fails_within_the_budget() {
    let emulator = emulator().await;
    let (builder, _) = builder(&emulator, TENANT);
    let budget = Duration::from_secs(2);
    let credential = builder
        .http_options(http(&emulator).total_timeout(budget))
        .build()
        .expect("credential");
    emulator.inject_fault(FaultRule {
        path: "/oauth2/v2.0/token".to_owned(),
        count: 10,
        fault: Fault::Delay { millis: 120_000 },
    });
    let started = std::time::Instant::now();
    let error = credential
        .get_token_info(&[GRAPH], TokenRequestOptions::default())
        .await
        .expect_err("out of time");
    let elapsed = started.elapsed();
    assert_eq!(
        error.client_authentication().map(|error| error.kind()),
        Some(FailureKind::Timeout)
    );
    assert!(error.is_transient());
    assert!(error.to_string().contains("total_timeout"), "{error}");
    assert!(elapsed < budget + Duration::from_secs(3), "{elapsed:?}");
}

/// `Retry-After` as an HTTP date an hour away is honoured: beyond the budget, so no retry.
#[tokio::test]
async fn a_retry_after_http_date_is_honoured() {
    let emulator = emulator().await;
    let (credential, _) = credential(&emulator);
    let in_an_hour = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(3600));
    inject(
        &emulator,
        Fault::StatusRetryAfter {
            status: 429,
            retry_after: in_an_hour,
        },
    );
    let error = credential
        .get_token_info(&[GRAPH], TokenRequestOptions::default())
        .await
        .expect_err("throttled for an hour");
    assert!(error.is_transient());
    let asked = error.retry_after().expect("the server's wish");
    assert!(
        asked > Duration::from_secs(3500) && asked <= Duration::from_secs(3600),
        "{asked:?}"
    );
    assert_eq!(token_requests(&emulator).len(), 1, "one attempt");

    // A date already past means "now": retried, and the retry succeeds.
    let past = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(60));
    inject(
        &emulator,
        Fault::StatusRetryAfter {
            status: 503,
            retry_after: past,
        },
    );
    credential
        .get_token_info(&[GRAPH], TokenRequestOptions::default())
        .await
        .expect("retried at once");
    assert_eq!(token_requests(&emulator).len(), 3);
}

/// Token requests say, as MSAL's do, that the client honours 429 and `Retry-After`.
#[tokio::test]
async fn token_requests_announce_the_retry_after_capability() {
    let emulator = emulator().await;
    let (credential, _) = credential(&emulator);
    credential
        .get_token_info(&[GRAPH], TokenRequestOptions::default())
        .await
        .expect("token");
    let requests = token_requests(&emulator);
    assert_eq!(
        requests[0]
            .headers
            .get("x-ms-lib-capability")
            .map(String::as_str),
        Some("retry-after, h429")
    );
}

/// A TCP forwarder to the emulator that counts the connections it accepts.
async fn counting_proxy(emulator: &Emulator) -> (String, Arc<AtomicUsize>) {
    let target = emulator
        .url()
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let target = target.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (format!("https://{address}"), connections)
}

/// A server whose certificate nobody trusts: one attempt, a final error that names the
/// trust options.
#[tokio::test]
async fn an_untrusted_server_certificate_is_final_and_names_the_trust_options() {
    let emulator = emulator().await;
    let (proxy, connections) = counting_proxy(&emulator).await;
    let (builder, _) = builder(&emulator, TENANT);
    let credential = builder
        .authority(proxy)
        .http_options(
            HttpOptions::default()
                .retry(RetryPolicy::default().initial_delay(Duration::from_millis(10))),
        )
        .build()
        .expect("credential");
    let error = credential
        .get_token_info(&[GRAPH], TokenRequestOptions::default())
        .await
        .expect_err("untrusted");
    assert!(!error.is_transient(), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("trust_pem"), "{message}");
    assert!(message.contains("SSL_CERT_FILE"), "{message}");
    assert_eq!(connections.load(Ordering::SeqCst), 1, "one attempt");
}

/// A configured host that does not exist (`.invalid` never resolves) is not retried.
#[tokio::test]
async fn an_unknown_host_is_final() {
    let emulator = emulator().await;
    let (builder, _) = builder(&emulator, TENANT);
    let credential = builder
        .authority("https://entra-identity-test.invalid")
        .build()
        .expect("credential");
    let error = credential
        .get_token_info(&[GRAPH], TokenRequestOptions::default())
        .await
        .expect_err("no such host");
    assert_eq!(
        error.client_authentication().map(|error| error.kind()),
        Some(FailureKind::Transport)
    );
    assert!(!error.is_transient(), "{error:?}");
}

/// 4xx other than 408 and 429 is not retried.
#[tokio::test]
async fn client_errors_are_not_retried() {
    let emulator = emulator().await;
    let (credential, _) = credential(&emulator);
    for status in [400, 401, 403, 404] {
        emulator.clear_requests();
        inject(
            &emulator,
            Fault::Body {
                status: Some(status),
                body: r#"{"error":"invalid_request","error_codes":[900144]}"#.to_owned(),
            },
        );
        let error = credential
            .get_token_info(&[GRAPH], TokenRequestOptions::default())
            .await
            .expect_err("refused");
        assert!(!error.is_transient(), "{status}");
        assert_eq!(token_requests(&emulator).len(), 1, "{status}");
    }
}

/// Answers that are not usable tokens are errors, and nothing of them is cached.
#[tokio::test]
async fn unusable_token_responses_are_invalid_and_never_cached() {
    let emulator = emulator().await;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let bodies = [
        r#"{"token_type":"Bearer","expires_in":3600,"access_token":""}"#.to_owned(),
        r#"{"token_type":"Bearer","expires_in":3600,"access_token":null}"#.to_owned(),
        r#"{"token_type":"Bearer","expires_in":0,"access_token":"a.b.c"}"#.to_owned(),
        r#"{"token_type":"Bearer","expires_in":-3600,"access_token":"a.b.c"}"#.to_owned(),
        format!(
            r#"{{"token_type":"Bearer","expires_on":{},"access_token":"a.b.c"}}"#,
            now - 10
        ),
    ];
    for body in bodies {
        emulator.clear_requests();
        // A credential (and so a cache) of its own for each case.
        let (credential, _) = credential(&emulator);
        inject(
            &emulator,
            Fault::Body {
                status: None,
                body: body.clone(),
            },
        );
        let error = credential
            .get_token_info(&[GRAPH], TokenRequestOptions::default())
            .await
            .expect_err(&body);
        let auth = error.client_authentication().expect("authentication error");
        assert_eq!(auth.kind(), FailureKind::InvalidResponse, "{body}");
        assert!(!error.is_transient(), "{body}");
        // Nothing was cached: the next request asks again and gets a real token.
        let token = credential
            .get_token_info(&[GRAPH], TokenRequestOptions::default())
            .await
            .expect("a real token");
        assert!(!token.token.expose_secret().is_empty());
        assert_eq!(token_requests(&emulator).len(), 2, "{body}");
    }
}

/// Tenants that are neither a GUID nor a domain-like name are refused when the credential is
/// built, and per request before anything is sent.
#[tokio::test]
async fn tenants_that_are_not_names_are_refused_before_any_request() {
    let emulator = emulator().await;
    let bad = [
        "..",
        ".",
        "a..b",
        ".contoso.com",
        "contoso.com.",
        "%2e%2e",
        "a%2Fb",
        "a b",
        " contoso.com",
        "contoso\n.com",
        "contoso\u{0}",
        "a/b",
        "a\\b",
        "",
    ];
    for tenant_id in bad {
        let (builder, _) = builder(&emulator, tenant_id);
        assert_eq!(
            builder.build().err(),
            Some(BuildError::InvalidTenantId),
            "{tenant_id:?}"
        );
    }
    let (builder, _) = builder(&emulator, TENANT);
    let credential = builder
        .additionally_allowed_tenants(["*"])
        .build()
        .expect("credential");
    for tenant_id in bad.iter().filter(|tenant| !tenant.is_empty()) {
        let error = credential
            .get_token_info(&[GRAPH], tenant(tenant_id))
            .await
            .expect_err(tenant_id);
        assert!(
            matches!(error, CredentialError::InvalidRequest(_)),
            "{tenant_id:?}: {error:?}"
        );
    }
    assert!(emulator.requests().is_empty(), "nothing was sent");
    // Names that are fine still work.
    credential
        .get_token_info(&[GRAPH], tenant(SECOND_TENANT))
        .await
        .expect("a GUID");
    credential
        .get_token_info(&[GRAPH], tenant(DOMAIN))
        .await
        .expect("a domain");
}

/// Authorities with control characters, whitespace, userinfo, a query or a fragment are
/// refused: `url` would drop a newline and connect somewhere else.
#[tokio::test]
async fn authorities_that_are_not_plain_urls_are_refused() {
    let emulator = emulator().await;
    for authority in [
        "https://127.0.0.1\n.evil.com",
        "https://127.0.0.1\t.evil.com",
        "https://login.microsoftonline.com\r\n",
        "https://login.micro\u{0}softonline.com",
        "https://login. microsoftonline.com",
        "https://login.microsoftonline.com/a b",
        "https://user:pw@login.microsoftonline.com",
        "https://user@login.microsoftonline.com",
        "https://login.microsoftonline.com?x=1",
        "https://login.microsoftonline.com/#fragment",
    ] {
        let (builder, _) = builder(&emulator, TENANT);
        assert!(
            matches!(
                builder.authority(authority).build(),
                Err(BuildError::InvalidAuthority { .. })
            ),
            "{authority:?}"
        );
    }
}

/// An encrypted PKCS#8 key whose scrypt cost is 2^40 (16 PiB of memory) is refused before
/// any key derivation runs.
#[tokio::test]
async fn a_key_derivation_bomb_is_a_typed_error() {
    use pkcs8::der::{Decode as _, Encode as _};
    let emulator = emulator().await;
    register_middle_tier(&emulator);
    let key = rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        .expect("rsa key");
    let cert = rcgen::CertificateParams::new(vec!["client".to_owned()])
        .expect("params")
        .self_signed(&key)
        .expect("certificate");
    let der = key.serialize_der();
    let info = pkcs8::PrivateKeyInfoRef::try_from(der.as_slice()).expect("pkcs8");
    let cheap = pkcs5::pbes2::Parameters::generate_scrypt_aes256cbc(
        pkcs5::scrypt::Params::new(10, 8, 1).expect("scrypt"),
        &[7; 16],
        [9; 16],
    )
    .expect("params");
    let encrypted = info.encrypt_with_params(cheap, b"pa55").expect("encrypt");
    let mut bomb =
        pkcs8::EncryptedPrivateKeyInfoRef::from_der(encrypted.as_bytes()).expect("decode");
    let pkcs5::EncryptionScheme::Pbes2(parameters) = &mut bomb.encryption_algorithm else {
        panic!("PBES2");
    };
    let pkcs5::pbes2::Kdf::Scrypt(scrypt) = &mut parameters.kdf else {
        panic!("scrypt");
    };
    scrypt.cost_parameter = 1 << 40;
    let bomb = bomb.to_der().expect("encode");
    let pem = format!(
        "{}{}",
        pem::encode(&pem::Pem::new("ENCRYPTED PRIVATE KEY", bomb)),
        cert.pem()
    );
    let error = obo_builder(&emulator, &user_assertion(&emulator, 3600))
        .client_certificate(pem)
        .password("pa55")
        .build()
        .expect_err("refused");
    let BuildError::InvalidCertificate(CertificateError::KeyDerivationTooCostly { limit, .. }) =
        error
    else {
        panic!("{error:?}");
    };
    assert!(limit.contains("scrypt"), "{limit}");
}

/// Certificate input and assertion files are read up to a size, with a typed error.
#[tokio::test]
async fn oversized_inputs_are_refused() {
    let emulator = emulator().await;
    register_middle_tier(&emulator);
    let huge = vec![b'A'; 16 * 1024 * 1024];
    let error = obo_builder(&emulator, &user_assertion(&emulator, 3600))
        .client_certificate(huge)
        .build()
        .expect_err("refused");
    assert!(
        matches!(
            error,
            BuildError::InvalidCertificate(CertificateError::TooLarge {
                limit: 1_048_576,
                ..
            })
        ),
        "{error:?}"
    );

    let directory = tempfile::tempdir().expect("directory");
    let path = directory.path().join("token");
    std::fs::write(&path, vec![b'e'; 1024 * 1024]).expect("write");
    let credential =
        ClientAssertionCredential::builder(TENANT, WORKLOAD, FileAssertion::new(&path))
            .authority(emulator.url())
            .http_options(http(&emulator))
            .environment(Arc::new(MapEnvironment::new()))
            .build()
            .expect("credential");
    let error = credential
        .get_token_info(&[GRAPH], TokenRequestOptions::default())
        .await
        .expect_err("refused");
    assert_eq!(
        error.client_authentication().map(|error| error.kind()),
        Some(FailureKind::ClientAssertion)
    );
    assert!(
        error.to_string().contains("larger than") || format!("{:?}", error).contains("larger than"),
        "{error:?}"
    );
    assert!(token_requests(&emulator).is_empty(), "nothing was sent");
}

/// Instance discovery asks as MSAL Python does: `authorization_endpoint`, then
/// `api-version=1.0`.
#[tokio::test]
async fn instance_discovery_asks_as_msal_python_does() {
    let emulator = emulator().await;
    register_middle_tier(&emulator);
    let credential = obo_builder(&emulator, &user_assertion(&emulator, 3600))
        .client_secret(MIDDLE_TIER_SECRET)
        .build()
        .expect("credential");
    credential
        .get_token_info(&[DOWNSTREAM_SCOPE], TokenRequestOptions::default())
        .await
        .expect("token");
    let discovery: Vec<_> = emulator
        .requests()
        .into_iter()
        .filter(|request| request.path == "/common/discovery/instance")
        .collect();
    assert_eq!(discovery.len(), 1);
    let query = discovery[0].query.clone().expect("query");
    let authorize = format!("{}/{TENANT}/oauth2/v2.0/authorize", emulator.url());
    let expected = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("authorization_endpoint", &authorize)
        .append_pair("api-version", "1.0")
        .finish();
    assert_eq!(query, expected);
}
