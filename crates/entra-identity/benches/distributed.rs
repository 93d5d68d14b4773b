//! Where a token comes from, and what it costs: the in-process cache, Redis, or Entra ID
//! (the emulator), and how many Redis round trips each `get_token` makes.
//!
//! `cargo bench -p entra-identity --features redis --bench distributed`
//!
//! Needs `redis-server` on the PATH (scripts/test installs it); it is started on a free port.

#![allow(missing_docs)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::SCOPE;
use entra_identity::TokenRequestOptions;
use entra_identity::{DistributedCache, RedisStore};

mod common;

const RUNS: usize = 200;

fn main() {
    let Some(mut redis) = start_redis() else {
        println!("redis-server is not installed: nothing to measure (scripts/test installs it)");
        return;
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(measure(redis.port));
    let _ = redis.child.kill();
    let _ = redis.child.wait();
}

struct Redis {
    child: Child,
    port: u16,
}

fn start_redis() -> Option<Redis> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let mut child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .spawn()
        .ok()?;
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(Redis { child, port });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

async fn measure(port: u16) {
    let (emulator, assertion) = common::workload_emulator(Vec::new()).await;
    let url = format!("redis://127.0.0.1:{port}/");
    let store = RedisStore::connect(&url).await.expect("redis");
    let shared = DistributedCache::new(store, "bench", [3; 32]);
    // Every credential has a token cache of its own: they share this client's warm pool.
    let http = common::trusting_client(&emulator);
    let build = |distributed: Option<DistributedCache>| {
        let mut builder =
            common::workload_credential(&emulator, &assertion).http_client(http.clone());
        if let Some(distributed) = distributed {
            builder = builder.distributed_cache(distributed);
        }
        builder.build().expect("credential")
    };

    // Entra ID: a new credential (empty cache) and no distributed cache, over a warm pool.
    let warm = build(None);
    warm.get_token(&[SCOPE], TokenRequestOptions::new())
        .await
        .expect("warm-up");
    let mut entra = Vec::new();
    for _ in 0..RUNS {
        let credential = build(None);
        let started = Instant::now();
        credential
            .get_token(&[SCOPE], TokenRequestOptions::new())
            .await
            .expect("token");
        entra.push(started.elapsed());
    }

    // Fill Redis once, then each new credential finds the token there.
    let commands_before = redis_commands(port);
    build(Some(shared.clone()))
        .get_token(&[SCOPE], TokenRequestOptions::new())
        .await
        .expect("fill");
    let commands_after_miss = redis_commands(port);
    let mut redis_hits = Vec::new();
    for _ in 0..RUNS {
        let credential = build(Some(shared.clone()));
        let started = Instant::now();
        credential
            .get_token(&[SCOPE], TokenRequestOptions::new())
            .await
            .expect("token");
        redis_hits.push(started.elapsed());
    }
    let commands_after_hits = redis_commands(port);

    // The in-process cache of a credential that has the token.
    let credential = build(Some(shared.clone()));
    credential
        .get_token(&[SCOPE], TokenRequestOptions::new())
        .await
        .expect("token");
    let commands_before_memory = redis_commands(port);
    let mut memory = Vec::new();
    for _ in 0..RUNS {
        let started = Instant::now();
        for _ in 0..1000 {
            std::hint::black_box(
                credential
                    .get_token(&[SCOPE], TokenRequestOptions::new())
                    .await
                    .expect("token"),
            );
        }
        memory.push(started.elapsed() / 1000);
    }
    let commands_after_memory = redis_commands(port);
    let requests = emulator.counters().token_requests;

    println!("where a token comes from (median of {RUNS})");
    println!(
        "  in-process cache hit      {:>10.3} µs   Redis round trips per call: {:.2}",
        median(&mut memory),
        per_call(commands_before_memory, commands_after_memory, RUNS * 1000)
    );
    println!(
        "  Redis hit (new credential){:>10.3} µs   Redis round trips per call: {:.2}",
        median(&mut redis_hits),
        per_call(commands_after_miss, commands_after_hits, RUNS)
    );
    println!(
        "  Entra ID (new credential) {:>10.3} µs   Redis round trips per miss: {:.2}",
        median(&mut entra),
        per_call(commands_before, commands_after_miss, 1)
    );
    println!(
        "  token requests the emulator saw: {requests} ({} expected: the warm-up, {RUNS} fetches, one fill)",
        RUNS + 2
    );
}

fn median(samples: &mut [Duration]) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1e6
}

fn per_call(before: u64, after: u64, calls: usize) -> f64 {
    (after - before) as f64 / calls as f64
}

/// Redis commands served so far, less the INFO call that reads them.
fn redis_commands(port: u16) -> u64 {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).expect("client");
    let mut connection = client.get_connection().expect("connection");
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut connection)
        .expect("INFO");
    info.lines()
        .filter(|line| {
            line.starts_with("cmdstat_get:")
                || line.starts_with("cmdstat_set:")
                || line.starts_with("cmdstat_pexpire:")
        })
        .filter_map(|line| {
            line.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}
