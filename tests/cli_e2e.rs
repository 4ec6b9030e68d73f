//! Our CLI against our node, real processes on loopback: both write modes, cross-zone,
//! the largest message the node's value cap allows, the outbox across a node outage.
#![cfg(feature = "net")]

mod cli_common;
mod common;

use cli_common::*;
use common::Node;

fn resolvers(nodes: &[&Node]) -> Vec<String> {
    nodes.iter().map(|n| n.dns[0].to_string()).collect()
}

/// Two users on one node exchange messages both ways; prekeys are consumed and withdrawn.
fn same_zone(mode: &str) {
    let node = Node::start("mesh.test", &[]);
    let r = resolvers(&[&node]);
    let (alice, bob) = (User::new("alice"), User::new("bob"));
    alice.setup("mesh.test", &node.url(), node.dns[0], &r, mode, false);
    bob.setup("mesh.test", &node.url(), node.dns[0], &r, mode, true);
    alice.ok(&["identity", "fetch", &bob.name, "--add"]);
    bob.ok(&["identity", "fetch", &format!("{}@mesh.test", alice.name), "--add"]);
    let show = alice.ok(&["contacts", "list"]);
    assert!(show.contains(&format!("{}@mesh.test", bob.name)), "{show}");

    let msg = format!("hello {} via {mode}, 1+1=2; \"quoted\" héllo", bob.name);
    let out = alice.ok(&["send", &bob.name, &msg]);
    assert!(out.contains("prekey") && out.contains("DMPv2"), "FS + v2 expected: {out}");
    let got = bob.recv_until(&msg, 5);
    let m = got.iter().find(|m| m["text"] == msg.as_str()).unwrap();
    assert_eq!(m["from"], format!("{}@mesh.test", alice.name));
    assert_ne!(m["prekey_id"], 0);
    assert_eq!(m["claimed_from"], format!("{}@mesh.test", alice.name));
    // Delivered once: a second poll is empty (replay cache persisted).
    assert_eq!(bob.ok(&["recv"]).trim(), "no new messages");
    // The consumed prekey was withdrawn from the node: 24 left.
    let pk = dnsmesh::proto::names::prekeys(&bob.name, "mesh.test");
    let vals = txt(&node, &pk);
    assert_eq!(vals.len(), 24, "prekeys left at {pk}");

    // Reply from stdin; plain recv prints the body indented two spaces.
    let reply = format!("reply from {}", bob.name);
    let out = bob.run_stdin(&["send", &alice.name, "-"], Some(&reply));
    assert!(out.status.success(), "{out:?}");
    let mut seen = String::new();
    for _ in 0..5 {
        seen.push_str(&alice.ok(&["recv"]));
        if seen.lines().any(|l| l == format!("  {reply}")) {
            break;
        }
    }
    assert!(seen.lines().any(|l| l == format!("  {reply}")), "{seen}");
    // --watch polls with a live status line on stderr and prints each message once.
    let m3 = format!("watched message for {}", bob.name);
    alice.ok(&["send", &bob.name, &m3]);
    let out = bob.run(&["recv", "--watch", "--json", "--interval", "1", "--max-polls", "3"]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.matches(m3.as_str()).count(), 1, "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("watching"));
    alice.ok(&["doctor"]);
    bob.ok(&["doctor"]);
}

/// TXT values at `name` on the node, through our resolver module's wire format.
fn txt(node: &Node, name: &str) -> Vec<String> {
    use hickory_proto::rr::RecordType;
    let q = common::query(name, RecordType::TXT, Some(4096));
    let r = common::udp_exchange(node.dns[0], &q);
    let mut m = common::parse(&r);
    if m.metadata.truncation {
        m = common::parse(&common::tcp_exchange(node.dns[0], &[q])[0]);
    }
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            hickory_proto::rr::RData::TXT(t) => {
                Some(String::from_utf8(dnsmesh::proto::txt::join(&t.txt_data)).unwrap())
            }
            _ => None,
        })
        .collect()
}

#[test]
fn cli_http_mode_both_directions() {
    same_zone("http");
}

#[test]
fn cli_tsig_mode_both_directions() {
    same_zone("tsig");
}

/// alice on node A (a.test), bob on node B (b.test): manifests in the sender's zone,
/// claims by unsigned UPDATE to the recipient's node, both directions.
#[test]
fn cli_cross_zone_both_directions() {
    let a = Node::start("a.test", &[]);
    let b = Node::start("b.test", &[]);
    let (alice, bob) = (User::new("alice"), User::new("bob"));
    alice.setup("a.test", &a.url(), a.dns[0], &resolvers(&[&a, &b]), "http", false);
    bob.setup("b.test", &b.url(), b.dns[0], &resolvers(&[&b, &a]), "tsig", true);
    alice.ok(&["identity", "fetch", &format!("{}@b.test", bob.name), "--add"]);
    bob.ok(&["identity", "fetch", &format!("{}@a.test", alice.name), "--add"]);

    let m1 = format!("cross-zone hello to {}", bob.name);
    let out = alice.ok(&["send", &format!("{}@b.test", bob.name), &m1]);
    assert!(out.contains("claim in b.test"), "claim to bob's node expected: {out}");
    let got = bob.recv_until(&m1, 5);
    assert!(got.iter().any(|m| m["text"] == m1.as_str() && m["zone"] == "a.test"), "{got:?}");

    let m2 = format!("cross-zone reply to {}", alice.name);
    let out = bob.ok(&["send", &alice.name, &m2]);
    assert!(out.contains("claim in a.test"), "{out}");
    alice.recv_until(&m2, 5);
}

/// A first-contact message from an unpinned sender lands in the intro queue (listed,
/// not delivered); pinning the sender delivers it.
#[test]
fn cli_intro_queue_for_unknown_sender() {
    let a = Node::start("a.test", &[]);
    let b = Node::start("b.test", &[]);
    let (alice, bob) = (User::new("alice"), User::new("bob"));
    alice.setup("a.test", &a.url(), a.dns[0], &resolvers(&[&a, &b]), "http", false);
    bob.setup("b.test", &b.url(), b.dns[0], &resolvers(&[&b, &a]), "http", false);
    alice.ok(&["identity", "fetch", &format!("{}@b.test", bob.name), "--add"]);
    let m = format!("first contact for {}", bob.name);
    assert!(alice.ok(&["send", &format!("{}@b.test", bob.name), &m]).contains("sent to"));
    let out = bob.ok(&["recv", "--json"]);
    let v: serde_json::Value =
        serde_json::from_str(out.lines().next().expect("an intro line")).unwrap();
    assert_eq!(v["kind"], "intro", "{out}");
    assert_eq!(v["text"], m.as_str());
    assert_eq!(v["zone"], "a.test");
    bob.ok(&["identity", "fetch", &format!("{}@a.test", alice.name), "--add"]);
    let got = bob.recv_until(&m, 2);
    assert!(got
        .iter()
        .any(|x| x["kind"] == "message" && x["from"] == format!("{}@a.test", alice.name)));
}

/// The largest message the default 2048-byte value cap allows arrives intact; one byte
/// more is refused before anything is written. With the cap raised to 4096 a 4 KiB
/// message arrives intact.
#[test]
fn cli_large_messages() {
    let node = Node::start("mesh.test", &[]);
    let r = resolvers(&[&node]);
    let (alice, bob) = (User::new("alice"), User::new("bob"));
    alice.setup("mesh.test", &node.url(), node.dns[0], &r, "http", false);
    bob.setup("mesh.test", &node.url(), node.dns[0], &r, "http", false);
    alice.ok(&["identity", "fetch", &bob.name, "--add"]);
    bob.ok(&["identity", "fetch", &alice.name, "--add"]);

    let too_big: String = "x".repeat(4096);
    let out = alice.run(&["send", &bob.name, &too_big]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("message too large"), "{err}");
    let limit: usize = err
        .split("allows at most ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no limit in {err}"));
    assert!((3700..4096).contains(&limit), "limit {limit}");
    let biggest: String = (0..limit).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    assert!(alice.ok(&["send", &bob.name, &biggest]).contains("sent to"));
    bob.recv_until(&biggest, 5);
    let over = format!("{biggest}!");
    assert_eq!(alice.run(&["send", &bob.name, &over]).status.code(), Some(1));
    assert_eq!(
        bob.ok(&["recv"]).trim(),
        "no new messages",
        "nothing was written for the refused message"
    );
    eprintln!("largest message under the default 2048-byte cap: {limit} bytes");

    // A node with a 4096-byte cap carries 4 KiB messages (UTF-8, multi-line).
    let big = Node::start("big.test", &[("DNSMESH_LIMITS__MAX_VALUE_BYTES", "4096")]);
    let r = resolvers(&[&big]);
    let (carol, dave) = (User::new("carol"), User::new("dave"));
    carol.setup("big.test", &big.url(), big.dns[0], &r, "tsig", false);
    dave.setup("big.test", &big.url(), big.dns[0], &r, "tsig", false);
    for u in [&carol, &dave] {
        let cfg = u.home.join("config.yaml");
        let text = std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("max_value_bytes: 2048", "max_value_bytes: 4096");
        std::fs::write(&cfg, text).unwrap();
    }
    carol.ok(&["identity", "fetch", &dave.name, "--add"]);
    let four_k: String = (0..4096)
        .map(|i| if i % 64 == 63 { '\n' } else { (b'A' + (i % 26) as u8) as char })
        .collect();
    assert!(carol.ok(&["send", &dave.name, &four_k]).contains("sent to"));
    dave.ok(&["identity", "fetch", &carol.name, "--add"]);
    dave.recv_until(&four_k, 5);
}

/// A send while the home node is down goes to the outbox; after the node is back,
/// `outbox --retry` publishes it and the recipient gets it.
#[test]
fn cli_outbox_survives_node_outage() {
    let mut node = Node::start("mesh.test", &[]);
    let r = resolvers(&[&node]);
    let (alice, bob) = (User::new("alice"), User::new("bob"));
    alice.setup("mesh.test", &node.url(), node.dns[0], &r, "http", false);
    bob.setup("mesh.test", &node.url(), node.dns[0], &r, "tsig", false);
    alice.ok(&["identity", "fetch", &bob.name, "--add"]);
    bob.ok(&["identity", "fetch", &alice.name, "--add"]);

    node.kill9();
    let msg = format!("written while the node was down, for {}", bob.name);
    let out = alice.ok(&["send", &bob.name, &msg]);
    assert!(out.contains("queued"), "{out}");
    let listing = alice.ok(&["outbox"]);
    assert!(listing.contains(&bob.name) && listing.contains("last error"), "{listing}");
    // Still down: a retry keeps it and says so.
    assert_eq!(alice.run(&["outbox", "--retry"]).status.code(), Some(1));

    node.restart();
    let out = alice.ok(&["outbox", "--retry"]);
    assert!(out.contains("outbox: sent to") && out.contains("outbox empty"), "{out}");
    bob.recv_until(&msg, 5);
    assert!(alice.ok(&["outbox"]).contains("outbox empty"));

    // The same through a TSIG writer, flushed by the next `recv`.
    node.kill9();
    let msg2 = format!("tsig outbox for {}", alice.name);
    assert!(bob.ok(&["send", &alice.name, &msg2]).contains("queued"));
    node.restart();
    // The backoff after the first failure is 5 s; `outbox --retry` ignores it.
    bob.ok(&["outbox", "--retry"]);
    alice.recv_until(&msg2, 5);
}

/// Usage errors exit 2, failures exit 1 with a hint, and state is sealed at rest.
#[test]
fn cli_exit_codes_and_sealed_state() {
    let u = User::new("erin");
    assert_eq!(u.run(&["send"]).status.code(), Some(2));
    assert_eq!(u.run(&["no-such-command"]).status.code(), Some(2));
    let out = u.run(&["recv"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("dnsmesh init"), "{out:?}");
    u.init("mesh.test", "http://127.0.0.1:9", &["127.0.0.1:9".into()]);
    let cfg = std::fs::read_to_string(u.home.join("config.yaml")).unwrap();
    for k in ["username:", "domain:", "endpoint:", "dns_resolvers:", "kdf_salt:", "verify_pubkey:"]
    {
        assert!(cfg.contains(k), "{k} missing in {cfg}");
    }
    // Wrong passphrase is caught by the verify_pubkey tripwire.
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_dnsmesh"));
    let out = cmd
        .arg("--config-home")
        .arg(&u.home)
        .args(["identity", "show"])
        .env("DMP_PASSPHRASE", "not the passphrase")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong passphrase"));
    // Unknown contact: exit 1 with the fix.
    let out = u.run(&["send", "nobody", "hi"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("identity fetch nobody --add"));
    // Doctor fails (no node there) and prints fixes.
    let out = u.run(&["doctor"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("fix:"));
    // Sealed files hold no plaintext.
    let u2 = User::new("frank");
    let node = Node::start("mesh.test", &[]);
    u2.setup("mesh.test", &node.url(), node.dns[0], &resolvers(&[&node]), "tsig", false);
    for e in std::fs::read_dir(u2.home.join("state")).unwrap() {
        let bytes = std::fs::read(e.unwrap().path()).unwrap();
        let s = String::from_utf8_lossy(&bytes);
        assert!(!s.contains("v=dmp1") && !s.contains("secret") && !s.contains(&u2.name));
    }
}

/// A minimal RFC 8484 DNS-over-HTTP front for a node (POST application/dns-message),
/// serving `n` requests on a loopback port, forwarding each over UDP/TCP to `dns`.
fn doh_front(dns: std::net::SocketAddr) -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/dns-query", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut q = vec![0u8; len];
            if r.read_exact(&mut q).is_err() {
                continue;
            }
            let mut a = common::udp_exchange(dns, &q);
            if common::parse(&a).metadata.truncation {
                a = common::tcp_exchange(dns, &[q])[0].clone();
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/dns-message\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                a.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&a);
        }
    });
    url
}

/// Reads through a DNS-over-HTTP(S) resolver entry work end to end.
#[test]
fn cli_doh_resolver() {
    let node = Node::start("mesh.test", &[]);
    let doh = doh_front(node.dns[0]);
    let (alice, bob) = (User::new("alice"), User::new("bob"));
    alice.setup("mesh.test", &node.url(), node.dns[0], &[doh], "http", false);
    bob.setup("mesh.test", &node.url(), node.dns[0], &resolvers(&[&node]), "http", false);
    alice.ok(&["identity", "fetch", &bob.name, "--add"]);
    bob.ok(&["identity", "fetch", &alice.name, "--add"]);
    let m = format!("to {} who reads over DoH", alice.name);
    assert!(bob.ok(&["send", &alice.name, &m]).contains("prekey"));
    alice.recv_until(&m, 5);
    let m2 = format!("to {} from a DoH reader", bob.name);
    assert!(alice.ok(&["send", &bob.name, &m2]).contains("prekey"), "prekeys read over DoH");
    bob.recv_until(&m2, 5);
}

/// Messages sent back to back never share a one-time prekey (a second message on a
/// consumed prekey would be undecryptable): all arrive, each on its own prekey.
#[test]
fn cli_back_to_back_sends_use_distinct_prekeys() {
    let node = Node::start("mesh.test", &[]);
    let r = resolvers(&[&node]);
    let (alice, bob) = (User::new("alice"), User::new("bob"));
    alice.setup("mesh.test", &node.url(), node.dns[0], &r, "http", false);
    bob.setup("mesh.test", &node.url(), node.dns[0], &r, "http", false);
    alice.ok(&["identity", "fetch", &bob.name, "--add"]);
    bob.ok(&["identity", "fetch", &format!("{}@mesh.test", alice.name), "--add"]);
    let texts: Vec<String> = (0..6).map(|i| format!("burst {i} to {}", bob.name)).collect();
    for t in &texts {
        alice.ok(&["send", &bob.name, t]);
    }
    let got = bob.recv_until(&texts[5], 5);
    let mut ids = Vec::new();
    for t in &texts {
        let m = got
            .iter()
            .find(|m| m["text"] == t.as_str())
            .unwrap_or_else(|| panic!("{t:?} not delivered: {got:?}"));
        ids.push(m["prekey_id"].as_u64().unwrap());
    }
    let mut uniq = ids.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), ids.len(), "prekeys reused: {ids:?}");
    assert!(!ids.contains(&0), "forward secrecy for every message: {ids:?}");
}
