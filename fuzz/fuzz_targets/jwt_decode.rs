//! Fuzz target `jwt_decode`: see `harness/jwt_decode.rs`, which the replay tests share.

#![no_main]

#[path = "../harness/jwt_decode.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
