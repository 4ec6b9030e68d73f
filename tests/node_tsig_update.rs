//! Per-user TSIG keys and RFC 2136 UPDATE against a real node: BIND's `nsupdate`, a
//! hickory client that checks our signed responses, scopes between two users over HTTP and
//! UPDATE, TSIG errors (BADKEY, BADSIG, BADTIME), atomicity, prerequisites, revocation.
#![cfg(feature = "net")]

mod common;

use std::net::SocketAddr;
use std::str::FromStr;

use base64::Engine;
use common::*;
use dnsmesh::proto::{keys::Identity, names, registration};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::tsig::{TsigAlgorithm, TsigError};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, TSigner};

const OP: &str = "operator-secret";

struct Tsig {
    name: String,
    secret: Vec<u8>,
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn tsig_of(v: &serde_json::Value) -> Tsig {
    Tsig {
        name: v["tsig_key_name"].as_str().unwrap().to_string(),
        secret: hex::decode(v["tsig_secret_hex"].as_str().unwrap()).unwrap(),
    }
}

/// Run `nsupdate -y` with `cmds`; returns (success, combined output).
fn nsupdate(server: SocketAddr, key: &Tsig, cmds: &str) -> (bool, String) {
    use std::io::Write;
    let secret = base64::engine::general_purpose::STANDARD.encode(&key.secret);
    let mut child = std::process::Command::new("nsupdate")
        .arg("-y")
        .arg(format!("hmac-sha256:{}:{}", key.name, secret))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("nsupdate (Debian dnsutils) is installed by .ci/run");
    let script =
        format!("server {} {}\nzone mesh.test\n{cmds}\nsend\n", server.ip(), server.port());
    child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// A signed UPDATE built with hickory; returns the response, checked against our TSIG.
fn hickory_update(node: &Node, key: &Tsig, ops: Vec<Record>, time: u64, verify: bool) -> Message {
    let signer = TSigner::new(
        key.secret.clone(),
        TsigAlgorithm::HmacSha256,
        Name::from_str(&key.name).unwrap(),
        300,
    )
    .unwrap();
    let mut m = Message::new(rand_id(), MessageType::Query, OpCode::Update);
    let mut zq = Query::new();
    zq.set_name(Name::from_str("mesh.test.").unwrap()).set_query_type(RecordType::SOA);
    m.add_query(zq);
    for r in ops {
        m.add_authority(r);
    }
    let verifier = m.finalize(&signer, time).unwrap();
    let bytes = m.to_vec().unwrap();
    let resp = udp_exchange(node.dns[0], &bytes);
    if verify {
        let mut v = verifier.expect("a verifier for a signed request");
        v.verify(&resp).expect("our response carries a valid TSIG chained to the request MAC");
    }
    Message::from_vec(&resp).unwrap()
}

fn txt_rr(name: &str, class: DNSClass, value: &str) -> Record {
    let parts: Vec<&[u8]> = value.as_bytes().chunks(255).collect();
    let mut r = Record::from_rdata(
        Name::from_str(&format!("{name}.")).unwrap(),
        300,
        RData::TXT(TXT::from_bytes(parts)),
    );
    r.dns_class = class;
    if class == DNSClass::NONE {
        r.ttl = 0;
    }
    r
}

#[test]
fn tsig_updates_scopes_errors_and_revocation() {
    let n = Node::start("mesh.test", &[("DNSMESH_AUTH__OPERATOR_TOKEN", OP)]);
    let (_alice, a) = register(&n, "alice", 1, true);
    let (_bob, b) = register(&n, "bob", 2, true);
    let (ka, kb) = (tsig_of(&a), tsig_of(&b));
    assert_eq!(a["zone"], "mesh.test");
    assert_eq!(a["tsig_algorithm"], "hmac-sha256");
    let a_id = names::identity("alice", "mesh.test");
    let b_id = names::identity("bob", "mesh.test");
    let a_pk = names::prekeys("alice", "mesh.test");

    // nsupdate: add and delete in scope.
    let (ok, out) = nsupdate(n.dns[0], &ka, &format!("update add {a_id} 300 TXT \"alice-id\""));
    assert!(ok, "{out}");
    assert_eq!(txt_at(n.dns[0], &a_id), vec!["alice-id"]);
    let (ok, out) = nsupdate(
        n.dns[0],
        &ka,
        &format!("update add {a_pk} 300 TXT \"pk1\"\nupdate add {a_pk} 300 TXT \"pk2\""),
    );
    assert!(ok, "{out}");
    let (ok, out) = nsupdate(n.dns[0], &ka, &format!("update delete {a_pk} TXT \"pk1\""));
    assert!(ok, "{out}");
    assert_eq!(txt_at(n.dns[0], &a_pk), vec!["pk2"]);
    // Deleting an absent value is not an error.
    let (ok, out) = nsupdate(n.dns[0], &ka, &format!("update delete {a_pk} TXT \"never-there\""));
    assert!(ok, "{out}");

    // Bob cannot overwrite or delete Alice's identity or prekeys (UPDATE).
    let (ok, out) = nsupdate(n.dns[0], &kb, &format!("update add {a_id} 300 TXT \"bob-was-here\""));
    assert!(!ok && out.contains("REFUSED"), "{out}");
    let (ok, out) = nsupdate(n.dns[0], &kb, &format!("update delete {a_pk} TXT"));
    assert!(!ok && out.contains("REFUSED"), "{out}");
    assert_eq!(txt_at(n.dns[0], &a_id), vec!["alice-id"]);
    assert_eq!(txt_at(n.dns[0], &a_pk), vec!["pk2"]);
    // Shared mailbox wildcards: add yes, delete no.
    let slot = "slot-3.mb-0123456789ab.mesh.test";
    let (ok, out) = nsupdate(n.dns[0], &kb, &format!("update add {slot} 300 TXT \"m\""));
    assert!(ok, "{out}");
    let (ok, out) = nsupdate(n.dns[0], &kb, &format!("update delete {slot} TXT \"m\""));
    assert!(!ok && out.contains("REFUSED"), "{out}");
    // Bob's own identity works.
    let (ok, out) = nsupdate(n.dns[0], &kb, &format!("update add {b_id} 300 TXT \"bob-id\""));
    assert!(ok, "{out}");

    // Over HTTP with bearer tokens: Bob cannot touch Alice's names either.
    let (_, bt) = register(&n, "bob2", 3, false);
    let btok = bt["token"].as_str().unwrap();
    let body = serde_json::json!({"value": "x", "ttl": 60}).to_string();
    assert_eq!(
        http(&n.url(), "POST", &format!("/v1/records/{a_id}"), Some(btok), &body).unwrap().0,
        401
    );
    assert_eq!(
        http(&n.url(), "DELETE", &format!("/v1/records/{a_pk}"), Some(btok), "").unwrap().0,
        401
    );
    let own = names::identity("bob2", "mesh.test");
    assert_eq!(
        http(&n.url(), "POST", &format!("/v1/records/{own}"), Some(btok), &body).unwrap().0,
        201
    );

    // TSIG errors.
    let wrong_name =
        Tsig { name: "nobody-00000000-000000.mesh.test.".into(), secret: ka.secret.clone() };
    let (ok, out) = nsupdate(n.dns[0], &wrong_name, &format!("update add {a_id} 300 TXT \"x\""));
    assert!(!ok && out.contains("NOTAUTH"), "{out}");
    let wrong_secret = Tsig { name: ka.name.clone(), secret: vec![7u8; 32] };
    let (ok, out) = nsupdate(n.dns[0], &wrong_secret, &format!("update add {a_id} 300 TXT \"x\""));
    assert!(!ok && out.contains("NOTAUTH"), "{out}");
    let stale =
        hickory_update(&n, &ka, vec![txt_rr(&a_id, DNSClass::IN, "stale")], now() - 3600, false);
    assert_eq!(stale.metadata.response_code, ResponseCode::NotAuth);
    assert_eq!(stale.signature().map(|s| s.data.error), Some(Some(TsigError::BadTime)));
    let bad_key =
        hickory_update(&n, &wrong_name, vec![txt_rr(&a_id, DNSClass::IN, "x")], now(), false);
    assert_eq!(bad_key.signature().map(|s| s.data.error), Some(Some(TsigError::BadKey)));
    let bad_sig =
        hickory_update(&n, &wrong_secret, vec![txt_rr(&a_id, DNSClass::IN, "x")], now(), false);
    assert_eq!(bad_sig.signature().map(|s| s.data.error), Some(Some(TsigError::BadSig)));

    // hickory verifies our signed responses; multi-string values are joined.
    let long = "v=dmp1;t=identity;d=".to_string() + &"A".repeat(400);
    let r = hickory_update(&n, &ka, vec![txt_rr(&a_id, DNSClass::IN, &long)], now(), true);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(txt_at(n.dns[0], &a_id).contains(&long));

    // All or nothing: one op out of scope refuses the whole message.
    let r = hickory_update(
        &n,
        &ka,
        vec![txt_rr(&a_id, DNSClass::IN, "part-1"), txt_rr(&b_id, DNSClass::IN, "part-2")],
        now(),
        true,
    );
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    assert!(!txt_at(n.dns[0], &a_id).contains(&"part-1".to_string()));

    // Prerequisite "name is not in use" fails on an existing name: YXDOMAIN, nothing applied.
    let (ok, out) = nsupdate(
        n.dns[0],
        &ka,
        &format!("prereq nxdomain {a_id}\nupdate add {a_id} 300 TXT \"pre\""),
    );
    assert!(!ok && out.contains("YXDOMAIN"), "{out}");
    assert!(!txt_at(n.dns[0], &a_id).contains(&"pre".to_string()));

    // Revocation takes effect on the next UPDATE, without a restart.
    let (s, out) = dnsmesh::client::http_client::request(
        &n.url(),
        "POST",
        "/v1/admin/revoke",
        Some(OP),
        &serde_json::json!({"what": ka.name}).to_string(),
    )
    .unwrap();
    assert_eq!(s, 200, "{out}");
    let (ok, out) = nsupdate(n.dns[0], &ka, &format!("update add {a_id} 300 TXT \"after-revoke\""));
    assert!(!ok && out.contains("NOTAUTH"), "{out}");
    // The admin command lists the revoked key.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dnsmesh-node"))
        .args(["admin", "--node", &n.url(), "--token", OP, "list"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"revoked\":true"));
}

#[test]
fn unsigned_updates_only_for_verified_claims() {
    let n = Node::start("mesh.test", &[]);
    // Unsigned non-claim UPDATE in the zone: REFUSED; another zone (the CLI's probe): NOTAUTH.
    let mut m = Message::new(rand_id(), MessageType::Query, OpCode::Update);
    let mut zq = Query::new();
    zq.set_name(Name::from_str("mesh.test.").unwrap()).set_query_type(RecordType::SOA);
    m.add_query(zq);
    m.add_authority(txt_rr("x.mesh.test", DNSClass::IN, "v"));
    let r = Message::from_vec(&udp_exchange(n.dns[0], &m.to_vec().unwrap())).unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    let mut m = Message::new(rand_id(), MessageType::Query, OpCode::Update);
    let mut zq = Query::new();
    zq.set_name(Name::from_str("127.0.0.1.").unwrap()).set_query_type(RecordType::SOA);
    m.add_query(zq);
    m.add_authority(txt_rr("_dmp-probe.127.0.0.1", DNSClass::IN, "v=dmp1;t=probe"));
    let r = Message::from_vec(&udp_exchange(n.dns[0], &m.to_vec().unwrap())).unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::NotAuth);
    // A signed claim is accepted unsigned; a forged one is refused.
    let sender = Identity::from_private_bytes([9; 32]);
    let t = now();
    let claim = dnsmesh::proto::records::claim::ClaimRecord {
        msg_id: [5; 16],
        sender_spk: sender.ed25519_public(),
        sender_mailbox_domain: "other.test".into(),
        slot: 3,
        ts: t,
        exp: t + 300,
    };
    let txt = claim.sign(&sender).unwrap();
    let owner = names::claim(3, &[1; 32], "mesh.test");
    let send = |value: &str| {
        let mut m = Message::new(rand_id(), MessageType::Query, OpCode::Update);
        let mut zq = Query::new();
        zq.set_name(Name::from_str("mesh.test.").unwrap()).set_query_type(RecordType::SOA);
        m.add_query(zq);
        m.add_authority(txt_rr(&owner, DNSClass::IN, value));
        Message::from_vec(&udp_exchange(n.dns[0], &m.to_vec().unwrap()))
            .unwrap()
            .metadata
            .response_code
    };
    assert_eq!(send(&txt), ResponseCode::NoError);
    assert_eq!(txt_at(n.dns[0], &owner), vec![txt.clone()]);
    // Flip one base64 character inside the signature: the claim no longer verifies.
    let mut forged = txt.clone().into_bytes();
    let i = forged.len() - 10;
    forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    assert_ne!(forged, txt);
    assert_eq!(send(&forged), ResponseCode::Refused);
}

#[test]
fn registration_is_idempotent_for_the_same_key_and_409_for_another() {
    let n = Node::start("mesh.test", &[]);
    let (_, first) = register(&n, "carol", 11, true);
    let (_, again) = register(&n, "carol", 11, true);
    assert_eq!(
        first["tsig_key_name"], again["tsig_key_name"],
        "same key → same key name (rotated secret)"
    );
    // Another Ed25519 key for the same subject: 409.
    let id = Identity::from_private_bytes([12; 32]);
    let (_, body) = http(&n.url(), "GET", "/v1/registration/challenge", None, "").unwrap();
    let ch: serde_json::Value = serde_json::from_str(&body).unwrap();
    let challenge: [u8; 32] =
        hex::decode(ch["challenge"].as_str().unwrap()).unwrap().try_into().unwrap();
    let sig = registration::sign_registration(
        id.signing_key(),
        &challenge,
        "carol@mesh.test",
        ch["node"].as_str().unwrap(),
    );
    let req = serde_json::json!({"subject": "carol@mesh.test", "ed25519_spk": hex::encode(id.ed25519_public()),
        "challenge": hex::encode(challenge), "signature": hex::encode(sig)});
    let (s, body) =
        http(&n.url(), "POST", "/v1/registration/tsig-confirm", None, &req.to_string()).unwrap();
    assert_eq!(s, 409, "{body}");
    // The challenge was consumed: replaying it is refused.
    let (s, _) =
        http(&n.url(), "POST", "/v1/registration/tsig-confirm", None, &req.to_string()).unwrap();
    assert_eq!(s, 400);
    // A bad signature is 401, a malformed body 400.
    let (_, body) = http(&n.url(), "GET", "/v1/registration/challenge", None, "").unwrap();
    let ch: serde_json::Value = serde_json::from_str(&body).unwrap();
    let bad = serde_json::json!({"subject": "dave@mesh.test", "ed25519_spk": hex::encode(id.ed25519_public()),
        "challenge": ch["challenge"], "signature": hex::encode([0u8; 64])});
    assert_eq!(
        http(&n.url(), "POST", "/v1/registration/confirm", None, &bad.to_string()).unwrap().0,
        401
    );
    assert_eq!(http(&n.url(), "POST", "/v1/registration/confirm", None, "{}").unwrap().0, 400);
}

/// Alice's TSIG signer on node `n` (self-service registration).
fn alice_signer(n: &Node) -> TSigner {
    let (_alice, a) = register(n, "alice", 1, true);
    let key = tsig_of(&a);
    TSigner::new(
        key.secret.clone(),
        TsigAlgorithm::HmacSha256,
        Name::from_str(&key.name).unwrap(),
        300,
    )
    .unwrap()
}

/// Send one TSIG-signed UPDATE per `(name, value)` add, all in one write on one TCP
/// connection, and read as many replies. Returns the IDs in the order sent and the
/// (ID, rcode) of each reply in the order received.
fn pipeline_adds(
    server: std::net::SocketAddr,
    signer: &TSigner,
    adds: &[(String, String)],
) -> (Vec<u16>, Vec<(u16, ResponseCode)>) {
    use std::io::{Read, Write};
    let mut ids = Vec::new();
    let mut wire = Vec::new();
    for (name, value) in adds {
        let mut m = Message::new(rand_id(), MessageType::Query, OpCode::Update);
        ids.push(m.metadata.id);
        let mut zq = Query::new();
        zq.set_name(Name::from_str("mesh.test.").unwrap()).set_query_type(RecordType::SOA);
        m.add_query(zq);
        m.add_authority(txt_rr(name, DNSClass::IN, value));
        m.finalize(signer, now()).unwrap();
        let bytes = m.to_vec().unwrap();
        wire.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        wire.extend_from_slice(&bytes);
    }
    let mut s = std::net::TcpStream::connect(server).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
    s.write_all(&wire).unwrap();
    let replies = adds
        .iter()
        .map(|_| {
            let mut len = [0u8; 2];
            s.read_exact(&mut len).unwrap();
            let mut r = vec![0u8; u16::from_be_bytes(len) as usize];
            s.read_exact(&mut r).unwrap();
            let m = Message::from_vec(&r).unwrap();
            (m.metadata.id, m.metadata.response_code)
        })
        .collect();
    (ids, replies)
}

/// 16 UPDATEs pipelined on one TCP connection with a 300 ms group-commit window are all
/// answered (NOERROR, matched by ID, in whatever order) in a few windows, where handling
/// them one after another took 16 windows. Every value is then in the zone.
#[test]
fn pipelined_tcp_updates_share_group_commits() {
    const WINDOW_MS: u64 = 300;
    const N: usize = 16;
    let n = Node::start(
        "mesh.test",
        &[
            ("DNSMESH_AUTH__OPERATOR_TOKEN", OP),
            ("DNSMESH_NODE__COMMIT_DELAY_US", &(WINDOW_MS * 1000).to_string()),
        ],
    );
    let signer = alice_signer(&n);
    let adds: Vec<(String, String)> = (0..N)
        .map(|i| (format!("slot-{i}.mb-{:012x}.mesh.test", i), format!("pipelined-{i}")))
        .collect();
    let t0 = std::time::Instant::now();
    let (ids, replies) = pipeline_adds(n.dns[0], &signer, &adds);
    let took = t0.elapsed();
    let mut ids: std::collections::HashSet<u16> = ids.into_iter().collect();
    assert_eq!(ids.len(), N, "distinct IDs");
    for (id, rcode) in replies {
        assert_eq!(rcode, ResponseCode::NoError);
        assert!(ids.remove(&id), "one reply per UPDATE, by ID");
    }
    eprintln!(
        "{N} pipelined UPDATEs on one TCP connection, {WINDOW_MS} ms commit window: {took:?}"
    );
    // One after another: N windows at least (4.8 s). Concurrently: the first window, and a
    // second for any that came in while the first flush ran.
    assert!(
        took < std::time::Duration::from_millis(WINDOW_MS * N as u64 / 2),
        "{N} pipelined UPDATEs took {took:?}: handled one after another"
    );
    for (name, value) in &adds {
        assert_eq!(txt_at(n.dns[0], name), vec![value.clone()]);
    }
}

/// Pipelined UPDATEs on one TCP connection are handled concurrently (they share group
/// commits), yet applied in the order they were sent: each one's checks run without
/// waiting up to its `Apply`, so the store's mailbox receives them in arrival order. With
/// a cap of 4 values per name, 12 pipelined adds to one name end as they would one at a
/// time: the first 4 stored, the other 8 refused.
#[test]
fn pipelined_tcp_updates_are_applied_in_the_order_sent() {
    const CAP: usize = 4;
    let n = Node::start(
        "mesh.test",
        &[
            ("DNSMESH_AUTH__OPERATOR_TOKEN", OP),
            ("DNSMESH_LIMITS__MAX_VALUES_PER_NAME", "4"),
            ("DNSMESH_LIMITS__MAILBOX_BURST", "1000"),
            ("DNSMESH_LIMITS__UPDATE_KEY_BURST", "1000"),
        ],
    );
    let signer = alice_signer(&n);
    let name = "slot-3.mb-00000000beef.mesh.test";
    let adds: Vec<(String, String)> =
        (0..12).map(|i| (name.to_string(), format!("v{i:02}"))).collect();
    let (ids, replies) = pipeline_adds(n.dns[0], &signer, &adds);
    let codes: std::collections::HashMap<u16, ResponseCode> = replies.into_iter().collect();
    let got: Vec<ResponseCode> = ids.iter().map(|id| codes[id]).collect();
    let want: Vec<ResponseCode> = (0..12)
        .map(|i| if i < CAP { ResponseCode::NoError } else { ResponseCode::Refused })
        .collect();
    assert_eq!(got, want, "replies in the order sent");
    let mut stored = txt_at(n.dns[0], name);
    stored.sort();
    assert_eq!(stored, (0..CAP).map(|i| format!("v{i:02}")).collect::<Vec<_>>());
}
