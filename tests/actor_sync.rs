//! The sync actor on its own, in process, against a small peer HTTP server in the test
//! (serving `/v1/sync/digest` and `/v1/sync/pull`): it pages the digest to the end, pulls
//! only what it lacks, re-verifies each value, skips (never stalls on) bad rows, writes
//! through the store, persists its watermark and resumes from it, and tells its peers
//! about local writes (`ZoneDelta{local}` → `POST /v1/sync/notify`).
#![cfg(feature = "net")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use dnsmesh::actors::store::{Apply, Get, Op, Origin, StoreActor, ZoneDelta};
use dnsmesh::actors::sync::{GetSyncStats, PullNow, SyncActor, SyncOptions};
use dnsmesh::clock::Clock;

const T0: u64 = 1_800_000_000;
const TOKEN: &str = "sync-secret";

/// One request the peer saw: method, path (with query), bearer header, body.
type Seen = Arc<Mutex<Vec<(String, String, String, String)>>>;

fn hash(v: &str) -> String {
    hex::encode(dnsmesh::proto::keys::sha256(v.as_bytes()))
}

/// The peer's rows: (stamp ms, name, value).
fn rows() -> Vec<(u64, &'static str, &'static str)> {
    let ms = T0 * 1000;
    vec![
        (ms - 5000, "a.peer.test", "alpha"),
        (ms - 4000, "b.peer.test", "beta"),
        (ms - 3000, "id-0123456789abcdef.peer.test", "not a DMP record"), // fails verification
        (ms - 2000, "c.peer.test", "gamma"),
        (ms + 3_600_000, "d.peer.test", "from the future"), // stamp too far ahead
    ]
}

/// Serve a digest in pages of two (cursor `ts:name:hash`), pull by names, 404 elsewhere.
fn peer(seen: Seen) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            if r.read_line(&mut line).is_err() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let method = parts.next().unwrap_or("").to_string();
            let path = parts.next().unwrap_or("").to_string();
            let (mut len, mut auth) = (0usize, String::new());
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                let (k, v) = h.split_once(':').unwrap_or(("", ""));
                match k.to_ascii_lowercase().as_str() {
                    "content-length" => len = v.trim().parse().unwrap_or(0),
                    "authorization" => auth = v.trim().to_string(),
                    _ => {}
                }
            }
            let mut body = vec![0u8; len];
            let _ = r.read_exact(&mut body);
            let body = String::from_utf8_lossy(&body).to_string();
            seen.lock().unwrap().push((method.clone(), path.clone(), auth, body.clone()));
            let reply = if path.starts_with("/v1/sync/digest") {
                let cursor = path.split("cursor=").nth(1).unwrap_or("0::").split('&').next();
                let c: Vec<&str> = cursor.unwrap_or("0::").splitn(3, ':').collect();
                let after = (c[0].parse::<u64>().unwrap_or(0), c[1].to_string(), c[2].to_string());
                let rest: Vec<_> = rows()
                    .into_iter()
                    .filter(|(ts, n, v)| (*ts, n.to_string(), hash(v)) > after)
                    .collect();
                let page: Vec<_> = rest
                    .iter()
                    .take(2)
                    .map(|(ts, n, v)| serde_json::json!({"name": n, "hash": hash(v), "ts": ts, "ttl": 600}))
                    .collect();
                Some(serde_json::json!({"records": page, "has_more": rest.len() > 2}))
            } else if path == "/v1/sync/pull" {
                let names: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                let names: Vec<&str> = names["names"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|n| n.as_str()).collect())
                    .unwrap_or_default();
                let recs: Vec<_> = rows()
                    .into_iter()
                    .filter(|(_, n, _)| names.contains(n))
                    .map(|(_, n, v)| serde_json::json!({"name": n, "value": v, "ttl": 600}))
                    .collect();
                Some(serde_json::json!({ "records": recs }))
            } else {
                None
            };
            let resp = match reply {
                Some(j) => {
                    let b = j.to_string();
                    format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}", b.len())
                }
                None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_string(),
            };
            let _ = conn.write_all(resp.as_bytes());
        }
    });
    url
}

fn opts(peer: &str) -> SyncOptions {
    SyncOptions {
        peers: vec![peer.to_string()],
        token: TOKEN.into(),
        interval: Duration::from_secs(3600),
        max_ttl: 300,
        max_value_bytes: 4096,
        max_values_per_name: 64,
        operator_spk: None,
    }
}

/// Poll the sync stats until `f` holds (10 s at most).
async fn until(sync: &Addr<SyncActor>, f: impl Fn(&dnsmesh::actors::sync::PeerStats) -> bool) {
    for _ in 0..500 {
        if sync.send(GetSyncStats).await.unwrap().first().is_some_and(&f) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("sync stats never reached the condition: {:?}", sync.send(GetSyncStats).await);
}

#[test]
fn pulls_pages_verifies_persists_the_watermark_and_notifies() {
    let dir = tempfile::tempdir().unwrap();
    let seen: Seen = Arc::default();
    let url = peer(seen.clone());
    let clock = Clock::manual(T0);
    actix::System::new().block_on(async {
        let store = StoreActor::open(dir.path(), Duration::from_secs(3600))
            .unwrap()
            .with_clock(clock.clone())
            .start();
        // Already held with a fresh TTL: not pulled again.
        store
            .send(Apply {
                ops: vec![Op::Add { name: "b.peer.test".into(), value: "beta".into(), ttl: 600 }],
                max_values: 0,
                origin: Origin::Local,
            })
            .await
            .unwrap()
            .unwrap();
        let db = dnsmesh::actors::actor_db::open(dir.path(), "sync").unwrap();
        let sync = SyncActor::new(opts(&url), store.clone(), &db, None)
            .unwrap()
            .with_clock(clock.clone())
            .start();
        // Started: one pass over every page.
        until(&sync, |s| s.last_success == T0).await;
        let st = sync.send(GetSyncStats).await.unwrap().remove(0);
        assert_eq!((st.records_pulled, st.records_rejected, st.errors), (2, 2, 0), "{st:?}");
        for (name, want) in [("a.peer.test", "alpha"), ("c.peer.test", "gamma")] {
            let got = store.send(Get { name: name.into() }).await.unwrap().unwrap();
            // The local cap on TTL applies to replicated values.
            assert_eq!(got, [(want.to_string(), 300)], "{name}");
        }
        for name in ["id-0123456789abcdef.peer.test", "d.peer.test"] {
            assert!(store.send(Get { name: name.into() }).await.unwrap().unwrap().is_empty());
        }
        {
            let seen = seen.lock().unwrap();
            let digests = seen.iter().filter(|r| r.1.starts_with("/v1/sync/digest")).count();
            assert_eq!(digests, 3, "five rows in pages of two");
            assert!(seen.iter().all(|r| r.2 == format!("Bearer {TOKEN}")), "token sent");
            let pulls: Vec<&String> =
                seen.iter().filter(|r| r.1 == "/v1/sync/pull").map(|r| &r.3).collect();
            assert!(pulls.iter().all(|b| !b.contains("b.peer.test")), "held rows not pulled");
        }
        // The next pass resumes after the last row (nothing new).
        seen.lock().unwrap().clear();
        clock.advance(Duration::from_secs(10));
        sync.send(PullNow).await.unwrap();
        until(&sync, |s| s.last_success == T0 + 10).await;
        let last = rows().pop().unwrap();
        let cursor = format!("cursor={}:{}:{}", last.0, last.1, hash(last.2));
        let first = seen.lock().unwrap()[0].1.clone();
        assert!(first.contains(&cursor), "{first} resumes at {cursor}");
        // A local write: the peer is told to pull.
        sync.send(ZoneDelta {
            changes: vec![("x.peer.test".into(), vec!["v".into()])],
            last_stored_ms: 0,
            snapshot_complete: false,
            local: true,
        })
        .await
        .unwrap();
        let mut notified = false;
        for _ in 0..500 {
            if seen.lock().unwrap().iter().any(|r| r.0 == "POST" && r.1 == "/v1/sync/notify") {
                notified = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(notified, "POST /v1/sync/notify after a local write");
    });
    // The watermark survived: a new actor starts from it.
    let db = dnsmesh::actors::actor_db::open(dir.path(), "sync").unwrap();
    let wm: serde_json::Value = serde_json::from_slice(
        &db.open_tree("sync").unwrap().get(url.as_bytes()).unwrap().unwrap(),
    )
    .unwrap();
    let last = rows().pop().unwrap();
    assert_eq!(wm["ts"], last.0);
    assert_eq!(wm["name"], last.1);
}
