//! Message-related values of `extra/protocol-extra-vectors.json` (protocol §12.4).
//!
//! Covered here: `identities.*` (Argon2id), both `message_examples.*` with every
//! intermediate value, `message_examples_common`, `alice_identity`, `bob_identity`,
//! `bob_prekey`, `owner_names`, `rs_wrap_block_example`, `zfec_example_k3_n4`.
//!
//! Not covered here, on purpose:
//! - `heartbeat_example` — the heartbeat record belongs to another module/helper.
//! - `registration_example` — node registration (§11.4), another module/helper.
//! - `message_examples.*.reference_client_sender_label` and the DMPv2 part of
//!   `reference_client_decrypts_to` — produced by the envelope decoder and the label
//!   resolver (§5.4), another helper's module. We still check the decrypted plaintext
//!   bytes and, by hand, that the v2 body after the first `\n` is the expected text and
//!   the header names the expected sender.

use dnsmesh::proto::erasure;
use dnsmesh::proto::keys::{self, sha256, Identity};
use dnsmesh::proto::message::{self, Header, OuterMessage, Outgoing, SendRandomness};
use dnsmesh::proto::names;
use dnsmesh::proto::records::chunk::ChunkRecord;
use dnsmesh::proto::records::claim::ClaimRecord;
use dnsmesh::proto::records::identity::IdentityRecord;
use dnsmesh::proto::records::prekey::Prekey;
use dnsmesh::proto::rs;
use serde_json::Value;

fn vectors() -> Value {
    let path =
        concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/vectors/extra/protocol-extra-vectors.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

fn hx(v: &Value) -> Vec<u8> {
    hex::decode(s(v)).unwrap()
}

fn h<const N: usize>(v: &Value) -> [u8; N] {
    hx(v).try_into().unwrap()
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

#[test]
fn identities_argon2id() {
    let v = vectors();
    for name in ["alice", "bob"] {
        let c = &v["identities"][name];
        let id =
            Identity::from_passphrase(s(&c["passphrase"]), Some(&hx(&c["kdf_salt_hex"]))).unwrap();
        assert_eq!(id.x25519_private(), &h::<32>(&c["x25519_priv_hex"]), "{name}: x25519 priv");
        assert_eq!(id.x25519_public(), h::<32>(&c["x25519_pub_hex"]), "{name}: x25519 pub");
        assert_eq!(id.ed25519_public(), h::<32>(&c["ed25519_pub_hex"]), "{name}: ed25519 pub");
        assert_eq!(id.user_id(), h::<32>(&c["user_id_hex"]), "{name}: user_id");
        let mut seed_input = id.x25519_private().to_vec();
        seed_input.extend_from_slice(keys::ED25519_DOMAIN);
        assert_eq!(sha256(&seed_input), h::<32>(&c["ed25519_seed_hex"]), "{name}: ed25519 seed");
        assert_eq!(
            id.signing_key().to_bytes(),
            h::<32>(&c["ed25519_seed_hex"]),
            "{name}: signing key seed"
        );
        assert!(!s(&c["username"]).is_empty(), "{name}: username");
    }
    let c = &v["identities"]["alice_default_salt"];
    assert_eq!(s(&c["kdf_salt_ascii"]).as_bytes(), keys::DEFAULT_KDF_SALT, "default salt");
    let id = Identity::from_passphrase(s(&c["passphrase"]), None).unwrap();
    assert_eq!(id.x25519_private(), &h::<32>(&c["x25519_priv_hex"]), "default salt: priv");
    assert_eq!(id.ed25519_public(), h::<32>(&c["ed25519_pub_hex"]), "default salt: ed25519 pub");
}

fn identity(v: &Value, name: &str) -> Identity {
    Identity::from_private_bytes(h(&v["identities"][name]["x25519_priv_hex"]))
}

#[test]
fn identity_and_prekey_records() {
    let v = vectors();
    let domain = s(&v["message_examples_common"]["domain"]);
    let ts = u(&v["message_examples_common"]["ts"]);
    for (name, key) in [("alice", "alice_identity"), ("bob", "bob_identity")] {
        let id = identity(&v, name);
        let txt = s(&v[key]["txt"]);
        let rec = IdentityRecord::parse_and_verify(txt).unwrap_or_else(|| panic!("{key}: parse"));
        assert_eq!(rec.username, name, "{key}");
        assert_eq!(rec.x25519_pk, id.x25519_public(), "{key}");
        assert_eq!(rec.ed25519_spk, id.ed25519_public(), "{key}");
        assert_eq!(rec.versions, vec![1, 2], "{key}: advertises v2");
        assert_eq!(rec.ts, ts, "{key}: ts");
        let rebuilt = IdentityRecord {
            username: name.into(),
            x25519_pk: id.x25519_public(),
            ed25519_spk: id.ed25519_public(),
            ts,
            versions: vec![2, 1],
        };
        assert_eq!(rebuilt.sign(&id).unwrap(), txt, "{key}: encode");
        assert_eq!(names::identity(name, domain), s(&v[key]["owner"]), "{key}: owner");
    }
    let bob = identity(&v, "bob");
    let p = &v["bob_prekey"];
    let priv_: [u8; 32] = h(&p["prekey_priv_hex"]);
    assert_eq!(
        keys::x25519_public(&priv_),
        h::<32>(&p["prekey_pub_hex"]),
        "bob_prekey: pub of priv"
    );
    let pk = Prekey {
        prekey_id: u(&p["prekey_id"]) as u32,
        public_key: h(&p["prekey_pub_hex"]),
        exp: u(&p["exp"]),
    };
    assert_eq!(pk.sign(&bob).unwrap(), s(&p["txt"]), "bob_prekey: encode");
    assert_eq!(
        Prekey::parse_and_verify(s(&p["txt"]), &bob.ed25519_public(), ts),
        Some(pk.clone()),
        "bob_prekey: parse"
    );
    assert!(!pk.is_expired(ts), "bob_prekey: fresh at ts");
    let alice = identity(&v, "alice");
    assert_eq!(
        Prekey::parse_and_verify(s(&p["txt"]), &alice.ed25519_public(), ts),
        None,
        "bob_prekey: wrong signer"
    );
    assert_eq!(names::prekeys("bob", domain), s(&p["owner"]), "bob_prekey: owner");
}

#[test]
fn owner_names_table() {
    let v = vectors();
    let t = v["owner_names"].as_object().unwrap();
    assert_eq!(t.len(), 11, "table size changed: cover the new entries");
    let want = |k: &str| s(&t[k]).to_owned();
    assert_eq!(names::bootstrap("example.com").unwrap(), want("bootstrap(example.com)"));
    assert_eq!(names::cluster("mesh.example.com").unwrap(), want("cluster(mesh.example.com)"));
    assert_eq!(names::heartbeat("mesh.example.com"), want("heartbeat(mesh.example.com)"));
    assert_eq!(
        names::identity("alice", "mesh.example.com"),
        want("identity_hashed(alice, mesh.example.com)")
    );
    assert_eq!(
        names::identity_anchored("alice.example.org"),
        want("identity_zone_anchored(alice.example.org)")
    );
    assert_eq!(
        names::prekeys("alice", "mesh.example.com"),
        want("prekeys(alice, mesh.example.com)")
    );
    assert_eq!(
        names::rotation_bootstrap("example.com").unwrap(),
        want("rotation_bootstrap(example.com)")
    );
    assert_eq!(
        names::rotation_cluster("mesh.example.com").unwrap(),
        want("rotation_cluster(mesh.example.com)")
    );
    assert_eq!(
        names::rotation_hashed("alice", "mesh.example.com"),
        want("rotation_hashed(alice, mesh.example.com)")
    );
    assert_eq!(
        names::rotation_anchored("alice.example.org"),
        want("rotation_zone_anchored(alice.example.org)")
    );
    assert_eq!(names::seen("mesh.example.com"), want("seen(mesh.example.com)"));
}

#[test]
fn rs_wrap_block_example() {
    let v = vectors();
    let c = &v["rs_wrap_block_example"];
    let block: [u8; 128] = h(&c["block_hex"]);
    let wire = hx(&c["wire_hex"]);
    assert_eq!(ChunkRecord::from_block(&block).wire, wire, "rs_wrap_block_example: wire");
    assert_eq!(rs::encode(&block), wire[8..], "rs_wrap_block_example: codeword");
    assert_eq!(ChunkRecord { wire }.unwrap_block(), Some(block), "rs_wrap_block_example: unwrap");
}

#[test]
fn zfec_example_k3_n4() {
    let v = vectors();
    let c = &v["zfec_example_k3_n4"];
    let (k, n) = (u(&c["k"]) as usize, u(&c["n"]) as usize);
    let blocks: Vec<Vec<u8>> = c["blocks_hex"].as_array().unwrap().iter().map(hx).collect();
    let shares: Vec<Vec<u8>> = c["shares_hex"].as_array().unwrap().iter().map(hx).collect();
    assert_eq!((blocks.len(), shares.len()), (k, n));
    // The example is raw zfec on three arbitrary blocks (no length prefix).
    let refs: Vec<&[u8]> = blocks.iter().map(|b| &b[..]).collect();
    assert_eq!(erasure::encode_blocks(&refs, n).unwrap(), shares, "zfec_example_k3_n4: shares");
    for subset in subsets(n, k) {
        let sel: Vec<(usize, &[u8])> = subset.iter().map(|&i| (i, &shares[i][..])).collect();
        assert_eq!(
            erasure::decode_blocks(&sel, k, n),
            Some(blocks.clone()),
            "zfec_example_k3_n4: from {subset:?}"
        );
    }
}

/// All subsets of `0..n` with `k` elements.
fn subsets(n: usize, k: usize) -> Vec<Vec<usize>> {
    (0u32..(1 << n))
        .filter(|m| m.count_ones() as usize == k)
        .map(|m| (0..n).filter(|i| m >> i & 1 == 1).collect())
        .collect()
}

fn check_message_example(v: &Value, key: &str) {
    let m = &v["message_examples"][key];
    let common = &v["message_examples_common"];
    let domain = s(&common["domain"]);
    let ts = u(&common["ts"]);
    let ttl = u(&common["ttl"]);
    let msg_id: [u8; 16] = h(&common["msg_id_hex"]);
    let alice = identity(v, "alice");
    let bob = identity(v, "bob");
    let prekey_id = u(&m["prekey_id"]) as u32;
    let prekey = (prekey_id != 0).then(|| {
        assert_eq!(u(&v["bob_prekey"]["prekey_id"]) as u32, prekey_id, "{key}: prekey id");
        (prekey_id, h::<32>(&v["bob_prekey"]["prekey_pub_hex"]))
    });
    let prekey_priv: [u8; 32] = h(&v["bob_prekey"]["prekey_priv_hex"]);
    let target = prekey.map(|p| p.1).unwrap_or(bob.x25519_public());
    let eph: [u8; 32] = h(&m["ephemeral_priv_hex"]);
    let nonce: [u8; 12] = h(&m["nonce_hex"]);
    let plaintext = hx(&m["aead_plaintext_hex"]);

    // Crypto intermediates.
    assert_eq!(keys::x25519_public(&eph), h::<32>(&m["ephemeral_pub_hex"]), "{key}: ephemeral pub");
    let shared = keys::x25519(&eph, &target).unwrap();
    assert_eq!(shared, h::<32>(&m["ecdh_shared_hex"]), "{key}: ecdh (sender side)");
    let recv_shared = if prekey.is_some() {
        keys::x25519(&prekey_priv, &h(&m["ephemeral_pub_hex"]))
    } else {
        bob.diffie_hellman(&h(&m["ephemeral_pub_hex"]))
    };
    assert_eq!(recv_shared, Some(shared), "{key}: ecdh (recipient side)");
    let aead_key = message::derive_key(&shared);
    assert_eq!(aead_key, h::<32>(&m["aead_key_hex"]), "{key}: hkdf key");
    let header = Header::data(msg_id, alice.user_id(), bob.user_id(), ts, ttl);
    assert_eq!(header.to_json(), s(&m["outer_header_json"]), "{key}: outer header json");
    assert_eq!(
        Header::parse(s(&m["outer_header_json"]).as_bytes()),
        Some(header.clone()),
        "{key}: header parse"
    );
    let aad = header.aad(prekey_id);
    assert_eq!(aad, hx(&m["aad_hex"]), "{key}: aad");
    let ct = message::seal(&aead_key, &nonce, &plaintext, &aad).unwrap();
    assert_eq!(ct, hx(&m["ciphertext_with_tag_hex"]), "{key}: ciphertext");
    assert_eq!(message::unseal(&aead_key, &nonce, &ct, &aad).unwrap(), plaintext, "{key}: unseal");
    let outer =
        OuterMessage { header, ephemeral_pub: keys::x25519_public(&eph), nonce, ciphertext: ct };
    let outer_bytes = outer.to_bytes();
    assert_eq!(outer_bytes, hx(&m["outer_message_hex"]), "{key}: outer message");
    assert_eq!(OuterMessage::parse(&outer_bytes), Some(outer), "{key}: outer parse");

    // Erasure and chunks.
    let (k, n) = (u(&m["erasure_k"]) as usize, u(&m["erasure_n"]) as usize);
    assert_eq!(erasure::choose_kn(outer_bytes.len()), (k, n), "{key}: k/n");
    assert_eq!(
        erasure::pad(&outer_bytes, k).unwrap(),
        hx(&m["erasure_padded_hex"]),
        "{key}: padded"
    );
    let shares: Vec<Vec<u8>> = m["shares_hex"].as_array().unwrap().iter().map(hx).collect();
    assert_eq!(erasure::encode(&outer_bytes).unwrap(), (shares.clone(), k, n), "{key}: shares");
    for subset in subsets(n, k) {
        let sel: Vec<(usize, &[u8])> = subset.iter().map(|&i| (i, &shares[i][..])).collect();
        assert_eq!(
            erasure::decode(&sel, k, n),
            Some(outer_bytes.clone()),
            "{key}: decode from {subset:?}"
        );
    }
    let msg_key = names::message_key(&msg_id, &bob.user_id(), &alice.ed25519_public());
    assert_eq!(msg_key, s(&m["msg_key"]), "{key}: msg_key");
    let chunks = m["chunks"].as_array().unwrap();
    assert_eq!(chunks.len(), n, "{key}: chunk count");
    for (i, c) in chunks.iter().enumerate() {
        let wire = hx(&c["wire_hex"]);
        let rec = ChunkRecord::from_block(&shares[i].clone().try_into().unwrap());
        assert_eq!(rec.wire, wire, "{key}: chunk {i} wire");
        assert_eq!(rec.to_txt(), s(&c["txt"]), "{key}: chunk {i} txt");
        assert_eq!(ChunkRecord::parse(s(&c["txt"])), Some(rec), "{key}: chunk {i} parse");
        assert_eq!(
            names::chunk(i as u32, &msg_key, domain),
            s(&c["owner"]),
            "{key}: chunk {i} owner"
        );
    }

    // The whole send pipeline reproduces every record.
    let composed = message::compose_with(
        &Outgoing {
            sender: &alice,
            sender_zone: domain,
            recipient_x25519: bob.x25519_public(),
            prekey,
            plaintext: &plaintext,
            ttl,
            now: ts,
        },
        &SendRandomness { ephemeral_private: eph, nonce, msg_id },
    )
    .unwrap();
    assert_eq!(composed.msg_id, msg_id, "{key}");
    assert_eq!(u64::from(composed.slot), u(&m["slot"]), "{key}: slot");
    assert_eq!(composed.prekey_id, prekey_id, "{key}: prekey id");
    let want_chunks: Vec<(String, String)> =
        chunks.iter().map(|c| (s(&c["owner"]).to_owned(), s(&c["txt"]).to_owned())).collect();
    assert_eq!(composed.chunks, want_chunks, "{key}: chunk records");
    assert_eq!(composed.manifest.0, s(&m["slot_owner"]), "{key}: slot owner");
    assert_eq!(composed.manifest.1, s(&m["manifest_txt"]), "{key}: manifest txt");
    assert_eq!(
        composed.manifest.1.len() as u64,
        u(&m["manifest_txt_len"]),
        "{key}: manifest length"
    );
    let (claim_owner, claim_txt) = composed.claim(&alice, domain).unwrap();
    assert_eq!(claim_owner, s(&m["claim_owner"]), "{key}: claim owner");
    assert_eq!(claim_txt, s(&m["claim_txt"]), "{key}: claim txt");
    let claim = ClaimRecord::parse_and_verify(&claim_txt, ts)
        .unwrap_or_else(|| panic!("{key}: claim parse"));
    assert_eq!(
        (claim.msg_id, claim.slot, claim.sender_mailbox_domain.as_str()),
        (msg_id, 0, domain),
        "{key}: claim"
    );
    assert_eq!((claim.ts, claim.exp), (ts, ts + ttl), "{key}: claim times");

    // The receive pipeline.
    let manifest = message::accept_manifest(s(&m["manifest_txt"]), &bob.user_id(), ts)
        .unwrap_or_else(|| panic!("{key}: manifest accept"));
    assert_eq!(manifest.body().unwrap(), hx(&m["manifest_body_hex"]), "{key}: manifest body");
    assert!(manifest.has_chunk_hashes(), "{key}: hashes present");
    assert_eq!(
        (manifest.data_chunks as usize, manifest.total_chunks as usize),
        (k, n),
        "{key}: manifest k/n"
    );
    assert_eq!(manifest.prekey_id, prekey_id, "{key}: manifest prekey id");
    assert_eq!(
        message::accept_manifest(s(&m["manifest_txt"]), &alice.user_id(), ts),
        None,
        "{key}: wrong recipient"
    );
    assert_eq!(
        message::accept_manifest(s(&m["manifest_txt"]), &bob.user_id(), ts + ttl + 1),
        None,
        "{key}: expired"
    );
    let assembled =
        message::assemble(&manifest, |i| vec![s(&chunks[i as usize]["txt"]).to_owned()]);
    assert_eq!(assembled, Some(outer_bytes.clone()), "{key}: assemble");
    let pk_secret = prekey.map(|_| &prekey_priv);
    let opened = message::open(&outer_bytes, &manifest, &bob, pk_secret, ts).unwrap();
    assert_eq!(opened.plaintext, plaintext, "{key}: decrypt");
    assert_eq!(opened.prekey_id, prekey_id, "{key}: prekey used");
    assert!(
        message::open(&outer_bytes, &manifest, &bob, pk_secret, ts + ttl).is_ok(),
        "{key}: ts + ttl edge"
    );
    assert!(
        message::open(&outer_bytes, &manifest, &bob, pk_secret, ts + ttl + 1).is_err(),
        "{key}: stale"
    );
    if prekey.is_some() {
        assert!(
            message::open(&outer_bytes, &manifest, &bob, None, ts).is_err(),
            "{key}: prekey missing"
        );
        assert!(
            message::open(&outer_bytes, &manifest, &bob, Some(&[7u8; 32]), ts).is_err(),
            "{key}: wrong prekey"
        );
    }

    // What the reference client showed: the body text (envelope split by hand, §5.4).
    let expect_text = s(&m["reference_client_decrypts_to"]).as_bytes();
    let label = s(&m["reference_client_sender_label"]);
    if label.is_empty() {
        assert_eq!(opened.plaintext, expect_text, "{key}: v1 body");
    } else {
        let nl = opened.plaintext.iter().position(|&b| b == b'\n').unwrap();
        assert_eq!(&opened.plaintext[nl + 1..], expect_text, "{key}: v2 body");
        assert_eq!(
            &opened.plaintext[..nl],
            format!("DMPV2:{{\"from\":\"{label}\"}}").as_bytes(),
            "{key}: v2 header"
        );
    }
}

#[test]
fn message_long_term_key_v1_plaintext() {
    check_message_example(&vectors(), "long_term_key_v1_plaintext");
}

#[test]
fn message_prekey_v2_envelope() {
    check_message_example(&vectors(), "prekey_v2_envelope");
}

#[test]
fn message_examples_common_consistency() {
    let v = vectors();
    let c = &v["message_examples_common"];
    let msg_id: [u8; 16] = h(&c["msg_id_hex"]);
    assert_eq!(
        u64::from(names::slot_for(&msg_id)),
        u(&v["message_examples"]["prekey_v2_envelope"]["slot"])
    );
    assert!(s(&c["note"]).contains("deterministic"));
    let bob = identity(&v, "bob");
    assert_eq!(
        names::slot(0, &bob.user_id(), s(&c["domain"])),
        s(&v["message_examples"]["prekey_v2_envelope"]["slot_owner"])
    );
}
