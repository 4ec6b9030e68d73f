//! Token buckets keyed by client (IP, token hash, recipient hash), bounded in memory.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Instant;

/// A set of token buckets; the oldest-touched keys are evicted beyond `capacity`.
pub struct TokenBuckets<K> {
    buckets: HashMap<K, (f64, Instant)>,
    capacity: usize,
}

impl<K: Hash + Eq + Clone> TokenBuckets<K> {
    /// At most `capacity` tracked keys.
    pub fn new(capacity: usize) -> Self {
        TokenBuckets { buckets: HashMap::new(), capacity: capacity.max(1) }
    }

    /// Take one token for `key` from a bucket refilling `rate`/s up to `burst`.
    /// Returns false when empty.
    pub fn take(&mut self, key: K, rate: f64, burst: f64) -> bool {
        self.take_n(key, 1, rate, burst)
    }

    /// Charge `n` tokens (one per record of a write) for `key`. Allowed when the bucket
    /// holds at least `min(n, burst)` tokens; the whole `n` is then taken, possibly leaving
    /// the bucket in debt, so a batch larger than the burst goes through once from a full
    /// bucket but the long-run rate never exceeds `rate` records per second.
    pub fn take_n(&mut self, key: K, n: u32, rate: f64, burst: f64) -> bool {
        let n = f64::from(n.max(1));
        let now = Instant::now();
        if self.buckets.len() >= self.capacity && !self.buckets.contains_key(&key) {
            // Evict the stalest entries (a full bucket is equivalent to a fresh one).
            evict_stalest(&mut self.buckets, self.capacity, |(_, t)| *t);
        }
        let (tokens, last) = self.buckets.entry(key).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(burst);
        *last = now;
        if *tokens >= n.min(burst).max(1.0) {
            *tokens -= n;
            true
        } else {
            false
        }
    }
}

/// Make room in a full map of per-key state: forget its stalest eighth (by `touched`; at
/// least one entry) in one pass. Forgetting only the single stalest entry scanned the
/// whole map for every new key once it was full: with 100,000 tracked keys each write
/// from a new mailbox or IP cost a 100,000-entry scan (half the node's CPU under UPDATEs
/// to new names). One scan per `capacity / 8` new keys keeps that O(1) amortized.
pub fn evict_stalest<K: Hash + Eq, V>(
    map: &mut HashMap<K, V>,
    capacity: usize,
    touched: impl Fn(&V) -> Instant,
) {
    let n = (capacity / 8).clamp(1, map.len().max(1));
    let mut ages: Vec<Instant> = map.values().map(&touched).collect();
    if ages.is_empty() {
        return;
    }
    let (_, cut, _) = ages.select_nth_unstable(n - 1);
    let cut = *cut;
    let mut left = n;
    map.retain(|_, v| {
        if left > 0 && touched(v) <= cut {
            left -= 1;
            false
        } else {
            true
        }
    });
}

/// The recipient mailbox hash (`H12`) of a `slot-N.mb-H12.…` or `claim-N.mb-H12.…` owner:
/// the key for per-recipient write limits, so one registrant cannot fill another's slots.
pub fn mailbox_of(owner: &str) -> Option<&str> {
    let mut labels = owner.split('.');
    let first = labels.next()?;
    let second = labels.next()?;
    let kind = first.strip_prefix("slot-").or_else(|| first.strip_prefix("claim-"))?;
    if kind.is_empty() || !kind.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    second.strip_prefix("mb-").filter(|h| !h.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailbox_keys() {
        assert_eq!(mailbox_of("slot-3.mb-0123456789ab.z"), Some("0123456789ab"));
        assert_eq!(mailbox_of("claim-0.mb-abc.z"), Some("abc"));
        assert_eq!(mailbox_of("chunk-0001-abc.z"), None);
        assert_eq!(mailbox_of("slot-x.mb-abc.z"), None);
    }

    #[test]
    fn burst_then_empty() {
        let mut b = TokenBuckets::new(10);
        assert!(b.take("a", 0.0, 2.0));
        assert!(b.take("a", 0.0, 2.0));
        assert!(!b.take("a", 0.0, 2.0));
        assert!(b.take("b", 0.0, 2.0));
    }

    #[test]
    fn a_full_table_forgets_the_stalest_eighth() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + std::time::Duration::from_millis(ms);
        // Keys touched in the order 15, 14, ..., 0: the stalest are the highest.
        let mut m: HashMap<u32, Instant> = (0..16u32).map(|k| (k, at(u64::from(16 - k)))).collect();
        evict_stalest(&mut m, 16, |t| *t);
        let mut left: Vec<u32> = m.keys().copied().collect();
        left.sort_unstable();
        assert_eq!(left, (0..14).collect::<Vec<_>>());
        // A small table forgets one entry at a time, the stalest.
        let mut m: HashMap<u32, Instant> = (0..5u32).map(|k| (k, at(u64::from(k)))).collect();
        evict_stalest(&mut m, 5, |t| *t);
        assert!(!m.contains_key(&0) && m.len() == 4);
        // A full bucket table stays within its capacity and admits the new key.
        let mut b = TokenBuckets::new(16);
        for i in 0..16u32 {
            assert!(b.take(i, 0.0, 1.0));
        }
        assert!(b.take(100, 0.0, 1.0));
        assert!(b.buckets.len() <= 16 && b.buckets.contains_key(&100));
    }

    #[test]
    fn new_keys_at_capacity_cost_no_scan_each() {
        // 400,000 new keys through a 50,000-key table. Forgetting one key per new key
        // scanned the whole table each time (17.5e9 entry visits, minutes); evicting the
        // stalest eighth at once visits each entry a few times per 6,250 new keys.
        let mut b = TokenBuckets::new(50_000);
        let t = Instant::now();
        for i in 0..400_000u32 {
            assert!(b.take(i, 1.0, 5.0));
            if i % 10_000 == 0 {
                let took = t.elapsed();
                assert!(took < std::time::Duration::from_secs(20), "{i} keys took {took:?}");
            }
        }
        assert!(b.buckets.len() <= 50_000);
        let took = t.elapsed();
        assert!(took < std::time::Duration::from_secs(20), "took {took:?}");
    }

    #[test]
    fn batches_are_charged_per_record() {
        let mut b = TokenBuckets::new(10);
        // 3 records from a bucket of 5: allowed, 2 left; 3 more: refused.
        assert!(b.take_n("a", 3, 0.0, 5.0));
        assert!(!b.take_n("a", 3, 0.0, 5.0));
        assert!(b.take_n("a", 2, 0.0, 5.0));
        assert!(!b.take("a", 0.0, 5.0));
        // A batch over the burst goes through once from a full bucket, then leaves debt.
        assert!(b.take_n("b", 200, 0.0, 5.0));
        assert!(!b.take("b", 0.0, 5.0));
    }
}
