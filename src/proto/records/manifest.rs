//! Slot manifest, `v=dmp1;t=manifest;d=<b64(body ‖ sig)>` (§4.2): announces a message
//! in the recipient's mailbox slot and lists the SHA-256 of every chunk wire. Signed by
//! the embedded sender key (self-authenticating).

use super::{Reader, CAP_30_DAYS, PREFIX_MANIFEST};
use crate::proto::keys::{self, Identity};
use crate::proto::{b64, ProtoError};

/// Largest `total_chunks` a manifest may announce.
pub const MAX_TOTAL_CHUNKS: u32 = 1024;
/// `prekey_id` meaning "encrypted to the recipient's long-term key".
pub const NO_PREKEY: u32 = 0;
/// Length of the fixed part of the body (the legacy, hash-less body).
const FIXED_BODY: usize = 108;

/// A slot manifest. `chunk_hashes` is empty for legacy (pre-0.7.0) manifests, else holds
/// exactly `total_chunks` hashes; receivers refuse to deliver without them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotManifest {
    pub msg_id: [u8; 16],
    pub sender_spk: [u8; 32],
    pub recipient_id: [u8; 32],
    /// n: number of published chunks.
    pub total_chunks: u32,
    /// k: chunks needed to rebuild the message.
    pub data_chunks: u32,
    pub prekey_id: u32,
    pub ts: u64,
    pub exp: u64,
    pub chunk_hashes: Vec<[u8; 32]>,
}

impl SlotManifest {
    /// Whether per-chunk hashes are present (mandatory for delivery since 0.7.0).
    pub fn has_chunk_hashes(&self) -> bool {
        !self.chunk_hashes.is_empty()
    }

    /// Caller-side expiry: `now > exp` (a manifest expiring exactly now is still valid).
    pub fn is_expired(&self, now: u64) -> bool {
        now > self.exp
    }

    fn fields_valid(&self) -> bool {
        self.data_chunks >= 1
            && self.data_chunks <= self.total_chunks
            && self.total_chunks <= MAX_TOTAL_CHUNKS
    }

    /// The signed body: 108 fixed bytes, then the chunk hashes if any.
    pub fn body(&self) -> Result<Vec<u8>, ProtoError> {
        if !self.fields_valid() {
            return Err(ProtoError::field("data_chunks", "need 1 <= k <= n <= 1024"));
        }
        if self.has_chunk_hashes() && self.chunk_hashes.len() != self.total_chunks as usize {
            return Err(ProtoError::field(
                "chunk_hashes",
                "must be empty or hold total_chunks hashes",
            ));
        }
        let mut b = Vec::with_capacity(FIXED_BODY + 32 * self.chunk_hashes.len());
        b.extend_from_slice(&self.msg_id);
        b.extend_from_slice(&self.sender_spk);
        b.extend_from_slice(&self.recipient_id);
        b.extend_from_slice(&self.total_chunks.to_be_bytes());
        b.extend_from_slice(&self.data_chunks.to_be_bytes());
        b.extend_from_slice(&self.prekey_id.to_be_bytes());
        b.extend_from_slice(&self.ts.to_be_bytes());
        b.extend_from_slice(&self.exp.to_be_bytes());
        for h in &self.chunk_hashes {
            b.extend_from_slice(h);
        }
        Ok(b)
    }

    /// Sign with the sender's identity (whose key must be `sender_spk`) and return the
    /// TXT value.
    pub fn sign(&self, sender: &Identity) -> Result<String, ProtoError> {
        if sender.ed25519_public() != self.sender_spk {
            return Err(ProtoError::field("sender_spk", "does not match the signing key"));
        }
        let mut blob = self.body()?;
        let sig = sender.sign(&blob);
        blob.extend_from_slice(&sig);
        Ok(format!("{PREFIX_MANIFEST}{}", b64::encode(&blob)))
    }

    /// Parse and verify. Order as in the reference: prefix, lenient base64, length (the
    /// blob must be exactly 172 bytes or `172 + 32·n` with n read at offset 80), field
    /// checks (1 ≤ k ≤ n ≤ 1024), signature under the embedded `sender_spk`, far-future
    /// cap (`exp − now > 30 d` → `None`). Expiry and the recipient are the caller's to
    /// check ([`SlotManifest::is_expired`]); so is refusing hash-less manifests.
    pub fn parse_and_verify(txt: &str, now: u64) -> Option<Self> {
        let blob = b64::decode_lenient(txt.strip_prefix(PREFIX_MANIFEST)?)?;
        let n_bytes: [u8; 4] = blob.get(80..84)?.try_into().ok()?;
        let n = u64::from(u32::from_be_bytes(n_bytes));
        let hashes = if blob.len() as u64 == FIXED_BODY as u64 + 64 {
            0
        } else if blob.len() as u64 == FIXED_BODY as u64 + 32 * n + 64 {
            n as usize
        } else {
            return None;
        };
        let (body, sig) = blob.split_at(blob.len() - 64);
        let mut r = Reader::new(body);
        let m = SlotManifest {
            msg_id: r.array()?,
            sender_spk: r.array()?,
            recipient_id: r.array()?,
            total_chunks: r.u32()?,
            data_chunks: r.u32()?,
            prekey_id: r.u32()?,
            ts: r.u64()?,
            exp: r.u64()?,
            chunk_hashes: (0..hashes).map(|_| r.array()).collect::<Option<_>>()?,
        };
        if !m.fields_valid() || !keys::verify(&m.sender_spk, body, sig) {
            return None;
        }
        if m.exp.saturating_sub(now) > CAP_30_DAYS {
            return None;
        }
        Some(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_body_lengths_parse() {
        let id = Identity::from_private_bytes([4u8; 32]);
        let mut m = SlotManifest {
            msg_id: [1; 16],
            sender_spk: id.ed25519_public(),
            recipient_id: [2; 32],
            total_chunks: 2,
            data_chunks: 1,
            prekey_id: NO_PREKEY,
            ts: 10,
            exp: 20,
            chunk_hashes: vec![],
        };
        let legacy = m.sign(&id).unwrap();
        assert_eq!(legacy.len(), 252);
        assert!(!SlotManifest::parse_and_verify(&legacy, 10).unwrap().has_chunk_hashes());
        m.chunk_hashes = vec![[7; 32], [8; 32]];
        let txt = m.sign(&id).unwrap();
        assert_eq!(txt.len(), 336);
        assert_eq!(SlotManifest::parse_and_verify(&txt, 10), Some(m.clone()));
        m.chunk_hashes.pop();
        assert!(m.sign(&id).is_err());
        m.chunk_hashes.clear();
        m.data_chunks = 3;
        assert!(m.sign(&id).is_err());
    }
}
