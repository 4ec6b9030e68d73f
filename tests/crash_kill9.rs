//! Crash safety under load: writers publish over HTTP and over TSIG-signed DNS UPDATE
//! while the node is killed with SIGKILL at random moments; after every restart the store
//! opens cleanly and every acknowledged write is served. `CRASH_CYCLES` sets the number of
//! cycles (default 8).
#![cfg(feature = "net")]

mod common;

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use dnsmesh::proto::{keys::Identity, registration};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{Name, RData, Record, RecordType, TSigner};

const OP: &str = "op";

fn tsig_key(node: &Node) -> (String, Vec<u8>) {
    let id = Identity::from_private_bytes([77; 32]);
    let (_, body) = http(&node.url(), "GET", "/v1/registration/challenge", None, "").unwrap();
    let ch: serde_json::Value = serde_json::from_str(&body).unwrap();
    let challenge: [u8; 32] =
        hex::decode(ch["challenge"].as_str().unwrap()).unwrap().try_into().unwrap();
    let subject = "crash@mesh.test";
    let sig = registration::sign_registration(
        id.signing_key(),
        &challenge,
        subject,
        ch["node"].as_str().unwrap(),
    );
    let req = serde_json::json!({"subject": subject, "ed25519_spk": hex::encode(id.ed25519_public()),
        "challenge": hex::encode(challenge), "signature": hex::encode(sig)});
    let (s, body) =
        http(&node.url(), "POST", "/v1/registration/tsig-confirm", None, &req.to_string()).unwrap();
    assert_eq!(s, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    (
        v["tsig_key_name"].as_str().unwrap().into(),
        hex::decode(v["tsig_secret_hex"].as_str().unwrap()).unwrap(),
    )
}

fn update(server: std::net::SocketAddr, key: &(String, Vec<u8>), owner: &str, value: &str) -> bool {
    let signer = TSigner::new(
        key.1.clone(),
        TsigAlgorithm::HmacSha256,
        Name::from_str(&key.0).unwrap(),
        300,
    )
    .unwrap();
    let mut m = Message::new(rand_id(), MessageType::Query, OpCode::Update);
    let mut zq = Query::new();
    zq.set_name(Name::from_str("mesh.test.").unwrap()).set_query_type(RecordType::SOA);
    m.add_query(zq);
    m.add_authority(Record::from_rdata(
        Name::from_str(&format!("{owner}.")).unwrap(),
        3600,
        RData::TXT(TXT::new(vec![value.to_string()])),
    ));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    m.finalize(&signer, now).unwrap();
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    if s.send_to(&m.to_vec().unwrap(), server).is_err() {
        return false;
    }
    let mut buf = [0u8; 4096];
    match s.recv_from(&mut buf) {
        Ok((n, _)) => Message::from_vec(&buf[..n])
            .map(|r| r.metadata.response_code == ResponseCode::NoError)
            .unwrap_or(false),
        Err(_) => false,
    }
}

#[test]
fn acknowledged_writes_survive_repeated_kill_9_under_load() {
    let cycles: usize =
        std::env::var("CRASH_CYCLES").ok().and_then(|c| c.parse().ok()).unwrap_or(8);
    let mut node = Node::start("mesh.test", &[("DNSMESH_AUTH__OPERATOR_TOKEN", OP)]);
    let key = tsig_key(&node);
    let id_name = dnsmesh::proto::names::identity("crash", "mesh.test");
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let mut seq = 0u64;
    let mut total_acked = 0;
    for cycle in 0..cycles {
        let stop = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::new();
        for w in 0..3 {
            let (stop, acked, url, dns, key, id_name) = (
                stop.clone(),
                acked.clone(),
                node.url(),
                node.dns[0],
                key.clone(),
                id_name.clone(),
            );
            let base = seq + (w as u64) * 1_000_000;
            writers.push(std::thread::spawn(move || {
                let mut i = base;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    if w < 2 {
                        let name = format!("c{cycle}-w{w}-{i}.mesh.test");
                        let body =
                            serde_json::json!({"value": format!("v{i}"), "ttl": 3600}).to_string();
                        if let Ok((201, _)) =
                            http(&url, "POST", &format!("/v1/records/{name}"), Some(OP), &body)
                        {
                            acked.lock().unwrap().push((name, format!("v{i}")));
                        }
                    } else if update(dns, &key, &id_name, &format!("u{i}")) {
                        acked.lock().unwrap().push((id_name.clone(), format!("u{i}")));
                    }
                }
            }));
        }
        seq += 10_000_000;
        // Kill at a pseudo-random moment, 50–400 ms into the load.
        let mut r = [0u8; 2];
        dnsmesh::proto::keys::random_fill(&mut r);
        std::thread::sleep(Duration::from_millis(50 + (u16::from_be_bytes(r) % 350) as u64));
        node.kill9();
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.join().unwrap();
        }
        node.restart();
        let list = acked.lock().unwrap().clone();
        let mut lost = Vec::new();
        let mut by_name: std::collections::HashMap<String, Vec<String>> = Default::default();
        for (name, value) in &list {
            let got = by_name.entry(name.clone()).or_insert_with(|| txt_at(node.dns[0], name));
            if !got.contains(value) {
                lost.push((name.clone(), value.clone()));
            }
        }
        assert!(
            lost.is_empty(),
            "cycle {cycle}: {} acknowledged writes lost, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(5)]
        );
        total_acked = list.len();
    }
    eprintln!("{cycles} kill -9 cycles, {total_acked} acknowledged writes, 0 lost");
    assert!(total_acked > 0);
}
