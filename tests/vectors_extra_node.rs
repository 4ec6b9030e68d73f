//! Extra vectors (protocol §12.4) for node-side material: `heartbeat_example` and
//! `registration_example`. Every value in those entries is reproduced and asserted.

use dnsmesh::proto::keys::{self, Identity};
use dnsmesh::proto::names;
use dnsmesh::proto::records::heartbeat::{Heartbeat, HeartbeatPolicy};
use dnsmesh::proto::registration::{self as reg, Coverage, NameClass, ScopeMode};
use ed25519_dalek::SigningKey;
use serde_json::Value;

fn extra() -> Value {
    let path =
        concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/vectors/extra/protocol-extra-vectors.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_else(|| panic!("missing string {k}"))
}

fn h32(v: &Value, k: &str) -> [u8; 32] {
    hex::decode(s(v, k)).unwrap().try_into().unwrap()
}

#[test]
fn heartbeat_example() {
    let all = extra();
    let v = &all["heartbeat_example"];
    let keys_present: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys_present,
        [
            "capabilities",
            "claim_provider_zone",
            "endpoint",
            "exp",
            "note",
            "operator_seed_hex",
            "operator_spk_hex",
            "owner",
            "ts",
            "txt",
            "version"
        ],
        "heartbeat_example: every key is covered below"
    );
    // `note`: the operator key is a raw Ed25519 seed, not the X25519-derived identity.
    let key = SigningKey::from_bytes(&h32(v, "operator_seed_hex"));
    let spk = h32(v, "operator_spk_hex");
    assert_eq!(key.verifying_key().to_bytes(), spk, "heartbeat_example: operator_spk");
    assert_ne!(Identity::from_private_bytes(h32(v, "operator_seed_hex")).ed25519_public(), spk);
    let zone = s(v, "claim_provider_zone");
    assert_eq!(names::heartbeat(zone), s(v, "owner"), "heartbeat_example: owner");

    let (ts, exp) = (v["ts"].as_u64().unwrap(), v["exp"].as_u64().unwrap());
    let hb = Heartbeat {
        endpoint: s(v, "endpoint").into(),
        operator_spk: spk,
        version: s(v, "version").into(),
        capabilities: v["capabilities"].as_u64().unwrap() as u16,
        claim_provider_zone: zone.into(),
        ts,
        exp,
    };
    let txt = s(v, "txt");
    assert_eq!(hb.sign(&key).unwrap(), txt, "heartbeat_example: signed txt");

    let parsed = Heartbeat::parse_and_verify(txt, ts).expect("heartbeat_example: parse at ts");
    assert_eq!(parsed, hb, "heartbeat_example: every field");
    assert!(parsed.is_claim_provider());

    // ±300 s skew, inclusive.
    let at = |now| Heartbeat::parse_and_verify(txt, now).is_some();
    assert!(at(ts - 300) && at(ts + 300) && !at(ts - 301) && !at(ts + 301), "skew window");
    // A relaxed skew (the node's own sweep) still rejects at and after exp (`exp ≤ now`).
    let relaxed = HeartbeatPolicy { max_skew: u64::MAX, ..HeartbeatPolicy::default() };
    let at_relaxed = |now| Heartbeat::parse_and_verify_with(txt, now, &relaxed).is_some();
    assert!(at_relaxed(exp - 1) && !at_relaxed(exp), "exp boundary");
    // 30-day far-future cap: rejected when exp − now > 2 592 000.
    assert!(at_relaxed(exp - 2_592_000) && !at_relaxed(exp - 2_592_001), "30-day cap");
}

#[test]
fn registration_example() {
    let all = extra();
    let v = &all["registration_example"];
    let keys_present: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys_present,
        [
            "challenge_hex",
            "ed25519_signature_hex",
            "node",
            "server_x25519_eph_priv_hex",
            "server_x25519_pub_hex",
            "signing_payload_hex",
            "subject",
            "tsig_allowed_suffixes_default_scope",
            "tsig_key_name",
            "x25519_pop_hex"
        ],
        "registration_example: every key is covered below"
    );
    let alice = Identity::from_private_bytes(h32(&all["identities"]["alice"], "x25519_priv_hex"));
    let subject = s(v, "subject");
    let node = s(v, "node");
    let challenge = h32(v, "challenge_hex");
    let zone = subject.split_once('@').unwrap().1;

    assert_eq!(reg::canonicalize_subject(subject).unwrap(), subject, "subject is canonical");
    assert_eq!(
        reg::canonicalize_subject(&format!("  {} \n", subject.to_uppercase())).unwrap(),
        subject,
        "trim + lower-case"
    );

    let payload = reg::signing_payload(&challenge, subject, node);
    assert_eq!(hex::encode(&payload), s(v, "signing_payload_hex"), "signing_payload");
    let sig = reg::sign_registration(alice.signing_key(), &challenge, subject, node);
    assert_eq!(hex::encode(sig), s(v, "ed25519_signature_hex"), "ed25519_signature");
    assert!(reg::verify_registration(&alice.ed25519_public(), &challenge, subject, node, &sig));
    assert!(!reg::verify_registration(
        &alice.ed25519_public(),
        &challenge,
        "bob@mesh.example.com",
        node,
        &sig
    ));

    let server_priv = h32(v, "server_x25519_eph_priv_hex");
    let server_pub = h32(v, "server_x25519_pub_hex");
    assert_eq!(keys::x25519_public(&server_priv), server_pub, "server_x25519_pub");
    let pop = reg::x25519_pop(alice.x25519_private(), &server_pub, &challenge, subject).unwrap();
    assert_eq!(hex::encode(pop), s(v, "x25519_pop_hex"), "x25519_pop");
    let xpub = alice.x25519_public();
    assert!(reg::verify_x25519_pop(&server_priv, &xpub, &challenge, subject, &pop));
    let mut bad = pop;
    bad[0] ^= 1;
    assert!(!reg::verify_x25519_pop(&server_priv, &xpub, &challenge, subject, &bad));
    assert!(!reg::verify_x25519_pop(&server_priv, &xpub, &challenge, subject, &pop[..31]));
    assert!(
        !reg::verify_x25519_pop(&server_priv, &[0u8; 32], &challenge, subject, &pop),
        "low-order key"
    );

    let spk = alice.ed25519_public();
    assert_eq!(
        reg::tsig_key_name(subject, &spk, zone).unwrap(),
        s(v, "tsig_key_name"),
        "tsig_key_name"
    );
    assert_eq!(
        reg::tsig_key_name(subject, &spk, "MESH.example.com.").unwrap(),
        s(v, "tsig_key_name")
    );

    let want: Vec<&str> = v["tsig_allowed_suffixes_default_scope"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    let scope = reg::default_scope(subject, &spk, Some(&xpub), zone, ScopeMode::Default);
    assert_eq!(scope, want, "tsig_allowed_suffixes_default_scope");
    // Without a proof of possession the mailbox entry is missing; tight drops wildcards.
    let no_pop = reg::default_scope(subject, &spk, None, zone, ScopeMode::Default);
    assert_eq!(no_pop, want[..7], "no PoP");
    let tight = reg::default_scope(subject, &spk, Some(&xpub), zone, ScopeMode::Tight);
    assert_eq!(tight, [want[0], want[1], want[2], want[7]], "tight");
    assert_eq!(reg::default_scope(subject, &spk, None, zone, ScopeMode::Loose), [zone], "loose");

    // What that scope lets alice do with the names of the other extra vectors.
    let ex = &all["message_examples"]["prekey_v2_envelope"];
    let owners = &all["owner_names"];
    let exact = [
        s(owners, "identity_hashed(alice, mesh.example.com)"),
        s(owners, "prekeys(alice, mesh.example.com)"),
        &format!("slot-3.mb-{}.{zone}", names::mailbox_hash(&alice.user_id())),
    ];
    for owner in exact {
        assert_eq!(reg::coverage(&scope, owner), Coverage::Exact, "{owner}");
    }
    let chunk = s(&ex["chunks"][0], "owner");
    for owner in [s(ex, "slot_owner"), s(ex, "claim_owner"), chunk] {
        assert_eq!(reg::coverage(&scope, owner), Coverage::WildcardOnly, "{owner}");
        assert!(Coverage::WildcardOnly.allows(false) && !Coverage::WildcardOnly.allows(true));
        assert_eq!(reg::coverage(&tight, owner), Coverage::None, "tight: {owner}");
    }
    for owner in [
        s(owners, "identity_zone_anchored(alice.example.org)"),
        s(owners, "cluster(mesh.example.com)"),
    ] {
        assert_eq!(reg::coverage(&scope, owner), Coverage::None, "{owner}");
    }

    // HTTP classifier on the same names, and alice's ownership of her own.
    let class = |n: &str| reg::classify_name(n);
    let id_name = s(owners, "identity_hashed(alice, mesh.example.com)");
    assert!(class(id_name).owned_by(subject, None), "{id_name}");
    assert!(!class(id_name).owned_by("bob@mesh.example.com", None));
    assert!(class(s(owners, "prekeys(alice, mesh.example.com)")).owned_by(subject, None));
    assert!(class("dmp.alice.mesh.example.com").owned_by(subject, None));
    assert_eq!(class(s(ex, "slot_owner")), NameClass::SharedPool);
    assert_eq!(class(chunk), NameClass::SharedPool);
    assert_eq!(class(s(ex, "claim_owner")), NameClass::OperatorOnly);
    // The reference keeps `rotate.id-<hash16>` operator-only; we let its owner write it
    // (README, "The CLI next to the reference CLI"), and no one else.
    let rot = s(owners, "rotation_hashed(alice, mesh.example.com)");
    assert!(class(rot).owned_by(subject, None), "{rot}");
    assert!(!class(rot).owned_by("bob@mesh.example.com", None), "{rot}");
    assert_eq!(class(s(owners, "bootstrap(example.com)")), NameClass::Unknown);
}
