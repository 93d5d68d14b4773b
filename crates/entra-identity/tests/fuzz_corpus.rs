//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/`) through the fuzz targets'
//! own harnesses (`fuzz/harness/`), on stable Rust and without cargo-fuzz: every input the
//! fuzzers kept must still be handled without a panic. The CLI's JWT decoder is replayed by
//! `crates/entra-cli/tests/fuzz_corpus.rs`.

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

#[path = "../../../fuzz/harness/replay.rs"]
mod corpus;

fn replay(target: &str, run: fn(&[u8])) {
    corpus::replay(env!("CARGO_MANIFEST_DIR"), target, run);
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
