//! The DMP protocol core, exactly as spoken by the reference `dnsmesh` 0.7.5.
//!
//! Everything here is pure: no sockets, no files, no clocks. Functions that judge
//! freshness take an explicit `now` (Unix seconds) so that vectors can be replayed.
//! Every parser of network input returns `Option`/`Result` and never panics.

pub mod b64;
pub mod dnsname;
pub mod error;
pub mod keys;
pub mod names;
pub mod records;
pub mod registration;
pub mod txt;

pub mod envelope;
pub mod erasure;
pub mod gf256;
pub mod message;
pub mod rs;
pub mod seal;

pub use error::ProtoError;
