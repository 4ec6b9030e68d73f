//! cargo-fuzz target `records`: see `dnsmesh_fuzz::harness::records`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dnsmesh_fuzz::harness::records(data));
