//! Fuzz harnesses for dnsmesh's parsers of network input. The cargo-fuzz targets in
//! `fuzz_targets/` are one-liners over these functions; `tests/fuzz_regressions.rs` in
//! the main package includes the same files (`#[path]`) to replay seeds and crashes.

pub mod dns_slow;
pub mod harness;

/// The core under the name `src/node/replication.rs` uses (`crate::proto`), so that file
/// (pure, but in the `net`-only `node` module) compiles here by path.
mod proto {
    pub use dnsmesh::proto::*;
}

/// The rules for accepting peers' sync rows, included by path (see `proto` above).
#[path = "../../../src/node/replication.rs"]
mod replication;
