//! The emulator under abuse: stalled connections, oversized forms, too many connections.

mod common;

use std::time::Duration;

use common::abuse::{self, read_until_closed, stall_body};
use common::*;
use entra_emulator::EmulatorConfig;
use tokio::net::TcpStream;

/// How long a test waits for the server to do something it must do: far longer than the
/// configured timeouts, so it only fails when the server never does it.
const LIVENESS_BOUND: Duration = Duration::from_secs(5);

fn secret_request() -> [(&'static str, &'static str); 4] {
    [
        ("grant_type", "client_credentials"),
        ("client_id", API),
        ("client_secret", SECRET),
        ("scope", "api://downstream/.default"),
    ]
}

#[tokio::test]
async fn a_stalled_body_gets_408_and_the_connection_closes() {
    let harness = start_with(EmulatorConfig {
        body_read_timeout_ms: Some(200),
        ..config()
    })
    .await;
    let connector = abuse::connector(&harness.emulator.ca_pem());
    let path = format!("/{TENANT}/oauth2/v2.0/token");
    let mut stalled = stall_body(&connector, harness.emulator.url(), &path).await;
    let answer = tokio::time::timeout(LIVENESS_BOUND, read_until_closed(&mut stalled))
        .await
        .expect("the server answers a stalled body and closes the connection");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("AADSTS9002313"), "{answer}");
}

#[tokio::test]
async fn silent_connections_are_closed_by_the_header_timeout() {
    let harness = start_with(EmulatorConfig {
        header_read_timeout_ms: Some(200),
        ..config()
    })
    .await;
    let connector = abuse::connector(&harness.emulator.ca_pem());
    let address = abuse::address(harness.emulator.url());
    // One connection that never starts TLS, one that never sends a request.
    let mut silent_tcp = TcpStream::connect(&address).await.expect("connect");
    let tcp = TcpStream::connect(&address).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let mut silent_tls = connector.connect(name, tcp).await.expect("handshake");
    tokio::time::timeout(LIVENESS_BOUND, read_until_closed(&mut silent_tcp))
        .await
        .expect("a connection without a handshake is closed");
    tokio::time::timeout(LIVENESS_BOUND, read_until_closed(&mut silent_tls))
        .await
        .expect("a connection without a request is closed");
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_and_are_served_when_slots_free() {
    let harness = start_with(EmulatorConfig {
        max_connections: Some(4),
        header_read_timeout_ms: Some(300),
        ..config()
    })
    .await;
    let address = abuse::address(harness.emulator.url());
    let mut stalled = Vec::new();
    for _ in 0..12 {
        stalled.push(TcpStream::connect(&address).await.expect("connect"));
    }
    // Served once the stalled connections ahead of it have timed out.
    let (status, body) = tokio::time::timeout(
        LIVENESS_BOUND * 2,
        harness.post_token(TENANT, &secret_request()),
    )
    .await
    .expect("the request is served");
    assert_eq!(status, 200, "{body}");
    for connection in &mut stalled {
        tokio::time::timeout(LIVENESS_BOUND, read_until_closed(connection))
            .await
            .expect("closed");
    }
    let counters = harness.emulator.counters();
    assert!(
        (1..=4).contains(&counters.peak_open_connections),
        "{counters:?}"
    );
}

#[tokio::test]
async fn a_normal_client_is_served_while_an_attacker_stalls_and_floods() {
    // The stalled bodies are held for the whole test, however slow the machine.
    let harness = start_with(EmulatorConfig {
        body_read_timeout_ms: Some(600_000),
        ..config()
    })
    .await;
    let connector = abuse::connector(&harness.emulator.ca_pem());
    let path = format!("/{TENANT}/oauth2/v2.0/token");
    let mut stalled = Vec::new();
    for _ in 0..200 {
        stalled.push(stall_body(&connector, harness.emulator.url(), &path).await);
    }
    let attacker = client_trusting(&harness.emulator.ca_pem());
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let flooders = abuse::flood_forms(&attacker, &harness.token_url(TENANT), 4, stop_rx);

    // Another client, on its own connections.
    let victim = client_trusting(&harness.emulator.ca_pem());
    for _ in 0..20 {
        let response = tokio::time::timeout(
            LIVENESS_BOUND,
            victim
                .post(harness.token_url(TENANT))
                .form(&secret_request())
                .send(),
        )
        .await
        .expect("answered")
        .expect("response");
        assert_eq!(response.status(), 200);
    }
    let _ = stop.send(true);
    let mut floods = 0;
    for flooder in flooders {
        floods += flooder.await.expect("flooder");
    }
    assert!(floods > 0);
    let counters = harness.emulator.counters();
    assert!(counters.open_connections >= 200, "{counters:?}");
    drop(stalled);
}
