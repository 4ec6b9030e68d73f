//! Interop with the real reference (`dnsmesh` 0.7.5), used as a black box through
//! `tests/ref_messages.py` and its public Python API. Requires the reference venv at
//! `$REF_VENV` (default `/root/.cache/dnsmesh-reference-venv`); fails if it is missing.
//!
//! A. Rust → reference: our `compose` output (long-term key short + multi-chunk, prekey +
//!    DMPv2 envelope multi-chunk, with claims and Alice's identity record) is decrypted by
//!    the reference receiver, which consumes its prekey and records the replay cache.
//! B. Reference → Rust: the reference sender's records (long-term, and prekey + envelope
//!    via a prekey and a v2 identity record we built) are decrypted by our receive path.

#![cfg(feature = "net")]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use dnsmesh::proto::keys::{self, sha256, Identity};
use dnsmesh::proto::message::{self, Outgoing, ReplayGuard};
use dnsmesh::proto::names;
use dnsmesh::proto::records::identity::IdentityRecord;
use dnsmesh::proto::records::prekey::Prekey;
use serde_json::{json, Value};

const ZONE: &str = "mesh.test";

fn python() -> PathBuf {
    let venv =
        std::env::var("REF_VENV").unwrap_or_else(|_| "/root/.cache/dnsmesh-reference-venv".into());
    let py = Path::new(&venv).join("bin/python");
    assert!(
        py.exists(),
        "reference venv missing: {} not found (set REF_VENV to a venv with dnsmesh 0.7.5 installed)",
        py.display()
    );
    py
}

fn run_ref(step: &str, work: &Path) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ref_messages.py");
    let out = Command::new(python())
        .arg(script)
        .arg(step)
        .arg(work)
        .output()
        .expect("run reference python");
    assert!(
        out.status.success(),
        "reference step {step} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn read_json(work: &Path, name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(work.join(name)).unwrap()).unwrap()
}

fn write_json(work: &Path, name: &str, v: &Value) {
    std::fs::write(work.join(name), serde_json::to_vec(v).unwrap()).unwrap();
}

/// Same derivation as the Python side: passphrase "interop <name>", salt sha256(label).
fn person(name: &str) -> Identity {
    let salt = sha256(format!("dnsmesh/interop/{name}").as_bytes());
    Identity::from_passphrase(&format!("interop {name}"), Some(&salt)).unwrap()
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// §5.4 envelope, hand-built (the envelope module is someone else's).
fn envelope(from: &str, body: &[u8]) -> Vec<u8> {
    let mut p = format!("DMPV2:{{\"from\":\"{from}\"}}\n").into_bytes();
    p.extend_from_slice(body);
    p
}

fn long_text(tag: &str, len: usize) -> String {
    let mut s = String::new();
    let mut i = 0;
    while s.len() < len {
        s.push_str(&format!("{tag} line {i:04}: the quick brown fox jumps over the lazy dog.\n"));
        i += 1;
    }
    s
}

#[test]
fn interop_with_reference_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    let alice = person("alice");
    let bob = person("bob");

    // --- A. Rust sends, the reference receives. ---
    run_ref("setup", work);
    let setup = read_json(work, "setup.json");
    assert_eq!(
        setup["bob_x25519"],
        hex::encode(bob.x25519_public()),
        "Argon2id derivation agrees (bob)"
    );
    assert_eq!(setup["bob_ed25519"], hex::encode(bob.ed25519_public()));
    assert_eq!(
        setup["alice_x25519"],
        hex::encode(alice.x25519_public()),
        "Argon2id derivation agrees (alice)"
    );
    assert_eq!(setup["alice_ed25519"], hex::encode(alice.ed25519_public()));
    let t = now();
    let prekey_records: Vec<(String, String)> = setup["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_str().unwrap().to_owned(), r[1].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(prekey_records.len(), 1);
    assert_eq!(prekey_records[0].0, names::prekeys("bob", ZONE), "prekey owner name");
    let prekey = Prekey::parse_and_verify(&prekey_records[0].1, &bob.ed25519_public(), t)
        .expect("reference prekey verifies");
    assert!(!prekey.is_expired(t));

    let short = b"hello bob, from rust".to_vec();
    let long = long_text("rust->ref long-term", 3000).into_bytes();
    let fs_body = long_text("rust->ref prekey", 1500).into_bytes();
    // (AEAD plaintext, prekey, body the reference should show)
    type Send = (Vec<u8>, Option<(u32, [u8; 32])>, Vec<u8>);
    let sends: Vec<Send> = vec![
        (short.clone(), None, short.clone()),
        (long.clone(), None, long.clone()),
        (
            envelope("alice@mesh.test", &fs_body),
            Some((prekey.prekey_id, prekey.public_key)),
            fs_body.clone(),
        ),
    ];
    let mut records: Vec<(String, String)> = Vec::new();
    let (mut claims, mut manifests) = (Vec::new(), Vec::new());
    let mut expected: HashMap<String, Vec<u8>> = HashMap::new();
    for (plaintext, pk, body) in &sends {
        let c = message::compose(&Outgoing {
            sender: &alice,
            sender_zone: ZONE,
            recipient_x25519: bob.x25519_public(),
            prekey: *pk,
            plaintext,
            ttl: 600,
            now: t,
        })
        .unwrap();
        assert!(c.chunks.len() > 1 || plaintext.len() < 1000);
        records.extend(c.chunks.iter().cloned());
        records.push(c.manifest.clone());
        manifests.push(c.manifest.1.clone());
        let claim = c.claim(&alice, ZONE).unwrap();
        claims.push(claim.1.clone());
        records.push(claim);
        expected.insert(hex::encode(c.msg_id), body.clone());
    }
    assert!(sends[1].0.len() > 1000 && sends[2].0.len() > 1000, "multi-chunk messages over 1 KB");
    let alice_identity = IdentityRecord {
        username: "alice".into(),
        x25519_pk: alice.x25519_public(),
        ed25519_spk: alice.ed25519_public(),
        ts: t,
        versions: vec![1, 2],
    }
    .sign(&alice)
    .unwrap();
    records.push((names::identity("alice", ZONE), alice_identity.clone()));
    let rec_json: Vec<Value> = records.iter().map(|(n, v)| json!([n, v])).collect();
    write_json(
        work,
        "rust_records.json",
        &json!({"records": rec_json, "claims": claims, "identities": [alice_identity], "manifests": manifests}),
    );
    run_ref("recv", work);
    let got = read_json(work, "recv.json");
    for kind in ["claims", "identities", "manifests"] {
        let parsed = got["parsed"][kind].as_array().unwrap();
        assert!(
            !parsed.is_empty() && parsed.iter().all(|b| b == true),
            "reference parses our {kind}: {parsed:?}"
        );
    }
    let msgs = got["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), expected.len(), "reference delivered every Rust message: {got}");
    for m in msgs {
        let id = m["msg_id_hex"].as_str().unwrap();
        let want = expected.get(id).unwrap_or_else(|| panic!("unexpected msg_id {id}"));
        assert_eq!(
            hex::decode(m["plaintext_hex"].as_str().unwrap()).unwrap(),
            *want,
            "plaintext of {id}"
        );
        assert_eq!(m["sender_spk_hex"], hex::encode(alice.ed25519_public()), "signer of {id}");
        let is_v2 = *want == fs_body;
        let want_label = if is_v2 { "alice@mesh.test" } else { "" };
        assert_eq!(m["sender_label"], want_label, "label of {id}");
    }
    assert_eq!(
        got["prekey_values_left"],
        json!([]),
        "reference consumed its prekey after decrypting"
    );
    let cache = ReplayGuard::from_json(got["replay_cache"].as_str().unwrap())
        .expect("replay_cache.json loads");
    for id in expected.keys() {
        let id: [u8; 16] = hex::decode(id).unwrap().try_into().unwrap();
        assert!(
            cache.is_seen(&alice.ed25519_public(), &id, t),
            "reference replay cache holds our message"
        );
    }

    // --- B. The reference sends, Rust receives. ---
    let t = now();
    let prekey_priv = sha256(b"dnsmesh/interop/bob-prekey");
    let our_prekey = Prekey {
        prekey_id: 0x0a0b_0c0d,
        public_key: keys::x25519_public(&prekey_priv),
        exp: t + 86_400,
    };
    let bob_identity = IdentityRecord {
        username: "bob".into(),
        x25519_pk: bob.x25519_public(),
        ed25519_spk: bob.ed25519_public(),
        ts: t,
        versions: vec![1, 2],
    };
    let texts_long_term =
        vec!["hello alice's rust friend".to_owned(), long_text("ref->rust long-term", 2500)];
    let texts_prekey = vec![long_text("ref->rust prekey", 1800)];
    write_json(
        work,
        "rust_bob.json",
        &json!({
            "bob_x25519": hex::encode(bob.x25519_public()),
            "bob_ed25519": hex::encode(bob.ed25519_public()),
            "identity_name": names::identity("bob", ZONE),
            "identity_txt": bob_identity.sign(&bob).unwrap(),
            "prekey_name": names::prekeys("bob", ZONE),
            "prekey_txt": our_prekey.sign(&bob).unwrap(),
            "texts_long_term": texts_long_term,
            "texts_prekey": texts_prekey,
        }),
    );
    run_ref("send", work);
    let sent = read_json(work, "send.json");
    let stores = sent["stores"].as_array().unwrap();
    assert_eq!(stores.len(), 2);
    let mut guard = ReplayGuard::new();
    for (store, (texts, with_prekey)) in
        stores.iter().zip([(&texts_long_term, false), (&texts_prekey, true)])
    {
        let mut by_name: HashMap<String, Vec<String>> = HashMap::new();
        for r in store.as_array().unwrap() {
            by_name
                .entry(r[0].as_str().unwrap().to_owned())
                .or_default()
                .push(r[1].as_str().unwrap().to_owned());
        }
        let mut delivered: Vec<String> = Vec::new();
        for slot in 0..names::SLOT_COUNT {
            let slot_name = names::slot(slot, &bob.user_id(), ZONE);
            for value in by_name.get(&slot_name).cloned().unwrap_or_default() {
                let manifest = message::accept_manifest(&value, &bob.user_id(), t)
                    .expect("reference manifest accepted");
                assert_eq!(
                    manifest.sender_spk,
                    alice.ed25519_public(),
                    "sender gate: pinned alice"
                );
                assert!(guard.claim(&manifest.sender_spk, &manifest.msg_id, t));
                let msg_key = names::message_key(
                    &manifest.msg_id,
                    &manifest.recipient_id,
                    &manifest.sender_spk,
                );
                let outer = message::assemble(&manifest, |i| {
                    by_name.get(&names::chunk(i, &msg_key, ZONE)).cloned().unwrap_or_default()
                })
                .expect("chunks assemble");
                let secret = (manifest.prekey_id == our_prekey.prekey_id).then_some(&prekey_priv);
                let opened = message::open(&outer, &manifest, &bob, secret, t)
                    .expect("reference message decrypts");
                guard.commit(&manifest.sender_spk, &manifest.msg_id, manifest.exp);
                assert_eq!(
                    opened.prekey_id,
                    if with_prekey { our_prekey.prekey_id } else { 0 },
                    "prekey path"
                );
                // The reference wraps in DMPv2 because our bob identity advertises v2.
                let (head, body) = opened
                    .plaintext
                    .split_at(opened.plaintext.iter().position(|&b| b == b'\n').unwrap());
                assert_eq!(head, b"DMPV2:{\"from\":\"alice@mesh.test\"}", "envelope header");
                delivered.push(String::from_utf8(body[1..].to_vec()).unwrap());
            }
        }
        delivered.sort();
        let mut want = texts.clone();
        want.sort();
        assert_eq!(
            delivered, want,
            "all reference messages delivered (prekey path: {with_prekey})"
        );
    }
}
