//! Token endpoint throughput and latency: `client_credentials` with a secret over keep-alive
//! HTTPS connections, with client and server sharing the machine.
//!
//! `cargo bench -p entra-emulator --bench token_throughput [-- SECONDS CONCURRENCY]`
//!
//! Prints requests per second and latency percentiles. The baseline in the same run is the
//! emulator's JWKS endpoint (same TLS and HTTP path, no signing), so the ratio shows what RS256
//! signing and form handling cost.

#![allow(missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use common::{CLIENT_ID, SECRET, TENANT, start_emulator, trusting_client};

struct Figures {
    requests_per_second: f64,
    p50: Duration,
    p99: Duration,
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|arg| !arg.starts_with('-'));
    let seconds: u64 = args.next().and_then(|v| v.parse().ok()).unwrap_or(5);
    let concurrency: usize = args.next().and_then(|v| v.parse().ok()).unwrap_or(16);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let emulator = start_emulator().await;
        let client = trusting_client(&emulator)
            .pool_max_idle_per_host(concurrency)
            .build()
            .expect("client");
        let duration = Duration::from_secs(seconds);
        let keys_url = format!("{}/{TENANT}/discovery/v2.0/keys", emulator.url());
        let token_url = emulator.token_endpoint(TENANT);

        let baseline = measure(&client, concurrency, duration, move |client| {
            client.get(keys_url.clone())
        })
        .await;
        let token = measure(&client, concurrency, duration, move |client| {
            client.post(token_url.clone()).form(&[
                ("grant_type", "client_credentials"),
                ("client_id", CLIENT_ID),
                ("client_secret", SECRET),
                ("scope", "https://graph.microsoft.com/.default"),
            ])
        })
        .await;
        println!(
            "token endpoint throughput ({concurrency} keep-alive connections, {seconds} s each)"
        );
        report("baseline GET keys", &baseline);
        report("POST token (secret)", &token);
        println!(
            "ratio: token endpoint runs at {:.2}x the baseline's request rate",
            token.requests_per_second / baseline.requests_per_second
        );
    });
}

fn report(name: &str, figures: &Figures) {
    println!(
        "{name:<22} {:>9.0} req/s   p50 {:>7.2} ms   p99 {:>7.2} ms",
        figures.requests_per_second,
        figures.p50.as_secs_f64() * 1e3,
        figures.p99.as_secs_f64() * 1e3
    );
}

async fn measure(
    client: &reqwest::Client,
    concurrency: usize,
    duration: Duration,
    request: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder + Send + Sync + 'static,
) -> Figures {
    let request = Arc::new(request);
    // Warm the connections up before timing.
    for _ in 0..concurrency {
        let response = request(client).send().await.expect("warm-up");
        assert!(
            response.status().is_success(),
            "warm-up failed: {}",
            response.status()
        );
        let _ = response.bytes().await;
    }
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let client = client.clone();
        let request = request.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let sent = Instant::now();
                let response = request(&client).send().await.expect("response");
                assert!(
                    response.status().is_success(),
                    "status {}",
                    response.status()
                );
                let _ = response.bytes().await.expect("body");
                latencies.push(sent.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await.expect("worker"));
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let percentile = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p) as usize];
    Figures {
        requests_per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: percentile(0.50),
        p99: percentile(0.99),
    }
}
