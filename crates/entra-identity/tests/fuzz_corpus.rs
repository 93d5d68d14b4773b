//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/`) through the fuzz targets'
//! own harnesses (`fuzz/harness/`), on stable Rust and without cargo-fuzz: every input the
//! fuzzers kept must still be handled without a panic. The CLI's JWT decoder is replayed by
//! `crates/entra-cli/tests/fuzz_corpus.rs`.

use std::path::PathBuf;
use std::time::Instant;

#[path = "../../../fuzz/harness/certificate.rs"]
mod certificate;
#[path = "../../../fuzz/harness/claims.rs"]
mod claims;
#[path = "../../../fuzz/harness/msal_cache.rs"]
mod msal_cache;
#[path = "../../../fuzz/harness/retry_after.rs"]
mod retry_after;
#[path = "../../../fuzz/harness/token_response.rs"]
mod token_response;

/// Runs every input of `target`'s corpus through `run`; fails when the corpus is missing or
/// empty, so that the replay never passes by finding nothing.
fn replay(target: &str, run: fn(&[u8])) {
    let directory = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&directory)
        .unwrap_or_else(|error| panic!("the corpus {} is missing: {error}", directory.display()))
        .map(|entry| entry.expect("a corpus entry").path())
        .filter(|path| path.is_file())
        .collect();
    inputs.sort();
    assert!(
        !inputs.is_empty(),
        "the corpus {} is empty",
        directory.display()
    );
    let started = Instant::now();
    for input in &inputs {
        let data = std::fs::read(input).expect("a corpus input");
        if std::panic::catch_unwind(|| run(&data)).is_err() {
            panic!("{target}: the input {} panicked", input.display());
        }
    }
    eprintln!(
        "{target}: {} inputs replayed in {:?}",
        inputs.len(),
        started.elapsed()
    );
}

#[test]
fn token_response_corpus() {
    replay("token_response", token_response::run);
}

#[test]
fn certificate_corpus() {
    replay("certificate", certificate::run);
}

#[test]
fn msal_cache_corpus() {
    replay("msal_cache", msal_cache::run);
}

#[test]
fn claims_corpus() {
    replay("claims", claims::run);
}

#[test]
fn retry_after_corpus() {
    replay("retry_after", retry_after::run);
}
