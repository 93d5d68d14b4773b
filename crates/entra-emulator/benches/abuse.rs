//! A normal client's token latency while an attacker holds stalled connections and floods the
//! token endpoint with maximum-size forms of distinct fields (issue 13's scenario).
//!
//! `cargo bench -p entra-emulator --bench abuse [-- STALLED FLOODERS REQUESTS]`
//!
//! Prints the latency percentiles of `client_credentials` requests without, then under, abuse.
//! The target is under 100 ms.

#![allow(missing_docs)]

#[path = "../tests/common/abuse.rs"]
mod abuse;

use std::time::{Duration, Instant};

mod common;

use common::{CLIENT_ID, SECRET, TENANT, start_emulator, trusting_client};

fn main() {
    let mut args = std::env::args().skip(1).filter(|arg| !arg.starts_with('-'));
    let stalled_count: usize = args.next().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let flooders: usize = args.next().and_then(|v| v.parse().ok()).unwrap_or(4);
    let requests: usize = args.next().and_then(|v| v.parse().ok()).unwrap_or(200);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let emulator = start_emulator().await;
        let client = || trusting_client(&emulator).build().expect("client");
        let victim = client();
        let token_url = emulator.token_endpoint(TENANT);

        let quiet = measure(&victim, &token_url, requests).await;
        report("no abuse", &quiet);

        let connector = abuse::connector(&emulator.ca_pem());
        let path = format!("/{TENANT}/oauth2/v2.0/token");
        let mut stalled = Vec::with_capacity(stalled_count);
        for _ in 0..stalled_count {
            stalled.push(abuse::stall_body(&connector, emulator.url(), &path).await);
        }
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let flood = abuse::flood_forms(&client(), &token_url, flooders, stop_rx);
        let abused = measure(&victim, &token_url, requests).await;
        let _ = stop.send(true);
        let mut forms = 0;
        for task in flood {
            forms += task.await.unwrap_or(0);
        }
        report(
            &format!(
                "{stalled_count} stalled bodies, {flooders} flooders ({forms} forms of {} KiB)",
                abuse::MAX_BODY_BYTES / 1024
            ),
            &abused,
        );
        drop(stalled);
    });
}

async fn measure(client: &reqwest::Client, url: &str, requests: usize) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(requests);
    for _ in 0..requests {
        let started = Instant::now();
        let response = client
            .post(url)
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", CLIENT_ID),
                ("client_secret", SECRET),
                ("scope", "https://graph.microsoft.com/.default"),
            ])
            .send()
            .await
            .expect("response");
        assert_eq!(response.status(), 200);
        let _ = response.bytes().await;
        latencies.push(started.elapsed());
    }
    latencies.sort();
    latencies
}

fn report(label: &str, sorted: &[Duration]) {
    let at = |fraction: f64| sorted[((sorted.len() - 1) as f64 * fraction) as usize];
    println!(
        "{label}: {} requests, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        sorted.len(),
        at(0.5).as_secs_f64() * 1000.0,
        at(0.99).as_secs_f64() * 1000.0,
        at(1.0).as_secs_f64() * 1000.0,
    );
}
