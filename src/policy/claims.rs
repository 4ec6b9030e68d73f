//! Budgets for unsigned claim UPDATEs (pure policy, no I/O, time is a parameter).
//!
//! Unsigned claims are the one write an anonymous client can make, so each is charged
//! against several budgets, all counted over **live** claims (a claim stops counting once
//! it expires or is deleted):
//! - a global budget of live claim records in the zone (`[limits] unsigned_claims_max`);
//! - a budget per client network, IPv4 /24 or IPv6 /56 (`[limits] unsigned_claims_per_net`);
//! - a fair share of one recipient claim name (whose capacity is `max_values_per_name`)
//!   per sender key and per sender network (`[limits] claim_share_per_sender`), so one
//!   sender cannot fill a recipient's claim slots and lock real senders out.
//!
//! The book is kept in step with the zone: the DNS actor feeds it every change of a claim
//! name (the store's `ZoneDelta`, including the initial snapshot), so the global and
//! per-sender counts survive a restart (the sender key is read from the stored claim).
//! Which network sent a claim is known only for claims accepted since start; after a
//! restart the per-network budgets start from zero.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use crate::proto::records::claim::MAGIC;
use crate::proto::records::PREFIX_CLAIM;

/// How long an admitted claim counts while its write is on the way to the store.
const PENDING_SECS: u64 = 30;

/// A client network: IPv4 /24 or IPv6 /56 (IPv4-mapped IPv6 counts as IPv4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NetKey {
    V4([u8; 3]),
    V6([u8; 7]),
}

/// The network `ip` belongs to, for per-network budgets.
pub fn net_of(ip: IpAddr) -> NetKey {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            NetKey::V4([o[0], o[1], o[2]])
        }
        IpAddr::V6(v6) => {
            let o = v6.octets();
            let mut k = [0u8; 7];
            k.copy_from_slice(&o[..7]);
            NetKey::V6(k)
        }
    }
}

/// The budgets (see the module docs). Every value is > 0 (validated in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimLimits {
    pub max_total: usize,
    pub per_net: usize,
    pub share_per_sender: usize,
}

/// Why a claim was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClaimRefusal {
    #[error("the node already holds its maximum of {0} live claims")]
    GlobalFull(usize),
    #[error("the client's network already holds its budget of {0} live claims")]
    NetFull(usize),
    #[error("this sender key already holds {0} claims at this name")]
    SenderShare(usize),
    #[error("the client's network already holds {0} claims at this name")]
    NetShare(usize),
}

/// The sender key embedded in a stored claim value (not verified here: every claim was
/// verified before it was stored).
pub fn claim_sender(value: &str) -> Option<[u8; 32]> {
    let blob = crate::proto::b64::decode_strict(value.strip_prefix(PREFIX_CLAIM)?)?;
    let start = MAGIC.len() + 16;
    if blob.get(..MAGIC.len())? != MAGIC {
        return None;
    }
    blob.get(start..start + 32)?.try_into().ok()
}

/// Mailbox hashes (`H12`) of recipients registered here: the literal `mb-<H12>.<zone>`
/// suffixes in live TSIG key scopes (a key gets one when its X25519 key was proven).
pub fn registered_mailboxes<'a>(
    scopes: impl IntoIterator<Item = &'a String>,
    zone: &str,
) -> HashSet<String> {
    let suffix = format!(".{zone}");
    scopes
        .into_iter()
        .filter_map(|s| s.strip_suffix(&suffix)?.strip_prefix("mb-"))
        .filter(|h| h.len() == 12 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(|h| h.to_ascii_lowercase())
        .collect()
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    sender: Option<[u8; 32]>,
    net: Option<NetKey>,
    /// Nonzero while the write is in flight (not yet seen in the zone): counted until then.
    pending_until: u64,
}

/// Live claims by name and value, with counts per network. Bounded by the zone's claim
/// records plus the in-flight admissions (themselves bounded by `max_total`).
#[derive(Default)]
pub struct ClaimBook {
    names: HashMap<String, HashMap<String, Entry>>,
    total: usize,
    by_net: HashMap<NetKey, usize>,
}

impl ClaimBook {
    pub fn new() -> Self {
        Self::default()
    }

    /// Live claim values counted (zone claims plus writes in flight).
    pub fn total(&self) -> usize {
        self.total
    }

    fn count(&mut self, e: &Entry, add: bool) {
        if add {
            self.total += 1;
        } else {
            self.total = self.total.saturating_sub(1);
        }
        if let Some(n) = e.net {
            let c = self.by_net.entry(n).or_insert(0);
            if add {
                *c += 1;
            } else {
                *c = c.saturating_sub(1);
            }
            if *c == 0 {
                self.by_net.remove(&n);
            }
        }
    }

    /// The zone now holds exactly `values` at claim name `name` (a store change).
    pub fn sync_name(&mut self, name: &str, values: &[String], now: u64) {
        let old = self.names.remove(name).unwrap_or_default();
        for e in old.values() {
            self.count(e, false);
        }
        let mut new: HashMap<String, Entry> = HashMap::with_capacity(values.len());
        for v in values {
            let e = match old.get(v) {
                Some(e) => Entry { pending_until: 0, ..*e },
                None => Entry { sender: claim_sender(v), net: None, pending_until: 0 },
            };
            new.insert(v.clone(), e);
        }
        // Writes admitted but not applied yet keep counting.
        for (v, e) in old {
            if e.pending_until > now && !new.contains_key(&v) {
                new.insert(v, e);
            }
        }
        for e in new.values() {
            self.count(e, true);
        }
        if !new.is_empty() {
            self.names.insert(name.to_string(), new);
        }
    }

    /// Admit one unsigned claim `value` at `name` from `sender` (its verified key) and
    /// client network `net`. `Ok(true)`: counted as a new live claim (call
    /// [`ClaimBook::release`] if the write then fails); `Ok(false)`: the value is already
    /// there (a refresh takes no new slot).
    pub fn admit(
        &mut self,
        name: &str,
        value: &str,
        sender: [u8; 32],
        net: Option<NetKey>,
        now: u64,
        limits: &ClaimLimits,
    ) -> Result<bool, ClaimRefusal> {
        if let Some(at) = self.names.get_mut(name) {
            if at.contains_key(value) {
                return Ok(false);
            }
            // In-flight admissions whose write never showed up are forgotten.
            let stale: Vec<String> = at
                .iter()
                .filter(|(_, e)| e.pending_until != 0 && e.pending_until <= now)
                .map(|(v, _)| v.clone())
                .collect();
            for v in stale {
                if let Some(e) = self.names.get_mut(name).and_then(|at| at.remove(&v)) {
                    self.count(&e, false);
                }
            }
        }
        if self.total >= limits.max_total {
            return Err(ClaimRefusal::GlobalFull(limits.max_total));
        }
        if let Some(n) = net {
            if self.by_net.get(&n).copied().unwrap_or(0) >= limits.per_net {
                return Err(ClaimRefusal::NetFull(limits.per_net));
            }
        }
        if let Some(at) = self.names.get(name) {
            let share = limits.share_per_sender;
            if at.values().filter(|e| e.sender == Some(sender)).count() >= share {
                return Err(ClaimRefusal::SenderShare(share));
            }
            if net.is_some() && at.values().filter(|e| e.net == net).count() >= share {
                return Err(ClaimRefusal::NetShare(share));
            }
        }
        let e = Entry { sender: Some(sender), net, pending_until: now + PENDING_SECS };
        self.names.entry(name.to_string()).or_default().insert(value.to_string(), e);
        self.count(&e, true);
        Ok(true)
    }

    /// Undo an admission whose write failed.
    pub fn release(&mut self, name: &str, value: &str) {
        let Some(at) = self.names.get_mut(name) else { return };
        if at.get(value).is_some_and(|e| e.pending_until != 0) {
            if let Some(e) = at.remove(value) {
                if at.is_empty() {
                    self.names.remove(name);
                }
                self.count(&e, false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::keys::Identity;
    use crate::proto::records::claim::ClaimRecord;

    const LIM: ClaimLimits = ClaimLimits { max_total: 10, per_net: 6, share_per_sender: 2 };

    fn net(s: &str) -> Option<NetKey> {
        Some(net_of(s.parse().unwrap()))
    }

    #[test]
    fn networks() {
        assert_eq!(net_of("10.1.2.3".parse().unwrap()), net_of("10.1.2.200".parse().unwrap()));
        assert_ne!(net_of("10.1.2.3".parse().unwrap()), net_of("10.1.3.3".parse().unwrap()));
        assert_eq!(net_of("::ffff:10.1.2.3".parse().unwrap()), net_of("10.1.2.9".parse().unwrap()));
        assert_eq!(
            net_of("2001:db8:0:ff01::1".parse().unwrap()),
            net_of("2001:db8:0:ff00::2".parse().unwrap())
        );
        assert_ne!(
            net_of("2001:db8:0:100::1".parse().unwrap()),
            net_of("2001:db8:0:ff00::2".parse().unwrap())
        );
    }

    #[test]
    fn sender_key_is_read_from_a_stored_claim() {
        let id = Identity::from_private_bytes([3; 32]);
        let c = ClaimRecord {
            msg_id: [1; 16],
            sender_spk: id.ed25519_public(),
            sender_mailbox_domain: "a.test".into(),
            slot: 0,
            ts: 1000,
            exp: 2000,
        };
        assert_eq!(claim_sender(&c.sign(&id).unwrap()), Some(id.ed25519_public()));
        assert_eq!(claim_sender("v=dmp1;t=claim;AAAA"), None);
        assert_eq!(claim_sender("junk"), None);
    }

    #[test]
    fn registered_mailboxes_from_scopes() {
        let scopes: Vec<String> = vec![
            "id-0123456789abcdef.mesh.test".into(),
            "mb-0123456789ab.mesh.test".into(),
            "mb-0123456789ab.other.test".into(),
            "slot-*.mb-*.mesh.test".into(),
            "mb-short.mesh.test".into(),
        ];
        let set = registered_mailboxes(&scopes, "mesh.test");
        assert_eq!(set.into_iter().collect::<Vec<_>>(), vec!["0123456789ab".to_string()]);
    }

    #[test]
    fn shares_per_sender_and_network_at_one_name() {
        let mut b = ClaimBook::new();
        let (a, c) = ([1u8; 32], [2u8; 32]);
        assert_eq!(b.admit("n", "v1", a, net("1.1.1.1"), 0, &LIM), Ok(true));
        assert_eq!(b.admit("n", "v2", a, net("2.2.2.2"), 0, &LIM), Ok(true));
        // Sender a holds its share of n, whatever network it uses.
        assert_eq!(
            b.admit("n", "v3", a, net("3.3.3.3"), 0, &LIM),
            Err(ClaimRefusal::SenderShare(2))
        );
        // A refresh of a present value takes no slot.
        assert_eq!(b.admit("n", "v1", a, net("1.1.1.1"), 0, &LIM), Ok(false));
        // Network 1.1.1.0/24 holds one at n; with another key it gets a second, not a third.
        assert_eq!(b.admit("n", "v4", c, net("1.1.1.9"), 0, &LIM), Ok(true));
        assert_eq!(
            b.admit("n", "v5", [9; 32], net("1.1.1.7"), 0, &LIM),
            Err(ClaimRefusal::NetShare(2))
        );
        // Another sender from another network still lands, and other names are untouched.
        assert_eq!(b.admit("n", "v6", [7; 32], net("4.4.4.4"), 0, &LIM), Ok(true));
        assert_eq!(b.admit("m", "v7", a, net("1.1.1.1"), 0, &LIM), Ok(true));
        assert_eq!(b.total(), 5);
    }

    #[test]
    fn network_and_global_budgets_count_live_claims() {
        let mut b = ClaimBook::new();
        for i in 0..6 {
            assert_eq!(b.admit(&format!("n{i}"), "v", [i; 32], net("5.5.5.5"), 0, &LIM), Ok(true));
        }
        assert_eq!(
            b.admit("n9", "v", [9; 32], net("5.5.5.6"), 0, &LIM),
            Err(ClaimRefusal::NetFull(6))
        );
        // The zone shows n0 stored, then deleted/expired: the network gets its slot back.
        b.sync_name("n0", &["v".to_string()], 1);
        b.sync_name("n0", &[], 1);
        assert_eq!(b.admit("n9", "v", [9; 32], net("5.5.5.6"), 1, &LIM), Ok(true));
        // Claims seen only in the zone (snapshot, replication) count globally.
        let stored: Vec<String> = (0..4).map(|i| format!("z{i}")).collect();
        b.sync_name("other", &stored, 1);
        assert_eq!(b.total(), 10);
        assert_eq!(
            b.admit("x", "v", [8; 32], net("6.6.6.6"), 1, &LIM),
            Err(ClaimRefusal::GlobalFull(10))
        );
        // A failed write gives its admission back.
        b.release("n9", "v");
        assert_eq!(b.admit("x", "v", [8; 32], net("6.6.6.6"), 1, &LIM), Ok(true));
    }

    #[test]
    fn admissions_never_applied_stop_counting() {
        let mut b = ClaimBook::new();
        assert_eq!(b.admit("n", "v1", [1; 32], net("1.1.1.1"), 0, &LIM), Ok(true));
        assert_eq!(b.admit("n", "v2", [1; 32], net("1.1.1.1"), 0, &LIM), Ok(true));
        // A store change at n that does not contain them yet keeps them (still in flight)…
        b.sync_name("n", &["other".to_string()], 1);
        assert_eq!(b.total(), 3);
        // …until they are overdue.
        assert_eq!(
            b.admit("n", "v3", [1; 32], net("1.1.1.1"), 1, &LIM),
            Err(ClaimRefusal::SenderShare(2))
        );
        assert_eq!(b.admit("n", "v3", [1; 32], net("1.1.1.1"), 1000, &LIM), Ok(true));
        assert_eq!(b.total(), 2);
    }
}
