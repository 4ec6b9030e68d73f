//! Revocation `v=dmp1;t=revocation;<b64(body ‖ sig)>` (protocol §4.9, DRAFT): a key
//! declares itself dead. Self-signed by `revoked_spk`; permanent unless the caller opts in
//! to a maximum age.

use ed25519_dalek::SigningKey;

use super::cluster::ensure_signer;
use super::rotation::{
    normalize_subject, put_subject, read_subject, validate_subject, SubjectType,
};
use super::{
    decode_strict_wire, encode_strict_wire, split_sig, Reader, CLOCK_SKEW, PREFIX_REVOCATION,
};
use crate::proto::{keys, ProtoError};

const MAGIC: &[u8; 7] = b"DMPRV01";
/// Smallest decoded blob the parser looks at (magic + signature).
const MIN_BLOB_LEN: usize = 7 + 64;

/// Why a key was revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RevocationReason {
    /// The private key leaked.
    Compromise = 1,
    /// Planned retirement.
    Routine = 2,
    /// The private key is gone.
    LostKey = 3,
    /// Anything else.
    Other = 4,
}

impl TryFrom<u8> for RevocationReason {
    type Error = ProtoError;
    fn try_from(v: u8) -> Result<Self, ProtoError> {
        match v {
            1 => Ok(RevocationReason::Compromise),
            2 => Ok(RevocationReason::Routine),
            3 => Ok(RevocationReason::LostKey),
            4 => Ok(RevocationReason::Other),
            _ => Err(ProtoError::field("reason_code", format!("{v} is not 1..4"))),
        }
    }
}

/// "`revoked_spk` must no longer be trusted for `subject`", signed by that key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationRecord {
    /// Whose key is revoked.
    pub subject_type: SubjectType,
    /// The subject as written by the signer.
    pub subject: String,
    /// The dead key; it also signs the record.
    pub revoked_spk: [u8; 32],
    /// Why.
    pub reason: RevocationReason,
    /// When (Unix seconds); may not be more than 300 s in the future at parse.
    pub ts: u64,
}

impl RevocationRecord {
    /// Validate, sign with the revoked key (which must match `revoked_spk`) and return
    /// the TXT value.
    pub fn sign(&self, key: &SigningKey) -> Result<String, ProtoError> {
        validate_subject(self.subject_type, &self.subject)?;
        ensure_signer(key, &self.revoked_spk)?;
        let mut b = Vec::with_capacity(120 + self.subject.len());
        b.extend_from_slice(MAGIC);
        put_subject(&mut b, self.subject_type, &self.subject);
        b.extend_from_slice(&self.revoked_spk);
        b.push(self.reason as u8);
        b.extend_from_slice(&self.ts.to_be_bytes());
        let sig = keys::sign(key, &b);
        b.extend_from_slice(&sig);
        encode_strict_wire(PREFIX_REVOCATION, &b)
    }

    fn from_body(body: &[u8]) -> Option<Self> {
        let mut r = Reader::new(body);
        if r.take(7)? != MAGIC {
            return None;
        }
        let (subject_type, subject) = read_subject(&mut r)?;
        let revoked_spk = r.array::<32>()?;
        let reason = RevocationReason::try_from(r.u8()?).ok()?;
        let ts = r.u64()?;
        if !r.is_empty() {
            return None;
        }
        Some(RevocationRecord { subject_type, subject, revoked_spk, reason, ts })
    }

    /// Parse and verify against the embedded key, then the optional
    /// `expected_revoked_spk` and `expected_subject` (via
    /// [`super::rotation::normalize_subject`]), the optional `max_age` (reject when
    /// `ts + max_age < now`; `None` = permanent) and always `ts > now + 300` → `None`.
    pub fn parse_and_verify(
        txt: &str,
        expected_revoked_spk: Option<&[u8; 32]>,
        expected_subject: Option<&str>,
        max_age: Option<u64>,
        now: u64,
    ) -> Option<Self> {
        let blob = decode_strict_wire(txt, PREFIX_REVOCATION)?;
        let (body, sig) = split_sig(&blob, MIN_BLOB_LEN)?;
        let rec = Self::from_body(body)?;
        if !keys::verify(&rec.revoked_spk, body, sig) {
            return None;
        }
        if expected_revoked_spk.is_some_and(|k| *k != rec.revoked_spk) {
            return None;
        }
        if let Some(expected) = expected_subject {
            let ty = rec.subject_type;
            if normalize_subject(ty, &rec.subject) != normalize_subject(ty, expected) {
                return None;
            }
        }
        if max_age.is_some_and(|age| rec.ts.saturating_add(age) < now) {
            return None;
        }
        if rec.ts > now.saturating_add(CLOCK_SKEW) {
            return None;
        }
        Some(rec)
    }
}
