//! Fuzz harnesses over dnsmesh's I/O-free core. Each `pub fn name(data: &[u8])` is one
//! cargo-fuzz target: it feeds raw bytes to the parsers of network input and asserts
//! invariants that must hold for every input, so a panic is always a finding (a crash
//! in the parser or a broken invariant). The same functions replay the committed seeds
//! and crash inputs in `tests/fuzz_regressions.rs`, so CI keeps them compiling.
//!
//! Fixtures (a small zone, fixed keys, a composed message) are built once per process.

use std::sync::OnceLock;

use base64::Engine;
use dnsmesh::dnswire::{Disposition, HostAddrs, ZoneConfig, ZoneView};
use dnsmesh::policy::http_input;
use dnsmesh::proto::keys::{self, sha256, Identity};
use dnsmesh::proto::message::{
    self, Assembler, Composed, Header, OuterMessage, Outgoing, ReplayGuard, SendRandomness,
};
use dnsmesh::proto::records::bootstrap::BootstrapRecord;
use dnsmesh::proto::records::chunk::ChunkRecord;
use dnsmesh::proto::records::claim::ClaimRecord;
use dnsmesh::proto::records::cluster::ClusterManifest;
use dnsmesh::proto::records::heartbeat::{validate_endpoint, Heartbeat, HeartbeatPolicy};
use dnsmesh::proto::records::identity::IdentityRecord;
use dnsmesh::proto::records::manifest::SlotManifest;
use dnsmesh::proto::records::prekey::Prekey;
use dnsmesh::proto::records::revocation::RevocationRecord;
use dnsmesh::proto::records::rotation::{normalize_subject, RotationRecord, SubjectType};
use dnsmesh::proto::records::RecordKind;
use dnsmesh::proto::registration::{self as reg, Coverage, NameClass, ScopeMode};
use dnsmesh::proto::{b64, dnsname, envelope, erasure, txt};
use ed25519_dalek::SigningKey;
use serde_json::Value;

/// The fixtures' clock: the extra vectors' generation time.
pub const NOW: u64 = 1_795_879_342;
/// The fixture zone.
pub const ZONE: &str = "mesh.test";
/// `node` of the registration vector (`extra/protocol-extra-vectors.json`), so the seed
/// built from it verifies.
pub const NODE: &str = "dmp.example.com";
/// The registration vector's ephemeral server X25519 key, for its `x25519_pop`.
pub const SERVER_X25519_PRIV: &str =
    "051c76644f5a78f8cb701b8166ed606666834f9d769e9ef40287ed51c72d3385";
/// Private bytes of the prekey the fixture message is sent to.
pub const PREKEY_SECRET: [u8; 32] = [0x33; 32];
/// Id of that prekey.
pub const PREKEY_ID: u32 = 7;

// ---------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------

/// Sender and signer of every fixture record (key A).
pub fn alice() -> &'static Identity {
    static A: OnceLock<Identity> = OnceLock::new();
    A.get_or_init(|| Identity::from_private_bytes([0x11; 32]))
}

/// Recipient of the fixture message; also the second key (B) of rotation records.
pub fn bob() -> &'static Identity {
    static B: OnceLock<Identity> = OnceLock::new();
    B.get_or_init(|| Identity::from_private_bytes([0x22; 32]))
}

fn key_a() -> &'static SigningKey {
    alice().signing_key()
}

fn key_b() -> &'static SigningKey {
    bob().signing_key()
}

/// The fixture zone: apex SOA/NS/A/AAAA and TXT, in-zone NS hosts with glue, a host
/// below an empty non-terminal, TXT names with long, empty and case-folded values, a
/// deep name (empty non-terminals above it) and an RRset too big even for TCP.
pub fn zone() -> &'static ZoneView {
    static V: OnceLock<ZoneView> = OnceLock::new();
    V.get_or_init(|| {
        let mut cfg = ZoneConfig::new(
            ZONE,
            "ns1.mesh.test",
            "hostmaster@mesh.test",
            &["ns1.mesh.test", "ns2.mesh.test", "ns.other.example"],
        );
        cfg.apex_addrs = vec![ip("192.0.2.1"), ip("2001:db8::1")];
        cfg.hosts = vec![
            HostAddrs {
                name: "ns1.mesh.test".into(),
                addrs: vec![ip("192.0.2.53"), ip("2001:db8::53")],
            },
            HostAddrs { name: "ns2.mesh.test".into(), addrs: vec![ip("192.0.2.54")] },
            HostAddrs { name: "h.sub.mesh.test".into(), addrs: vec![ip("2001:db8::99")] },
        ];
        let v = ZoneView::new(&cfg).expect("fixture zone config is valid");
        let long = vec![b'm'; 700];
        v.set_txt_at("a.mesh.test", &[b"hello"], NOW);
        v.set_txt_at("Upper.MESH.test", &[b"case"], NOW);
        v.set_txt_at("mesh.test", &[b"v=spf1 -all"], NOW);
        v.set_txt_at("slot-1.mb-x.mesh.test", &[&long, b"second"], NOW);
        v.set_txt_at("x.y.z.deep.mesh.test", &[b""], NOW);
        v.set_txt_at("_dnsmesh-heartbeat.mesh.test", &[b"v=dmp1;t=heartbeat;AAAA"], NOW);
        let big: Vec<Vec<u8>> = (0..300).map(|i| format!("{i:0250}").into_bytes()).collect();
        let big: Vec<&[u8]> = big.iter().map(Vec::as_slice).collect();
        v.set_txt_at("big.mesh.test", &big, NOW);
        v
    })
}

fn ip(s: &str) -> std::net::IpAddr {
    s.parse().expect("fixture address")
}

/// A message from Alice to Bob, composed deterministically: `[0]` to Bob's long-term
/// key, `[1]` to his prekey [`PREKEY_ID`]. The plaintext is a DMPv2 envelope.
pub fn composed() -> &'static [(Composed, SlotManifest); 2] {
    static C: OnceLock<[(Composed, SlotManifest); 2]> = OnceLock::new();
    C.get_or_init(|| {
        let prekey_pub = keys::x25519_public(&PREKEY_SECRET);
        let make = |prekey| {
            let c = message::compose_with(
                &Outgoing {
                    sender: alice(),
                    sender_zone: ZONE,
                    recipient_x25519: bob().x25519_public(),
                    prekey,
                    plaintext: &fixture_plaintext(),
                    ttl: 3600,
                    now: NOW,
                },
                &SendRandomness {
                    ephemeral_private: [0x44; 32],
                    nonce: [0x55; 12],
                    msg_id: [0x66; 16],
                },
            )
            .expect("fixture message composes");
            let m = message::accept_manifest(&c.manifest.1, &bob().user_id(), NOW)
                .expect("fixture manifest verifies");
            (c, m)
        };
        [make(None), make(Some((PREKEY_ID, prekey_pub)))]
    })
}

/// The fixture message's AEAD plaintext.
pub fn fixture_plaintext() -> Vec<u8> {
    envelope::encode(
        b"hello bob, this body is long enough to need several chunks. ".repeat(4).as_slice(),
        Some("alice@mesh.test"),
    )
}

// ---------------------------------------------------------------------------------------
// Input helpers
// ---------------------------------------------------------------------------------------

/// A byte cursor that yields zeros once the input runs out, so every input is usable.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn byte(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        b
    }
    fn u64(&mut self) -> u64 {
        (0..8).fold(0u64, |acc, _| (acc << 8) | u64::from(self.byte()))
    }
    fn rest(self) -> &'a [u8] {
        self.0
    }
}

// ---------------------------------------------------------------------------------------
// dns_answer: ZoneView::answer over raw query bytes
// ---------------------------------------------------------------------------------------

/// `ZoneView::answer` on raw bytes (UDP and TCP limits). A reply must be a well-formed
/// message for the query's ID and question, fit the size limit, carry the rcode it
/// reports, and not depend on the QNAME's letter case (0x20) beyond the echoed question.
pub fn dns_answer(data: &[u8]) {
    let v = zone();
    let mut out = Vec::with_capacity(1024);
    let mut again = Vec::with_capacity(1024);
    for max_tcp in [false, true] {
        match v.answer(data, &mut out, max_tcp) {
            Disposition::Reply { rcode } => {
                let qend = check_reply(data, &out, max_tcp, rcode);
                let mut folded = data.to_vec();
                folded[12..qend].make_ascii_lowercase();
                let d2 = v.answer(&folded, &mut again, max_tcp);
                let mut expect = out.clone();
                expect[12..qend].make_ascii_lowercase();
                assert_eq!(d2, Disposition::Reply { rcode }, "case changed the rcode");
                assert_eq!(again, expect, "case changed the reply");
            }
            Disposition::Drop => {
                assert!(data.len() < 12 || data[2] & 0x80 != 0, "dropped a query");
            }
            Disposition::Slow => {}
        }
    }
}

/// Skip a possibly compressed name; `None` if it runs off the end.
fn skip_name(msg: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let len = *msg.get(pos)? as usize;
        if len & 0xC0 == 0xC0 {
            msg.get(pos + 1)?;
            return Some(pos + 2);
        }
        pos += 1 + len;
        if len == 0 {
            return Some(pos);
        }
    }
}

/// Check a reply's structure; returns where the question ends.
fn check_reply(query: &[u8], out: &[u8], max_tcp: bool, rcode: u16) -> usize {
    assert!(out.len() >= 12, "reply shorter than a header");
    assert!(out.len() <= 65535, "reply over 64 KiB");
    assert_eq!(out[..2], query[..2], "ID copied");
    assert!(out[2] & 0x80 != 0, "QR set");
    assert_eq!(u16::from(out[3] & 0x0F), rcode & 0x0F, "rcode in the header");
    let count = |i: usize| u16::from_be_bytes([out[4 + 2 * i], out[5 + 2 * i]]);
    assert_eq!(count(0), 1, "one question");
    let qend = skip_name(out, 12).map(|p| p + 4).expect("question name");
    assert!(qend <= out.len() && qend <= query.len(), "question inside both");
    assert_eq!(out[12..qend], query[12..qend], "question echoed");
    let mut pos = qend;
    for _ in 0..(u32::from(count(1)) + u32::from(count(2)) + u32::from(count(3))) {
        let p = skip_name(out, pos).expect("RR owner");
        let rdlen = out.get(p + 8..p + 10).expect("RR header");
        pos = p + 10 + u16::from_be_bytes([rdlen[0], rdlen[1]]) as usize;
        assert!(pos <= out.len(), "RDATA inside the message");
    }
    assert_eq!(pos, out.len(), "nothing after the counted records");
    let query_has_opt = query[10..12] != [0, 0];
    if !max_tcp && !query_has_opt {
        assert!(out.len() <= 512, "UDP reply without EDNS over 512 bytes");
    }
    qend
}

// ---------------------------------------------------------------------------------------
// records: every TXT record parser, dispatched by prefix, plus the chunk parser
// ---------------------------------------------------------------------------------------

/// Input: `mode(1) ‖ now(8, BE) ‖ payload`. Mode < 0x80: the payload is a TXT value
/// (lossy UTF-8), dispatched by prefix. Mode ≥ 0x80: the payload is a record *body* of
/// kind `mode & 0x7f` (mod 10): the fixture keys are written over its embedded key
/// fields and it is signed, so fuzzed bodies get past signature checks and reach the
/// field, time and cap checks behind them.
pub fn records(data: &[u8]) {
    let mut c = Cursor(data);
    let mode = c.byte();
    let now = c.u64();
    let payload = c.rest();
    if mode & 0x80 == 0 {
        parse_txt(&String::from_utf8_lossy(payload), now);
    } else {
        let kind = RecordKind::ALL[usize::from(mode & 0x7f) % RecordKind::ALL.len()].0;
        parse_txt(&signed_wire(kind, payload), now);
    }
}

/// Write `spk` over `body[at..at + 32]` when it fits.
fn embed(body: &mut [u8], at: Option<usize>, spk: &[u8; 32]) {
    if let Some(s) = at.and_then(|at| body.get_mut(at..at.checked_add(32)?)) {
        s.copy_from_slice(spk);
    }
}

/// `prefix ‖ b64(body ‖ signatures)` for a fuzzed body of `kind`, signed by the fixture
/// keys after writing their public keys where the body embeds its signer.
pub fn signed_wire(kind: RecordKind, body: &[u8]) -> String {
    let mut body = body.to_vec();
    let (a, b) = (alice().ed25519_public(), bob().ed25519_public());
    let at = |i: usize| body.get(i).map(|&x| usize::from(x));
    let u16_at = |i: usize| Some(u16::from_be_bytes([*body.get(i)?, *body.get(i + 1)?]) as usize);
    match kind {
        RecordKind::Chunk => return format!("{}{}", kind.prefix(), b64::encode(&body)),
        RecordKind::Manifest => embed(&mut body, Some(16), &a),
        RecordKind::Identity => {
            let off = at(0).map(|u| 1 + u + 32);
            embed(&mut body, off, &a);
        }
        RecordKind::Prekey => {}
        RecordKind::Claim | RecordKind::Cluster | RecordKind::Bootstrap => {
            embed(&mut body, Some(23), &a)
        }
        RecordKind::Rotation => {
            let off = at(8).map(|len| 9 + len);
            embed(&mut body, off, &a);
            embed(&mut body, off.map(|o| o + 32), &b);
        }
        RecordKind::Revocation => {
            let off = at(8).map(|len| 9 + len);
            embed(&mut body, off, &a);
        }
        RecordKind::Heartbeat => {
            let off = u16_at(7).map(|len| 9 + len);
            embed(&mut body, off, &a);
        }
    }
    let mut blob = body.clone();
    blob.extend_from_slice(&keys::sign(key_a(), &body));
    if kind == RecordKind::Rotation {
        blob.extend_from_slice(&keys::sign(key_b(), &body));
    }
    format!("{}{}", kind.prefix(), b64::encode(&blob))
}

/// The payload after `prefix`, decoded the way that record type decodes it.
fn blob_of(txt: &str, prefix: &str, strict: bool) -> Vec<u8> {
    let p = txt.strip_prefix(prefix).expect("parsed records have their prefix");
    let decoded = if strict { b64::decode_strict(p) } else { b64::decode_lenient(p) };
    decoded.expect("parsed records decode")
}

/// Run the parser(s) a TXT value's prefix selects (and always the lenient chunk parser),
/// with round-trip checks on whatever parses.
pub fn parse_txt(txt: &str, now: u64) {
    if let Some(rec) = ChunkRecord::parse(txt) {
        let _ = rec.unwrap_block();
        assert_eq!(ChunkRecord::parse(&rec.to_txt()), Some(rec), "chunk round trip");
    }
    let a = alice().ed25519_public();
    let Some(kind) = RecordKind::of(txt) else {
        return;
    };
    match kind {
        RecordKind::Chunk => {}
        RecordKind::Manifest => {
            let _ = message::accept_manifest(txt, &bob().user_id(), now);
            if let Some(m) = SlotManifest::parse_and_verify(txt, now) {
                let blob = blob_of(txt, kind.prefix(), false);
                let body = m.body().expect("a parsed manifest re-encodes");
                assert_eq!(blob[..blob.len() - 64], body[..], "manifest body canonical");
                let _ = (m.is_expired(now), Assembler::new(&m).is_some());
            }
        }
        RecordKind::Identity => {
            if let Some(id) = IdentityRecord::parse_and_verify(txt) {
                assert!(!id.username.is_empty() && id.username.len() <= 64);
                assert!(id.versions.windows(2).all(|w| w[0] < w[1]), "versions sorted");
                let _ = (id.supports_v2(), id.body());
            }
        }
        RecordKind::Prekey => {
            if let Some(p) = Prekey::parse_and_verify(txt, &a, now) {
                assert_ne!(p.prekey_id, 0);
                let _ = p.is_expired(now);
            }
        }
        RecordKind::Claim => {
            if let Some(c) = ClaimRecord::parse_and_verify(txt, now) {
                let blob = blob_of(txt, kind.prefix(), true);
                let body = c.body().expect("a parsed claim re-encodes");
                assert_eq!(blob[..blob.len() - 64], body[..], "claim body canonical");
                assert!(c.exp > now, "claim expiry checked");
            }
        }
        RecordKind::Cluster => {
            for expected in [None, Some("mesh.example.com")] {
                let Some(m) = ClusterManifest::parse_and_verify(txt, &a, expected, now) else {
                    continue;
                };
                assert!(m.exp >= now);
                if let Ok(again) = m.sign(key_a()) {
                    let back = ClusterManifest::parse_and_verify(&again, &a, expected, now);
                    assert_eq!(back.as_ref(), Some(&m), "cluster sign/parse round trip");
                }
            }
        }
        RecordKind::Bootstrap => {
            for expected in [None, Some("example.com")] {
                let Some(r) = BootstrapRecord::parse_and_verify(txt, &a, expected, now) else {
                    continue;
                };
                assert!(!r.entries.is_empty() && r.exp >= now);
                assert!(r.entries.windows(2).all(|w| w[0].priority <= w[1].priority));
                let _ = r.best_entry();
                if let Ok(again) = r.sign(key_a()) {
                    let back = BootstrapRecord::parse_and_verify(&again, &a, expected, now);
                    assert_eq!(back.as_ref(), Some(&r), "bootstrap sign/parse round trip");
                }
            }
        }
        RecordKind::Rotation => {
            for (old, subject) in [(None, None), (Some(&a), Some("Alice@Example.com."))] {
                let Some(r) = RotationRecord::parse_and_verify(txt, old, subject, now) else {
                    continue;
                };
                assert_ne!(r.old_spk, r.new_spk);
                let _ = normalize_subject(r.subject_type, &r.subject);
                if r.old_spk == a && r.new_spk == bob().ed25519_public() {
                    let again = r.sign(key_a(), key_b()).expect("a parsed rotation re-signs");
                    let back = RotationRecord::parse_and_verify(&again, old, subject, now);
                    assert_eq!(back.as_ref(), Some(&r), "rotation sign/parse round trip");
                }
            }
        }
        RecordKind::Revocation => {
            for max_age in [None, Some(0), Some(86_400), Some(u64::MAX)] {
                let Some(r) = RevocationRecord::parse_and_verify(txt, None, None, max_age, now)
                else {
                    continue;
                };
                let _ = RevocationRecord::parse_and_verify(
                    txt,
                    Some(&a),
                    Some("a.example"),
                    max_age,
                    now,
                );
                if r.revoked_spk == a {
                    let again = r.sign(key_a()).expect("a parsed revocation re-signs");
                    let back = RevocationRecord::parse_and_verify(&again, None, None, max_age, now);
                    assert_eq!(back.as_ref(), Some(&r), "revocation sign/parse round trip");
                }
            }
        }
        RecordKind::Heartbeat => {
            for policy in [
                HeartbeatPolicy::default(),
                HeartbeatPolicy { max_skew: u64::MAX, allow_private_endpoints: true },
            ] {
                let Some(hb) = Heartbeat::parse_and_verify_with(txt, now, &policy) else {
                    continue;
                };
                assert!(hb.exp > now && hb.exp > hb.ts);
                let _ = hb.is_claim_provider();
                if hb.operator_spk != a {
                    continue;
                }
                if let Ok(again) = hb.sign_with(key_a(), &policy) {
                    let back = Heartbeat::parse_and_verify_with(&again, now, &policy);
                    assert_eq!(back.as_ref(), Some(&hb), "heartbeat sign/parse round trip");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// message: header, outer framing, envelope, assemble/open, replay cache
// ---------------------------------------------------------------------------------------

/// Input: `selector(1) ‖ rest`. Selector mod 6 picks: header JSON, outer message +
/// open, DMPv2 envelope, assembly of the fixture message with fuzzed chunk values
/// (the prekey variant when `selector / 6` is odd), assembly of a fuzzed k-of-n share
/// set, replay-cache JSON.
pub fn message(data: &[u8]) {
    let mut c = Cursor(data);
    let selector = c.byte();
    match selector % 6 {
        0 => header(c.rest()),
        1 => {
            let now = c.u64();
            outer(c.rest(), now)
        }
        2 => envelope_decode(c.rest()),
        3 => {
            let mask = c.byte();
            fixture_assembly((selector / 6) % 2 == 1, mask, c.rest())
        }
        4 => fuzzed_shares(c),
        _ => replay_cache(c.rest()),
    }
}

fn header(json: &[u8]) {
    if let Some(h) = Header::parse(json) {
        assert_eq!(Header::parse(h.to_json().as_bytes()), Some(h.clone()), "header round trip");
        let _ = h.aad(u32::MAX);
    }
}

fn outer(bytes: &[u8], now: u64) {
    let Some(m) = OuterMessage::parse(bytes) else {
        return;
    };
    assert_eq!(OuterMessage::parse(&m.to_bytes()).as_ref(), Some(&m), "outer round trip");
    for (i, (_, manifest)) in composed().iter().enumerate() {
        let secret = (i == 1).then_some(&PREKEY_SECRET);
        let _ = message::open(bytes, manifest, bob(), secret, now);
    }
}

fn envelope_decode(bytes: &[u8]) {
    let (body, from) = envelope::decode(bytes);
    assert!(body.len() <= bytes.len());
    if let Some(from) = from {
        assert_eq!(envelope::canonicalize_address(&from).as_ref(), Some(&from));
    }
    let text = String::from_utf8_lossy(bytes);
    if let Some(addr) = envelope::canonicalize_address(&text) {
        assert_eq!(envelope::canonicalize_address(&addr).as_ref(), Some(&addr), "idempotent");
        // Whatever the encoder wraps, the decoder must read back (§5.4: header ≤ 256).
        let wrapped = envelope::encode(b"body", Some(&addr));
        if wrapped.starts_with(envelope::PREFIX) {
            assert_eq!(envelope::decode(&wrapped), (b"body".to_vec(), Some(addr)));
        }
    }
}

/// Offer the fixture message's chunks: for index i the fuzzed value `i` (the rest split
/// on `\n`) and, when bit i of `mask` is set, the genuine chunk. With at least k genuine
/// chunks the message must open to the fixture plaintext.
fn fixture_assembly(prekey: bool, mask: u8, rest: &[u8]) {
    let (c, m) = &composed()[usize::from(prekey)];
    let text = String::from_utf8_lossy(rest);
    let fuzzed: Vec<&str> = text.split('\n').collect();
    let genuine = |i: u32| i < 8 && mask & (1 << i) != 0;
    let outer = message::assemble(m, |i| {
        let mut vals: Vec<String> =
            fuzzed.get(i as usize).map(|s| s.to_string()).into_iter().collect();
        if genuine(i) {
            vals.push(c.chunks[i as usize].1.clone());
        }
        vals
    });
    let enough = (0..m.total_chunks).filter(|&i| genuine(i)).count() >= m.data_chunks as usize;
    let opened = outer.map(|o| message::open(&o, m, bob(), prekey.then_some(&PREKEY_SECRET), NOW));
    if enough {
        let opened = opened.expect("k genuine chunks assemble").expect("and open");
        assert_eq!(opened.plaintext, fixture_plaintext());
        let (body, from) = envelope::decode(&opened.plaintext);
        assert!(!body.is_empty() && from.as_deref() == Some("alice@mesh.test"));
    }
}

/// A manifest of fuzzed k, n (n may exceed zfec's 256) whose chunks carry fuzzed
/// 128-byte blocks; a subset chosen by the input is assembled, erasure-decoded and
/// opened, and the blocks also go to `erasure::decode` directly with fuzzed indices.
fn fuzzed_shares(mut c: Cursor<'_>) {
    let k = u32::from(c.byte() % 32) + 1;
    let n = (k + u32::from(c.byte()) * 2).min(300);
    let pick = c.u64();
    let now = c.u64();
    let bytes = c.rest();
    let block = |i: u32| -> [u8; erasure::BLOCK] {
        let mut b = [0u8; erasure::BLOCK];
        for (j, x) in b.iter_mut().enumerate() {
            let at = (i as usize * erasure::BLOCK + j) % bytes.len().max(1);
            *x = bytes.get(at).copied().unwrap_or(0) ^ (i as u8);
        }
        b
    };
    // Only the chunks assembly can reach (offered ones, up to the k-th) are built; the
    // other indices get hashes nothing matches.
    let offered = |i: u32| (pick >> (i % 64)) & 1 == 1 || i >= 64;
    let reachable: Vec<u32> = (0..n).filter(|&i| offered(i)).take(k as usize).collect();
    let mut chunks: Vec<Option<String>> = vec![None; n as usize];
    for &i in &reachable {
        chunks[i as usize] = Some(ChunkRecord::from_block(&block(i)).to_txt());
    }
    let (_, fixture) = &composed()[0];
    let manifest = SlotManifest {
        total_chunks: n,
        data_chunks: k,
        chunk_hashes: chunks
            .iter()
            .map(|t| match t {
                Some(t) => sha256(&ChunkRecord::parse(t).expect("built chunk parses").wire),
                None => [0xee; 32],
            })
            .collect(),
        ..fixture.clone()
    };
    if let Some(outer) = message::assemble(&manifest, |i| chunks[i as usize].clone()) {
        let _ = message::open(&outer, &manifest, bob(), None, now);
        let _ = OuterMessage::parse(&outer);
    }
    let blocks: Vec<[u8; erasure::BLOCK]> = (0..k).map(block).collect();
    let shares: Vec<(usize, &[u8])> = blocks
        .iter()
        .enumerate()
        .map(|(j, b)| (((pick >> (j % 8 * 8)) as u8) as usize + j, &b[..]))
        .collect();
    let _ = erasure::decode(&shares, k as usize, n as usize);
}

fn replay_cache(json: &[u8]) {
    if let Ok(g) = ReplayGuard::from_json(&String::from_utf8_lossy(json)) {
        assert_eq!(ReplayGuard::from_json(&g.to_json()).ok(), Some(g), "replay cache round trip");
    }
}

// ---------------------------------------------------------------------------------------
// b64_txt: strict/lenient base64, TXT character-strings
// ---------------------------------------------------------------------------------------

/// Both base64 decoders and the TXT RDATA codec on raw bytes, with consistency checks:
/// strict ⊆ lenient, canonical base64 (the `base64` crate) always decodes strictly to
/// the same bytes, decoded bytes re-encode and decode back, TXT RDATA round-trips.
pub fn b64_txt(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    let strict = b64::decode_strict(&s);
    let lenient = b64::decode_lenient(&s);
    if !s.is_ascii() {
        assert!(strict.is_none() && lenient.is_none(), "non-ASCII decoded");
    }
    if let Some(v) = &strict {
        assert_eq!(lenient.as_ref(), Some(v), "strict success must agree with lenient");
    }
    if let Ok(v) = base64::engine::general_purpose::STANDARD.decode(s.as_bytes()) {
        assert_eq!(strict.as_ref(), Some(&v), "canonical base64 rejected or misread");
    }
    for v in [&strict, &lenient].into_iter().flatten() {
        assert!(v.len() <= s.len() / 4 * 3 + 3);
        assert_eq!(b64::decode_strict(&b64::encode(v)).as_ref(), Some(v), "b64 round trip");
    }
    if let Some(v) = txt::from_rdata(data) {
        assert!(v.len() <= data.len());
        assert_eq!(txt::from_rdata(&txt::to_rdata(&v)), Some(v.clone()), "rdata round trip");
    }
    let parts = txt::split(data);
    assert!(parts.iter().all(|p| p.len() <= 255) && !parts.is_empty());
    assert_eq!(txt::join(&parts), data);
    assert_eq!(txt::to_rdata(data).len(), data.len() + parts.len());
}

// ---------------------------------------------------------------------------------------
// registration: subjects, name classes, scopes
// ---------------------------------------------------------------------------------------

/// Input: up to four NUL-separated strings `a\0b\0c\0d` (lossy UTF-8). `a` is tried as
/// a subject, a record name, an owner, an address and a heartbeat endpoint; `b` as a
/// zone; `b`, `c`, `d` as scope suffixes covering `a`.
pub fn registration(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0');
    let mut next = || parts.next().unwrap_or("");
    let (a, b, c, d) = (next(), next(), next(), next());
    subject(a, b, data);
    name_class(a);
    scope(a, &[b, c, d]);
    for ty in
        [SubjectType::UserIdentity, SubjectType::ClusterOperator, SubjectType::BootstrapSigner]
    {
        let _ = normalize_subject(ty, a);
    }
    if let Some(v) = dnsname::validate(a) {
        assert_eq!(dnsname::validate(v), Some(v), "validate is idempotent");
    }
    let _ = envelope::canonicalize_address(a);
    // Heartbeat endpoints: the private-address policy only ever removes endpoints.
    if validate_endpoint(a, false).is_ok() {
        assert!(validate_endpoint(a, true).is_ok(), "strict endpoint refused loosely");
    }
}

fn subject(raw: &str, zone: &str, data: &[u8]) {
    let Ok(s) = reg::canonicalize_subject(raw) else {
        return;
    };
    assert_eq!(reg::canonicalize_subject(&s).as_ref(), Ok(&s), "canonical is a fixed point");
    assert!(s.is_ascii() && !s.bytes().any(|b| b.is_ascii_uppercase()));
    assert_eq!(s.matches('@').count(), 1);
    let spk: [u8; 32] = sha256(data);
    let local = s.split_once('@').map_or("", |(l, _)| l);
    let name = reg::tsig_key_name(&s, &spk, zone);
    assert_eq!(name.is_ok(), local.len() <= 47, "TSIG label limit");
    if let Ok(name) = name {
        assert!(name.ends_with('.') && name.split('.').next().map_or(0, str::len) <= 63);
    }
    for mode in [ScopeMode::Default, ScopeMode::Tight, ScopeMode::Loose] {
        let scope = reg::default_scope(&s, &spk, Some(&spk), zone, mode);
        if !zone.is_ascii() {
            continue; // Unicode lower-casing is context-dependent; names are ASCII.
        }
        for entry in &scope {
            if entry.trim_end_matches('.').is_empty() {
                continue;
            }
            let owner = entry.replace('*', "q");
            let want = if entry.contains('*') { Coverage::WildcardOnly } else { Coverage::Exact };
            assert!(reg::suffix_covers(entry, &owner), "{entry} covers {owner}");
            assert!(reg::coverage(scope.as_slice(), &owner) != Coverage::None);
            if want == Coverage::Exact {
                assert_eq!(reg::coverage(scope.as_slice(), &owner), Coverage::Exact);
            }
        }
    }
}

fn name_class(name: &str) {
    let class = reg::classify_name(name);
    assert_eq!(reg::classify_name(&format!("{name}.")), class, "trailing dot ignored");
    if name.is_ascii() {
        assert_eq!(reg::classify_name(&name.to_ascii_uppercase()), class, "case ignored");
    }
    match &class {
        NameClass::OwnerSubject(s) => {
            assert_eq!(reg::canonicalize_subject(s).as_ref(), Ok(s), "owner is canonical");
            assert!(class.owned_by(s, None));
        }
        NameClass::OwnerIdentityHash { hash16, domain } => {
            assert!(hash16.len() == 16 && domain.contains('.'));
        }
        NameClass::OwnerPrekeyPool { hash12, domain } => {
            assert!(hash12.len() == 12 && domain.contains('.'));
        }
        NameClass::OwnerPrekeyHash(h) => assert!(class.owned_by("x@y.z", Some(h))),
        NameClass::Unknown | NameClass::OperatorOnly | NameClass::SharedPool => {
            assert!(!class.owned_by(name, Some(name)));
        }
    }
}

/// `*` matches any run inside one label: an independent dynamic-programming glob.
fn glob_ref(p: &[u8], l: &[u8]) -> bool {
    let mut row = vec![false; l.len() + 1];
    row[0] = true;
    for &pc in p {
        let mut next = vec![false; l.len() + 1];
        for j in 0..=l.len() {
            next[j] = if pc == b'*' {
                row[j] || (j > 0 && next[j - 1])
            } else {
                j > 0 && row[j - 1] && l[j - 1] == pc
            };
        }
        row = next;
    }
    row[l.len()]
}

fn scope(owner: &str, suffixes: &[&str]) {
    let cov = reg::coverage(suffixes, owner);
    let exact = suffixes.iter().any(|s| !s.contains('*') && reg::suffix_covers(s, owner));
    let wild = suffixes.iter().any(|s| s.contains('*') && reg::suffix_covers(s, owner));
    let want = match (exact, wild) {
        (true, _) => Coverage::Exact,
        (false, true) => Coverage::WildcardOnly,
        _ => Coverage::None,
    };
    assert_eq!(cov, want);
    assert_eq!(cov.allows(false), cov != Coverage::None);
    assert_eq!(cov.allows(true), cov == Coverage::Exact);
    if !owner.is_ascii() {
        return;
    }
    let norm = |s: &str| s.trim_end_matches('.').to_ascii_lowercase();
    let o = norm(owner);
    for s in suffixes.iter().filter(|s| s.is_ascii()) {
        let covered = reg::suffix_covers(s, owner);
        let sn = norm(s);
        let expect = if sn.is_empty() || o.is_empty() {
            false
        } else if !sn.contains('*') {
            o == sn || o.ends_with(&format!(".{sn}"))
        } else {
            let pat: Vec<&str> = sn.split('.').collect();
            let own: Vec<&str> = o.split('.').collect();
            own.len() >= pat.len()
                && pat
                    .iter()
                    .rev()
                    .zip(own.iter().rev())
                    .all(|(p, l)| glob_ref(p.as_bytes(), l.as_bytes()))
        };
        assert_eq!(covered, expect, "suffix_covers({s:?}, {owner:?})");
        if covered {
            assert!(reg::suffix_covers(s, &format!("x.{owner}")), "extra leading label");
        }
    }
}

// ---------------------------------------------------------------------------------------
// http_json: the JSON bodies the node parses
// ---------------------------------------------------------------------------------------

/// Decode a hex string field into exactly `N` bytes, as the node's registration does.
fn hexfield<const N: usize>(v: &Value, field: &str) -> Option<[u8; N]> {
    hex::decode(v.get(field)?.as_str()?).ok()?.try_into().ok()
}

/// A JSON body through `serde_json` into the shapes the node reads, then into the
/// validation functions of the core those fields reach. Records `{"value","ttl"}` (and a
/// `"name"` standing in for the URL path) and DELETE `{"value": str|null}` go through the
/// handlers' own parsers and rules (`dnsmesh::policy::http_input`); the rest of the
/// handlers (`actors/http.rs`, `actors/auth.rs`) need the `net` feature and are mirrored:
/// registration `{"subject","ed25519_spk","challenge",
/// "signature","x25519_pub","x25519_pop"}`, admin revoke `{"what"}`, the sync pull
/// `{"names": […]}` (whose names get the lookups the store does), and the sync answers a
/// node reads from its peers (see [`sync_response`]).
pub fn http_json(data: &[u8]) {
    // The write routes' own body parsers and input rules (`dnsmesh::policy::http_input`,
    // what `actors/http.rs` calls).
    if let Ok((value, ttl)) = http_input::publish_body(data) {
        assert!(ttl > 0);
        if http_input::valid_record_value(&value) {
            assert!(!value.contains('"') && !value.chars().any(char::is_control));
            record_value(&value);
        }
    }
    if let Ok(Some(value)) = http_input::delete_body(data) {
        let _ = http_input::valid_record_value(&value);
    }
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if let Some(name) = v.get("name").and_then(Value::as_str) {
        let clean = http_input::clean_name(name);
        if http_input::valid_record_name(&clean) {
            assert!(clean.len() <= 253 && clean.split('.').all(|l| !l.is_empty() && l.len() <= 64));
            let lower = clean.to_ascii_lowercase();
            assert!(http_input::in_zone(ZONE, ZONE));
            let _ = http_input::in_zone(&lower, ZONE);
        }
        record_name(name);
    }
    if let Some(what) = v.get("what").and_then(Value::as_str) {
        let _ = reg::canonicalize_subject(what);
    }
    // Sync pull (`actors/http.rs` sync_pull): at most 256 names, all strings, each
    // trimmed, trailing dots dropped and lower-cased before the store looks them up.
    if let Some(names) = v.get("names").and_then(Value::as_array) {
        let strings: Option<Vec<&str>> = names.iter().map(Value::as_str).collect();
        if let Some(strings) = strings.filter(|s| s.len() <= 256) {
            for name in strings {
                let clean = name.trim().trim_end_matches('.').to_ascii_lowercase();
                assert!(!clean.ends_with('.') && !clean.bytes().any(|b| b.is_ascii_uppercase()));
                record_name(&clean);
            }
        }
    }
    registration_body(&v);
    sync_response(&v);
}

/// What the sync actor (`actors/sync.rs`) reads from a peer: digest pages
/// `{"records":[{"ts","name","hash"}],"next_cursor"}`, pull answers
/// `{"records":[{"name","value","ttl"}]}` and `{"tombstones":[{"stamp","name",…}]}`,
/// judged by `dnsmesh::policy::replication`.
fn sync_response(v: &Value) {
    use dnsmesh::policy::replication::{parse_cursor, valid_sync_name, verify_record};
    let rows = |key: &str| v.get(key).and_then(Value::as_array).cloned().unwrap_or_default();
    let a = alice().ed25519_public();
    for r in rows("records").iter().chain(rows("tombstones").iter()).take(64) {
        let name = r.get("name").and_then(Value::as_str).unwrap_or("").to_ascii_lowercase();
        let value = r.get("value").and_then(Value::as_str).unwrap_or("");
        if valid_sync_name(&name) {
            assert!(!name.is_empty() && name.len() <= 253);
            let _ = verify_record(value, &name, None, NOW);
            let _ = verify_record(value, &name, Some(&a), NOW);
        }
    }
    if let Some(c) = v.get("next_cursor").and_then(Value::as_str) {
        if let Some((ts, name, hash)) = parse_cursor(c) {
            let again = parse_cursor(&format!("{ts}:{name}:{hash}"));
            assert_eq!(again, Some((ts, name, hash)), "cursor round trip");
        }
    }
}

fn record_value(value: &str) {
    let rdata = txt::to_rdata(value.as_bytes());
    assert_eq!(txt::from_rdata(&rdata).as_deref(), Some(value.as_bytes()));
    parse_txt(value, NOW);
}

fn record_name(raw: &str) {
    let name = raw.trim().trim_end_matches('.');
    let lname = name.to_ascii_lowercase();
    name_class(&lname);
    let _ = zone().txt(&lname);
    if let Some(v) = dnsname::validate(name) {
        assert_eq!(dnsname::validate(v), Some(v));
    }
}

fn registration_body(v: &Value) {
    let Some(raw) = v.get("subject").and_then(Value::as_str) else {
        return;
    };
    let Ok(subject) = reg::canonicalize_subject(raw) else {
        return;
    };
    let (Some(spk), Some(challenge), Some(sig)) = (
        hexfield::<32>(v, "ed25519_spk"),
        hexfield::<32>(v, "challenge"),
        hexfield::<64>(v, "signature"),
    ) else {
        return;
    };
    let _ = reg::verify_registration(&spk, &challenge, &subject, NODE, &sig);
    let _ = reg::tsig_key_name(&subject, &spk, ZONE);
    let xpub = hexfield::<32>(v, "x25519_pub");
    if let (Some(xpub), Some(pop)) = (xpub, hexfield::<32>(v, "x25519_pop")) {
        let mut server = [0u8; 32];
        hex::decode_to_slice(SERVER_X25519_PRIV, &mut server).expect("constant hex");
        let _ = reg::verify_x25519_pop(&server, &xpub, &challenge, &subject, &pop);
    }
    let scope = reg::default_scope(&subject, &spk, xpub.as_ref(), ZONE, ScopeMode::Default);
    for entry in scope.iter().filter(|e| !e.contains('*')) {
        assert_eq!(reg::coverage(scope.as_slice(), entry), Coverage::Exact);
    }
}
