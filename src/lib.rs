//! dnsmesh: a DNS Mesh Protocol (DMP) node and CLI, byte-compatible with the reference
//! implementation (PyPI `dnsmesh` 0.7.5).
//!
//! - [`proto`] is the protocol core: records, names, keys, the message pipeline. No I/O.
//! - [`dnswire`] is the DNS hot path: zone read view, raw answer function, UDP loop.
//! - `actors` (feature `net`) holds the node's actors and the messages between them.

pub mod dnswire;
pub mod proto;
