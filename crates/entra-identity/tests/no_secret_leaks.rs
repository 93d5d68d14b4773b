//! No secret reaches a log line, a `Debug` output or an error message, over whole token flows
//! traced at TRACE level.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;
use entra_emulator::{Emulator, Fault, FaultRule, SettingsUpdate, TokenSettingsUpdate};
use entra_identity::{
    AccessTokenInfo, ClientAssertionCredential, CredentialError, ManualClock, TokenCredential,
    TokenRequestOptions,
};

/// Collects everything every tracing subscriber layer writes.
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

#[tokio::test(flavor = "current_thread")]
async fn a_full_flow_traced_at_trace_level_shows_no_secret() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let emulator = emulator().await;
    let assertion = emulator
        .mint_federated_token(SUBJECT, None, 3600)
        .expect("assertion");
    let source_assertion = assertion.clone();
    let credential = ClientAssertionCredential::builder(TENANT, WORKLOAD, move || {
        let assertion = source_assertion.clone();
        async move { Ok::<_, std::io::Error>(assertion) }
    })
    .authority(emulator.url())
    .http_options(http(&emulator))
    .build()
    .expect("credential");

    let token = credential
        .get_token(&[GRAPH], TokenRequestOptions::new())
        .await
        .expect("token");
    let cae = credential
        .get_token(&[GRAPH], TokenRequestOptions::new().enable_cae(true))
        .await
        .expect("cae token");
    // A retried failure, a refused request, and their errors.
    emulator.inject_fault(FaultRule {
        path: "/oauth2/v2.0/token".into(),
        count: 1,
        fault: Fault::Status {
            status: 503,
            retry_after: Some(0),
        },
    });
    credential
        .get_token(&[DOWNSTREAM], TokenRequestOptions::new())
        .await
        .expect("after a retry");
    let error = credential
        .get_token(&["api://unknown/.default"], TokenRequestOptions::new())
        .await
        .expect_err("unknown resource");

    let mut everything = captured.text();
    assert!(
        everything.contains("TRACE") || everything.contains("DEBUG"),
        "tracing was captured"
    );
    for shown in [
        format!("{credential:?}"),
        format!("{token:?}"),
        format!("{cae:?}"),
        format!("{error:?}"),
        error.to_string(),
    ] {
        everything.push_str(&shown);
    }
    for secret in [
        assertion.as_str(),
        token.token.expose_secret(),
        cae.token.expose_secret(),
    ] {
        // Any long-enough piece of a secret would do; the signature is the part that matters.
        let signature = secret.rsplit('.').next().expect("jwt");
        assert!(
            !everything.contains(signature),
            "a secret leaked into logs or Debug output"
        );
    }
}

/// Captures every tracing event, at TRACE level, for as long as the guard lives.
fn trace_everything() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

/// An error as anyone may show it: `Display`, `Debug`, and the same for every cause.
fn shown(error: &(dyn std::error::Error + 'static)) -> String {
    std::iter::successors(Some(error), |&error| error.source())
        .map(|error| format!("{error}\n{error:?}\n"))
        .collect()
}

/// A delegated token for the downstream API.
async fn downstream_token(
    credential: &impl TokenCredential,
) -> Result<AccessTokenInfo, CredentialError> {
    credential
        .get_token_info(&[DOWNSTREAM_SCOPE], TokenRequestOptions::default())
        .await
}

/// The grant types of the token requests so far, with Entra's error code if any.
fn grants(emulator: &Emulator) -> Vec<(String, Option<u32>)> {
    token_requests(emulator)
        .into_iter()
        .map(|request| (request.form["grant_type"].clone(), request.error_code))
        .collect()
}

/// No piece of a secret appears in `everything`: the whole value, nor a JWT's signature, nor
/// (for refresh tokens, which the test never sees) the emulator's refresh token prefix.
fn assert_no_secret(everything: &str, secrets: &[(&str, &str)]) {
    assert!(
        everything.contains("TRACE") || everything.contains("DEBUG"),
        "tracing was captured"
    );
    for (name, secret) in secrets {
        assert!(!secret.is_empty(), "{name}");
        let signature = secret.rsplit('.').next().unwrap_or(secret);
        assert!(
            !everything.contains(secret) && !everything.contains(signature),
            "the {name} leaked into logs, Debug output or errors"
        );
    }
    assert!(
        !everything.contains("emu.rt."),
        "a refresh token leaked into logs, Debug output or errors"
    );
}

const WRONG_SECRET: &str = "wrong-secret-61b7e0d2";

#[tokio::test(flavor = "current_thread")]
async fn on_behalf_of_with_a_secret_shows_no_secret() {
    let (captured, _guard) = trace_everything();
    let emulator = emulator().await;
    register_middle_tier(&emulator);
    let clock = ManualClock::starting_now();
    let assertion = user_assertion(&emulator, 7200);
    let builder = obo_builder(&emulator, &assertion)
        .client_secret(MIDDLE_TIER_SECRET)
        .clock(Arc::new(clock.clone()));
    let mut everything = format!("{builder:?}");
    let credential = builder.build().expect("credential");

    // An exchange, then a refresh once the token has expired.
    let first = downstream_token(&credential).await.expect("exchange");
    clock.advance(3700);
    let refreshed = downstream_token(&credential).await.expect("refresh");
    assert_eq!(grants(&emulator)[1], ("refresh_token".to_owned(), None));

    // A refresh token Entra ID refuses (invalid_grant): logged, then the assertion exchanged.
    emulator.update_settings(&SettingsUpdate {
        tokens: Some(TokenSettingsUpdate {
            refresh_token_lifetime_secs: Some(0),
            ..TokenSettingsUpdate::default()
        }),
        ..SettingsUpdate::default()
    });
    let second_assertion = user_assertion(&emulator, 7200);
    let refused = obo_builder(&emulator, &second_assertion)
        .client_secret(MIDDLE_TIER_SECRET)
        .clock(Arc::new(clock.clone()))
        .build()
        .expect("credential");
    let before_refusal = downstream_token(&refused).await.expect("exchange");
    clock.advance(3700);
    let after_refusal = downstream_token(&refused).await.expect("exchanged again");
    assert!(
        grants(&emulator).contains(&("refresh_token".to_owned(), Some(700_082))),
        "{:?}",
        grants(&emulator)
    );

    // Failures: a wrong secret (an Entra error), and a 500 that outlasts the retries.
    let wrong = obo_builder(&emulator, &assertion)
        .client_secret(WRONG_SECRET)
        .build()
        .expect("credential");
    let wrong_secret = downstream_token(&wrong).await.expect_err("wrong secret");
    assert!(wrong_secret.entra().is_some(), "{wrong_secret:?}");
    emulator.inject_fault(FaultRule {
        path: "/oauth2/v2.0/token".into(),
        count: 10,
        fault: Fault::Status {
            status: 500,
            retry_after: Some(0),
        },
    });
    let unavailable = obo_builder(&emulator, &user_assertion(&emulator, 7200))
        .client_secret(MIDDLE_TIER_SECRET)
        .build()
        .expect("credential");
    let server_error = downstream_token(&unavailable).await.expect_err("500");
    assert!(server_error.is_transient(), "{server_error:?}");
    emulator.clear_faults();

    everything.push_str(&captured.text());
    for shown_value in [
        format!("{credential:?}"),
        format!("{:?}", credential.application()),
        format!("{refused:?}"),
        format!("{wrong:?}"),
        format!("{first:?}{refreshed:?}{before_refusal:?}{after_refusal:?}"),
        shown(&wrong_secret),
        shown(&server_error),
    ] {
        everything.push_str(&shown_value);
    }
    assert_no_secret(
        &everything,
        &[
            ("client secret", MIDDLE_TIER_SECRET),
            ("wrong client secret", WRONG_SECRET),
            ("user assertion", &assertion),
            ("second user assertion", &second_assertion),
            ("access token", first.token.expose_secret()),
            ("refreshed access token", refreshed.token.expose_secret()),
            ("access token", before_refusal.token.expose_secret()),
            ("access token", after_refusal.token.expose_secret()),
        ],
    );
}

#[tokio::test(flavor = "current_thread")]
async fn on_behalf_of_with_a_password_protected_certificate_shows_no_secret() {
    let (captured, _guard) = trace_everything();
    let emulator = emulator().await;
    let certificate = register_middle_tier(&emulator);
    let pfx = std::fs::read(certificate.pkcs12_path.as_ref().expect("PKCS#12")).expect("pfx");
    // A line from the middle of the private key's PEM.
    let key_pem = certificate.key_pem.clone().expect("key");
    let key_line = key_pem.lines().nth(5).expect("a line of key").to_owned();
    let assertion = user_assertion(&emulator, 7200);
    let builder = obo_builder(&emulator, &assertion)
        .client_certificate(pfx.clone())
        .password(MIDDLE_TIER_PFX_PASSWORD);
    let mut everything = format!("{builder:?}");
    let credential = builder.build().expect("credential");

    // Client assertions are signed at the credential's clock's time, which Entra ID checks:
    // the token expires in real time here, and is then refreshed.
    emulator.update_settings(&SettingsUpdate {
        tokens: Some(TokenSettingsUpdate {
            access_token_lifetime_secs: Some(1),
            ..TokenSettingsUpdate::default()
        }),
        ..SettingsUpdate::default()
    });
    let first = downstream_token(&credential).await.expect("exchange");
    tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
    let refreshed = downstream_token(&credential).await.expect("refresh");
    let grants = grants(&emulator);
    assert_eq!(grants[1], ("refresh_token".to_owned(), None), "{grants:?}");

    // Failures: a wrong password (a build error) and a 500 that outlasts the retries.
    let wrong_password = obo_builder(&emulator, &assertion)
        .client_certificate(pfx)
        .password("wrong-password-0c2f")
        .build()
        .expect_err("wrong password");
    emulator.inject_fault(FaultRule {
        path: "/oauth2/v2.0/token".into(),
        count: 10,
        fault: Fault::Status {
            status: 500,
            retry_after: Some(0),
        },
    });
    let unavailable = obo_builder(&emulator, &user_assertion(&emulator, 7200))
        .client_certificate(
            std::fs::read(certificate.pkcs12_path.as_ref().expect("PKCS#12")).expect("pfx"),
        )
        .password(MIDDLE_TIER_PFX_PASSWORD)
        .build()
        .expect("credential");
    let server_error = downstream_token(&unavailable).await.expect_err("500");
    assert!(server_error.is_transient(), "{server_error:?}");
    emulator.clear_faults();

    everything.push_str(&captured.text());
    for shown_value in [
        format!("{credential:?}"),
        format!("{:?}", credential.application()),
        format!("{unavailable:?}"),
        format!("{first:?}{refreshed:?}"),
        shown(&wrong_password),
        shown(&server_error),
    ] {
        everything.push_str(&shown_value);
    }
    assert_no_secret(
        &everything,
        &[
            ("certificate password", MIDDLE_TIER_PFX_PASSWORD),
            ("wrong certificate password", "wrong-password-0c2f"),
            ("private key", &key_line),
            ("user assertion", &assertion),
            ("access token", first.token.expose_secret()),
            ("refreshed access token", refreshed.token.expose_secret()),
        ],
    );
}
