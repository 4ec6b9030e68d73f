//! Identity record, `v=dmp1;t=identity;d=<b64(body ‖ sig)>` (§4.3): a user's name and
//! both public keys, self-signed by the embedded Ed25519 key.

use super::{Reader, PREFIX_IDENTITY};
use crate::proto::keys::{self, Identity};
use crate::proto::{b64, ProtoError};

/// Longest username, in UTF-8 bytes.
pub const MAX_USERNAME: usize = 64;

/// A published identity. `versions` is the sorted, duplicate-free set of protocol
/// versions the owner understands (`[1]` when the record has no versions suffix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityRecord {
    pub username: String,
    pub x25519_pk: [u8; 32],
    pub ed25519_spk: [u8; 32],
    /// Publish time; informational only (no freshness rule applies).
    pub ts: u64,
    pub versions: Vec<u8>,
}

impl IdentityRecord {
    /// Whether the owner advertises protocol version 2 (the DMPv2 envelope gate, §5.4).
    pub fn supports_v2(&self) -> bool {
        self.versions.contains(&2)
    }

    /// The signed body. The versions suffix is omitted when the set is exactly {1} so
    /// v1-only records keep their old bytes; otherwise it is written sorted + deduped.
    pub fn body(&self) -> Result<Vec<u8>, ProtoError> {
        let name = self.username.as_bytes();
        if name.is_empty() || name.len() > MAX_USERNAME {
            return Err(ProtoError::field("username", "must be 1..64 UTF-8 bytes"));
        }
        let mut versions = self.versions.clone();
        versions.sort_unstable();
        versions.dedup();
        if versions.is_empty() || versions.len() > 255 {
            return Err(ProtoError::field("versions", "must hold 1..255 versions"));
        }
        let mut b = Vec::with_capacity(75 + name.len() + versions.len());
        b.push(name.len() as u8);
        b.extend_from_slice(name);
        b.extend_from_slice(&self.x25519_pk);
        b.extend_from_slice(&self.ed25519_spk);
        b.extend_from_slice(&self.ts.to_be_bytes());
        if versions != [1] {
            b.push(versions.len() as u8);
            b.extend_from_slice(&versions);
        }
        Ok(b)
    }

    /// Sign with the owner's identity and return the TXT value. The signer's Ed25519 key
    /// must be the record's `ed25519_spk`, or nobody could verify it.
    pub fn sign(&self, owner: &Identity) -> Result<String, ProtoError> {
        if owner.ed25519_public() != self.ed25519_spk {
            return Err(ProtoError::field("ed25519_spk", "does not match the signing key"));
        }
        let mut blob = self.body()?;
        let sig = owner.sign(&blob);
        blob.extend_from_slice(&sig);
        Ok(format!("{PREFIX_IDENTITY}{}", b64::encode(&blob)))
    }

    /// Parse a TXT value and verify its self-signature. `None` for anything malformed:
    /// wrong prefix, bad base64 (lenient), blob < 65 or body < 74 bytes, username length
    /// outside 1..64 or not UTF-8, wrong total length, empty or non-canonical versions,
    /// bad signature. No freshness rule applies to identities.
    pub fn parse_and_verify(txt: &str) -> Option<Self> {
        let blob = b64::decode_lenient(txt.strip_prefix(PREFIX_IDENTITY)?)?;
        if blob.len() < 65 {
            return None;
        }
        let (body, sig) = blob.split_at(blob.len() - 64);
        if body.len() < 74 {
            return None;
        }
        let mut r = Reader::new(body);
        let ulen = r.u8()? as usize;
        if ulen == 0 || ulen > MAX_USERNAME {
            return None;
        }
        let username = std::str::from_utf8(r.take(ulen)?).ok()?.to_owned();
        let x25519_pk = r.array()?;
        let ed25519_spk = r.array()?;
        let ts = r.u64()?;
        let versions = if r.is_empty() {
            vec![1]
        } else {
            let n = r.u8()? as usize;
            let v = r.take(n)?.to_vec();
            if n == 0 || !r.is_empty() || !v.windows(2).all(|w| w[0] < w[1]) {
                return None;
            }
            v
        };
        if !keys::verify(&ed25519_spk, body, sig) {
            return None;
        }
        Some(IdentityRecord { username, x25519_pk, ed25519_spk, ts, versions })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_suffix_rules() {
        let id = Identity::from_private_bytes([3u8; 32]);
        let mut rec = IdentityRecord {
            username: "carol".into(),
            x25519_pk: id.x25519_public(),
            ed25519_spk: id.ed25519_public(),
            ts: 5,
            versions: vec![1],
        };
        assert_eq!(rec.body().unwrap().len(), 73 + 5);
        rec.versions = vec![2, 1, 2];
        assert_eq!(rec.body().unwrap().len(), 73 + 5 + 3);
        let txt = rec.sign(&id).unwrap();
        let parsed = IdentityRecord::parse_and_verify(&txt).unwrap();
        assert_eq!(parsed.versions, vec![1, 2]);
        assert!(parsed.supports_v2());
        rec.versions = vec![];
        assert!(rec.body().is_err());
        rec.versions = vec![1];
        rec.username = String::new();
        assert!(rec.body().is_err());
        // Non-canonical suffix (2, 1) is rejected even with a valid signature.
        let mut body = IdentityRecord { versions: vec![1], ..parsed.clone() }.body().unwrap();
        body.extend_from_slice(&[2, 2, 1]);
        let sig = id.sign(&body);
        body.extend_from_slice(&sig);
        assert_eq!(
            IdentityRecord::parse_and_verify(&format!("{PREFIX_IDENTITY}{}", b64::encode(&body))),
            None
        );
    }
}
