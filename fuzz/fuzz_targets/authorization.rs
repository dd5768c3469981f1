#![no_main]
//! See `tower_jwt_auth::fuzz_harness::authorization` (`src/fuzz_harness.rs`) for what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| tower_jwt_auth::fuzz_harness::authorization(data));
