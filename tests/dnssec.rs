//! DNSSEC end to end: a real node with `[dnssec] enabled = true`, validated by unbound
//! (our DS as its trust anchor) and by BIND's `delv`: positive, NXDOMAIN (compact
//! denial), NODATA and empty non-terminal answers, after new writes, after a restart
//! (same keys), across ZSK rolls; DO=0 answers byte-identical to an unsigned node's.

#![cfg(feature = "net")]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::dnssec::rdata::DNSSECRData;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

const OP: &str = "operator-token-dnssec";
const ZONE: &str = "mesh.test";

fn signed_env(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut env = vec![("DNSMESH_AUTH__OPERATOR_TOKEN", OP), ("DNSMESH_DNSSEC__ENABLED", "true")];
    env.extend_from_slice(extra);
    env
}

/// `dnsmesh-node admin ds` for a node's data dir (offline).
fn admin_ds(data_dir: &Path) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dnsmesh-node"))
        .arg("--config")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/dnsmesh.toml"))
        .args(["--zone", ZONE, "--data-dir"])
        .arg(data_dir)
        .args(["admin", "ds"])
        .output()
        .unwrap();
    assert!(out.status.success(), "admin ds: {}", String::from_utf8_lossy(&out.stderr));
    let s = String::from_utf8(out.stdout).unwrap();
    assert!(s.starts_with("mesh.test. IN DS "), "{s}");
    s.trim().to_string()
}

/// A delv trust-anchor file for a DS line `zone. IN DS tag alg dt HEX`.
fn delv_anchor(dir: &Path, ds: &str) -> std::path::PathBuf {
    let f: Vec<&str> = ds.split_whitespace().collect();
    let text = format!(
        "trust-anchors {{\n  {} static-ds {} {} {} \"{}\";\n}};\n",
        f[0], f[3], f[4], f[5], f[6]
    );
    let p = dir.join("anchor.conf");
    std::fs::write(&p, text).unwrap();
    p
}

/// delv's verdict line for NAME TYPE (`; fully validated`, `; negative response, fully
/// validated`, or whatever it says instead), with its whole output for messages.
fn delv(server: SocketAddr, anchor: &Path, name: &str, rtype: &str) -> (bool, String) {
    let out = std::process::Command::new("delv")
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string(), "-a"])
        .arg(anchor)
        .args([&format!("+root={ZONE}"), name, rtype])
        .output()
        .expect("delv (Debian bind9-dnsutils)");
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let ok = text.lines().any(|l| {
        l.trim() == "; fully validated" || l.trim() == "; negative response, fully validated"
    });
    (ok, text)
}

fn assert_delv(server: SocketAddr, anchor: &Path, name: &str, rtype: &str, want: &str) {
    let (ok, text) = delv(server, anchor, name, rtype);
    assert!(ok && text.contains(want), "delv {name} {rtype}: want {want:?}\n{text}");
}

/// Ask a resolver with RD and DO; returns the reply.
fn resolve(addr: SocketAddr, name: &str, rtype: RecordType) -> hickory_proto::op::Message {
    let mut q = query(name, rtype, Some(1232));
    q[2] |= 0x01;
    let n = q.len();
    q[n - 4] |= 0x80; // DO
    let r = parse(&udp_exchange(addr, &q));
    if r.metadata.truncation {
        return parse(&tcp_exchange(addr, &[q])[0]);
    }
    r
}

fn assert_secure(
    ub: SocketAddr,
    name: &str,
    rtype: RecordType,
    want_answer: bool,
) -> hickory_proto::op::Message {
    let r = resolve(ub, name, rtype);
    assert!(r.metadata.authentic_data, "AD not set for {name} {rtype}: {r:?}");
    assert!(
        matches!(r.metadata.response_code, ResponseCode::NoError | ResponseCode::NXDomain),
        "{r:?}"
    );
    assert_eq!(!r.answers.is_empty(), want_answer, "{name} {rtype}: {r:?}");
    r
}

/// Key tags of the RRSIGs covering `rtype` in a DO=1 answer straight from the node.
fn sig_tags(node: SocketAddr, name: &str, rtype: RecordType) -> Vec<u16> {
    let mut q = query(name, rtype, Some(1232));
    let n = q.len();
    q[n - 4] |= 0x80;
    let r = parse(&tcp_exchange(node, &[q])[0]);
    r.answers
        .iter()
        .filter_map(|a| match &a.data {
            RData::DNSSEC(DNSSECRData::RRSIG(s)) if s.input().type_covered == rtype => {
                Some(s.input().key_tag)
            }
            _ => None,
        })
        .collect()
}

/// Key tags of the published ZSKs (flags 256).
fn zsk_tags(node: SocketAddr) -> Vec<u16> {
    let mut q = query("mesh.test.", RecordType::DNSKEY, Some(1232));
    let n = q.len();
    q[n - 4] |= 0x80;
    let r = parse(&tcp_exchange(node, &[q])[0]);
    let mut tags: Vec<u16> = r
        .answers
        .iter()
        .filter_map(|a| match &a.data {
            RData::DNSSEC(DNSSECRData::DNSKEY(k)) if !k.secure_entry_point() => {
                k.calculate_key_tag().ok()
            }
            _ => None,
        })
        .collect();
    tags.sort_unstable();
    tags
}

#[test]
fn signed_zone_validates_in_unbound_and_delv_after_writes_and_restart() {
    let mut n = Node::start(ZONE, &signed_env(&[]));
    let tmp = tempfile::tempdir().unwrap();
    let ds = admin_ds(n.data_dir());
    let anchor = delv_anchor(tmp.path(), &ds);
    let s = n.dns[0];
    assert_eq!(publish(&n, OP, "alice.mesh.test", "v=dmp1;t=identity;d=AAAA", 3600), 201);
    // An empty non-terminal (mb-1) and an answer too big for 1232 bytes once signed.
    assert_eq!(publish(&n, OP, "slot-1.mb-1.mesh.test", &"M".repeat(1100), 3600), 201);

    assert_delv(s, &anchor, "alice.mesh.test", "TXT", "; fully validated");
    assert_delv(s, &anchor, "nobody.mesh.test", "TXT", "; negative response, fully validated");
    assert_delv(s, &anchor, "alice.mesh.test", "A", "; negative response, fully validated");
    assert_delv(s, &anchor, "mb-1.mesh.test", "TXT", "; negative response, fully validated");
    assert_delv(s, &anchor, "x.nobody.mesh.test", "TXT", "; negative response, fully validated");
    assert_delv(s, &anchor, "mesh.test", "SOA", "; fully validated");
    assert_delv(s, &anchor, "mesh.test", "NS", "; fully validated");
    assert_delv(s, &anchor, "mesh.test", "TXT", "; negative response, fully validated");
    assert_delv(s, &anchor, "mesh.test", "CDS", "; fully validated");
    assert_delv(s, &anchor, "alice.mesh.test", "NSEC", "; fully validated");
    assert_delv(s, &anchor, "mesh.test", "CDNSKEY", "; fully validated");
    // Over 1232 bytes signed: TC over UDP, then TCP; still validates.
    assert_delv(s, &anchor, "slot-1.mb-1.mesh.test", "TXT", "; fully validated");

    // The signed answer of the big record exceeds the 1232-byte cap: TC over UDP (the
    // unsigned one fits), the whole signed answer over TCP.
    for (payload, dnssec_ok, tc) in [(1232, true, true), (4096, true, true), (1232, false, false)] {
        let mut q = query("slot-1.mb-1.mesh.test.", RecordType::TXT, Some(payload));
        let n = q.len();
        if dnssec_ok {
            q[n - 4] |= 0x80;
        }
        let udp = udp_exchange(s, &q);
        assert!(udp.len() <= 1232, "{} bytes", udp.len());
        assert_eq!(parse(&udp).metadata.truncation, tc, "payload {payload} DO {dnssec_ok}");
        let tcp = parse(&tcp_exchange(s, &[q])[0]);
        assert!(!tcp.metadata.truncation);
        let sigs = tcp.answers.iter().filter(|a| a.record_type() == RecordType::RRSIG).count();
        assert_eq!(sigs, usize::from(dnssec_ok));
    }

    let ub_anchor = ds.replace(" IN DS ", " DS ");
    let ub = start_unbound_validating(&[(ZONE, s)], &[&ub_anchor]);
    let r = assert_secure(ub.addr, "alice.mesh.test.", RecordType::TXT, true);
    assert_eq!(txt_values(&r), vec!["v=dmp1;t=identity;d=AAAA".to_string()]);
    assert_secure(ub.addr, "nobody.mesh.test.", RecordType::TXT, false);
    assert_secure(ub.addr, "alice.mesh.test.", RecordType::AAAA, false);
    assert_secure(ub.addr, "mb-1.mesh.test.", RecordType::TXT, false);
    let r = assert_secure(ub.addr, "slot-1.mb-1.mesh.test.", RecordType::TXT, true);
    assert_eq!(txt_values(&r), vec!["M".repeat(1100)]);

    // New writes are signed as they land (no resolver cache involved: new names).
    assert_eq!(publish(&n, OP, "bob.mesh.test", "v=dmp1;t=identity;d=BBBB", 3600), 201);
    let r = assert_secure(ub.addr, "bob.mesh.test.", RecordType::TXT, true);
    assert_eq!(txt_values(&r), vec!["v=dmp1;t=identity;d=BBBB".to_string()]);
    assert_delv(s, &anchor, "bob.mesh.test", "TXT", "; fully validated");

    // A restart keeps the keys: same DS, everything still validates — the view (with its
    // signatures) read back from the image the stop wrote.
    n.term();
    n.restart();
    let (_, m) = http(&n.url(), "GET", "/metrics", Some(OP), "").unwrap();
    assert!(m.contains("\ndmp_dns_view_from_image 1\n"), "signed view read from its image");
    assert_eq!(admin_ds(n.data_dir()), ds);
    let s = n.dns[0];
    assert_delv(s, &anchor, "bob.mesh.test", "TXT", "; fully validated");
    assert_delv(s, &anchor, "gone.mesh.test", "TXT", "; negative response, fully validated");
    let ub = start_unbound_validating(&[(ZONE, s)], &[&ub_anchor]);
    assert_secure(ub.addr, "alice.mesh.test.", RecordType::TXT, true);
    assert_secure(ub.addr, "gone.mesh.test.", RecordType::TXT, false);

    // The keys are sealed: the file holds no PKCS#8 in the clear.
    let raw = std::fs::read(n.data_dir().join("dnssec.keys")).unwrap();
    assert!(!raw.windows(6).any(|w| w == b"pkcs8\""), "dnssec.keys must be sealed");
}

#[test]
fn zsk_rolls_with_prepublish_and_answers_keep_validating() {
    // A 6 s ZSK lifetime (testing knob) and a 1 s TTL: pre-publish is 2 s.
    let n = Node::start(
        ZONE,
        &signed_env(&[("DNSMESH_DNSSEC__ZSK_LIFETIME_SECS", "6"), ("DNSMESH_DNS__TTL", "1")]),
    );
    let tmp = tempfile::tempdir().unwrap();
    let ds = admin_ds(n.data_dir());
    let anchor = delv_anchor(tmp.path(), &ds);
    let s = n.dns[0];
    assert_eq!(publish(&n, OP, "alice.mesh.test", "v=dmp1;t=identity;d=AAAA", 3600), 201);
    let first = sig_tags(s, "alice.mesh.test.", RecordType::TXT);
    assert_eq!(first.len(), 1, "{first:?}");
    let ub_anchor = ds.replace(" IN DS ", " DS ");
    let ub = start_unbound_validating(&[(ZONE, s)], &[&ub_anchor]);

    // Until the TXT signature is made by another ZSK and the first ZSK is withdrawn,
    // every answer keeps validating; the successor is published before it signs.
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut saw_prepublished = false;
    let mut rolled = false;
    let mut i = 0;
    while Instant::now() < deadline {
        let tags = sig_tags(s, "alice.mesh.test.", RecordType::TXT);
        let zsks = zsk_tags(s);
        assert!(tags.iter().all(|t| zsks.contains(t)), "signing key {tags:?} not in {zsks:?}");
        if tags == first && zsks.len() == 2 {
            saw_prepublished = true;
        }
        if tags != first && !zsks.contains(&first[0]) {
            rolled = true;
        }
        assert_delv(s, &anchor, "alice.mesh.test", "TXT", "; fully validated");
        let nx = format!("nx{i}.mesh.test");
        assert_delv(s, &anchor, &nx, "TXT", "; negative response, fully validated");
        assert_secure(ub.addr, "alice.mesh.test.", RecordType::TXT, true);
        assert_secure(ub.addr, &format!("{nx}."), RecordType::TXT, false);
        i += 1;
        if rolled && saw_prepublished {
            break;
        }
        std::thread::sleep(Duration::from_millis(400));
    }
    assert!(saw_prepublished, "the successor ZSK was never pre-published");
    assert!(rolled, "the ZSK did not roll within 40 s");
    // A name written after the roll validates too; the KSK (DS) never changed.
    assert_eq!(publish(&n, OP, "late.mesh.test", "v=dmp1;t=identity;d=CCCC", 3600), 201);
    assert_delv(s, &anchor, "late.mesh.test", "TXT", "; fully validated");
    assert_eq!(admin_ds(n.data_dir()), ds);
}

/// Replace the SOA serial of a reply (the only field two nodes started apart may differ
/// in) by zero, so the rest can be compared byte for byte.
fn mask_serial(reply: &[u8]) -> Vec<u8> {
    let m = parse(reply);
    let mut out = reply.to_vec();
    for rr in m.answers.iter().chain(m.authorities.iter()) {
        if let RData::SOA(soa) = &rr.data {
            let serial = soa.serial.to_be_bytes();
            // The serial is followed by refresh, retry, expire and minimum.
            let mut tail = serial.to_vec();
            for v in [soa.refresh as u32, soa.retry as u32, soa.expire as u32, soa.minimum] {
                tail.extend_from_slice(&v.to_be_bytes());
            }
            let at = out.windows(20).rposition(|w| w == tail.as_slice()).expect("SOA tail");
            out[at..at + 4].copy_from_slice(&[0; 4]);
        }
    }
    out
}

#[test]
fn do0_answers_are_byte_identical_to_the_unsigned_node() {
    let plain = Node::start(ZONE, &[("DNSMESH_AUTH__OPERATOR_TOKEN", OP)]);
    let signed = Node::start(ZONE, &signed_env(&[]));
    for n in [&plain, &signed] {
        assert_eq!(publish(n, OP, "alice.mesh.test", "v=dmp1;t=identity;d=AAAA", 3600), 201);
        assert_eq!(publish(n, OP, "slot-1.mb-1.mesh.test", &"M".repeat(1100), 3600), 201);
    }
    let cases: &[(&str, RecordType)] = &[
        ("alice.mesh.test.", RecordType::TXT),
        ("AlIcE.MeSh.TeSt.", RecordType::TXT),
        ("alice.mesh.test.", RecordType::A),
        ("nobody.mesh.test.", RecordType::TXT),
        ("x.nobody.mesh.test.", RecordType::AAAA),
        ("mb-1.mesh.test.", RecordType::TXT),
        ("slot-1.mb-1.mesh.test.", RecordType::TXT),
        ("mesh.test.", RecordType::SOA),
        ("mesh.test.", RecordType::NS),
        ("mesh.test.", RecordType::TXT),
        ("mesh.test.", RecordType::ANY),
        ("ns1.mesh.test.", RecordType::A),
        ("elsewhere.example.", RecordType::TXT),
    ];
    let mut compared = 0;
    for (name, rtype) in cases {
        for edns in [None, Some(1232), Some(4096)] {
            let q = query(name, *rtype, edns);
            let a = udp_exchange(plain.dns[0], &q);
            let b = udp_exchange(signed.dns[0], &q);
            assert_eq!(mask_serial(&a), mask_serial(&b), "UDP {name} {rtype} edns {edns:?}");
            let a = tcp_exchange(plain.dns[0], std::slice::from_ref(&q)).remove(0);
            let b = tcp_exchange(signed.dns[0], std::slice::from_ref(&q)).remove(0);
            assert_eq!(mask_serial(&a), mask_serial(&b), "TCP {name} {rtype} edns {edns:?}");
            compared += 2;
        }
    }
    assert_eq!(compared, cases.len() * 6);
    // And the signed node does sign for DO=1 (so the comparison above is not vacuous).
    let mut q = query("alice.mesh.test.", RecordType::TXT, Some(1232));
    let n = q.len();
    q[n - 4] |= 0x80;
    let r = parse(&udp_exchange(signed.dns[0], &q));
    assert!(r.answers.iter().any(|a| a.record_type() == RecordType::RRSIG), "{r:?}");
    let r = parse(&udp_exchange(plain.dns[0], &q));
    assert!(r.answers.iter().all(|a| a.record_type() != RecordType::RRSIG), "{r:?}");
}

#[test]
fn ed25519_zone_validates_and_the_algorithm_is_fixed_once_keys_exist() {
    let mut n = Node::start(ZONE, &signed_env(&[("DNSMESH_DNSSEC__ALGORITHM", "15")]));
    let tmp = tempfile::tempdir().unwrap();
    let ds = admin_ds(n.data_dir());
    assert_eq!(ds.split_whitespace().nth(4), Some("15"), "{ds}");
    let anchor = delv_anchor(tmp.path(), &ds);
    assert_eq!(publish(&n, OP, "alice.mesh.test", "v=dmp1;t=identity;d=AAAA", 3600), 201);
    assert_delv(n.dns[0], &anchor, "alice.mesh.test", "TXT", "; fully validated");
    assert_delv(
        n.dns[0],
        &anchor,
        "nobody.mesh.test",
        "TXT",
        "; negative response, fully validated",
    );
    n.term();
    // Restarting with another algorithm is refused, naming the key (no silent re-keying).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dnsmesh-node"))
        .arg("--config")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/dnsmesh.toml"))
        .args(["--zone", ZONE, "--data-dir"])
        .arg(n.data_dir())
        .args(["--dns-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
        .env("DNSMESH_DNSSEC__ENABLED", "true")
        .env("DNSMESH_DNSSEC__ALGORITHM", "13")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("dnssec.algorithm = 13") && err.contains("algorithm 15"), "{err}");
}
