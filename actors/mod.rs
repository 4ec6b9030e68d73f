//! The node's actors. Each owns its state privately and talks to the others only
//! through the typed messages defined next to it:
//!
//! - [`store`]: the single writer of the records database; publishes change events.
//! - [`actor_db`]: each of `auth`, `sync`, `heartbeat` owns its own sled database.
//! - [`dns`]: the authoritative DNS responder (UDP fast path + hickory-server slow path),
//!   with its own read view of the zone fed by the store's change events.
//! - [`http`]: the HTTPS/HTTP ingress (actix-web): write API, registration, metrics.
//! - [`auth`]: credentials (bearer tokens, sealed TSIG keys) and registration.
//! - [`heartbeat`]: discovery through signed heartbeat records (publish, harvest, seen set).
//! - [`sync`]: anti-entropy with peers (digest/pull, tombstones, notify).
//! - [`watch`]: `GET /v1/watch/mb-<hash>` streams (names of changed mailbox records).
//! - [`supervisor`]: the health board; actix supervisors restart failed actors.

pub mod actor_db;
pub mod auth;
pub mod dns;
pub mod doh;
pub mod heartbeat;
pub mod http;
pub mod manifest_gossip;
pub mod store;
pub mod supervisor;
pub mod sync;
pub mod watch;
