//! One-time prekey record, `v=dmp1;t=prekey;d=<b64(body ‖ sig)>` (§4.4): a forward-
//! secrecy X25519 key signed by the owner's identity key. The record does not name its
//! signer, so the verifier supplies the key it has pinned for the owner.

use super::{Reader, CAP_30_DAYS, PREFIX_PREKEY};
use crate::proto::keys::{self, Identity};
use crate::proto::{b64, ProtoError};

/// Decoded blob length: id 4 + key 32 + exp 8 + signature 64.
const BLOB_LEN: usize = 108;

/// A published prekey. `prekey_id` is never 0 (0 means "no prekey" in manifests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prekey {
    pub prekey_id: u32,
    pub public_key: [u8; 32],
    pub exp: u64,
}

impl Prekey {
    /// The 44-byte signed body.
    pub fn body(&self) -> [u8; 44] {
        let mut b = [0u8; 44];
        b[..4].copy_from_slice(&self.prekey_id.to_be_bytes());
        b[4..36].copy_from_slice(&self.public_key);
        b[36..].copy_from_slice(&self.exp.to_be_bytes());
        b
    }

    /// Sign with the owner's identity key and return the TXT value (always 162 chars).
    pub fn sign(&self, owner: &Identity) -> Result<String, ProtoError> {
        if self.prekey_id == 0 {
            return Err(ProtoError::field("prekey_id", "0 is reserved"));
        }
        let body = self.body();
        let mut blob = body.to_vec();
        blob.extend_from_slice(&owner.sign(&body));
        Ok(format!("{PREFIX_PREKEY}{}", b64::encode(&blob)))
    }

    /// Parse and verify under the owner's pinned Ed25519 key. Checks, in order: prefix,
    /// lenient base64, blob length 108, id ≠ 0, signature, far-future cap
    /// (`exp − now > 30 d` → `None`). Expiry is **not** checked here, as in the
    /// reference: callers drop records for which [`Prekey::is_expired`] holds.
    pub fn parse_and_verify(txt: &str, signer_spk: &[u8; 32], now: u64) -> Option<Self> {
        let blob = b64::decode_lenient(txt.strip_prefix(PREFIX_PREKEY)?)?;
        if blob.len() != BLOB_LEN {
            return None;
        }
        let (body, sig) = blob.split_at(44);
        let mut r = Reader::new(body);
        let prekey = Prekey { prekey_id: r.u32()?, public_key: r.array()?, exp: r.u64()? };
        if prekey.prekey_id == 0 || !keys::verify(signer_spk, body, sig) {
            return None;
        }
        if prekey.exp.saturating_sub(now) > CAP_30_DAYS {
            return None;
        }
        Some(prekey)
    }

    /// Caller-side expiry: `now > exp` (a prekey expiring exactly now is still usable).
    pub fn is_expired(&self, now: u64) -> bool {
        now > self.exp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries() {
        let owner = Identity::from_private_bytes([9u8; 32]);
        let pk = Prekey { prekey_id: 7, public_key: [5u8; 32], exp: 1_000 + CAP_30_DAYS };
        let txt = pk.sign(&owner).unwrap();
        assert_eq!(txt.len(), 162);
        let spk = owner.ed25519_public();
        assert_eq!(Prekey::parse_and_verify(&txt, &spk, 1_000), Some(pk.clone()));
        assert_eq!(Prekey::parse_and_verify(&txt, &spk, 999), None);
        assert!(!pk.is_expired(pk.exp));
        assert!(pk.is_expired(pk.exp + 1));
        assert!(Prekey { prekey_id: 0, ..pk }.sign(&owner).is_err());
    }
}
