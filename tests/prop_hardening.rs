//! Property tests that close the gaps the other `prop_*` files leave among the parsers of
//! network input (TXT RDATA, the replay cache, erasure decoding, base64 against a
//! canonical encoder, envelopes with every address length, registration inputs, the
//! zone view's name lookups), and that run the fuzz harnesses (`tests/fuzz/src`) in CI on
//! random and mutated-seed inputs, with modest case counts.

use std::sync::OnceLock;

use base64::Engine;
use dnsmesh::dnswire::{NameState, ZoneConfig, ZoneView};
use dnsmesh::proto::message::ReplayGuard;
use dnsmesh::proto::records::rotation::{normalize_subject, SubjectType};
use dnsmesh::proto::registration as reg;
use dnsmesh::proto::{b64, dnsname, envelope, erasure, txt};
use proptest::prelude::*;

#[allow(dead_code)]
#[path = "fuzz/src/harness.rs"]
mod harness;

#[cfg(feature = "net")]
#[allow(dead_code)]
#[path = "fuzz/src/dns_slow.rs"]
mod dns_slow;

/// The committed seed corpus of a fuzz target.
fn seeds(target: &str) -> &'static [Vec<u8>] {
    static ALL: OnceLock<Vec<(String, Vec<Vec<u8>>)>> = OnceLock::new();
    let all = ALL.get_or_init(|| {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fuzz/seeds");
        let mut out = Vec::new();
        for dir in std::fs::read_dir(root).expect("seed corpora") {
            let dir = dir.expect("entry").path();
            let mut files: Vec<_> = std::fs::read_dir(&dir)
                .expect("seed dir")
                .map(|e| e.expect("entry").path())
                .collect();
            files.sort();
            let name = dir.file_name().and_then(|n| n.to_str()).expect("name");
            let data = files.iter().map(|f| std::fs::read(f).expect("seed")).collect();
            out.push((name.to_string(), data));
        }
        out
    });
    all.iter()
        .find(|(n, _)| n == target)
        .map(|(_, v)| v.as_slice())
        .unwrap_or_else(|| panic!("no seeds for {target}"))
}

/// One byte-level edit of a seed (position taken modulo the current length).
#[derive(Debug, Clone)]
enum Edit {
    Set(usize, u8),
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, u8),
    Remove(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
        (any::<usize>(), 0u8..8).prop_map(|(i, b)| Edit::Flip(i, b)),
        any::<usize>().prop_map(Edit::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<usize>().prop_map(Edit::Remove),
    ]
}

/// A seed of `target` with up to 5 edits applied.
fn mutated_seed(target: &'static str) -> impl Strategy<Value = Vec<u8>> {
    (any::<prop::sample::Index>(), prop::collection::vec(edit(), 0..6)).prop_map(
        move |(pick, edits)| {
            let all = seeds(target);
            let mut d = all[pick.index(all.len())].clone();
            for e in edits {
                let n = d.len().max(1);
                match e {
                    Edit::Set(i, b) => {
                        if let Some(x) = d.get_mut(i % n) {
                            *x = b;
                        }
                    }
                    Edit::Flip(i, bit) => {
                        if let Some(x) = d.get_mut(i % n) {
                            *x ^= 1 << bit;
                        }
                    }
                    Edit::Truncate(i) => d.truncate(i % n),
                    Edit::Insert(i, b) => d.insert(i % (d.len() + 1), b),
                    Edit::Remove(i) => {
                        if !d.is_empty() {
                            d.remove(i % n);
                        }
                    }
                }
            }
            d
        },
    )
}

/// A canonical `local@host` of any length the canonicaliser allows (up to 64 + 1 + 253).
fn canonical_address() -> impl Strategy<Value = String> {
    let label = "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?";
    ("[a-z0-9]([a-z0-9_-]{0,63})", prop::collection::vec(label, 1..6)).prop_map(
        |(local, labels)| {
            let mut host = String::new();
            for l in labels {
                if host.len() + 1 + l.len() > 253 {
                    break;
                }
                if !host.is_empty() {
                    host.push('.');
                }
                host.push_str(&l);
            }
            format!("{local}@{host}")
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    // ---- the fuzz harnesses, on random and mutated-seed input ---------------------------

    #[test]
    fn harness_dns_answer(d in prop_oneof![mutated_seed("dns_answer"), prop::collection::vec(any::<u8>(), 0..300)]) {
        harness::dns_answer(&d);
    }

    #[test]
    fn harness_records(d in mutated_seed("records"), mode in any::<u8>(), now in any::<u64>(),
                       body in prop::collection::vec(any::<u8>(), 0..300)) {
        harness::records(&d);
        let mut signed = vec![mode | 0x80];
        signed.extend_from_slice(&now.to_be_bytes());
        signed.extend_from_slice(&body);
        harness::records(&signed);
    }

    #[test]
    fn harness_message(d in prop_oneof![mutated_seed("message"), prop::collection::vec(any::<u8>(), 0..400)]) {
        harness::message(&d);
    }

    #[test]
    fn harness_b64_txt(d in prop_oneof![mutated_seed("b64_txt"), prop::collection::vec(any::<u8>(), 0..300),
                                        "[A-Za-z0-9+/=]{0,40}".prop_map(String::into_bytes)]) {
        harness::b64_txt(&d);
    }

    #[test]
    fn harness_registration(d in mutated_seed("registration"),
                            owner in "[aA.*-]{0,10}", sfx in prop::collection::vec("[a.*]{0,10}", 3)) {
        harness::registration(&d);
        // Small alphabets make the scope glob differential (vs. a DP matcher) bite.
        harness::registration(format!("{owner}\0{}\0{}\0{}", sfx[0], sfx[1], sfx[2]).as_bytes());
    }

    #[test]
    fn harness_http_json(d in mutated_seed("http_json")) {
        harness::http_json(&d);
    }

    // ---- gaps in the other property tests ------------------------------------------------

    #[test]
    fn txt_rdata_noise_and_round_trip(noise in prop::collection::vec(any::<u8>(), 0..700),
                                      value in prop::collection::vec(any::<u8>(), 0..1200)) {
        if let Some(v) = txt::from_rdata(&noise) {
            prop_assert!(v.len() <= noise.len());
        }
        let rdata = txt::to_rdata(&value);
        prop_assert_eq!(txt::from_rdata(&rdata), Some(value.clone()));
        prop_assert_eq!(txt::join(&txt::split(&value)), value);
    }

    #[test]
    fn replay_cache_json(noise in ".{0,200}",
                         entries in prop::collection::vec((any::<[u8; 32]>(), any::<[u8; 16]>(), any::<u64>()), 0..5)) {
        let _ = ReplayGuard::from_json(&noise);
        let mut g = ReplayGuard::new();
        for (spk, id, exp) in &entries {
            g.commit(spk, id, *exp);
        }
        prop_assert_eq!(ReplayGuard::from_json(&g.to_json()).unwrap(), g);
    }

    #[test]
    fn erasure_decode_never_panics(k in 0usize..40, n in 0usize..300,
                                   shares in prop::collection::vec((0usize..320, prop::collection::vec(any::<u8>(), 0..140)), 0..12)) {
        let refs: Vec<(usize, &[u8])> = shares.iter().map(|(i, s)| (*i, s.as_slice())).collect();
        let _ = erasure::decode(&refs, k, n);
        let _ = erasure::decode_blocks(&refs, k, n);
    }

    #[test]
    fn base64_matches_a_canonical_encoder(bytes in prop::collection::vec(any::<u8>(), 0..200),
                                          s in "[A-Za-z0-9+/= \n]{0,64}") {
        let canonical = base64::engine::general_purpose::STANDARD.encode(&bytes);
        prop_assert_eq!(b64::encode(&bytes), canonical.clone());
        prop_assert_eq!(b64::decode_strict(&canonical), Some(bytes.clone()));
        prop_assert_eq!(b64::decode_lenient(&canonical), Some(bytes));
        if let Some(v) = b64::decode_strict(&s) {
            prop_assert_eq!(b64::decode_lenient(&s), Some(v));
        }
    }

    #[test]
    fn envelope_any_canonical_address(addr in canonical_address(), body in prop::collection::vec(any::<u8>(), 0..64)) {
        prop_assert_eq!(envelope::canonicalize_address(&addr), Some(addr.clone()));
        let wrapped = envelope::encode(&body, Some(&addr));
        if addr.len() + 11 <= envelope::MAX_HEADER_LEN {
            prop_assert_eq!(envelope::decode(&wrapped), (body, Some(addr)));
        } else {
            prop_assert_eq!(wrapped, body, "header over 256 bytes: sent unwrapped");
        }
    }

    #[test]
    fn registration_inputs_never_panic(subject in ".{0,80}", zone in ".{0,40}",
                                       spk in prop::collection::vec(any::<u8>(), 0..40),
                                       sig in prop::collection::vec(any::<u8>(), 0..70),
                                       key in any::<[u8; 32]>(), challenge in any::<[u8; 32]>()) {
        let _ = reg::tsig_key_name(&subject, &key, &zone);
        for mode in [reg::ScopeMode::Default, reg::ScopeMode::Tight, reg::ScopeMode::Loose] {
            let scope = reg::default_scope(&subject, &key, Some(&key), &zone, mode);
            let _ = reg::coverage(scope.as_slice(), &subject);
        }
        prop_assert!(!reg::verify_registration(&spk, &challenge, &subject, &zone, &sig));
        prop_assert!(!reg::verify_x25519_pop(&key, &challenge, &challenge, &subject, &sig));
        for ty in [SubjectType::UserIdentity, SubjectType::ClusterOperator, SubjectType::BootstrapSigner] {
            let _ = normalize_subject(ty, &subject);
        }
        if let Some(v) = dnsname::validate(&subject) {
            prop_assert_eq!(dnsname::validate(v), Some(v));
        }
    }

    #[test]
    fn zone_view_names(names in prop::collection::vec("[a-zA-Z0-9_.-]{0,30}(\\.mesh\\.test\\.?)?", 1..8),
                       probe in ".{0,60}") {
        let v = ZoneView::new(&ZoneConfig::new("mesh.test", "ns1.mesh.test", "h.mesh.test", &["ns1.mesh.test"]))
            .expect("zone");
        let _ = v.txt(&probe);
        for (i, name) in names.iter().enumerate() {
            let value = format!("v{i}");
            if v.set_txt_at(name, &[value.as_bytes()], 1) {
                prop_assert_eq!(v.txt(name), NameState::Txt(vec![value.into_bytes()]), "{}", name);
            }
        }
        for name in &names {
            v.set_txt_at(name, &[], 2);
            prop_assert!(!matches!(v.txt(name), NameState::Txt(_)), "{} removed", name);
        }
        prop_assert!(v.is_empty());
    }
}

#[cfg(feature = "net")]
proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn harness_dns_slow(d in prop_oneof![mutated_seed("dns_slow"), prop::collection::vec(any::<u8>(), 0..300)]) {
        dns_slow::dns_slow(&d);
    }
}
