//! The node's pure policy: rate buckets, claim budgets, the replay cache, TCP connection
//! admission, heartbeat eviction, the failed-authentication throttle, metric labels, the
//! rules for accepting replicated rows, `[transfer]` parsing, TSIG scope checks, the
//! store's write ops, DNS UPDATE planning (`update`, feature `hickory`) and the HTTP write
//! routes' input rules (`http_input`).
//!
//! No sockets, files or clocks (time is a parameter), and no reach into the actors or the
//! node's wiring (`tests/layering.rs`): the actors build on this module, not the reverse.

pub mod auth;
pub mod auth_throttle;
pub mod charts;
pub mod claims;
#[cfg(feature = "net")] // host names parsed with `url`
pub mod cluster_peers;
pub mod heartbeat_policy;
pub mod http_input;
pub mod limits;
pub mod metrics;
pub mod ops;
pub mod replay;
pub mod replication;
pub mod tcp_conns;
pub mod transfer;
#[cfg(feature = "hickory")]
pub mod update;
