//! On-disk formats the actors write, below the actors and the node's wiring: the operator
//! audit trail (append-only JSON lines) and the backup archive (versioned, checksummed
//! named trees and files), the JSON log line format, and the private data directory.
//! File I/O, but no actors, no node, no sockets
//! (`tests/layering.rs`).

pub mod audit;
pub mod backup;
pub mod logfmt;
pub mod private_dir;
