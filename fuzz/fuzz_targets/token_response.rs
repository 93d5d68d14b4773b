//! Fuzz target `token_response`: see `harness/token_response.rs`, which the replay tests share.

#![no_main]

#[path = "../harness/token_response.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
