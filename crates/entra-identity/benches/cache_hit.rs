//! The cache-hit path alone: `get_token` on a warm credential, polled without an executor.
//!
//! `cargo bench -p entra-identity --bench cache_hit [-- ITERATIONS]`
//!
//! Prints the median of 25 batches in nanoseconds per call, on one thread and on two, and on
//! one thread through `Arc<dyn TokenCredential>`.

#![allow(missing_docs)]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use common::SCOPE;
use entra_identity::TokenCredential;
use entra_identity::TokenRequestOptions;

mod common;

fn main() {
    let iterations: u32 = std::env::args()
        .skip(1)
        .find(|arg| !arg.starts_with('-'))
        .and_then(|arg| arg.parse().ok())
        .unwrap_or(200_000);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (_emulator, credential) = runtime.block_on(async {
        let (emulator, assertion) = common::workload_emulator(Vec::new()).await;
        let credential = common::workload_credential(&emulator, &assertion)
            .build()
            .expect("credential");
        credential
            .get_token(&[SCOPE], TokenRequestOptions::new())
            .await
            .expect("first token");
        (emulator, credential)
    });

    let one = median_ns(&credential, iterations);
    let dynamic: std::sync::Arc<dyn TokenCredential> = std::sync::Arc::new(credential.clone());
    let through_dyn = median_ns(&dynamic, iterations);
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let credential = credential.clone();
            std::thread::spawn(move || median_ns(&credential, iterations))
        })
        .collect();
    let two: Vec<f64> = threads
        .into_iter()
        .map(|thread| thread.join().expect("thread"))
        .collect();
    println!("cache-hit get_token, median of 25 batches of {iterations}:");
    println!("  1 thread : {one:6.1} ns/call");
    println!("  1 thread, Arc<dyn TokenCredential>: {through_dyn:6.1} ns/call");
    let scaling = 4.0 * one / (two[0] + two[1]);
    println!("  2 threads: {:6.1} / {:6.1} ns/call each", two[0], two[1]);
    println!("  throughput on 2 threads / 1 thread: {scaling:.2}x");
}

fn median_ns(credential: &impl TokenCredential, iterations: u32) -> f64 {
    let mut context = Context::from_waker(Waker::noop());
    let mut batches: Vec<f64> = (0..25)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..iterations {
                let future = pin!(credential.get_token(&[SCOPE], TokenRequestOptions::new()));
                match future.poll(&mut context) {
                    Poll::Ready(Ok(token)) => {
                        std::hint::black_box(token);
                    }
                    _ => panic!("the token was not cached"),
                }
            }
            started.elapsed().as_secs_f64() * 1e9 / f64::from(iterations)
        })
        .collect();
    batches.sort_by(f64::total_cmp);
    batches[batches.len() / 2]
}
