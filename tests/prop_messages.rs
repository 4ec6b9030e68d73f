//! Property tests for the message core: parsers never panic on arbitrary input, and
//! compose → receive round-trips, survives share loss and detects corrupted chunks.

use dnsmesh::proto::b64;
use dnsmesh::proto::erasure;
use dnsmesh::proto::keys::{self, sha256, Identity};
use dnsmesh::proto::message::{
    self, Assembler, Composed, Header, OuterMessage, Outgoing, SendRandomness,
};
use dnsmesh::proto::records::chunk::ChunkRecord;
use dnsmesh::proto::records::claim::ClaimRecord;
use dnsmesh::proto::records::identity::IdentityRecord;
use dnsmesh::proto::records::manifest::SlotManifest;
use dnsmesh::proto::records::prekey::Prekey;
use dnsmesh::proto::records::{
    PREFIX_CHUNK, PREFIX_CLAIM, PREFIX_IDENTITY, PREFIX_MANIFEST, PREFIX_PREKEY,
};
use proptest::prelude::*;

const NOW: u64 = 1_800_000_000;
const ZONE: &str = "mesh.test";

fn run_all_parsers(txt: &str, now: u64) {
    let _ = IdentityRecord::parse_and_verify(txt);
    let _ = Prekey::parse_and_verify(txt, &[1u8; 32], now);
    let _ = SlotManifest::parse_and_verify(txt, now);
    let _ = ChunkRecord::parse(txt).map(|c| c.unwrap_block());
    let _ = ClaimRecord::parse_and_verify(txt, now);
    let _ = message::accept_manifest(txt, &[2u8; 32], now);
    let _ = b64::decode_lenient(txt);
    let _ = b64::decode_strict(txt);
}

fn prefixes() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        PREFIX_CHUNK,
        PREFIX_MANIFEST,
        PREFIX_IDENTITY,
        PREFIX_PREKEY,
        PREFIX_CLAIM,
        "v=dmp1;",
        "",
    ])
}

/// A blob shaped so the manifest length rule passes (n at offset 80 matches the length).
fn manifest_shaped(mut blob: Vec<u8>, n: u32) -> Vec<u8> {
    blob.resize(108 + 32 * n as usize + 64, 0);
    blob[80..84].copy_from_slice(&n.to_be_bytes());
    blob
}

fn people() -> (Identity, Identity) {
    (Identity::from_private_bytes([0x11; 32]), Identity::from_private_bytes([0x22; 32]))
}

fn compose(plaintext: &[u8], prekey: Option<(u32, [u8; 32])>, rnd: &SendRandomness) -> Composed {
    let (alice, bob) = people();
    message::compose_with(
        &Outgoing {
            sender: &alice,
            sender_zone: ZONE,
            recipient_x25519: bob.x25519_public(),
            prekey,
            plaintext,
            ttl: 300,
            now: NOW,
        },
        rnd,
    )
    .unwrap()
}

fn randomness() -> impl Strategy<Value = SendRandomness> {
    (any::<[u8; 32]>(), any::<[u8; 12]>(), any::<[u8; 16]>()).prop_map(|(e, n, m)| SendRandomness {
        ephemeral_private: e,
        nonce: n,
        msg_id: m,
    })
}

/// Receive a composed message as Bob, feeding chunk values through `values(i)`.
fn receive(
    c: &Composed,
    prekey_secret: Option<&[u8; 32]>,
    values: impl FnMut(u32) -> Vec<String>,
) -> Option<message::Opened> {
    let (_, bob) = people();
    let manifest = message::accept_manifest(&c.manifest.1, &bob.user_id(), NOW)?;
    let outer = message::assemble(&manifest, values)?;
    message::open(&outer, &manifest, &bob, prekey_secret, NOW).ok()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn parsers_never_panic_on_text(s in ".{0,400}", now in any::<u64>()) {
        run_all_parsers(&s, now);
    }

    #[test]
    fn parsers_never_panic_on_prefixed_base64(p in prefixes(), blob in prop::collection::vec(any::<u8>(), 0..400),
                                              n in 0u32..6, noise in "[ =;a-z]{0,4}", now in any::<u64>()) {
        run_all_parsers(&format!("{p}{}", b64::encode(&blob)), now);
        run_all_parsers(&format!("{p}{noise}{}", b64::encode(&blob)), now);
        run_all_parsers(&format!("{p}{}", b64::encode(&manifest_shaped(blob, n))), now);
    }

    #[test]
    fn header_and_outer_parsers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600), hlen in any::<u16>()) {
        let _ = Header::parse(&bytes);
        let _ = OuterMessage::parse(&bytes);
        let mut framed = hlen.to_be_bytes().to_vec();
        framed.extend_from_slice(&bytes);
        let _ = OuterMessage::parse(&framed);
    }

    #[test]
    fn assemble_and_open_never_panic(k in 1u32..8, extra in 0u32..6, big_n in any::<bool>(),
                                     wires in prop::collection::vec(prop::collection::vec(any::<u8>(), 160..176), 0..14),
                                     garbage in prop::collection::vec(".{0,60}", 0..4),
                                     outer in prop::collection::vec(any::<u8>(), 0..700),
                                     prekey_id in 0u32..3, now in any::<u64>()) {
        let (alice, bob) = people();
        let n = if big_n { 300 } else { k + extra };
        // Half the wires are well-formed chunk wires of random blocks, so hashes match.
        let wires: Vec<Vec<u8>> = wires.into_iter().enumerate().map(|(i, w)| {
            if i % 2 == 0 { ChunkRecord::from_block(&w[..128].try_into().unwrap()).wire } else { w }
        }).collect();
        let mut hashes: Vec<[u8; 32]> = wires.iter().map(|w| sha256(w)).collect();
        hashes.resize(n as usize, [0u8; 32]);
        let manifest = SlotManifest {
            msg_id: [3; 16], sender_spk: alice.ed25519_public(), recipient_id: bob.user_id(),
            total_chunks: n, data_chunks: k.min(n), prekey_id, ts: NOW, exp: NOW + 300, chunk_hashes: hashes,
        };
        let _ = message::assemble(&manifest, |i| {
            let mut v: Vec<String> = garbage.clone();
            if let Some(w) = wires.get(i as usize) { v.push(ChunkRecord { wire: w.clone() }.to_txt()); }
            v
        });
        let _ = message::open(&outer, &manifest, &bob, Some(&[5u8; 32]), now);
        let mut framed = outer.clone();
        let json = Header::data([3; 16], alice.user_id(), bob.user_id(), NOW, 300).to_json();
        framed.splice(0..0, json.bytes());
        framed.splice(0..0, (json.len() as u16).to_be_bytes());
        let _ = message::open(&framed, &manifest, &bob, None, now);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn round_trip_long_term_and_prekey(plaintext in prop::collection::vec(any::<u8>(), 0..5000),
                                       rnd in randomness(), use_prekey in any::<bool>(),
                                       prekey_priv in any::<[u8; 32]>(), prekey_id in 1u32..) {
        let prekey = use_prekey.then(|| (prekey_id, keys::x25519_public(&prekey_priv)));
        let c = compose(&plaintext, prekey, &rnd);
        let outer_len = 2 + Header::data(c.msg_id, [0; 32], [0; 32], NOW, 300).to_json().len() + 44 + plaintext.len() + 16 + 32;
        prop_assert_eq!(c.chunks.len(), erasure::choose_kn(outer_len).1);
        prop_assert!(c.chunks.iter().all(|(name, txt)| txt.len() == 241 && name.starts_with("chunk-")));
        let lookup = |i: u32| c.chunks.get(i as usize).map(|(_, v)| vec![v.clone()]).unwrap_or_default();
        let opened = receive(&c, use_prekey.then_some(&prekey_priv), lookup).expect("delivers");
        prop_assert_eq!(&opened.plaintext, &plaintext);
        prop_assert_eq!(opened.prekey_id, if use_prekey { prekey_id } else { 0 });
        // The claim for this message verifies.
        let (alice, _) = people();
        let (_, claim) = c.claim(&alice, "other.zone").unwrap();
        let claim = ClaimRecord::parse_and_verify(&claim, NOW).expect("claim parses");
        prop_assert_eq!(claim.msg_id, c.msg_id);
        prop_assert_eq!(u32::from(claim.slot), c.slot);
    }

    #[test]
    fn any_k_of_n_chunks_deliver(plaintext in prop::collection::vec(any::<u8>(), 0..3000),
                                 rnd in randomness(), seed in any::<u64>()) {
        let c = compose(&plaintext, None, &rnd);
        let (_, bob) = people();
        let manifest = message::accept_manifest(&c.manifest.1, &bob.user_id(), NOW).unwrap();
        let (k, n) = (manifest.data_chunks as usize, manifest.total_chunks as usize);
        // Pick k distinct indices pseudo-randomly from the seed.
        let mut order: Vec<usize> = (0..n).collect();
        let mut s = seed;
        for i in (1..n).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            order.swap(i, (s >> 33) as usize % (i + 1));
        }
        let keep: Vec<usize> = order[..k].to_vec();
        let opened = receive(&c, None, |i| {
            if keep.contains(&(i as usize)) { vec![c.chunks[i as usize].1.clone()] } else { vec![] }
        }).expect("any k shares deliver");
        prop_assert_eq!(opened.plaintext, plaintext);
    }

    #[test]
    fn corrupted_chunk_is_detected(plaintext in prop::collection::vec(any::<u8>(), 0..3000),
                                   rnd in randomness(), which in any::<prop::sample::Index>(),
                                   byte in 0usize..168, flip in 1u8..) {
        let c = compose(&plaintext, None, &rnd);
        let (_, bob) = people();
        let manifest = message::accept_manifest(&c.manifest.1, &bob.user_id(), NOW).unwrap();
        let i = which.index(c.chunks.len());
        let good = c.chunks[i].1.clone();
        let mut rec = ChunkRecord::parse(&good).unwrap();
        rec.wire[byte] ^= flip;
        let bad = rec.to_txt();
        // The corrupted copy alone is refused at that index.
        let mut asm = Assembler::new(&manifest).unwrap();
        prop_assert!(!asm.offer(i as u32, std::slice::from_ref(&bad)));
        // Another copy of that index is still accepted (first good value wins).
        prop_assert!(asm.offer(i as u32, &[bad.clone(), good.clone()]));
        // With only the corrupted copy published there, the other shares still deliver.
        let opened = receive(&c, None, |j| {
            if j as usize == i { vec![bad.clone()] } else { vec![c.chunks[j as usize].1.clone()] }
        }).expect("other shares deliver");
        prop_assert_eq!(&opened.plaintext, &plaintext);
        // And with both copies there, too.
        let opened = receive(&c, None, |j| {
            if j as usize == i { vec![bad.clone(), good.clone()] } else { vec![c.chunks[j as usize].1.clone()] }
        }).expect("second copy delivers");
        prop_assert_eq!(opened.plaintext, plaintext);
    }
}
