//! Fuzz target `claims`: see `harness/claims.rs`, which the replay tests share.

#![no_main]

#[path = "../harness/claims.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
