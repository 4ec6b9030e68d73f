//! dnsmesh: a DNS Mesh Protocol (DMP) node and CLI, byte-compatible with the reference
//! implementation (PyPI `dnsmesh` 0.7.5).
//!
//! - [`proto`] is the protocol core: records, names, keys, the message pipeline. No I/O.
//! - [`clock`] is the one wall clock (manual in tests) that the actors take.
//! - [`dnswire`] answers plain DNS queries from precomputed bytes (the UDP hot path).
//! - [`policy`] is the node's pure policy (limits, budgets, caches, parsing), below the actors.
//! - `client` (feature `net`) holds the small network clients the actors use.
//! - `files` (feature `net`) holds the on-disk formats the actors write (audit trail, backups).
//! - `actors` (feature `net`) holds the node's actors and the messages between them.
//! - `node` (feature `net`) wires the actors together from the configuration.
//! - `cli` (feature `net`) is the `dnsmesh` companion CLI.

pub mod clock;
pub mod dnswire;
pub mod policy;
pub mod proto;

#[cfg(feature = "net")]
pub mod client;

#[cfg(feature = "net")]
pub mod files;

#[cfg(feature = "net")]
#[path = "../actors/mod.rs"]
pub mod actors;

#[cfg(feature = "net")]
pub mod node;

#[cfg(feature = "net")]
pub mod cli;
