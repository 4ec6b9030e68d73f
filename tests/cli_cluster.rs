//! CLI cluster mode end to end: three of our nodes (127.0.0.11-13, peered by
//! anti-entropy) serve `mesh.test` and publish a manifest signed by a test operator key
//! that lists all three (HTTP + DNS endpoints). Two CLI users pin the cluster, enable
//! cluster mode and register a bearer token on every node (registration is per node).
//! alice's writes fan out to all nodes; one node is killed with -9 and alice keeps
//! sending (2 of 3 acknowledge, the dead node is reported); bob, whose only resolver is
//! the dead node, still receives everything through union reads of the live nodes; the
//! killed node catches up to an identical record set. With two nodes down the quorum is
//! lost: the message waits in the outbox and goes out once the nodes are back.
#![cfg(feature = "net")]

mod cli_common;
mod common;

use std::time::Duration;

use cli_common::User;
use common::{digest_set, eventually, free_tcp_port, Node};
use dnsmesh::proto::records::cluster::{ClusterManifest, ClusterNode};

const OP: &str = "op-token";
const SYNC: &str = "sync-secret";
const ZONE: &str = "mesh.test";

/// All three nodes hold the same record set (checked until they converge).
fn assert_converged(nodes: &[Node], what: &str) -> usize {
    let mut sizes = vec![];
    let ok = eventually(150, Duration::from_millis(100), || {
        let sets: Vec<_> = nodes.iter().map(|n| digest_set(n, SYNC)).collect();
        sizes = sets.iter().map(|s| s.len()).collect();
        sets.windows(2).all(|w| w[0] == w[1])
    });
    assert!(ok, "{what}: record sets differ (sizes {sizes:?})");
    sizes[0]
}

/// A port free for both UDP and TCP on `ip` right now.
fn free_dns_port(ip: &str) -> u16 {
    loop {
        let p = free_tcp_port(ip);
        if std::net::UdpSocket::bind((ip, p)).is_ok() {
            return p;
        }
    }
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// Three peered nodes publishing a manifest (signed by `op`) that lists them all.
fn cluster(op: &ed25519_dalek::SigningKey, dir: &std::path::Path) -> Vec<Node> {
    let ips = ["127.0.0.11", "127.0.0.12", "127.0.0.13"];
    let http_ports: Vec<u16> = ips.iter().map(|ip| free_tcp_port(ip)).collect();
    let dns_ports: Vec<u16> = ips.iter().map(|ip| free_dns_port(ip)).collect();
    let urls: Vec<String> =
        ips.iter().zip(&http_ports).map(|(ip, p)| format!("http://{ip}:{p}")).collect();
    let manifest = ClusterManifest {
        cluster_name: ZONE.into(),
        operator_spk: op.verifying_key().to_bytes(),
        nodes: (0..3)
            .map(|i| ClusterNode {
                node_id: format!("n{}", i + 1),
                http_endpoint: urls[i].clone(),
                dns_endpoint: Some(format!("{}:{}", ips[i], dns_ports[i])),
            })
            .collect(),
        seq: 1,
        exp: now() + 86_400,
    };
    let file = dir.join("cluster.json");
    std::fs::write(&file, serde_json::json!({ "wire": manifest.sign(op).unwrap() }).to_string())
        .unwrap();
    let spk = hex::encode(op.verifying_key().to_bytes());
    (0..3)
        .map(|i| {
            let peers: Vec<&str> =
                urls.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, u)| u.as_str()).collect();
            Node::start_with(
                ZONE,
                &[&format!("{}:{}", ips[i], dns_ports[i])],
                &format!("{}:{}", ips[i], http_ports[i]),
                &[
                    ("DNSMESH_AUTH__OPERATOR_TOKEN", OP),
                    ("DNSMESH_CLUSTER__PEERS", &peers.join(",")),
                    ("DNSMESH_CLUSTER__SYNC_TOKEN", SYNC),
                    ("DNSMESH_CLUSTER__SYNC_INTERVAL_SECS", "2"),
                    ("DNSMESH_CLUSTER__NODE_ID", &format!("n{}", i + 1)),
                    ("DNSMESH_CLUSTER__MANIFEST_FILE", file.to_str().unwrap()),
                    ("DNSMESH_CLUSTER__OPERATOR_SPK", &spk),
                    ("DNSMESH_CLUSTER__BASE_DOMAIN", ZONE),
                ],
            )
        })
        .collect()
}

/// init, pin + enable cluster mode, credentials (a bearer token from every node, or a
/// TSIG key from the home node n1), identity + prekeys.
fn setup(u: &User, nodes: &[Node], resolvers: &[&Node], spk: &str, tsig: bool) {
    let r: Vec<String> = resolvers.iter().map(|n| n.dns[0].to_string()).collect();
    u.init(ZONE, &nodes[0].url(), &r);
    let out = u.ok(&["cluster", "pin", spk, ZONE]);
    assert!(out.contains("pinned cluster mesh.test"), "{out}");
    let out = u.ok(&["cluster", "enable"]);
    assert!(out.contains("seq 1") && out.contains("3 node(s)"), "{out}");
    assert!(out.contains("cluster mode on"), "{out}");
    let hostport = |n: &Node| n.url().trim_start_matches("http://").to_string();
    if tsig {
        let (ip, port) = (nodes[0].dns[0].ip().to_string(), nodes[0].dns[0].port().to_string());
        let hp = hostport(&nodes[0]);
        let args = ["--node", &hp, "--scheme", "http", "--dns-server", &ip, "--dns-port", &port];
        u.ok(&[&["tsig", "register"][..], &args].concat());
    } else {
        for n in nodes {
            u.ok(&["register", "--node", &hostport(n), "--scheme", "http"]);
        }
    }
    let out = u.ok(&["identity", "publish", "--advertise-v2"]);
    assert!(out.starts_with("published identity to "), "{out}");
    let out = u.ok(&["identity", "refresh-prekeys"]);
    assert!(out.contains("published 25/25 prekeys"), "{out}");
}

/// `send`, which must succeed; returns (stdout, stderr).
fn send(u: &User, to: &str, text: &str) -> (String, String) {
    let out = u.run(&["send", to, text]);
    let (so, se) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "send {text:?}: {so}\n{se}");
    (so, se)
}

#[test]
fn cluster_mode_fanout_quorum_union_reads_and_kill_9() {
    let op = ed25519_dalek::SigningKey::from_bytes(&[0x42; 32]);
    let spk = hex::encode(op.verifying_key().to_bytes());
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = cluster(&op, dir.path());

    let (alice, bob) = (User::new("alice"), User::new("bob"));
    // alice resolves through all three nodes; bob only through n3, which is killed
    // below: from then on only union reads of the manifest's nodes can reach anything.
    setup(&alice, &nodes, &[&nodes[0], &nodes[1], &nodes[2]], &spk, false);
    setup(&bob, &nodes, &[&nodes[2]], &spk, false);
    // A manifest that does not verify under the pinned key never turns cluster mode on.
    let wrong =
        hex::encode(ed25519_dalek::SigningKey::from_bytes(&[0x43; 32]).verifying_key().to_bytes());
    alice.ok(&["cluster", "pin", &wrong, ZONE]);
    let out = alice.run(&["cluster", "enable"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("verifies under the pinned operator key"),
        "{err}"
    );
    let cfg = std::fs::read_to_string(alice.home.join("config.yaml")).unwrap();
    assert!(cfg.contains("cluster_enabled: false"), "{cfg}");
    alice.ok(&["cluster", "pin", &spk, ZONE]);
    alice.ok(&["cluster", "enable"]);
    let doctor = alice.ok(&["doctor"]);
    assert!(doctor.contains("ok    cluster: mesh.test (manifest seq 1, 3 nodes)"), "{doctor}");
    assert!(doctor.contains("HTTP fan-out to 3 cluster nodes (quorum 2, bearer tokens for 3)"));
    let status = alice.ok(&["cluster", "status"]);
    assert_eq!(status.matches("http ok; dns ok (serves manifest seq 1)").count(), 3, "{status}");

    alice.ok(&["identity", "fetch", &bob.name, "--add"]);
    bob.ok(&["identity", "fetch", &alice.name, "--add"]);

    // Fan-out: every node acknowledged alice's identity directly (and sync agrees).
    let id_name = dnsmesh::proto::names::identity(&alice.name, ZONE);
    for n in &nodes {
        assert_eq!(common::txt_at(n.dns[0], &id_name).len(), 1, "identity on {}", n.url());
    }

    let m0 = format!("hello {} from the cluster", bob.name);
    let (so, se) = send(&alice, &bob.name, &m0);
    assert!(so.contains("sent to") && so.contains("claim in mesh.test"), "{so}");
    assert!(!se.contains("warning: cluster write"), "all nodes up, no failure expected: {se}");
    bob.recv_until(&m0, 5);

    // A TSIG user writes to the home node only (anti-entropy spreads it); reads are
    // union reads all the same.
    let carol = User::new("carol");
    setup(&carol, &nodes, &[&nodes[0], &nodes[1], &nodes[2]], &spk, true);
    let doctor = carol.ok(&["doctor"]);
    assert!(doctor.contains(&format!("DNS UPDATE to {} (TSIG key", nodes[0].dns[0])), "{doctor}");
    alice.ok(&["identity", "fetch", &carol.name, "--add"]);
    carol.ok(&["identity", "fetch", &alice.name, "--add"]);
    let mc = format!("hello {}", carol.name);
    send(&alice, &carol.name, &mc);
    carol.recv_until(&mc, 5);
    let mc2 = format!("hello back from {}", carol.name);
    send(&carol, &alice.name, &mc2);
    alice.recv_until(&mc2, 5);

    // kill -9 n3; alice keeps sending: 2 of 3 acknowledge and n3 is named as failed.
    nodes[2].kill9();
    let mut texts = vec![];
    for i in 1..=3 {
        let m = format!("message {i} to {} with n3 down", bob.name);
        let (so, se) = send(&alice, &bob.name, &m);
        assert!(so.contains("sent to"), "{so}");
        assert!(!so.contains("queued"), "quorum of 2 must hold: {so}");
        assert!(
            se.contains(
                "warning: cluster write acknowledged by 2/3 nodes (quorum 2); failed: n3 ("
            ),
            "n3 must be reported: {se}"
        );
        texts.push(m);
    }
    // bob's only resolver is dead, yet the union of n1 and n2 delivers everything, once.
    let mut got: Vec<serde_json::Value> = vec![];
    for _ in 0..5 {
        let out = bob.ok(&["recv", "--json"]);
        got.extend(out.lines().filter(|l| !l.is_empty()).map(|l| serde_json::from_str(l).unwrap()));
        if texts.iter().all(|t| got.iter().any(|m| m["text"] == t.as_str())) {
            break;
        }
    }
    for t in &texts {
        let n = got.iter().filter(|m| m["kind"] == "message" && m["text"] == t.as_str()).count();
        assert_eq!(n, 1, "{t:?} delivered {n} times; got {got:?}");
    }
    // bob can answer too (his writes fan out, his reads of alice's keys are union reads).
    let reply = format!("reply from {}", bob.name);
    let (_, se) = send(&bob, &alice.name, &reply);
    assert!(se.contains("failed: n3 ("), "{se}");
    alice.recv_until(&reply, 5);

    // n3 comes back and catches up: all three hold an identical record set.
    nodes[2].restart();
    let size = assert_converged(&nodes, "after restarting n3");
    assert!(size > 50, "identities, prekeys, chunks, manifests, claims: {size} records");

    // Two nodes down: no quorum, the message waits in the outbox (not lost, not "sent").
    nodes[1].kill9();
    nodes[2].kill9();
    let late = format!("late message to {}", bob.name);
    let (so, _) = send(&alice, &bob.name, &late);
    assert!(
        so.contains("queued") && so.contains("acknowledged by only 1/3 nodes (quorum 2)"),
        "{so}"
    );
    assert!(so.contains("n2 (") && so.contains("n3 ("), "{so}");
    nodes[1].restart();
    nodes[2].restart();
    let out = alice.ok(&["outbox", "--retry"]);
    assert!(out.contains("outbox: sent to") && out.contains("outbox empty"), "{out}");
    bob.recv_until(&late, 5);
    assert_converged(&nodes, "after the outbox retry");
}
