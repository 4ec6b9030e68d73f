//! The DNS hot path: a lock-light read view of the zone, a pure answer function over raw
//! query bytes, and (feature `net`, the only part with sockets) a batched UDP loop
//! (`hotpath.md` §5).
//!
//! Plain queries (opcode QUERY, one question, class IN, at most one OPT) are answered
//! from per-name precomputed answer bytes with the question echoed as sent (0x20), AA
//! set, NXDOMAIN only for names that do not exist (empty non-terminals get NODATA) and
//! the apex SOA on every negative answer. Everything else (UPDATE, TSIG, other opcodes,
//! odd packets) is [`Disposition::Slow`]: the hickory-based slow path handles it.
//!
//! Choices where the specs leave room:
//! - QTYPE ANY gets a minimal answer (RFC 8482): the TXT RRset where there is one, the
//!   SOA at the apex, NODATA elsewhere.
//! - Packets with QR=1 are dropped, never answered or passed on.
//! - The client's EDNS payload is honoured up to `ZoneConfig::max_udp_payload` (floor
//!   512, default cap 1232, so a small query never draws a large UDP reply); we advertise
//!   1232. EDNS options are ignored; the reply's OPT has none and echoes DO. With
//!   `[dnssec]` on, DO=1 queries get RRSIGs and compact-denial NSECs ([`signed`]); DO=0
//!   answers stay byte for byte what the unsigned node sends.
//! - BADVERS and REFUSED replies carry no AA; TC stubs keep AA, the rcode and the OPT.
//! - Over TCP (`max_tcp`) a reply above 65535 bytes also becomes a TC stub.
//! - CD is copied like RD. Apex NS answers carry in-zone A/AAAA glue in ADDITIONAL.
//! - SOA serial: `max(serial, now)` on each change, no bump within a second
//!   (see [`ZoneView::set_txt_at`]); with zone transfers on, one serial per published
//!   version ([`xfr`]).

mod answer;
mod config;
pub mod dnssec;
pub mod image;
pub mod rrl;
pub mod signed;
pub mod signed_xfr;
mod table;
pub mod ttl;
#[cfg(feature = "net")]
pub mod udp;
mod view;
pub mod xfr;

pub use answer::{rcode, Disposition};
pub use config::{HostAddrs, ZoneConfig};
pub use signed::DnssecSetup;
pub use view::{NameState, Prepared, Snapshot, ZoneView};
