#![allow(missing_docs)]
use std::sync::Arc;
use std::time::{Duration, Instant};

use entra_emulator::{
    ApplicationConfig, Emulator, EmulatorConfig, TenantConfig, UserConfig, UserTokenRequest,
};
use entra_identity::{
    HttpOptions, MapEnvironment, OnBehalfOfApplication, TokenCache, TokenCredential,
};

const TENANT: &str = "cccccccc-0000-0000-0000-0000000000b0";
const API: &str = "c0000000-0000-0000-0000-000000000001";
const SECRET: &str = "middle-tier-secret";
const SCOPE: &str = "api://downstream/Data.Read";
const REGISTERED: usize = 2000;

fn user_oid(index: usize) -> String {
    format!("c1000000-0000-0000-0000-{index:012}")
}

fn main() {
    let emu_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let config = EmulatorConfig {
        tenants: vec![TenantConfig {
            id: Some(TENANT.to_owned()),
            applications: vec![
                ApplicationConfig {
                    name: "mt".into(),
                    client_id: Some(API.into()),
                    secrets: vec![SECRET.into()],
                    ..Default::default()
                },
                ApplicationConfig {
                    name: "ds".into(),
                    client_id: Some("c0000000-0000-0000-0000-000000000002".into()),
                    app_id_uri: Some("api://downstream".into()),
                    ..Default::default()
                },
            ],
            users: (0..REGISTERED)
                .map(|i| UserConfig {
                    object_id: Some(user_oid(i)),
                    upn: format!("user{i}@bench.example"),
                    name: None,
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let t = Instant::now();
    let emulator = emu_rt
        .block_on(Emulator::builder().config(config).start())
        .unwrap();
    println!("start {:?}", t.elapsed());
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let t = Instant::now();
    let assertions: Vec<String> = (0..n)
        .map(|i| {
            emulator
                .mint_user_token(&UserTokenRequest {
                    user: user_oid(i % REGISTERED),
                    audience: API.into(),
                    expires_in_secs: Some(3600 + (i / REGISTERED) as i64),
                    ..Default::default()
                })
                .unwrap()
        })
        .collect();
    println!(
        "mint {n}: {:?} ({:.0}/s) len {}",
        t.elapsed(),
        n as f64 / t.elapsed().as_secs_f64(),
        assertions[0].len()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let app = OnBehalfOfApplication::builder(TENANT, API)
        .client_secret(SECRET)
        .authority(emulator.url())
        .instance_discovery_host(emulator.url())
        .http_options(HttpOptions::default().trust_pem(emulator.ca_pem()))
        .environment(Arc::new(MapEnvironment::new()))
        .token_cache(TokenCache::with_limits(200_000, 1 << 30))
        .build_application()
        .unwrap();
    let assertions = Arc::new(assertions);
    let conc: usize = std::env::var("C")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    let t = Instant::now();
    let info = allocation_counter::measure(|| {
        rt.block_on(async {
            let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let mut set = tokio::task::JoinSet::new();
            for _ in 0..conc {
                let (app, assertions, next) = (app.clone(), assertions.clone(), next.clone());
                set.spawn(async move {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= assertions.len() {
                            break;
                        }
                        let c = app.credential_for(assertions[i].as_str()).unwrap();
                        c.get_token(&[SCOPE], None, None, false).await.unwrap();
                    }
                });
            }
            set.join_all().await;
        })
    });
    println!(
        "fill {n} c={conc}: {:?} ({:.0}/s) bytes_current {} per {}",
        t.elapsed(),
        n as f64 / t.elapsed().as_secs_f64(),
        info.bytes_current,
        info.bytes_current as f64 / n as f64
    );
    let _ = Duration::ZERO;
}
