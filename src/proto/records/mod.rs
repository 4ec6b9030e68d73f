//! The ten DMP TXT record types (protocol §4). Each module builds + signs and parses +
//! verifies one type; parsers take an explicit `now` where the reference checks time.
//!
//! Dispatch is on the full exact prefix (§1.1): `DMPCL01` is both the cluster and the
//! claim magic, so never dispatch on magic.

pub mod bootstrap;
pub mod chunk;
pub mod claim;
pub mod cluster;
pub mod heartbeat;
pub mod identity;
pub mod manifest;
pub mod prekey;
pub mod revocation;
pub mod rotation;

/// `v=dmp1;t=chunk;d=`
pub const PREFIX_CHUNK: &str = "v=dmp1;t=chunk;d=";
/// `v=dmp1;t=manifest;d=`
pub const PREFIX_MANIFEST: &str = "v=dmp1;t=manifest;d=";
/// `v=dmp1;t=identity;d=`
pub const PREFIX_IDENTITY: &str = "v=dmp1;t=identity;d=";
/// `v=dmp1;t=prekey;d=`
pub const PREFIX_PREKEY: &str = "v=dmp1;t=prekey;d=";
/// `v=dmp1;t=claim;`
pub const PREFIX_CLAIM: &str = "v=dmp1;t=claim;";
/// `v=dmp1;t=cluster;`
pub const PREFIX_CLUSTER: &str = "v=dmp1;t=cluster;";
/// `v=dmp1;t=bootstrap;`
pub const PREFIX_BOOTSTRAP: &str = "v=dmp1;t=bootstrap;";
/// `v=dmp1;t=rotation;`
pub const PREFIX_ROTATION: &str = "v=dmp1;t=rotation;";
/// `v=dmp1;t=revocation;`
pub const PREFIX_REVOCATION: &str = "v=dmp1;t=revocation;";
/// `v=dmp1;t=heartbeat;`
pub const PREFIX_HEARTBEAT: &str = "v=dmp1;t=heartbeat;";

/// 30 days: far-future cap for manifest, prekey, claim, heartbeat.
pub const CAP_30_DAYS: u64 = 2_592_000;
/// 5 × 365 days: far-future cap for cluster, bootstrap, rotation.
pub const CAP_5_YEARS: u64 = 157_680_000;
/// Allowed clock skew for future timestamps (claim, heartbeat, revocation).
pub const CLOCK_SKEW: u64 = 300;
/// Maximum whole TXT value for cluster, bootstrap, rotation, revocation, heartbeat.
pub const MAX_WIRE_LEN: usize = 1200;

/// Which record type a TXT value claims to be, by its exact prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    Chunk,
    Manifest,
    Identity,
    Prekey,
    Claim,
    Cluster,
    Bootstrap,
    Rotation,
    Revocation,
    Heartbeat,
}

impl RecordKind {
    /// Every kind with its exact prefix.
    pub const ALL: [(RecordKind, &'static str); 10] = [
        (RecordKind::Chunk, PREFIX_CHUNK),
        (RecordKind::Manifest, PREFIX_MANIFEST),
        (RecordKind::Identity, PREFIX_IDENTITY),
        (RecordKind::Prekey, PREFIX_PREKEY),
        (RecordKind::Claim, PREFIX_CLAIM),
        (RecordKind::Cluster, PREFIX_CLUSTER),
        (RecordKind::Bootstrap, PREFIX_BOOTSTRAP),
        (RecordKind::Rotation, PREFIX_ROTATION),
        (RecordKind::Revocation, PREFIX_REVOCATION),
        (RecordKind::Heartbeat, PREFIX_HEARTBEAT),
    ];

    /// Classify a TXT value by its full exact prefix; `None` for foreign values.
    pub fn of(value: &str) -> Option<RecordKind> {
        Self::ALL.iter().find(|(_, p)| value.starts_with(p)).map(|(k, _)| *k)
    }

    /// The exact prefix of this kind.
    pub fn prefix(self) -> &'static str {
        Self::ALL.iter().find(|(k, _)| *k == self).map(|(_, p)| *p).unwrap_or("")
    }
}

/// Read a big-endian integer field from a byte cursor; shared by the record parsers.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    pub(crate) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
    pub(crate) fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    pub(crate) fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.array()?))
    }
    pub(crate) fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.array()?))
    }
    pub(crate) fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.array()?))
    }
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }
}

/// Decode the base64 payload of a strict-b64 record (cluster, bootstrap, rotation,
/// revocation, heartbeat): exact prefix, whole TXT value ≤ [`MAX_WIRE_LEN`], strict base64.
/// Shared so that every newer record applies the same first three parse steps.
pub(crate) fn decode_strict_wire(txt: &str, prefix: &str) -> Option<Vec<u8>> {
    let payload = txt.strip_prefix(prefix)?;
    if txt.len() > MAX_WIRE_LEN {
        return None;
    }
    super::b64::decode_strict(payload)
}

/// Build `prefix ‖ b64(blob)` and refuse values over [`MAX_WIRE_LEN`] (the sign-side cap).
pub(crate) fn encode_strict_wire(prefix: &str, blob: &[u8]) -> Result<String, super::ProtoError> {
    let txt = format!("{prefix}{}", super::b64::encode(blob));
    if txt.len() > MAX_WIRE_LEN {
        return Err(super::ProtoError::field(
            "wire",
            format!("{} bytes > {MAX_WIRE_LEN}", txt.len()),
        ));
    }
    Ok(txt)
}

/// Split `blob` into (body, trailing 64-byte signature); `None` when shorter than `min_len`.
pub(crate) fn split_sig(blob: &[u8], min_len: usize) -> Option<(&[u8], &[u8])> {
    if blob.len() < min_len || blob.len() < 64 {
        return None;
    }
    Some(blob.split_at(blob.len() - 64))
}

/// The pinned-key routine of the records an operator signs (cluster manifest, bootstrap):
/// prefix, length and strict base64 ([`decode_strict_wire`]), then the signature over the
/// body verified under the caller's `pinned` key BEFORE the body is parsed (§4.6). Returns
/// the verified body (the blob without its signature).
pub(crate) fn verify_pinned(
    txt: &str,
    prefix: &str,
    min_len: usize,
    pinned: &[u8; 32],
) -> Option<Vec<u8>> {
    let mut blob = decode_strict_wire(txt, prefix)?;
    let (body, sig) = split_sig(&blob, min_len)?;
    if !super::keys::verify(pinned, body, sig) {
        return None;
    }
    blob.truncate(blob.len() - 64);
    Some(blob)
}

/// The checks after parsing a pinned-key record: the embedded key is the pinned one, it
/// has not expired (`exp < now` fails), and `exp` is within `cap` of `now`.
pub(crate) fn pinned_and_current(
    embedded: &[u8; 32],
    pinned: &[u8; 32],
    exp: u64,
    now: u64,
    cap: u64,
) -> bool {
    embedded == pinned && exp >= now && !beyond_cap(exp, now, cap)
}

/// The far-future check shared by signed records: reject when `exp − now > cap`.
/// Callers check expiry first, so `exp < now` is already excluded or allowed as they need.
pub(crate) fn beyond_cap(exp: u64, now: u64, cap: u64) -> bool {
    exp.saturating_sub(now) > cap
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_key_routine() {
        use ed25519_dalek::{Signer, SigningKey};
        let key = SigningKey::from_bytes(&[3u8; 32]);
        let pk = key.verifying_key().to_bytes();
        let body = vec![7u8; 40];
        let mut blob = body.clone();
        blob.extend_from_slice(&key.sign(&body).to_bytes());
        let txt = encode_strict_wire(PREFIX_CLUSTER, &blob).expect("small");
        assert_eq!(verify_pinned(&txt, PREFIX_CLUSTER, 64, &pk), Some(body));
        // Another pinned key, another prefix, a body shorter than the minimum: refused.
        let other = SigningKey::from_bytes(&[4u8; 32]).verifying_key().to_bytes();
        assert_eq!(verify_pinned(&txt, PREFIX_CLUSTER, 64, &other), None);
        assert_eq!(verify_pinned(&txt, PREFIX_BOOTSTRAP, 64, &pk), None);
        assert_eq!(verify_pinned(&txt, PREFIX_CLUSTER, 200, &pk), None);
        // After parsing: the embedded key must be the pinned one, unexpired, within the cap.
        assert!(pinned_and_current(&pk, &pk, 100, 100, 10));
        assert!(!pinned_and_current(&other, &pk, 100, 100, 10));
        assert!(!pinned_and_current(&pk, &pk, 99, 100, 10));
        assert!(!pinned_and_current(&pk, &pk, 111, 100, 10));
    }

    #[test]
    fn classify_on_full_prefix() {
        assert_eq!(RecordKind::of("v=dmp1;t=claim;AAAA"), Some(RecordKind::Claim));
        assert_eq!(RecordKind::of("v=dmp1;t=cluster;AAAA"), Some(RecordKind::Cluster));
        assert_eq!(RecordKind::of("v=dmp1;t=chunk;d=AAAA"), Some(RecordKind::Chunk));
        assert_eq!(RecordKind::of("v=spf1 -all"), None);
        assert_eq!(RecordKind::Heartbeat.prefix(), PREFIX_HEARTBEAT);
    }
}
