//! Cluster manifest `v=dmp1;t=cluster;<b64(body ‖ sig)>` (protocol §4.6): the
//! operator-signed list of a cluster's nodes, published at `cluster.<base>`.
//!
//! The verifier supplies the (pinned) operator key, so the signature is checked
//! **before** any field is parsed (trap T6). `node_count = 0` is refused when signing but
//! accepted when parsing (trap T12).

use ed25519_dalek::SigningKey;

use super::{
    encode_strict_wire, pinned_and_current, verify_pinned, Reader, CAP_5_YEARS, PREFIX_CLUSTER,
};
use crate::proto::{dnsname, keys, ProtoError};

/// Magic shared (on purpose, upstream) with the claim record: never dispatch on it.
const MAGIC: &[u8; 7] = b"DMPCL01";
/// Cap on the dot-stripped cluster name, in bytes.
pub const MAX_CLUSTER_NAME_LEN: usize = 64;
/// Most nodes one manifest may list.
pub const MAX_NODE_COUNT: usize = 32;
/// Cap on a node id (ASCII bytes).
pub const MAX_NODE_ID_LEN: usize = 16;
/// Cap on a node's HTTP endpoint (UTF-8 bytes).
pub const MAX_HTTP_ENDPOINT_LEN: usize = 128;
/// Cap on a node's DNS endpoint (UTF-8 bytes); length 0 on the wire means absent.
pub const MAX_DNS_ENDPOINT_LEN: usize = 64;
/// Smallest decoded blob the parser looks at (magic + signature).
const MIN_BLOB_LEN: usize = 7 + 64;

/// One node of a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNode {
    /// Operator-chosen id, ASCII, 1..16 bytes, unique within the manifest.
    pub node_id: String,
    /// Where clients POST records (`https://host:port`), 1..128 bytes.
    pub http_endpoint: String,
    /// Where clients query DNS (`host`, `host:port`, `[v6]:port`); `None` = the resolver.
    pub dns_endpoint: Option<String>,
}

/// A cluster manifest: which nodes serve `cluster_name`, signed by its operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterManifest {
    /// The cluster's base domain (one trailing dot stripped; case as signed).
    pub cluster_name: String,
    /// The operator's Ed25519 key, which signs the manifest.
    pub operator_spk: [u8; 32],
    /// The nodes, in signed order.
    pub nodes: Vec<ClusterNode>,
    /// Sequence number; clients keep the highest.
    pub seq: u64,
    /// Expiry (Unix seconds); valid while `now ≤ exp`.
    pub exp: u64,
}

/// Strip one trailing dot, apply §1.5 and the 64-byte cap; shared with bootstrap.
pub(crate) fn checked_domain(name: &str, field: &'static str) -> Result<String, ProtoError> {
    let stripped = dnsname::validate(name)
        .ok_or_else(|| ProtoError::field(field, "not a valid DNS name (§1.5)"))?;
    if stripped.len() > MAX_CLUSTER_NAME_LEN {
        return Err(ProtoError::field(field, "longer than 64 bytes"));
    }
    Ok(stripped.to_string())
}

/// Compare two names as the reference binds them: one trailing dot stripped, casefolded.
pub(crate) fn same_name(a: &str, b: &str) -> bool {
    let strip = |s: &str| dnsname::casefold(s.strip_suffix('.').unwrap_or(s));
    strip(a) == strip(b)
}

/// Refuse to sign with a key other than the one the record declares (it could never verify).
pub(crate) fn ensure_signer(key: &SigningKey, expected: &[u8; 32]) -> Result<(), ProtoError> {
    if key.verifying_key().to_bytes() != *expected {
        return Err(ProtoError::field("key", "signing key does not match the declared key"));
    }
    Ok(())
}

impl ClusterNode {
    fn validate(&self) -> Result<(), ProtoError> {
        let id = &self.node_id;
        if id.is_empty() || id.len() > MAX_NODE_ID_LEN || !id.is_ascii() {
            return Err(ProtoError::field("node_id", "must be 1..16 ASCII bytes"));
        }
        if self.http_endpoint.is_empty() || self.http_endpoint.len() > MAX_HTTP_ENDPOINT_LEN {
            return Err(ProtoError::field("http_endpoint", "must be 1..128 bytes"));
        }
        if let Some(dns) = &self.dns_endpoint {
            if dns.is_empty() || dns.len() > MAX_DNS_ENDPOINT_LEN {
                return Err(ProtoError::field("dns_endpoint", "must be 1..64 bytes when present"));
            }
        }
        Ok(())
    }

    fn read(r: &mut Reader<'_>) -> Option<Self> {
        let id_len = r.u8()? as usize;
        if id_len == 0 || id_len > MAX_NODE_ID_LEN {
            return None;
        }
        let id = r.take(id_len)?;
        if !id.is_ascii() {
            return None;
        }
        let http_len = r.u16()? as usize;
        if http_len == 0 || http_len > MAX_HTTP_ENDPOINT_LEN {
            return None;
        }
        let http = std::str::from_utf8(r.take(http_len)?).ok()?;
        let dns_len = r.u16()? as usize;
        if dns_len > MAX_DNS_ENDPOINT_LEN {
            return None;
        }
        let dns = std::str::from_utf8(r.take(dns_len)?).ok()?;
        Some(ClusterNode {
            node_id: String::from_utf8(id.to_vec()).ok()?,
            http_endpoint: http.to_string(),
            dns_endpoint: (!dns.is_empty()).then(|| dns.to_string()),
        })
    }
}

fn has_duplicate_ids(nodes: &[ClusterNode]) -> bool {
    let mut seen = std::collections::HashSet::new();
    nodes.iter().any(|n| !seen.insert(n.node_id.as_str()))
}

impl ClusterManifest {
    /// The body that gets signed (no validation; [`Self::sign`] validates first).
    fn body(&self, name: &str) -> Vec<u8> {
        let mut b = Vec::with_capacity(128);
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&self.seq.to_be_bytes());
        b.extend_from_slice(&self.exp.to_be_bytes());
        b.extend_from_slice(&self.operator_spk);
        b.push(name.len() as u8);
        b.extend_from_slice(name.as_bytes());
        b.push(self.nodes.len() as u8);
        for n in &self.nodes {
            b.push(n.node_id.len() as u8);
            b.extend_from_slice(n.node_id.as_bytes());
            b.extend_from_slice(&(n.http_endpoint.len() as u16).to_be_bytes());
            b.extend_from_slice(n.http_endpoint.as_bytes());
            let dns = n.dns_endpoint.as_deref().unwrap_or("");
            b.extend_from_slice(&(dns.len() as u16).to_be_bytes());
            b.extend_from_slice(dns.as_bytes());
        }
        b
    }

    /// Validate (1..32 nodes, field caps, unique ids, §1.5 name), sign with the operator
    /// key (which must match `operator_spk`) and return the TXT value.
    pub fn sign(&self, key: &SigningKey) -> Result<String, ProtoError> {
        let name = checked_domain(&self.cluster_name, "cluster_name")?;
        if self.nodes.is_empty() || self.nodes.len() > MAX_NODE_COUNT {
            return Err(ProtoError::field("nodes", "must hold 1..32 nodes"));
        }
        for n in &self.nodes {
            n.validate()?;
        }
        if has_duplicate_ids(&self.nodes) {
            return Err(ProtoError::field("nodes", "duplicate node_id"));
        }
        ensure_signer(key, &self.operator_spk)?;
        let mut blob = self.body(&name);
        let sig = keys::sign(key, &blob);
        blob.extend_from_slice(&sig);
        encode_strict_wire(PREFIX_CLUSTER, &blob)
    }

    fn from_body(body: &[u8]) -> Option<Self> {
        let mut r = Reader::new(body);
        if r.take(7)? != MAGIC {
            return None;
        }
        let seq = r.u64()?;
        let exp = r.u64()?;
        let operator_spk = r.array::<32>()?;
        let name_len = r.u8()? as usize;
        let name = std::str::from_utf8(r.take(name_len)?).ok()?;
        let cluster_name = checked_domain(name, "cluster_name").ok()?;
        let count = r.u8()? as usize;
        if count > MAX_NODE_COUNT {
            return None;
        }
        let mut nodes = Vec::with_capacity(count);
        for _ in 0..count {
            nodes.push(ClusterNode::read(&mut r)?);
        }
        if !r.is_empty() || has_duplicate_ids(&nodes) {
            return None;
        }
        Some(ClusterManifest { cluster_name, operator_spk, nodes, seq, exp })
    }

    /// Parse and verify a TXT value under the caller's pinned `operator_spk`.
    /// Order (§4.6): prefix, length, strict base64, signature over the body, fields,
    /// embedded key equality, `exp < now` → `None`, 5-year cap, then the optional
    /// `expected_cluster_name` binding (casefold, one trailing dot stripped).
    pub fn parse_and_verify(
        txt: &str,
        operator_spk: &[u8; 32],
        expected_cluster_name: Option<&str>,
        now: u64,
    ) -> Option<Self> {
        let body = verify_pinned(txt, PREFIX_CLUSTER, MIN_BLOB_LEN, operator_spk)?;
        let m = Self::from_body(&body)?;
        if !pinned_and_current(&m.operator_spk, operator_spk, m.exp, now, CAP_5_YEARS) {
            return None;
        }
        if let Some(expected) = expected_cluster_name {
            if !same_name(&m.cluster_name, expected) {
                return None;
            }
        }
        Some(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str) -> ClusterNode {
        ClusterNode {
            node_id: id.into(),
            http_endpoint: "https://a.example.com".into(),
            dns_endpoint: None,
        }
    }

    fn manifest(key: &SigningKey, nodes: Vec<ClusterNode>) -> ClusterManifest {
        ClusterManifest {
            cluster_name: "Mesh.Example.com.".into(),
            operator_spk: key.verifying_key().to_bytes(),
            nodes,
            seq: 1,
            exp: 2_000,
        }
    }

    #[test]
    fn sign_rules() {
        let key = SigningKey::from_bytes(&[1u8; 32]);
        let spk = key.verifying_key().to_bytes();
        assert!(manifest(&key, vec![]).sign(&key).is_err(), "node_count 0 refused on sign (T12)");
        let many: Vec<_> = (0..33).map(|i| node(&format!("n{i}"))).collect();
        assert!(manifest(&key, many).sign(&key).is_err());
        assert!(manifest(&key, vec![node("n1"), node("n1")]).sign(&key).is_err());
        assert!(
            manifest(&key, vec![node("n1"), node("N1")]).sign(&key).is_ok(),
            "ids are case-sensitive"
        );
        assert!(manifest(&key, vec![node(&"a".repeat(17))]).sign(&key).is_err());
        let mut dns = node("n1");
        dns.dns_endpoint = Some(String::new());
        assert!(manifest(&key, vec![dns]).sign(&key).is_err());
        let big: Vec<_> = (0..20)
            .map(|i| ClusterNode {
                http_endpoint: format!("https://n{i}.example.com/{}", "x".repeat(20)),
                ..node(&format!("n{i}"))
            })
            .collect();
        assert!(manifest(&key, big).sign(&key).is_err(), "1200-byte wire cap");
        assert!(manifest(&key, vec![node("n1")])
            .sign(&SigningKey::from_bytes(&[2u8; 32]))
            .is_err());

        let txt = manifest(&key, vec![node("n1")]).sign(&key).unwrap();
        let m =
            ClusterManifest::parse_and_verify(&txt, &spk, Some("mesh.example.com"), 2_000).unwrap();
        assert_eq!(m.cluster_name, "Mesh.Example.com", "one dot stripped, case kept");
    }

    #[test]
    fn zero_nodes_parse() {
        let key = SigningKey::from_bytes(&[1u8; 32]);
        let spk = key.verifying_key().to_bytes();
        let m = manifest(&key, vec![]);
        let mut blob = m.body("mesh.example.com");
        blob.extend_from_slice(&keys::sign(&key, &blob.clone()));
        let txt = format!("{PREFIX_CLUSTER}{}", crate::proto::b64::encode(&blob));
        let parsed = ClusterManifest::parse_and_verify(&txt, &spk, None, 1_000)
            .expect("node_count 0 parses (T12)");
        assert!(parsed.nodes.is_empty());
        // A 65-byte name ending in '.' parses with the dot stripped.
        let name65 = format!("{}.{}.", "a".repeat(30), "b".repeat(33));
        let mut blob = manifest(&key, vec![node("n")]).body(&name65);
        blob.extend_from_slice(&keys::sign(&key, &blob.clone()));
        let txt = format!("{PREFIX_CLUSTER}{}", crate::proto::b64::encode(&blob));
        assert_eq!(
            ClusterManifest::parse_and_verify(&txt, &spk, None, 1_000).unwrap().cluster_name.len(),
            64
        );
    }
}
