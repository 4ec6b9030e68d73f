//! Property tests for the operator records, heartbeat, envelope, registration helpers and
//! seal: parsers never panic on arbitrary input, and sign → parse round-trips.

use dnsmesh::proto::b64;
use dnsmesh::proto::envelope;
use dnsmesh::proto::records::bootstrap::{BootstrapEntry, BootstrapRecord};
use dnsmesh::proto::records::cluster::{ClusterManifest, ClusterNode};
use dnsmesh::proto::records::heartbeat::{validate_endpoint, Heartbeat, HeartbeatPolicy};
use dnsmesh::proto::records::revocation::{RevocationReason, RevocationRecord};
use dnsmesh::proto::records::rotation::{RotationRecord, SubjectType};
use dnsmesh::proto::records::{
    RecordKind, CAP_30_DAYS, CAP_5_YEARS, PREFIX_BOOTSTRAP, PREFIX_CLUSTER, PREFIX_HEARTBEAT,
    PREFIX_REVOCATION, PREFIX_ROTATION,
};
use dnsmesh::proto::{keys, registration as reg, seal};
use ed25519_dalek::SigningKey;
use proptest::prelude::*;

const NOW: u64 = 1_800_000_000;

/// Run every parser of this area on one TXT value; only panics matter.
fn parse_all(txt: &str) {
    let spk = SigningKey::from_bytes(&[7u8; 32]).verifying_key().to_bytes();
    for now in [0, NOW, u64::MAX] {
        let _ = ClusterManifest::parse_and_verify(txt, &spk, Some("mesh.example.com"), now);
        let _ = BootstrapRecord::parse_and_verify(txt, &spk, Some("example.com"), now);
        let _ = RotationRecord::parse_and_verify(txt, Some(&spk), Some("a@b.c"), now);
        let _ = RevocationRecord::parse_and_verify(txt, Some(&spk), Some("x"), Some(u64::MAX), now);
        let _ = Heartbeat::parse_and_verify(txt, now);
        let relaxed = HeartbeatPolicy { max_skew: u64::MAX, allow_private_endpoints: true };
        let _ = Heartbeat::parse_and_verify_with(txt, now, &relaxed);
    }
    let _ = RecordKind::of(txt);
    let _ = envelope::canonicalize_address(txt);
    let _ = envelope::decode(txt.as_bytes());
    let _ = reg::canonicalize_subject(txt);
    let _ = reg::classify_name(txt).owned_by(txt, Some(txt));
    let _ = reg::coverage(&[txt, "slot-*.mb-*.z", "*"], txt);
    let _ = reg::suffix_covers(txt, "a.b.c");
    let _ = validate_endpoint(txt, false);
    let _ = validate_endpoint(txt, true);
}

/// Sign `body` with the fixed test key and wrap it under `prefix` (for parsers that
/// verify first, so random bodies reach the field parser).
fn signed_wire(prefix: &str, body: &[u8], sigs: usize) -> String {
    let key = SigningKey::from_bytes(&[7u8; 32]);
    let mut blob = body.to_vec();
    for _ in 0..sigs {
        blob.extend_from_slice(&keys::sign(&key, body));
    }
    format!("{prefix}{}", b64::encode(&blob))
}

const PREFIXES: [&str; 5] =
    [PREFIX_CLUSTER, PREFIX_BOOTSTRAP, PREFIX_ROTATION, PREFIX_REVOCATION, PREFIX_HEARTBEAT];
const MAGICS: [&[u8]; 6] = [b"DMPCL01", b"DMPBS01", b"DMPROT1", b"DMPRV01", b"DMPHB03", b"DMPHB02"];

/// One valid body (signature stripped) per record type, signed by the test key where the
/// record embeds its signer, with its prefix and signature count.
fn valid_bodies() -> Vec<(&'static str, Vec<u8>, usize)> {
    let key = SigningKey::from_bytes(&[7u8; 32]);
    let other = SigningKey::from_bytes(&[8u8; 32]);
    let spk = key.verifying_key().to_bytes();
    let node = ClusterNode {
        node_id: "n1".into(),
        http_endpoint: "https://a.example".into(),
        dns_endpoint: Some("a.example:53".into()),
    };
    let wires = [
        (
            PREFIX_CLUSTER,
            ClusterManifest {
                cluster_name: "mesh.example".into(),
                operator_spk: spk,
                nodes: vec![node.clone(), ClusterNode { node_id: "n2".into(), ..node }],
                seq: 1,
                exp: NOW,
            }
            .sign(&key)
            .unwrap(),
            1,
        ),
        (
            PREFIX_BOOTSTRAP,
            BootstrapRecord {
                user_domain: "example.com".into(),
                signer_spk: spk,
                entries: vec![
                    BootstrapEntry {
                        priority: 1,
                        cluster_base_domain: "m.example".into(),
                        operator_spk: spk,
                    },
                    BootstrapEntry {
                        priority: 1,
                        cluster_base_domain: "n.example".into(),
                        operator_spk: spk,
                    },
                ],
                seq: 1,
                exp: NOW,
            }
            .sign(&key)
            .unwrap(),
            1,
        ),
        (
            PREFIX_ROTATION,
            RotationRecord {
                subject_type: SubjectType::UserIdentity,
                subject: "alice@example.com".into(),
                old_spk: spk,
                new_spk: other.verifying_key().to_bytes(),
                seq: 1,
                ts: NOW,
                exp: NOW,
            }
            .sign(&key, &other)
            .unwrap(),
            2,
        ),
        (
            PREFIX_REVOCATION,
            RevocationRecord {
                subject_type: SubjectType::ClusterOperator,
                subject: "mesh.example".into(),
                revoked_spk: spk,
                reason: RevocationReason::Routine,
                ts: NOW,
            }
            .sign(&key)
            .unwrap(),
            1,
        ),
        (
            PREFIX_HEARTBEAT,
            Heartbeat {
                endpoint: "https://[2606:4700::1]:443".into(),
                operator_spk: spk,
                version: "0.7.5".into(),
                capabilities: 1,
                claim_provider_zone: "mesh.example".into(),
                ts: NOW,
                exp: NOW + 60,
            }
            .sign(&key)
            .unwrap(),
            1,
        ),
    ];
    wires
        .into_iter()
        .map(|(prefix, txt, sigs)| {
            let blob = b64::decode_strict(&txt[prefix.len()..]).unwrap();
            (prefix, blob[..blob.len() - 64 * sigs].to_vec(), sigs)
        })
        .collect()
}

fn label() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?"
}

fn domain() -> impl Strategy<Value = String> {
    prop::collection::vec(label(), 1..4).prop_map(|l| l.join("."))
}

fn key() -> impl Strategy<Value = SigningKey> {
    any::<[u8; 32]>().prop_map(|s| SigningKey::from_bytes(&s))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_strings_never_panic(s in ".{0,400}") {
        parse_all(&s);
    }

    #[test]
    fn prefixed_base64_never_panics(p in 0usize..5, blob in prop::collection::vec(any::<u8>(), 0..900), junk in "[ -~]{0,4}") {
        let txt = format!("{}{}", PREFIXES[p], b64::encode(&blob));
        parse_all(&txt);
        parse_all(&format!("{txt}{junk}"));
    }

    #[test]
    fn signed_random_bodies_never_panic(
        p in 0usize..5,
        m in 0usize..6,
        rest in prop::collection::vec(any::<u8>(), 0..400),
        sigs in 1usize..3,
    ) {
        let mut body = MAGICS[m].to_vec();
        body.extend_from_slice(&rest);
        parse_all(&signed_wire(PREFIXES[p], &body, sigs));
    }

    #[test]
    fn mutated_valid_bodies_never_panic(
        which in 0usize..5,
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4),
    ) {
        let (prefix, body, sigs) = valid_bodies().swap_remove(which);
        let mut body = body;
        for (at, byte, op) in edits {
            let i = at.index(body.len() + 1);
            match op {
                0 if i < body.len() => body[i] = byte,
                1 => body.insert(i, byte),
                _ if i < body.len() => { body.remove(i); }
                _ => body.push(byte),
            }
        }
        parse_all(&signed_wire(prefix, &body, sigs));
    }

    #[test]
    fn arbitrary_plaintexts_decode(tail in prop::collection::vec(any::<u8>(), 0..600), prefixed in any::<bool>()) {
        let mut pt = if prefixed { envelope::PREFIX.to_vec() } else { Vec::new() };
        pt.extend_from_slice(&tail);
        let (body, _) = envelope::decode(&pt);
        prop_assert!(body.len() <= pt.len());
    }

    #[test]
    fn envelope_roundtrip(body in prop::collection::vec(any::<u8>(), 0..300), local in "[a-z0-9]([a-z0-9_-]{0,20})", host in domain(), upper in any::<bool>()) {
        let addr = format!("{local}@{host}.");
        let input = if upper { addr.to_uppercase() } else { addr.clone() };
        let want = envelope::canonicalize_address(&input);
        prop_assert_eq!(want.as_deref(), Some(&addr[..addr.len() - 1]));
        let pt = envelope::encode(&body, Some(&input));
        prop_assert_eq!(envelope::decode(&pt), (body.clone(), want));
        // v1: no address → unwrapped body (which decodes as itself unless it looks enveloped).
        prop_assert_eq!(envelope::encode(&body, None), body);
    }

    #[test]
    fn cluster_roundtrip(
        k in key(),
        name in domain(),
        nodes in prop::collection::vec(("[a-zA-Z0-9_.-]{1,16}", "https://[a-z]{1,20}\\.example:[0-9]{2,4}", prop::option::of("[a-z0-9.:]{1,30}")), 1..6),
        seq in any::<u64>(),
        ttl in 0..=CAP_5_YEARS,
    ) {
        let mut seen = std::collections::HashSet::new();
        let nodes: Vec<_> = nodes.into_iter().filter(|n| seen.insert(n.0.clone()))
            .map(|(id, http, dns)| ClusterNode { node_id: id, http_endpoint: http, dns_endpoint: dns })
            .collect();
        let m = ClusterManifest { cluster_name: name.clone(), operator_spk: k.verifying_key().to_bytes(), nodes, seq, exp: NOW + ttl };
        let txt = m.sign(&k).unwrap();
        prop_assert_eq!(ClusterManifest::parse_and_verify(&txt, &m.operator_spk, Some(&name.to_uppercase()), NOW), Some(m.clone()));
        prop_assert_eq!(ClusterManifest::parse_and_verify(&txt, &m.operator_spk, None, NOW + ttl + 1), None);
    }

    #[test]
    fn bootstrap_roundtrip(
        k in key(),
        ud in domain(),
        entries in prop::collection::vec((any::<u16>(), domain(), any::<[u8; 32]>()), 1..8),
        seq in any::<u64>(),
        ttl in 0..=CAP_5_YEARS,
    ) {
        let mut seen = std::collections::HashSet::new();
        let entries: Vec<_> = entries.into_iter().filter(|e| seen.insert((e.0, e.1.clone())))
            .map(|(priority, base, spk)| BootstrapEntry { priority, cluster_base_domain: base, operator_spk: spk })
            .collect();
        let rec = BootstrapRecord { user_domain: ud.clone(), signer_spk: k.verifying_key().to_bytes(), entries, seq, exp: NOW + ttl };
        let txt = rec.sign(&k).unwrap();
        let parsed = BootstrapRecord::parse_and_verify(&txt, &rec.signer_spk, Some(&ud), NOW).unwrap();
        let mut sorted = rec.clone();
        sorted.entries.sort_by_key(|e| e.priority);
        prop_assert_eq!(parsed, sorted);
    }

    #[test]
    fn rotation_and_revocation_roundtrip(
        old in key(),
        new in key(),
        ty in 1u8..=3,
        user in "[a-zA-Z0-9][a-zA-Z0-9 ._+-]{0,39}",
        host in domain(),
        seq in any::<u64>(),
        ts in 0u64..NOW,
        ttl in 0..=CAP_5_YEARS,
        reason in 1u8..=4,
    ) {
        prop_assume!(old.verifying_key() != new.verifying_key());
        let subject_type = SubjectType::try_from(ty).unwrap();
        let subject = if ty == 1 { format!("{user}@{host}") } else { host };
        let r = RotationRecord {
            subject_type, subject: subject.clone(),
            old_spk: old.verifying_key().to_bytes(), new_spk: new.verifying_key().to_bytes(),
            seq, ts, exp: NOW + ttl,
        };
        let txt = r.sign(&old, &new).unwrap();
        prop_assert_eq!(RotationRecord::parse_and_verify(&txt, Some(&r.old_spk), Some(&subject), NOW), Some(r.clone()));
        prop_assert_eq!(RotationRecord::parse_and_verify(&txt, Some(&r.new_spk), None, NOW), None);

        let v = RevocationRecord { subject_type, subject: subject.clone(), revoked_spk: r.old_spk, reason: RevocationReason::try_from(reason).unwrap(), ts };
        let txt = v.sign(&old).unwrap();
        prop_assert_eq!(RevocationRecord::parse_and_verify(&txt, Some(&v.revoked_spk), Some(&subject), None, NOW), Some(v.clone()));
        prop_assert_eq!(RevocationRecord::parse_and_verify(&txt, None, None, Some(NOW - ts - 1), NOW), None);
    }

    #[test]
    fn heartbeat_roundtrip(
        k in key(),
        host in domain(),
        port in prop::option::of(1u16..),
        version in "[ -~]{0,32}",
        capabilities in any::<u16>(),
        zone in "[!-~]{0,64}",
        skew in 0u64..=300,
        ttl in 1..=CAP_30_DAYS,
    ) {
        let endpoint = match port { Some(p) => format!("https://{host}.example:{p}"), None => format!("http://{host}.example") };
        let hb = Heartbeat { endpoint, operator_spk: k.verifying_key().to_bytes(), version, capabilities, claim_provider_zone: zone, ts: NOW - skew, exp: NOW + ttl };
        let txt = hb.sign(&k).unwrap();
        prop_assert_eq!(Heartbeat::parse_and_verify(&txt, NOW), Some(hb.clone()));
        prop_assert_eq!(Heartbeat::parse_and_verify(&txt, hb.exp), None);
    }

    #[test]
    fn seal_roundtrip(key in any::<[u8; 32]>(), pt in prop::collection::vec(any::<u8>(), 0..300), aad in prop::collection::vec(any::<u8>(), 0..40), flip in any::<prop::sample::Index>()) {
        let sealed = seal::seal(&key, &pt, &aad);
        prop_assert_eq!(seal::open(&key, &sealed, &aad).unwrap(), pt);
        let mut bad = sealed.clone();
        let i = flip.index(bad.len());
        bad[i] ^= 0x80;
        prop_assert!(seal::open(&key, &bad, &aad).is_err());
        let _ = seal::open(&key, &sealed[..i], &aad);
    }

    #[test]
    fn registration_helpers(local in "[a-z0-9][a-z0-9._+-]{0,46}", host in domain(), spk in any::<[u8; 32]>(), owner in "[a-z0-9*.-]{0,40}") {
        let subject = format!("{local}@{host}.example");
        prop_assert_eq!(reg::canonicalize_subject(&format!(" {} ", subject.to_uppercase())).unwrap(), subject.clone());
        let name = reg::tsig_key_name(&subject, &spk, &format!("{host}.example")).unwrap();
        prop_assert!(name.ends_with('.') && name.split('.').next().unwrap().len() <= 63);
        let scope = reg::default_scope(&subject, &spk, Some(&spk), "z.test", reg::ScopeMode::Default);
        for s in &scope {
            let owner = format!("x.{}", s.replace('*', "q"));
            prop_assert!(reg::suffix_covers(s, &owner), "{} !~ {}", s, owner);
        }
        let _ = reg::coverage(&scope, &owner);
    }
}
