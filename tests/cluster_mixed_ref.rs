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
