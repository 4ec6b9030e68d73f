//! The DNS actor on its own, in process, driven by its messages: the view built from
//! `ZoneDelta`s answers over UDP and TCP (the same bytes), a keyring from
//! `KeyringChanged` admits a TSIG-signed UPDATE inside the time window of the injected
//! clock (and refuses it outside), and the UPDATE reaches the store as an `Apply`.
#![cfg(feature = "net")]

mod common;

use std::str::FromStr;
use std::time::Duration;

use actix::prelude::*;
use common::{parse, query, tcp_exchange, udp_exchange};
use dnsmesh::actors::dns::{DnsActor, DnsOptions, KeyEntry, Keyring, KeyringChanged, WhenReady};
use dnsmesh::actors::store::{Get, StoreActor, ZoneDelta};
use dnsmesh::clock::Clock;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{Name, RData, Record, RecordType, TSigner};

const ZONE: &str = "mesh.test";
const T0: u64 = 1_800_000_000;

fn opts() -> DnsOptions {
    DnsOptions {
        zone: ZONE.into(),
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        ttl: 60,
        ns: vec![format!("ns1.{ZONE}")],
        soa_rname: format!("hostmaster.{ZONE}"),
        apex_addresses: vec![],
        update: true,
        claim_provider: false,
        max_ttl: 86400,
        max_value_bytes: 4096,
        max_values_per_name: 64,
        claim_rate: 100.0,
        claim_burst: 100.0,
        update_rate: 100.0,
        update_burst: 100.0,
        key_rate: 100.0,
        key_burst: 100.0,
        mailbox_rate: 100.0,
        mailbox_burst: 100.0,
        limit_loopback: false,
        tcp_timeout: Duration::from_secs(5),
        rrl: None,
        max_udp_payload: 1232,
        tcp_max_connections: 16,
        tcp_max_per_ip: 16,
        tcp_lifetime: Duration::from_secs(30),
        claim_max_ttl: 600,
        receiver_claims: false,
        claim_limits: dnsmesh::policy::claims::ClaimLimits {
            max_total: 100,
            per_net: 100,
            share_per_sender: 10,
        },
        tombstones_per_key: 100,
        tls_listen: vec![],
        tls: None,
        transfer: Default::default(),
        dnssec: None,
        udp_threads: 1,
        image_path: None,
    }
}

async fn udp(addr: std::net::SocketAddr, q: Vec<u8>) -> Vec<u8> {
    tokio::task::spawn_blocking(move || udp_exchange(addr, &q)).await.unwrap()
}

async fn tcp(addr: std::net::SocketAddr, q: Vec<u8>) -> Vec<u8> {
    tokio::task::spawn_blocking(move || tcp_exchange(addr, &[q]).remove(0)).await.unwrap()
}

fn txts(reply: &[u8]) -> Vec<String> {
    let mut v: Vec<String> = parse(reply)
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(t) => {
                Some(t.txt_data.iter().map(|s| String::from_utf8_lossy(s)).collect::<String>())
            }
            _ => None,
        })
        .collect();
    v.sort();
    v
}

fn delta(name: &str, values: &[&str]) -> ZoneDelta {
    ZoneDelta {
        changes: vec![(name.to_string(), values.iter().map(|v| v.to_string()).collect())],
        last_stored_ms: T0 * 1000,
        snapshot_complete: false,
        local: true,
    }
}

#[test]
fn view_from_zone_deltas_answers_udp_and_tcp_alike() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    actix::System::new().block_on(async {
        let store = StoreActor::open(dir.path(), Duration::from_secs(3600))
            .unwrap()
            .with_clock(clock.clone())
            .start();
        let dns = DnsActor::bind(opts(), store, None).unwrap().with_clock(clock.clone());
        let addr = dns.bound()[0];
        let dns = dns.start();
        dns.send(WhenReady).await.unwrap();
        let name = format!("a.{ZONE}");
        let q = || query(&format!("A.{ZONE}"), RecordType::TXT, Some(1232));
        // Before any delta: NXDOMAIN with the SOA.
        let r = udp(addr, q()).await;
        assert_eq!(parse(&r).metadata.response_code, ResponseCode::NXDomain);
        // The view follows the deltas sent to the actor.
        dns.send(delta(&name, &["hello", "world"])).await.unwrap();
        assert_eq!(txts(&udp(addr, q()).await), ["hello", "world"]);
        dns.send(delta(&name, &["world"])).await.unwrap();
        assert_eq!(txts(&udp(addr, q()).await), ["world"]);
        // The same query over UDP and TCP: the same answer bytes (the ID aside, which is
        // the query's).
        for qn in [format!("a.{ZONE}"), format!("nope.{ZONE}"), ZONE.to_string()] {
            for t in [RecordType::TXT, RecordType::SOA, RecordType::NS, RecordType::A] {
                let q = query(&qn, t, Some(1232));
                assert_eq!(udp(addr, q.clone()).await, tcp(addr, q).await, "{qn} {t}");
            }
        }
        // An empty value set removes the name.
        dns.send(delta(&name, &[])).await.unwrap();
        let r = udp(addr, q()).await;
        assert_eq!(parse(&r).metadata.response_code, ResponseCode::NXDomain);
    });
}

fn signed_update(signer: &TSigner, name: &str, value: &str, time: u64) -> Vec<u8> {
    let mut m = Message::new(0x4242, MessageType::Query, OpCode::Update);
    let mut zq = Query::new();
    zq.set_name(Name::from_str(&format!("{ZONE}.")).unwrap()).set_query_type(RecordType::SOA);
    m.add_query(zq);
    m.add_authority(Record::from_rdata(
        Name::from_str(&format!("{name}.")).unwrap(),
        300,
        RData::TXT(TXT::from_bytes(vec![value.as_bytes()])),
    ));
    m.finalize(signer, time).unwrap();
    m.to_vec().unwrap()
}

#[test]
fn tsig_update_is_timed_by_the_injected_clock_and_applied_through_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    actix::System::new().block_on(async {
        // The store on a clock of its own: only the DNS actor's time moves here.
        let store = StoreActor::open(dir.path(), Duration::from_secs(3600))
            .unwrap()
            .with_clock(Clock::manual(T0))
            .start();
        let dns = DnsActor::bind(opts(), store.clone(), None).unwrap().with_clock(clock.clone());
        let addr = dns.bound()[0];
        let dns = dns.start();
        dns.send(WhenReady).await.unwrap();
        let key_name = format!("alice.{ZONE}.");
        let secret = vec![7u8; 32];
        let signer = || {
            TSigner::new(
                secret.clone(),
                TsigAlgorithm::HmacSha256,
                Name::from_str(&key_name).unwrap(),
                300,
            )
            .unwrap()
        };
        let mut ring = Keyring::new();
        ring.insert(
            key_name.clone(),
            KeyEntry { signer: signer(), scope: vec![format!("dmp.alice.{ZONE}")], expires_at: 0 },
        );
        dns.send(KeyringChanged(ring)).await.unwrap();
        let name = format!("dmp.alice.{ZONE}");
        // Signed at the actor's (manual) time: applied, and the store has it.
        let r = udp(addr, signed_update(&signer(), &name, "v1", T0)).await;
        assert_eq!(parse(&r).metadata.response_code, ResponseCode::NoError);
        let got = store.send(Get { name: name.clone() }).await.unwrap().unwrap();
        assert_eq!(got, [("v1".to_string(), 300)]);
        // Out of scope: refused, nothing applied.
        let other = format!("dmp.bob.{ZONE}");
        let r = udp(addr, signed_update(&signer(), &other, "v1", T0)).await;
        assert_eq!(parse(&r).metadata.response_code, ResponseCode::Refused);
        assert!(store.send(Get { name: other }).await.unwrap().unwrap().is_empty());
        // The clock moves past the fudge: the same signing time is now refused (BADTIME,
        // NOTAUTH), nothing applied.
        clock.advance(Duration::from_secs(301));
        let r = udp(addr, signed_update(&signer(), &name, "v2", T0)).await;
        assert_eq!(parse(&r).metadata.response_code, ResponseCode::NotAuth);
        let got = store.send(Get { name: name.clone() }).await.unwrap().unwrap();
        assert_eq!(got.len(), 1, "{got:?}");
        // Signed at the new time: accepted again.
        let r = udp(addr, signed_update(&signer(), &name, "v2", T0 + 301)).await;
        assert_eq!(parse(&r).metadata.response_code, ResponseCode::NoError);
        assert_eq!(store.send(Get { name }).await.unwrap().unwrap().len(), 2);
    });
}
