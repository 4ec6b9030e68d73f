//! cargo-fuzz target `dns_answer`: see `dnsmesh_fuzz::harness::dns_answer`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dnsmesh_fuzz::harness::dns_answer(data));
