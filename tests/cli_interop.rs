//! Our CLI and the reference CLI (PyPI dnsmesh 0.7.5, black box) exchange messages in both
//! directions, through our node and through a reference node.
#![cfg(feature = "net")]

mod cli_common;
mod common;

use std::net::SocketAddr;

use cli_common::*;

/// Reference user `r` and our user `o` on one node (`http`, `dns`, `zone`): pin each other,
/// then a message each way, each checked by the receiver's own `recv`.
fn exchange(http: &str, dns: SocketAddr, zone: &str, ref_mode: &str, our_mode: &str, our_v2: bool) {
    exchange_with(http, dns, zone, ref_mode, our_mode, our_v2, false)
}

/// As [`exchange`]; `ref_by_address` makes the reference pin ours as `user@zone` (its
/// M10 path: a claim UPDATE to the zone's node).
fn exchange_with(
    http: &str,
    dns: SocketAddr,
    zone: &str,
    ref_mode: &str,
    our_mode: &str,
    our_v2: bool,
    ref_by_address: bool,
) {
    let r = RefUser::new("refal", dns.port());
    let o = User::new("ourbob");
    r.setup(zone, http, dns, ref_mode);
    o.setup(zone, http, dns, &[dns.to_string()], our_mode, our_v2);

    // The reference pins ours by bare name (so it finds our prekeys); ours pins by address.
    let mut pinned = false;
    for _ in 0..5 {
        if r.run(&["identity", "fetch", &o.name, "--add"]).status.success() {
            pinned = true;
            break;
        }
    }
    assert!(pinned, "reference could not fetch our identity");
    o.ok(&["identity", "fetch", &format!("{}@{zone}", r.name), "--add"]);

    // Reference → ours.
    let m1 = format!("from the reference {} to {}: héllo, 1+1=2; \"quoted\"", r.name, o.name);
    let target = if ref_by_address { format!("{}@{zone}", o.name) } else { o.name.clone() };
    r.ok(&["send", &target, &m1]);
    let got = o.recv_until(&m1, 5);
    let m = got.iter().find(|m| m["text"] == m1.as_str()).unwrap();
    assert_eq!(m["from"], format!("{}@{zone}", r.name));
    // Observed: for a same-zone `user@zone` contact 0.7.5 also uses a prekey (unlike the
    // spec's trap T22 predicts), so only the bare form's prekey use is asserted.
    if !ref_by_address {
        assert_ne!(m["prekey_id"], 0, "the reference used one of our prekeys");
    }

    // Ours → reference (our sender uses the reference's prekeys).
    let m2 = format!("from our {} to the reference {}", o.name, r.name);
    let out = o.ok(&["send", &r.name, &m2]);
    assert!(out.contains("sent to") && out.contains("prekey"), "{out}");
    r.recv_until(&m2, 5);
}

#[test]
fn cli_interop_reference_cli_via_our_node_http() {
    let node = common::Node::start("mesh.test", &[]);
    exchange(&node.url(), node.dns[0], "mesh.test", "http", "http", true);
}

#[test]
fn cli_interop_reference_cli_via_our_node_tsig() {
    let node = common::Node::start("mesh.test", &[]);
    exchange(&node.url(), node.dns[0], "mesh.test", "http", "tsig", false);
}

#[test]
fn cli_interop_reference_cli_via_reference_node_http() {
    let node = RefNode::start("ref.test");
    exchange(&node.http, node.dns, &node.zone, "http", "http", true);
}

#[test]
fn cli_interop_reference_cli_via_reference_node_tsig() {
    let node = RefNode::start("ref.test");
    exchange(&node.http, node.dns, &node.zone, "http", "tsig", false);
}

#[test]
fn cli_interop_reference_tsig_cli_via_our_node() {
    let node = common::Node::start("mesh.test", &[]);
    exchange(&node.url(), node.dns[0], "mesh.test", "tsig", "http", false);
}

#[test]
fn cli_interop_reference_pins_by_address_via_our_node() {
    let node = common::Node::start("mesh.test", &[]);
    exchange_with(&node.url(), node.dns[0], "mesh.test", "http", "tsig", true, true);
}
