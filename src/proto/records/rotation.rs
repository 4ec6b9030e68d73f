//! Key rotation `v=dmp1;t=rotation;<b64(body ‖ sig_old ‖ sig_new)>` (protocol §4.8,
//! DRAFT): old and new key co-sign the same body so that pinned contacts can follow a
//! key change. Also home of the subject rules shared with revocations (§4.9).

use ed25519_dalek::SigningKey;

use super::cluster::ensure_signer;
use super::{
    beyond_cap, decode_strict_wire, encode_strict_wire, Reader, CAP_5_YEARS, PREFIX_ROTATION,
};
use crate::proto::registration::py_space;
use crate::proto::{dnsname, keys, ProtoError};

const MAGIC: &[u8; 7] = b"DMPROT1";
/// Cap on a type-1 (`user@host`) subject, in UTF-8 bytes.
pub const MAX_USER_SUBJECT_LEN: usize = 255;
/// Cap on a type-2/3 (DNS name) subject, in bytes, trailing dot included.
pub const MAX_NAME_SUBJECT_LEN: usize = 64;
/// Smallest decoded blob the parser looks at (magic + two signatures).
const MIN_BLOB_LEN: usize = 7 + 128;

/// Whose key a rotation or revocation is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum SubjectType {
    /// A user identity; subject `user@host`.
    UserIdentity = 1,
    /// A cluster operator; subject the cluster base domain.
    ClusterOperator = 2,
    /// A bootstrap signer; subject the user domain.
    BootstrapSigner = 3,
}

impl TryFrom<u8> for SubjectType {
    type Error = ProtoError;
    fn try_from(v: u8) -> Result<Self, ProtoError> {
        match v {
            1 => Ok(SubjectType::UserIdentity),
            2 => Ok(SubjectType::ClusterOperator),
            3 => Ok(SubjectType::BootstrapSigner),
            _ => Err(ProtoError::field("subject_type", format!("{v} is not 1, 2 or 3"))),
        }
    }
}

/// The reference validates a subject's DNS part after stripping one trailing dot, and §1.5
/// strips another: `a.com..` is accepted, `a.com...` is not.
fn valid_subject_host(host: &str) -> bool {
    dnsname::validate(host.strip_suffix('.').unwrap_or(host)).is_some()
}

/// Validate a subject for its type (§4.8): non-empty, byte cap; type 1 `user@host`
/// split at the first `@`, both halves trimmed of whitespace (as the reference does),
/// non-empty user (otherwise free-form), host valid per §1.5; types 2/3 a §1.5 name as is. The subject is
/// kept exactly as written.
pub(crate) fn validate_subject(ty: SubjectType, subject: &str) -> Result<(), ProtoError> {
    let bad = |why: &str| Err(ProtoError::field("subject", why.to_string()));
    if subject.is_empty() {
        return bad("empty");
    }
    match ty {
        SubjectType::UserIdentity => {
            if subject.len() > MAX_USER_SUBJECT_LEN {
                return bad("longer than 255 bytes");
            }
            let Some((user, host)) = subject.split_once('@') else {
                return bad("not user@host");
            };
            let (user, host) = (user.trim_matches(py_space), host.trim_matches(py_space));
            if user.is_empty() || !valid_subject_host(host) {
                return bad("empty user or invalid host");
            }
        }
        SubjectType::ClusterOperator | SubjectType::BootstrapSigner => {
            if subject.len() > MAX_NAME_SUBJECT_LEN {
                return bad("longer than 64 bytes");
            }
            if !valid_subject_host(subject) {
                return bad("not a valid DNS name (§1.5)");
            }
        }
    }
    Ok(())
}

/// The form subjects are compared in. Types 2/3: one trailing dot stripped, casefolded.
/// Type 1: both halves trimmed of whitespace, the host then loses one trailing dot and
/// is casefolded; the user keeps its case. (Casefold is Unicode lower-casing here; it
/// differs from Python's only on non-ASCII input such as `ß`, which never matches a
/// valid stored host anyway.)
pub fn normalize_subject(ty: SubjectType, subject: &str) -> String {
    let host = |h: &str| dnsname::casefold(h.strip_suffix('.').unwrap_or(h));
    match ty {
        SubjectType::UserIdentity => match subject.split_once('@') {
            Some((user, h)) => {
                format!("{}@{}", user.trim_matches(py_space), host(h.trim_matches(py_space)))
            }
            None => subject.to_string(),
        },
        SubjectType::ClusterOperator | SubjectType::BootstrapSigner => host(subject),
    }
}

/// Append `type ‖ len ‖ subject`; the caller has validated the subject.
pub(crate) fn put_subject(b: &mut Vec<u8>, ty: SubjectType, subject: &str) {
    b.push(ty as u8);
    b.push(subject.len() as u8);
    b.extend_from_slice(subject.as_bytes());
}

/// Read and re-validate `type ‖ len ‖ subject`.
pub(crate) fn read_subject(r: &mut Reader<'_>) -> Option<(SubjectType, String)> {
    let ty = SubjectType::try_from(r.u8()?).ok()?;
    let len = r.u8()? as usize;
    let subject = std::str::from_utf8(r.take(len)?).ok()?;
    validate_subject(ty, subject).ok()?;
    Some((ty, subject.to_string()))
}

/// A co-signed statement "`subject` moves from `old_spk` to `new_spk`".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationRecord {
    /// Whose key rotates.
    pub subject_type: SubjectType,
    /// The subject as written by the signer.
    pub subject: String,
    /// The key being retired; signs first.
    pub old_spk: [u8; 32],
    /// The replacement key (must differ); signs second.
    pub new_spk: [u8; 32],
    /// Strictly increasing along a chain (the CLI uses Unix milliseconds).
    pub seq: u64,
    /// Creation time (Unix seconds).
    pub ts: u64,
    /// Expiry; valid while `now ≤ exp`.
    pub exp: u64,
}

impl RotationRecord {
    fn body(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(100 + self.subject.len());
        b.extend_from_slice(MAGIC);
        put_subject(&mut b, self.subject_type, &self.subject);
        b.extend_from_slice(&self.old_spk);
        b.extend_from_slice(&self.new_spk);
        b.extend_from_slice(&self.seq.to_be_bytes());
        b.extend_from_slice(&self.ts.to_be_bytes());
        b.extend_from_slice(&self.exp.to_be_bytes());
        b
    }

    /// Validate, co-sign with the old then the new key (each must match its declared
    /// public key) and return the TXT value.
    pub fn sign(&self, old_key: &SigningKey, new_key: &SigningKey) -> Result<String, ProtoError> {
        validate_subject(self.subject_type, &self.subject)?;
        if self.old_spk == self.new_spk {
            return Err(ProtoError::field("new_spk", "must differ from old_spk"));
        }
        ensure_signer(old_key, &self.old_spk)?;
        ensure_signer(new_key, &self.new_spk)?;
        let mut blob = self.body();
        let sig_old = keys::sign(old_key, &blob);
        let sig_new = keys::sign(new_key, &blob);
        blob.extend_from_slice(&sig_old);
        blob.extend_from_slice(&sig_new);
        encode_strict_wire(PREFIX_ROTATION, &blob)
    }

    fn from_body(body: &[u8]) -> Option<Self> {
        let mut r = Reader::new(body);
        if r.take(7)? != MAGIC {
            return None;
        }
        let (subject_type, subject) = read_subject(&mut r)?;
        let old_spk = r.array::<32>()?;
        let new_spk = r.array::<32>()?;
        let seq = r.u64()?;
        let ts = r.u64()?;
        let exp = r.u64()?;
        if !r.is_empty() || old_spk == new_spk {
            return None;
        }
        Some(RotationRecord { subject_type, subject, old_spk, new_spk, seq, ts, exp })
    }

    /// Parse and verify both signatures against the embedded keys, then the optional
    /// `expected_old_spk` and `expected_subject` (compared via [`normalize_subject`]),
    /// `exp < now` → `None`, and the 5-year cap.
    pub fn parse_and_verify(
        txt: &str,
        expected_old_spk: Option<&[u8; 32]>,
        expected_subject: Option<&str>,
        now: u64,
    ) -> Option<Self> {
        let blob = decode_strict_wire(txt, PREFIX_ROTATION)?;
        if blob.len() < MIN_BLOB_LEN {
            return None;
        }
        let (body, sigs) = blob.split_at(blob.len() - 128);
        let (sig_old, sig_new) = sigs.split_at(64);
        let rec = Self::from_body(body)?;
        if !keys::verify(&rec.old_spk, body, sig_old) || !keys::verify(&rec.new_spk, body, sig_new)
        {
            return None;
        }
        if expected_old_spk.is_some_and(|k| *k != rec.old_spk) {
            return None;
        }
        if let Some(expected) = expected_subject {
            let ty = rec.subject_type;
            if normalize_subject(ty, &rec.subject) != normalize_subject(ty, expected) {
                return None;
            }
        }
        if rec.exp < now || beyond_cap(rec.exp, now, CAP_5_YEARS) {
            return None;
        }
        Some(rec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SubjectType::*;

    #[test]
    fn subject_rules() {
        let ok = |t, s: &str| validate_subject(t, s).is_ok();
        assert!(ok(UserIdentity, "Alice@Example.COM."));
        assert!(ok(UserIdentity, "al ice@example.com"), "user part is free-form");
        assert!(ok(UserIdentity, "alice@ example.com\t"), "host trimmed like the reference");
        assert!(ok(UserIdentity, "alice@example.com.."), "one dot stripped, then §1.5 strips one");
        assert!(!ok(UserIdentity, "alice@example.com..."));
        assert!(!ok(UserIdentity, " @example.com"));
        assert!(!ok(UserIdentity, "alice@@example.com"));
        assert!(!ok(UserIdentity, "alice"));
        assert!(!ok(UserIdentity, &format!("{}@example.com", "a".repeat(244))));
        assert!(ok(ClusterOperator, "a.com.."));
        assert!(!ok(ClusterOperator, "mesh.example.com "), "no trimming for types 2/3");
        assert!(!ok(BootstrapSigner, "_dmp.example.com"));
        assert!(
            !ok(BootstrapSigner, &format!("{}.{}.", "a".repeat(30), "b".repeat(33))),
            "65 raw bytes"
        );
        assert!(!ok(BootstrapSigner, ""));
    }

    #[test]
    fn subject_normalisation() {
        let n = normalize_subject;
        assert_eq!(n(UserIdentity, " Alice @ Example.COM.\t"), "Alice@example.com");
        assert_eq!(n(UserIdentity, "alice@example.com\t."), "alice@example.com\t");
        assert_eq!(n(ClusterOperator, "Mesh.Example.com."), "mesh.example.com");
        assert_eq!(n(ClusterOperator, "mesh.example.com.."), "mesh.example.com.");
        assert_eq!(n(BootstrapSigner, " a.com"), " a.com");
    }
}
