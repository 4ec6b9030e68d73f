//! Replay cache for TSIG-signed UPDATEs (pure, time is a parameter).
//!
//! A TSIG MAC is valid for `fudge` seconds either side of its signing time, so a captured
//! signed UPDATE could be sent again within that window (TSIG itself only checks the time).
//! The cache remembers every accepted MAC per key for `2 × fudge` after it was first seen —
//! a message signed at T can only verify until T + fudge, and it was first seen no earlier
//! than T − fudge — and a MAC seen before is a replay. Memory is bounded: a key holding
//! `max_per_key` entries gets its new messages refused until its old ones age out (only
//! that key is affected: an honest key, limited per record, stays far below); past
//! `max_total` entries overall the oldest entry is forgotten, so no key can deny others.

use std::collections::{HashMap, HashSet, VecDeque};

/// What the cache says about a MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayVerdict {
    /// Not seen before; now remembered.
    Fresh,
    /// Seen within the window: a replay.
    Replay,
    /// This key holds its maximum of remembered MACs: refuse for now.
    Full,
}

/// Recently accepted (key, MAC) pairs, as 128-bit digests (about 60 bytes an entry).
pub struct ReplayCache {
    seen: HashSet<[u8; 16]>,
    /// (forget at, digest, key id) in arrival order.
    order: VecDeque<(u64, [u8; 16], u64)>,
    per_key: HashMap<u64, usize>,
    window: u64,
    max_per_key: usize,
    max_total: usize,
}

impl ReplayCache {
    /// `fudge` in seconds; bounds on entries per key and overall.
    pub fn new(fudge: u64, max_per_key: usize, max_total: usize) -> Self {
        ReplayCache {
            seen: HashSet::new(),
            order: VecDeque::new(),
            per_key: HashMap::new(),
            window: fudge.saturating_mul(2),
            max_per_key: max_per_key.max(1),
            max_total: max_total.max(1),
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    fn expire(&mut self, now: u64) {
        while self.order.front().is_some_and(|(until, _, _)| *until <= now) {
            self.forget_oldest();
        }
    }

    fn forget_oldest(&mut self) {
        let Some((_, d, k)) = self.order.pop_front() else { return };
        self.seen.remove(&d);
        if let Some(c) = self.per_key.get_mut(&k) {
            *c -= 1;
            if *c == 0 {
                self.per_key.remove(&k);
            }
        }
    }

    /// Check the MAC of a verified message signed by `key` and remember it.
    pub fn check(&mut self, key: &str, mac: &[u8], now: u64) -> ReplayVerdict {
        self.expire(now);
        let mut buf = Vec::with_capacity(key.len() + 1 + mac.len());
        buf.extend_from_slice(key.as_bytes());
        let kh = crate::proto::keys::sha256(&buf);
        let kid = u64::from_be_bytes(kh[..8].try_into().unwrap_or([0; 8]));
        buf.push(0);
        buf.extend_from_slice(mac);
        let full = crate::proto::keys::sha256(&buf);
        let mut d = [0u8; 16];
        d.copy_from_slice(&full[..16]);
        if self.seen.contains(&d) {
            return ReplayVerdict::Replay;
        }
        let held = self.per_key.get(&kid).copied().unwrap_or(0);
        if held >= self.max_per_key {
            return ReplayVerdict::Full;
        }
        if self.order.len() >= self.max_total {
            self.forget_oldest();
        }
        self.seen.insert(d);
        // Entries are pushed in arrival order; `now` may step back with the wall clock,
        // which only keeps an entry longer.
        let until = now.saturating_add(self.window).max(self.order.back().map_or(0, |e| e.0));
        self.order.push_back((until, d, kid));
        *self.per_key.entry(kid).or_insert(0) += 1;
        ReplayVerdict::Fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mac_is_accepted_once_within_the_window() {
        let mut c = ReplayCache::new(300, 10, 100);
        assert_eq!(c.check("k.", b"mac1", 1000), ReplayVerdict::Fresh);
        assert_eq!(c.check("k.", b"mac1", 1200), ReplayVerdict::Replay);
        assert_eq!(c.check("k.", b"mac2", 1200), ReplayVerdict::Fresh);
        // The same MAC under another key is another message.
        assert_eq!(c.check("j.", b"mac1", 1200), ReplayVerdict::Fresh);
        // Past 2 × fudge the entry is forgotten (the MAC could no longer verify anyway).
        assert_eq!(c.check("k.", b"mac1", 1599), ReplayVerdict::Replay);
        assert_eq!(c.check("k.", b"mac1", 1600), ReplayVerdict::Fresh);
        assert_eq!(c.len(), 3);
    }

    #[test]
    fn bounded_per_key_and_overall() {
        let mut c = ReplayCache::new(300, 3, 5);
        for i in 0..3u8 {
            assert_eq!(c.check("k.", &[i], 0), ReplayVerdict::Fresh);
        }
        // One key at its bound is refused; others are not.
        assert_eq!(c.check("k.", &[9], 0), ReplayVerdict::Full);
        assert_eq!(c.check("j.", &[1], 0), ReplayVerdict::Fresh);
        assert_eq!(c.check("i.", &[1], 0), ReplayVerdict::Fresh);
        // Overall bound: the oldest entry (k's first) is forgotten to make room.
        assert_eq!(c.check("h.", &[1], 0), ReplayVerdict::Fresh);
        assert_eq!(c.len(), 5);
        assert_eq!(c.check("k.", &[1], 0), ReplayVerdict::Replay);
        assert_eq!(c.check("k.", &[0], 0), ReplayVerdict::Fresh);
        // Everything ages out.
        assert_eq!(c.check("k.", &[9], 600), ReplayVerdict::Fresh);
        assert_eq!(c.len(), 1);
    }
}
