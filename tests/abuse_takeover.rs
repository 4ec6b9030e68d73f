//! Cross-domain identity takeover (issue 12, item 1), end to end on a node configured as a
//! public one (`[limits] limit_loopback = true`): a credential self-registered for
//! `alice@evil.example` on a node serving `mesh.test` must get no scope over
//! alice@mesh.test's `id-…`/`prekeys.id-…` names — not over DNS UPDATE, not over HTTP — and
//! registration binds a local part to one key whatever the subject's domain (409).
//!
//! The attacks follow what was observed: the victim's records exist, her credential is
//! no longer live (revoked here, as after a lost key; expiry is the same), so the local part
//! is free to register under another domain. Before the fix, that key's UPDATEs deleted
//! her identity and prekeys and added a forged identity, all NOERROR.
#![cfg(feature = "net")]

mod common;

use std::str::FromStr;

use common::*;
use dnsmesh::proto::{keys::Identity, names, registration};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, TSigner};

const OP: &str = "operator-secret";
const ZONE: &str = "mesh.test";

/// A node as a public one runs (per-IP limits on loopback too), with registration buckets
/// large enough for the handful of registrations a test makes.
fn public_node() -> Node {
    Node::start(
        ZONE,
        &[
            ("DNSMESH_AUTH__OPERATOR_TOKEN", OP),
            ("DNSMESH_AUTH__ZONE_ALIASES", "alias.test"),
            ("DNSMESH_LIMITS__LIMIT_LOOPBACK", "true"),
            ("DNSMESH_LIMITS__REGISTRATION_RATE", "100"),
            ("DNSMESH_LIMITS__REGISTRATION_BURST", "1000"),
        ],
    )
}

/// Self-service registration of any `subject` with the identity from `seed`; returns the
/// HTTP status and the JSON body (bearer token, or TSIG key with the X25519 proof).
fn register_as(node: &Node, subject: &str, seed: u8, tsig: bool) -> (u16, serde_json::Value) {
    let id = Identity::from_private_bytes([seed; 32]);
    let (s, body) = http(&node.url(), "GET", "/v1/registration/challenge", None, "").unwrap();
    assert_eq!(s, 200, "{body}");
    let ch: serde_json::Value = serde_json::from_str(&body).unwrap();
    let challenge: [u8; 32] =
        hex::decode(ch["challenge"].as_str().unwrap()).unwrap().try_into().unwrap();
    let server_pub: [u8; 32] =
        hex::decode(ch["server_x25519_pub"].as_str().unwrap()).unwrap().try_into().unwrap();
    let sig = registration::sign_registration(
        id.signing_key(),
        &challenge,
        subject,
        ch["node"].as_str().unwrap(),
    );
    let mut req = serde_json::json!({
        "subject": subject,
        "ed25519_spk": hex::encode(id.ed25519_public()),
        "challenge": hex::encode(challenge),
        "signature": hex::encode(sig),
    });
    if tsig {
        let pop = registration::x25519_pop(id.x25519_private(), &server_pub, &challenge, subject)
            .unwrap();
        req["x25519_pub"] = hex::encode(id.x25519_public()).into();
        req["x25519_pop"] = hex::encode(pop).into();
    }
    let path = if tsig { "/v1/registration/tsig-confirm" } else { "/v1/registration/confirm" };
    let (s, body) = http(&node.url(), "POST", path, None, &req.to_string()).unwrap();
    (s, serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)))
}

fn register_ok(node: &Node, subject: &str, seed: u8, tsig: bool) -> serde_json::Value {
    let (s, v) = register_as(node, subject, seed, tsig);
    assert_eq!(s, 200, "registering {subject}: {v}");
    v
}

fn revoke(node: &Node, what: &str) {
    let body = serde_json::json!({ "what": what }).to_string();
    let (s, out) = http(&node.url(), "POST", "/v1/admin/revoke", Some(OP), &body).unwrap();
    assert_eq!(s, 200, "{out}");
}

struct Key {
    name: String,
    secret: Vec<u8>,
}

fn key_of(v: &serde_json::Value) -> Key {
    Key {
        name: v["tsig_key_name"].as_str().unwrap().to_string(),
        secret: hex::decode(v["tsig_secret_hex"].as_str().unwrap()).unwrap(),
    }
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn txt_add(name: &str, value: &str) -> Record {
    Record::from_rdata(
        Name::from_str(&format!("{name}.")).unwrap(),
        300,
        RData::TXT(TXT::new(vec![value.to_string()])),
    )
}

fn txt_del_value(name: &str, value: &str) -> Record {
    let mut r = txt_add(name, value);
    r.dns_class = DNSClass::NONE;
    r.ttl = 0;
    r
}

fn txt_del_rrset(name: &str) -> Record {
    let mut r = Record::from_rdata(
        Name::from_str(&format!("{name}.")).unwrap(),
        0,
        RData::Update0(RecordType::TXT),
    );
    r.dns_class = DNSClass::ANY;
    r
}

/// A TSIG-signed UPDATE of `ops` in the zone; the response code.
fn update(node: &Node, key: &Key, ops: Vec<Record>) -> ResponseCode {
    let signer = TSigner::new(
        key.secret.clone(),
        TsigAlgorithm::HmacSha256,
        Name::from_str(&key.name).unwrap(),
        300,
    )
    .unwrap();
    let mut m = Message::new(rand_id(), MessageType::Query, OpCode::Update);
    let mut zq = Query::new();
    zq.set_name(Name::from_str(&format!("{ZONE}.")).unwrap()).set_query_type(RecordType::SOA);
    m.add_query(zq);
    for r in ops {
        m.add_authority(r);
    }
    m.finalize(&signer, now()).unwrap();
    let resp = udp_exchange(node.dns[0], &m.to_vec().unwrap());
    Message::from_vec(&resp).unwrap().metadata.response_code
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn registration_binds_a_local_part_to_one_key_whatever_the_domain() {
    let n = public_node();
    // alice@mesh.test first; then alice@evil.example under another key: 409 on both routes.
    register_ok(&n, "alice@mesh.test", 1, true);
    for tsig in [true, false] {
        let (s, v) = register_as(&n, "alice@evil.example", 66, tsig);
        assert_eq!(s, 409, "tsig={tsig}: {v}");
        assert!(v["error"].as_str().unwrap().contains("local part"), "{v}");
    }
    // The same key re-registers (idempotent, as before), under this zone or another domain.
    let again = register_ok(&n, "alice@mesh.test", 1, true);
    assert!(again["tsig_key_name"].as_str().unwrap().starts_with("alice-"));
    register_ok(&n, "alice@mesh.test", 1, false);
    let other = register_ok(&n, "alice@evil.example", 1, true);
    let sufs: Vec<&str> =
        other["allowed_suffixes"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    assert!(!sufs.iter().any(|s| s.starts_with("id-")), "foreign subject, no id scope: {sufs:?}");

    // Vice versa: bob@evil.example first (bearer), then bob@mesh.test under another key.
    register_ok(&n, "bob@evil.example", 2, false);
    for tsig in [true, false] {
        let (s, v) = register_as(&n, "bob@mesh.test", 3, tsig);
        assert_eq!(s, 409, "tsig={tsig}: {v}");
    }
    // Between two aliases of the zone as well; an alias subject gets the zone's id scope.
    let carol = register_ok(&n, "carol@alias.test", 4, true);
    let sufs: Vec<&str> =
        carol["allowed_suffixes"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    let carol_id = names::identity("carol", ZONE);
    assert!(sufs.contains(&carol_id.as_str()), "alias subject keeps its id scope: {sufs:?}");
    assert_eq!(register_as(&n, "carol@mesh.test", 5, false).0, 409);

    // Once the credential is no longer live the local part is free again.
    revoke(&n, "bob@evil.example");
    register_ok(&n, "bob@mesh.test", 3, true);
}

#[test]
fn update_with_a_foreign_domain_key_cannot_touch_a_zone_users_identity() {
    let n = public_node();
    let alice_id = Identity::from_private_bytes([1; 32]);
    let a = key_of(&register_ok(&n, "alice@mesh.test", 1, true));
    let id_name = names::identity("alice", ZONE);
    let pk_name = names::prekeys("alice", ZONE);
    let identity = "v=dmp1;t=identity;alice-real";
    let prekeys = ["pk-a", "pk-b", "pk-c"].map(|p| format!("v=dmp1;t=prekey;{p}"));
    let mut ops = vec![txt_add(&id_name, identity)];
    ops.extend(prekeys.iter().map(|p| txt_add(&pk_name, p)));
    assert_eq!(update(&n, &a, ops), ResponseCode::NoError);
    assert_eq!(txt_at(n.dns[0], &id_name), [identity]);
    let want_pk = sorted(prekeys.to_vec());
    assert_eq!(sorted(txt_at(n.dns[0], &pk_name)), want_pk);

    // Alice's key is revoked; her records live on. The attacker registers her local part
    // under its own domain (the local part is free now, so this is allowed).
    revoke(&n, "alice@mesh.test");
    let evil = key_of(&register_ok(&n, "alice@evil.example", 66, true));

    let attacks: Vec<(&str, Vec<Record>)> = vec![
        ("delete identity RRset", vec![txt_del_rrset(&id_name)]),
        ("delete identity value", vec![txt_del_value(&id_name, identity)]),
        ("delete prekey RRset", vec![txt_del_rrset(&pk_name)]),
        ("delete one prekey", vec![txt_del_value(&pk_name, &prekeys[0])]),
        ("add forged identity", vec![txt_add(&id_name, "v=dmp1;t=identity;forged")]),
        ("add forged prekey", vec![txt_add(&pk_name, "v=dmp1;t=prekey;forged")]),
        (
            "replace identity",
            vec![txt_del_rrset(&id_name), txt_add(&id_name, "v=dmp1;t=identity;forged")],
        ),
        ("rotation record", vec![txt_add(&names::rotation_hashed("alice", ZONE), "forged")]),
    ];
    for (what, ops) in attacks {
        assert_eq!(update(&n, &evil, ops), ResponseCode::Refused, "{what}");
    }
    // Her records are intact, as any resolver sees them.
    assert_eq!(txt_at(n.dns[0], &id_name), [identity]);
    assert_eq!(sorted(txt_at(n.dns[0], &pk_name)), want_pk);

    // What a foreign subject still may do: send to users here (shared mailbox pools) and
    // write its own claim name.
    let slot = names::slot(3, &alice_id.user_id(), ZONE);
    assert_eq!(update(&n, &evil, vec![txt_add(&slot, "msg")]), ResponseCode::NoError);
    let spk16 = &hex::encode(Identity::from_private_bytes([66; 32]).ed25519_public())[..16];
    let own_claim = format!("_dnsmesh-claim-{spk16}.{ZONE}");
    assert_eq!(update(&n, &evil, vec![txt_add(&own_claim, "c")]), ResponseCode::NoError);

    // A subject of a configured alias is a user of this zone: it holds its own names.
    let carol = key_of(&register_ok(&n, "carol@alias.test", 4, true));
    let carol_id = names::identity("carol", ZONE);
    assert_eq!(update(&n, &carol, vec![txt_add(&carol_id, "carol")]), ResponseCode::NoError);
    assert_eq!(txt_at(n.dns[0], &carol_id), ["carol"]);
    // ...but not another user's.
    assert_eq!(update(&n, &carol, vec![txt_del_rrset(&id_name)]), ResponseCode::Refused);
    assert_eq!(txt_at(n.dns[0], &id_name), [identity]);
}

#[test]
fn http_with_a_foreign_domain_token_cannot_touch_a_zone_users_identity() {
    let n = public_node();
    let url = n.url();
    let a = register_ok(&n, "alice@mesh.test", 1, false);
    let atok = a["token"].as_str().unwrap().to_string();
    let id_name = names::identity("alice", ZONE);
    let pk_name = names::prekeys("alice", ZONE);
    let anchored = format!("dmp.alice.{ZONE}");
    let identity = "v=dmp1;t=identity;alice-real";
    assert_eq!(publish(&n, &atok, &id_name, identity, 300), 201);
    assert_eq!(publish(&n, &atok, &pk_name, "v=dmp1;t=prekey;pk-a", 300), 201);
    assert_eq!(publish(&n, &atok, &pk_name, "v=dmp1;t=prekey;pk-b", 300), 201);
    assert_eq!(publish(&n, &atok, &anchored, "v=dmp1;t=identity;anchored", 300), 201);

    revoke(&n, "alice@mesh.test");
    let evil = register_ok(&n, "alice@evil.example", 66, false);
    let etok = evil["token"].as_str().unwrap().to_string();

    let forged = serde_json::json!({"value": "v=dmp1;t=identity;forged", "ttl": 300}).to_string();
    for name in [&id_name, &pk_name, &anchored] {
        let path = format!("/v1/records/{name}");
        let (s, body) = http(&url, "POST", &path, Some(&etok), &forged).unwrap();
        assert_eq!(s, 403, "POST {name}: {body}");
        assert!(body.contains("not a user of this zone"), "{body}");
        let (s, body) = http(&url, "DELETE", &path, Some(&etok), "").unwrap();
        assert_eq!(s, 403, "DELETE {name}: {body}");
    }
    let del_one = serde_json::json!({"value": "v=dmp1;t=prekey;pk-a"}).to_string();
    let (s, body) =
        http(&url, "DELETE", &format!("/v1/records/{pk_name}"), Some(&etok), &del_one).unwrap();
    assert_eq!(s, 403, "{body}");
    // Intact, as any resolver sees them.
    assert_eq!(txt_at(n.dns[0], &id_name), [identity]);
    assert_eq!(
        sorted(txt_at(n.dns[0], &pk_name)),
        ["v=dmp1;t=prekey;pk-a", "v=dmp1;t=prekey;pk-b"]
    );
    assert_eq!(txt_at(n.dns[0], &anchored), ["v=dmp1;t=identity;anchored"]);

    // Sending to a user here stays possible for a foreign subject (shared pool).
    let slot = names::slot(3, &Identity::from_private_bytes([1; 32]).user_id(), ZONE);
    assert_eq!(publish(&n, &etok, &slot, "msg", 300), 201);

    // An alias subject writes its own identity here.
    let carol = register_ok(&n, "carol@alias.test", 4, false);
    let ctok = carol["token"].as_str().unwrap();
    assert_eq!(publish(&n, ctok, &names::identity("carol", ZONE), "carol", 300), 201);
    assert_eq!(publish(&n, ctok, &format!("dmp.carol.{ZONE}"), "carol", 300), 201);
    // Another zone user's name stays the reference's 401.
    assert_eq!(publish(&n, ctok, &id_name, "x", 300), 401);
}

/// A user may write its own rotation/revocation RRset (`rotate.id-<hash16>.<zone>`) with its
/// HTTP token (the reference keeps it operator-only, so its users cannot rotate over HTTP);
/// another user of the zone and a foreign subject with the same local part still cannot.
#[test]
fn http_owner_writes_its_own_rotation_names_and_no_one_else_does() {
    let n = public_node();
    let a = register_ok(&n, "alice@mesh.test", 1, false);
    let atok = a["token"].as_str().unwrap().to_string();
    let rot = names::rotation_hashed("alice", ZONE);
    assert_eq!(publish(&n, &atok, &rot, "v=dmp1;t=rotation;by-alice", 300), 201);
    assert_eq!(txt_at(n.dns[0], &rot), ["v=dmp1;t=rotation;by-alice"]);

    let b = register_ok(&n, "bob@mesh.test", 2, false);
    let btok = b["token"].as_str().unwrap();
    assert_eq!(publish(&n, btok, &rot, "v=dmp1;t=rotation;by-bob", 300), 401);

    revoke(&n, "alice@mesh.test");
    let evil = register_ok(&n, "alice@evil.example", 66, false);
    let etok = evil["token"].as_str().unwrap();
    assert_eq!(publish(&n, etok, &rot, "v=dmp1;t=rotation;forged", 300), 403);
    assert_eq!(txt_at(n.dns[0], &rot), ["v=dmp1;t=rotation;by-alice"]);
}
