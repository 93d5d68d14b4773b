//! Fuzz target `certificate`: see `harness/certificate.rs`, which the replay tests share.

#![no_main]

#[path = "../harness/certificate.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
