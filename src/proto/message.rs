//! The message pipeline (§5, §6): compose a message into chunk + manifest records, and
//! take it apart again on receive. Pure: DNS I/O, clocks and key stores are the
//! caller's; randomness is injected ([`SendRandomness`]) so vectors reproduce.
//!
//! **Send** ([`compose`]): header JSON → AAD → ephemeral X25519 + HKDF-SHA256 →
//! ChaCha20-Poly1305 → outer framing → zfec shares → RS-wrapped chunk wires → signed
//! manifest carrying every chunk hash. Publish [`Composed::chunks`] first, then
//! [`Composed::manifest`], then (best effort) [`Composed::claim`] records.
//!
//! **Receive**, in the order of §5.2:
//! 1. [`accept_manifest`] — parse/verify, recipient and expiry checks.
//! 2. Sender gate (caller policy: pinned keys bound to the zone the manifest was found
//!    in; unpinned senders only with TOFU or via the intro queue).
//! 3. [`ReplayGuard::claim`] — skip if seen or in flight.
//! 4. [`assemble`] / [`Assembler`] — chunks from the **same zone**, hash-checked.
//! 5. [`open`] — outer parse, header cross-checks, AAD rebuild, decrypt.
//! 6. On success [`ReplayGuard::commit`] until `manifest.exp`; on failure
//!    [`ReplayGuard::release`].
//!
//! **Prekey rule**: a prekey's private key is consumed (deleted locally, its published
//! TXT value DELETEd) only **after** [`open`] succeeded; [`Opened::prekey_id`] says which
//! one was used. A failed decrypt leaves the prekey untouched (T9).

use std::collections::BTreeMap;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hkdf::Hkdf;
use sha2::Sha256;

use super::erasure::{self, BLOCK};
use super::keys::{self, sha256, Identity};
use super::names;
use super::records::chunk::ChunkRecord;
use super::records::claim::ClaimRecord;
use super::records::manifest::{SlotManifest, NO_PREKEY};
use super::records::Reader;
use super::ProtoError;

/// HKDF salt for the message key.
pub const HKDF_SALT: &[u8] = b"DMP-v1";
/// HKDF info for the message key.
pub const HKDF_INFO: &[u8] = b"DMP-Message-Encryption";
/// Zero bytes after the encrypted message (an unused signature placeholder).
pub const TRAILER_LEN: usize = 32;
/// Ephemeral public key + nonce at the start of the encrypted payload.
const EPH_NONCE_LEN: usize = 44;
/// How long an in-flight replay claim blocks a second decode of the same message.
pub const IN_FLIGHT_TTL: u64 = 300;

/// The header's `type` values (the reference's `MessageType` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    Data,
    Ack,
    Discovery,
    Identity,
    Mailbox,
}

impl MessageType {
    const ALL: [(MessageType, &'static str); 5] = [
        (MessageType::Data, "DATA"),
        (MessageType::Ack, "ACK"),
        (MessageType::Discovery, "DISCOVERY"),
        (MessageType::Identity, "IDENTITY"),
        (MessageType::Mailbox, "MAILBOX"),
    ];

    /// The JSON spelling.
    pub fn as_str(self) -> &'static str {
        Self::ALL.iter().find(|(t, _)| *t == self).map(|(_, s)| *s).unwrap_or("DATA")
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().find(|(_, n)| *n == s).map(|(t, _)| *t)
    }
}

/// The inner message header. Serialised as non-canonical JSON with a fixed key order
/// (T15) because the receiver re-serialises parsed values to rebuild the AAD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub version: u64,
    pub message_type: MessageType,
    pub msg_id: [u8; 16],
    /// Sender's `user_id` (sha256 of the sender's X25519 public key).
    pub sender: [u8; 32],
    /// Recipient's `user_id`.
    pub recipient: [u8; 32],
    /// Placeholder: 1 in the outer header, 0 in the AAD (T16).
    pub total: u64,
    pub chunk: u64,
    pub ts: u64,
    pub ttl: u64,
}

impl Header {
    /// The outer header a sender writes: v 1, `DATA`, total 1, chunk 0.
    pub fn data(
        msg_id: [u8; 16],
        sender: [u8; 32],
        recipient: [u8; 32],
        ts: u64,
        ttl: u64,
    ) -> Self {
        Header {
            version: 1,
            message_type: MessageType::Data,
            msg_id,
            sender,
            recipient,
            total: 1,
            chunk: 0,
            ts,
            ttl,
        }
    }

    /// Compact JSON in the reference's key order.
    pub fn to_json(&self) -> String {
        format!(
            r#"{{"v":{},"type":"{}","msg_id":"{}","sender":"{}","recipient":"{}","total":{},"chunk":{},"ts":{},"ttl":{}}}"#,
            self.version,
            self.message_type.as_str(),
            hex::encode(self.msg_id),
            hex::encode(self.sender),
            hex::encode(self.recipient),
            self.total,
            self.chunk,
            self.ts,
            self.ttl
        )
    }

    /// `AAD = header_json(total = 0, chunk = 0) ‖ uint32_be(prekey_id)`.
    pub fn aad(&self, prekey_id: u32) -> Vec<u8> {
        let mut aad = Header { total: 0, chunk: 0, ..self.clone() }.to_json().into_bytes();
        aad.extend_from_slice(&prekey_id.to_be_bytes());
        aad
    }

    /// Parse header JSON. Every key must be present with the right type: integers for
    /// v/total/chunk/ts/ttl, a known `type`, hex (either case) of the exact length for
    /// the ids. Later duplicate keys win, as with Python's `json.loads`.
    pub fn parse(json: &[u8]) -> Option<Self> {
        let v: serde_json::Value = serde_json::from_slice(json).ok()?;
        let o = v.as_object()?;
        let int = |k: &str| o.get(k)?.as_u64();
        fn hex_field<const N: usize>(
            o: &serde_json::Map<String, serde_json::Value>,
            k: &str,
        ) -> Option<[u8; N]> {
            let mut out = [0u8; N];
            hex::decode_to_slice(o.get(k)?.as_str()?, &mut out).ok()?;
            Some(out)
        }
        Some(Header {
            version: int("v")?,
            message_type: MessageType::parse(o.get("type")?.as_str()?)?,
            msg_id: hex_field(o, "msg_id")?,
            sender: hex_field(o, "sender")?,
            recipient: hex_field(o, "recipient")?,
            total: int("total")?,
            chunk: int("chunk")?,
            ts: int("ts")?,
            ttl: int("ttl")?,
        })
    }
}

/// `HKDF-SHA256(ikm = shared, salt = "DMP-v1", info = "DMP-Message-Encryption", 32)`.
pub fn derive_key(shared: &[u8; 32]) -> [u8; 32] {
    let mut okm = [0u8; 32];
    Hkdf::<Sha256>::new(Some(HKDF_SALT), shared)
        .expand(HKDF_INFO, &mut okm)
        .expect("32 bytes is within HKDF-SHA256's output limit");
    okm
}

/// ChaCha20-Poly1305 encryption: ciphertext ‖ 16-byte tag.
pub fn seal(
    key: &[u8; 32],
    nonce: &[u8; 12],
    plaintext: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, ProtoError> {
    ChaCha20Poly1305::new(Key::from_slice(key))
        .encrypt(Nonce::from_slice(nonce), Payload { msg: plaintext, aad })
        .map_err(|_| ProtoError::Malformed("plaintext too long for the AEAD"))
}

/// ChaCha20-Poly1305 decryption and authentication.
pub fn unseal(
    key: &[u8; 32],
    nonce: &[u8; 12],
    ciphertext: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, ProtoError> {
    ChaCha20Poly1305::new(Key::from_slice(key))
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad })
        .map_err(|_| ProtoError::Decrypt)
}

/// The outer message carried by the chunks:
/// `uint16_be(len(header)) ‖ header ‖ eph_pub(32) ‖ nonce(12) ‖ ct ‖ 32 zero bytes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OuterMessage {
    pub header: Header,
    pub ephemeral_pub: [u8; 32],
    pub nonce: [u8; 12],
    /// Ciphertext with its 16-byte tag.
    pub ciphertext: Vec<u8>,
}

impl OuterMessage {
    /// Serialise with the 32-byte zero trailer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let json = self.header.to_json();
        // The header is at most ~300 bytes of fixed-width fields and u64s, so u16 fits.
        let mut out = Vec::with_capacity(
            2 + json.len() + EPH_NONCE_LEN + self.ciphertext.len() + TRAILER_LEN,
        );
        out.extend_from_slice(&(json.len() as u16).to_be_bytes());
        out.extend_from_slice(json.as_bytes());
        out.extend_from_slice(&self.ephemeral_pub);
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.ciphertext);
        out.extend_from_slice(&[0u8; TRAILER_LEN]);
        out
    }

    /// Parse like the reference: header = `data[2 : 2 + hlen]` (valid JSON header),
    /// payload = `data[2 + hlen : len − 32]` (the trailer's content is ignored) and must
    /// hold at least the ephemeral key and nonce.
    pub fn parse(data: &[u8]) -> Option<Self> {
        let hlen = Reader::new(data).u16()? as usize;
        let header = Header::parse(data.get(2..2 + hlen)?)?;
        let payload = data.get(2 + hlen..data.len().checked_sub(TRAILER_LEN)?)?;
        if payload.len() < EPH_NONCE_LEN {
            return None;
        }
        Some(OuterMessage {
            header,
            ephemeral_pub: payload[..32].try_into().ok()?,
            nonce: payload[32..EPH_NONCE_LEN].try_into().ok()?,
            ciphertext: payload[EPH_NONCE_LEN..].to_vec(),
        })
    }
}

/// What to send. `plaintext` is the AEAD plaintext as is (a DMPv2 envelope already
/// applied by the caller when the recipient advertises version 2).
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    pub sender: &'a Identity,
    /// The sender's own (effective) zone: chunks, manifest and claim domain live here.
    pub sender_zone: &'a str,
    pub recipient_x25519: [u8; 32],
    /// `(prekey_id, prekey_pub)` of a verified, unexpired recipient prekey, if any.
    pub prekey: Option<(u32, [u8; 32])>,
    pub plaintext: &'a [u8],
    pub ttl: u64,
    pub now: u64,
}

/// The random inputs of one send, separate so vectors can replay them.
#[derive(Clone)]
pub struct SendRandomness {
    pub ephemeral_private: [u8; 32],
    pub nonce: [u8; 12],
    pub msg_id: [u8; 16],
}

impl std::fmt::Debug for SendRandomness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendRandomness")
            .field("ephemeral_public", &hex::encode(keys::x25519_public(&self.ephemeral_private)))
            .field("nonce", &hex::encode(self.nonce))
            .field("msg_id", &hex::encode(self.msg_id))
            .finish_non_exhaustive()
    }
}

impl SendRandomness {
    /// Fresh values from the OS; `msg_id` is a UUIDv4 like the reference's.
    pub fn from_os() -> Self {
        let mut nonce = [0u8; 12];
        keys::random_fill(&mut nonce);
        let mut msg_id = [0u8; 16];
        keys::random_fill(&mut msg_id);
        msg_id[6] = (msg_id[6] & 0x0f) | 0x40;
        msg_id[8] = (msg_id[8] & 0x3f) | 0x80;
        SendRandomness { ephemeral_private: keys::random_32(), nonce, msg_id }
    }
}

/// A composed message: records ready to publish, in order (chunks, then manifest).
#[derive(Debug, Clone)]
pub struct Composed {
    pub msg_id: [u8; 16],
    /// Mailbox slot (`uint32_be(msg_id[0:4]) % 10`).
    pub slot: u32,
    /// 0 when sent to the long-term key.
    pub prekey_id: u32,
    pub recipient_id: [u8; 32],
    /// `(owner_name, txt_value)` per chunk, index order. Publish these first.
    pub chunks: Vec<(String, String)>,
    /// `(owner_name, txt_value)` of the signed slot manifest.
    pub manifest: (String, String),
    sender_zone: String,
    ts: u64,
    exp: u64,
}

impl Composed {
    /// The claim record `(owner_name, txt_value)` announcing this message in
    /// `provider_zone` (the recipient's home zone for M10, or a claim provider's zone).
    /// `sender` must be the identity that composed the message.
    pub fn claim(
        &self,
        sender: &Identity,
        provider_zone: &str,
    ) -> Result<(String, String), ProtoError> {
        let record = ClaimRecord {
            msg_id: self.msg_id,
            sender_spk: sender.ed25519_public(),
            sender_mailbox_domain: self.sender_zone.clone(),
            slot: self.slot as u8,
            ts: self.ts,
            exp: self.exp,
        };
        Ok((names::claim(self.slot, &self.recipient_id, provider_zone), record.sign(sender)?))
    }
}

/// Compose with fresh OS randomness. See [`compose_with`].
pub fn compose(out: &Outgoing) -> Result<Composed, ProtoError> {
    compose_with(out, &SendRandomness::from_os())
}

/// Compose a message deterministically from the given randomness (§5.1 steps 1–9).
/// Refuses, before producing anything, messages needing more shares than zfec allows
/// (n > 256, stricter than the manifest's 1024; T31), a prekey id of 0 and recipient
/// keys giving an all-zero shared secret.
pub fn compose_with(out: &Outgoing, rnd: &SendRandomness) -> Result<Composed, ProtoError> {
    let recipient_id = keys::user_id(&out.recipient_x25519);
    let (prekey_id, target) = match out.prekey {
        Some((0, _)) => return Err(ProtoError::field("prekey_id", "0 is reserved")),
        Some((id, pubkey)) => (id, pubkey),
        None => (NO_PREKEY, out.recipient_x25519),
    };
    let exp =
        out.now.checked_add(out.ttl).ok_or(ProtoError::field("ttl", "now + ttl overflows"))?;
    let header = Header::data(rnd.msg_id, out.sender.user_id(), recipient_id, out.now, out.ttl);
    let shared = keys::x25519(&rnd.ephemeral_private, &target)
        .ok_or(ProtoError::field("recipient_x25519", "non-contributory key"))?;
    let ciphertext = seal(&derive_key(&shared), &rnd.nonce, out.plaintext, &header.aad(prekey_id))?;
    let outer = OuterMessage {
        header,
        ephemeral_pub: keys::x25519_public(&rnd.ephemeral_private),
        nonce: rnd.nonce,
        ciphertext,
    }
    .to_bytes();
    let (shares, k, n) = erasure::encode(&outer)?;

    let sender_spk = out.sender.ed25519_public();
    let msg_key = names::message_key(&rnd.msg_id, &recipient_id, &sender_spk);
    let mut chunks = Vec::with_capacity(n);
    let mut chunk_hashes = Vec::with_capacity(n);
    for (i, share) in shares.iter().enumerate() {
        let block: &[u8; BLOCK] =
            share.as_slice().try_into().map_err(|_| ProtoError::Malformed("share size"))?;
        let rec = ChunkRecord::from_block(block);
        chunk_hashes.push(sha256(&rec.wire));
        chunks.push((names::chunk(i as u32, &msg_key, out.sender_zone), rec.to_txt()));
    }
    let manifest = SlotManifest {
        msg_id: rnd.msg_id,
        sender_spk,
        recipient_id,
        total_chunks: n as u32,
        data_chunks: k as u32,
        prekey_id,
        ts: out.now,
        exp,
        chunk_hashes,
    };
    let slot = names::slot_for(&rnd.msg_id);
    Ok(Composed {
        msg_id: rnd.msg_id,
        slot,
        prekey_id,
        recipient_id,
        chunks,
        manifest: (names::slot(slot, &recipient_id, out.sender_zone), manifest.sign(out.sender)?),
        sender_zone: out.sender_zone.to_owned(),
        ts: out.now,
        exp,
    })
}

/// Receive steps 1–2: a manifest TXT value that verifies, is addressed to
/// `own_user_id` and is not expired (`now > exp` drops). The sender gate is next.
pub fn accept_manifest(txt: &str, own_user_id: &[u8; 32], now: u64) -> Option<SlotManifest> {
    let m = SlotManifest::parse_and_verify(txt, now)?;
    (m.recipient_id == *own_user_id && !m.is_expired(now)).then_some(m)
}

/// Collects shares for one manifest as chunk values arrive (any I/O style). For each
/// index the first value whose `sha256(wire)` equals the manifest hash and whose
/// checksum holds wins; collection stops at k shares.
#[derive(Debug)]
pub struct Assembler<'m> {
    manifest: &'m SlotManifest,
    shares: BTreeMap<u32, [u8; BLOCK]>,
}

impl<'m> Assembler<'m> {
    /// `None` for manifests without chunk hashes: since 0.7.0 those yield no message.
    pub fn new(manifest: &'m SlotManifest) -> Option<Self> {
        manifest.has_chunk_hashes().then(|| Assembler { manifest, shares: BTreeMap::new() })
    }

    /// True while fewer than k shares are held: fetch the next index.
    pub fn needs_more(&self) -> bool {
        self.shares.len() < self.manifest.data_chunks as usize
    }

    /// Offer the TXT values found at `chunk-<index>`; returns whether that index now
    /// holds a share. Values that are not chunks, fail the hash or the checksum are
    /// skipped; an index that already has a share is left alone.
    pub fn offer<S: AsRef<str>>(&mut self, index: u32, values: &[S]) -> bool {
        if self.shares.contains_key(&index) {
            return true;
        }
        let Some(expected) = self.manifest.chunk_hashes.get(index as usize) else {
            return false;
        };
        if !self.needs_more() {
            return false;
        }
        let block = values.iter().find_map(|v| {
            let rec = ChunkRecord::parse(v.as_ref())?;
            (sha256(&rec.wire) == *expected).then(|| rec.unwrap_block()).flatten()
        });
        match block {
            Some(b) => {
                self.shares.insert(index, b);
                true
            }
            None => false,
        }
    }

    /// Erasure-decode the collected shares into the outer message bytes.
    pub fn finish(&self) -> Option<Vec<u8>> {
        let shares: Vec<(usize, &[u8])> =
            self.shares.iter().map(|(i, b)| (*i as usize, &b[..])).collect();
        erasure::decode(
            &shares,
            self.manifest.data_chunks as usize,
            self.manifest.total_chunks as usize,
        )
    }
}

/// Receive step 5–6 with a synchronous fetcher: `fetch(i)` returns the TXT values at
/// `chunk-<i>-<msg_key>.<zone the manifest came from>`; it is called for i = 0, 1, …
/// only while fewer than k shares are held. Returns the outer message bytes.
pub fn assemble<F, I, S>(manifest: &SlotManifest, mut fetch: F) -> Option<Vec<u8>>
where
    F: FnMut(u32) -> I,
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut asm = Assembler::new(manifest)?;
    for i in 0..manifest.total_chunks {
        if !asm.needs_more() {
            break;
        }
        let values: Vec<S> = fetch(i).into_iter().collect();
        asm.offer(i, &values);
    }
    asm.finish()
}

/// A decrypted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The AEAD plaintext (possibly a DMPv2 envelope; strip it next).
    pub plaintext: Vec<u8>,
    pub header: Header,
    /// The prekey that decrypted it (0 = long-term key). Consume it now, not earlier.
    pub prekey_id: u32,
}

/// Receive steps 7–10: parse the outer message, cross-check it against the manifest
/// (msg_id, recipient, `now ≤ ts + ttl`), rebuild the AAD from the parsed header and
/// decrypt. When `manifest.prekey_id ≠ 0` the caller passes that prekey's private key
/// (it must exist and be unexpired; do not delete it before this returns `Ok`);
/// otherwise the identity's long-term key is used and `prekey_secret` is ignored.
pub fn open(
    outer: &[u8],
    manifest: &SlotManifest,
    identity: &Identity,
    prekey_secret: Option<&[u8; 32]>,
    now: u64,
) -> Result<Opened, ProtoError> {
    let msg = OuterMessage::parse(outer).ok_or(ProtoError::Malformed("outer message"))?;
    let h = &msg.header;
    if h.msg_id != manifest.msg_id {
        return Err(ProtoError::field("msg_id", "header and manifest differ"));
    }
    if h.recipient != manifest.recipient_id || manifest.recipient_id != identity.user_id() {
        return Err(ProtoError::field("recipient", "not addressed to this identity"));
    }
    if now > h.ts.saturating_add(h.ttl) {
        return Err(ProtoError::Time("message ts + ttl has passed"));
    }
    let aad = h.aad(manifest.prekey_id);
    let shared = if manifest.prekey_id == NO_PREKEY {
        identity.diffie_hellman(&msg.ephemeral_pub)
    } else {
        let secret = prekey_secret
            .ok_or(ProtoError::field("prekey_id", "prekey private key not supplied"))?;
        keys::x25519(secret, &msg.ephemeral_pub)
    }
    .ok_or(ProtoError::Decrypt)?;
    let plaintext = unseal(&derive_key(&shared), &msg.nonce, &msg.ciphertext, &aad)?;
    Ok(Opened { plaintext, header: msg.header, prekey_id: manifest.prekey_id })
}

/// Replay key: `(sender_spk, msg_id)`.
type ReplayKey = ([u8; 32], [u8; 16]);

/// Replay protection (§5.3): messages delivered, remembered until their manifest's
/// `exp`, plus in-flight claims (300 s) that stop concurrent double delivery. Wrap in a
/// mutex for the atomic claim-for-decode. Persists as the reference's
/// `replay_cache.json`: `[[spk_hex, msg_id_hex, exp], …]` (delivered entries only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayGuard {
    seen: BTreeMap<ReplayKey, u64>,
    in_flight: BTreeMap<ReplayKey, u64>,
}

impl ReplayGuard {
    /// An empty guard.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the message was delivered and its entry has not expired (`now ≤ exp`:
    /// a manifest is still acceptable at `now == exp`, so it must still count as seen).
    pub fn is_seen(&self, sender_spk: &[u8; 32], msg_id: &[u8; 16], now: u64) -> bool {
        self.seen.get(&(*sender_spk, *msg_id)).is_some_and(|&exp| now <= exp)
    }

    /// Claim a message for decoding: `false` if already delivered or another decode is
    /// in flight; otherwise it is marked in flight for 300 s.
    pub fn claim(&mut self, sender_spk: &[u8; 32], msg_id: &[u8; 16], now: u64) -> bool {
        let key = (*sender_spk, *msg_id);
        if self.is_seen(sender_spk, msg_id, now)
            || self.in_flight.get(&key).is_some_and(|&until| now < until)
        {
            return false;
        }
        self.in_flight.insert(key, now.saturating_add(IN_FLIGHT_TTL));
        true
    }

    /// Drop an in-flight claim after a failed decode, so a later poll may retry.
    pub fn release(&mut self, sender_spk: &[u8; 32], msg_id: &[u8; 16]) {
        self.in_flight.remove(&(*sender_spk, *msg_id));
    }

    /// Record a successful delivery until `exp` (the manifest's) and end the claim.
    pub fn commit(&mut self, sender_spk: &[u8; 32], msg_id: &[u8; 16], exp: u64) {
        let key = (*sender_spk, *msg_id);
        self.in_flight.remove(&key);
        self.seen.insert(key, exp);
    }

    /// Forget expired entries and stale claims.
    pub fn prune(&mut self, now: u64) {
        self.seen.retain(|_, exp| now <= *exp);
        self.in_flight.retain(|_, until| now < *until);
    }

    /// `replay_cache.json` content, formatted like Python's `json.dumps`.
    pub fn to_json(&self) -> String {
        let entries: Vec<String> = self
            .seen
            .iter()
            .map(|((spk, id), exp)| {
                format!("[\"{}\", \"{}\", {}]", hex::encode(spk), hex::encode(id), exp)
            })
            .collect();
        format!("[{}]", entries.join(", "))
    }

    /// Load `replay_cache.json` content. Entries that are not
    /// `[64-hex, 32-hex, non-negative integer]` are skipped; a non-array is an error.
    pub fn from_json(json: &str) -> Result<Self, ProtoError> {
        let v: serde_json::Value = serde_json::from_str(json)
            .map_err(|_| ProtoError::Malformed("replay cache is not JSON"))?;
        let list = v.as_array().ok_or(ProtoError::Malformed("replay cache is not a JSON array"))?;
        let mut guard = ReplayGuard::new();
        for e in list {
            let entry = (|| {
                let [spk, id, exp] = e.as_array()?.as_slice() else {
                    return None;
                };
                let mut s = [0u8; 32];
                hex::decode_to_slice(spk.as_str()?, &mut s).ok()?;
                let mut m = [0u8; 16];
                hex::decode_to_slice(id.as_str()?, &mut m).ok()?;
                Some(((s, m), exp.as_u64()?))
            })();
            if let Some((key, exp)) = entry {
                guard.seen.insert(key, exp);
            }
        }
        Ok(guard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_guard_lifecycle() {
        let (spk, id) = ([1u8; 32], [2u8; 16]);
        let mut g = ReplayGuard::new();
        assert!(g.claim(&spk, &id, 100));
        assert!(!g.claim(&spk, &id, 399), "in flight");
        g.release(&spk, &id);
        assert!(g.claim(&spk, &id, 100));
        g.commit(&spk, &id, 500);
        assert!(!g.claim(&spk, &id, 500), "seen until exp inclusive");
        assert!(g.claim(&spk, &id, 501));
        g.commit(&spk, &id, 500);
        let json = g.to_json();
        assert_eq!(json, format!("[[\"{}\", \"{}\", 500]]", hex::encode(spk), hex::encode(id)));
        assert_eq!(ReplayGuard::from_json(&json).unwrap(), g);
        assert!(ReplayGuard::from_json("{}").is_err());
        assert_eq!(ReplayGuard::from_json("[[1,2,3], []]").unwrap(), ReplayGuard::new());
        g.prune(501);
        assert_eq!(g, ReplayGuard::new());
    }

    #[test]
    fn header_json_and_aad() {
        let h = Header::data([0xab; 16], [1; 32], [2; 32], 10, 300);
        let j = h.to_json();
        assert!(j.starts_with(r#"{"v":1,"type":"DATA","msg_id":"abab"#));
        assert!(j.ends_with(r#","total":1,"chunk":0,"ts":10,"ttl":300}"#));
        assert_eq!(Header::parse(j.as_bytes()), Some(h.clone()));
        let aad = h.aad(7);
        assert!(aad.ends_with(&[b'}', 0, 0, 0, 7]));
        assert!(std::str::from_utf8(&aad[..aad.len() - 4])
            .unwrap()
            .contains(r#""total":0,"chunk":0"#));
        assert_eq!(Header::parse(j.replace("DATA", "NOPE").as_bytes()), None);
        assert_eq!(Header::parse(j.replace("\"ts\":10", "\"ts\":\"10\"").as_bytes()), None);
    }
}
