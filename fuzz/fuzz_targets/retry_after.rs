//! Fuzz target `retry_after`: see `harness/retry_after.rs`, which the replay tests share.

#![no_main]

#[path = "../harness/retry_after.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
