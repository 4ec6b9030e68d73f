//! Three of our nodes on 127.0.0.11-13 syncing by anti-entropy: a write to one is
//! answered over DNS by all three within about a second (notify + pull); a node killed
//! with -9 catches up to an identical record set after restart; deletes propagate.
#![cfg(feature = "net")]

mod common;

use std::time::{Duration, Instant};

use common::*;

const OP: &str = "op";
const SYNC: &str = "sync-secret";

fn cluster() -> Vec<Node> {
    let ips = ["127.0.0.11", "127.0.0.12", "127.0.0.13"];
    let ports: Vec<u16> = ips.iter().map(|ip| free_tcp_port(ip)).collect();
    let urls: Vec<String> =
        ips.iter().zip(&ports).map(|(ip, p)| format!("http://{ip}:{p}")).collect();
    ips.iter()
        .enumerate()
        .map(|(i, ip)| {
            let peers: Vec<String> =
                urls.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, u)| u.clone()).collect();
            let peers = peers.join(",");
            Node::start_with(
                "mesh.test",
                &[&format!("{ip}:0")],
                &format!("{ip}:{}", ports[i]),
                &[
                    ("DNSMESH_AUTH__OPERATOR_TOKEN", OP),
                    ("DNSMESH_CLUSTER__PEERS", &peers),
                    ("DNSMESH_CLUSTER__SYNC_TOKEN", SYNC),
                    ("DNSMESH_CLUSTER__SYNC_INTERVAL_SECS", "2"),
                ],
            )
        })
        .collect()
}

#[test]
fn three_nodes_converge_survive_kill_9_and_propagate_deletes() {
    let mut nodes = cluster();
    // A write to one node is answered by all three.
    let t0 = Instant::now();
    assert_eq!(publish(&nodes[0], OP, "hello.mesh.test", "world", 3600), 201);
    for n in &nodes {
        assert!(
            eventually(200, Duration::from_millis(25), || txt_at(n.dns[0], "hello.mesh.test")
                == vec!["world".to_string()]),
            "write not visible on {}",
            n.url()
        );
    }
    eprintln!("write visible on all three nodes after {:?}", t0.elapsed());

    // kill -9 one node, keep writing to the other two, restart it: it catches up.
    nodes[2].kill9();
    for i in 0..30 {
        let n = &nodes[i % 2];
        assert_eq!(publish(n, OP, &format!("w{i}.mesh.test"), &format!("v{i}"), 3600), 201);
    }
    nodes[2].restart();
    // Every node ends with the same record set, holding all 31 writes.
    let converged = || {
        let a = digest_set(&nodes[0], SYNC);
        a.len() >= 31 && a == digest_set(&nodes[1], SYNC) && a == digest_set(&nodes[2], SYNC)
    };
    assert!(
        eventually(200, Duration::from_millis(50), converged),
        "digests differ: a={} b={} c={}",
        digest_set(&nodes[0], SYNC).len(),
        digest_set(&nodes[1], SYNC).len(),
        digest_set(&nodes[2], SYNC).len()
    );

    // A delete on one node propagates (tombstones) and is not undone by anti-entropy.
    let (s, _) = http(
        &nodes[1].url(),
        "DELETE",
        "/v1/records/hello.mesh.test",
        Some(OP),
        r#"{"value":"world"}"#,
    )
    .unwrap();
    assert_eq!(s, 204);
    for n in &nodes {
        assert!(
            eventually(200, Duration::from_millis(25), || txt_at(n.dns[0], "hello.mesh.test")
                .is_empty()),
            "delete not propagated to {}",
            n.url()
        );
    }
    // Metrics show per-peer sync counters.
    let (_, m) = http(&nodes[0].url(), "GET", "/metrics", Some(OP), "").unwrap();
    assert!(m.contains("dmp_sync_records_pulled_total{peer="), "{m}");
    // Sync routes refuse a wrong token.
    let (s, _) = http(&nodes[0].url(), "GET", "/v1/sync/digest", Some("wrong"), "").unwrap();
    assert_eq!(s, 403);
}

#[test]
fn signed_cluster_manifest_is_published_and_served() {
    use dnsmesh::proto::records::cluster::{ClusterManifest, ClusterNode};
    let op = ed25519_dalek::SigningKey::from_bytes(&[8; 32]);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let m = ClusterManifest {
        cluster_name: "mesh.test".into(),
        operator_spk: op.verifying_key().to_bytes(),
        nodes: vec![ClusterNode {
            node_id: "n1".into(),
            http_endpoint: "http://127.0.0.1:8053".into(),
            dns_endpoint: Some("127.0.0.1:5353".into()),
        }],
        seq: 7,
        exp: now + 86_400,
    };
    let wire = m.sign(&op).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cluster.json");
    std::fs::write(&file, serde_json::json!({ "wire": wire }).to_string()).unwrap();
    let spk = hex::encode(op.verifying_key().to_bytes());
    let n = Node::start(
        "mesh.test",
        &[
            ("DNSMESH_CLUSTER__MANIFEST_FILE", file.to_str().unwrap()),
            ("DNSMESH_CLUSTER__OPERATOR_SPK", &spk),
            ("DNSMESH_CLUSTER__BASE_DOMAIN", "mesh.test"),
            ("DNSMESH_CLUSTER__SYNC_TOKEN", SYNC),
        ],
    );
    assert_eq!(txt_at(n.dns[0], "cluster.mesh.test"), vec![wire.clone()], "published in DNS");
    let (s, body) = http(&n.url(), "GET", "/v1/sync/cluster-manifest", Some(SYNC), "").unwrap();
    assert_eq!(s, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((v["seq"].as_u64(), v["wire"].as_str()), (Some(7), Some(wire.as_str())));
    // A manifest that does not verify under the pinned key refuses to start the node.
    let other =
        hex::encode(ed25519_dalek::SigningKey::from_bytes(&[9; 32]).verifying_key().to_bytes());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dnsmesh-node"))
        .args([
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/dnsmesh.toml"),
            "--dns-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("d2"))
        .env("DNSMESH_CLUSTER__MANIFEST_FILE", file.to_str().unwrap())
        .env("DNSMESH_CLUSTER__OPERATOR_SPK", &other)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not verify"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
