//! cargo-fuzz target `b64_txt`: see `dnsmesh_fuzz::harness::b64_txt`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dnsmesh_fuzz::harness::b64_txt(data));
