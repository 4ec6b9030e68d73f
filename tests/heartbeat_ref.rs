//! Discovery between our node and a reference node: both publish signed heartbeats,
//! harvest each other through a real resolver (unbound with a stub zone per node), and
//! list each other in their `_dnsmesh-seen` sets, read back over DNS. A forged and a
//! stale heartbeat in the harvested RRset are ignored.
#![cfg(feature = "net")]

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use dnsmesh::proto::records::heartbeat::{Heartbeat, HeartbeatPolicy};

fn endpoints(wires: &[String]) -> Vec<String> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let lax = HeartbeatPolicy { max_skew: 1 << 40, allow_private_endpoints: true };
    wires
        .iter()
        .filter_map(|w| Heartbeat::parse_and_verify_with(w, now, &lax))
        .map(|h| h.endpoint)
        .collect()
}

#[test]
fn our_node_and_a_reference_node_discover_each_other() {
    let (a_ip, b_ip) = ("127.0.0.31", "127.0.0.32");
    let a_dns = free_tcp_port(a_ip);
    let b_dns = free_tcp_port(b_ip);
    let b_http = free_tcp_port(b_ip);
    std::env::set_var("UNBOUND_NEG_TTL", "1");
    let ub = start_unbound(&[
        ("a.test", format!("{a_ip}:{a_dns}").parse().unwrap()),
        ("b.test", format!("{b_ip}:{b_dns}").parse().unwrap()),
    ]);
    let resolver = ub.addr.to_string();

    // Reference node B (zone b.test), seeded with a.test.
    let tmp = tempfile::tempdir().unwrap();
    let bdir = tmp.path().join("b");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/interop/ref-node.sh");
    let out = Command::new("bash")
        .arg(script)
        .args(["start", "hb-b", &b_dns.to_string(), &b_http.to_string()])
        .arg(&bdir)
        .arg("b.test")
        .env("REF_VENV", ref_venv())
        .env("REF_BIND", b_ip)
        .env("REF_LOG_LEVEL", "WARNING")
        .env("DMP_HEARTBEAT_SEEDS", "a.test")
        .env("DMP_HEARTBEAT_DNS_RESOLVERS", &resolver)
        .env("DMP_HEARTBEAT_INTERVAL_SECONDS", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    struct Stop(std::path::PathBuf);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = Command::new("bash")
                .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/interop/ref-node.sh"))
                .args(["stop", "hb-b"])
                .arg(&self.0)
                .output();
        }
    }
    let _stop = Stop(bdir.clone());
    let b_addr: std::net::SocketAddr = format!("{b_ip}:{b_dns}").parse().unwrap();

    // A forged and a stale heartbeat in B's zone (written with B's operator token).
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let k = ed25519_dalek::SigningKey::from_bytes(&[42; 32]);
    let hb = |ep: &str, ts: u64| Heartbeat {
        endpoint: ep.into(),
        operator_spk: k.verifying_key().to_bytes(),
        version: "x".into(),
        capabilities: 1,
        claim_provider_zone: "evil.test".into(),
        ts,
        exp: ts + 86_400,
    };
    let stale = hb("http://stale.test:1", now - 1000).sign(&k).unwrap();
    let mut forged = hb("http://forged.test:1", now).sign(&k).unwrap();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    for w in [&stale, &forged] {
        let body = serde_json::json!({"value": w, "ttl": 3600}).to_string();
        let (s, b) = http(
            &format!("http://{b_ip}:{b_http}"),
            "POST",
            "/v1/records/_dnsmesh-heartbeat.b.test",
            Some("ref-operator-token"),
            &body,
        )
        .unwrap();
        assert_eq!(s, 201, "{b}");
    }

    // Our node A (zone a.test), seeded with b.test.
    let a = Node::start_with(
        "a.test",
        &[&format!("{a_ip}:{a_dns}")],
        &format!("{a_ip}:0"),
        &[
            ("DNSMESH_HEARTBEAT__ENABLED", "true"),
            ("DNSMESH_HEARTBEAT__SELF_ENDPOINT", "http://a.test:8053"),
            ("DNSMESH_HEARTBEAT__SEEDS", "b.test"),
            ("DNSMESH_HEARTBEAT__RESOLVERS", &resolver),
            ("DNSMESH_HEARTBEAT__INTERVAL_SECS", "1"),
        ],
    );
    let b_endpoint = format!("http://b.test:{b_http}");
    assert!(
        eventually(120, Duration::from_millis(500), || endpoints(&txt_at(
            a.dns[0],
            "_dnsmesh-seen.a.test"
        ))
        .contains(&b_endpoint)),
        "our seen set never listed the reference node: {:?}",
        endpoints(&txt_at(a.dns[0], "_dnsmesh-seen.a.test"))
    );
    assert!(
        eventually(120, Duration::from_millis(500), || endpoints(&txt_at(
            b_addr,
            "_dnsmesh-seen.b.test"
        ))
        .contains(&"http://a.test:8053".to_string())),
        "the reference node's seen set never listed us: {:?}",
        endpoints(&txt_at(b_addr, "_dnsmesh-seen.b.test"))
    );
    // Our own heartbeat is served and verifies.
    assert_eq!(
        endpoints(&txt_at(a.dns[0], "_dnsmesh-heartbeat.a.test")),
        vec!["http://a.test:8053".to_string()]
    );
    // Forged and stale wires were harvested alongside B's and ignored.
    let (_, status) = http(&a.url(), "GET", "/status.json", None, "").unwrap();
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    let peers: Vec<String> = v["heartbeat_peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["endpoint"].as_str().unwrap().to_string())
        .collect();
    assert!(peers.contains(&b_endpoint), "{peers:?}");
    assert!(!peers.iter().any(|p| p.contains("stale") || p.contains("forged")), "{peers:?}");
    let seen = endpoints(&txt_at(a.dns[0], "_dnsmesh-seen.a.test"));
    assert!(!seen.iter().any(|p| p.contains("stale") || p.contains("forged")), "{seen:?}");
}
