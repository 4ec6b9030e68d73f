//! UDP amplification (issue 12, item 5) on a real node configured as a public one
//! (`[limits] limit_loopback = true`, the shipped RRL): no UDP reply exceeds
//! min(client's EDNS payload, `[dns] max_udp_payload`), whichever path (fast path or
//! hickory slow path) builds it; larger answers go out as TC stubs and the same question
//! over TCP gets the whole answer; RRL meters every UDP reply, QCLASS ANY included.
//!
//! Prints bytes out / bytes in per query shape and for floods with RRL on.
#![cfg(feature = "net")]

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::rr::RecordType;

const OP: &str = "amp-operator-token";
/// The shipped `[dns] max_udp_payload`.
const CAP: usize = 1232;
/// The shipped RRL: 200 responses/s per /24, burst 400.
const RRL_RATE: f64 = 200.0;
const RRL_BURST: f64 = 400.0;

fn start() -> Node {
    let n = Node::start(
        "amp.test",
        &[
            ("DNSMESH_LIMITS__LIMIT_LOOPBACK", "true"),
            ("DNSMESH_AUTH__OPERATOR_TOKEN", OP),
            // Seeding the zone over HTTP is not what is measured here.
            ("DNSMESH_LIMITS__HTTP_BURST", "1000"),
        ],
    );
    // 64 large TXT values at one name (~58 KB of answer), as the attack used.
    for i in 0..64 {
        let v = format!("{i:02}{}", "v".repeat(898));
        assert_eq!(publish(&n, OP, "big.amp.test", &v, 3600), 201, "value {i}");
    }
    // The worst shape under the cap: a short name whose answer just fits 1232 bytes.
    for i in 0..4 {
        let v = format!("{i}{}", "w".repeat(264));
        assert_eq!(publish(&n, OP, "w.amp.test", &v, 3600), 201);
    }
    n
}

/// A query with an explicit QCLASS (the last two question bytes, before any OPT).
fn query_class(name: &str, rtype: RecordType, edns: Option<u16>, class: u16) -> Vec<u8> {
    let mut q = query(name, rtype, edns);
    let at = q.len() - 2 - if edns.is_some() { 11 } else { 0 };
    q[at..at + 2].copy_from_slice(&class.to_be_bytes());
    q
}

/// The query shapes tried: (label, query bytes).
fn shapes() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let types = [
        RecordType::TXT,
        RecordType::ANY,
        RecordType::RRSIG,
        RecordType::DNSKEY,
        RecordType::NS,
        RecordType::SOA,
        RecordType::A,
        RecordType::CAA,
    ];
    for name in ["big.amp.test.", "w.amp.test.", "amp.test.", "nx.amp.test.", "example.com."] {
        for t in types {
            for edns in [None, Some(512), Some(4096), Some(65535)] {
                for class in [1u16, 255] {
                    let label = format!("{name} {t:?} class={class} edns={edns:?}");
                    out.push((label, query_class(name, t, edns, class)));
                }
            }
        }
    }
    out
}

/// Send `q` and wait for one reply (or none within `wait`).
fn ask(s: &UdpSocket, to: SocketAddr, q: &[u8], wait: Duration) -> Option<Vec<u8>> {
    s.set_read_timeout(Some(wait)).unwrap();
    s.send_to(q, to).unwrap();
    let mut buf = vec![0u8; 65_536];
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        let Ok((n, _)) = s.recv_from(&mut buf) else { return None };
        // Replies to earlier queries may still arrive: match the ID.
        if n >= 2 && buf[..2] == q[..2] {
            return Some(buf[..n].to_vec());
        }
    }
    None
}

fn edns_payload(q: &[u8]) -> Option<usize> {
    // Our queries carry the OPT last: payload at len-11+3.
    (q[11] == 1).then(|| u16::from_be_bytes([q[q.len() - 8], q[q.len() - 7]]) as usize)
}

#[test]
fn udp_replies_never_exceed_the_cap_and_tcp_gets_the_whole_answer() {
    let n = start();
    let dns = n.dns[0];
    // Own /24 so the RRL budget of the floods below is untouched (we stay under its burst).
    let s = UdpSocket::bind("127.0.3.1:0").unwrap();
    let mut worst = (0.0f64, String::new(), 0usize, 0usize);
    let (mut total_in, mut total_out, mut answered) = (0usize, 0usize, 0usize);
    let shapes = shapes();
    assert!(shapes.len() < RRL_BURST as usize, "stay under the RRL burst");
    for (label, q) in &shapes {
        let r = ask(&s, dns, q, Duration::from_secs(3))
            .unwrap_or_else(|| panic!("{label}: no reply (RFC 8906: no silent drop)"));
        let limit = edns_payload(q).map(|p| p.clamp(512, CAP)).unwrap_or(512);
        assert!(r.len() <= limit, "{label}: {} bytes > {limit}", r.len());
        let m = parse(&r);
        assert!(!m.metadata.truncation || m.answers.is_empty(), "{label}: a TC stub is empty");
        let factor = r.len() as f64 / q.len() as f64;
        if factor > worst.0 {
            worst = (factor, label.clone(), q.len(), r.len());
        }
        total_in += q.len();
        total_out += r.len();
        answered += 1;
    }
    eprintln!(
        "amplification per reply (no RRL in play): {answered} shapes, worst {:.1}x ({}: {} B in, {} B out), overall {:.2}x",
        worst.0,
        worst.1,
        worst.2,
        worst.3,
        total_out as f64 / total_in as f64
    );
    // 1232 bytes for the shortest query that can draw them (~39 bytes): ~31x at most.
    assert!(worst.0 <= 32.0, "worst factor {:.1}x ({})", worst.0, worst.1);

    // The large answer: TC over UDP on both paths, whole over TCP (the client's retry).
    for class in [1u16, 255] {
        let q = query_class("big.amp.test.", RecordType::TXT, Some(65535), class);
        let m = parse(&ask(&s, dns, &q, Duration::from_secs(3)).expect("reply"));
        assert!(m.metadata.truncation && m.answers.is_empty(), "class {class}: TC stub");
        let full = parse(&tcp_exchange(dns, &[q])[0]);
        assert!(!full.metadata.truncation, "class {class}: whole over TCP");
        assert_eq!(txt_values(&full).len(), 64, "class {class}: all 64 values over TCP");
    }
}

/// Flood `q` from `src` (its own /24) `count` times; returns (bytes in, bytes out,
/// full replies, TC replies, seconds).
fn flood(dns: SocketAddr, src: &str, q: &[u8], count: usize) -> (usize, usize, usize, usize, f64) {
    let s = UdpSocket::bind(src).unwrap();
    let r = s.try_clone().unwrap();
    let reader = std::thread::spawn(move || {
        // Runs until the node has been quiet for 1 s after the flood.
        r.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let (mut out, mut full, mut tc) = (0usize, 0usize, 0usize);
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, _)) = r.recv_from(&mut buf) {
            out += n;
            if buf[2] & 0x02 != 0 {
                tc += 1;
            } else {
                full += 1;
            }
        }
        (out, full, tc)
    });
    let t0 = Instant::now();
    for i in 0..count {
        let _ = s.send_to(q, dns);
        // Bounded pace (~20k/s) so the kernel does not drop our own datagrams first.
        if i % 64 == 63 {
            std::thread::sleep(Duration::from_millis(3));
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let (out, full, tc) = reader.join().unwrap();
    (count * q.len(), out, full, tc, secs)
}

#[test]
fn rrl_meters_every_udp_reply_fast_and_slow_path() {
    let n = start();
    let dns = n.dns[0];
    let count = 3000;
    let cases = [
        // Fast path: the largest reply under the cap for the shortest query.
        ("w TXT class IN edns 1232 (fast path)", "127.0.1.1:0", {
            query_class("w.amp.test.", RecordType::TXT, Some(1232), 1)
        }),
        // The shape: EDNS 65535 at the 64-value name.
        ("big TXT class IN edns 65535 (fast path)", "127.0.2.1:0", {
            query_class("big.amp.test.", RecordType::TXT, Some(65535), 1)
        }),
        // QCLASS ANY is answered by the slow path, which had no RRL.
        ("w TXT class ANY edns 65535 (slow path)", "127.0.4.1:0", {
            query_class("w.amp.test.", RecordType::TXT, Some(65535), 255)
        }),
        ("big ANY class ANY edns 65535 (slow path)", "127.0.5.1:0", {
            query_class("big.amp.test.", RecordType::ANY, Some(65535), 255)
        }),
    ];
    let mut worst = 0.0f64;
    for (label, src, q) in cases {
        let (bytes_in, bytes_out, full, tc, secs) = flood(dns, src, &q, count);
        let factor = bytes_out as f64 / bytes_in as f64;
        worst = worst.max(factor);
        eprintln!(
            "RRL flood {label}: {count} queries of {} B in {secs:.2} s: {full} full + {tc} TC replies, \
             {bytes_in} B in, {bytes_out} B out = {factor:.2}x",
            q.len()
        );
        // Full replies within burst + rate × time (+1 s for the reader's quiet tail).
        let allowed = RRL_BURST + RRL_RATE * (secs + 1.0) + 10.0;
        assert!((full as f64) <= allowed, "{label}: {full} full replies > {allowed:.0}");
        assert!(full + tc < count * 3 / 4, "{label}: most of the flood is not answered");
        let max_out = allowed * CAP as f64 + (count as f64) * (q.len() as f64);
        assert!((bytes_out as f64) <= max_out, "{label}: {bytes_out} B out > {max_out:.0}");
    }
    eprintln!("worst bytes out / bytes in under a {count}-query flood with RRL on: {worst:.2}x");
}
