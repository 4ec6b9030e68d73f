//! cargo-fuzz target `message`: see `dnsmesh_fuzz::harness::message`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dnsmesh_fuzz::harness::message(data));
