//! dnsmesh: a DNS Mesh Protocol (DMP) node and CLI, byte-compatible with the reference
//! implementation (PyPI `dnsmesh` 0.7.5).
//!
//! - [`proto`] is the protocol core: records, names, keys, the message pipeline. No I/O.
//! - `actors` (feature `net`) holds the node's actors and the messages between them.

pub mod proto;
