//! Rotation chains (protocol.md §7): the verified rotations and revocations of a user
//! subject, walked from a pinned key (at most [`MAX_HOPS`] hops); revoked keys refused.
//! Read by `ident` (lookups) and `mail` (following rotated contacts); written by the
//! `identity rotate` command (`rotate`).

use anyhow::Result;

use super::dns::Pool;
use super::now;
use crate::proto::names;
use crate::proto::records::identity::IdentityRecord;
use crate::proto::records::revocation::{RevocationReason, RevocationRecord};
use crate::proto::records::rotation::{RotationRecord, SubjectType};

/// Longest rotation chain followed from a pinned key (the reference's `max_hops`).
pub const MAX_HOPS: usize = 4;

/// Verified rotations and revocations for one user subject.
#[derive(Debug, Default, Clone)]
pub struct Chain {
    pub rotations: Vec<RotationRecord>,
    pub revocations: Vec<RevocationRecord>,
}

/// Where a pinned key leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Walk {
    /// No rotation from the pinned key.
    Unchanged,
    /// The chain ends at this key.
    Head([u8; 32]),
    /// The pinned key (or a key on the chain) is revoked: trust ends.
    Revoked(RevocationReason),
    /// The chain is unusable (fork, non-increasing seq, loop, too long).
    Broken(String),
}

/// The rotation names of `user@zone`: zone-anchored (when `anchored`) then hashed.
pub fn names_for(user: &str, zone: &str, anchored: bool) -> Vec<String> {
    let mut v = Vec::new();
    if anchored {
        v.push(names::rotation_anchored(zone));
    }
    v.push(names::rotation_hashed(user, zone));
    v
}

impl Chain {
    /// Fetch and verify the rotation RRsets of `user@zone` (records for other subjects
    /// and unverifiable ones are ignored).
    pub fn load(pool: &Pool, user: &str, zone: &str, anchored: bool) -> Result<Chain> {
        let subject = format!("{user}@{zone}");
        let t = now();
        let mut c = Chain::default();
        for n in names_for(user, zone, anchored) {
            for v in pool.txt(&n)? {
                if let Some(r) = RotationRecord::parse_and_verify(&v, None, Some(&subject), t) {
                    if r.subject_type == SubjectType::UserIdentity && !c.rotations.contains(&r) {
                        c.rotations.push(r);
                    }
                } else if let Some(r) =
                    RevocationRecord::parse_and_verify(&v, None, Some(&subject), None, t)
                {
                    if r.subject_type == SubjectType::UserIdentity && !c.revocations.contains(&r) {
                        c.revocations.push(r);
                    }
                }
            }
        }
        Ok(c)
    }

    /// Is `spk` revoked? (The reason of the first revocation found.)
    pub fn revoked(&self, spk: &[u8; 32]) -> Option<RevocationReason> {
        self.revocations.iter().find(|r| r.revoked_spk == *spk).map(|r| r.reason)
    }

    /// Does some rotation move away from `spk`?
    pub fn rotated_away(&self, spk: &[u8; 32]) -> bool {
        self.rotations.iter().any(|r| r.old_spk == *spk)
    }

    /// Follow the chain from `pinned` (§7 walk).
    pub fn walk(&self, pinned: &[u8; 32]) -> Walk {
        if let Some(r) = self.revoked(pinned) {
            return Walk::Revoked(r);
        }
        let mut cur = *pinned;
        let mut prev_seq: Option<u64> = None;
        let mut visited = vec![cur];
        for hop in 0..=MAX_HOPS {
            let next: Vec<&RotationRecord> =
                self.rotations.iter().filter(|r| r.old_spk == cur).collect();
            if next.is_empty() {
                return if hop == 0 { Walk::Unchanged } else { Walk::Head(cur) };
            }
            if hop == MAX_HOPS {
                return Walk::Broken(format!("longer than {MAX_HOPS} rotations"));
            }
            let first = next[0].new_spk;
            if next.iter().any(|r| r.new_spk != first) {
                return Walk::Broken("two different rotations from one key (fork)".into());
            }
            let Some(r) = next.iter().min_by_key(|r| r.seq) else {
                return Walk::Broken("no rotation".into());
            };
            if prev_seq.is_some_and(|p| r.seq <= p) {
                return Walk::Broken("rotation seq does not increase".into());
            }
            if let Some(reason) = self.revoked(&r.new_spk) {
                return Walk::Revoked(reason);
            }
            if visited.contains(&r.new_spk) {
                return Walk::Broken("rotation loop".into());
            }
            prev_seq = Some(r.seq);
            cur = r.new_spk;
            visited.push(cur);
        }
        Walk::Broken(format!("longer than {MAX_HOPS} rotations"))
    }
}

/// Human name of a revocation reason.
pub fn reason_name(r: RevocationReason) -> &'static str {
    match r {
        RevocationReason::Compromise => "compromise",
        RevocationReason::Routine => "routine",
        RevocationReason::LostKey => "lost_key",
        RevocationReason::Other => "other",
    }
}

/// Verified identity records of `user@zone` after the §7 filters: revoked keys dropped;
/// when several remain, those rotated away from are dropped if exactly one is left.
pub fn current_identities(
    recs: Vec<IdentityRecord>,
    chain: &Chain,
) -> (Vec<IdentityRecord>, Vec<IdentityRecord>) {
    let (revoked, live): (Vec<_>, Vec<_>) =
        recs.into_iter().partition(|r| chain.revoked(&r.ed25519_spk).is_some());
    if live.len() > 1 {
        let fresh: Vec<IdentityRecord> =
            live.iter().filter(|r| !chain.rotated_away(&r.ed25519_spk)).cloned().collect();
        if fresh.len() == 1 {
            return (fresh, revoked);
        }
    }
    (live, revoked)
}
