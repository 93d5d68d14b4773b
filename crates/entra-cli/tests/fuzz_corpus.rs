//! Replays the committed `jwt_decode` fuzz corpus (`fuzz/corpus/jwt_decode/`) through the
//! fuzz target's own harness (`fuzz/harness/jwt_decode.rs`), on stable Rust and without
//! cargo-fuzz. The library's corpora are replayed by
//! `crates/entra-identity/tests/fuzz_corpus.rs`.

use std::path::PathBuf;

#[path = "../../../fuzz/harness/jwt_decode.rs"]
mod jwt_decode;

#[test]
fn jwt_decode_corpus() {
    let directory = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/jwt_decode");
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
    for input in &inputs {
        let data = std::fs::read(input).expect("a corpus input");
        if std::panic::catch_unwind(|| jwt_decode::run(&data)).is_err() {
            panic!("jwt_decode: the input {} panicked", input.display());
        }
    }
}
