//! Claim (notification) record, `v=dmp1;t=claim;<b64(body ‖ sig)>` (§4.5): tells a
//! recipient "a message for you sits in my zone". The recipient is implied by the owner
//! name's `mb-<H12>` label, not the body. Signed by the embedded sender key.

use super::{Reader, CAP_30_DAYS, CLOCK_SKEW, PREFIX_CLAIM};
use crate::proto::keys::{self, Identity};
use crate::proto::names::SLOT_COUNT;
use crate::proto::{b64, ProtoError};

/// Magic at the start of the body (shared with cluster manifests; never dispatch on it).
pub const MAGIC: &[u8; 7] = b"DMPCL01";
/// Largest whole TXT value, which is why the domain is capped at 43 bytes.
pub const MAX_WIRE_LEN: usize = 255;
/// Longest `sender_mailbox_domain`, in bytes.
pub const MAX_DOMAIN_LEN: usize = 43;
/// Timestamps must stay below 2^63 (the reference packs them as signed-safe values).
const TS_LIMIT: u64 = 1 << 63;

/// A claim. `slot` is only a hint: receivers scan all ten slots for `msg_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRecord {
    pub msg_id: [u8; 16],
    pub sender_spk: [u8; 32],
    /// The zone holding the manifest and chunks (the sender's own zone).
    pub sender_mailbox_domain: String,
    pub slot: u8,
    pub ts: u64,
    pub exp: u64,
}

/// Domain rule: 1..43 bytes, no character below 0x21 and no 0x7F.
fn domain_ok(d: &str) -> bool {
    (1..=MAX_DOMAIN_LEN).contains(&d.len()) && !d.chars().any(|c| c < '\x21' || c == '\x7f')
}

impl ClaimRecord {
    fn fields_valid(&self) -> bool {
        domain_ok(&self.sender_mailbox_domain)
            && u32::from(self.slot) < SLOT_COUNT
            && self.ts < TS_LIMIT
            && self.exp < TS_LIMIT
            && self.exp > self.ts
    }

    /// The signed body.
    pub fn body(&self) -> Result<Vec<u8>, ProtoError> {
        if !self.fields_valid() {
            return Err(ProtoError::field(
                "claim",
                "need domain 1..43 bytes without controls/space, slot 0..9, ts < exp < 2^63",
            ));
        }
        let d = self.sender_mailbox_domain.as_bytes();
        let mut b = Vec::with_capacity(82 + d.len());
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&self.msg_id);
        b.extend_from_slice(&self.sender_spk);
        b.push(d.len() as u8);
        b.extend_from_slice(d);
        b.push(self.slot);
        b.extend_from_slice(&self.ts.to_be_bytes());
        b.extend_from_slice(&self.exp.to_be_bytes());
        Ok(b)
    }

    /// Sign with the sender's identity (whose key must be `sender_spk`) and return the TXT
    /// value; refuses values over 255 bytes. (The reference caps the domain in characters
    /// when signing but in bytes when parsing; this checks bytes on both sides.)
    pub fn sign(&self, sender: &Identity) -> Result<String, ProtoError> {
        if sender.ed25519_public() != self.sender_spk {
            return Err(ProtoError::field("sender_spk", "does not match the signing key"));
        }
        let mut blob = self.body()?;
        let sig = sender.sign(&blob);
        blob.extend_from_slice(&sig);
        let txt = format!("{PREFIX_CLAIM}{}", b64::encode(&blob));
        if txt.len() > MAX_WIRE_LEN {
            return Err(ProtoError::field("claim", "TXT value over 255 bytes"));
        }
        Ok(txt)
    }

    /// Parse and verify. Order: prefix, whole value ≤ 255 bytes, strict base64, blob ≥ 65,
    /// body fields with exact length, signature under the embedded key, then time:
    /// `ts − now > 300` → `None`, `exp ≤ now` → `None`, `exp − now > 30 d` → `None`.
    pub fn parse_and_verify(txt: &str, now: u64) -> Option<Self> {
        let rest = txt.strip_prefix(PREFIX_CLAIM)?;
        if txt.len() > MAX_WIRE_LEN {
            return None;
        }
        let blob = b64::decode_strict(rest)?;
        if blob.len() < 65 {
            return None;
        }
        let (body, sig) = blob.split_at(blob.len() - 64);
        let mut r = Reader::new(body);
        if r.take(MAGIC.len())? != MAGIC {
            return None;
        }
        let msg_id = r.array()?;
        let sender_spk = r.array()?;
        let dlen = r.u8()? as usize;
        let sender_mailbox_domain = std::str::from_utf8(r.take(dlen)?).ok()?.to_owned();
        let claim = ClaimRecord {
            msg_id,
            sender_spk,
            sender_mailbox_domain,
            slot: r.u8()?,
            ts: r.u64()?,
            exp: r.u64()?,
        };
        if !r.is_empty() || !claim.fields_valid() || !keys::verify(&claim.sender_spk, body, sig) {
            return None;
        }
        if claim.ts.saturating_sub(now) > CLOCK_SKEW
            || claim.exp <= now
            || claim.exp - now > CAP_30_DAYS
        {
            return None;
        }
        Some(claim)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(id: &Identity) -> ClaimRecord {
        ClaimRecord {
            msg_id: [1; 16],
            sender_spk: id.ed25519_public(),
            sender_mailbox_domain: "mesh.example.com".into(),
            slot: 3,
            ts: 1_000,
            exp: 1_300,
        }
    }

    #[test]
    fn time_boundaries() {
        let id = Identity::from_private_bytes([6u8; 32]);
        let txt = claim(&id).sign(&id).unwrap();
        assert!(ClaimRecord::parse_and_verify(&txt, 700).is_some()); // ts - now == 300
        assert!(ClaimRecord::parse_and_verify(&txt, 699).is_none());
        assert!(ClaimRecord::parse_and_verify(&txt, 1_299).is_some());
        assert!(ClaimRecord::parse_and_verify(&txt, 1_300).is_none()); // exp == now
        let far = ClaimRecord { exp: 1_000 + CAP_30_DAYS, ..claim(&id) }.sign(&id).unwrap();
        assert!(ClaimRecord::parse_and_verify(&far, 1_000).is_some());
        let too_far = ClaimRecord { exp: 1_001 + CAP_30_DAYS, ..claim(&id) }.sign(&id).unwrap();
        assert!(ClaimRecord::parse_and_verify(&too_far, 1_000).is_none());
    }

    #[test]
    fn domain_rules() {
        let id = Identity::from_private_bytes([6u8; 32]);
        for bad in ["", "a b", "a\x7f", &"a".repeat(44)] {
            let c = ClaimRecord { sender_mailbox_domain: bad.into(), ..claim(&id) };
            assert!(c.sign(&id).is_err(), "{bad:?}");
        }
        let ok = ClaimRecord { sender_mailbox_domain: "a".repeat(43), ..claim(&id) };
        assert_eq!(ok.sign(&id).unwrap().len(), 15 + 4 * 179usize.div_ceil(3));
        assert!(ClaimRecord { slot: 10, ..claim(&id) }.sign(&id).is_err());
        assert!(ClaimRecord { exp: 1_000, ..claim(&id) }.sign(&id).is_err());
    }
}
