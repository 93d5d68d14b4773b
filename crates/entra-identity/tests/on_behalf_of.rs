//! OnBehalfOfCredential and OnBehalfOfApplication through the public API, against the
//! emulator over TLS.

use std::sync::Arc;

use base64::Engine as _;
use entra_emulator::{
    ApplicationConfig, CertificateConfig, Emulator, EmulatorConfig, SettingsUpdate, TenantConfig,
    TokenSettingsUpdate, UserConfig, UserTokenRequest,
};
use entra_identity::TokenRequestOptions;
use entra_identity::{
    BuildError, CertificateError, FailureKind, HttpOptions, ManualClock, MapEnvironment,
    OnBehalfOfApplication, OnBehalfOfCredential, OnBehalfOfCredentialBuilder, RetryPolicy,
};
use serde_json::Value;

const TENANT: &str = "aaaaaaaa-0000-0000-0000-000000000001";
const SECOND_TENANT: &str = "bbbbbbbb-0000-0000-0000-000000000002";
const API: &str = "10000000-0000-0000-0000-000000000001";
const SNI_API: &str = "10000000-0000-0000-0000-000000000002";
const CONSENTED_API: &str = "10000000-0000-0000-0000-000000000004";
const SECRET: &str = "middle-tier-secret";
const SCOPE: &str = "api://downstream/Data.Read";
const USERS: usize = 20;

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
        tenants: vec![
            TenantConfig {
                id: Some(TENANT.to_owned()),
                domains: vec!["fabrikam.onmicrosoft.com".to_owned()],
                applications: vec![
                    ApplicationConfig {
                        secrets: vec![SECRET.to_owned()],
                        certificates: vec![CertificateConfig {
                            pkcs12_password: Some("pfx-password".to_owned()),
                            ..CertificateConfig::default()
                        }],
                        ..api(API, "middle-tier")
                    },
                    ApplicationConfig {
                        certificates: vec![CertificateConfig::default()],
                        require_certificate_chain: true,
                        ..api(SNI_API, "sni-middle-tier")
                    },
                    ApplicationConfig {
                        secrets: vec![SECRET.to_owned()],
                        consented_scopes: Some(vec![SCOPE.to_owned()]),
                        ..api(CONSENTED_API, "consented")
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
            },
            TenantConfig {
                id: Some(SECOND_TENANT.to_owned()),
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
                users: vec![UserConfig {
                    object_id: Some("30000000-0000-0000-0000-000000000001".to_owned()),
                    upn: "guest@second.example".to_owned(),
                    name: None,
                }],
                ..TenantConfig::default()
            },
        ],
        ..EmulatorConfig::default()
    }
}

async fn emulator() -> Emulator {
    Emulator::builder()
        .config(config())
        .start()
        .await
        .expect("emulator")
}

fn user_token(emulator: &Emulator, user: usize, audience: &str, expires_in_secs: i64) -> String {
    emulator
        .mint_user_token(&UserTokenRequest {
            user: user_oid(user),
            audience: audience.to_owned(),
            expires_in_secs: Some(expires_in_secs),
            ..UserTokenRequest::default()
        })
        .expect("user token")
}

fn http(emulator: &Emulator) -> HttpOptions {
    HttpOptions::default()
        .trust_pem(emulator.ca_pem())
        .retry(RetryPolicy::default().initial_delay(std::time::Duration::from_millis(10)))
}

/// A builder pointed at the emulator, with instance discovery asked of the emulator too.
fn builder(emulator: &Emulator, client_id: &str, assertion: &str) -> OnBehalfOfCredentialBuilder {
    OnBehalfOfCredential::builder(TENANT, client_id, assertion)
        .authority(emulator.url())
        .instance_discovery_host(emulator.url())
        .http_options(http(emulator))
        .environment(Arc::new(MapEnvironment::new()))
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("jwt");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("b64");
    serde_json::from_slice(&bytes).expect("json")
}

fn token_requests(emulator: &Emulator) -> Vec<entra_emulator::RequestRecord> {
    emulator
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/oauth2/v2.0/token"))
        .collect()
}

fn certificate_info(emulator: &Emulator, client_id: &str) -> entra_emulator::CertificateInfo {
    emulator.info().tenants[0]
        .applications
        .iter()
        .find(|app| app.client_id == client_id)
        .expect("app")
        .certificates[0]
        .clone()
}

#[tokio::test]
async fn a_secret_exchanges_the_users_token_as_msal_does() {
    let emulator = emulator().await;
    let assertion = user_token(&emulator, 0, API, 3600);
    let credential = builder(&emulator, API, &assertion)
        .client_secret(SECRET)
        .build()
        .expect("credential");
    let token = credential
        .get_token(&[SCOPE], TokenRequestOptions::new())
        .await
        .expect("token");
    let claims = claims(token.token.expose_secret());
    assert_eq!(claims["oid"], user_oid(0));
    assert_eq!(claims["aud"], "api://downstream");
    assert_eq!(claims["azp"], API);
    assert_eq!(claims["scp"], "Data.Read");

    let request = token_requests(&emulator).pop().expect("sent");
    let form = &request.form;
    assert_eq!(
        form["grant_type"],
        "urn:ietf:params:oauth:grant-type:jwt-bearer"
    );
    assert_eq!(form["requested_token_use"], "on_behalf_of");
    assert_eq!(form["client_info"], "1");
    assert_eq!(
        form["scope"],
        format!("{SCOPE} offline_access openid profile")
    );
    assert_eq!(form["assertion"], "[redacted]");
    assert_eq!(request.client_auth.as_deref(), Some("client_secret"));
    // The authority was validated once through instance discovery.
    assert_eq!(emulator.counters().instance_discovery_requests, 1);

    credential
        .get_token(&[SCOPE], TokenRequestOptions::new())
        .await
        .expect("cached");
    assert_eq!(token_requests(&emulator).len(), 1);
}

#[tokio::test]
async fn every_kind_of_certificate_authenticates() {
    let emulator = emulator().await;
    let info = certificate_info(&emulator, API);
    let combined = std::fs::read(info.combined_pem_path.as_ref().expect("combined")).expect("pem");
    let pfx = std::fs::read(info.pkcs12_path.as_ref().expect("pfx")).expect("pfx");
    let key_pem = info.key_pem.clone().expect("key");

    // Encrypted PKCS#8 PEM, made from the emulator's key.
    let der = pem::parse(&key_pem).expect("pem").into_contents();
    let private = pkcs8::PrivateKeyInfoRef::try_from(der.as_slice()).expect("pkcs8");
    let params =
        pkcs5::pbes2::Parameters::generate_pbkdf2_sha256_aes256cbc(2048, &[1; 16], [2; 16])
            .expect("params");
    let encrypted = private
        .encrypt_with_params(params, b"pem-password")
        .expect("encrypt");
    let encrypted_pem = format!(
        "{}{}",
        pem::encode(&pem::Pem::new(
            "ENCRYPTED PRIVATE KEY",
            encrypted.as_bytes()
        )),
        info.cert_pem
    );
    // A PKCS#12 file without a password, and a legacy 3DES one.
    let pkcs12 = |password: &str, legacy: bool| {
        use p12_keystore::{
            Certificate, EncryptionAlgorithm, KeyStore, KeyStoreEntry, PrivateKey, PrivateKeyChain,
        };
        let key = PrivateKey::from_der(&der).expect("key");
        let cert = Certificate::from_der(pem::parse(&info.cert_pem).expect("pem").contents())
            .expect("cert");
        let mut store = KeyStore::new();
        store.add_entry(
            "k",
            KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(vec![1u8], key, [cert])),
        );
        let writer = store.writer(password);
        let writer = if legacy {
            writer.encryption_algorithm(EncryptionAlgorithm::PbeWithShaAnd3KeyTripleDesCbc)
        } else {
            writer
        };
        writer.write().expect("pkcs12")
    };

    let cases: Vec<(&str, Vec<u8>, Option<&str>)> = vec![
        ("PEM", combined, None),
        (
            "encrypted PEM",
            encrypted_pem.into_bytes(),
            Some("pem-password"),
        ),
        ("PKCS#12 with password", pfx, Some("pfx-password")),
        ("PKCS#12 without password", pkcs12("", false), None),
        (
            "legacy 3DES PKCS#12",
            pkcs12("legacy", true),
            Some("legacy"),
        ),
    ];
    for (user, (name, bytes, password)) in cases.into_iter().enumerate() {
        let assertion = user_token(&emulator, user, API, 3600);
        let mut builder = builder(&emulator, API, &assertion).client_certificate(bytes);
        if let Some(password) = password {
            builder = builder.password(password);
        }
        let credential = builder.build().unwrap_or_else(|e| panic!("{name}: {e}"));
        let token = credential
            .get_token(&[SCOPE], TokenRequestOptions::new())
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            claims(token.token.expose_secret())["oid"],
            user_oid(user),
            "{name}"
        );
        let request = token_requests(&emulator).pop().expect("sent");
        assert_eq!(
            request.client_auth.as_deref(),
            Some("certificate PS256 x5t#S256"),
            "{name}"
        );
    }

    // Password mistakes are construction errors, not request failures.
    let assertion = user_token(&emulator, 0, API, 3600);
    let info_pfx = std::fs::read(info.pkcs12_path.as_ref().expect("pfx")).expect("pfx");
    let wrong = builder(&emulator, API, &assertion)
        .client_certificate(info_pfx)
        .password("wrong")
        .build();
    assert_eq!(
        wrong.err(),
        Some(BuildError::InvalidCertificate(
            CertificateError::WrongPassword
        ))
    );
}

#[tokio::test]
async fn subject_name_issuer_needs_and_gets_the_chain() {
    let emulator = emulator().await;
    let info = certificate_info(&emulator, SNI_API);
    let combined = std::fs::read(info.combined_pem_path.as_ref().expect("combined")).expect("pem");
    let assertion = user_token(&emulator, 1, SNI_API, 3600);
    let without = builder(&emulator, SNI_API, &assertion)
        .client_certificate(combined.clone())
        .build()
        .expect("credential");
    let error = without
        .get_token(&[SCOPE], TokenRequestOptions::new())
        .await
        .expect_err("needs x5c");
    assert_eq!(error.entra().expect("entra").error_codes, [700_027]);

    let with = builder(&emulator, SNI_API, &assertion)
        .client_certificate(combined)
        .send_certificate_chain(true)
        .build()
        .expect("credential");
    with.get_token(&[SCOPE], TokenRequestOptions::new())
        .await
        .expect("token with the chain");
    let request = token_requests(&emulator).pop().expect("sent");
    assert_eq!(
        request.client_auth.as_deref(),
        Some("certificate PS256 x5t#S256 x5c")
    );
}

#[tokio::test]
async fn an_assertion_function_authenticates_and_runs_per_request() {
    let emulator = emulator().await;
    let info = certificate_info(&emulator, API);
    // The function hands out an assertion signed elsewhere: here by another credential's
    // certificate machinery is not reachable, so sign with the emulator's key material.
    let key = pem::parse(info.key_pem.as_ref().expect("key"))
        .expect("pem")
        .into_contents();
    let cert = pem::parse(&info.cert_pem).expect("pem").into_contents();
    let audience = format!("{}/{TENANT}/oauth2/v2.0/token", emulator.url());
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = calls.clone();
    let source = move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let jwt = sign_assertion(&key, &cert, API, &audience);
        async move { Ok::<_, std::io::Error>(jwt) }
    };
    let assertion = user_token(&emulator, 2, API, 3600);
    let credential = builder(&emulator, API, &assertion)
        .client_assertion_func(source)
        .build()
        .expect("credential");
    credential
        .get_token(&[SCOPE], TokenRequestOptions::new())
        .await
        .expect("token");
    credential
        .get_token(&[SCOPE], TokenRequestOptions::new())
        .await
        .expect("cached");
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    let request = token_requests(&emulator).pop().expect("sent");
    assert_eq!(
        request.client_auth.as_deref(),
        Some("certificate RS256 x5t")
    );
}

/// An RS256 client assertion with `x5t`, as another signer would make it.
fn sign_assertion(key_pkcs8: &[u8], cert_der: &[u8], client_id: &str, audience: &str) -> String {
    use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
    use sha1::Digest as _;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let header = serde_json::json!({ "alg": "RS256", "typ": "JWT", "x5t": b64(&sha1::Sha1::digest(cert_der)) });
    let claims = serde_json::json!({ "aud": audience, "iss": client_id, "sub": client_id, "jti": uuid::Uuid::new_v4().to_string(), "exp": now + 600, "nbf": now });
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let key = RsaKeyPair::from_pkcs8(key_pkcs8).expect("key");
    let mut signature = vec![0; key.public_modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &aws_lc_rs::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut signature,
    )
    .expect("sign");
    format!("{input}.{}", b64(&signature))
}

#[tokio::test]
async fn refresh_tokens_stay_in_their_users_partition() {
    let emulator = emulator().await;
    let clock = ManualClock::starting_now();
    let application = OnBehalfOfApplication::builder(TENANT, API)
        .client_secret(SECRET)
        .authority(emulator.url())
        .instance_discovery_host(emulator.url())
        .http_options(http(&emulator))
        .clock(Arc::new(clock.clone()))
        .build()
        .expect("application");
    let alice = application
        .credential_for(user_token(&emulator, 3, API, 7200))
        .expect("alice");
    let bob = application
        .credential_for(user_token(&emulator, 4, API, 7200))
        .expect("bob");
    let a1 = alice
        .get_token(&[SCOPE], TokenRequestOptions::new())
        .await
        .expect("alice");
    let b1 = bob
        .get_token(&[SCOPE], TokenRequestOptions::new())
        .await
        .expect("bob");
    assert_eq!(claims(a1.token.expose_secret())["oid"], user_oid(3));
    assert_eq!(claims(b1.token.expose_secret())["oid"], user_oid(4));
    assert_eq!(
        token_requests(&emulator).len(),
        2,
        "no user got another's token"
    );

    // Once the access token has expired, each user's refresh token is redeemed: their own.
    clock.advance(3600);
    let a2 = alice
        .get_token(&[SCOPE], TokenRequestOptions::new())
        .await
        .expect("alice refreshed");
    let b2 = bob
        .get_token(&[SCOPE], TokenRequestOptions::new())
        .await
        .expect("bob refreshed");
    assert_eq!(claims(a2.token.expose_secret())["oid"], user_oid(3));
    assert_eq!(claims(b2.token.expose_secret())["oid"], user_oid(4));
    let grants: Vec<String> = token_requests(&emulator)
        .iter()
        .map(|r| r.form["grant_type"].clone())
        .collect();
    assert_eq!(grants[2..], ["refresh_token", "refresh_token"]);

    // A refused refresh token (invalid_grant) is evicted and the assertion exchanged again.
    emulator.update_settings(&SettingsUpdate {
        tokens: Some(TokenSettingsUpdate {
            refresh_token_lifetime_secs: Some(0),
            ..TokenSettingsUpdate::default()
        }),
        ..SettingsUpdate::default()
    });
    let carol = application
        .credential_for(user_token(&emulator, 5, API, 7200))
        .expect("carol");
    carol
        .get_token(&[SCOPE], TokenRequestOptions::new())
        .await
        .expect("carol");
    clock.advance(3600);
    // Carol's refresh token expired at once at the emulator: invalid_grant, then an exchange.
    let c2 = carol
        .get_token(&[SCOPE], TokenRequestOptions::new())
        .await
        .expect("carol again");
    assert_eq!(claims(c2.token.expose_secret())["oid"], user_oid(5));
    let requests = token_requests(&emulator);
    let tail: Vec<(&str, Option<u32>)> = requests[requests.len() - 3..]
        .iter()
        .map(|r| (r.form["grant_type"].as_str(), r.error_code))
        .collect();
    assert_eq!(
        tail,
        [
            ("urn:ietf:params:oauth:grant-type:jwt-bearer", None),
            ("refresh_token", Some(700_082)),
            ("urn:ietf:params:oauth:grant-type:jwt-bearer", None),
        ]
    );
}

#[tokio::test]
async fn many_users_at_once_never_get_each_others_tokens() {
    let emulator = emulator().await;
    let application = OnBehalfOfApplication::builder(TENANT, API)
        .client_secret(SECRET)
        .authority(emulator.url())
        .instance_discovery_host(emulator.url())
        .http_options(http(&emulator))
        .build()
        .expect("application");
    let assertions: Vec<String> = (0..USERS)
        .map(|user| user_token(&emulator, user, API, 3600))
        .collect();
    let mut tasks = Vec::new();
    for round in 0..5 {
        for (user, assertion) in assertions.iter().enumerate() {
            let application = application.clone();
            let assertion = assertion.clone();
            tasks.push(tokio::spawn(async move {
                let credential = application.credential_for(assertion).expect("credential");
                let token = credential
                    .get_token(
                        &[SCOPE],
                        TokenRequestOptions::new().enable_cae(round % 2 == 1),
                    )
                    .await
                    .expect("token");
                (user, token)
            }));
        }
    }
    for task in tasks {
        let (user, token) = task.await.expect("task");
        assert_eq!(claims(token.token.expose_secret())["oid"], user_oid(user));
    }
    // One exchange per user and CAE flag, however many requests.
    assert_eq!(token_requests(&emulator).len(), USERS * 2);
}

#[tokio::test]
async fn multi_tenant_and_cae() {
    let emulator = emulator().await;
    let guest = emulator
        .mint_user_token(&UserTokenRequest {
            user: "guest@second.example".to_owned(),
            audience: API.to_owned(),
            ..UserTokenRequest::default()
        })
        .expect("token");
    let credential = builder(&emulator, API, &guest)
        .client_secret(SECRET)
        .additionally_allowed_tenants([SECOND_TENANT])
        .build()
        .expect("credential");
    let token = credential
        .get_token(
            &[SCOPE],
            TokenRequestOptions::new()
                .tenant_id(SECOND_TENANT)
                .enable_cae(true),
        )
        .await
        .expect("token");
    let claims = claims(token.token.expose_secret());
    assert_eq!(claims["tid"], SECOND_TENANT);
    assert_eq!(claims["xms_cc"], serde_json::json!(["CP1"]));
    let request = token_requests(&emulator).pop().expect("sent");
    assert_eq!(request.path, format!("/{SECOND_TENANT}/oauth2/v2.0/token"));
    assert!(request.form["claims"].contains("CP1"));
    let refused = credential
        .get_token(
            &[SCOPE],
            TokenRequestOptions::new().tenant_id("cccccccc-0000-0000-0000-000000000003"),
        )
        .await;
    assert_eq!(
        refused
            .err()
            .and_then(|e| e.client_authentication().map(|f| f.kind())),
        Some(FailureKind::TenantNotAllowed)
    );
}

#[tokio::test]
async fn entra_errors_surface_with_their_codes() {
    let emulator = emulator().await;
    let obo = |assertion: String, client_id: &'static str| {
        builder(&emulator, client_id, &assertion)
            .client_secret(SECRET)
            .build()
            .expect("credential")
    };
    let cases = [
        (obo(user_token(&emulator, 6, API, -3600), API), 500_133),
        (
            obo(format!("{}x", user_token(&emulator, 6, API, 3600)), API),
            50_013,
        ),
        (
            obo(user_token(&emulator, 6, "api://other", 3600), API),
            500_131,
        ),
    ];
    for (credential, code) in cases {
        let error = credential
            .get_token(&[SCOPE], TokenRequestOptions::new())
            .await
            .expect_err("refused");
        assert_eq!(error.entra().expect("entra").error_codes, [code], "{error}");
    }
    let consent = obo(user_token(&emulator, 6, CONSENTED_API, 3600), CONSENTED_API);
    let error = consent
        .get_token(&["api://downstream/Data.Write"], TokenRequestOptions::new())
        .await
        .expect_err("consent");
    let entra = error.entra().expect("entra");
    assert_eq!(
        (entra.error_codes.as_slice(), entra.suberror.as_deref()),
        (&[65_001][..], Some("consent_required"))
    );

    // A certificate the application never registered.
    let other = certificate_info(&emulator, SNI_API);
    let combined = std::fs::read(other.combined_pem_path.as_ref().expect("combined")).expect("pem");
    let credential = builder(&emulator, API, &user_token(&emulator, 6, API, 3600))
        .client_certificate(combined)
        .build()
        .expect("credential");
    let error = credential
        .get_token(&[SCOPE], TokenRequestOptions::new())
        .await
        .expect_err("unknown key");
    assert_eq!(error.entra().expect("entra").error_codes, [700_027]);
}

#[tokio::test]
async fn instance_discovery_on_off_and_failing() {
    let emulator = emulator().await;
    let assertion = user_token(&emulator, 7, API, 3600);
    // Off: no discovery request at all.
    let off = builder(&emulator, API, &assertion)
        .client_secret(SECRET)
        .disable_instance_discovery(true)
        .build()
        .expect("credential");
    off.get_token(&[SCOPE], TokenRequestOptions::new())
        .await
        .expect("token");
    assert_eq!(emulator.counters().instance_discovery_requests, 0);

    // Failing: an authority the discovery service does not know is refused before any token
    // request is sent to it.
    let unknown = OnBehalfOfCredential::builder(TENANT, API, assertion.as_str())
        .client_secret(SECRET)
        .authority("login.unknown-cloud.example")
        .instance_discovery_host(emulator.url())
        .http_options(http(&emulator))
        .build()
        .expect("credential");
    let error = unknown
        .get_token(&[SCOPE], TokenRequestOptions::new())
        .await
        .expect_err("invalid instance");
    let failure = error.client_authentication().expect("authentication error");
    assert_eq!(failure.kind(), FailureKind::InstanceDiscovery);
    assert!(
        failure.message().contains("disable_instance_discovery"),
        "{failure}"
    );
    assert_eq!(emulator.counters().instance_discovery_requests, 1);
}

#[tokio::test]
async fn a_credential_per_request_shares_the_applications_cache() {
    let emulator = emulator().await;
    let application = OnBehalfOfApplication::builder(TENANT, API)
        .client_secret(SECRET)
        .authority(emulator.url())
        .instance_discovery_host(emulator.url())
        .http_options(http(&emulator))
        .build()
        .expect("application");
    let assertion = user_token(&emulator, 8, API, 3600);
    for _ in 0..10 {
        let credential = application
            .credential_for(assertion.as_str())
            .expect("credential");
        credential
            .get_token(&[SCOPE], TokenRequestOptions::new())
            .await
            .expect("token");
    }
    assert_eq!(token_requests(&emulator).len(), 1);
    assert_eq!(
        application.credential_for("  ").err(),
        Some(BuildError::EmptyUserAssertion)
    );
}

#[tokio::test]
async fn closing_one_users_credential_leaves_the_others_working() {
    let emulator = emulator().await;
    let application = OnBehalfOfApplication::builder(TENANT, API)
        .client_secret(SECRET)
        .authority(emulator.url())
        .instance_discovery_host(emulator.url())
        .http_options(http(&emulator))
        .build()
        .expect("application");
    let first = application
        .credential_for(user_token(&emulator, 9, API, 3600))
        .expect("first");
    let second = application
        .credential_for(user_token(&emulator, 10, API, 3600))
        .expect("second");
    first.close().await;
    let error = first
        .get_token(&[SCOPE], TokenRequestOptions::new())
        .await
        .expect_err("closed");
    assert!(matches!(
        error,
        entra_identity::CredentialError::CredentialUnavailable(_)
    ));
    second
        .get_token(&[SCOPE], TokenRequestOptions::new())
        .await
        .expect("still works");
    application.close();
    let error = second
        .get_token(&[SCOPE], TokenRequestOptions::new())
        .await
        .expect_err("application closed");
    assert!(matches!(
        error,
        entra_identity::CredentialError::CredentialUnavailable(_)
    ));
}
