//! Three of our nodes on 127.0.0.11-13 syncing by anti-entropy: a write to one is
//! answered over DNS by all three within about a second (notify + pull); a node killed
//! with -9 catches up to an identical record set after restart; deletes propagate.
#![cfg(feature = "net")]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::rr::{RData, RecordType};

const OP: &str = "op";
const SYNC: &str = "sync-secret";

fn txts(n: &Node, name: &str) -> Vec<String> {
    let r =
        parse(&udp_exchange(n.dns[0], &query(&format!("{name}."), RecordType::TXT, Some(4096))));
    r.answers
        .iter()
        .filter_map(|a| match &a.data {
            RData::TXT(t) => Some(
                String::from_utf8(t.txt_data.iter().flat_map(|s| s.iter().copied()).collect())
                    .unwrap(),
            ),
            _ => None,
        })
        .collect()
}

/// The node's full digest as a set of (name, hash).
fn digest_set(n: &Node) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let mut cursor = "0::".to_string();
    loop {
        let (s, body) = http(
            &n.url(),
            "GET",
            &format!("/v1/sync/digest?cursor={cursor}&limit=500"),
            Some(SYNC),
            "",
        )
        .unwrap();
        assert_eq!(s, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        for r in v["records"].as_array().unwrap() {
            out.insert((
                r["name"].as_str().unwrap().to_string(),
                r["hash"].as_str().unwrap().to_string(),
            ));
        }
        if !v["has_more"].as_bool().unwrap() {
            return out;
        }
        cursor = v["next_cursor"].as_str().unwrap().to_string();
    }
}

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
            eventually(200, Duration::from_millis(25), || txts(n, "hello.mesh.test")
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
    let want = digest_set(&nodes[0]);
    assert!(want.len() >= 31);
    assert!(
        eventually(200, Duration::from_millis(50), || digest_set(&nodes[1]) == want
            && digest_set(&nodes[2]) == want),
        "digests differ: a={} b={} c={}",
        want.len(),
        digest_set(&nodes[1]).len(),
        digest_set(&nodes[2]).len()
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
            eventually(200, Duration::from_millis(25), || txts(n, "hello.mesh.test").is_empty()),
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
