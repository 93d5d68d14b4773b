//! What validation costs, printed as medians:
//!
//! 1. `Validator::validate` of a valid token with warm keys, against a bare
//!    `jsonwebtoken::decode` (signature, expiry and audience) of the same token with the same
//!    key, interleaved in the same run (the target: within 1.2x);
//! 2. the latency the axum integration adds: the same handler behind the `Caller`
//!    extractor, behind the `BearerLayer`, and unprotected, each request through
//!    `tower::ServiceExt::oneshot`.
//!
//! Run with `cargo bench -p entra-identity-web --bench validation`. Against the embedded
//! emulator, offline.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, header};
use axum::routing::get;
use entra_emulator::{ApplicationConfig, Emulator, EmulatorConfig, TenantConfig, UserConfig};
use entra_identity_web::Validator;
use entra_identity_web::axum::{Caller, MiddleTier};
use serde_json::Value;
use tower::ServiceExt as _;

const TENANT: &str = "aaaaaaaa-0000-0000-0000-000000000001";
const API: &str = "10000000-0000-0000-0000-000000000010";
const USER: &str = "20000000-0000-0000-0000-000000000010";
const SAMPLES: usize = 41;

/// Polls a future that must complete without waiting (warm keys): the hot path.
fn now_or_never<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("validation with warm keys waited"),
    }
}

/// Median time per call of each case, samples interleaved so drift hits all alike.
fn medians(iterations: usize, cases: &mut [&mut dyn FnMut()]) -> Vec<Duration> {
    let mut samples = vec![Vec::with_capacity(SAMPLES); cases.len()];
    for case in cases.iter_mut() {
        for _ in 0..iterations / 10 {
            case();
        }
    }
    for _ in 0..SAMPLES {
        for (case, times) in cases.iter_mut().zip(&mut samples) {
            let start = Instant::now();
            for _ in 0..iterations {
                case();
            }
            times.push(start.elapsed() / u32::try_from(iterations).unwrap_or(u32::MAX));
        }
    }
    samples
        .into_iter()
        .map(|mut times| {
            times.sort_unstable();
            times[times.len() / 2]
        })
        .collect()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let emulator = runtime.block_on(async {
        Emulator::builder()
            .config(EmulatorConfig {
                tenants: vec![TenantConfig {
                    id: Some(TENANT.to_owned()),
                    applications: vec![ApplicationConfig {
                        name: "api".to_owned(),
                        client_id: Some(API.to_owned()),
                        ..ApplicationConfig::default()
                    }],
                    users: vec![UserConfig {
                        object_id: Some(USER.to_owned()),
                        upn: "user@example.com".to_owned(),
                        name: None,
                    }],
                    ..TenantConfig::default()
                }],
                ..EmulatorConfig::default()
            })
            .start()
            .await
            .expect("emulator")
    });
    let http = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(emulator.ca_pem().as_bytes()).expect("ca"),
        )
        .build()
        .expect("client");
    let token = emulator
        .mint_user_token(&entra_emulator::UserTokenRequest {
            user: USER.to_owned(),
            audience: API.to_owned(),
            ..Default::default()
        })
        .expect("token");
    let validator = Validator::builder()
        .authority(emulator.url())
        .http_client(http.clone())
        .tenant(TENANT)
        .audience(API)
        .required_scopes(["access_as_user"])
        .build()
        .expect("validator");
    runtime.block_on(async {
        validator.prefetch_keys().await.expect("keys");
        validator.validate(&token).await.expect("valid");
    });

    // The same key for the bare decode, from the same JWKS.
    let jwks: Value = runtime.block_on(async {
        http.get(format!("{}/{TENANT}/discovery/v2.0/keys", emulator.url()))
            .send()
            .await
            .expect("jwks")
            .json()
            .await
            .expect("json")
    });
    let jwk = &jwks["keys"][0];
    let key = jsonwebtoken::DecodingKey::from_rsa_components(
        jwk["n"].as_str().expect("n"),
        jwk["e"].as_str().expect("e"),
    )
    .expect("key");
    let mut bare = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    bare.set_audience(&[API]);

    let mut ours = || {
        black_box(now_or_never(validator.validate(black_box(&token))).expect("valid"));
    };
    let mut baseline = || {
        black_box(
            jsonwebtoken::decode::<serde_json::Map<String, Value>>(black_box(&token), &key, &bare)
                .expect("valid"),
        );
    };
    let times = medians(200, &mut [&mut ours, &mut baseline]);
    let ratio = times[0].as_secs_f64() / times[1].as_secs_f64();
    println!("validation of a valid token, warm keys (median of {SAMPLES} samples):");
    println!("  Validator::validate       {:>10.2?}", times[0]);
    println!("  bare jsonwebtoken::decode {:>10.2?}", times[1]);
    println!("  ratio                     {ratio:>10.3}x (target: within 1.2x)");

    // The axum integration's added latency.
    let tier = MiddleTier::new(validator.clone());
    let plain: Router = Router::new().route("/", get(|| async { "ok" }));
    let extracted: Router = Router::new()
        .route(
            "/",
            get(|caller: Caller| async move {
                black_box(caller);
                "ok"
            }),
        )
        .with_state(tier.clone());
    let layered: Router = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(tier.layer());
    let request = || {
        Request::get("/")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .expect("request")
    };
    let serve = |router: &Router| {
        let response = runtime
            .block_on(router.clone().oneshot(request()))
            .expect("infallible");
        assert!(response.status().is_success(), "{}", response.status());
        black_box(response);
    };
    let mut unprotected = || serve(&plain);
    let mut with_extractor = || serve(&extracted);
    let mut with_layer = || serve(&layered);
    let times = medians(
        200,
        &mut [&mut unprotected, &mut with_extractor, &mut with_layer],
    );
    println!("an axum request through tower::ServiceExt::oneshot (median of {SAMPLES} samples):");
    println!("  unprotected handler       {:>10.2?}", times[0]);
    println!(
        "  with the Caller extractor {:>10.2?}  (+{:.2?})",
        times[1],
        times[1].saturating_sub(times[0])
    );
    println!(
        "  with the BearerLayer      {:>10.2?}  (+{:.2?})",
        times[2],
        times[2].saturating_sub(times[0])
    );
}
