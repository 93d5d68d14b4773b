//! The corpus replay the workspace's `tests/fuzz_corpus.rs` files share (not a fuzz target):
//! every input a fuzzer kept goes through its target's harness again, on stable Rust.

use std::path::{Path, PathBuf};
use std::time::Instant;

/// The committed corpus of `target`, from a crate directory of the workspace.
pub(crate) fn corpus_directory(manifest_dir: &str, target: &str) -> PathBuf {
    Path::new(manifest_dir)
        .join("../../fuzz/corpus")
        .join(target)
}

/// Runs every input of `target`'s corpus through `run`; fails when the corpus is missing or
/// empty, so that the replay never passes by finding nothing.
pub(crate) fn replay(manifest_dir: &str, target: &str, run: fn(&[u8])) {
    let directory = corpus_directory(manifest_dir, target);
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
