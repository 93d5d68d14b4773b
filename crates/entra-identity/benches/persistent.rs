//! What the persistent cache costs a new process: the first token of a new credential from
//! Entra ID (the emulator), from the cache file, or from the Secret Service (gnome-keyring),
//! and what building a credential with each costs.
//!
//! `cargo bench -p entra-identity --bench persistent`
//!
//! Needs dbus-daemon and gnome-keyring-daemon (scripts/test installs them); a private bus and
//! keyring are started for the run.

#![allow(missing_docs)]

#[cfg(target_os = "linux")]
#[path = "../tests/common/keyring.rs"]
mod keyring;

#[cfg(target_os = "linux")]
mod common;

#[cfg(not(target_os = "linux"))]
fn main() {
    println!("the Secret Service exists on Linux only: nothing to measure here");
}

#[cfg(target_os = "linux")]
fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(linux::measure());
}

#[cfg(target_os = "linux")]
mod linux {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use entra_emulator::ApplicationConfig;
    use entra_identity::{MapEnvironment, TokenCachePersistenceOptions, TokenRequestOptions};

    use crate::common::{self, SCOPE};
    use crate::keyring::Session;

    const RUNS: usize = 200;
    /// Other applications' tokens in the cache, so reads parse a cache of realistic size.
    const OTHER_TOKENS: usize = 50;

    #[derive(Clone, Copy)]
    enum Source {
        Entra,
        File,
        Keyring,
    }

    pub(crate) async fn measure() {
        let session = Session::start();
        // Other applications, whose tokens fill the caches.
        let others = (0..OTHER_TOKENS)
            .map(|index| ApplicationConfig {
                name: format!("other-{index}"),
                app_id_uri: Some(format!("api://other-{index}")),
                ..ApplicationConfig::default()
            })
            .collect();
        let (emulator, assertion) = common::workload_emulator(others).await;
        let file_home = tempfile::tempdir().expect("home");
        let build = |source: Source| {
            let builder = common::workload_credential(&emulator, &assertion);
            match source {
                Source::Entra => builder,
                Source::File => builder
                    .environment(Arc::new(
                        MapEnvironment::new().with("HOME", file_home.path().to_string_lossy()),
                    ))
                    .cache_persistence_options(
                        TokenCachePersistenceOptions::new()
                            .name("bench")
                            .allow_unencrypted_storage(true),
                    ),
                Source::Keyring => builder
                    .environment(session.environment())
                    .cache_persistence_options(TokenCachePersistenceOptions::new().name("bench")),
            }
            .build()
            .expect("credential")
        };

        // Fill both caches with the token and other entries; warm the connection pool. The
        // first token request with the Secret Service connects to it for the whole process.
        let mut first_keyring_build = Duration::ZERO;
        for source in [Source::Entra, Source::File, Source::Keyring] {
            let started = Instant::now();
            let credential = build(source);
            if matches!(source, Source::Keyring) {
                first_keyring_build = started.elapsed();
            }
            for other in 0..OTHER_TOKENS {
                credential
                    .get_token(
                        &[&format!("api://other-{other}/.default")],
                        TokenRequestOptions::new(),
                    )
                    .await
                    .expect("fill");
            }
            credential
                .get_token(&[SCOPE], TokenRequestOptions::new())
                .await
                .expect("fill");
        }
        let requests_before = emulator.counters().token_requests;

        println!(
            "a new credential's first token (median of {RUNS}; caches hold {} tokens)",
            OTHER_TOKENS + 1
        );
        let mut baseline = 0.0;
        for (label, source) in [
            ("Entra ID (no persistent cache)", Source::Entra),
            ("cache file (unencrypted)", Source::File),
            ("Secret Service (gnome-keyring)", Source::Keyring),
        ] {
            let mut builds = Vec::with_capacity(RUNS);
            let mut firsts = Vec::with_capacity(RUNS);
            for _ in 0..RUNS {
                let started = Instant::now();
                let credential = build(source);
                builds.push(started.elapsed());
                let started = Instant::now();
                credential
                    .get_token(&[SCOPE], TokenRequestOptions::new())
                    .await
                    .expect("token");
                firsts.push(started.elapsed());
            }
            let first = median(&mut firsts);
            if matches!(source, Source::Entra) {
                baseline = first;
            }
            println!(
                "  {label:<32} first token {first:>9.1} µs ({:.2}x Entra ID)   build {:>9.1} µs",
                first / baseline,
                median(&mut builds)
            );
        }
        println!(
            "  the process's first credential with the Secret Service: build {:.1} µs \
             (no D-Bus: its first token request connects and checks the keyring)",
            first_keyring_build.as_secs_f64() * 1e6
        );
        let requests = emulator.counters().token_requests - requests_before;
        println!(
            "  token requests during the runs: {requests} ({RUNS} expected, all from the first row)"
        );
    }

    fn median(samples: &mut [Duration]) -> f64 {
        samples.sort();
        samples[samples.len() / 2].as_secs_f64() * 1e6
    }
}
