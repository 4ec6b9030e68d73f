//! Small network clients the node's actors and tools use: plain DNS TXT lookups
//! (`dns_client`, heartbeat harvesting), seed lists over HTTP (`seed_fetch`), and a
//! blocking HTTP/1.1 client (`http_client`, the admin command and tests).
//!
//! They sit below the actors and never reach the actors or the node's wiring
//! (`tests/layering.rs`).

pub mod dns_client;
pub mod http_client;
pub mod seed_fetch;
