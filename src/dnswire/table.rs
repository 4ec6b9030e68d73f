//! The view's name table: one heap block per name holding its key, counters, answer
//! bytes and signature, in sharded hash tables whose slots are one fat pointer (16
//! bytes). With a million names (and as many empty non-terminals) this costs about a
//! third of a `DashMap<Box<[u8]>, Node>` (56-byte slots, a second allocation for the
//! key), see issue 18's memory table in `benches/load/README.md`.
//!
//! Readers take one shard's read lock for the duration of a closure; writers (the view
//! serialises them) take one shard's write lock. No allocation on a lookup.

use std::hash::BuildHasher;
use std::sync::RwLock;

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;

/// Shards (a power of two): writers rarely meet readers on the same one.
const SHARDS: usize = 64;
const SHARD_BITS: u32 = SHARDS.trailing_zeros();

/// Bytes before the key: key length (1), RR count (2), names with TXT below (4),
/// signature length (2).
const HDR: usize = 9;

/// One name: `[klen][count][desc][siglen] key rrs sig` in one allocation.
pub(crate) struct Entry(Box<[u8]>);

impl Entry {
    /// Keys are relative wire names (at most 255 bytes); RRSIG RDATA fits in 16 bits.
    pub(crate) fn new(key: &[u8], count: u16, desc: u32, rrs: &[u8], sig: &[u8]) -> Entry {
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
        Entry(b.into_boxed_slice())
    }

    fn klen(&self) -> usize {
        self.0[0] as usize
    }

    fn slen(&self) -> usize {
        u16::from_le_bytes([self.0[7], self.0[8]]) as usize
    }

    /// The lower-cased wire labels relative to the origin.
    pub(crate) fn key(&self) -> &[u8] {
        &self.0[HDR..HDR + self.klen()]
    }

    /// Number of TXT RRs in [`Entry::rrs`].
    pub(crate) fn count(&self) -> u16 {
        u16::from_le_bytes([self.0[1], self.0[2]])
    }

    /// Number of names with TXT strictly below this one.
    pub(crate) fn desc(&self) -> u32 {
        u32::from_le_bytes([self.0[3], self.0[4], self.0[5], self.0[6]])
    }

    pub(crate) fn set_desc(&mut self, desc: u32) {
        self.0[3..7].copy_from_slice(&desc.to_le_bytes());
    }

    /// The answer section, ready to copy (see `view::build_rrs`); empty without TXT.
    pub(crate) fn rrs(&self) -> &[u8] {
        &self.0[HDR + self.klen()..self.0.len() - self.slen()]
    }

    /// RRSIG RDATA over the TXT RRset (DNSSEC on and `count > 0`), else empty.
    pub(crate) fn sig(&self) -> &[u8] {
        &self.0[self.0.len() - self.slen()..]
    }

    /// Replace the RRset (and its signature), keeping key and `desc`.
    pub(crate) fn set_rrs(&mut self, count: u16, rrs: &[u8], sig: &[u8]) {
        *self = Entry::new(self.key(), count, self.desc(), rrs, sig);
    }

    /// Replace the signature only.
    pub(crate) fn set_sig(&mut self, sig: &[u8]) {
        *self = Entry::new(self.key(), self.count(), self.desc(), self.rrs(), sig);
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
struct Shard(RwLock<HashTable<Entry>>);

impl std::ops::Deref for Shard {
    type Target = RwLock<HashTable<Entry>>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// Sharded `key → Entry` table.
pub(crate) struct Table {
    shards: Box<[Shard]>,
}

impl Default for Table {
    fn default() -> Self {
        Table { shards: (0..SHARDS).map(|_| Shard(RwLock::new(HashTable::new()))).collect() }
    }
}

impl Table {
    fn read(&self, h: u64) -> std::sync::RwLockReadGuard<'_, HashTable<Entry>> {
        self.shards[shard_of(h)].read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self, h: u64) -> std::sync::RwLockWriteGuard<'_, HashTable<Entry>> {
        self.shards[shard_of(h)].write().unwrap_or_else(|p| p.into_inner())
    }

    /// Run `f` on the entry of `key` (or `None`) under its shard's read lock.
    #[inline]
    pub(crate) fn with<R>(&self, key: &[u8], f: impl FnOnce(Option<&Entry>) -> R) -> R {
        let h = hash(key);
        let shard = self.read(h);
        f(shard.find(h, |e| e.key() == key))
    }

    /// Run `f` on the entry of `key` under its shard's write lock; `None` if absent.
    pub(crate) fn with_mut<R>(&self, key: &[u8], f: impl FnOnce(&mut Entry) -> R) -> Option<R> {
        let h = hash(key);
        let mut shard = self.write(h);
        shard.find_mut(h, |e| e.key() == key).map(f)
    }

    /// Insert `e` (its key must not be present).
    pub(crate) fn insert(&self, e: Entry) {
        let h = hash(e.key());
        self.write(h).insert_unique(h, e, |x| hash(x.key()));
    }

    /// Remove the entry of `key` if `pred` holds for it; returns whether it went.
    pub(crate) fn remove_if(&self, key: &[u8], pred: impl FnOnce(&Entry) -> bool) -> bool {
        let h = hash(key);
        let mut shard = self.write(h);
        match shard.find_entry(h, |e| e.key() == key) {
            Ok(occ) if pred(occ.get()) => {
                occ.remove();
                true
            }
            _ => false,
        }
    }

    /// Room for `additional` more entries, spread over the shards (a bulk load).
    pub(crate) fn reserve(&self, additional: usize) {
        let per = additional.div_ceil(SHARDS);
        for s in self.shards.iter() {
            s.write().unwrap_or_else(|p| p.into_inner()).reserve(per, |x| hash(x.key()));
        }
    }

    /// Give back room no entry uses (after a bulk load that reserved generously).
    pub(crate) fn shrink_to_fit(&self) {
        for s in self.shards.iter() {
            s.write().unwrap_or_else(|p| p.into_inner()).shrink_to_fit(|x| hash(x.key()));
        }
    }

    /// Visit every entry, one shard's read lock at a time (not a consistent copy: the
    /// caller keeps writers out when it needs one).
    pub(crate) fn for_each(&self, mut f: impl FnMut(&Entry)) {
        for s in self.shards.iter() {
            for e in s.read().unwrap_or_else(|p| p.into_inner()).iter() {
                f(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_layout_roundtrip() {
        let mut e = Entry::new(b"\x01a\x02bb", 2, 7, b"rrs-bytes", b"sig");
        assert_eq!((e.key(), e.count(), e.desc()), (&b"\x01a\x02bb"[..], 2, 7));
        assert_eq!((e.rrs(), e.sig()), (&b"rrs-bytes"[..], &b"sig"[..]));
        e.set_desc(9);
        e.set_rrs(1, b"r", b"");
        assert_eq!(
            (e.key(), e.count(), e.desc(), e.rrs(), e.sig()),
            (&b"\x01a\x02bb"[..], 1, 9, &b"r"[..], &b""[..])
        );
        e.set_sig(b"ss");
        assert_eq!((e.rrs(), e.sig()), (&b"r"[..], &b"ss"[..]));
    }

    #[test]
    fn insert_find_remove() {
        let t = Table::default();
        t.reserve(100);
        for i in 0..1000u32 {
            t.insert(Entry::new(&i.to_be_bytes(), 0, i, b"", b""));
        }
        assert_eq!(t.with(&7u32.to_be_bytes(), |e| e.map(|e| e.desc())), Some(7));
        assert!(t.with(b"nope", |e| e.is_none()));
        assert_eq!(t.with_mut(&7u32.to_be_bytes(), |e| e.set_desc(70)), Some(()));
        assert!(!t.remove_if(&7u32.to_be_bytes(), |e| e.desc() == 7));
        assert!(t.remove_if(&7u32.to_be_bytes(), |e| e.desc() == 70));
        let mut n = 0;
        t.for_each(|_| n += 1);
        assert_eq!(n, 999);
    }
}
