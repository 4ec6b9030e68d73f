//! Bootstrap record `v=dmp1;t=bootstrap;<b64(body ‖ sig)>` (protocol §4.7): a mail
//! domain's signed pointer to the clusters that serve it, published at `_dmp.<domain>`.
//!
//! Entries are stably sorted by priority before signing (trap T33), so the signed order is
//! sorted; the parser verifies the on-wire order and then sorts again.

use ed25519_dalek::SigningKey;

use super::cluster::{checked_domain, ensure_signer, same_name};
use super::{
    encode_strict_wire, pinned_and_current, verify_pinned, Reader, CAP_5_YEARS, PREFIX_BOOTSTRAP,
};
use crate::proto::{dnsname, keys, ProtoError};

const MAGIC: &[u8; 7] = b"DMPBS01";
/// Most entries one record may carry (at least one is required).
pub const MAX_ENTRY_COUNT: usize = 16;
/// Smallest decoded blob the parser looks at (magic + signature).
const MIN_BLOB_LEN: usize = 7 + 64;

/// One cluster a domain points to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapEntry {
    /// Lower is preferred.
    pub priority: u16,
    /// The cluster's base domain (`cluster.<base>` holds its manifest), dot-stripped.
    pub cluster_base_domain: String,
    /// The key the cluster manifest must verify under.
    pub operator_spk: [u8; 32],
}

/// A bootstrap record for `user_domain`, signed by the zone operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapRecord {
    /// The mail domain this record speaks for (one trailing dot stripped).
    pub user_domain: String,
    /// The zone operator's key, which signs the record.
    pub signer_spk: [u8; 32],
    /// The clusters, sorted by priority (stable) after parse.
    pub entries: Vec<BootstrapEntry>,
    /// Sequence number; clients keep the highest.
    pub seq: u64,
    /// Expiry (Unix seconds); valid while `now ≤ exp`.
    pub exp: u64,
}

/// True when two entries share `(priority, casefold(base))` (names already dot-stripped).
fn has_duplicates(entries: &[BootstrapEntry]) -> bool {
    let mut seen = std::collections::HashSet::new();
    entries.iter().any(|e| !seen.insert((e.priority, dnsname::casefold(&e.cluster_base_domain))))
}

impl BootstrapRecord {
    /// The preferred entry (`entries[0]` of a parsed, sorted record).
    pub fn best_entry(&self) -> Option<&BootstrapEntry> {
        self.entries.first()
    }

    /// Validate, sort entries by priority (stable), sign with the zone operator key (which
    /// must match `signer_spk`) and return the TXT value.
    pub fn sign(&self, key: &SigningKey) -> Result<String, ProtoError> {
        let user_domain = checked_domain(&self.user_domain, "user_domain")?;
        if self.entries.is_empty() || self.entries.len() > MAX_ENTRY_COUNT {
            return Err(ProtoError::field("entries", "must hold 1..16 entries"));
        }
        let mut entries = Vec::with_capacity(self.entries.len());
        for e in &self.entries {
            entries.push(BootstrapEntry {
                cluster_base_domain: checked_domain(&e.cluster_base_domain, "cluster_base_domain")?,
                ..e.clone()
            });
        }
        if has_duplicates(&entries) {
            return Err(ProtoError::field("entries", "duplicate (priority, base domain)"));
        }
        entries.sort_by_key(|e| e.priority);
        ensure_signer(key, &self.signer_spk)?;

        let mut b = Vec::with_capacity(64 + entries.len() * 100);
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&self.seq.to_be_bytes());
        b.extend_from_slice(&self.exp.to_be_bytes());
        b.extend_from_slice(&self.signer_spk);
        b.push(user_domain.len() as u8);
        b.extend_from_slice(user_domain.as_bytes());
        b.push(entries.len() as u8);
        for e in &entries {
            b.extend_from_slice(&e.priority.to_be_bytes());
            b.push(e.cluster_base_domain.len() as u8);
            b.extend_from_slice(e.cluster_base_domain.as_bytes());
            b.extend_from_slice(&e.operator_spk);
        }
        let sig = keys::sign(key, &b);
        b.extend_from_slice(&sig);
        encode_strict_wire(PREFIX_BOOTSTRAP, &b)
    }

    fn from_body(body: &[u8]) -> Option<Self> {
        let mut r = Reader::new(body);
        if r.take(7)? != MAGIC {
            return None;
        }
        let seq = r.u64()?;
        let exp = r.u64()?;
        let signer_spk = r.array::<32>()?;
        let ud_len = r.u8()? as usize;
        let user_domain =
            checked_domain(std::str::from_utf8(r.take(ud_len)?).ok()?, "user_domain").ok()?;
        let count = r.u8()? as usize;
        if count == 0 || count > MAX_ENTRY_COUNT {
            return None;
        }
        let mut entries = Vec::with_capacity(count);
        for _ in 0..count {
            let priority = r.u16()?;
            let len = r.u8()? as usize;
            let base =
                checked_domain(std::str::from_utf8(r.take(len)?).ok()?, "cluster_base_domain")
                    .ok()?;
            let operator_spk = r.array::<32>()?;
            entries.push(BootstrapEntry { priority, cluster_base_domain: base, operator_spk });
        }
        if !r.is_empty() || has_duplicates(&entries) {
            return None;
        }
        entries.sort_by_key(|e| e.priority);
        Some(BootstrapRecord { user_domain, signer_spk, entries, seq, exp })
    }

    /// Parse and verify a TXT value under the caller's pinned `signer_spk` (verify before
    /// parsing), then: embedded key equality, `exp < now` → `None`, 5-year cap, optional
    /// `expected_user_domain` binding (casefold, one trailing dot stripped).
    pub fn parse_and_verify(
        txt: &str,
        signer_spk: &[u8; 32],
        expected_user_domain: Option<&str>,
        now: u64,
    ) -> Option<Self> {
        let body = verify_pinned(txt, PREFIX_BOOTSTRAP, MIN_BLOB_LEN, signer_spk)?;
        let rec = Self::from_body(&body)?;
        if !pinned_and_current(&rec.signer_spk, signer_spk, rec.exp, now, CAP_5_YEARS) {
            return None;
        }
        if let Some(expected) = expected_user_domain {
            if !same_name(&rec.user_domain, expected) {
                return None;
            }
        }
        Some(rec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_sorted_deduplicated() {
        let key = SigningKey::from_bytes(&[1u8; 32]);
        let spk = key.verifying_key().to_bytes();
        let e = |p, d: &str| BootstrapEntry {
            priority: p,
            cluster_base_domain: d.into(),
            operator_spk: [9; 32],
        };
        let mut rec = BootstrapRecord {
            user_domain: "Example.com.".into(),
            signer_spk: spk,
            entries: vec![
                e(30, "c.example.com"),
                e(10, "b.example.com"),
                e(30, "a.example.com"),
                e(10, "a.example.com."),
            ],
            seq: 1,
            exp: 2_000,
        };
        let txt = rec.sign(&key).unwrap();
        let parsed =
            BootstrapRecord::parse_and_verify(&txt, &spk, Some("EXAMPLE.COM"), 1_000).unwrap();
        let order: Vec<_> =
            parsed.entries.iter().map(|e| (e.priority, e.cluster_base_domain.as_str())).collect();
        assert_eq!(
            order,
            [
                (10, "b.example.com"),
                (10, "a.example.com"),
                (30, "c.example.com"),
                (30, "a.example.com")
            ]
        );
        assert_eq!(parsed.user_domain, "Example.com");
        rec.entries.push(e(10, "A.Example.com."));
        assert!(rec.sign(&key).is_err(), "duplicate (priority, casefold(base))");
        rec.entries.clear();
        assert!(rec.sign(&key).is_err(), "at least one entry");
        rec.entries = (0..17).map(|i| e(i, "a.example.com")).collect();
        assert!(rec.sign(&key).is_err(), "at most 16 entries");
    }
}
