//! `[dns] udp_threads` (issue 18): with N UDP receive threads on SO_REUSEPORT sockets every
//! thread answers (queries from many source ports are all answered, and each thread's
//! counter in `/metrics` moves), and response-rate limiting still holds per client prefix
//! in total, not N times over: each thread keeps 1/N of `rrl_rate` (and the whole burst,
//! so a client on one fixed port, always on the same thread, keeps its burst).
//! A real node configured as a public one (`[limits] limit_loopback = true`).
#![cfg(feature = "net")]

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::rr::RecordType;

const OP: &str = "threads-operator-token";
const ZONE: &str = "thr.test";
const RRL_RATE: f64 = 200.0;
const RRL_BURST: f64 = 10.0;
const THREADS: f64 = 2.0;

fn start(threads: &str) -> Node {
    let n = Node::start(
        ZONE,
        &[
            ("DNSMESH_DNS__UDP_THREADS", threads),
            ("DNSMESH_DNS__RRL_RATE", "200"),
            ("DNSMESH_DNS__RRL_BURST", "10"),
            ("DNSMESH_LIMITS__LIMIT_LOOPBACK", "true"),
            ("DNSMESH_AUTH__OPERATOR_TOKEN", OP),
        ],
    );
    assert_eq!(publish(&n, OP, &format!("a.{ZONE}"), "hello", 3600), 201);
    n
}

/// `dmp_dns_udp_threads` and each thread's received count from `/metrics`.
fn thread_counts(n: &Node) -> (usize, Vec<u64>) {
    let (s, m) = http(&n.url(), "GET", "/metrics", Some(OP), "").unwrap();
    assert_eq!(s, 200);
    let mut threads = None;
    let mut per = Vec::new();
    for l in m.lines() {
        if let Some(v) = l.strip_prefix("dmp_dns_udp_threads ") {
            threads = v.trim().parse().ok();
        }
        if let Some(rest) = l.strip_prefix("dmp_dns_udp_thread_queries_total{thread=\"") {
            let (i, v) = rest.split_once("\"} ").unwrap();
            assert_eq!(i.parse::<usize>().unwrap(), per.len());
            per.push(v.trim().parse().unwrap());
        }
    }
    (threads.expect("dmp_dns_udp_threads in /metrics"), per)
}

#[test]
fn every_udp_thread_answers() {
    let n = start("2");
    let dns = n.dns[0];
    let (threads, before) = thread_counts(&n);
    assert_eq!(threads, 2, "two UDP threads for the one listen address");
    assert_eq!(before.len(), 2);
    // 64 clients, each its own source port (and /24, so RRL stays out of the way).
    let mut answered = 0;
    for i in 0..64u8 {
        let s = UdpSocket::bind(format!("127.0.{}.1:0", 100 + i)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let q = query(&format!("a.{ZONE}."), RecordType::TXT, None);
        s.send_to(&q, dns).unwrap();
        let mut buf = [0u8; 1500];
        let (len, _) = s.recv_from(&mut buf).expect("every query is answered");
        let m = parse(&buf[..len]);
        assert_eq!(m.metadata.id, u16::from_be_bytes([q[0], q[1]]));
        assert_eq!(txt_values(&m), ["hello"]);
        answered += 1;
    }
    assert_eq!(answered, 64);
    let (_, after) = thread_counts(&n);
    let got: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    eprintln!("queries per UDP thread from 64 source ports: {got:?}");
    assert_eq!(got.iter().sum::<u64>(), 64);
    assert!(got.iter().all(|&c| c > 0), "every thread answered some: {got:?}");
}

/// Flood `q` to `dns` from `socks` in turn (one /24, many source ports), `count` queries;
/// returns (full replies, TC replies, seconds spent sending).
fn flood(dns: SocketAddr, socks: &[UdpSocket], q: &[u8], count: usize) -> (usize, usize, f64) {
    let readers: Vec<_> = socks
        .iter()
        .map(|s| {
            let r = s.try_clone().unwrap();
            std::thread::spawn(move || {
                // Until the node has been quiet for 1 s after the flood.
                r.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
                let (mut full, mut tc) = (0usize, 0usize);
                let mut buf = vec![0u8; 65_536];
                while let Ok((_, _)) = r.recv_from(&mut buf) {
                    if buf[2] & 0x02 != 0 {
                        tc += 1;
                    } else {
                        full += 1;
                    }
                }
                (full, tc)
            })
        })
        .collect();
    let t0 = Instant::now();
    for i in 0..count {
        let _ = socks[i % socks.len()].send_to(q, dns);
        // About 2,500 queries/s for well over a second, so the rate (not the burst)
        // decides how many are answered.
        if i % 8 == 7 {
            std::thread::sleep(Duration::from_millis(3));
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let (mut full, mut tc) = (0, 0);
    for r in readers {
        let (f, t) = r.join().unwrap();
        full += f;
        tc += t;
    }
    (full, tc, secs)
}

#[test]
fn rrl_limits_a_prefix_in_total_across_threads() {
    let n = start("2");
    let dns = n.dns[0];
    let (_, before) = thread_counts(&n);
    let socks: Vec<UdpSocket> =
        (1..=32).map(|i| UdpSocket::bind(format!("127.0.9.{i}:0")).unwrap()).collect();
    let q = query(&format!("a.{ZONE}."), RecordType::TXT, None);
    let count = 4000;
    let (full, tc, secs) = flood(dns, &socks, &q, count);
    let (_, after) = thread_counts(&n);
    let got: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    eprintln!(
        "RRL flood from one /24 over 32 source ports: {count} queries in {secs:.2} s, \
         per thread {got:?}: {full} full + {tc} TC replies"
    );
    // The flood reached both threads, each far past what its share lets through...
    let share = RRL_BURST + RRL_RATE / THREADS * secs;
    assert!(got.iter().all(|&c| c as f64 > 2.0 * share), "spread over both threads: {got:?}");
    // ...and yet the prefix got the rate once in total, not once per thread (which would
    // be about 2 x 200/s), plus each thread's burst (`RrlConfig::per_thread`). The 0.3 s
    // is for the datagrams still queued when the sender stops.
    let allowed = THREADS * RRL_BURST + RRL_RATE * (secs + 0.3);
    assert!((full as f64) <= allowed, "{full} full replies > {allowed:.0}");
    // Nor is it stricter than stated.
    let expected = THREADS * RRL_BURST + RRL_RATE * secs;
    assert!(full as f64 >= 0.7 * expected, "{full} full replies, expected about {expected:.0}");
    assert!(tc > 0, "past the limit every 2nd response is a TC stub");
}
