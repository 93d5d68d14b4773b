//! Replays the committed `access_token` fuzz corpus (`fuzz/corpus/access_token/`) through the
//! fuzz target's own harness (`fuzz/harness/access_token.rs`), on stable Rust and without
//! cargo-fuzz.

#[path = "../../../fuzz/harness/access_token.rs"]
mod access_token;
#[path = "../../../fuzz/harness/replay.rs"]
mod corpus;

#[test]
fn access_token_corpus() {
    corpus::replay(
        env!("CARGO_MANIFEST_DIR"),
        "access_token",
        access_token::run,
    );
}

/// The seeds signed with the harness's key are accepted, and each hostile one refused: the
/// harness reaches past the signature, so the fuzzer explores the claim checks.
#[test]
fn the_seeds_reach_the_checks_they_are_named_for() {
    use entra_identity_web::Rejection;
    let directory = corpus::corpus_directory(env!("CARGO_MANIFEST_DIR"), "access_token");
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
