//! The write side of DNS UPDATE against a node configured as a public one
//! (`[limits] limit_loopback = true`): unsigned claim floods (one claim per UPDATE, write
//! buckets charged per record, live-claim budgets globally and per network, claim_max_ttl,
//! receiver-only claims), one sender taking a recipient's claim slots, a replayed TSIG
//! UPDATE, and tombstones from mass deletes. Floods are bounded in count and time and
//! measure growth (records, data-dir bytes, RSS).
#![cfg(feature = "net")]

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::str::FromStr;
use std::time::{Duration, Instant};

use common::*;
use dnsmesh::proto::keys::{self, Identity};
use dnsmesh::proto::names;
use dnsmesh::proto::records::claim::ClaimRecord;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, TSigner};

const ZONE: &str = "mesh.test";
const SYNC: &str = "sync-secret";

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn public_node(extra: &[(&str, &str)]) -> Node {
    let mut env =
        vec![("DNSMESH_LIMITS__LIMIT_LOOPBACK", "true"), ("DNSMESH_CLUSTER__SYNC_TOKEN", SYNC)];
    env.extend_from_slice(extra);
    Node::start(ZONE, &env)
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n.div_ceil(2)];
    keys::random_fill(&mut b);
    hex::encode(b)[..n].to_string()
}

/// `claim-0.mb-<fresh random H12>.mesh.test`.
fn fresh_claim_name() -> String {
    format!("claim-0.mb-{}.{ZONE}", random_hex(12))
}

/// A valid claim value signed by `sender`, living `life` seconds.
fn claim_value(sender: &Identity, life: u64) -> String {
    let t = now();
    let mut msg_id = [0u8; 16];
    keys::random_fill(&mut msg_id);
    ClaimRecord {
        msg_id,
        sender_spk: sender.ed25519_public(),
        sender_mailbox_domain: "sender.test".into(),
        slot: 0,
        ts: t,
        exp: t + life,
    }
    .sign(sender)
    .unwrap()
}

fn txt_rr(name: &str, class: DNSClass, value: &str, ttl: u32) -> Record {
    let parts: Vec<&[u8]> = value.as_bytes().chunks(255).collect();
    let mut r = Record::from_rdata(
        Name::from_str(&format!("{name}.")).unwrap(),
        ttl,
        RData::TXT(TXT::from_bytes(parts)),
    );
    r.dns_class = class;
    if class == DNSClass::NONE {
        r.ttl = 0;
    }
    r
}

fn update_msg(rrs: Vec<Record>) -> Message {
    let mut m = Message::new(rand_id(), MessageType::Query, OpCode::Update);
    let mut zq = Query::new();
    zq.set_name(Name::from_str(&format!("{ZONE}.")).unwrap()).set_query_type(RecordType::SOA);
    m.add_query(zq);
    for r in rrs {
        m.add_authority(r);
    }
    m
}

/// Unsigned UPDATE of `(name, value)` adds, as bytes.
fn unsigned_update(claims: &[(String, String)], ttl: u32) -> Vec<u8> {
    update_msg(claims.iter().map(|(n, v)| txt_rr(n, DNSClass::IN, v, ttl)).collect())
        .to_vec()
        .unwrap()
}

/// Send `bytes` from source address `src` (e.g. "127.0.1.1"), return the rcode.
fn send_from(src: &str, server: SocketAddr, bytes: &[u8]) -> ResponseCode {
    let s = UdpSocket::bind(format!("{src}:0")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.send_to(bytes, server).unwrap();
    let mut buf = vec![0u8; 65535];
    let (n, _) = s.recv_from(&mut buf).expect("no reply to UPDATE");
    Message::from_vec(&buf[..n]).unwrap().metadata.response_code
}

struct Tsig {
    name: String,
    secret: Vec<u8>,
}

fn tsig_of(v: &serde_json::Value) -> Tsig {
    Tsig {
        name: v["tsig_key_name"].as_str().unwrap().to_string(),
        secret: hex::decode(v["tsig_secret_hex"].as_str().unwrap()).unwrap(),
    }
}

/// A TSIG-signed UPDATE as bytes.
fn signed_update(key: &Tsig, rrs: Vec<Record>) -> Vec<u8> {
    let signer = TSigner::new(
        key.secret.clone(),
        TsigAlgorithm::HmacSha256,
        Name::from_str(&key.name).unwrap(),
        300,
    )
    .unwrap();
    let mut m = update_msg(rrs);
    m.finalize(&signer, now()).unwrap();
    m.to_vec().unwrap()
}

fn rss_kb(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn dir_bytes(p: &std::path::Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let md = e.metadata().unwrap();
            total += if md.is_dir() { dir_bytes(&e.path()) } else { md.len() };
        }
    }
    total
}

fn records(n: &Node) -> u64 {
    let (s, body) = http(&n.url(), "GET", "/stats", None, "").unwrap();
    assert_eq!(s, 200, "{body}");
    serde_json::from_str::<serde_json::Value>(&body).unwrap()["records"].as_u64().unwrap()
}

/// CPU seconds (user + system) the process has used.
fn cpu_secs(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) are 12 and 13 after the state field.
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

#[test]
fn unsigned_claim_flood_from_one_ip_is_bounded() {
    let secs: u64 =
        std::env::var("CLAIM_FLOOD_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let n = public_node(&[]);
    let pid = n.child.id();
    let attacker = Identity::from_private_bytes([0x41; 32]);
    // A legitimate claim before the flood.
    let before = (records(&n), dir_bytes(n.data_dir()), rss_kb(pid));
    let t0 = Instant::now();
    let (mut packed_sent, mut packed_ok, mut single_sent, mut single_ok) = (0u64, 0u64, 0u64, 0u64);
    while t0.elapsed() < Duration::from_secs(secs) {
        // 200 claims at fresh names in one UPDATE (the observed attack)…
        let batch: Vec<(String, String)> =
            (0..200).map(|_| (fresh_claim_name(), claim_value(&attacker, 86_000))).collect();
        packed_sent += 1;
        if send_from("127.0.0.1", n.dns[0], &unsigned_update(&batch, 86_400))
            == ResponseCode::NoError
        {
            packed_ok += 1;
        }
        // …and one claim per UPDATE, as fast as the node answers.
        for _ in 0..20 {
            let one = [(fresh_claim_name(), claim_value(&attacker, 86_000))];
            single_sent += 1;
            if send_from("127.0.0.1", n.dns[0], &unsigned_update(&one, 86_400))
                == ResponseCode::NoError
            {
                single_ok += 1;
            }
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    // Let the last writes reach the store's count.
    let after = (records(&n), dir_bytes(n.data_dir()), rss_kb(pid));
    let grown = after.0 - before.0;
    eprintln!(
        "claim flood {elapsed:.1}s from one IP: packed UPDATEs {packed_ok}/{packed_sent} accepted, \
         single {single_ok}/{single_sent}; records {} -> {} (+{grown}); data dir {} -> {} KiB \
         (+{} KiB); RSS {} -> {} KiB (+{} KiB)",
        before.0,
        after.0,
        before.1 / 1024,
        after.1 / 1024,
        after.1.saturating_sub(before.1) / 1024,
        before.2,
        after.2,
        after.2.saturating_sub(before.2),
    );
    assert_eq!(packed_ok, 0, "an unsigned UPDATE carries at most one claim");
    // The per-IP UPDATE bucket (20/s, burst 200) is charged per record.
    let bound = 200.0 + 20.0 * elapsed + 5.0;
    assert!((grown as f64) <= bound, "stored {grown} claims in {elapsed:.1}s (bound {bound:.0})");
    assert!(single_ok >= 100, "legitimate-looking single claims still land ({single_ok})");
    assert!(
        after.1.saturating_sub(before.1) < 32 << 20,
        "data dir grew by {} bytes",
        after.1 - before.1
    );
    assert!(after.2.saturating_sub(before.2) < 48 << 10, "RSS grew by {} KiB", after.2 - before.2);
}

#[test]
fn live_claim_budgets_hold_per_network_and_globally() {
    // Per-IP buckets wide open, so the budgets are what binds.
    let n = public_node(&[
        ("DNSMESH_LIMITS__UPDATE_RATE", "100000"),
        ("DNSMESH_LIMITS__UPDATE_BURST", "100000"),
        ("DNSMESH_LIMITS__UNSIGNED_CLAIMS_PER_NET", "300"),
        ("DNSMESH_LIMITS__UNSIGNED_CLAIMS_MAX", "500"),
    ]);
    let sender = Identity::from_private_bytes([0x42; 32]);
    let flood = |src: &str, count: usize| -> usize {
        (0..count)
            .filter(|_| {
                let one = [(fresh_claim_name(), claim_value(&sender, 3600))];
                send_from(src, n.dns[0], &unsigned_update(&one, 3600)) == ResponseCode::NoError
            })
            .count()
    };
    assert_eq!(flood("127.0.0.1", 350), 300, "one /24 holds at most unsigned_claims_per_net");
    assert_eq!(flood("127.0.0.77", 10), 0, "the same /24 from another address");
    assert_eq!(flood("127.0.1.1", 250), 200, "another /24 fills the global budget");
    assert_eq!(flood("127.0.2.1", 10), 0, "the global budget is full for everyone");
    assert_eq!(records(&n), 500);
}

#[test]
fn one_sender_gets_a_fair_share_of_a_recipients_claim_slots() {
    let n = public_node(&[]);
    let recipient = fresh_claim_name();
    let send = |src: &str, who: &Identity| {
        let one = [(recipient.clone(), claim_value(who, 3600))];
        send_from(src, n.dns[0], &unsigned_update(&one, 3600))
    };
    let attacker = Identity::from_private_bytes([0x51; 32]);
    let results: Vec<ResponseCode> = (0..20).map(|_| send("127.0.0.1", &attacker)).collect();
    let ok = results.iter().filter(|r| **r == ResponseCode::NoError).count();
    assert_eq!(ok, 4, "one key holds claim_share_per_sender claims at a name: {results:?}");
    assert!(results[4..].iter().all(|r| *r == ResponseCode::Refused), "{results:?}");
    // Fresh keys from the same /24: the network's share is taken too.
    for seed in 0x52..0x56u8 {
        let k = Identity::from_private_bytes([seed; 32]);
        assert_eq!(send("127.0.0.1", &k), ResponseCode::Refused);
        assert_eq!(send("127.0.0.9", &k), ResponseCode::Refused);
    }
    // The same key from another network: its key's share is taken.
    assert_eq!(send("127.0.3.1", &attacker), ResponseCode::Refused);
    // A real sender elsewhere still lands, and resolvers see it.
    let legit = Identity::from_private_bytes([0x60; 32]);
    let v = claim_value(&legit, 300);
    let one = [(recipient.clone(), v.clone())];
    assert_eq!(
        send_from("127.0.2.1", n.dns[0], &unsigned_update(&one, 300)),
        ResponseCode::NoError
    );
    let stored = txt_at(n.dns[0], &recipient);
    assert!(stored.contains(&v), "the legitimate claim is served");
    assert_eq!(stored.len(), 5);
}

#[test]
fn claim_max_ttl_and_receiver_only_claims() {
    let n = public_node(&[
        ("DNSMESH_DNS__CLAIM_MAX_TTL", "600"),
        ("DNSMESH_DNS__RECEIVER_CLAIM_NOTIFICATIONS", "true"),
    ]);
    let (alice, _) = register(&n, "alice", 1, true);
    let own = names::claim(0, &keys::user_id(&alice.x25519_public()), ZONE);
    let sender = Identity::from_private_bytes([0x70; 32]);
    let send = |name: &str, life: u64, ttl: u32| {
        let one = [(name.to_string(), claim_value(&sender, life))];
        send_from("127.0.0.1", n.dns[0], &unsigned_update(&one, ttl))
    };
    // For a registered recipient, within claim_max_ttl: stored, TTL capped at 600.
    assert_eq!(send(&own, 500, 3000), ResponseCode::NoError);
    let body = serde_json::json!({"names": [own]}).to_string();
    let (s, out) = http(&n.url(), "POST", "/v1/sync/pull", Some(SYNC), &body).unwrap();
    assert_eq!(s, 200, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ttl = v["records"][0]["ttl"].as_u64().unwrap();
    assert!((1..=600).contains(&ttl), "stored TTL {ttl} is capped by claim_max_ttl");
    // A claim living longer than claim_max_ttl: REFUSED.
    assert_eq!(send(&own, 3600, 300), ResponseCode::Refused);
    // A recipient not registered here: REFUSED in receiver-only mode.
    assert_eq!(send(&fresh_claim_name(), 300, 300), ResponseCode::Refused);
    assert_eq!(txt_at(n.dns[0], &own).len(), 1);
}

#[test]
fn replayed_signed_update_is_refused() {
    let n = public_node(&[]);
    let (_, a) = register(&n, "alice", 1, true);
    let key = tsig_of(&a);
    let pk = names::prekeys("alice", ZONE);
    let add = signed_update(&key, vec![txt_rr(&pk, DNSClass::IN, "pk-replay", 300)]);
    assert_eq!(send_from("127.0.0.1", n.dns[0], &add), ResponseCode::NoError);
    assert_eq!(txt_at(n.dns[0], &pk), vec!["pk-replay"]);
    let del = signed_update(&key, vec![txt_rr(&pk, DNSClass::NONE, "pk-replay", 0)]);
    assert_eq!(send_from("127.0.0.1", n.dns[0], &del), ResponseCode::NoError);
    assert!(txt_at(n.dns[0], &pk).is_empty());
    // The captured add, sent again within the fudge window: refused, nothing re-added.
    assert_eq!(send_from("127.0.0.1", n.dns[0], &add), ResponseCode::Refused);
    assert_eq!(send_from("127.0.1.1", n.dns[0], &add), ResponseCode::Refused);
    assert!(txt_at(n.dns[0], &pk).is_empty(), "a replay must not undo the owner's delete");
    // A freshly signed UPDATE with the same content is fine.
    let again = signed_update(&key, vec![txt_rr(&pk, DNSClass::IN, "pk-replay", 300)]);
    assert_eq!(send_from("127.0.0.1", n.dns[0], &again), ResponseCode::NoError);
}

#[test]
fn signed_updates_are_charged_per_record() {
    // Default per-key bucket: 20 records/s, burst 200.
    let n = public_node(&[]);
    let (alice, a) = register(&n, "alice", 1, true);
    let key = tsig_of(&a);
    let mb = names::mailbox_hash(&keys::user_id(&alice.x25519_public()));
    let batch = |tag: &str| -> Vec<Record> {
        (0..150)
            .map(|i| txt_rr(&format!("{tag}{}.mb-{mb}.{ZONE}", i / 50), DNSClass::IN, "v", 300))
            .collect()
    };
    assert_eq!(
        send_from("127.0.0.1", n.dns[0], &signed_update(&key, batch("a"))),
        ResponseCode::NoError
    );
    // 50 tokens left: another 150 records are refused, whatever the message count.
    assert_eq!(
        send_from("127.0.0.1", n.dns[0], &signed_update(&key, batch("b"))),
        ResponseCode::Refused
    );
    assert!(txt_at(n.dns[0], &format!("b0.mb-{mb}.{ZONE}")).is_empty());
}

fn live_tombstones(n: &Node) -> usize {
    let (s, body) = http(&n.url(), "GET", "/v1/sync/tombstones?after=0", Some(SYNC), "").unwrap();
    assert_eq!(s, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["tombstones"].as_array().unwrap().len()
}

#[test]
fn mass_deletes_from_one_key_leave_bounded_tombstones() {
    // Per-record key and IP buckets wide open: the delete budget and the cap must bind.
    let n = public_node(&[
        ("DNSMESH_LIMITS__UPDATE_KEY_RATE", "100000"),
        ("DNSMESH_LIMITS__UPDATE_KEY_BURST", "100000"),
        ("DNSMESH_LIMITS__UPDATE_RATE", "100000"),
        ("DNSMESH_LIMITS__UPDATE_BURST", "100000"),
        ("DNSMESH_LIMITS__TOMBSTONES_PER_KEY", "300"),
        ("DNSMESH_LIMITS__MAX_TOMBSTONES", "200"),
    ]);
    let (alice, a) = register(&n, "alice", 1, true);
    let key = tsig_of(&a);
    let mb = names::mailbox_hash(&keys::user_id(&alice.x25519_public()));
    let values: Vec<(String, String)> =
        (0..1000).map(|i| (format!("t{}.mb-{mb}.{ZONE}", i / 50), format!("v{i}"))).collect();
    for chunk in values.chunks(100) {
        let rrs = chunk.iter().map(|(nm, v)| txt_rr(nm, DNSClass::IN, v, 3600)).collect();
        assert_eq!(
            send_from("127.0.0.1", n.dns[0], &signed_update(&key, rrs)),
            ResponseCode::NoError
        );
    }
    let mut deleted = 0;
    for chunk in values.chunks(50) {
        let rrs = chunk.iter().map(|(nm, v)| txt_rr(nm, DNSClass::NONE, v, 0)).collect();
        if send_from("127.0.0.1", n.dns[0], &signed_update(&key, rrs)) == ResponseCode::NoError {
            deleted += chunk.len();
        }
    }
    eprintln!("deletes accepted from one key: {deleted} of {}", values.len());
    assert!(deleted <= 300, "tombstones_per_key bounds one key's deletes ({deleted})");
    assert!(deleted >= 250, "deletes within the budget go through ({deleted})");
    // The store keeps at most max_tombstones (the soonest-expiring go at the next sweep).
    assert!(
        eventually(100, Duration::from_millis(100), || live_tombstones(&n) <= 200),
        "tombstones capped: {}",
        live_tombstones(&n)
    );
    // Idle CPU with the tombstones in place (the sweep no longer scans them every second).
    let pid = n.child.id();
    let c0 = cpu_secs(pid);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let idle = (cpu_secs(pid) - c0) / t0.elapsed().as_secs_f64() * 100.0;
    eprintln!("idle CPU after the burst: {idle:.1} %");
}

/// Measurement, not a check (run by hand, `--ignored --nocapture`): idle CPU of a node
/// holding `TOMB_COUNT` (default 50,000) tombstones from one key. Extra node settings come
/// from the environment (e.g. `DNSMESH_LIMITS__TOMBSTONES_PER_KEY=1000000`
/// `DNSMESH_LIMITS__MAX_TOMBSTONES=1000000` to let them all in).
#[test]
#[ignore]
fn measure_idle_cpu_with_many_tombstones() {
    let count: usize =
        std::env::var("TOMB_COUNT").ok().and_then(|v| v.parse().ok()).unwrap_or(50_000);
    let n = public_node(&[
        ("DNSMESH_LIMITS__UPDATE_KEY_RATE", "1000000"),
        ("DNSMESH_LIMITS__UPDATE_KEY_BURST", "1000000"),
        ("DNSMESH_LIMITS__UPDATE_RATE", "1000000"),
        ("DNSMESH_LIMITS__UPDATE_BURST", "1000000"),
    ]);
    let (alice, a) = register(&n, "alice", 1, true);
    let key = tsig_of(&a);
    let mb = names::mailbox_hash(&keys::user_id(&alice.x25519_public()));
    let values: Vec<(String, String)> =
        (0..count).map(|i| (format!("t{}.mb-{mb}.{ZONE}", i / 60), format!("v{i}"))).collect();
    for chunk in values.chunks(400) {
        let rrs = chunk.iter().map(|(nm, v)| txt_rr(nm, DNSClass::IN, v, 3600)).collect();
        send_from("127.0.0.1", n.dns[0], &signed_update(&key, rrs));
    }
    let mut deleted = 0;
    for chunk in values.chunks(400) {
        let rrs = chunk.iter().map(|(nm, v)| txt_rr(nm, DNSClass::NONE, v, 0)).collect();
        if send_from("127.0.0.1", n.dns[0], &signed_update(&key, rrs)) == ResponseCode::NoError {
            deleted += chunk.len();
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    let pid = n.child.id();
    let c0 = cpu_secs(pid);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(10));
    let idle = (cpu_secs(pid) - c0) / t0.elapsed().as_secs_f64() * 100.0;
    eprintln!(
        "{deleted} deletes accepted of {count}; live tombstones (first page) {}; idle CPU {idle:.1} %",
        live_tombstones(&n)
    );
}

#[test]
fn new_limits_are_validated_naming_their_key() {
    use dnsmesh::node::config::{Overrides, Settings};
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    for (section, key, value) in [
        ("dns", "claim_max_ttl", "0"),
        ("limits", "unsigned_claims_max", "0"),
        ("limits", "unsigned_claims_per_net", "0"),
        ("limits", "claim_share_per_sender", "0"),
        ("limits", "max_tombstones", "0"),
        ("limits", "tombstones_per_key", "0"),
        ("limits", "update_key_rate", "0.0"),
    ] {
        std::fs::write(&p, format!("[{section}]\n{key} = {value}\n")).unwrap();
        let err = Settings::load_with_env(&p, true, &Overrides::default(), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("{section}.{key}")), "{err}");
    }
    let s = Settings::load_with_env(
        &p.with_file_name("none.toml"),
        false,
        &Overrides::default(),
        false,
    )
    .unwrap();
    assert_eq!(s.dns.claim_max_ttl, 86_400);
    assert!(!s.dns.receiver_claim_notifications);
    assert_eq!(
        (
            s.limits.unsigned_claims_max,
            s.limits.unsigned_claims_per_net,
            s.limits.claim_share_per_sender
        ),
        (100_000, 1000, 4)
    );
}
