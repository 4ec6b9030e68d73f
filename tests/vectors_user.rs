//! Upstream vectors for the user-facing records: identity_record.json, prekey.json,
//! slot_manifest.json (protocol §12). Every case: encode cases byte-exact and parsed at an
//! in-window `now` (§12.3) with their `expected_parse_*`; reject cases parse to `None`.

use dnsmesh::proto::keys::Identity;
use dnsmesh::proto::records::identity::IdentityRecord;
use dnsmesh::proto::records::manifest::SlotManifest;
use dnsmesh::proto::records::prekey::Prekey;
use serde_json::Value;

/// In-window `now` for the 30-day-capped manifest and prekey vectors (§12.3).
const NOW_30D: u64 = 2_050_000_000;

fn load(name: &str) -> Vec<Value> {
    let path = format!("{}/../shared/vectors/upstream/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn h32(v: &Value) -> [u8; 32] {
    hex::decode(v.as_str().unwrap()).unwrap().try_into().unwrap()
}

fn h16(v: &Value) -> [u8; 16] {
    hex::decode(v.as_str().unwrap()).unwrap().try_into().unwrap()
}

fn signer(case: &Value, field: &str) -> Identity {
    Identity::from_private_bytes(h32(&case[field]))
}

fn wire(case: &Value) -> String {
    String::from_utf8(hex::decode(case["expected_wire_hex"].as_str().unwrap()).unwrap()).unwrap()
}

fn is_reject(case: &Value) -> bool {
    case.get("expected_parse_result").and_then(Value::as_str) == Some("none")
}

#[test]
fn identity_record_vectors() {
    let cases = load("identity_record.json");
    assert_eq!(cases.len(), 4);
    for case in &cases {
        let name = case["description"].as_str().unwrap();
        let txt = wire(case);
        if is_reject(case) {
            assert!(case.get("wire_from_case").is_some(), "{name}");
            assert_eq!(IdentityRecord::parse_and_verify(&txt), None, "{name}");
            continue;
        }
        let id = signer(case, "identity_seed_hex");
        let inp = &case["inputs"];
        assert_eq!(id.ed25519_public(), h32(&inp["ed25519_spk_hex"]), "{name}: derived spk");
        let versions: Vec<u8> = inp
            .get("versions")
            .map(|v| v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u8).collect())
            .unwrap_or_else(|| vec![1]);
        let rec = IdentityRecord {
            username: inp["username"].as_str().unwrap().to_owned(),
            x25519_pk: h32(&inp["x25519_pk_hex"]),
            ed25519_spk: h32(&inp["ed25519_spk_hex"]),
            ts: inp["ts"].as_u64().unwrap(),
            versions: versions.clone(),
        };
        assert_eq!(rec.sign(&id).unwrap(), txt, "{name}: encode");
        let parsed =
            IdentityRecord::parse_and_verify(&txt).unwrap_or_else(|| panic!("{name}: parse"));
        assert_eq!(parsed, rec, "{name}: round trip");
        assert_eq!(parsed.username, case["expected_parse_username"].as_str().unwrap(), "{name}");
        if let Some(ev) = case.get("expected_parse_versions") {
            let ev: Vec<u8> =
                ev.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u8).collect();
            assert_eq!(parsed.versions, ev, "{name}: versions");
        }
        assert_eq!(parsed.versions, versions, "{name}: versions default");
    }
}

#[test]
fn prekey_vectors() {
    let cases = load("prekey.json");
    assert_eq!(cases.len(), 4);
    for case in &cases {
        let name = case["description"].as_str().unwrap();
        let txt = wire(case);
        let verify_spk = h32(&case["verify_with_signer_spk_hex"]);
        if is_reject(case) {
            assert_eq!(Prekey::parse_and_verify(&txt, &verify_spk, NOW_30D), None, "{name}");
            continue;
        }
        let id = signer(case, "signer_seed_hex");
        assert_eq!(id.ed25519_public(), verify_spk, "{name}: derived spk");
        let inp = &case["inputs"];
        let pk = Prekey {
            prekey_id: inp["prekey_id"].as_u64().unwrap() as u32,
            public_key: h32(&inp["public_key_hex"]),
            exp: inp["exp"].as_u64().unwrap(),
        };
        assert_eq!(pk.sign(&id).unwrap(), txt, "{name}: encode");
        let parsed = Prekey::parse_and_verify(&txt, &verify_spk, NOW_30D)
            .unwrap_or_else(|| panic!("{name}: parse"));
        assert_eq!(parsed, pk, "{name}: round trip");
        assert_eq!(
            u64::from(parsed.prekey_id),
            case["expected_parse_prekey_id"].as_u64().unwrap(),
            "{name}"
        );
        // exp = 100 parses (expiry is the caller's), but is expired; the others are not.
        assert_eq!(parsed.is_expired(NOW_30D), pk.exp < NOW_30D, "{name}: caller-side expiry");
        // The 30-day cap: the 2035 exp is rejected at wall-clock-like 2030 times.
        if pk.exp > NOW_30D {
            assert_eq!(
                Prekey::parse_and_verify(&txt, &verify_spk, 1_893_456_000),
                None,
                "{name}: cap"
            );
            assert!(
                Prekey::parse_and_verify(&txt, &verify_spk, pk.exp - 2_592_000).is_some(),
                "{name}: cap edge"
            );
            assert!(
                Prekey::parse_and_verify(&txt, &verify_spk, pk.exp - 2_592_001).is_none(),
                "{name}: cap edge"
            );
        }
    }
}

#[test]
fn slot_manifest_vectors() {
    let cases = load("slot_manifest.json");
    assert_eq!(cases.len(), 3);
    for case in &cases {
        let name = case["description"].as_str().unwrap();
        let txt = wire(case);
        if is_reject(case) {
            assert_eq!(SlotManifest::parse_and_verify(&txt, NOW_30D), None, "{name}");
            continue;
        }
        let id = signer(case, "sender_seed_hex");
        let inp = &case["inputs"];
        assert_eq!(id.ed25519_public(), h32(&inp["sender_spk_hex"]), "{name}: derived spk");
        let m = SlotManifest {
            msg_id: h16(&inp["msg_id_hex"]),
            sender_spk: h32(&inp["sender_spk_hex"]),
            recipient_id: h32(&inp["recipient_id_hex"]),
            total_chunks: inp["total_chunks"].as_u64().unwrap() as u32,
            data_chunks: inp["data_chunks"].as_u64().unwrap() as u32,
            prekey_id: inp["prekey_id"].as_u64().unwrap() as u32,
            ts: inp["ts"].as_u64().unwrap(),
            exp: inp["exp"].as_u64().unwrap(),
            chunk_hashes: vec![],
        };
        assert_eq!(m.sign(&id).unwrap(), txt, "{name}: encode");
        assert_eq!(txt.len(), 252, "{name}: legacy length");
        let parsed = SlotManifest::parse_and_verify(&txt, NOW_30D)
            .unwrap_or_else(|| panic!("{name}: parse"));
        assert_eq!(parsed, m, "{name}: round trip");
        assert!(!parsed.has_chunk_hashes(), "{name}: legacy body has no hashes");
        assert_eq!(
            u64::from(parsed.total_chunks),
            case["expected_parse_total_chunks"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(
            SlotManifest::parse_and_verify(&txt, 1_893_456_000),
            None,
            "{name}: 30-day cap at TS_2030"
        );
        assert!(
            !parsed.is_expired(parsed.exp) && parsed.is_expired(parsed.exp + 1),
            "{name}: expiry boundary"
        );
    }
}
