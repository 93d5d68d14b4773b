//! Replays the committed `jwt_decode` fuzz corpus (`fuzz/corpus/jwt_decode/`) through the
//! fuzz target's own harness (`fuzz/harness/jwt_decode.rs`), on stable Rust and without
//! cargo-fuzz. The library's corpora are replayed by
//! `crates/entra-identity/tests/fuzz_corpus.rs`.

#[path = "../../../fuzz/harness/replay.rs"]
mod corpus;
#[path = "../../../fuzz/harness/jwt_decode.rs"]
mod jwt_decode;

#[test]
fn jwt_decode_corpus() {
    corpus::replay(env!("CARGO_MANIFEST_DIR"), "jwt_decode", jwt_decode::run);
}
