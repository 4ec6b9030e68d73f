//! cargo-fuzz target `registration`: see `dnsmesh_fuzz::harness::registration`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dnsmesh_fuzz::harness::registration(data));
