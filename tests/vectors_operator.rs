//! Upstream vectors for the operator-signed records: cluster manifest, bootstrap,
//! rotation and revocation (protocol §4.6–4.9, §12). Every case of each file is run.

use dnsmesh::proto::keys::Identity;
use dnsmesh::proto::records::bootstrap::{BootstrapEntry, BootstrapRecord};
use dnsmesh::proto::records::cluster::{ClusterManifest, ClusterNode};
use dnsmesh::proto::records::revocation::{RevocationReason, RevocationRecord};
use dnsmesh::proto::records::rotation::{RotationRecord, SubjectType};
use serde_json::Value;

/// In the 5-year window of every success vector (§12.3); `TS_2030` itself is not.
const NOW_IN_WINDOW: u64 = 1_900_000_000;
const TS_2030: u64 = 1_893_456_000;
const EXP_2035: u64 = 2_051_222_400;
/// First `now` at which `EXP_2035 − now` fits the 5-year cap.
const WINDOW_START: u64 = EXP_2035 - 157_680_000;

fn load(name: &str) -> Vec<Value> {
    let path = format!("{}/../shared/vectors/upstream/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str::<Value>(&text).unwrap().as_array().unwrap().clone()
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_else(|| panic!("missing string {k}"))
}

fn u(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("missing integer {k}"))
}

fn h32(v: &Value, k: &str) -> [u8; 32] {
    hex::decode(s(v, k)).unwrap().try_into().unwrap()
}

fn wire(c: &Value) -> String {
    String::from_utf8(hex::decode(s(c, "expected_wire_hex")).unwrap()).unwrap()
}

fn signer(c: &Value, seed_key: &str) -> Identity {
    Identity::from_private_bytes(h32(c, seed_key))
}

fn is_reject(c: &Value) -> bool {
    c.get("expected_parse_result").and_then(Value::as_str) == Some("none")
}

/// Cases that reuse another case's wire must carry exactly that wire.
fn check_wire_from(cases: &[Value], c: &Value, desc: &str) {
    if let Some(i) = c.get("wire_from_case").and_then(Value::as_u64) {
        assert_eq!(wire(c), wire(&cases[i as usize]), "{desc}: wire_from_case");
    }
}

/// `expected_multi_string: true` means the value needs several 255-byte strings (the
/// flag is only present on the cases built to exercise that).
fn check_multi_string(c: &Value, txt: &str, desc: &str) {
    if let Some(multi) = c.get("expected_multi_string").and_then(Value::as_bool) {
        assert_eq!(txt.len() > 255, multi, "{desc}: multi-string ({} bytes)", txt.len());
    }
}

fn cluster_from_inputs(i: &Value) -> ClusterManifest {
    ClusterManifest {
        cluster_name: s(i, "cluster_name").into(),
        operator_spk: h32(i, "operator_spk_hex"),
        nodes: i["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| ClusterNode {
                node_id: s(n, "node_id").into(),
                http_endpoint: s(n, "http_endpoint").into(),
                dns_endpoint: n["dns_endpoint"].as_str().map(String::from),
            })
            .collect(),
        seq: u(i, "seq"),
        exp: u(i, "exp"),
    }
}

#[test]
fn cluster_manifest_vectors() {
    let cases = load("cluster_manifest.json");
    assert_eq!(cases.len(), 4);
    for (idx, c) in cases.iter().enumerate() {
        let desc = format!("cluster[{idx}] {}", s(c, "description"));
        check_wire_from(&cases, c, &desc);
        let id = signer(c, "operator_seed_hex");
        let txt = wire(c);
        let spk = id.ed25519_public();
        if let Some(i) = c.get("inputs") {
            assert_eq!(spk, h32(i, "operator_spk_hex"), "{desc}: derived operator key");
            let m = cluster_from_inputs(i);
            assert_eq!(m.sign(id.signing_key()).unwrap(), txt, "{desc}: signed wire");
        }
        if is_reject(c) {
            let key = c
                .get("verify_with_operator_spk_hex")
                .map_or(spk, |_| h32(c, "verify_with_operator_spk_hex"));
            let now = c.get("verify_with_now").map_or(NOW_IN_WINDOW, |v| v.as_u64().unwrap());
            assert!(ClusterManifest::parse_and_verify(&txt, &key, None, now).is_none(), "{desc}");
            // The stated context is the only reason: the signer's key at the record's
            // own `exp` (an accepted boundary) parses it.
            let exp = c.get("inputs").map_or(EXP_2035, |i| u(i, "exp"));
            assert!(
                ClusterManifest::parse_and_verify(&txt, &spk, None, exp).is_some(),
                "{desc}: control"
            );
            continue;
        }
        check_multi_string(c, &txt, &desc);
        let i = &c["inputs"];
        let name = s(i, "cluster_name");
        let m = ClusterManifest::parse_and_verify(&txt, &spk, Some(name), NOW_IN_WINDOW)
            .unwrap_or_else(|| panic!("{desc}: parse"));
        assert_eq!(m.cluster_name, s(c, "expected_parse_cluster_name"), "{desc}");
        assert_eq!(m.seq, u(c, "expected_parse_seq"), "{desc}");
        assert_eq!(m, cluster_from_inputs(i), "{desc}: every field");
        // Name binding is casefolded and ignores one trailing dot.
        let upper = format!("{}.", name.to_uppercase());
        assert!(
            ClusterManifest::parse_and_verify(&txt, &spk, Some(&upper), NOW_IN_WINDOW).is_some(),
            "{desc}"
        );
        assert!(
            ClusterManifest::parse_and_verify(&txt, &spk, Some("other.example"), NOW_IN_WINDOW)
                .is_none(),
            "{desc}"
        );
        // §12.3 window: [EXP_2035 − 5 y, EXP_2035], and TS_2030 lies outside it.
        let at = |now| ClusterManifest::parse_and_verify(&txt, &spk, None, now).is_some();
        assert!(!at(TS_2030) && !at(WINDOW_START - 1) && at(WINDOW_START), "{desc}: window start");
        assert!(
            at(EXP_2035) && !at(EXP_2035 + 1),
            "{desc}: exp == now accepted, exp < now rejected"
        );
    }
}

fn bootstrap_from_inputs(i: &Value) -> BootstrapRecord {
    BootstrapRecord {
        user_domain: s(i, "user_domain").into(),
        signer_spk: h32(i, "signer_spk_hex"),
        entries: i["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| BootstrapEntry {
                priority: u(e, "priority") as u16,
                cluster_base_domain: s(e, "cluster_base_domain").into(),
                operator_spk: h32(e, "operator_spk_hex"),
            })
            .collect(),
        seq: u(i, "seq"),
        exp: u(i, "exp"),
    }
}

#[test]
fn bootstrap_record_vectors() {
    let cases = load("bootstrap_record.json");
    assert_eq!(cases.len(), 4);
    for (idx, c) in cases.iter().enumerate() {
        let desc = format!("bootstrap[{idx}] {}", s(c, "description"));
        check_wire_from(&cases, c, &desc);
        let id = signer(c, "signer_seed_hex");
        let txt = wire(c);
        let spk = id.ed25519_public();
        if let Some(i) = c.get("inputs") {
            assert_eq!(spk, h32(i, "signer_spk_hex"), "{desc}: derived signer key");
            let rec = bootstrap_from_inputs(i);
            assert_eq!(rec.sign(id.signing_key()).unwrap(), txt, "{desc}: signed wire");
            // Signing sorts by priority first (T33): reversed input gives the same bytes.
            let mut rev = rec.clone();
            rev.entries.reverse();
            assert_eq!(rev.sign(id.signing_key()).unwrap(), txt, "{desc}: sorted before signing");
        }
        if is_reject(c) {
            let key = c
                .get("verify_with_signer_spk_hex")
                .map_or(spk, |_| h32(c, "verify_with_signer_spk_hex"));
            let now = c.get("verify_with_now").map_or(NOW_IN_WINDOW, |v| v.as_u64().unwrap());
            assert!(BootstrapRecord::parse_and_verify(&txt, &key, None, now).is_none(), "{desc}");
            let exp = c.get("inputs").map_or(EXP_2035, |i| u(i, "exp"));
            assert!(
                BootstrapRecord::parse_and_verify(&txt, &spk, None, exp).is_some(),
                "{desc}: control"
            );
            continue;
        }
        check_multi_string(c, &txt, &desc);
        let i = &c["inputs"];
        let ud = s(i, "user_domain");
        let rec = BootstrapRecord::parse_and_verify(&txt, &spk, Some(ud), NOW_IN_WINDOW)
            .unwrap_or_else(|| panic!("{desc}: parse"));
        assert_eq!(rec.user_domain, s(c, "expected_parse_user_domain"), "{desc}");
        assert_eq!(rec.seq, u(c, "expected_parse_seq"), "{desc}");
        assert_eq!(rec, bootstrap_from_inputs(i), "{desc}: every field");
        assert_eq!(rec.best_entry(), rec.entries.first(), "{desc}");
        assert!(
            BootstrapRecord::parse_and_verify(&txt, &spk, Some("EXAMPLE.org."), NOW_IN_WINDOW)
                .is_none(),
            "{desc}"
        );
        let at = |now| BootstrapRecord::parse_and_verify(&txt, &spk, None, now).is_some();
        assert!(!at(TS_2030) && !at(WINDOW_START - 1) && at(WINDOW_START), "{desc}: window start");
        assert!(at(EXP_2035) && !at(EXP_2035 + 1), "{desc}: exp boundary");
    }
}

fn rotation_from_inputs(i: &Value) -> RotationRecord {
    RotationRecord {
        subject_type: SubjectType::try_from(u(i, "subject_type") as u8).unwrap(),
        subject: s(i, "subject").into(),
        old_spk: h32(i, "old_spk_hex"),
        new_spk: h32(i, "new_spk_hex"),
        seq: u(i, "seq"),
        ts: u(i, "ts"),
        exp: u(i, "exp"),
    }
}

fn blob(txt: &str, prefix: &str) -> Vec<u8> {
    dnsmesh::proto::b64::decode_strict(txt.strip_prefix(prefix).unwrap()).unwrap()
}

#[test]
fn rotation_record_vectors() {
    let cases = load("rotation_record.json");
    assert_eq!(cases.len(), 5);
    for (idx, c) in cases.iter().enumerate() {
        let desc = format!("rotation[{idx}] {}", s(c, "description"));
        let old = signer(c, "old_seed_hex");
        let new = signer(c, "new_seed_hex");
        let txt = wire(c);
        if let Some(i) = c.get("inputs") {
            assert_eq!(old.ed25519_public(), h32(i, "old_spk_hex"), "{desc}: old key");
            assert_eq!(new.ed25519_public(), h32(i, "new_spk_hex"), "{desc}: new key");
            let r = rotation_from_inputs(i);
            assert_eq!(
                r.sign(old.signing_key(), new.signing_key()).unwrap(),
                txt,
                "{desc}: signed wire"
            );
        }
        if is_reject(c) {
            let now = c.get("verify_with_now").map_or(NOW_IN_WINDOW, |v| v.as_u64().unwrap());
            assert!(RotationRecord::parse_and_verify(&txt, None, None, now).is_none(), "{desc}");
            if let Some(from) = c.get("wire_from_case").and_then(Value::as_u64) {
                // Same body and old signature as the source case; only sig_new is forged.
                let (a, b) = (
                    blob(&txt, "v=dmp1;t=rotation;"),
                    blob(&wire(&cases[from as usize]), "v=dmp1;t=rotation;"),
                );
                assert_eq!(a.len(), b.len(), "{desc}");
                assert_eq!(a[..a.len() - 64], b[..b.len() - 64], "{desc}: body and sig_old shared");
                assert_ne!(a[a.len() - 64..], b[b.len() - 64..], "{desc}: sig_new differs");
            } else {
                assert!(
                    RotationRecord::parse_and_verify(&txt, None, None, 100).is_some(),
                    "{desc}: exp == now"
                );
            }
            continue;
        }
        let i = &c["inputs"];
        let want = rotation_from_inputs(i);
        let r = RotationRecord::parse_and_verify(
            &txt,
            Some(&want.old_spk),
            Some(s(i, "subject")),
            NOW_IN_WINDOW,
        )
        .unwrap_or_else(|| panic!("{desc}: parse"));
        assert_eq!(r.subject, s(c, "expected_parse_subject"), "{desc}");
        assert_eq!(r.seq, u(c, "expected_parse_seq"), "{desc}");
        assert_eq!(r, want, "{desc}: every field");
        assert!(
            RotationRecord::parse_and_verify(&txt, Some(&want.new_spk), None, NOW_IN_WINDOW)
                .is_none(),
            "{desc}: expected old key"
        );
        let at = |now| RotationRecord::parse_and_verify(&txt, None, None, now).is_some();
        assert!(
            !at(TS_2030) && at(WINDOW_START) && at(EXP_2035) && !at(EXP_2035 + 1),
            "{desc}: window"
        );
    }
}

fn revocation_from_inputs(i: &Value) -> RevocationRecord {
    RevocationRecord {
        subject_type: SubjectType::try_from(u(i, "subject_type") as u8).unwrap(),
        subject: s(i, "subject").into(),
        revoked_spk: h32(i, "revoked_spk_hex"),
        reason: RevocationReason::try_from(u(i, "reason_code") as u8).unwrap(),
        ts: u(i, "ts"),
    }
}

#[test]
fn revocation_record_vectors() {
    let cases = load("revocation_record.json");
    assert_eq!(cases.len(), 4);
    for (idx, c) in cases.iter().enumerate() {
        let desc = format!("revocation[{idx}] {}", s(c, "description"));
        check_wire_from(&cases, c, &desc);
        let id = signer(c, "revoked_seed_hex");
        let spk = id.ed25519_public();
        let txt = wire(c);
        let now = u(c, "verify_with_now");
        if let Some(i) = c.get("inputs") {
            assert_eq!(spk, h32(i, "revoked_spk_hex"), "{desc}: derived key");
            assert_eq!(
                revocation_from_inputs(i).sign(id.signing_key()).unwrap(),
                txt,
                "{desc}: signed wire"
            );
        }
        if is_reject(c) {
            let key = c
                .get("verify_with_expected_revoked_spk_hex")
                .map(|_| h32(c, "verify_with_expected_revoked_spk_hex"));
            let max_age = c.get("verify_with_max_age_seconds").and_then(Value::as_u64);
            assert!(
                RevocationRecord::parse_and_verify(&txt, key.as_ref(), None, max_age, now)
                    .is_none(),
                "{desc}"
            );
            // Without the stated context the same wire is accepted (permanent model).
            assert!(
                RevocationRecord::parse_and_verify(&txt, Some(&spk), None, None, now).is_some(),
                "{desc}: control"
            );
            continue;
        }
        let i = &c["inputs"];
        let want = revocation_from_inputs(i);
        let r =
            RevocationRecord::parse_and_verify(&txt, Some(&spk), Some(s(i, "subject")), None, now)
                .unwrap_or_else(|| panic!("{desc}: parse"));
        assert_eq!(r.subject, s(c, "expected_parse_subject"), "{desc}");
        assert_eq!(r.reason as u64, u(c, "expected_parse_reason_code"), "{desc}");
        assert_eq!(r, want, "{desc}: every field");
        // Future-ts guard: ts ≤ now + 300 accepted, one second more rejected.
        let at = |now| RevocationRecord::parse_and_verify(&txt, None, None, None, now).is_some();
        assert!(at(want.ts - 300) && !at(want.ts - 301), "{desc}: future-ts guard");
        // max_age boundary: rejected only when ts + max_age < now.
        let aged =
            |age| RevocationRecord::parse_and_verify(&txt, None, None, Some(age), now).is_some();
        assert!(aged(60) && !aged(59), "{desc}: max_age boundary");
    }
}
