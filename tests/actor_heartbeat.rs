//! The heartbeat actor on its own, in process, against a small UDP DNS server in the test
//! serving a seed zone's `_dnsmesh-heartbeat` and `_dnsmesh-seen` RRsets. Time comes from
//! a manual clock, so the ±300 s window for first-hand wires, the expiry of second-hand
//! ones and the peer timeout are checked without sleeping; ticks are driven by `TickNow`.
#![cfg(feature = "net")]

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use dnsmesh::actors::heartbeat::{GetPeers, HeartbeatActor, HeartbeatOptions, PeerView, TickNow};
use dnsmesh::actors::store::{Get, StoreActor};
use dnsmesh::clock::Clock;
use dnsmesh::proto::records::heartbeat::Heartbeat;
use ed25519_dalek::SigningKey;
use hickory_proto::op::{Message, MessageType, OpCode};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{Name, RData, Record};

const T0: u64 = 1_800_000_000;
const ZONE: &str = "home.test";
const SEED: &str = "seed.test";

fn wire(seed: u8, endpoint: &str, ts: u64, exp: u64) -> String {
    let key = SigningKey::from_bytes(&[seed; 32]);
    Heartbeat {
        endpoint: endpoint.into(),
        operator_spk: key.verifying_key().to_bytes(),
        version: "0.7.5".into(),
        capabilities: 0,
        claim_provider_zone: String::new(),
        ts,
        exp,
    }
    .sign(&key)
    .unwrap()
}

/// A UDP DNS server answering TXT queries from `zone_data` (owner → values); it counts
/// the queries it answered.
fn dns_server(zone_data: Vec<(String, Vec<String>)>, asked: Arc<Mutex<usize>>) -> String {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = s.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            let Ok((n, from)) = s.recv_from(&mut buf) else { continue };
            let Ok(q) = Message::from_vec(&buf[..n]) else { continue };
            let Some(question) = q.queries.first().cloned() else { continue };
            let mut r = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
            r.metadata.authoritative = true;
            let qname = question.name().to_ascii().trim_end_matches('.').to_ascii_lowercase();
            for (owner, values) in &zone_data {
                if *owner == qname {
                    for v in values {
                        let parts: Vec<&[u8]> = v.as_bytes().chunks(255).collect();
                        r.add_answer(Record::from_rdata(
                            Name::from_str(&format!("{owner}.")).unwrap(),
                            60,
                            RData::TXT(TXT::from_bytes(parts)),
                        ));
                    }
                }
            }
            r.add_query(question);
            *asked.lock().unwrap() += 1;
            let _ = s.send_to(&r.to_vec().unwrap(), from);
        }
    });
    format!("{SEED}@{addr}")
}

fn opts(seed: String) -> HeartbeatOptions {
    HeartbeatOptions {
        zone: ZONE.into(),
        self_endpoint: "https://home.example".into(),
        version: "test".into(),
        claim_provider: false,
        seeds: vec![seed],
        resolvers: vec![],
        interval: Duration::from_secs(3600),
        ttl: 600,
        peer_timeout: 100,
        max_zones: 10,
        allow_private_endpoints: false,
        seed_urls: vec![],
        seed_refresh: Duration::from_secs(3600),
        seen_max_rows: 100,
        max_new_per_seed: 10,
    }
}

async fn peers_until(hb: &Addr<HeartbeatActor>, f: impl Fn(&[PeerView]) -> bool) -> Vec<PeerView> {
    for _ in 0..500 {
        let mut p = hb.send(GetPeers).await.unwrap();
        p.sort_by(|a, b| a.endpoint.cmp(&b.endpoint));
        if f(&p) {
            return p;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("peers never reached the condition: {:?}", hb.send(GetPeers).await);
}

#[test]
fn harvests_seed_zones_within_the_time_window_and_republishes() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let fresh = wire(1, "https://fresh.example", T0 - 10, T0 + 3000);
    let stale = wire(2, "https://stale.example", T0 - 1000, T0 + 3000);
    let second_hand = wire(3, "https://second.example", T0 - 1000, T0 + 1000);
    let asked = Arc::new(Mutex::new(0));
    let seed = dns_server(
        vec![
            (format!("_dnsmesh-heartbeat.{SEED}"), vec![fresh.clone(), stale.clone()]),
            (format!("_dnsmesh-seen.{SEED}"), vec![second_hand.clone()]),
        ],
        asked.clone(),
    );
    actix::System::new().block_on(async {
        let store = StoreActor::open(dir.path(), Duration::from_secs(3600))
            .unwrap()
            .with_clock(clock.clone())
            .start();
        let db = dnsmesh::actors::actor_db::open(dir.path(), "heartbeat").unwrap();
        let key = SigningKey::from_bytes(&[9; 32]);
        let hb = HeartbeatActor::new(opts(seed), key, store.clone(), &db, None)
            .unwrap()
            .with_clock(clock.clone())
            .start();
        // The first tick (at start): the fresh first-hand wire and the second-hand one
        // (older than 300 s but unexpired) are taken; the stale first-hand one is not.
        let p = peers_until(&hb, |p| p.len() == 2).await;
        assert_eq!(p[0].endpoint, "https://fresh.example");
        assert_eq!((p[0].age_secs, p[0].up), (10, true));
        assert_eq!(p[1].endpoint, "https://second.example");
        assert_eq!((p[1].age_secs, p[1].up), (1000, false), "older than peer_timeout");
        // Our own wire and the seen set are published through the store.
        let own = store.send(Get { name: format!("_dnsmesh-heartbeat.{ZONE}") }).await.unwrap();
        let own = own.unwrap();
        assert_eq!(own.len(), 1);
        let hbv = Heartbeat::parse_and_verify(&own[0].0, T0).expect("our wire verifies at T0");
        assert_eq!((hbv.endpoint.as_str(), hbv.ts), ("https://home.example", T0));
        let mut seen: Vec<String> = store
            .send(Get { name: format!("_dnsmesh-seen.{ZONE}") })
            .await
            .unwrap()
            .unwrap()
            .into_iter()
            .map(|(v, _)| v)
            .collect();
        seen.sort();
        let mut want = vec![fresh.clone(), second_hand.clone()];
        want.sort();
        assert_eq!(seen, want);

        // Time passes: ages follow the clock; past its expiry the second-hand peer is
        // dropped at the next tick (sent as a message), the fresh one stays.
        clock.advance(Duration::from_secs(1001));
        let before = *asked.lock().unwrap();
        hb.do_send(TickNow);
        let p = peers_until(&hb, |p| p.len() == 1).await;
        assert!(*asked.lock().unwrap() > before, "TickNow asked the seed zone again");
        assert_eq!(p[0].endpoint, "https://fresh.example");
        assert_eq!((p[0].age_secs, p[0].up), (1011, false));
    });
    // The seen peer is kept in the actor's own database across restarts.
    let db = dnsmesh::actors::actor_db::open(dir.path(), "heartbeat").unwrap();
    let rows = db.open_tree("heartbeats").unwrap();
    assert_eq!(rows.len(), 1);
}
