//! Zone transfers, the pure part: SOA serial arithmetic (RFC 1982), the IXFR journal of
//! published versions (RFC 1995), and the raw builder of AXFR/IXFR response streams
//! (RFC 5936). No I/O: the DNS actor owns the sockets, the locks and the clock.
//!
//! Versions: changes reach the view at once (answers never wait), and the journal
//! remembers, per changed name, its values at the last published version. Sealing turns
//! those into one version (deleted and added RRs against the last one) under a new
//! serial: `max(serial + 1, now)` in serial arithmetic, so every published version has
//! its own serial and a serial never repeats for different contents. The journal keeps
//! at most `max_changes` RR changes; an IXFR from a serial it no longer reaches is
//! answered with the whole zone (AXFR-style), as RFC 1995 §4 allows.
//!
//! An order-independent digest of the zone's TXT RRs (sum of per-RR hashes) travels with
//! the serial, so a restarted node can tell whether its zone is exactly the one it last
//! published under that serial (and keep serving IXFR from it) or not.

use std::collections::{HashMap, VecDeque};

use sha2::{Digest, Sha256};

use super::answer::{patch_rdlen, put_addrs, put_rr_head};
use super::view::{build_rrs, decode_rrs, Snapshot, ZoneView};

const TYPE_SOA: u16 = 6;
const TYPE_NS: u16 = 2;
const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
/// Offset of the question name in every message of a transfer stream.
const QNAME_OFF: u16 = 12;

/// RFC 1982 §3.2: `a` is greater than `b`.
pub fn serial_gt(a: u32, b: u32) -> bool {
    a != b && (a.wrapping_sub(b) as i32) > 0
}

/// The serial after `cur` at Unix time `now`: `now` when that is ahead of `cur`
/// (serials track the clock while writes are sparse), else `cur + 1`.
pub fn next_serial(cur: u32, now: u32) -> u32 {
    let inc = cur.wrapping_add(1);
    if serial_gt(now, inc) {
        now
    } else {
        inc
    }
}

/// Hash of one TXT RR (owner key relative to the origin, value), for the zone digest.
fn rr_hash(key: &[u8], value: &[u8]) -> u64 {
    let mut h = Sha256::new();
    h.update([key.len() as u8]);
    h.update(key);
    h.update(value);
    let d = h.finalize();
    u64::from_be_bytes(d[..8].try_into().unwrap_or([0; 8]))
}

/// The digest of the zone: every TXT RR (order-independent) plus the fixed apex data
/// (SOA fields other than the serial, NS, addresses), so a restart with another
/// configuration is not mistaken for the zone last published.
pub fn zone_digest(view: &ZoneView) -> u64 {
    let mut fixed = soa_rr(view, 0);
    for rr in fixed_rrs(view) {
        fixed.extend_from_slice(&rr);
    }
    let mut sum = rr_hash(b"\xff", &fixed);
    view.map.for_each(|e| {
        if e.count() > 0 {
            for v in decode_rrs(e.rrs()) {
                sum = sum.wrapping_add(rr_hash(e.key(), &v));
            }
        }
    });
    sum
}

fn values_at(view: &ZoneView, key: &[u8]) -> Vec<Vec<u8>> {
    view.map.with(key, |n| match n {
        Some(n) if n.count() > 0 => decode_rrs(n.rrs()),
        _ => Vec::new(),
    })
}

/// One published change set: from serial `from` to serial `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub from: u32,
    pub to: u32,
    /// (owner key relative to the origin, TXT value) removed.
    pub deleted: Vec<(Box<[u8]>, Vec<u8>)>,
    /// (owner key, TXT value) added.
    pub added: Vec<(Box<[u8]>, Vec<u8>)>,
}

impl Version {
    /// RR changes, for the journal's cap (a version without TXT changes counts one).
    fn changes(&self) -> usize {
        (self.deleted.len() + self.added.len()).max(1)
    }

    /// Append the version's journal-file record: `J1`, from, to, counts, entries
    /// (key length u8, key, value length u16, value), then 8 bytes of SHA-256 over all
    /// of it (a torn or damaged record ends the file).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(b"J1");
        for v in [self.from, self.to, self.deleted.len() as u32, self.added.len() as u32] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        for (k, v) in self.deleted.iter().chain(&self.added) {
            out.push(k.len() as u8);
            out.extend_from_slice(k);
            out.extend_from_slice(&(v.len() as u16).to_be_bytes());
            out.extend_from_slice(v);
        }
        let sum = Sha256::digest(&out[start..]);
        out.extend_from_slice(&sum[..8]);
    }

    /// Decode the records of a journal file, stopping at the first one that is torn,
    /// damaged or not ours.
    pub fn decode_all(mut b: &[u8]) -> Vec<Version> {
        let mut out = Vec::new();
        while let Some((v, used)) = Self::decode_one(b) {
            out.push(v);
            b = &b[used..];
        }
        out
    }

    fn decode_one(b: &[u8]) -> Option<(Version, usize)> {
        if b.get(..2)? != b"J1" {
            return None;
        }
        let u32_at = |at: usize| -> Option<u32> {
            Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
        };
        let (from, to, nd, na) = (u32_at(2)?, u32_at(6)?, u32_at(10)?, u32_at(14)?);
        let mut pos = 18usize;
        let mut entries = Vec::new();
        for _ in 0..u64::from(nd) + u64::from(na) {
            let kl = *b.get(pos)? as usize;
            let key: Box<[u8]> = b.get(pos + 1..pos + 1 + kl)?.into();
            pos += 1 + kl;
            let vl = u16::from_be_bytes(b.get(pos..pos + 2)?.try_into().ok()?) as usize;
            let value = b.get(pos + 2..pos + 2 + vl)?.to_vec();
            pos += 2 + vl;
            entries.push((key, value));
        }
        let sum = Sha256::digest(b.get(..pos)?);
        if b.get(pos..pos + 8)? != &sum[..8] {
            return None;
        }
        let added = entries.split_off(nd as usize);
        Some((Version { from, to, deleted: entries, added }, pos + 8))
    }
}

/// The serial, the zone digest at that serial, the bounded history of versions, and the
/// changes not yet published.
#[derive(Debug)]
pub struct Journal {
    serial: u32,
    digest: u64,
    versions: VecDeque<Version>,
    changes: usize,
    max_changes: usize,
    /// Changed names → their values at the last published version.
    pending: HashMap<Box<[u8]>, Vec<Vec<u8>>>,
}

/// What a transfer request gets.
#[derive(Debug, Clone)]
pub enum Plan {
    /// The client is current (or ahead): the SOA alone.
    UpToDate { serial: u32 },
    /// IXFR: the versions from the client's serial to `serial`.
    Incremental { serial: u32, versions: Vec<Version> },
    /// AXFR (or IXFR beyond the journal): the whole zone at `serial`.
    Full { serial: u32, names: Snapshot },
}

impl Journal {
    /// A journal whose history starts at `serial` (with the zone's `digest` there).
    pub fn new(serial: u32, digest: u64, max_changes: usize) -> Self {
        Journal {
            serial,
            digest,
            versions: VecDeque::new(),
            changes: 0,
            max_changes,
            pending: HashMap::new(),
        }
    }

    /// A journal at `serial` whose history is `versions` (read back from disk): only the
    /// newest unbroken chain that ends exactly at `serial` is kept, within the cap.
    pub fn restore(serial: u32, digest: u64, max_changes: usize, versions: Vec<Version>) -> Self {
        let mut j = Journal::new(serial, digest, max_changes);
        let mut chain: Vec<Version> = Vec::new();
        let mut want = serial;
        for v in versions.into_iter().rev() {
            if v.to != want {
                break;
            }
            want = v.from;
            chain.push(v);
        }
        chain.reverse();
        for v in chain {
            j.changes += v.changes();
            j.versions.push_back(v);
        }
        while j.changes > j.max_changes {
            match j.versions.pop_front() {
                Some(v) => j.changes -= v.changes(),
                None => break,
            }
        }
        j
    }

    /// The history, oldest first (to rewrite the journal file).
    pub fn history(&self) -> impl Iterator<Item = &Version> {
        self.versions.iter()
    }

    /// The newest version (the one just sealed).
    pub fn latest(&self) -> Option<&Version> {
        self.versions.back()
    }

    /// The last published serial.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// The zone digest at the last published serial.
    pub fn digest(&self) -> u64 {
        self.digest
    }

    /// RR changes held for IXFR.
    pub fn changes(&self) -> usize {
        self.changes
    }

    /// Versions held for IXFR.
    pub fn versions(&self) -> usize {
        self.versions.len()
    }

    /// True when names changed since the last published version.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Remember `name`'s values before the view changes it (call under the same lock
    /// as the change; names outside the zone are ignored).
    pub fn note(&mut self, view: &ZoneView, name: &str) {
        let Some(key) = view.cfg.rel_key(name) else { return };
        if !self.pending.contains_key(key.as_slice()) {
            let old = values_at(view, &key);
            self.pending.insert(key.into_boxed_slice(), old);
        }
    }

    /// Publish the pending changes as a new version at Unix time `now`. Returns the new
    /// serial, or `None` when nothing actually changed (the serial stays).
    pub fn seal(&mut self, view: &ZoneView, now: u32) -> Option<u32> {
        if self.pending.is_empty() {
            return None;
        }
        let mut deleted = Vec::new();
        let mut added = Vec::new();
        let mut pending: Vec<_> = self.pending.drain().collect();
        pending.sort_by(|a, b| a.0.cmp(&b.0));
        for (key, old) in pending {
            let new = values_at(view, &key);
            for v in &old {
                if !new.contains(v) {
                    deleted.push((key.clone(), v.clone()));
                }
            }
            for v in &new {
                if !old.contains(v) {
                    added.push((key.clone(), v.clone()));
                }
            }
        }
        if deleted.is_empty() && added.is_empty() {
            return None;
        }
        for (k, v) in &deleted {
            self.digest = self.digest.wrapping_sub(rr_hash(k, v));
        }
        for (k, v) in &added {
            self.digest = self.digest.wrapping_add(rr_hash(k, v));
        }
        let to = next_serial(self.serial, now);
        let version = Version { from: self.serial, to, deleted, added };
        self.changes += version.changes();
        self.versions.push_back(version);
        self.serial = to;
        while self.changes > self.max_changes {
            match self.versions.pop_front() {
                Some(v) => self.changes -= v.changes(),
                None => break,
            }
        }
        Some(to)
    }

    /// Publish a version without TXT changes (a new serial for the same records): the
    /// signed zone changed (signatures renewed, keys rolled, or re-made after a
    /// restart), so secondaries must transfer it again. Returns the new serial.
    pub fn bump(&mut self, now: u32) -> u32 {
        let to = next_serial(self.serial, now);
        self.versions.push_back(Version {
            from: self.serial,
            to,
            deleted: Vec::new(),
            added: Vec::new(),
        });
        self.changes += 1;
        self.serial = to;
        while self.changes > self.max_changes {
            match self.versions.pop_front() {
                Some(v) => self.changes -= v.changes(),
                None => break,
            }
        }
        to
    }

    /// The versions leading from `from` to the current serial: `Some(empty)` when `from`
    /// is current, `None` when the history does not reach back to it.
    pub fn since(&self, from: u32) -> Option<Vec<Version>> {
        if from == self.serial {
            return Some(Vec::new());
        }
        let start = self.versions.iter().position(|v| v.from == from)?;
        Some(self.versions.iter().skip(start).cloned().collect())
    }

    /// Decide how to answer a transfer: `ixfr_from` is the client's serial for IXFR.
    /// Publishes pending changes first (at `now`), so the answer matches the view. The
    /// caller holds the lock that keeps view writers out.
    pub fn plan(&mut self, view: &ZoneView, ixfr_from: Option<u32>, now: u32) -> (Plan, bool) {
        let sealed = self.seal(view, now).is_some();
        if sealed {
            view.set_serial(self.serial);
        }
        let serial = self.serial;
        if let Some(from) = ixfr_from {
            if from == serial || serial_gt(from, serial) {
                return (Plan::UpToDate { serial }, sealed);
            }
            if let Some(versions) = self.since(from) {
                return (Plan::Incremental { serial, versions }, sealed);
            }
        }
        (Plan::Full { serial, names: view.snapshot() }, sealed)
    }
}

/// The apex SOA with `serial`, owned by the question name (offset 12).
pub fn soa_rr(view: &ZoneView, serial: u32) -> Vec<u8> {
    let cfg = &view.cfg;
    let mut out = Vec::with_capacity(64);
    put_rr_head(&mut out, QNAME_OFF, TYPE_SOA, cfg.ttl, 0);
    cfg.mname.put(&mut out, QNAME_OFF);
    cfg.rname.put(&mut out, QNAME_OFF);
    for v in [serial, cfg.refresh, cfg.retry, cfg.expire, cfg.minimum] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    patch_rdlen(&mut out, 10);
    out
}

/// The fixed apex data other than the SOA: NS, apex A/AAAA, in-zone host A/AAAA.
pub fn fixed_rrs(view: &ZoneView) -> Vec<Vec<u8>> {
    let cfg = &view.cfg;
    let mut out = Vec::new();
    for ns in &cfg.ns {
        let mut rr = Vec::new();
        put_rr_head(&mut rr, QNAME_OFF, TYPE_NS, cfg.ttl, 0);
        ns.put(&mut rr, QNAME_OFF);
        patch_rdlen(&mut rr, 10);
        out.push(rr);
    }
    let mut push_addrs = |key: &[u8], a: &[[u8; 4]], aaaa: &[[u8; 16]]| {
        for x in a {
            let mut rr = key.to_vec();
            put_addrs(&mut rr, QNAME_OFF, cfg.ttl, std::slice::from_ref(x), TYPE_A);
            out.push(rr);
        }
        for x in aaaa {
            let mut rr = key.to_vec();
            put_addrs(&mut rr, QNAME_OFF, cfg.ttl, std::slice::from_ref(x), TYPE_AAAA);
            out.push(rr);
        }
    };
    push_addrs(&[], &cfg.apex.a, &cfg.apex.aaaa);
    for h in &cfg.hosts {
        push_addrs(&h.key, &h.addrs.a, &h.addrs.aaaa);
    }
    out
}

/// One TXT RR (owner `key` + the zone), as in the view's answers.
pub fn txt_rr(view: &ZoneView, key: &[u8], value: &[u8]) -> Vec<u8> {
    let (rrs, _) = build_rrs(&[value], view.cfg.ttl);
    let mut rr = key.to_vec();
    rr.extend_from_slice(&rrs);
    rr
}

/// Split a name's precomputed answer RRs (owner pointer 0xC00C each) into RRs owned by
/// `key` + the zone.
pub fn split_rrs(key: &[u8], rrs: &[u8], out: &mut Vec<Vec<u8>>) {
    let mut pos = 0usize;
    while let Some(len) = rrs.get(pos + 10..pos + 12) {
        let end = pos + 12 + u16::from_be_bytes([len[0], len[1]]) as usize;
        let Some(rr) = rrs.get(pos..end) else { break };
        let mut v = key.to_vec();
        v.extend_from_slice(rr);
        out.push(v);
        pos = end;
    }
}

impl Plan {
    /// The plan's serial.
    pub fn serial(&self) -> u32 {
        match self {
            Plan::UpToDate { serial }
            | Plan::Incremental { serial, .. }
            | Plan::Full { serial, .. } => *serial,
        }
    }

    /// "ixfr", "axfr" or "current", for counters.
    pub fn kind(&self) -> &'static str {
        match self {
            Plan::UpToDate { .. } => "current",
            Plan::Incremental { .. } => "ixfr",
            Plan::Full { .. } => "axfr",
        }
    }

    /// Every RR of the answer in order, produced lazily (a large zone is never encoded
    /// all at once): SOA … SOA.
    pub fn rrs<'a>(&'a self, view: &'a ZoneView) -> Box<dyn Iterator<Item = Vec<u8>> + Send + 'a> {
        let serial = self.serial();
        match self {
            Plan::UpToDate { .. } => Box::new(std::iter::once(soa_rr(view, serial))),
            Plan::Incremental { versions, .. } => {
                let body = versions.iter().flat_map(move |v| {
                    std::iter::once(soa_rr(view, v.from))
                        .chain(v.deleted.iter().map(move |(k, val)| txt_rr(view, k, val)))
                        .chain(std::iter::once(soa_rr(view, v.to)))
                        .chain(v.added.iter().map(move |(k, val)| txt_rr(view, k, val)))
                });
                Box::new(
                    std::iter::once(soa_rr(view, serial))
                        .chain(body)
                        .chain(std::iter::once(soa_rr(view, serial))),
                )
            }
            Plan::Full { names, .. } => {
                let body = names.iter().flat_map(|(k, rrs)| {
                    let mut v = Vec::new();
                    split_rrs(k, rrs, &mut v);
                    v.into_iter()
                });
                Box::new(
                    std::iter::once(soa_rr(view, serial))
                        .chain(fixed_rrs(view))
                        .chain(body)
                        .chain(std::iter::once(soa_rr(view, serial))),
                )
            }
        }
    }
}

/// Packs RRs into response messages of about `target` bytes, each with the question
/// echoed (compression pointers in the RRs refer to it at offset 12).
#[derive(Debug)]
pub struct Packer {
    head: Vec<u8>,
    target: usize,
    cur: Vec<u8>,
    count: u16,
    ready: Vec<Vec<u8>>,
}

impl Packer {
    /// `id` and `rd` from the request; `question` is its question section as sent.
    pub fn new(id: u16, rd: bool, question: &[u8], target: usize) -> Self {
        let mut head = Vec::with_capacity(12 + question.len());
        head.extend_from_slice(&id.to_be_bytes());
        head.extend_from_slice(&[0x84 | u8::from(rd), 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        head.extend_from_slice(question);
        Packer { cur: head.clone(), head, target, count: 0, ready: Vec::new() }
    }

    /// Add one RR (a new message starts when this one would pass the target size).
    pub fn push(&mut self, rr: &[u8]) {
        if self.count > 0 && (self.cur.len() + rr.len() > self.target || self.count == u16::MAX) {
            self.finish();
        }
        self.cur.extend_from_slice(rr);
        self.count += 1;
    }

    fn finish(&mut self) {
        let mut msg = std::mem::replace(&mut self.cur, self.head.clone());
        msg[6..8].copy_from_slice(&self.count.to_be_bytes());
        self.ready.push(msg);
        self.count = 0;
    }

    /// Number of messages completed and not yet taken.
    pub fn ready_len(&self) -> usize {
        self.ready.len()
    }

    /// Messages completed so far.
    pub fn take_ready(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.ready)
    }

    /// Close the last message and return what is left.
    pub fn end(mut self) -> Vec<Vec<u8>> {
        if self.count > 0 {
            self.finish();
        }
        self.ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dnswire::ZoneConfig;

    fn view() -> ZoneView {
        let v = ZoneView::new(&ZoneConfig::new(
            "mesh.test",
            "ns1.mesh.test",
            "h.mesh.test",
            &["ns1.mesh.test"],
        ))
        .unwrap();
        v.set_manual_serial();
        v
    }

    #[test]
    fn serial_arithmetic() {
        assert!(serial_gt(2, 1));
        assert!(serial_gt(0, u32::MAX));
        assert!(!serial_gt(1, 1));
        assert!(!serial_gt(1, 2));
        assert_eq!(next_serial(10, 5), 11);
        assert_eq!(next_serial(10, 100), 100);
        assert_eq!(next_serial(u32::MAX, 3), 3);
    }

    #[test]
    fn journal_versions_and_fallback() {
        let v = view();
        let mut j = Journal::new(100, zone_digest(&v), 3);
        j.note(&v, "a.mesh.test");
        v.set_txt("a.mesh.test", &[b"one"]);
        assert_eq!(j.seal(&v, 0), Some(101));
        j.note(&v, "a.mesh.test");
        v.set_txt("a.mesh.test", &[b"one", b"two"]);
        j.note(&v, "b.mesh.test");
        v.set_txt("b.mesh.test", &[b"x"]);
        v.set_txt("b.mesh.test", &[]);
        assert_eq!(j.seal(&v, 0), Some(102));
        assert_eq!(j.digest(), zone_digest(&v));
        let vs = j.since(100).unwrap();
        assert_eq!(vs.len(), 2);
        assert_eq!(vs[1].added, vec![(b"\x01a".to_vec().into_boxed_slice(), b"two".to_vec())]);
        assert!(vs[1].deleted.is_empty());
        // Nothing changed: no new serial.
        j.note(&v, "c.mesh.test");
        assert_eq!(j.seal(&v, 0), None);
        // Past the cap, the oldest version goes and IXFR from 100 falls back.
        j.note(&v, "a.mesh.test");
        v.set_txt("a.mesh.test", &[]);
        assert_eq!(j.seal(&v, 0), Some(103));
        assert!(j.since(100).is_none());
        assert_eq!(j.since(102).unwrap().len(), 1);
        assert_eq!(j.digest(), zone_digest(&v));
        match j.plan(&v, Some(100), 0).0 {
            Plan::Full { serial, names } => {
                assert_eq!(serial, 103);
                assert!(names.is_empty());
            }
            p => panic!("{p:?}"),
        }
        assert!(matches!(j.plan(&v, Some(200), 0).0, Plan::UpToDate { serial: 103 }));
    }

    #[test]
    fn journal_file_roundtrip_and_restore() {
        let v = view();
        let mut j = Journal::new(10, zone_digest(&v), 100);
        let mut file = Vec::new();
        for (i, val) in [&b"a"[..], b"b", b"c"].iter().enumerate() {
            j.note(&v, "x.mesh.test");
            v.set_txt("x.mesh.test", &[val]);
            j.seal(&v, 0).unwrap();
            j.latest().unwrap().encode(&mut file);
            assert_eq!(j.serial(), 11 + i as u32);
        }
        let all = Version::decode_all(&file);
        assert_eq!(all.len(), 3);
        assert_eq!(all, j.history().cloned().collect::<Vec<_>>());
        // A torn tail is dropped; damaged bytes end the file.
        assert_eq!(Version::decode_all(&file[..file.len() - 1]).len(), 2);
        let mut bad = file.clone();
        bad[25] ^= 1;
        assert_eq!(Version::decode_all(&bad).len(), 0);
        // Restored at 13: IXFR from 10 works; restored at another serial: no history.
        let r = Journal::restore(13, j.digest(), 100, all.clone());
        assert_eq!(r.since(10).unwrap().len(), 3);
        assert!(Journal::restore(14, 0, 100, all.clone()).since(10).is_none());
        // The cap applies.
        assert_eq!(Journal::restore(13, 0, 2, all).versions(), 1);
        for cut in 0..file.len() {
            let _ = Version::decode_all(&file[..cut]);
        }
    }

    #[test]
    fn packer_splits_and_counts() {
        let v = view();
        v.set_txt("a.mesh.test", &[b"one", b"two"]);
        let plan = Plan::Full { serial: 7, names: v.snapshot() };
        let q = b"\x04mesh\x04test\x00\x00\xfc\x00\x01";
        let mut p = Packer::new(9, false, q, 60);
        for rr in plan.rrs(&v) {
            p.push(&rr);
        }
        let msgs = p.end();
        assert!(msgs.len() > 1);
        let total: u16 = msgs.iter().map(|m| u16::from_be_bytes([m[6], m[7]])).sum();
        // SOA, NS, two TXT, SOA.
        assert_eq!(total, 5);
        for m in &msgs {
            assert_eq!(&m[..2], &[0, 9]);
            assert_eq!(&m[12..12 + q.len()], q);
        }
    }
}
