//! The zone read view: per-name precomputed TXT answer RRs, empty-non-terminal
//! tracking and the SOA serial.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Mutex;

use super::config::{Compiled, ZoneConfig};
use super::table::{Entry, Table};
use crate::proto::ProtoError;

/// Rough per-name cost on top of key and answer bytes: the table slot (4 bytes plus
/// control byte and load-factor slack), the block's length and entry header.
const ENTRY_OVERHEAD: usize = 24;

// One name in the view is a `table::Entry`: it exists when the name has TXT values,
// descendants, or both; one with neither is removed. Its answer bytes are the only copy
// of the values: [`ZoneView::txt`] decodes them from there.

/// What the slow path needs to know about a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameState {
    /// The name's TXT values, each with its character-strings joined, in stored order.
    Txt(Vec<Vec<u8>>),
    /// The name exists without TXT: an empty non-terminal, the apex without TXT, or an
    /// in-zone host. Any TXT query gets NODATA.
    EmptyNonTerminal,
    /// The name does not exist in the zone.
    NxDomain,
    /// The name is not at or below the zone origin (or is not a valid name).
    OutOfZone,
}

/// A name's RRset built by [`ZoneView::prepare`], for [`ZoneView::set_prepared`].
pub struct Prepared(Entry);

/// Every name holding TXT: (relative wire key, answer RRs).
pub type Snapshot = Vec<(Box<[u8]>, Box<[u8]>)>;

/// The DNS actor's read view of the zone. One writer (the store actor's change feed)
/// and many readers (the UDP thread, the TCP/UPDATE slow path), all through `&self`.
///
/// Keys are the lower-cased wire labels of a name relative to the origin (the apex is
/// the empty key), hashed with FxHash; a query's key is built on the stack, so a 0x20
/// mixed-case query costs no allocation.
pub struct ZoneView {
    pub(crate) cfg: Compiled,
    pub(crate) map: Table,
    /// Serialises writers so existence checks and ancestor counts stay consistent.
    writer: Mutex<()>,
    serial: AtomicU32,
    /// When set, changes leave the serial alone: the zone-transfer journal owns it
    /// ([`ZoneView::set_serial`]), giving every published version its own serial.
    manual_serial: AtomicBool,
    names: AtomicUsize,
    bytes: AtomicUsize,
    /// DNSSEC signing state; `None` when the zone is served unsigned.
    pub(crate) sec: Option<super::signed::ZoneSigner>,
}

pub(crate) fn now_secs() -> u64 {
    crate::clock::Clock::system().now_secs()
}

fn secs_u32(now: u64) -> u32 {
    u32::try_from(now).unwrap_or(u32::MAX)
}

/// Encode a TXT RRset as answer RRs (owner pointer to the question at offset 12).
/// Values whose RDATA would exceed 65535 bytes cannot be sent and are skipped, as is
/// anything past 65535 RRs.
pub(crate) fn build_rrs(values: &[&[u8]], ttl: u32) -> (Box<[u8]>, u16) {
    let total: usize = values.iter().map(|v| 12 + v.len() + v.len() / 255 + 1).sum();
    let mut out = Vec::with_capacity(total);
    let mut count: u16 = 0;
    for v in values {
        let pieces = v.len().div_ceil(255).max(1);
        let Ok(rdlen) = u16::try_from(v.len() + pieces) else {
            continue;
        };
        if count == u16::MAX {
            break;
        }
        out.extend_from_slice(&[0xC0, 0x0C, 0x00, 0x10, 0x00, 0x01]);
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&rdlen.to_be_bytes());
        if v.is_empty() {
            out.push(0);
        }
        for piece in v.chunks(255) {
            out.push(piece.len() as u8); // chunks(255) guarantees ≤ 255
            out.extend_from_slice(piece);
        }
        count += 1;
    }
    (out.into_boxed_slice(), count)
}

/// Decode answer RRs built by [`build_rrs`] back into joined values.
pub(crate) fn decode_rrs(rrs: &[u8]) -> Vec<Vec<u8>> {
    let mut values = Vec::new();
    let mut pos = 0usize;
    while let Some(len) = rrs.get(pos + 10..pos + 12) {
        let rdlen = u16::from_be_bytes([len[0], len[1]]) as usize;
        let start = pos + 12;
        let Some(rdata) = rrs.get(start..start + rdlen) else {
            break;
        };
        values.push(crate::proto::txt::from_rdata(rdata).unwrap_or_default());
        pos = start + rdlen;
    }
    values
}

/// Proper ancestors of a relative key, nearest first (the apex is excluded).
fn ancestors(key: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        let len = *key.get(pos)? as usize;
        pos += 1 + len;
        key.get(pos..).filter(|rest| !rest.is_empty())
    })
}

impl ZoneView {
    /// An empty view of the configured zone. The SOA serial starts at the current
    /// time; raise it with [`ZoneView::set_serial_floor`] after a restart.
    pub fn new(config: &ZoneConfig) -> Result<Self, ProtoError> {
        Ok(ZoneView {
            cfg: Compiled::new(config)?,
            map: Table::default(),
            writer: Mutex::new(()),
            serial: AtomicU32::new(secs_u32(now_secs())),
            manual_serial: AtomicBool::new(false),
            names: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            sec: None,
        })
    }

    /// A view whose every RRset is signed with `setup`'s keys (see [`super::signed`]).
    pub fn new_signed(
        config: &ZoneConfig,
        setup: super::signed::DnssecSetup,
    ) -> Result<Self, ProtoError> {
        let mut view = Self::new(config)?;
        view.sec =
            Some(super::signed::ZoneSigner::new(&view.cfg, setup, view.serial(), now_secs()));
        Ok(view)
    }

    /// Replace the TXT RRset of `name` (empty `values` removes it), using the clock for
    /// the serial. See [`ZoneView::set_txt_at`].
    pub fn set_txt(&self, name: &str, values: &[&[u8]]) -> bool {
        self.set_txt_at(name, values, now_secs())
    }

    /// Replace the TXT RRset of `name` at time `now` (Unix seconds). Names outside the
    /// origin or invalid are ignored. Returns whether the zone changed; only then does
    /// the serial move, to `max(serial, now)`.
    ///
    /// Serial choice without zone transfers: no bump within a second. Two changes in the
    /// same second share a serial, so the serial never runs ahead of the clock (it is
    /// bounded by `max(now, restored floor)`); resolvers do not compare serials. With
    /// `[transfer]` configured the transfer journal owns the serial instead
    /// ([`ZoneView::set_manual_serial`], `dnswire::xfr`): every published version gets
    /// its own serial, as secondaries need.
    pub fn set_txt_at(&self, name: &str, values: &[&[u8]], now: u64) -> bool {
        match self.prepare(name, values, now) {
            Some(p) => self.set_prepared(p, now),
            None => false,
        }
    }

    /// The first half of [`ZoneView::set_txt_at`], which touches no shared state: the
    /// name's key, answer bytes and signature, in the one allocation the view keeps.
    /// `None` for a name outside the origin or invalid. A bulk load prepares on one
    /// thread while another inserts.
    pub fn prepare(&self, name: &str, values: &[&[u8]], now: u64) -> Option<Prepared> {
        let key = self.cfg.rel_key(name)?;
        let (rrs, count) = build_rrs(values, self.cfg.ttl);
        let sig = if count > 0 { self.sign_txt(&key, &rrs, now) } else { Box::default() };
        Some(Prepared(Entry::new(&key, count, 0, &rrs, &sig)))
    }

    /// The second half of [`ZoneView::set_txt_at`]: put a prepared RRset in.
    pub fn set_prepared(&self, p: Prepared, now: u64) -> bool {
        let entry = p.0;
        let e = entry.get();
        let key = e.key();
        let (rrs, sig, count) = (e.rrs(), e.sig(), e.count());
        let _guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let old = self
            .map
            .with(key, |n| n.map(|n| (n.count(), n.rrs() == rrs, n.rrs().len() + n.sig().len())));
        let old_len = match old {
            Some((c, same, len)) if c > 0 => {
                if same {
                    return false;
                }
                Some(len)
            }
            _ => None,
        };
        match (old_len, count) {
            (None, 0) => return false,
            (Some(old), 0) => {
                if self.map.remove_if(key, |n| n.desc() == 0) {
                    self.bytes.fetch_sub(old + key.len() + ENTRY_OVERHEAD, Ordering::Relaxed);
                } else {
                    self.map.with_mut(key, |n| n.set_rrs(0, &[], &[]));
                    self.bytes.fetch_sub(old, Ordering::Relaxed);
                }
                for anc in ancestors(key) {
                    self.release(anc);
                }
                self.names.fetch_sub(1, Ordering::Relaxed);
            }
            (Some(old), _) => {
                let new_len = rrs.len() + sig.len();
                self.map.with_mut(key, |n| n.set_rrs(count, rrs, sig));
                self.bytes.fetch_add(new_len, Ordering::Relaxed);
                self.bytes.fetch_sub(old, Ordering::Relaxed);
            }
            (None, _) => {
                // Ancestors first, so a reader never sees a name whose parent is missing.
                for anc in ancestors(key) {
                    self.retain(anc);
                }
                let new_len = rrs.len() + sig.len();
                if self.map.with_mut(key, |n| n.set_rrs(count, rrs, sig)).is_some() {
                    self.bytes.fetch_add(new_len, Ordering::Relaxed);
                } else {
                    let klen = key.len();
                    if self.map.insert(entry) {
                        self.bytes.fetch_add(new_len + klen + ENTRY_OVERHEAD, Ordering::Relaxed);
                    }
                }
                self.names.fetch_add(1, Ordering::Relaxed);
            }
        }
        if !self.manual_serial.load(Ordering::Relaxed) {
            self.serial.fetch_max(secs_u32(now), Ordering::Relaxed);
        }
        self.resign_soa(now);
        true
    }

    /// Count one more TXT name below `key`, creating the empty non-terminal if needed.
    fn retain(&self, key: &[u8]) {
        if self.map.with_mut(key, |n| n.set_desc(n.desc().saturating_add(1))).is_some() {
            return;
        }
        if self.map.insert(Entry::new(key, 0, 1, &[], &[])) {
            self.bytes.fetch_add(key.len() + ENTRY_OVERHEAD, Ordering::Relaxed);
        }
    }

    /// Count one TXT name fewer below `key`; drop the node when nothing is left.
    fn release(&self, key: &[u8]) {
        self.map.with_mut(key, |n| n.set_desc(n.desc().saturating_sub(1)));
        if self.map.remove_if(key, |n| n.desc() == 0 && n.count() == 0) {
            self.bytes.fetch_sub(key.len() + ENTRY_OVERHEAD, Ordering::Relaxed);
        }
    }

    /// Make room for about `names` more names before a bulk load (the store's row
    /// count at start-up), so the table is not rebuilt over and over while it fills.
    pub fn reserve(&self, names: usize) {
        self.map.reserve(names);
    }

    /// Count what an image section put in (see `super::image`).
    pub(crate) fn add_loaded(&self, names: usize, txt_bytes: usize, key_bytes: usize, n: usize) {
        self.names.fetch_add(names, Ordering::Relaxed);
        let bytes = txt_bytes + key_bytes + n * ENTRY_OVERHEAD;
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn reset_counts(&self) {
        self.names.store(0, Ordering::Relaxed);
        self.bytes.store(0, Ordering::Relaxed);
    }

    /// Give back table room a bulk load reserved but did not use.
    pub fn shrink_to_fit(&self) {
        self.map.shrink_to_fit();
    }

    /// Raise the SOA serial to at least `floor` (restored from disk after a restart so
    /// the serial never goes backwards, even if the clock did).
    pub fn set_serial_floor(&self, floor: u32) {
        self.serial.fetch_max(floor, Ordering::Relaxed);
        self.resign_soa(now_secs());
    }

    /// Serialises writers of nodes (the signer's background pass takes it too).
    pub(crate) fn write_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adjust the approximate byte count (signatures replaced in the background).
    pub(crate) fn adjust_bytes(&self, add: usize, sub: usize) {
        self.bytes.fetch_add(add, Ordering::Relaxed);
        self.bytes.fetch_sub(sub, Ordering::Relaxed);
    }

    /// Hand the serial to the caller: from now on only [`ZoneView::set_serial`] moves it.
    pub fn set_manual_serial(&self) {
        self.manual_serial.store(true, Ordering::Relaxed);
    }

    /// Set the SOA serial exactly (the transfer journal's published version).
    pub fn set_serial(&self, serial: u32) {
        self.serial.store(serial, Ordering::Relaxed);
        self.resign_soa(now_secs());
    }

    /// Every name holding TXT as (relative wire key, answer RRs), for zone transfers.
    /// Readers are not blocked; the caller keeps writers out for a consistent copy.
    pub fn snapshot(&self) -> Snapshot {
        let mut out = Vec::with_capacity(self.len());
        self.map.for_each(|e| {
            if e.count() > 0 {
                out.push((e.key().into(), e.rrs().into()));
            }
        });
        out
    }

    /// The TXT values of `name` (empty when it has none).
    pub fn values(&self, name: &str) -> Vec<Vec<u8>> {
        match self.txt(name) {
            NameState::Txt(v) => v,
            _ => Vec::new(),
        }
    }

    /// The zone origin as lower-case wire labels with the root terminator.
    pub fn origin_wire(&self) -> &[u8] {
        &self.cfg.origin
    }

    /// The current SOA serial.
    pub fn serial(&self) -> u32 {
        self.serial.load(Ordering::Relaxed)
    }

    /// The state of a dotted name, for the slow path (TCP fallback, hickory handler).
    pub fn txt(&self, name: &str) -> NameState {
        let Some(key) = self.cfg.rel_key(name) else {
            return NameState::OutOfZone;
        };
        let found = self.map.with(&key, |n| {
            n.map(|n| {
                if n.count() > 0 {
                    NameState::Txt(decode_rrs(n.rrs()))
                } else {
                    NameState::EmptyNonTerminal
                }
            })
        });
        if let Some(state) = found {
            return state;
        }
        if key.is_empty() || self.cfg.host(&key).is_some() || self.cfg.host_below(&key) {
            return NameState::EmptyNonTerminal;
        }
        NameState::NxDomain
    }

    /// Number of names holding TXT values.
    pub fn len(&self) -> usize {
        self.names.load(Ordering::Relaxed)
    }

    /// True when no name holds TXT values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Approximate heap bytes held by the view (keys, answer bytes and a fixed per-name
    /// overhead), maintained incrementally so metrics can read it for free.
    pub fn approx_bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rrs_roundtrip_and_split() {
        let long = vec![b'x'; 600];
        let (rrs, count) = build_rrs(&[b"", b"abc", &long], 60);
        assert_eq!(count, 3);
        assert_eq!(decode_rrs(&rrs), vec![b"".to_vec(), b"abc".to_vec(), long]);
        let huge = vec![0u8; 65_300];
        let (rrs, count) = build_rrs(&[&huge, b"ok"], 60);
        assert_eq!((count, decode_rrs(&rrs)), (1, vec![b"ok".to_vec()]));
    }

    #[test]
    fn ancestor_walk() {
        let got: Vec<&[u8]> = ancestors(b"\x01a\x02bb\x01c").collect();
        assert_eq!(got, vec![&b"\x02bb\x01c"[..], &b"\x01c"[..]]);
        assert_eq!(ancestors(b"").count(), 0);
    }
}
