//! A hostile heartbeat seed: a DNS server (in the test, on 127.0.0.0/8) answering
//! `_dnsmesh-heartbeat.evil.test` and `_dnsmesh-seen.evil.test` with many valid signed
//! heartbeats, fresh ones on every query, plus one whose endpoint carries `"` and `\`.
//! Our node (configured as a public one) must cap what that seed adds per tick and
//! overall, keep republishing a diverse `_dnsmesh-seen`, and never let the junk endpoint
//! into its peers or `/metrics`.
#![cfg(feature = "net")]

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use dnsmesh::proto::records::heartbeat::{Heartbeat, HeartbeatPolicy};
use ed25519_dalek::SigningKey;

const OP: &str = "op-token-abuse-hb";
const PER_ANSWER: usize = 30;

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn fresh_key() -> SigningKey {
    let mut seed = [0u8; 32];
    dnsmesh::proto::keys::random_fill(&mut seed);
    SigningKey::from_bytes(&seed)
}

/// A DMPHB03 wire signed by `key` for any endpoint bytes (bypassing the signer's checks,
/// as a hostile node would).
fn raw_wire(key: &SigningKey, endpoint: &str, ts: u64) -> String {
    let mut b = b"DMPHB03".to_vec();
    b.extend_from_slice(&(endpoint.len() as u16).to_be_bytes());
    b.extend_from_slice(endpoint.as_bytes());
    b.extend_from_slice(&key.verifying_key().to_bytes());
    b.push(5);
    b.extend_from_slice(b"0.7.5");
    b.extend_from_slice(&1u16.to_be_bytes());
    b.push(9);
    b.extend_from_slice(b"evil.test");
    b.extend_from_slice(&ts.to_be_bytes());
    b.extend_from_slice(&(ts + 3600).to_be_bytes());
    let sig = dnsmesh::proto::keys::sign(key, &b);
    b.extend_from_slice(&sig);
    format!("v=dmp1;t=heartbeat;{}", dnsmesh::proto::b64::encode(&b))
}

/// The hostile seed server. Counts the TXT queries it answered.
fn hostile_seed(ip: &str, served: Arc<AtomicUsize>) -> SocketAddr {
    let s = UdpSocket::bind((ip, 0)).unwrap();
    let addr = s.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        let mut n = 0usize;
        loop {
            let Ok((len, from)) = s.recv_from(&mut buf) else { return };
            let q = &buf[..len];
            if len < 17 {
                continue;
            }
            // The question: labels from offset 12, then type and class.
            let mut i = 12;
            while i < len && q[i] != 0 {
                i += 1 + q[i] as usize;
            }
            let qend = (i + 5).min(len);
            let mut resp = q[..2].to_vec();
            resp.extend_from_slice(&[0x84, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
            resp.extend_from_slice(&q[12..qend]);
            let ts = now() + 100; // "fresher" than any honest peer
            let mut count = 0u16;
            for k in 0..PER_ANSWER {
                let key = fresh_key();
                n += 1;
                let wire = if k == 0 {
                    raw_wire(&key, "http://evil\"injected\\x:80", ts)
                } else {
                    raw_wire(&key, &format!("http://h{n}.evil.test:1"), ts)
                };
                let rdata = dnsmesh::proto::txt::to_rdata(wire.as_bytes());
                resp.extend_from_slice(&[0xc0, 0x0c, 0, 16, 0, 1, 0, 0, 0, 60]);
                resp.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
                resp.extend_from_slice(&rdata);
                count += 1;
            }
            resp[6..8].copy_from_slice(&count.to_be_bytes());
            // Counted before it is sent, so a reader never sees its effect uncounted.
            served.fetch_add(1, Ordering::SeqCst);
            let _ = s.send_to(&resp, from);
        }
    });
    addr
}

fn peers(n: &Node) -> Vec<String> {
    let (s, body) = http(&n.url(), "GET", "/status.json", None, "").unwrap();
    assert_eq!(s, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["heartbeat_peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["endpoint"].as_str().unwrap().to_string())
        .collect()
}

/// TXT values at `name` over TCP (the seen set is larger than a UDP answer).
fn txt_tcp(server: SocketAddr, name: &str) -> Vec<String> {
    let q = query(&format!("{name}."), hickory_proto::rr::RecordType::TXT, None);
    txt_values(&parse(&tcp_exchange(server, &[q])[0]))
}

fn endpoints(wires: &[String]) -> Vec<String> {
    let lax = HeartbeatPolicy { max_skew: 1 << 40, allow_private_endpoints: true };
    wires
        .iter()
        .filter_map(|w| Heartbeat::parse_and_verify_with(w, now(), &lax))
        .map(|h| h.endpoint)
        .collect()
}

#[test]
fn a_hostile_seed_is_capped_per_tick_and_overall_and_cannot_fill_our_seen_set() {
    let (max_rows, per_seed) = (60usize, 20usize);
    // An honest peer: our own node software serving good.test.
    let good = Node::start(
        "good.test",
        &[
            ("DNSMESH_HEARTBEAT__ENABLED", "true"),
            ("DNSMESH_HEARTBEAT__SELF_ENDPOINT", "http://good.test:1"),
            ("DNSMESH_HEARTBEAT__INTERVAL_SECS", "1"),
        ],
    );
    let served = Arc::new(AtomicUsize::new(0));
    let evil = hostile_seed("127.0.0.61", served.clone());
    let seeds = format!("good.test@{},evil.test@{evil}", good.dns[0]);
    let a = Node::start(
        "a.test",
        &[
            ("DNSMESH_LIMITS__LIMIT_LOOPBACK", "true"),
            ("DNSMESH_AUTH__OPERATOR_TOKEN", OP),
            ("DNSMESH_HEARTBEAT__ENABLED", "true"),
            ("DNSMESH_HEARTBEAT__SELF_ENDPOINT", "http://a.test:1"),
            ("DNSMESH_HEARTBEAT__INTERVAL_SECS", "1"),
            ("DNSMESH_HEARTBEAT__SEEDS", &seeds),
            // Learned zones are asked of a dead loopback port, never the real network.
            ("DNSMESH_HEARTBEAT__RESOLVERS", "127.0.0.1:9"),
            ("DNSMESH_HEARTBEAT__SEEN_MAX_ROWS", &max_rows.to_string()),
            ("DNSMESH_HEARTBEAT__MAX_NEW_PER_SEED", &per_seed.to_string()),
        ],
    );
    // Watch the seen set over at least 10 ticks (two queries to the seed per tick).
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut most = 0;
    loop {
        let p = peers(&a).len();
        let ticks = served.load(Ordering::SeqCst).div_ceil(2);
        most = most.max(p);
        // Per tick: at most `per_seed` new peers from the hostile seed (+ the honest one).
        assert!(p <= per_seed * ticks + 1, "{p} peers after {ticks} ticks of the hostile seed");
        assert!(p <= max_rows, "seen set over its cap: {p} > {max_rows}");
        if ticks >= 10 {
            break;
        }
        assert!(Instant::now() < deadline, "only {ticks} ticks in 90 s");
        std::thread::sleep(Duration::from_millis(250));
    }
    let ticks = served.load(Ordering::SeqCst).div_ceil(2);
    let offered = ticks * 2 * PER_ANSWER;
    eprintln!("hostile seed offered {offered} valid wires over {ticks} ticks; seen set peaked at {most} rows (cap {max_rows})");
    assert!(most >= max_rows - per_seed, "the seed was harvested at all ({most} rows)");
    // The honest peer stays known and is republished next to the hostile ones.
    let ps = peers(&a);
    assert!(ps.contains(&"http://good.test:1".to_string()), "honest peer evicted: {ps:?}");
    let ok = eventually(40, Duration::from_millis(250), || {
        endpoints(&txt_tcp(a.dns[0], "_dnsmesh-seen.a.test")).contains(&"http://good.test:1".into())
    });
    let seen = endpoints(&txt_tcp(a.dns[0], "_dnsmesh-seen.a.test"));
    let from_evil = seen.iter().filter(|e| e.contains("evil")).count();
    eprintln!("_dnsmesh-seen.a.test: {} wires, {from_evil} from the hostile seed", seen.len());
    assert!(ok, "_dnsmesh-seen is all from the hostile seed: {seen:?}");
    // The junk endpoint never got in, and /metrics stays well-formed.
    assert!(!ps.iter().any(|e| e.contains(['"', '\\'])), "{ps:?}");
    let (s, m) = http(&a.url(), "GET", "/metrics", Some(OP), "").unwrap();
    assert_eq!(s, 200);
    assert!(!m.contains("injected"), "{m}");
    for l in m.lines().filter(|l| !l.starts_with('#')) {
        let v = l.rsplit_once(' ').unwrap().1;
        assert!(v.parse::<f64>().is_ok() || v == "+Inf", "bad sample line: {l}");
    }
}
