//! DNSSEC building blocks for the hot path: zone keys (ECDSA P-256 / Ed25519 through
//! ring), RRSIG computation over canonical RRsets (RFC 4034 §3.1.8.1, §6), DNSKEY key
//! tags and DS digests, NSEC type bitmaps for compact denial of existence (RFC 9824),
//! and the ZSK pre-publish roll policy (RFC 6781 §4.1.1.1).
//!
//! Pure: time is always a parameter; the only outside input is randomness for key
//! generation and ECDSA nonces (ring's `SystemRandom`).

use std::sync::Arc;

use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING,
};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// ECDSA P-256 with SHA-256.
pub const ALG_ECDSAP256SHA256: u8 = 13;
/// Ed25519.
pub const ALG_ED25519: u8 = 15;
/// DNSKEY flags of a zone-signing key (Zone Key bit).
pub const FLAGS_ZSK: u16 = 256;
/// DNSKEY flags of a key-signing key (Zone Key + Secure Entry Point).
pub const FLAGS_KSK: u16 = 257;

pub(crate) const TYPE_RRSIG: u16 = 46;
pub(crate) const TYPE_NSEC: u16 = 47;
pub(crate) const TYPE_DNSKEY: u16 = 48;
pub(crate) const TYPE_CDS: u16 = 59;
pub(crate) const TYPE_CDNSKEY: u16 = 60;
/// The NXNAME meta-type of RFC 9824 §2: set in the NSEC bitmap of a name that does
/// not exist.
pub(crate) const TYPE_NXNAME: u16 = 128;

/// Errors of key handling and signing.
#[derive(Debug, thiserror::Error)]
pub enum DnssecError {
    /// The algorithm number is not one this node signs with.
    #[error("unsupported DNSSEC algorithm {0} (13 = ECDSA P-256, 15 = Ed25519)")]
    Algorithm(u8),
    /// ring refused to generate, load or use a key.
    #[error("key error: {0}")]
    Key(&'static str),
    /// The stored key file does not parse.
    #[error("stored DNSSEC keys are malformed: {0}")]
    Format(String),
}

enum Signer {
    Ecdsa(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// One zone key: its secret (PKCS#8), its DNSKEY RDATA and key tag, and when it is
/// published and starts signing.
pub struct ZoneKey {
    /// DNSSEC algorithm number.
    pub alg: u8,
    /// DNSKEY flags (256 ZSK, 257 KSK).
    pub flags: u16,
    /// Unix time the key entered the DNSKEY RRset.
    pub created: u64,
    /// Unix time from which it signs (ZSKs; a KSK signs from `created`).
    pub activate: u64,
    pkcs8: Zeroizing<Vec<u8>>,
    signer: Signer,
    /// DNSKEY RDATA.
    pub dnskey: Box<[u8]>,
    /// RFC 4034 Appendix B key tag.
    pub tag: u16,
}

impl std::fmt::Debug for ZoneKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZoneKey")
            .field("alg", &self.alg)
            .field("flags", &self.flags)
            .field("tag", &self.tag)
            .field("created", &self.created)
            .field("activate", &self.activate)
            .finish_non_exhaustive()
    }
}

/// RFC 4034 Appendix B.
pub fn key_tag(dnskey_rdata: &[u8]) -> u16 {
    let mut ac: u32 = 0;
    for (i, b) in dnskey_rdata.iter().enumerate() {
        ac += if i & 1 == 1 { u32::from(*b) } else { u32::from(*b) << 8 };
    }
    ac += (ac >> 16) & 0xFFFF;
    (ac & 0xFFFF) as u16
}

impl ZoneKey {
    /// A fresh key.
    pub fn generate(alg: u8, flags: u16, created: u64, activate: u64) -> Result<Self, DnssecError> {
        let rng = SystemRandom::new();
        let doc = match alg {
            ALG_ECDSAP256SHA256 => {
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .map_err(|_| DnssecError::Key("ECDSA key generation failed"))?
            }
            ALG_ED25519 => Ed25519KeyPair::generate_pkcs8(&rng)
                .map_err(|_| DnssecError::Key("Ed25519 key generation failed"))?,
            other => return Err(DnssecError::Algorithm(other)),
        };
        Self::from_pkcs8(alg, flags, created, activate, doc.as_ref())
    }

    /// A key from its PKCS#8 document.
    pub fn from_pkcs8(
        alg: u8,
        flags: u16,
        created: u64,
        activate: u64,
        pkcs8: &[u8],
    ) -> Result<Self, DnssecError> {
        let (signer, public) = match alg {
            ALG_ECDSAP256SHA256 => {
                let kp = EcdsaKeyPair::from_pkcs8(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    pkcs8,
                    &SystemRandom::new(),
                )
                .map_err(|_| DnssecError::Key("bad ECDSA PKCS#8"))?;
                // ring gives the uncompressed point 0x04 ‖ X ‖ Y; DNSKEY holds X ‖ Y.
                let pk = kp.public_key().as_ref().get(1..).unwrap_or_default().to_vec();
                (Signer::Ecdsa(kp), pk)
            }
            ALG_ED25519 => {
                let kp = Ed25519KeyPair::from_pkcs8(pkcs8)
                    .map_err(|_| DnssecError::Key("bad Ed25519 PKCS#8"))?;
                let pk = kp.public_key().as_ref().to_vec();
                (Signer::Ed(kp), pk)
            }
            other => return Err(DnssecError::Algorithm(other)),
        };
        let mut dnskey = Vec::with_capacity(4 + public.len());
        dnskey.extend_from_slice(&flags.to_be_bytes());
        dnskey.push(3);
        dnskey.push(alg);
        dnskey.extend_from_slice(&public);
        let tag = key_tag(&dnskey);
        Ok(ZoneKey {
            alg,
            flags,
            created,
            activate,
            pkcs8: Zeroizing::new(pkcs8.to_vec()),
            signer,
            dnskey: dnskey.into(),
            tag,
        })
    }

    /// Sign `msg`; both algorithms give 64 bytes.
    fn sign(&self, msg: &[u8]) -> Result<[u8; 64], DnssecError> {
        let mut out = [0u8; 64];
        match &self.signer {
            Signer::Ecdsa(kp) => {
                let sig = kp
                    .sign(&SystemRandom::new(), msg)
                    .map_err(|_| DnssecError::Key("ECDSA signing failed"))?;
                out.copy_from_slice(sig.as_ref().get(..64).ok_or(DnssecError::Key("sig"))?);
            }
            Signer::Ed(kp) => out.copy_from_slice(kp.sign(msg).as_ref()),
        }
        Ok(out)
    }

    /// DS RDATA (digest type 2, SHA-256) for this key at `owner` (canonical wire name).
    pub fn ds_rdata(&self, owner: &[u8]) -> Vec<u8> {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(owner);
        ctx.update(&self.dnskey);
        let mut out = Vec::with_capacity(36);
        out.extend_from_slice(&self.tag.to_be_bytes());
        out.push(self.alg);
        out.push(2);
        out.extend_from_slice(ctx.finish().as_ref());
        out
    }
}

/// The zone's keys: one KSK and one or more ZSKs (ordered by activation).
#[derive(Debug, Clone)]
pub struct KeySet {
    /// The key-signing key (signs DNSKEY, CDS, CDNSKEY; its DS goes to the parent).
    pub ksk: Arc<ZoneKey>,
    /// Zone-signing keys, oldest activation first.
    pub zsks: Vec<Arc<ZoneKey>>,
}

#[derive(Serialize, Deserialize)]
struct StoredKey {
    alg: u8,
    flags: u16,
    created: u64,
    activate: u64,
    pkcs8: String,
}

#[derive(Serialize, Deserialize)]
struct StoredKeys {
    v: u32,
    keys: Vec<StoredKey>,
}

/// When ZSKs roll.
#[derive(Debug, Clone, Copy)]
pub struct RollPolicy {
    /// Seconds a ZSK signs before its successor takes over.
    pub lifetime: u64,
    /// Seconds a successor is published before it signs, and an old key stays published
    /// after the last signature made with it was replaced (≥ the DNSKEY/RRSIG TTL).
    pub prepublish: u64,
}

impl RollPolicy {
    /// Pre-publish time for a zone TTL: two TTLs plus an hour, at most a third of the
    /// lifetime (short lifetimes are for tests).
    pub fn new(lifetime: u64, ttl: u32) -> Self {
        let prepublish = (2 * u64::from(ttl) + 3600).min(lifetime / 3).max(1);
        RollPolicy { lifetime: lifetime.max(3), prepublish }
    }
}

impl KeySet {
    /// A fresh KSK and ZSK, both active at `now`.
    pub fn generate(alg: u8, now: u64) -> Result<Self, DnssecError> {
        Ok(KeySet {
            ksk: Arc::new(ZoneKey::generate(alg, FLAGS_KSK, now, now)?),
            zsks: vec![Arc::new(ZoneKey::generate(alg, FLAGS_ZSK, now, now)?)],
        })
    }

    /// The algorithm of the KSK (all keys share it).
    pub fn alg(&self) -> u8 {
        self.ksk.alg
    }

    /// The ZSK that signs at `now`: the latest one already activated.
    pub fn active_zsk(&self, now: u64) -> &Arc<ZoneKey> {
        self.zsks.iter().rev().find(|k| k.activate <= now).unwrap_or(&self.zsks[0])
    }

    /// Every published key (the DNSKEY RRset).
    pub fn published(&self) -> impl Iterator<Item = &Arc<ZoneKey>> {
        std::iter::once(&self.ksk).chain(self.zsks.iter())
    }

    /// Serialise (secrets included: seal before storing).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let keys = self
            .published()
            .map(|k| StoredKey {
                alg: k.alg,
                flags: k.flags,
                created: k.created,
                activate: k.activate,
                pkcs8: hex::encode(&*k.pkcs8),
            })
            .collect();
        Zeroizing::new(serde_json::to_vec(&StoredKeys { v: 1, keys }).unwrap_or_default())
    }

    /// Parse what [`KeySet::to_bytes`] wrote.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DnssecError> {
        let stored: StoredKeys =
            serde_json::from_slice(bytes).map_err(|e| DnssecError::Format(e.to_string()))?;
        let mut ksk = None;
        let mut zsks = Vec::new();
        for k in stored.keys {
            let der = Zeroizing::new(
                hex::decode(&k.pkcs8).map_err(|e| DnssecError::Format(e.to_string()))?,
            );
            let key = Arc::new(ZoneKey::from_pkcs8(k.alg, k.flags, k.created, k.activate, &der)?);
            if k.flags == FLAGS_KSK {
                ksk = Some(key);
            } else {
                zsks.push(key);
            }
        }
        zsks.sort_by_key(|k| k.activate);
        let ksk = ksk.ok_or_else(|| DnssecError::Format("no KSK".into()))?;
        if zsks.is_empty() {
            return Err(DnssecError::Format("no ZSK".into()));
        }
        Ok(KeySet { ksk, zsks })
    }

    /// Apply the pre-publish ZSK roll at `now`. `resigned` is (key tag, time) of the
    /// last completed re-signing pass of the whole zone. Returns whether the key set
    /// (the DNSKEY RRset) changed:
    /// - a successor is generated `prepublish` before the active key's lifetime ends,
    ///   to activate when it ends;
    /// - a retired key is dropped once the zone was fully re-signed with the active key
    ///   at least `prepublish` ago (no cache still holds a signature made with it).
    pub fn roll(
        &mut self,
        now: u64,
        policy: &RollPolicy,
        resigned: Option<(u16, u64)>,
    ) -> Result<bool, DnssecError> {
        let mut changed = false;
        let active = self.active_zsk(now).clone();
        let has_successor = self.zsks.iter().any(|k| k.activate > now);
        if !has_successor && now + policy.prepublish >= active.activate + policy.lifetime {
            let activate = (active.activate + policy.lifetime).max(now + policy.prepublish);
            self.zsks.push(Arc::new(ZoneKey::generate(self.alg(), FLAGS_ZSK, now, activate)?));
            changed = true;
        }
        let settled = matches!(resigned, Some((tag, at))
            if tag == active.tag && now >= at + policy.prepublish);
        if settled && self.zsks.iter().any(|k| k.activate < active.activate) {
            self.zsks.retain(|k| k.activate >= active.activate);
            changed = true;
        }
        Ok(changed)
    }
}

/// Number of labels of a wire name (root excluded).
pub(crate) fn label_count(wire: &[u8]) -> u8 {
    let mut n = 0u8;
    let mut pos = 0usize;
    while let Some(&len) = wire.get(pos) {
        if len == 0 {
            break;
        }
        n = n.saturating_add(1);
        pos += 1 + len as usize;
    }
    n
}

/// Validity window of a signature made at `now`: inception an hour back (clock skew),
/// expiration `validity` seconds ahead. Serial-number arithmetic (RFC 4034 §3.1.5)
/// makes the u32 truncation harmless.
pub(crate) fn window(now: u64, validity: u64) -> (u32, u32) {
    (now.saturating_sub(3600) as u32, now.saturating_add(validity) as u32)
}

/// Append the RRSIG RDATA for an RRset to `out`. `owner` is the canonical
/// (lower-case, uncompressed) owner, `signer` the zone origin in wire form, `rdatas`
/// the RRset's RDATAs (sorted and de-duplicated here). `scratch` holds the signed data
/// while signing and is left as it was (pass the response buffer on the query path:
/// no allocation).
#[allow(clippy::too_many_arguments)]
pub(crate) fn sign_rrset(
    key: &ZoneKey,
    signer: &[u8],
    owner: &[u8],
    rtype: u16,
    ttl: u32,
    (inception, expiration): (u32, u32),
    rdatas: &mut [&[u8]],
    scratch: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Result<(), DnssecError> {
    let head_at = out.len();
    out.extend_from_slice(&rtype.to_be_bytes());
    out.push(key.alg);
    out.push(label_count(owner));
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(&expiration.to_be_bytes());
    out.extend_from_slice(&inception.to_be_bytes());
    out.extend_from_slice(&key.tag.to_be_bytes());
    out.extend_from_slice(signer);
    rdatas.sort_unstable();
    let base = scratch.len();
    scratch.extend_from_slice(&out[head_at..]);
    let mut prev: Option<&[u8]> = None;
    for rd in rdatas.iter() {
        if prev == Some(*rd) {
            continue;
        }
        prev = Some(rd);
        scratch.extend_from_slice(owner);
        scratch.extend_from_slice(&rtype.to_be_bytes());
        scratch.extend_from_slice(&1u16.to_be_bytes());
        scratch.extend_from_slice(&ttl.to_be_bytes());
        scratch.extend_from_slice(&(rd.len() as u16).to_be_bytes());
        scratch.extend_from_slice(rd);
    }
    let sig = key.sign(&scratch[base..]);
    scratch.truncate(base);
    out.extend_from_slice(&sig?);
    Ok(())
}

/// An NSEC type bitmap (RFC 4034 §4.1.2) for `types` (each < 256): window 0 only.
/// Returns the bytes and their length.
pub(crate) fn bitmap(types: &[u16]) -> ([u8; 34], usize) {
    let mut out = [0u8; 34];
    let mut max = 0usize;
    for &t in types {
        if let Some(b) = out.get_mut(2 + usize::from(t) / 8) {
            *b |= 0x80 >> (t % 8);
            max = max.max(usize::from(t) / 8 + 1);
        }
    }
    if max == 0 {
        return (out, 0);
    }
    out[1] = max as u8;
    (out, 2 + max)
}

/// Expiration (RRSIG offset 8) and key tag (offset 16) of an RRSIG RDATA.
pub(crate) fn sig_expiry_and_tag(rdata: &[u8]) -> Option<(u32, u16)> {
    let exp = u32::from_be_bytes(rdata.get(8..12)?.try_into().ok()?);
    let tag = u16::from_be_bytes(rdata.get(16..18)?.try_into().ok()?);
    Some((exp, tag))
}

/// True when a signature should be remade at `now`: made by another key than
/// `active_tag`, or past half of its validity.
pub(crate) fn needs_resign(rdata: &[u8], now: u64, validity: u64, active_tag: u16) -> bool {
    match sig_expiry_and_tag(rdata) {
        Some((exp, tag)) => {
            // Serial arithmetic: remaining = exp - now (mod 2^32), as a signed offset.
            let remaining = exp.wrapping_sub(now as u32) as i32;
            tag != active_tag || i64::from(remaining) < (validity / 2) as i64
        }
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "net")]
    #[test]
    fn key_tag_rfc4034_example() {
        // Verified against hickory's DNSKEY key tag for the same RDATA.
        for alg in [ALG_ECDSAP256SHA256, ALG_ED25519] {
            let k = ZoneKey::generate(alg, FLAGS_KSK, 0, 0).unwrap();
            let pk = hickory_proto::dnssec::PublicKeyBuf::new(
                k.dnskey[4..].to_vec(),
                if alg == 13 {
                    hickory_proto::dnssec::Algorithm::ECDSAP256SHA256
                } else {
                    hickory_proto::dnssec::Algorithm::ED25519
                },
            );
            let dk = hickory_proto::dnssec::rdata::DNSKEY::new(true, true, false, pk);
            assert_eq!(dk.calculate_key_tag().unwrap(), k.tag);
        }
    }

    #[test]
    fn keyset_roundtrip_and_roll() {
        let mut ks = KeySet::generate(ALG_ECDSAP256SHA256, 1000).unwrap();
        let back = KeySet::from_bytes(&ks.to_bytes()).unwrap();
        assert_eq!(back.ksk.dnskey, ks.ksk.dnskey);
        assert_eq!(back.zsks[0].dnskey, ks.zsks[0].dnskey);
        let p = RollPolicy { lifetime: 90, prepublish: 30 };
        assert!(!ks.roll(1010, &p, None).unwrap());
        assert!(ks.roll(1060, &p, None).unwrap(), "successor pre-published");
        assert_eq!(ks.zsks.len(), 2);
        assert_eq!(ks.active_zsk(1089).tag, ks.zsks[0].tag);
        assert_eq!(ks.active_zsk(1090).tag, ks.zsks[1].tag);
        let new_tag = ks.zsks[1].tag;
        assert!(!ks.roll(1095, &p, Some((new_tag, 1092))).unwrap(), "old kept for caches");
        assert!(ks.roll(1125, &p, Some((new_tag, 1092))).unwrap());
        assert_eq!(ks.zsks.len(), 1);
        assert_eq!(ks.zsks[0].tag, new_tag);
    }

    #[test]
    fn nsec_bitmap() {
        let (out, len) = bitmap(&[TYPE_RRSIG, TYPE_NSEC, TYPE_NXNAME]);
        assert_eq!(len, 2 + 17);
        assert_eq!(&out[..2], &[0, 17]);
        assert_eq!(out[2 + 5], 0x03);
        assert_eq!(out[2 + 16], 0x80);
    }
}
