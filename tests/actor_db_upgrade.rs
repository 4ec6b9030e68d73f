//! Upgrade from the shared-database layout: older nodes kept the auth, sync and heartbeat
//! trees in the store's sled database (`data_dir/sled`). A node started on such a data
//! dir moves them into each actor's own database (`data_dir/auth`, `data_dir/sync`,
//! `data_dir/heartbeat`) and keeps every token, TSIG key, watermark and seen peer.

#![cfg(feature = "net")]

mod common;

use common::{http, publish, Node};
use dnsmesh::proto::{keys, seal};

const OP: &str = "op-secret-upgrade";
const ZONE: &str = "up.test";
const PEER: &str = "http://127.0.0.1:9";

#[test]
fn old_layout_keeps_tokens_tsig_keys_watermarks_and_seen_peers() {
    let mut node = Node::start(
        ZONE,
        &[
            ("DNSMESH_AUTH__OPERATOR_TOKEN", OP),
            ("DNSMESH_HEARTBEAT__ENABLED", "true"),
            ("DNSMESH_HEARTBEAT__SELF_ENDPOINT", "https://up.test"),
            ("DNSMESH_CLUSTER__PEERS", PEER),
            ("DNSMESH_CLUSTER__SYNC_TOKEN", "sync-token-upgrade"),
        ],
    );
    assert!(node.term().success());
    let dir = node.data_dir().to_path_buf();
    // Rewrite the data dir as the old layout wrote it: no per-actor databases, every
    // tree in the store's database.
    for d in ["auth", "sync", "heartbeat"] {
        std::fs::remove_dir_all(dir.join(d)).unwrap();
    }
    let node_key: [u8; 32] = std::fs::read(dir.join("node.key")).unwrap().try_into().unwrap();
    let token = "dmp_v1_UPGRADETESTTOKEN";
    let token_hash = hex::encode(keys::sha256(token.as_bytes()));
    let key_name = format!("alice-upgrade.{ZONE}.");
    let wm = serde_json::json!({"ts": 1234, "name": "x.up.test", "hash": "ab", "tomb_ms": 7});
    let spk = hex::encode([7u8; 32]);
    let seen_endpoint = "https://peer.example";
    {
        let sled_dir = dir.join("sled");
        let db = open_as_created(&sled_dir);
        let row = serde_json::json!({
            "token_hash": token_hash, "subject": format!("alice@{ZONE}"),
            "registered_spk": spk, "issued_at": 1, "expires_at": 0, "revoked": false,
            "rate_per_sec": 100.0, "rate_burst": 100.0,
        });
        db.open_tree("tokens")
            .unwrap()
            .insert(token_hash.as_bytes(), serde_json::to_vec(&row).unwrap())
            .unwrap();
        let sealed = seal::seal(&node_key, &[9u8; 32], key_name.as_bytes());
        let row = serde_json::json!({
            "name": key_name, "sealed_secret_hex": hex::encode(sealed),
            "allowed_suffixes": [format!("dmp.alice.{ZONE}")], "subject": format!("alice@{ZONE}"),
            "registered_spk": spk, "registered_x25519_pub": "", "created_at": 1,
            "expires_at": 0, "revoked": false,
        });
        db.open_tree("tsig")
            .unwrap()
            .insert(key_name.as_bytes(), serde_json::to_vec(&row).unwrap())
            .unwrap();
        db.open_tree("sync")
            .unwrap()
            .insert(PEER.as_bytes(), serde_json::to_vec(&wm).unwrap())
            .unwrap();
        let far = 4_000_000_000u64;
        let row = serde_json::json!({
            "wire": "v=dmp1;t=heartbeat;x", "ts": far - 10, "exp": far, "endpoint": seen_endpoint,
            "zone": "peer.example", "version": "0.7.5", "caps": 0, "source": "seed.example",
        });
        db.open_tree("heartbeats")
            .unwrap()
            .insert(format!("{spk} {seen_endpoint}").as_bytes(), serde_json::to_vec(&row).unwrap())
            .unwrap();
        db.flush().unwrap();
    }

    node.restart();
    // The token still writes (a shared-pool name: any live token may publish there).
    let name = format!("slot-1.mb-{}.{ZONE}", "0123456789ab");
    assert_eq!(publish(&node, token, &name, "v=dmp1;t=x", 60), 201, "token kept");
    assert_eq!(publish(&node, "dmp_v1_WRONG", &name, "v=dmp1;t=y", 60), 401);
    // The TSIG key is still listed.
    let (s, body) = http(&node.url(), "GET", "/v1/admin/credentials", Some(OP), "").unwrap();
    assert_eq!(s, 200);
    assert!(body.contains(&key_name), "TSIG key kept: {body}");
    // The seen peer is still known.
    let (_, status) = http(&node.url(), "GET", "/status.json", Some(OP), "").unwrap();
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let peers = status["heartbeat_peers"].as_array().unwrap();
    assert!(peers.iter().any(|p| p["endpoint"] == seen_endpoint), "seen peer kept: {peers:?}");
    assert!(node.term().success());

    // On disk: the store's database no longer holds the other actors' trees; each
    // actor's own database does (the watermark unchanged: the peer never answered).
    let sled_dir = dir.join("sled");
    let db = open_as_created(&sled_dir);
    for t in ["tokens", "tsig", "sync", "heartbeats"] {
        assert!(!db.tree_names().iter().any(|n| n.as_ref() == t.as_bytes()), "{t} moved out");
    }
    drop(db);
    let sync = sled::open(dir.join("sync")).unwrap();
    let got: serde_json::Value =
        serde_json::from_slice(&sync.open_tree("sync").unwrap().get(PEER).unwrap().unwrap())
            .unwrap();
    assert_eq!(got, wm, "watermark kept");
    drop(sync);
    let auth = sled::open(dir.join("auth")).unwrap();
    assert!(auth.open_tree("tokens").unwrap().get(token_hash.as_bytes()).unwrap().is_some());
    assert!(auth.open_tree("tsig").unwrap().get(key_name.as_bytes()).unwrap().is_some());
}

/// The records database as versions before the one-copy layout wrote it: sled's default
/// 512 KiB segments, the acceptance-order (`t`) and tombstone (`d`) index rows holding
/// name NUL value (a second copy of every value), no `m:tref` marker. A node started on
/// it serves every record and tombstone as before (DNS, sync digest, sync tombstones)
/// and leaves one copy of each value in a database with its own segment size.
#[test]
fn old_records_layout_is_upgraded_once_and_keeps_every_record() {
    let sync = "sync-token-layout";
    let env = [("DNSMESH_AUTH__OPERATOR_TOKEN", OP), ("DNSMESH_CLUSTER__SYNC_TOKEN", sync)];
    let mut node = Node::start(ZONE, &env);
    let value = |i: usize| format!("v=dmp1;t=manifest;d={i:04}{}", "Q".repeat(200));
    let names: Vec<String> =
        (0..60).map(|i| format!("slot-{}.mb-{:012x}.{ZONE}", i % 10, i)).collect();
    for (i, n) in names.iter().enumerate() {
        assert_eq!(publish(&node, OP, n, &value(i), 3600), 201);
    }
    for (i, n) in names.iter().enumerate().take(5) {
        let body = serde_json::json!({ "value": value(i) }).to_string();
        let (s, b) =
            http(&node.url(), "DELETE", &format!("/v1/records/{n}"), Some(OP), &body).unwrap();
        assert!(s == 200 || s == 204, "delete: {s} {b}");
    }
    let digest_before = common::digest_set(&node, sync);
    assert_eq!(digest_before.len(), 55);
    assert!(node.term().success());

    // Rewrite the store's database in the old layout.
    let dir = node.data_dir().join("sled");
    let trees: Vec<(Vec<u8>, Vec<Row>)> = {
        let db = open_as_created(&dir);
        db.tree_names()
            .into_iter()
            .map(|t| {
                let rows = db.open_tree(&t).unwrap().iter().map(|r| r.unwrap());
                (t.to_vec(), rows.map(|(k, v)| (k.to_vec(), v.to_vec())).collect())
            })
            .collect()
    };
    std::fs::remove_dir_all(&dir).unwrap();
    let mut old_rows = 0;
    {
        let db = sled::Config::new().path(&dir).segment_size(512 * 1024).open().unwrap();
        for (t, rows) in &trees {
            let tree = db.open_tree(t).unwrap();
            for (k, v) in rows {
                if k.as_slice() == b"m:tref" {
                    continue;
                }
                let mut v = v.clone();
                if t.as_slice() == b"records" && (k[0] == b't' || k[0] == b'd') {
                    // name -> name NUL value: the row of that kind and name with this stamp.
                    let kind = if k[0] == b't' { b'r' } else { b'q' };
                    let (name, stamp) = (v.clone(), &k[1..9]);
                    let full = rows
                        .iter()
                        .find(|(rk, m)| {
                            rk[0] == kind
                                && rk[1..].starts_with(&name)
                                && rk.get(1 + name.len()) == Some(&0)
                                && &m[8..16] == stamp
                        })
                        .expect("the indexed row");
                    v = full.0[1..].to_vec();
                    old_rows += 1;
                }
                tree.insert(k, v).unwrap();
            }
        }
        db.flush().unwrap();
    }
    assert_eq!(old_rows, 60, "55 digest rows and 5 tombstones rewritten");

    node.restart();
    for (i, n) in names.iter().enumerate() {
        let want = if i < 5 { vec![] } else { vec![value(i)] };
        assert_eq!(common::txt_at(node.dns[0], n), want, "{n}");
    }
    assert_eq!(common::digest_set(&node, sync), digest_before);
    let (s, body) =
        http(&node.url(), "GET", "/v1/sync/tombstones?after=0&limit=100", Some(sync), "").unwrap();
    assert_eq!(s, 200, "{body}");
    for n in &names[..5] {
        assert!(body.contains(n.as_str()), "tombstone of {n} kept: {body}");
    }
    assert!(node.term().success());

    // On disk: one copy of each value, in a database with the node's segment size.
    assert_ne!(seg(&dir), 512 * 1024, "copied into the current segment size");
    let db = open_as_created(&dir);
    let records = db.open_tree("records").unwrap();
    assert!(records.get(b"m:tref").unwrap().is_some());
    let index: Vec<_> =
        records.iter().map(|r| r.unwrap()).filter(|(k, _)| k[0] == b't' || k[0] == b'd').collect();
    assert_eq!(index.len(), 60);
    assert!(index.iter().all(|(_, v)| !v.contains(&0)), "index rows hold the name only");
}

/// A raw sled row (key, value).
type Row = (Vec<u8>, Vec<u8>);

/// A field of the settings a sled database was created with (its `conf`).
fn conf_field<T: std::str::FromStr>(dir: &std::path::Path, name: &str) -> T {
    let c = std::fs::read(dir.join("conf")).unwrap();
    String::from_utf8_lossy(&c)
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": ")?.trim().parse().ok())
        .unwrap()
}

/// The segment size a sled database was created with.
fn seg(dir: &std::path::Path) -> usize {
    conf_field(dir, "segment_size")
}

/// Open a sled database with the settings it was created with (sled refuses others).
fn open_as_created(dir: &std::path::Path) -> sled::Db {
    sled::Config::new()
        .path(dir)
        .segment_size(seg(dir))
        .use_compression(conf_field(dir, "use_compression"))
        .open()
        .unwrap()
}
