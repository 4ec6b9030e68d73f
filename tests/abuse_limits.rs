//! Abuse limits on a real node: DNS response-rate limiting under a flood (no
//! amplification, TC slip), per-recipient mailbox write limits, and slow clients cut off on
//! HTTP and on DNS over TCP.
#![cfg(feature = "net")]

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::rr::RecordType;

#[test]
fn rrl_answers_a_flood_at_the_configured_rate_with_tc_slip() {
    let n = Node::start(
        "rrl.test",
        &[
            ("DNSMESH_LIMITS__LIMIT_LOOPBACK", "true"),
            ("DNSMESH_DNS__RRL_RATE", "50"),
            ("DNSMESH_DNS__RRL_BURST", "50"),
            ("DNSMESH_DNS__RRL_SLIP", "2"),
        ],
    );
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let q = query("rrl.test.", RecordType::SOA, None);
    let offered = 3000;
    let t0 = Instant::now();
    for _ in 0..offered {
        let _ = s.send_to(&q, n.dns[0]);
    }
    s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let (mut full, mut tc) = (0usize, 0usize);
    let mut buf = [0u8; 1500];
    while let Ok((len, _)) = s.recv_from(&mut buf) {
        let m = parse(&buf[..len]);
        if m.metadata.truncation {
            tc += 1;
            assert!(
                m.answers.is_empty() && m.authorities.is_empty(),
                "a slip stub carries no records"
            );
        } else {
            full += 1;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    eprintln!("RRL flood: offered {offered}, full answers {full}, TC slips {tc}, in {secs:.2} s");
    let allowed = 50.0 + 50.0 * secs + 5.0;
    assert!((full as f64) <= allowed, "full answers {full} exceed burst + rate × {secs:.2} s");
    assert!(tc > 0, "limited responses slip as TC");
    assert!(full + tc < offered / 2 + 100, "most of the flood is not answered");
}

#[test]
fn one_registrant_cannot_fill_another_users_mailbox() {
    let n = Node::start(
        "mb.test",
        &[("DNSMESH_LIMITS__MAILBOX_RATE", "0.001"), ("DNSMESH_LIMITS__MAILBOX_BURST", "3")],
    );
    // A user token from self-service registration.
    let id = dnsmesh::proto::keys::Identity::from_private_bytes([5; 32]);
    let (_, body) = http(&n.url(), "GET", "/v1/registration/challenge", None, "").unwrap();
    let ch: serde_json::Value = serde_json::from_str(&body).unwrap();
    let challenge: [u8; 32] =
        hex::decode(ch["challenge"].as_str().unwrap()).unwrap().try_into().unwrap();
    let sig = dnsmesh::proto::registration::sign_registration(
        id.signing_key(),
        &challenge,
        "mallory@mb.test",
        ch["node"].as_str().unwrap(),
    );
    let req = serde_json::json!({"subject": "mallory@mb.test", "ed25519_spk": hex::encode(id.ed25519_public()),
        "challenge": hex::encode(challenge), "signature": hex::encode(sig)});
    let (s, body) =
        http(&n.url(), "POST", "/v1/registration/confirm", None, &req.to_string()).unwrap();
    assert_eq!(s, 200, "{body}");
    let token = serde_json::from_str::<serde_json::Value>(&body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let post = |name: &str, v: &str| {
        let body = serde_json::json!({"value": v, "ttl": 300}).to_string();
        http(&n.url(), "POST", &format!("/v1/records/{name}"), Some(&token), &body).unwrap().0
    };
    for i in 0..3 {
        assert_eq!(post(&format!("slot-{i}.mb-aaaaaaaaaaaa.mb.test"), &format!("junk{i}")), 201);
    }
    assert_eq!(post("slot-4.mb-aaaaaaaaaaaa.mb.test", "junk4"), 429, "per-recipient limit");
    assert_eq!(
        post("slot-4.mb-bbbbbbbbbbbb.mb.test", "ok"),
        201,
        "another recipient is unaffected"
    );
}

#[test]
fn slow_clients_are_cut_off_on_http_and_dns_tcp() {
    let n = Node::start(
        "slow.test",
        &[("DNSMESH_HTTP__REQUEST_TIMEOUT_SECS", "1"), ("DNSMESH_DNS__TCP_TIMEOUT_SECS", "1")],
    );
    // HTTP: half a request head, then silence.
    let mut h = std::net::TcpStream::connect(n.http).unwrap();
    h.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").unwrap();
    h.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let t0 = Instant::now();
    let mut buf = Vec::new();
    let _ = h.read_to_end(&mut buf);
    assert!(t0.elapsed() < Duration::from_secs(5), "slow HTTP client not cut off");
    // DNS over TCP: connect and say nothing.
    let mut d = std::net::TcpStream::connect(n.dns[0]).unwrap();
    d.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let t0 = Instant::now();
    let mut b = [0u8; 16];
    let r = d.read(&mut b);
    assert!(matches!(r, Ok(0) | Err(_)), "connection closed");
    assert!(t0.elapsed() < Duration::from_secs(5), "idle DNS TCP client not cut off");
    // The node still serves both.
    assert_eq!(http(&n.url(), "GET", "/health", None, "").unwrap().0, 200);
    let r = parse(&tcp_exchange(n.dns[0], &[query("slow.test.", RecordType::SOA, None)])[0]);
    assert!(!r.answers.is_empty());
}
