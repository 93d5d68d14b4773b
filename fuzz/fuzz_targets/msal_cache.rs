//! Fuzz target `msal_cache`: see `harness/msal_cache.rs`, which the replay tests share.

#![no_main]

#[path = "../harness/msal_cache.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
