//! DNS owner names for every record kind (protocol §3).
//!
//! Hashes are lowercase hex SHA-256 prefixes. Zones: identity, prekey and hashed
//! rotation helpers strip all trailing dots; cluster/bootstrap helpers validate per
//! §1.5 and strip one; slot, chunk and claim builders take the zone as given.

use super::dnsname;
use super::keys::{sha256, sha256_hex_prefix};

/// Number of mailbox slots.
pub const SLOT_COUNT: u32 = 10;

fn strip_dots(zone: &str) -> &str {
    zone.trim_end_matches('.')
}

/// `H12 = sha256hex(recipient_id)[:12]`, the mailbox hash label (without `mb-`).
pub fn mailbox_hash(recipient_id: &[u8; 32]) -> String {
    sha256_hex_prefix(recipient_id, 12)
}

/// The slot a sender picks: `uint32_be(msg_id[0:4]) mod 10`.
pub fn slot_for(msg_id: &[u8; 16]) -> u32 {
    u32::from_be_bytes([msg_id[0], msg_id[1], msg_id[2], msg_id[3]]) % SLOT_COUNT
}

/// `slot-<N>.mb-<H12>.<zone>`.
pub fn slot(slot: u32, recipient_id: &[u8; 32], zone: &str) -> String {
    format!("slot-{}.mb-{}.{}", slot, mailbox_hash(recipient_id), zone)
}

/// `K12 = sha256hex(msg_id ‖ recipient_id ‖ sender_ed25519_pub)[:12]`.
pub fn message_key(msg_id: &[u8; 16], recipient_id: &[u8; 32], sender_spk: &[u8; 32]) -> String {
    let mut b = Vec::with_capacity(80);
    b.extend_from_slice(msg_id);
    b.extend_from_slice(recipient_id);
    b.extend_from_slice(sender_spk);
    sha256_hex_prefix(&b, 12)
}

/// `chunk-<NNNN>-<K12>.<zone>`.
pub fn chunk(index: u32, msg_key: &str, zone: &str) -> String {
    format!("chunk-{:04}-{}.{}", index, msg_key, zone)
}

/// `claim-<N>.mb-<H12>.<zone>` (zone taken as given).
pub fn claim(slot: u32, recipient_id: &[u8; 32], zone: &str) -> String {
    format!("claim-{}.mb-{}.{}", slot, mailbox_hash(recipient_id), zone)
}

/// `id-<U16>.<zone>`, `U16 = sha256hex(username)[:16]` (case-sensitive username).
pub fn identity(username: &str, zone: &str) -> String {
    format!("id-{}.{}", sha256_hex_prefix(username.as_bytes(), 16), strip_dots(zone))
}

/// Zone-anchored identity: `dmp.<identity_domain>`.
pub fn identity_anchored(identity_domain: &str) -> String {
    format!("dmp.{}", strip_dots(identity_domain))
}

/// `prekeys.id-<U12>.<zone>` (12 hex, not 16).
pub fn prekeys(username: &str, zone: &str) -> String {
    format!("prekeys.id-{}.{}", sha256_hex_prefix(username.as_bytes(), 12), strip_dots(zone))
}

/// Hashed user rotation/revocation RRset: `rotate.id-<U16>.<zone>`.
pub fn rotation_hashed(username: &str, zone: &str) -> String {
    format!("rotate.{}", identity(username, zone))
}

/// Zone-anchored user rotation/revocation RRset: `rotate.dmp.<identity_domain>`.
pub fn rotation_anchored(identity_domain: &str) -> String {
    format!("rotate.dmp.{}", strip_dots(identity_domain))
}

/// `rotate.cluster.<base>`; `None` when the base fails §1.5.
pub fn rotation_cluster(cluster_base: &str) -> Option<String> {
    Some(format!("rotate.cluster.{}", dnsname::validate(cluster_base)?))
}

/// `rotate._dmp.<user_domain>`; `None` when the domain fails §1.5.
pub fn rotation_bootstrap(user_domain: &str) -> Option<String> {
    Some(format!("rotate._dmp.{}", dnsname::validate(user_domain)?))
}

/// `cluster.<base>`; `None` when the base fails §1.5.
pub fn cluster(cluster_base: &str) -> Option<String> {
    Some(format!("cluster.{}", dnsname::validate(cluster_base)?))
}

/// `_dmp.<user_domain>`; `None` when the domain fails §1.5.
pub fn bootstrap(user_domain: &str) -> Option<String> {
    Some(format!("_dmp.{}", dnsname::validate(user_domain)?))
}

/// `_dnsmesh-heartbeat.<zone>`.
pub fn heartbeat(zone: &str) -> String {
    format!("_dnsmesh-heartbeat.{}", strip_dots(zone))
}

/// `_dnsmesh-seen.<zone>`.
pub fn seen(zone: &str) -> String {
    format!("_dnsmesh-seen.{}", strip_dots(zone))
}

/// `recipient_id` of an X25519 public key (`sha256(pub)`), re-exported for name users.
pub fn recipient_id(x25519_pub: &[u8; 32]) -> [u8; 32] {
    sha256(x25519_pub)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let rid = [0u8; 32];
        assert!(slot(3, &rid, "mesh.test").starts_with("slot-3.mb-"));
        assert_eq!(chunk(7, "abcdefabcdef", "z"), "chunk-0007-abcdefabcdef.z");
        assert_eq!(identity_anchored("example.com."), "dmp.example.com");
        assert!(prekeys("alice", "mesh.test.").starts_with("prekeys.id-"));
        assert_eq!(cluster("a..b"), None);
        assert_eq!(slot_for(&[0, 0, 0, 13, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), 3);
    }
}
