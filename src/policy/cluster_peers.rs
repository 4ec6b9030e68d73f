//! Sync peers from the signed cluster manifest (when `[cluster] peers` is empty): every
//! node's `http_endpoint` except our own `node_id` (and our own endpoint), trimmed of a
//! trailing `/`, deduplicated, in signed order. Pure.

use crate::proto::records::cluster::ClusterManifest;

/// The peer URLs `m` gives a node whose id is `node_id` and whose own base URL is
/// `self_endpoint` (either may be empty).
pub fn peers_from_manifest(m: &ClusterManifest, node_id: &str, self_endpoint: &str) -> Vec<String> {
    let me = self_endpoint.trim().trim_end_matches('/');
    let mut out: Vec<String> = vec![];
    for n in &m.nodes {
        let url = n.http_endpoint.trim().trim_end_matches('/').to_string();
        let is_me = (!node_id.is_empty() && n.node_id == node_id)
            || (!me.is_empty() && url.eq_ignore_ascii_case(me));
        let http = url.starts_with("http://") || url.starts_with("https://");
        if !is_me && http && !out.iter().any(|u| u.eq_ignore_ascii_case(&url)) {
            out.push(url);
        }
    }
    out
}

/// Host names of peer URLs that are DNS names (not IP literals): heartbeat seed zones
/// (node.md §7.6), our own zone left out.
pub fn seed_zones(peers: &[String], own_zone: &str) -> Vec<String> {
    let mut out: Vec<String> = vec![];
    for p in peers {
        let Ok(u) = url::Url::parse(p) else { continue };
        let Some(url::Host::Domain(h)) = u.host() else { continue };
        let h = h.trim_end_matches('.').to_ascii_lowercase();
        if h != own_zone && !h.is_empty() && !out.contains(&h) {
            out.push(h);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::records::cluster::ClusterNode;

    #[test]
    fn own_node_skipped_and_deduplicated() {
        let node = |id: &str, url: &str| ClusterNode {
            node_id: id.into(),
            http_endpoint: url.into(),
            dns_endpoint: None,
        };
        let m = ClusterManifest {
            cluster_name: "c.test".into(),
            operator_spk: [0; 32],
            nodes: vec![
                node("a", "http://a.c.test:8053/"),
                node("b", "http://b.c.test:8053"),
                node("b2", "HTTP://B.c.test:8053"),
                node("c", "https://10.0.0.3"),
                node("d", "ftp://x"),
            ],
            seq: 1,
            exp: 9,
        };
        assert_eq!(peers_from_manifest(&m, "a", ""), ["http://b.c.test:8053", "https://10.0.0.3"]);
        assert_eq!(peers_from_manifest(&m, "", "http://b.c.test:8053/").len(), 2);
        let peers = peers_from_manifest(&m, "x", "");
        assert_eq!(seed_zones(&peers, "a.c.test"), ["b.c.test"]);
    }
}
