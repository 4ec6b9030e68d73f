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
            // Evict the stalest entry (a full bucket is equivalent to a fresh one).
            if let Some(old) =
                self.buckets.iter().min_by_key(|(_, (_, t))| *t).map(|(k, _)| k.clone())
            {
                self.buckets.remove(&old);
            }
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
