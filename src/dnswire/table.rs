//! The view's name table: sharded hash tables whose slots are 4-byte offsets into the
//! shard's own arena, where each name is one block holding its key, counters, answer
//! bytes and signature. With a million names (and as many empty non-terminals) the
//! slots cost a quarter of a table of boxed entries (16-byte fat pointers) and the
//! blocks carry no allocator header or size-class rounding (issue 18's memory target);
//! the arenas are also what the start-up image holds ([`Table::visit_shard`],
//! [`Table::fill_shard`]), so a restart reads them back without an allocation per name.
//!
//! Readers take one shard's read lock for the duration of a closure; writers (the view
//! serialises them) take one shard's write lock. No allocation on a lookup. A block
//! that changes size moves to the end of its arena; a shard whose arena is more than a
//! quarter dead is compacted under its write lock (a few ms for 1/64 of the zone).

use std::hash::BuildHasher;
use std::sync::RwLock;

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;

/// Shards (a power of two): writers rarely meet readers on the same one.
pub(crate) const SHARDS: usize = 64;
const SHARD_BITS: u32 = SHARDS.trailing_zeros();

/// Bytes before the key: key length (1), RR count (2), names with TXT below (4),
/// signature length (2).
const HDR: usize = 9;

/// Each block in an arena: `[len u32 LE]` then the entry's bytes.
const LEN: usize = 4;

/// A shard is compacted once this many bytes and a quarter of its arena are dead.
const COMPACT_MIN_DEAD: usize = 16 * 1024;

/// A name's bytes: `[klen][count][desc][siglen] key rrs sig`.
#[derive(Clone, Copy)]
pub(crate) struct EntryRef<'a>(&'a [u8]);

impl<'a> EntryRef<'a> {
    fn klen(&self) -> usize {
        self.0[0] as usize
    }

    fn slen(&self) -> usize {
        u16::from_le_bytes([self.0[7], self.0[8]]) as usize
    }

    /// The lower-cased wire labels relative to the origin.
    pub(crate) fn key(&self) -> &'a [u8] {
        &self.0[HDR..HDR + self.klen()]
    }

    /// Number of TXT RRs in [`EntryRef::rrs`].
    pub(crate) fn count(&self) -> u16 {
        u16::from_le_bytes([self.0[1], self.0[2]])
    }

    /// Number of names with TXT strictly below this one.
    pub(crate) fn desc(&self) -> u32 {
        u32::from_le_bytes([self.0[3], self.0[4], self.0[5], self.0[6]])
    }

    /// The answer section, ready to copy (see `view::build_rrs`); empty without TXT.
    pub(crate) fn rrs(&self) -> &'a [u8] {
        &self.0[HDR + self.klen()..self.0.len() - self.slen()]
    }

    /// RRSIG RDATA over the TXT RRset (DNSSEC on and `count > 0`), else empty.
    pub(crate) fn sig(&self) -> &'a [u8] {
        &self.0[self.0.len() - self.slen()..]
    }

    /// Whether `b` is a well-formed entry (a block read back from an image): header,
    /// key labels and answer RRs all within bounds and consistent with the counts.
    fn check(b: &[u8]) -> bool {
        if b.len() < HDR {
            return false;
        }
        let e = EntryRef(b);
        if HDR + e.klen() + e.slen() > b.len() {
            return false;
        }
        let key = e.key();
        let mut pos = 0;
        while pos < key.len() {
            let l = key[pos] as usize;
            if l == 0 || l > 63 {
                return false;
            }
            pos += 1 + l;
        }
        if pos != key.len() {
            return false;
        }
        // The answer RRs tile `rrs` exactly, `count` of them.
        let rrs = e.rrs();
        let (mut pos, mut n) = (0usize, 0u32);
        while pos < rrs.len() {
            let Some(h) = rrs.get(pos..pos + 12) else { return false };
            pos += 12 + u16::from_be_bytes([h[10], h[11]]) as usize;
            n += 1;
        }
        pos == rrs.len() && n == u32::from(e.count())
    }
}

/// One name's bytes in their own allocation, before they go into the table.
pub(crate) struct Entry(Box<[u8]>);

impl Entry {
    /// Keys are relative wire names (at most 255 bytes); RRSIG RDATA fits in 16 bits.
    pub(crate) fn new(key: &[u8], count: u16, desc: u32, rrs: &[u8], sig: &[u8]) -> Entry {
        Entry(encode(key, count, desc, rrs, sig).into_boxed_slice())
    }

    pub(crate) fn get(&self) -> EntryRef<'_> {
        EntryRef(&self.0)
    }
}

fn encode(key: &[u8], count: u16, desc: u32, rrs: &[u8], sig: &[u8]) -> Vec<u8> {
    let klen = key.len().min(255);
    let slen = sig.len().min(u16::MAX as usize);
    let mut b = Vec::with_capacity(HDR + klen + rrs.len() + slen);
    b.push(klen as u8);
    b.extend_from_slice(&count.to_le_bytes());
    b.extend_from_slice(&desc.to_le_bytes());
    b.extend_from_slice(&(slen as u16).to_le_bytes());
    b.extend_from_slice(&key[..klen]);
    b.extend_from_slice(rrs);
    b.extend_from_slice(&sig[..slen]);
    b
}

/// One shard's slots and the arena they point into.
#[derive(Default)]
struct Inner {
    slots: HashTable<u32>,
    arena: Vec<u8>,
    /// Bytes of blocks no slot points at any more.
    dead: usize,
}

/// The block (length prefix included) at `off`.
#[inline]
fn block_at(arena: &[u8], off: u32) -> &[u8] {
    let o = off as usize;
    let len = u32::from_le_bytes(arena[o..o + LEN].try_into().unwrap_or([0; LEN]));
    &arena[o..o + LEN + len as usize]
}

#[inline]
fn entry_at(arena: &[u8], off: u32) -> EntryRef<'_> {
    EntryRef(&block_at(arena, off)[LEN..])
}

/// Append an entry; `None` when the arena is past what a 4-byte offset reaches (4 GiB
/// in one shard of 64: far beyond any zone this node can hold in memory).
fn append(arena: &mut Vec<u8>, entry: &[u8]) -> Option<u32> {
    let off = u32::try_from(arena.len()).ok()?;
    let need = LEN + entry.len();
    if arena.capacity() - arena.len() < need {
        // Grow by an eighth, not by doubling: at most 12.5 % slack after a bulk load.
        arena.reserve_exact(need.max(arena.len() / 8).max(4096));
    }
    arena.extend_from_slice(&(entry.len() as u32).to_le_bytes());
    arena.extend_from_slice(entry);
    Some(off)
}

impl Inner {
    #[inline]
    fn find(&self, h: u64, key: &[u8]) -> Option<EntryRef<'_>> {
        let arena = &self.arena;
        self.slots.find(h, |&o| entry_at(arena, o).key() == key).map(|&o| entry_at(arena, o))
    }

    fn insert(&mut self, h: u64, entry: &[u8]) -> bool {
        let Some(off) = append(&mut self.arena, entry) else { return false };
        let arena = &self.arena;
        self.slots.insert_unique(h, off, |&o| hash(entry_at(arena, o).key()));
        true
    }

    /// Rewrite the arena with live blocks only, once a quarter of it is dead.
    fn maybe_compact(&mut self) {
        if self.dead >= COMPACT_MIN_DEAD && self.dead * 4 >= self.arena.len() {
            self.compact();
        }
    }

    fn compact(&mut self) {
        let live = self.arena.len() - self.dead;
        let mut fresh = Vec::with_capacity(live + live / 8);
        for slot in self.slots.iter_mut() {
            let b = block_at(&self.arena, *slot);
            *slot = fresh.len() as u32; // ≤ the old offset: it fits
            fresh.extend_from_slice(b);
        }
        self.arena = fresh;
        self.dead = 0;
    }
}

/// A name's entry under its shard's write lock ([`Table::with_mut`]).
pub(crate) struct EntryMut<'a> {
    arena: &'a mut Vec<u8>,
    dead: &'a mut usize,
    slot: &'a mut u32,
}

impl EntryMut<'_> {
    fn get(&self) -> EntryRef<'_> {
        entry_at(self.arena, *self.slot)
    }

    pub(crate) fn desc(&self) -> u32 {
        self.get().desc()
    }

    pub(crate) fn sig(&self) -> &[u8] {
        self.get().sig()
    }

    pub(crate) fn set_desc(&mut self, desc: u32) {
        let o = *self.slot as usize + LEN;
        self.arena[o + 3..o + 7].copy_from_slice(&desc.to_le_bytes());
    }

    /// Replace the RRset (and its signature), keeping key and `desc`.
    pub(crate) fn set_rrs(&mut self, count: u16, rrs: &[u8], sig: &[u8]) {
        let e = self.get();
        let bytes = encode(e.key(), count, e.desc(), rrs, sig);
        self.replace(&bytes);
    }

    /// Replace the signature only.
    pub(crate) fn set_sig(&mut self, sig: &[u8]) {
        let e = self.get();
        let bytes = encode(e.key(), e.count(), e.desc(), e.rrs(), sig);
        self.replace(&bytes);
    }

    /// In place when the size is unchanged (a re-signature), else moved to the end.
    fn replace(&mut self, bytes: &[u8]) {
        let o = *self.slot as usize;
        let old = block_at(self.arena, *self.slot).len();
        if old == LEN + bytes.len() {
            self.arena[o + LEN..o + old].copy_from_slice(bytes);
        } else if let Some(off) = append(self.arena, bytes) {
            *self.slot = off;
            *self.dead += old;
        }
    }
}

fn hash(key: &[u8]) -> u64 {
    FxBuildHasher.hash_one(key)
}

fn shard_of(h: u64) -> usize {
    // Bits below hashbrown's control byte (the top 7) and above its bucket index.
    ((h << 7) >> (64 - SHARD_BITS)) as usize
}

/// One shard, alone on its cache lines: a read lock is an atomic write to the lock word,
/// so two UDP threads reading neighbouring shards must not share a line (false sharing;
/// `benches/load/threads.sh` measures 2 threads against 1).
#[repr(align(128))]
struct Shard(RwLock<Inner>);

/// Sharded `key → entry` table.
pub(crate) struct Table {
    shards: Box<[Shard]>,
}

impl Default for Table {
    fn default() -> Self {
        Table { shards: (0..SHARDS).map(|_| Shard(RwLock::new(Inner::default()))).collect() }
    }
}

/// Why an image's shard was refused ([`Table::fill_shard`]).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FillError {
    #[error("shard {0}: block at byte {1} is malformed")]
    Malformed(usize, usize),
    #[error("shard {0}: holds {1} blocks, its header says {2}")]
    Count(usize, usize, usize),
    #[error("shard {0}: a key belongs to another shard")]
    WrongShard(usize),
    #[error("shard {0} is not empty")]
    NotEmpty(usize),
}

/// What [`Table::fill_shard`] put in: names holding TXT, and the view's byte estimate.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Filled {
    pub names: usize,
    pub txt_bytes: usize,
    pub key_bytes: usize,
    pub entries: usize,
}

impl Table {
    fn read(&self, h: u64) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.shards[shard_of(h)].0.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self, h: u64) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.shards[shard_of(h)].0.write().unwrap_or_else(|p| p.into_inner())
    }

    fn write_shard(&self, i: usize) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.shards[i].0.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Run `f` on the entry of `key` (or `None`) under its shard's read lock.
    #[inline]
    pub(crate) fn with<R>(&self, key: &[u8], f: impl FnOnce(Option<EntryRef<'_>>) -> R) -> R {
        let h = hash(key);
        let shard = self.read(h);
        f(shard.find(h, key))
    }

    /// Run `f` on the entry of `key` under its shard's write lock; `None` if absent.
    pub(crate) fn with_mut<R>(&self, key: &[u8], f: impl FnOnce(&mut EntryMut) -> R) -> Option<R> {
        let h = hash(key);
        let mut shard = self.write(h);
        let Inner { slots, arena, dead } = &mut *shard;
        let found = {
            let a = &*arena;
            slots.find_mut(h, |&o| entry_at(a, o).key() == key)
        };
        let r = found.map(|slot| f(&mut EntryMut { arena, dead, slot }));
        shard.maybe_compact();
        r
    }

    /// Insert `e` (its key must not be present). Returns false only when the shard's
    /// arena is past 4 GiB.
    pub(crate) fn insert(&self, e: Entry) -> bool {
        let h = hash(e.get().key());
        self.write(h).insert(h, &e.0)
    }

    /// Remove the entry of `key` if `pred` holds for it; returns whether it went.
    pub(crate) fn remove_if(&self, key: &[u8], pred: impl FnOnce(EntryRef<'_>) -> bool) -> bool {
        let h = hash(key);
        let mut shard = self.write(h);
        let Inner { slots, arena, dead } = &mut *shard;
        let a = &*arena;
        let gone = match slots.find_entry(h, |&o| entry_at(a, o).key() == key) {
            Ok(occ) if pred(entry_at(a, *occ.get())) => {
                *dead += block_at(a, *occ.get()).len();
                occ.remove();
                true
            }
            _ => false,
        };
        if gone {
            shard.maybe_compact();
        }
        gone
    }

    /// Room for `additional` more entries, spread over the shards (a bulk load).
    pub(crate) fn reserve(&self, additional: usize) {
        let per = additional.div_ceil(SHARDS);
        for i in 0..SHARDS {
            let mut s = self.write_shard(i);
            let Inner { slots, arena, .. } = &mut *s;
            slots.reserve(per, |&o| hash(entry_at(arena, o).key()));
        }
    }

    /// Give back room no entry uses (after a bulk load that reserved generously).
    pub(crate) fn shrink_to_fit(&self) {
        for i in 0..SHARDS {
            let mut s = self.write_shard(i);
            if s.dead > 0 {
                s.compact();
            }
            let Inner { slots, arena, .. } = &mut *s;
            slots.shrink_to_fit(|&o| hash(entry_at(arena, o).key()));
            arena.shrink_to_fit();
        }
    }

    /// Remove every entry.
    pub(crate) fn clear(&self) {
        for i in 0..SHARDS {
            *self.write_shard(i) = Inner::default();
        }
    }

    /// Visit every entry, one shard's read lock at a time (not a consistent copy: the
    /// caller keeps writers out when it needs one).
    pub(crate) fn for_each(&self, mut f: impl FnMut(EntryRef<'_>)) {
        for s in self.shards.iter() {
            let s = s.0.read().unwrap_or_else(|p| p.into_inner());
            for &o in s.slots.iter() {
                f(entry_at(&s.arena, o));
            }
        }
    }

    /// Shard `i` as an image section: `f` gets its entry count, the bytes of its live
    /// blocks and those blocks (length prefix included), under its read lock.
    pub(crate) fn visit_shard<R>(
        &self,
        i: usize,
        f: impl FnOnce(usize, usize, &mut dyn Iterator<Item = &[u8]>) -> R,
    ) -> R {
        let s = self.shards[i].0.read().unwrap_or_else(|p| p.into_inner());
        let arena = &s.arena;
        // Counted, not derived from `dead`: the section's length is what is written.
        let bytes = s.slots.iter().map(|&o| block_at(arena, o).len()).sum();
        let mut blocks = s.slots.iter().map(|&o| block_at(arena, o));
        f(s.slots.len(), bytes, &mut blocks)
    }

    /// Make `arena` (an image section written by [`Table::visit_shard`]) the contents of
    /// empty shard `i`: every block is checked and indexed; the shard is left empty on
    /// any error.
    pub(crate) fn fill_shard(
        &self,
        i: usize,
        arena: Vec<u8>,
        entries: usize,
    ) -> Result<Filled, FillError> {
        let mut s = self.write_shard(i);
        if !s.slots.is_empty() || !s.arena.is_empty() {
            return Err(FillError::NotEmpty(i));
        }
        let mut slots: HashTable<u32> = HashTable::with_capacity(entries);
        let mut filled = Filled::default();
        let mut pos = 0usize;
        while pos < arena.len() {
            let bad = FillError::Malformed(i, pos);
            let Some(l) = arena.get(pos..pos + LEN) else { return Err(bad) };
            let len = u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize;
            let Some(b) = arena.get(pos + LEN..pos + LEN + len) else { return Err(bad) };
            let Ok(off) = u32::try_from(pos) else { return Err(bad) };
            if !EntryRef::check(b) {
                return Err(bad);
            }
            let e = EntryRef(b);
            let h = hash(e.key());
            if shard_of(h) != i {
                return Err(FillError::WrongShard(i));
            }
            if filled.entries == entries {
                return Err(FillError::Count(i, filled.entries + 1, entries));
            }
            slots.insert_unique(h, off, |&o| hash(entry_at(&arena, o).key()));
            filled.entries += 1;
            filled.key_bytes += e.key().len();
            if e.count() > 0 {
                filled.names += 1;
                filled.txt_bytes += e.rrs().len() + e.sig().len();
            }
            pos += LEN + len;
        }
        if filled.entries != entries {
            return Err(FillError::Count(i, filled.entries, entries));
        }
        s.slots = slots;
        s.arena = arena;
        s.dead = 0;
        Ok(filled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc_of(t: &Table, k: u32) -> Option<u32> {
        t.with(&key(k), |e| e.map(|e| e.desc()))
    }

    fn key(i: u32) -> Vec<u8> {
        format!("\x08n{i:07}").into_bytes()
    }

    #[test]
    fn entry_layout_roundtrip() {
        let t = Table::default();
        t.insert(Entry::new(b"\x01a\x02bb", 2, 7, b"rrs-bytes", b"sig"));
        let k = b"\x01a\x02bb";
        let get = |t: &Table| {
            t.with(k, |e| {
                let e = e.unwrap();
                (e.key().to_vec(), e.count(), e.desc(), e.rrs().to_vec(), e.sig().to_vec())
            })
        };
        assert_eq!(get(&t), (k.to_vec(), 2, 7, b"rrs-bytes".to_vec(), b"sig".to_vec()));
        t.with_mut(k, |e| {
            e.set_desc(9);
            e.set_rrs(1, b"r", b"");
        });
        assert_eq!(get(&t), (k.to_vec(), 1, 9, b"r".to_vec(), b"".to_vec()));
        t.with_mut(k, |e| e.set_sig(b"ss"));
        assert_eq!(get(&t), (k.to_vec(), 1, 9, b"r".to_vec(), b"ss".to_vec()));
        // Same size: rewritten in place, nothing dead.
        t.with_mut(k, |e| e.set_sig(b"tt"));
        t.visit_shard(shard_of(hash(k)), |n, bytes, _| assert_eq!((n, bytes), (1, 4 + 9 + 5 + 3)));
    }

    #[test]
    fn insert_find_remove() {
        let t = Table::default();
        t.reserve(100);
        for i in 0..1000u32 {
            t.insert(Entry::new(&key(i), 0, i, b"", b""));
        }
        assert_eq!(desc_of(&t, 7), Some(7));
        assert!(t.with(b"\x04nope", |e| e.is_none()));
        assert_eq!(t.with_mut(&key(7), |e| e.set_desc(70)), Some(()));
        assert!(!t.remove_if(&key(7), |e| e.desc() == 7));
        assert!(t.remove_if(&key(7), |e| e.desc() == 70));
        let mut n = 0;
        t.for_each(|_| n += 1);
        assert_eq!(n, 999);
    }

    #[test]
    fn churn_compacts_arenas_and_keeps_every_entry() {
        let t = Table::default();
        for i in 0..2000u32 {
            t.insert(Entry::new(&key(i), 0, i, b"", b""));
        }
        // Grow every entry many times over: blocks move, shards compact.
        for round in 1..40u32 {
            for i in 0..2000u32 {
                let sig = vec![round as u8; round as usize];
                t.with_mut(&key(i), |e| e.set_sig(&sig)).unwrap();
            }
            for i in (0..2000u32).step_by(7) {
                assert_eq!(t.with(&key(i), |e| e.unwrap().sig().len()), round as usize);
            }
        }
        let mut arena = 0;
        for i in 0..SHARDS {
            arena += t.visit_shard(i, |_, bytes, _| bytes);
        }
        let dead: usize = t.shards.iter().map(|s| s.0.read().unwrap().dead).sum();
        let total: usize = t.shards.iter().map(|s| s.0.read().unwrap().arena.len()).sum();
        // Each shard holds at most a quarter (or 16 KiB) dead; about 2.6 MB were written.
        assert!(dead <= total / 4 + SHARDS * COMPACT_MIN_DEAD, "dead {dead} of {total}");
        assert!(total < 1_500_000, "arenas were compacted: {total} bytes");
        assert_eq!(arena, total - dead);
        for i in 0..2000u32 {
            assert_eq!(desc_of(&t, i), Some(i));
        }
    }

    #[test]
    fn shards_round_trip_through_image_sections() {
        let t = Table::default();
        let rr = |v: &[u8]| {
            let mut r = vec![0xC0, 0x0C, 0, 16, 0, 1, 0, 0, 0, 60, 0, v.len() as u8 + 1];
            r.push(v.len() as u8);
            r.extend_from_slice(v);
            r
        };
        for i in 0..500u32 {
            let c = (i % 3 != 0) as u16;
            let rrs = if c == 1 { rr(format!("v{i}").as_bytes()) } else { Vec::new() };
            t.insert(Entry::new(&key(i), c, i % 5, &rrs, b""));
        }
        t.remove_if(&key(4), |_| true);
        t.with_mut(&key(10), |e| e.set_sig(b"a longer signature")).unwrap();
        // Small arenas with dead blocks are rewritten too (below the compaction minimum).
        t.shrink_to_fit();
        assert!(t.shards.iter().all(|s| s.0.read().unwrap().dead == 0));
        let back = Table::default();
        let mut total = Filled::default();
        for i in 0..SHARDS {
            let (n, bytes) = t.visit_shard(i, |n, bytes, blocks| {
                let mut a = Vec::new();
                blocks.for_each(|b| a.extend_from_slice(b));
                assert_eq!(a.len(), bytes);
                (n, a)
            });
            let f = back.fill_shard(i, bytes, n).unwrap();
            total.entries += f.entries;
            total.names += f.names;
        }
        assert_eq!((total.entries, total.names), (499, 332));
        for i in (0..500u32).filter(|&i| i != 4) {
            let want = t.with(&key(i), |e| e.map(|e| (e.count(), e.rrs().to_vec())));
            assert_eq!(back.with(&key(i), |e| e.map(|e| (e.count(), e.rrs().to_vec()))), want);
        }
        assert!(back.with(&key(4), |e| e.is_none()));
    }

    /// A section of `n` well-formed entries of shard 0 (as `visit_shard` writes them).
    fn section(n: u32) -> (Vec<u8>, usize) {
        let mut out = Vec::new();
        let mut count = 0;
        for i in 0..n * 64 {
            let k = key(i);
            if shard_of(hash(&k)) != 0 {
                continue;
            }
            let rrs = [&[0xC0, 0x0C, 0, 16, 0, 1, 0, 0, 0, 60, 0, 2, 1][..], b"x"].concat();
            let e = encode(&k, 1, i % 3, &rrs, b"sig");
            out.extend_from_slice(&(e.len() as u32).to_le_bytes());
            out.extend_from_slice(&e);
            count += 1;
            if count == n as usize {
                break;
            }
        }
        (out, count)
    }

    proptest::proptest! {
        /// Whatever bytes an image section holds (damaged good ones, or noise), filling a
        /// shard with them returns, never panics, and leaves the shard empty on error and
        /// readable on success.
        #[test]
        fn fill_shard_takes_any_bytes(
            n in 0u32..6,
            flips in proptest::collection::vec((0usize..4096, 0u8..=255), 0..6),
            cut in proptest::option::of(0usize..4096),
            noise in proptest::option::of(proptest::collection::vec(0u8..=255, 0..512)),
            claim in 0usize..8,
        ) {
            let (mut bytes, count) = section(n);
            for (at, v) in flips {
                if !bytes.is_empty() {
                    let i = at % bytes.len();
                    bytes[i] = v;
                }
            }
            if let Some(c) = cut {
                bytes.truncate(c.min(bytes.len()));
            }
            if let Some(noise) = noise {
                bytes = noise;
            }
            let t = Table::default();
            let entries = if claim == 0 { count } else { claim - 1 };
            match t.fill_shard(0, bytes, entries) {
                Ok(f) => {
                    let mut seen = 0;
                    t.for_each(|e| {
                        seen += 1;
                        let _ = (e.key(), e.rrs(), e.sig(), e.count(), e.desc());
                    });
                    proptest::prop_assert_eq!(seen, f.entries);
                }
                Err(_) => {
                    let mut seen = 0;
                    t.for_each(|_| seen += 1);
                    proptest::prop_assert_eq!(seen, 0);
                }
            }
        }
    }

    #[test]
    fn fill_refuses_bad_sections_without_panicking() {
        let t = Table::default();
        let k = key(1);
        let i = shard_of(hash(&k));
        let e = encode(&k, 0, 1, b"", b"");
        let mut good = (e.len() as u32).to_le_bytes().to_vec();
        good.extend_from_slice(&e);
        // Every truncation and every single-byte corruption: an error or a valid entry.
        for cut in 0..good.len() {
            assert!(t.fill_shard(i, good[..cut].to_vec(), 1).is_err());
        }
        for at in 0..good.len() {
            for v in [0u8, 1, 0x3f, 0x40, 0xff] {
                let mut b = good.clone();
                b[at] = v;
                let t = Table::default();
                let _ = t.fill_shard(i, b, 1);
            }
        }
        assert_eq!(t.fill_shard(i ^ 1, good.clone(), 1), Err(FillError::WrongShard(i ^ 1)));
        assert_eq!(t.fill_shard(i, good.clone(), 2), Err(FillError::Count(i, 1, 2)));
        assert!(t.fill_shard(i, good.clone(), 1).is_ok());
        assert_eq!(t.fill_shard(i, good, 1), Err(FillError::NotEmpty(i)));
    }
}
