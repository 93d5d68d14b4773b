//! `entra-identity-web`'s validation of incoming access tokens (`Validator::validate`): the
//! header read, the algorithm and key checks, jsonwebtoken's decoding and verification, and
//! the claim checks; offline, with one fixed RSA key and a fixed clock.
//!
//! Input: a mode byte, then the rest. Even mode: the rest (UTF-8) is a bearer token validated
//! whole. Odd mode: the rest is a claims object checked alone (lifetime, audience, issuer,
//! scopes), as after a valid signature.
//!
//! Promises checked besides not panicking: a validation never waits (no key is ever fetched);
//! whatever is accepted is for this API, from this tenant's issuer, and within its lifetime.

use std::sync::{Arc, OnceLock};

use entra_identity::ManualClock;
use entra_identity_web::Validator;
use entra_identity_web::internal::{check_claims, offline_validator, validate_now};

/// The test key's modulus (base64url); its private half signed the seeds and was discarded.
const N: &str = "qeR9_taug2799bMtO_QxLgzWEXT40ATUEF7X3wo5tbn_mjIbJcCAqZdJGxWzQMQsnoqlqd8RU2gTLDCK6lrJ9mgi6v_u-Y4scRb3SYCkgbDGhR7nSX1UsJxz-q7qAf4QNCJDg7b8d3Les4CRT-_ec8RR_lffm67cU04kq4FV4MX2yTP3lS-QlAEyZxkryVNcKYx8p5r67uXIvvR0FKjntimFMefOah5iOwDuiJBb6qheO57XBZ973CT0lSxIIll-WoplzC1XDcFGmd3bdd27fEHCk7metLQPvMDb-2IR1uTTMQGPhqn1fT9lGi43f-KFkXfvUg0dy1_EBfmKFnaoww";
const E: &str = "AQAB";
const KID: &str = "fuzz-key";
const NOW: i64 = 1_800_000_000;
const TENANT: &str = "aaaaaaaa-0000-0000-0000-000000000001";
const AUDIENCES: [&str; 2] = ["10000000-0000-0000-0000-000000000010", "api://middle-tier"];
const AUTHORITY: &str = "https://login.microsoftonline.com";

pub(crate) fn validator() -> &'static Validator {
    static VALIDATOR: OnceLock<Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        let builder = Validator::builder()
            .tenant(TENANT)
            .audience(AUDIENCES[0])
            .audience(AUDIENCES[1])
            .required_scopes(["access_as_user"])
            .required_roles(["Data.Write"])
            .clock(Arc::new(ManualClock::new(NOW)));
        offline_validator(builder, KID, N, E).expect("the fixed key is usable")
    })
}

/// Checks what an accepted claims object must hold.
fn assert_acceptable(claims: &serde_json::Map<String, serde_json::Value>) {
    let text = |name: &str| claims.get(name).and_then(serde_json::Value::as_str);
    let tid = text("tid").expect("accepted without tid");
    assert!(
        tid.eq_ignore_ascii_case(TENANT),
        "accepted from tenant {tid}"
    );
    let iss = text("iss").expect("accepted without iss");
    assert!(
        iss.eq_ignore_ascii_case(&format!("{AUTHORITY}/{TENANT}/v2.0"))
            || iss.eq_ignore_ascii_case(&format!("https://sts.windows.net/{TENANT}/")),
        "accepted from issuer {iss}"
    );
    let audience_ok = match claims.get("aud") {
        Some(serde_json::Value::String(aud)) => AUDIENCES.contains(&aud.as_str()),
        Some(serde_json::Value::Array(auds)) => auds
            .iter()
            .filter_map(serde_json::Value::as_str)
            .any(|aud| AUDIENCES.contains(&aud)),
        _ => false,
    };
    assert!(audience_ok, "accepted for another audience");
    let exp = claims
        .get("exp")
        .and_then(serde_json::Value::as_f64)
        .expect("accepted without exp");
    assert!(exp + 300.0 >= NOW as f64, "accepted after expiry");
}

pub(crate) fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let validator = validator();
    if mode % 2 == 0 {
        let Ok(token) = std::str::from_utf8(rest) else {
            return;
        };
        let outcome = validate_now(validator, token).expect("an offline validation waited");
        if let Ok(claims) = outcome {
            assert_acceptable(claims.as_map());
        }
    } else if check_claims(validator, rest).is_ok() {
        let claims: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(rest).expect("checked claims are a JSON object");
        assert_acceptable(&claims);
    }
}
