//! Validating access tokens against the emulator over TLS: what is accepted, and every
//! hostile or wrong token refused with its typed rejection.

mod common;

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::*;
use entra_emulator::UserTokenRequest;
use entra_identity::{Clock, ManualClock};
use entra_identity_web::{Rejection, Validator};
use serde_json::{Value, json};

#[tokio::test]
async fn a_valid_v2_token_is_accepted_with_its_claims() {
    let emulator = emulator().await;
    let validator = validator(&emulator);
    let claims = validator
        .validate(&user_token(&emulator))
        .await
        .expect("valid");
    assert_eq!(claims.object_id(), Some(USER));
    assert_eq!(claims.tenant_id(), TENANT);
    assert_eq!(claims.version(), Some("2.0"));
    assert_eq!(claims.scopes().collect::<Vec<_>>(), ["access_as_user"]);
    assert!(!claims.is_app_only());
    assert_eq!(claims.issuer(), format!("{}/{TENANT}/v2.0", emulator.url()));
}

#[tokio::test]
async fn a_v1_token_for_the_app_id_uri_is_accepted() {
    let emulator = emulator().await;
    let token = mint(
        &emulator,
        UserTokenRequest {
            audience: API_URI.to_owned(),
            version: Some("1.0".to_owned()),
            ..UserTokenRequest::default()
        },
    );
    let claims = validator(&emulator).validate(&token).await.expect("valid");
    assert_eq!(claims.version(), Some("1.0"));
    assert_eq!(claims.issuer(), format!("{}/{TENANT}/", emulator.url()));
    assert!(claims.client_app_id().is_some());

    // A v1.0 token claiming the v2.0 issuer (or the reverse) is refused: the issuer follows
    // the version.
    let only_v1 = Validator::builder()
        .authority(emulator.url())
        .http_client(http(&emulator))
        .tenant(TENANT)
        .audience(API_URI)
        .v1_issuer("https://sts.windows.net/{tenantid}/")
        .build()
        .expect("validator");
    assert_eq!(
        only_v1.validate(&token).await.err(),
        Some(Rejection::WrongIssuer)
    );
}

#[tokio::test]
async fn the_wrong_audience_is_refused() {
    let emulator = emulator().await;
    let token = mint(
        &emulator,
        UserTokenRequest {
            audience: DOWNSTREAM.to_owned(),
            ..UserTokenRequest::default()
        },
    );
    assert_eq!(
        validator(&emulator).validate(&token).await.err(),
        Some(Rejection::WrongAudience)
    );
}

#[tokio::test]
async fn issuers_are_checked_per_tenant() {
    let emulator = emulator().await;
    let foreign = mint(
        &emulator,
        UserTokenRequest {
            tenant: Some(OTHER_TENANT.to_owned()),
            ..UserTokenRequest::default()
        },
    );
    let home = user_token(&emulator);
    // One tenant: the other tenant's token is refused.
    let single = validator(&emulator);
    assert_eq!(
        single.validate(&foreign).await.err(),
        Some(Rejection::WrongIssuer)
    );
    assert!(single.validate(&home).await.is_ok());

    let list = |tenants: Vec<&str>| {
        Validator::builder()
            .authority(emulator.url())
            .http_client(http(&emulator))
            .tenants(tenants)
            .audience(API)
            .build()
            .expect("validator")
    };
    // A list: members accepted, others refused.
    let both = list(vec![TENANT, OTHER_TENANT]);
    assert!(both.validate(&foreign).await.is_ok());
    assert!(both.validate(&home).await.is_ok());
    let other_only = list(vec![OTHER_TENANT]);
    assert_eq!(
        other_only.validate(&home).await.err(),
        Some(Rejection::WrongIssuer)
    );

    // Any tenant: each token's issuer must still be its own tenant's.
    let any = Validator::builder()
        .authority(emulator.url())
        .http_client(http(&emulator))
        .any_tenant()
        .audience(API)
        .build()
        .expect("validator");
    assert!(any.validate(&foreign).await.is_ok());
    assert!(any.validate(&home).await.is_ok());
    // ... and come from this authority: the same token seen through another authority name
    // (the emulator's other host name) has an issuer that does not match.
    let other_authority = Validator::builder()
        .authority(emulator.url().replace("127.0.0.1", "localhost"))
        .http_client(http(&emulator))
        .any_tenant()
        .audience(API)
        .build()
        .expect("validator");
    assert_eq!(
        other_authority.validate(&home).await.err(),
        Some(Rejection::WrongIssuer)
    );
}

#[tokio::test]
async fn lifetimes_are_checked_with_the_allowed_skew() {
    let emulator = emulator().await;
    let expired = |secs| {
        mint(
            &emulator,
            UserTokenRequest {
                expires_in_secs: Some(secs),
                ..UserTokenRequest::default()
            },
        )
    };
    let validator = validator(&emulator);
    // Beyond the default five minutes of skew.
    assert_eq!(
        validator.validate(&expired(-400)).await.err(),
        Some(Rejection::Expired)
    );
    // Within them, accepted; refused without skew.
    let recent = expired(-60);
    assert!(validator.validate(&recent).await.is_ok());
    let strict = validator_builder(&emulator)
        .clock_skew(Duration::ZERO)
        .build()
        .expect("validator");
    assert_eq!(
        strict.validate(&recent).await.err(),
        Some(Rejection::Expired)
    );

    // A token whose nbf is ten minutes in the validator's future.
    let clock = Arc::new(ManualClock::starting_now());
    let token = user_token(&emulator);
    clock.set(clock.now() - 600);
    let early = validator_builder(&emulator)
        .clock(clock.clone())
        .build()
        .expect("validator");
    assert_eq!(
        early.validate(&token).await.err(),
        Some(Rejection::NotYetValid)
    );
    clock.advance(600);
    assert!(early.validate(&token).await.is_ok());
}

#[tokio::test]
async fn required_scopes_and_roles_are_enforced() {
    let emulator = emulator().await;
    let user = mint(
        &emulator,
        UserTokenRequest {
            scopes: vec!["Data.Read".to_owned()],
            ..UserTokenRequest::default()
        },
    );
    let daemon = daemon_token(&emulator, &format!("{API_URI}/.default")).await;
    let requiring = |scopes: &[&str], roles: &[&str]| {
        validator_builder(&emulator)
            .required_scopes(scopes.iter().copied())
            .required_roles(roles.iter().copied())
            .build()
            .expect("validator")
    };
    let read = requiring(&["Data.Read"], &[]);
    assert!(read.validate(&user).await.is_ok());
    assert_eq!(
        read.validate(&daemon).await.err(),
        Some(Rejection::MissingScope)
    );

    let write = requiring(&["Data.Write"], &[]);
    assert_eq!(
        write.validate(&user).await.err(),
        Some(Rejection::MissingScope)
    );

    let role = requiring(&[], &["Data.Write"]);
    let claims = role.validate(&daemon).await.expect("daemon has the role");
    assert!(claims.is_app_only());
    assert_eq!(claims.roles().collect::<Vec<_>>(), ["Data.Write"]);
    assert_eq!(
        role.validate(&user).await.err(),
        Some(Rejection::MissingScope)
    );

    let either = requiring(&["Data.Read"], &["Data.Write"]);
    assert!(either.validate(&user).await.is_ok());
    assert!(either.validate(&daemon).await.is_ok());
}

/// The token's header replaced, its claims and signature kept.
fn with_header(token: &str, header: &Value) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[0] = encode(header);
    parts.join(".")
}

#[tokio::test]
async fn alg_none_is_refused() {
    let emulator = emulator().await;
    let validator = validator(&emulator);
    let token = user_token(&emulator);
    let kid = segment(&token, 0)["kid"].clone();
    let claims = token.split('.').nth(1).expect("claims");
    for alg in ["none", "None", "NONE"] {
        let header = encode(&json!({"alg": alg, "typ": "JWT", "kid": kid}));
        for signature in ["", "e30"] {
            let forged = format!("{header}.{claims}.{signature}");
            assert_eq!(
                validator.validate(&forged).await.err(),
                Some(Rejection::UnsupportedAlgorithm),
                "{alg} with signature '{signature}'"
            );
        }
    }
}

#[tokio::test]
async fn hmac_signed_with_the_public_key_is_refused() {
    let emulator = emulator().await;
    let validator = validator(&emulator);
    let token = user_token(&emulator);
    let kid = segment(&token, 0)["kid"].as_str().expect("kid").to_owned();
    // What an attacker knows of the key: the published JWK.
    let jwks: Value = http(&emulator)
        .get(format!("{}/{TENANT}/discovery/v2.0/keys", emulator.url()))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");
    let jwk = &jwks["keys"][0];
    let der = STANDARD
        .decode(jwk["x5c"][0].as_str().expect("x5c"))
        .expect("der");
    let pem = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        jwk["x5c"][0].as_str().expect("x5c")
    );
    let modulus = URL_SAFE_NO_PAD
        .decode(jwk["n"].as_str().expect("n"))
        .expect("n");
    let claims = token.split('.').nth(1).expect("claims");
    for secret in [der.as_slice(), pem.as_bytes(), modulus.as_slice()] {
        for alg in ["HS256", "HS384", "HS512", "RS256"] {
            let header = encode(&json!({"alg": alg, "typ": "JWT", "kid": kid}));
            let input = format!("{header}.{claims}");
            let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
            let tag = hmac::sign(&key, input.as_bytes());
            let forged = format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
            let expected = if alg == "RS256" {
                Rejection::BadSignature
            } else {
                Rejection::UnsupportedAlgorithm
            };
            assert_eq!(
                validator.validate(&forged).await.err(),
                Some(expected),
                "{alg}"
            );
        }
    }
}

#[tokio::test]
async fn a_tampered_token_fails_its_signature() {
    let emulator = emulator().await;
    let validator = validator(&emulator);
    let token = user_token(&emulator);
    let mut claims = segment(&token, 1);
    claims["scp"] = json!("Everything.ReadWrite.All");
    let parts: Vec<&str> = token.split('.').collect();
    let tampered = format!("{}.{}.{}", parts[0], encode(&claims), parts[2]);
    assert_eq!(
        validator.validate(&tampered).await.err(),
        Some(Rejection::BadSignature)
    );
}

#[tokio::test]
async fn a_flood_of_unknown_kids_fetches_the_keys_at_most_once_per_interval() {
    let emulator = emulator().await;
    let validator = validator(&emulator);
    let token = user_token(&emulator);
    validator.validate(&token).await.expect("valid");
    assert_eq!(key_fetches(&emulator), 1);

    let header = segment(&token, 0);
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..200 {
        let mut forged_header = header.clone();
        forged_header["kid"] = json!(format!("forged-{index}"));
        let forged = with_header(&token, &forged_header);
        let validator = validator.clone();
        tasks.spawn(async move { validator.validate(&forged).await.err() });
    }
    while let Some(outcome) = tasks.join_next().await {
        assert_eq!(outcome.expect("task"), Some(Rejection::UnknownKey));
    }
    assert_eq!(key_fetches(&emulator), 1, "the flood fetched the keys");
    // The real key still works.
    assert!(validator.validate(&token).await.is_ok());

    // Once the interval allows, an unknown kid does refresh the keys (here: at once).
    let eager = validator_builder(&emulator)
        .min_key_refresh_interval(Duration::ZERO)
        .build()
        .expect("validator");
    eager.validate(&token).await.expect("valid");
    let before = key_fetches(&emulator);
    let mut forged_header = header.clone();
    forged_header["kid"] = json!("rotated-in");
    let forged = with_header(&token, &forged_header);
    assert_eq!(
        eager.validate(&forged).await.err(),
        Some(Rejection::UnknownKey)
    );
    assert_eq!(key_fetches(&emulator), before + 1);
}

#[tokio::test]
async fn keys_that_cannot_be_fetched_are_a_typed_error() {
    let emulator = emulator().await;
    // A tenant the authority does not know: its metadata is an error.
    let validator = Validator::builder()
        .authority(emulator.url())
        .http_client(http(&emulator))
        .tenant("cccccccc-0000-0000-0000-000000000003")
        .audience(API)
        .build()
        .expect("validator");
    assert_eq!(
        validator.prefetch_keys().await.err(),
        Some(Rejection::KeysUnavailable)
    );
    assert_eq!(
        validator.validate(&user_token(&emulator)).await.err(),
        Some(Rejection::KeysUnavailable)
    );
    // An authority whose CA we do not trust.
    let untrusted = Validator::builder()
        .authority(emulator.url())
        .tenant(TENANT)
        .audience(API)
        .build()
        .expect("validator");
    assert_eq!(
        untrusted.prefetch_keys().await.err(),
        Some(Rejection::KeysUnavailable)
    );
    assert!(
        validator_builder(&emulator)
            .build()
            .expect("validator")
            .prefetch_keys()
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn hostile_input_gets_typed_rejections() {
    let emulator = emulator().await;
    let validator = validator(&emulator);
    let token = user_token(&emulator);
    let huge = "a".repeat(17 * 1024);
    assert_eq!(
        validator.validate(&huge).await.err(),
        Some(Rejection::TooLarge { limit: 16 * 1024 })
    );
    let kid = segment(&token, 0)["kid"].clone();
    let good_header = encode(&json!({"alg": "RS256", "kid": kid}));
    let parts: Vec<&str> = token.split('.').collect();
    for malformed in [
        String::new(),
        "....".to_owned(),
        "not a token".to_owned(),
        format!("{}.{}", parts[0], parts[1]),
        format!("{}.{}.{}.{}", parts[0], parts[1], parts[2], parts[2]),
        format!("{}.!!!.{}", parts[0], parts[2]),
        format!("{}.{}.{}", encode(&json!([1, 2])), parts[1], parts[2]),
        format!("{}.{}.{}", encode(&json!({"alg": 5})), parts[1], parts[2]),
        format!("{good_header}.{}.{}", encode(&json!("claims")), parts[2]),
    ] {
        let rejection = validator.validate(&malformed).await.err();
        assert!(
            matches!(
                rejection,
                Some(Rejection::Malformed | Rejection::BadSignature)
            ),
            "{malformed:.40}: {rejection:?}"
        );
    }
    // No kid at all.
    let no_kid = with_header(&token, &json!({"alg": "RS256", "typ": "JWT"}));
    assert_eq!(
        validator.validate(&no_kid).await.err(),
        Some(Rejection::UnknownKey)
    );
}
