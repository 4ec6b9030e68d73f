//! cargo-fuzz target `http_json`: see `dnsmesh_fuzz::harness::http_json`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dnsmesh_fuzz::harness::http_json(data));
