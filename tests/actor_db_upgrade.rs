//! Upgrade from the shared-database layout: older nodes kept the auth, sync and heartbeat
//! trees in the store's sled database (`data_dir/sled`). A node started on such a data
//! dir moves them into each actor's own database (`data_dir/auth`, `data_dir/sync`,
//! `data_dir/heartbeat`) and keeps every token, TSIG key, watermark and seen peer.

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
        let db = sled::open(dir.join("sled")).unwrap();
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
    let db = sled::open(dir.join("sled")).unwrap();
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
