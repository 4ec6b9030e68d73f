//! cargo-fuzz target `dns_slow`: see `dnsmesh_fuzz::dns_slow::dns_slow`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dnsmesh_fuzz::dns_slow::dns_slow(data));
