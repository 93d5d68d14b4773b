//! Fuzz target `access_token`: see `harness/access_token.rs`, which the replay tests share.

#![no_main]

#[path = "../harness/access_token.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
