//! Fuzz harnesses for dnsmesh's parsers of network input. The cargo-fuzz targets in
//! `fuzz_targets/` are one-liners over these functions; `tests/fuzz_regressions.rs` in
//! the main package includes the same files (`#[path]`) to replay seeds and crashes.

pub mod dns_slow;
pub mod harness;
