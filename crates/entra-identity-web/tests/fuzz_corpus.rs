//! Replays the committed `access_token` fuzz corpus (`fuzz/corpus/access_token/`) through the
//! fuzz target's own harness (`fuzz/harness/access_token.rs`), on stable Rust and without
//! cargo-fuzz.

use std::path::PathBuf;

#[path = "../../../fuzz/harness/access_token.rs"]
mod access_token;

#[test]
fn access_token_corpus() {
    let directory =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/access_token");
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
        if std::panic::catch_unwind(|| access_token::run(&data)).is_err() {
            panic!("access_token: the input {} panicked", input.display());
        }
    }
}

/// The seeds signed with the harness's key are accepted, and each hostile one refused: the
/// harness reaches past the signature, so the fuzzer explores the claim checks.
#[test]
fn the_seeds_reach_the_checks_they_are_named_for() {
    use entra_identity_web::Rejection;
    let directory =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/access_token");
    let token = |name: &str| {
        let bytes = std::fs::read(directory.join(format!("seed-token-{name}"))).expect("seed");
        String::from_utf8(bytes[1..].to_vec()).expect("utf-8")
    };
    let validator = access_token::validator();
    let validate = |name: &str| {
        entra_identity_web::internal::validate_now(validator, &token(name))
            .expect("offline")
            .err()
    };
    for accepted in [
        "valid-v2",
        "valid-v1-app-id-uri",
        "valid-app-role",
        "valid-aud-array",
    ] {
        assert_eq!(validate(accepted), None, "{accepted}");
    }
    for (name, rejection) in [
        ("expired", Rejection::Expired),
        ("not-yet", Rejection::NotYetValid),
        ("wrong-aud", Rejection::WrongAudience),
        ("wrong-tenant", Rejection::WrongIssuer),
        ("tid-iss-mismatch", Rejection::WrongIssuer),
        ("missing-scope", Rejection::MissingScope),
        ("unknown-kid", Rejection::UnknownKey),
        ("no-kid", Rejection::UnknownKey),
        ("tampered", Rejection::BadSignature),
        ("alg-none", Rejection::UnsupportedAlgorithm),
        ("hs256", Rejection::UnsupportedAlgorithm),
        ("two-parts", Rejection::Malformed),
        ("empty", Rejection::Malformed),
    ] {
        assert_eq!(validate(name), Some(rejection), "{name}");
    }
}
