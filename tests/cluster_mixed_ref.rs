//! A mixed cluster: one of our nodes and two reference nodes (PyPI dnsmesh 0.7.5) on
//! 127.0.0.21-23, syncing by anti-entropy in both directions; then a reference CLI user
//! on a reference node and a reference CLI user on our node exchange messages.
#![cfg(feature = "net")]

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

const SYNC: &str = "ref-sync-token";
const REF_OP: &str = "ref-operator-token";
const OP: &str = "our-op";

struct RefNode {
    name: String,
    dir: std::path::PathBuf,
    ip: String,
    dns: u16,
    http: u16,
}

impl Drop for RefNode {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/interop/ref-node.sh"))
            .args(["stop", &self.name])
            .arg(&self.dir)
            .output();
    }
}

fn start_ref(name: &str, ip: &str, peers: &str, zone: &str, dir: &std::path::Path) -> RefNode {
    start_ref_env(name, ip, peers, zone, dir, &[])
}

fn start_ref_env(
    name: &str,
    ip: &str,
    peers: &str,
    zone: &str,
    dir: &std::path::Path,
    extra_env: &[(&str, &str)],
) -> RefNode {
    let dns = free_tcp_port(ip);
    let http_port = free_tcp_port(ip);
    let out = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/interop/ref-node.sh"))
        .args(["start", name, &dns.to_string(), &http_port.to_string()])
        .arg(dir)
        .arg(zone)
        .env("REF_VENV", ref_venv())
        .env("REF_BIND", ip)
        .env("DMP_SYNC_PEERS", peers)
        .env("DMP_SYNC_SELF_ENDPOINT", format!("http://{ip}:{http_port}"))
        .env("DMP_SYNC_PEER_TOKEN", SYNC)
        .env("DMP_SYNC_INTERVAL", "1")
        .env("DMP_NODE_ID", name)
        .env("REF_LOG_LEVEL", "WARNING")
        .envs(extra_env.iter().copied())
        .output()
        .expect("ref-node.sh");
    assert!(
        out.status.success(),
        "reference node failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    RefNode { name: name.into(), dir: dir.to_path_buf(), ip: ip.into(), dns, http: http_port }
}

#[test]
fn our_node_and_two_reference_nodes_converge_and_users_talk_across() {
    let zone = "mixed.test";
    let tmp = tempfile::tempdir().unwrap();
    // Our node's HTTP address must be known to the reference nodes up front.
    let our_ip = "127.0.0.23";
    let our_http = free_tcp_port(our_ip);
    let (r1_ip, r2_ip) = ("127.0.0.21", "127.0.0.22");
    // Reference nodes pick their ports inside start_ref; give them each other's URL after.
    // Simplest: start r1 peering only with us, r2 with us and r1.
    let us_url = format!("http://{our_ip}:{our_http}");
    let r1 = start_ref("r1", r1_ip, &us_url, zone, &tmp.path().join("r1"));
    let r1_url = format!("http://{}:{}", r1.ip, r1.http);
    let r2 = start_ref("r2", r2_ip, &format!("{us_url},{r1_url}"), zone, &tmp.path().join("r2"));
    let r2_url = format!("http://{}:{}", r2.ip, r2.http);
    let ours = Node::start_with(
        zone,
        &[&format!("{our_ip}:0")],
        &format!("{our_ip}:{our_http}"),
        &[
            ("DNSMESH_AUTH__OPERATOR_TOKEN", OP),
            ("DNSMESH_CLUSTER__PEERS", &format!("{r1_url},{r2_url}")),
            ("DNSMESH_CLUSTER__SYNC_TOKEN", SYNC),
            ("DNSMESH_CLUSTER__SYNC_INTERVAL_SECS", "1"),
            ("DNSMESH_NODE__HOSTNAME", zone),
        ],
    );
    let r1_dns: std::net::SocketAddr = format!("{}:{}", r1.ip, r1.dns).parse().unwrap();
    let r2_dns: std::net::SocketAddr = format!("{}:{}", r2.ip, r2.dns).parse().unwrap();

    // Ours → reference (the reference pulls from our digest).
    assert_eq!(publish(&ours, OP, &format!("from-ours.{zone}"), "o1", 3600), 201);
    for a in [r1_dns, r2_dns] {
        assert!(
            eventually(100, Duration::from_millis(100), || txt_at(a, &format!("from-ours.{zone}"))
                == vec!["o1"]),
            "reference node {a} did not pull our write"
        );
    }
    // Reference → ours (we pull from the reference's digest, skipping its heartbeat rows).
    let body = serde_json::json!({"value": "r1", "ttl": 3600}).to_string();
    let (s, b) =
        http(&r1_url, "POST", &format!("/v1/records/from-ref.{zone}"), Some(REF_OP), &body)
            .unwrap();
    assert_eq!(s, 201, "{b}");
    assert!(
        eventually(100, Duration::from_millis(100), || txt_at(
            ours.dns[0],
            &format!("from-ref.{zone}")
        ) == vec!["r1"]),
        "our node did not pull the reference's write"
    );

    // A reference CLI user on r1 and one on our node exchange messages.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/interop/interop-e2e.sh");
    let out = Command::new("bash")
        .arg(script)
        .env("REF_VENV", ref_venv())
        .env("NODE_HTTP", &r1_url)
        .env("NODE_DNS_HOST", r1.ip.clone())
        .env("NODE_DNS_PORT", r1.dns.to_string())
        .env("BOB_NODE_HTTP", ours.url())
        .env("BOB_NODE_DNS_HOST", ours.dns[0].ip().to_string())
        .env("BOB_NODE_DNS_PORT", ours.dns[0].port().to_string())
        .env("ZONE", zone)
        .env("WRITE_MODE", "http")
        .env("CHECK_DNS", "0")
        .env("RECV_TRIES", "20")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("interop: ok"),
        "cross-node exchange failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A mixed cluster driven by its signed manifest: our node (peers empty, manifest seq 1 =
/// us + reference r1) syncs with r1; a seq+1 manifest adding a third node, POSTed to the
/// reference node only, reaches our node by gossip (r1 serves it at
/// `/v1/sync/cluster-manifest`), and our node then syncs with the new peer too.
#[test]
fn manifest_seq_bump_on_a_reference_node_adds_a_peer_to_ours() {
    use dnsmesh::proto::records::cluster::{ClusterManifest, ClusterNode};
    let zone = "mixman.test";
    let tmp = tempfile::tempdir().unwrap();
    let op = ed25519_dalek::SigningKey::from_bytes(&[33; 32]);
    let spk = hex::encode(op.verifying_key().to_bytes());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let (a_ip, c_ip, r_ip) = ("127.0.0.24", "127.0.0.25", "127.0.0.26");
    let (a_http, c_http) = (free_tcp_port(a_ip), free_tcp_port(c_ip));
    let (a_url, c_url) = (format!("http://{a_ip}:{a_http}"), format!("http://{c_ip}:{c_http}"));
    let gossip_env = [("DMP_SYNC_OPERATOR_SPK", spk.as_str()), ("DMP_CLUSTER_BASE_DOMAIN", zone)];
    let r1 = start_ref_env("m1", r_ip, &a_url, zone, &tmp.path().join("m1"), &gossip_env);
    let r1_url = format!("http://{}:{}", r1.ip, r1.http);
    let manifest = |seq: u64, nodes: &[(&str, &str)]| {
        ClusterManifest {
            cluster_name: zone.into(),
            operator_spk: op.verifying_key().to_bytes(),
            nodes: nodes
                .iter()
                .map(|(id, url)| ClusterNode {
                    node_id: id.to_string(),
                    http_endpoint: url.to_string(),
                    dns_endpoint: None,
                })
                .collect(),
            seq,
            exp: now + 3600,
        }
        .sign(&op)
        .unwrap()
    };
    let file = tmp.path().join("cluster.wire");
    std::fs::write(&file, manifest(1, &[("a", &a_url), ("m1", &r1_url)])).unwrap();
    let cluster_env = |id: &'static str| {
        vec![
            ("DNSMESH_AUTH__OPERATOR_TOKEN", OP.to_string()),
            ("DNSMESH_CLUSTER__SYNC_TOKEN", SYNC.to_string()),
            ("DNSMESH_CLUSTER__SYNC_INTERVAL_SECS", "1".to_string()),
            ("DNSMESH_CLUSTER__OPERATOR_SPK", spk.clone()),
            ("DNSMESH_CLUSTER__BASE_DOMAIN", zone.to_string()),
            ("DNSMESH_CLUSTER__NODE_ID", id.to_string()),
        ]
    };
    let mut a_env = cluster_env("a");
    a_env.push(("DNSMESH_CLUSTER__MANIFEST_FILE", file.to_str().unwrap().to_string()));
    let a_env: Vec<(&str, &str)> = a_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let ours = Node::start_with(zone, &[&format!("{a_ip}:0")], &format!("{a_ip}:{a_http}"), &a_env);
    let c_env = cluster_env("c");
    let c_env: Vec<(&str, &str)> = c_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let c = Node::start_with(zone, &[&format!("{c_ip}:0")], &format!("{c_ip}:{c_http}"), &c_env);

    let has = |name: &str| txt_at(ours.dns[0], &format!("{name}.{zone}")).len() == 1;
    let body = serde_json::json!({"value": "m1", "ttl": 3600}).to_string();
    let (s, b) =
        http(&r1_url, "POST", &format!("/v1/records/from-m1.{zone}"), Some(REF_OP), &body).unwrap();
    assert_eq!(s, 201, "{b}");
    assert!(eventually(150, Duration::from_millis(100), || has("from-m1")), "ours pulls from m1");
    assert_eq!(publish(&c, OP, &format!("from-c.{zone}"), "c1", 3600), 201);
    assert!(!has("from-c"), "c is not a peer yet");

    // seq 2 adds c; POSTed to the reference node only.
    let wire2 = manifest(2, &[("a", &a_url), ("m1", &r1_url), ("c", &c_url)]);
    let body = serde_json::json!({"value": wire2, "ttl": 3600}).to_string();
    let (s, b) =
        http(&r1_url, "POST", &format!("/v1/records/cluster.{zone}"), Some(REF_OP), &body).unwrap();
    assert_eq!(s, 201, "{b}");
    let (s, served) = http(&r1_url, "GET", "/v1/sync/cluster-manifest", Some(SYNC), "").unwrap();
    assert_eq!(s, 200, "the reference serves the manifest: {served}");
    assert!(
        eventually(200, Duration::from_millis(100), || has("from-c")),
        "our node did not sync with the peer added by the seq 2 manifest"
    );
    let (_, st) = http(&ours.url(), "GET", "/status.json", None, "").unwrap();
    let v: serde_json::Value = serde_json::from_str(&st).unwrap();
    let peers: Vec<&str> = v["cluster_peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["peer"].as_str().unwrap())
        .collect();
    assert_eq!(peers, [r1_url.as_str(), c_url.as_str()]);
}
