//! The DNS hot path: a lock-light read view of the zone, a pure answer function over raw
//! query bytes, and a batched UDP loop (`hotpath.md` §5).
//!
//! Plain queries (opcode QUERY, one question, class IN, at most one OPT) are answered
//! from per-name precomputed answer bytes with the question echoed as sent (0x20), AA
//! set, NXDOMAIN only for names that do not exist (empty non-terminals get NODATA) and
//! the apex SOA on every negative answer. Everything else (UPDATE, TSIG, other opcodes,
//! odd packets) is [`Disposition::Slow`]: the hickory-based slow path handles it.

mod answer;
mod config;
pub mod udp;
mod view;

pub use answer::{rcode, Disposition};
pub use config::{HostAddrs, ZoneConfig};
pub use view::{NameState, ZoneView};
