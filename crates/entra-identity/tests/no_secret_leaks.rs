//! No secret reaches a log line, a `Debug` output or an error message, over whole token flows
//! traced at TRACE level.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;
use entra_emulator::{Fault, FaultRule};
use entra_identity::ClientAssertionCredential;
use entra_identity::TokenRequestOptions;

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
