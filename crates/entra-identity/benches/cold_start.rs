//! A new process's first credential and first token, against a bare reqwest POST of the same
//! form made by a new process: what a CLI or a serverless cold start pays.
//!
//! `cargo bench -p entra-identity --bench cold_start [-- RUNS]`
//!
//! The parent starts an emulator and mints a federated assertion, then runs this same binary
//! as a child, alternating two modes, `RUNS` times each (21 by default):
//!
//! - `bare`: a current-thread tokio runtime, a reqwest client trusting the emulator's CA (read
//!   from a file), one POST of the client-assertion form, the JSON parsed;
//! - `ours`: the same runtime, a `ClientAssertionCredential` trusting the same CA file, one
//!   `get_token`.
//!
//! Each child reports the time from the start of its `main` to the token; the parent also
//! times the whole process (spawn to exit), which adds the same binary's loading to both.

#![allow(missing_docs)]

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{CLIENT, SCOPE, TENANT};
use entra_identity::{ClientAssertionCredential, HttpOptions, MapEnvironment, TokenRequestOptions};

mod common;

const MODE: &str = "COLD_START_MODE";
const TOKEN_URL: &str = "COLD_START_TOKEN_URL";
const AUTHORITY: &str = "COLD_START_AUTHORITY";
const CA_FILE: &str = "COLD_START_CA_FILE";
const ASSERTION: &str = "COLD_START_ASSERTION";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn main() {
    let started = Instant::now();
    if let Ok(mode) = std::env::var(MODE) {
        child(&mode, started);
        return;
    }
    let runs: usize = std::env::args()
        .skip(1)
        .find(|arg| !arg.starts_with('-'))
        .and_then(|arg| arg.parse().ok())
        .unwrap_or(21);
    parent(runs);
}

fn parent(runs: usize) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (emulator, assertion) = runtime.block_on(common::workload_emulator(Vec::new()));
    let directory = tempfile::tempdir().expect("temporary directory");
    let ca_file = directory.path().join("ca.pem");
    std::fs::write(&ca_file, emulator.ca_pem()).expect("CA file");
    let executable = std::env::current_exe().expect("this binary");
    let run = |mode: &str| -> (Duration, Duration) {
        let spawned = Instant::now();
        let output = Command::new(&executable)
            .env(MODE, mode)
            .env(TOKEN_URL, emulator.token_endpoint(TENANT))
            .env(AUTHORITY, emulator.url())
            .env(CA_FILE, &ca_file)
            .env(ASSERTION, &assertion)
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("child");
        let process = spawned.elapsed();
        assert!(
            output.status.success(),
            "{mode} child failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let inside: u64 = String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .expect("the child's time in nanoseconds");
        (Duration::from_nanos(inside), process)
    };
    // One of each first, untimed: the binary and the emulator warm up.
    run("bare");
    run("ours");
    let (mut bare, mut ours) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        bare.push(run("bare"));
        ours.push(run("ours"));
    }
    let median = |runs: &mut Vec<(Duration, Duration)>,
                  pick: fn(&(Duration, Duration)) -> Duration| {
        let mut values: Vec<Duration> = runs.iter().map(pick).collect();
        values.sort();
        values[values.len() / 2]
    };
    let (bare_inside, ours_inside) = (median(&mut bare, |r| r.0), median(&mut ours, |r| r.0));
    let (bare_process, ours_process) = (median(&mut bare, |r| r.1), median(&mut ours, |r| r.1));
    println!("a new process's first token, median of {runs} processes each (interleaved):");
    println!(
        "  {:<52} {:>10} {:>10} {:>8}",
        "", "bare POST", "ours", "ratio"
    );
    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1e3);
    println!(
        "  {:<52} {:>10} {:>10} {:>7.2}x",
        "from main() to the token (runtime, client, request)",
        ms(bare_inside),
        ms(ours_inside),
        ours_inside.as_secs_f64() / bare_inside.as_secs_f64()
    );
    println!(
        "  {:<52} {:>10} {:>10} {:>7.2}x",
        "whole process, spawn to exit",
        ms(bare_process),
        ms(ours_process),
        ours_process.as_secs_f64() / bare_process.as_secs_f64()
    );
}

/// With `COLD_START_VERBOSE` set, a child tells where its time goes (on standard error).
fn phase(name: &str, started: Instant) {
    if std::env::var_os("COLD_START_VERBOSE").is_some() {
        eprintln!("{name}: {:.2} ms", started.elapsed().as_secs_f64() * 1e3);
    }
}

fn child(mode: &str, started: Instant) {
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let ca = std::fs::read_to_string(var(CA_FILE)).expect("CA file");
    let assertion = var(ASSERTION);
    phase("runtime built, CA read", started);
    runtime.block_on(async {
        match mode {
            "bare" => {
                let client = reqwest::Client::builder()
                    .tls_certs_merge([reqwest::Certificate::from_pem(ca.as_bytes()).expect("CA")])
                    .build()
                    .expect("client");
                phase("client built", started);
                let response = client
                    .post(var(TOKEN_URL))
                    .form(&[
                        ("client_assertion", assertion.as_str()),
                        ("client_assertion_type", ASSERTION_TYPE),
                        ("client_id", CLIENT),
                        ("grant_type", "client_credentials"),
                        ("scope", SCOPE),
                    ])
                    .send()
                    .await
                    .expect("POST");
                phase("response head", started);
                assert!(response.status().is_success(), "{}", response.status());
                let body = response.bytes().await.expect("body");
                let json: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
                assert!(json["access_token"].is_string());
            }
            "ours" => {
                let credential = ClientAssertionCredential::builder(TENANT, CLIENT, move || {
                    let assertion = assertion.clone();
                    async move { Ok::<_, std::io::Error>(assertion) }
                })
                .authority(var(AUTHORITY))
                .http_options(HttpOptions::default().trust_pem(ca))
                .environment(Arc::new(MapEnvironment::new()))
                .build()
                .expect("credential");
                phase("credential built", started);
                let token = credential
                    .get_token(&[SCOPE], TokenRequestOptions::default())
                    .await
                    .expect("token");
                assert!(!token.token.expose_secret().is_empty());
            }
            other => panic!("unknown mode {other}"),
        }
    });
    println!("{}", started.elapsed().as_nanos());
}
