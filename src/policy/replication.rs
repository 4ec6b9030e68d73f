//! Rules for accepting anti-entropy rows from peers: the reference's re-verification
//! (node.md §6.6) and digest-row validation (§6.2), kept pure for tests.

use crate::proto::b64;
use crate::proto::records::{
    chunk::ChunkRecord, claim::ClaimRecord, cluster::ClusterManifest, identity::IdentityRecord,
    manifest::SlotManifest, revocation::RevocationRecord, rotation::RotationRecord, RecordKind,
};

/// Owner patterns reserved for DMP records: a non-DMP value there is refused.
fn reserved_owner(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    let label_num = |rest: &str, prefix: &str| -> bool {
        rest.strip_prefix(prefix)
            .map(|r| r.chars().take_while(|c| c.is_ascii_digit()).count() > 0)
            .unwrap_or(false)
    };
    let first = n.split('.').next().unwrap_or("");
    let second = n.split('.').nth(1).unwrap_or("");
    (label_num(first, "slot-") && second.starts_with("mb-"))
        || (label_num(first, "chunk-"))
        || first.starts_with("mb-")
        || first.starts_with("id-")
        || (first == "prekeys" && second.starts_with("id-"))
        || first.starts_with("_dnsmesh-")
        || (label_num(first, "claim-") && second.starts_with("mb-"))
        || first == "cluster"
        || first == "_dmp"
        || first == "dmp"
        || first == "rotate"
}

/// Would the reference accept this replicated value at `name`? (`operator_spk`: the
/// pinned cluster operator key, if any.)
pub fn verify_record(value: &str, name: &str, operator_spk: Option<&[u8; 32]>, now: u64) -> bool {
    if !value.starts_with("v=dmp") {
        return !reserved_owner(name);
    }
    let structural = |prefix: &str| {
        b64::decode_lenient(&value[prefix.len()..]).map(|b| b.len() >= 65).unwrap_or(false)
    };
    match RecordKind::of(value) {
        Some(RecordKind::Manifest) => SlotManifest::parse_and_verify(value, now).is_some(),
        Some(RecordKind::Identity) => IdentityRecord::parse_and_verify(value).is_some(),
        Some(RecordKind::Cluster) => match operator_spk {
            Some(spk) => ClusterManifest::parse_and_verify(value, spk, None, now).is_some(),
            None => structural(crate::proto::records::PREFIX_CLUSTER),
        },
        Some(RecordKind::Prekey) => structural(crate::proto::records::PREFIX_PREKEY),
        Some(RecordKind::Bootstrap) => structural(crate::proto::records::PREFIX_BOOTSTRAP),
        Some(RecordKind::Chunk) => {
            ChunkRecord::parse(value).and_then(|c| c.unwrap_block()).is_some()
        }
        Some(RecordKind::Claim) => ClaimRecord::parse_and_verify(value, now).is_some(),
        Some(RecordKind::Rotation) => {
            RotationRecord::parse_and_verify(value, None, None, now).is_some()
        }
        Some(RecordKind::Revocation) => {
            RevocationRecord::parse_and_verify(value, None, None, None, now).is_some()
        }
        _ => false,
    }
}

/// Digest-row name rule: `^[a-zA-Z0-9._-]{1,253}$`.
pub fn valid_sync_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// Parse a digest cursor `<ts>:<name>[:<hash>]`.
pub fn parse_cursor(c: &str) -> Option<(u64, String, String)> {
    let mut it = c.splitn(3, ':');
    let ts: u64 = it.next()?.parse().ok()?;
    let name = it.next()?.to_string();
    let hash = it.next().unwrap_or("").to_string();
    if name.len() > 253 {
        return None;
    }
    let lower_hex64 =
        hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !hash.is_empty() && !lower_hex64 {
        return None;
    }
    Some((ts, name, hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeats_are_refused_plain_values_only_off_reserved_names() {
        assert!(!verify_record("v=dmp1;t=heartbeat;AAAA", "_dnsmesh-heartbeat.z", None, 0));
        assert!(verify_record("hello", "www.z", None, 0));
        assert!(!verify_record("hello", "slot-1.mb-abc.z", None, 0));
        assert!(!verify_record("hello", "id-abc.z", None, 0));
        assert!(!verify_record("v=dmp1;t=manifest;d=AAAA", "slot-1.mb-abc.z", None, 0));
    }

    #[test]
    fn cursors() {
        assert_eq!(parse_cursor("0::"), Some((0, String::new(), String::new())));
        assert_eq!(parse_cursor("5:a.b"), Some((5, "a.b".into(), String::new())));
        assert_eq!(parse_cursor("x:a:"), None);
        assert_eq!(parse_cursor("1:a:zz"), None);
    }
}
