//! Signed zone transfers, the pure part: what an AXFR of a signed zone carries so that a
//! conventional secondary (NSD, Knot without signing) can serve it with no keys.
//!
//! The node answers negatives itself with compact denial (RFC 9824), which signs an NSEC
//! per query and so needs the private key online; a secondary has none. A transferred
//! zone must therefore be self-contained: besides every RRset's RRSIG (kept by the view)
//! and the apex DNSKEY/CDS/CDNSKEY with the KSK's RRSIGs, the transfer carries an
//! ordinary RFC 4034 NSEC chain over the zone's names in canonical order (apex, in-zone
//! hosts, every name with TXT; empty non-terminals own no NSEC), each NSEC signed.
//!
//! The chain is rebuilt from a snapshot at each transfer (a sort), but its signatures
//! are not: [`NsecSigCache`] keeps each NSEC's RRSIG keyed by a keyed hash of (owner,
//! NSEC RDATA), so a transfer after one write signs only the NSECs that changed (the new
//! name's and its predecessor's; one for a delete) and re-signs those past half their
//! validity or made by a retired ZSK. The cache holds exactly the last chain (entries
//! not used by a transfer are dropped), 90 bytes per name in one sorted array, and exists
//! only once a signed transfer happened.

use std::cmp::Ordering;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use super::answer::{put_addrs, put_rr_head, TYPE_A, TYPE_AAAA, TYPE_NS, TYPE_SOA, TYPE_TXT};
use super::config::Compiled;
use super::dnssec::{
    bitmap, needs_resign, sig_expiry_and_tag, sign_rrset, window, KeySet, TYPE_CDNSKEY, TYPE_CDS,
    TYPE_DNSKEY, TYPE_NSEC, TYPE_RRSIG,
};
use super::signed::{sign_boxed, ApexSigs, ZoneSigner};
use super::view::ZoneView;
use super::xfr::{soa_rr, split_rrs};

/// Offset of the question name (the zone) in every transfer message.
const QNAME_OFF: u16 = 12;
/// Fixed part of RRSIG RDATA before the signer name.
const SIG_HEAD: usize = 18;
/// Both algorithms (ECDSA P-256, Ed25519) give 64-byte signatures.
const SIG_BYTES: usize = 64;
/// A cached RRSIG without its signer name (always the origin).
type CompactSig = [u8; SIG_HEAD + SIG_BYTES];

/// NSEC RRSIGs of the last signed transfer's chain.
#[derive(Default)]
pub struct NsecSigCache {
    hasher: RandomState,
    /// (keyed hash of owner and NSEC RDATA, signature), sorted by hash: 90 bytes a name,
    /// no table slack.
    sigs: Vec<(u64, CompactSig)>,
    /// Earliest expiration among the chain's signatures (`None`: empty chain).
    min_expiry: Option<u32>,
}

impl NsecSigCache {
    /// Signatures held.
    pub fn len(&self) -> usize {
        self.sigs.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.sigs.is_empty()
    }

    /// Heap bytes held.
    pub fn approx_bytes(&self) -> usize {
        self.sigs.capacity() * std::mem::size_of::<(u64, CompactSig)>()
    }

    fn get(&self, h: u64) -> Option<&CompactSig> {
        let i = self.sigs.binary_search_by_key(&h, |e| e.0).ok()?;
        self.sigs.get(i).map(|e| &e.1)
    }

    /// True when some chain signature is past half its validity at `now`: the zone
    /// should get a new serial so that secondaries fetch re-signed NSECs.
    pub fn stale(&self, now: u64, validity: u64) -> bool {
        self.min_expiry.is_some_and(|exp| {
            let remaining = exp.wrapping_sub(now as u32) as i32;
            i64::from(remaining) < (validity / 2) as i64
        })
    }
}

/// Canonical DNS name order (RFC 4034 §6.1) of two relative keys of the same zone:
/// labels compared right to left as lower-case octet strings, a parent before its
/// children.
pub(crate) fn canonical_cmp(a: &[u8], b: &[u8]) -> Ordering {
    fn starts(key: &[u8], out: &mut [u8; 128]) -> usize {
        let mut n = 0usize;
        let mut pos = 0usize;
        while let Some(&len) = key.get(pos) {
            if n == out.len() {
                break;
            }
            out[n] = pos as u8;
            n += 1;
            pos += 1 + len as usize;
        }
        n
    }
    fn label(key: &[u8], at: u8) -> &[u8] {
        let at = at as usize;
        let len = key.get(at).copied().unwrap_or(0) as usize;
        key.get(at + 1..at + 1 + len).unwrap_or_default()
    }
    let (mut sa, mut sb) = ([0u8; 128], [0u8; 128]);
    let (na, nb) = (starts(a, &mut sa), starts(b, &mut sb));
    for i in 0..na.min(nb) {
        match label(a, sa[na - 1 - i]).cmp(label(b, sb[nb - 1 - i])) {
            Ordering::Equal => continue,
            o => return o,
        }
    }
    na.cmp(&nb)
}

/// A name's (key, TXT answer RRs, RRSIG RDATA) as captured.
type NodeCopy = (Box<[u8]>, Box<[u8]>, Box<[u8]>);

/// The signed zone at one serial, captured under the lock that keeps writers out.
pub struct SignedCapture {
    serial: u32,
    soa_sig: Box<[u8]>,
    apex: Arc<ApexSigs>,
    keys: Arc<KeySet>,
    /// (key, TXT answer RRs, their RRSIG RDATA) of every name with TXT.
    nodes: Vec<NodeCopy>,
}

impl SignedCapture {
    /// The serial the capture describes.
    pub fn serial(&self) -> u32 {
        self.serial
    }
}

/// One name of the chain.
struct Entry {
    /// Index into the capture's nodes (the name has TXT).
    node: Option<u32>,
    /// Index into the configured hosts (the name has A/AAAA).
    host: Option<u16>,
    /// The NSEC's RRSIG without its signer name (`None`: signing failed). The NSEC
    /// RDATA itself is rebuilt while streaming (next owner + bitmap), so a transfer
    /// holds about 90 bytes per name beyond its copy of the zone.
    sig: Option<CompactSig>,
}

/// The relative key of a chain entry.
fn entry_key<'a>(cap: &'a SignedCapture, cfg: &'a Compiled, e: &Entry) -> &'a [u8] {
    match (e.node, e.host) {
        (Some(i), _) => &cap.nodes[i as usize].0,
        (None, Some(h)) => &cfg.hosts[h as usize].key,
        (None, None) => &[],
    }
}

/// The NSEC RDATA of `e` (owner `key`) pointing at `next`: next name in full, then the
/// bitmap of the types the name owns plus RRSIG and NSEC.
fn nsec_rdata(cfg: &Compiled, e: &Entry, key: &[u8], next: &[u8], out: &mut Vec<u8>) {
    let mut types = [0u16; 16];
    let mut nt = 0usize;
    let mut add = |t: u16| {
        types[nt] = t;
        nt += 1;
    };
    if key.is_empty() {
        if !cfg.apex.a.is_empty() {
            add(TYPE_A);
        }
        add(TYPE_NS);
        add(TYPE_SOA);
        if !cfg.apex.aaaa.is_empty() {
            add(TYPE_AAAA);
        }
        add(TYPE_DNSKEY);
        add(TYPE_CDS);
        add(TYPE_CDNSKEY);
    }
    if let Some(h) = e.host.map(|h| &cfg.hosts[h as usize]) {
        if !h.addrs.a.is_empty() {
            add(TYPE_A);
        }
        if !h.addrs.aaaa.is_empty() {
            add(TYPE_AAAA);
        }
    }
    if e.node.is_some() {
        add(TYPE_TXT);
    }
    add(TYPE_RRSIG);
    add(TYPE_NSEC);
    out.clear();
    out.extend_from_slice(next);
    out.extend_from_slice(&cfg.origin);
    let (bm, bl) = bitmap(&types[..nt]);
    out.extend_from_slice(&bm[..bl]);
}

/// A signed zone ready to stream: the capture plus its signed NSEC chain.
pub struct SignedZone {
    cap: SignedCapture,
    entries: Vec<Entry>,
    neg_ttl: u32,
    /// NSEC signatures computed for this transfer (the rest came from the cache).
    pub signed: usize,
    /// NSEC signatures reused from the cache.
    pub reused: usize,
}

impl ZoneView {
    /// Capture the signed zone at `serial` (call under the lock that keeps writers out,
    /// right after the serial was published). `None` when the zone is unsigned.
    pub fn signed_capture(&self, serial: u32, now: u64) -> Option<SignedCapture> {
        let sec = self.signer()?;
        let apex = sec.apex_now();
        let keys = sec.keys_now();
        let soa_sig = if apex.serial == serial {
            apex.soa.clone()
        } else {
            let rd = ZoneSigner::soa_rdata(&self.cfg, serial);
            let zsk = keys.active_zsk(now);
            let origin = &self.cfg.origin;
            sign_boxed(zsk, &self.cfg, origin, TYPE_SOA, &mut [&rd[..]], now, sec.validity())
        };
        let mut nodes: Vec<NodeCopy> = Vec::new();
        self.map.for_each(|e| {
            if e.count() > 0 {
                nodes.push((e.key().into(), e.rrs().into(), e.sig().into()));
            }
        });
        Some(SignedCapture { serial, soa_sig, apex, keys, nodes })
    }

    /// Build the NSEC chain of `cap` in canonical order, signing only the NSECs whose
    /// (owner, RDATA) the cache does not hold with a fresh signature by the active ZSK;
    /// the cache is left holding exactly this chain's signatures.
    pub fn sign_chain(&self, cap: SignedCapture, cache: &mut NsecSigCache, now: u64) -> SignedZone {
        let cfg = &self.cfg;
        let neg_ttl = cfg.ttl.min(cfg.minimum);
        let validity = self.signer().map(ZoneSigner::validity).unwrap_or(14 * 86_400);
        let mut host_seen = vec![false; cfg.hosts.len()];
        let mut apex_seen = false;
        let mut entries: Vec<Entry> = Vec::with_capacity(cap.nodes.len() + cfg.hosts.len() + 1);
        for (i, (key, _, _)) in cap.nodes.iter().enumerate() {
            let host = cfg.hosts.iter().position(|h| h.key == *key);
            if let Some(h) = host {
                host_seen[h] = true;
            }
            apex_seen |= key.is_empty();
            entries.push(Entry { node: Some(i as u32), host: host.map(|h| h as u16), sig: None });
        }
        for (h, seen) in host_seen.iter().enumerate() {
            let addrs = &cfg.hosts[h].addrs;
            let has_addrs = !addrs.a.is_empty() || !addrs.aaaa.is_empty();
            if !seen && has_addrs {
                entries.push(Entry { node: None, host: Some(h as u16), sig: None });
            }
        }
        if !apex_seen {
            entries.push(Entry { node: None, host: None, sig: None });
        }
        let key_of = |e: &Entry| entry_key(&cap, cfg, e);
        entries.sort_unstable_by(|a, b| canonical_cmp(key_of(a), key_of(b)));
        let zsk = cap.keys.active_zsk(now).clone();
        let w = window(now, validity);
        let origin = &cfg.origin[..];
        let mut fresh: Vec<(u64, CompactSig)> = Vec::with_capacity(entries.len());
        let (mut signed, mut reused) = (0usize, 0usize);
        let mut min_expiry: Option<u32> = None;
        let mut scratch = Vec::with_capacity(512);
        let mut rdata = Vec::with_capacity(300);
        let mut owner = Vec::with_capacity(256);
        let mut sig = Vec::with_capacity(SIG_HEAD + origin.len() + SIG_BYTES);
        let n = entries.len();
        let mut sigs: Vec<Option<CompactSig>> = Vec::with_capacity(n);
        for i in 0..n {
            let e = &entries[i];
            let key = key_of(e);
            let next = key_of(&entries[(i + 1) % n]);
            nsec_rdata(cfg, e, key, next, &mut rdata);
            let h = cache.hasher.hash_one((key, &rdata[..]));
            sig.clear();
            match cache.get(h) {
                Some(c) if !needs_resign(c, now, validity, zsk.tag) => {
                    sig.extend_from_slice(&c[..SIG_HEAD]);
                    sig.extend_from_slice(origin);
                    sig.extend_from_slice(&c[SIG_HEAD..]);
                    reused += 1;
                }
                _ => {
                    owner.clear();
                    owner.extend_from_slice(key);
                    owner.extend_from_slice(origin);
                    let r = sign_rrset(
                        &zsk,
                        origin,
                        &owner,
                        TYPE_NSEC,
                        neg_ttl,
                        w,
                        &mut [&rdata[..]],
                        &mut scratch,
                        &mut sig,
                    );
                    if let Err(e) = r {
                        tracing::error!(error = %e, "DNSSEC: signing an NSEC failed");
                        sig.clear();
                    }
                    signed += 1;
                }
            }
            let mut compact = None;
            if sig.len() == SIG_HEAD + origin.len() + SIG_BYTES {
                let mut c: CompactSig = [0; SIG_HEAD + SIG_BYTES];
                c[..SIG_HEAD].copy_from_slice(&sig[..SIG_HEAD]);
                c[SIG_HEAD..].copy_from_slice(&sig[SIG_HEAD + origin.len()..]);
                fresh.push((h, c));
                compact = Some(c);
                if let Some((exp, _)) = sig_expiry_and_tag(&sig) {
                    min_expiry = Some(match min_expiry {
                        Some(m) if (exp.wrapping_sub(m) as i32) > 0 => m,
                        _ => exp,
                    });
                }
            }
            sigs.push(compact);
        }
        for (e, s) in entries.iter_mut().zip(sigs) {
            e.sig = s;
        }
        fresh.sort_unstable_by_key(|e| e.0);
        cache.sigs = fresh;
        cache.min_expiry = min_expiry;
        SignedZone { cap, entries, neg_ttl, signed, reused }
    }
}

/// `key` + pointer to the zone, then an RR head and `rdata`.
fn rr(key: &[u8], rtype: u16, ttl: u32, rdata: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 12 + rdata.len());
    out.extend_from_slice(key);
    put_rr_head(&mut out, QNAME_OFF, rtype, ttl, rdata.len() as u16);
    out.extend_from_slice(rdata);
    out
}

/// The RRSIG RR over an RRset owned by `key` (nothing when the RRset is unsigned).
fn sig_rr(key: &[u8], ttl: u32, sig: &[u8], out: &mut Vec<Vec<u8>>) {
    if !sig.is_empty() {
        out.push(rr(key, TYPE_RRSIG, ttl, sig));
    }
}

impl SignedZone {
    /// The serial of this zone.
    pub fn serial(&self) -> u32 {
        self.cap.serial
    }

    /// Names in the NSEC chain.
    pub fn chain_len(&self) -> usize {
        self.entries.len()
    }

    /// Every RR of the AXFR, lazily, one name at a time: SOA, RRSIG SOA, the apex
    /// RRsets with their RRSIGs, then each name's RRsets, NSEC and RRSIGs in canonical
    /// order, SOA.
    pub fn rrs<'a>(&'a self, view: &'a ZoneView) -> impl Iterator<Item = Vec<u8>> + Send + 'a {
        let cfg = &view.cfg;
        let ttl = cfg.ttl;
        let serial = self.cap.serial;
        let apex = &self.cap.apex;
        let mut head = vec![soa_rr(view, serial)];
        sig_rr(&[], ttl, &self.cap.soa_sig, &mut head);
        for ns in &cfg.ns {
            let mut r = Vec::new();
            put_rr_head(&mut r, QNAME_OFF, TYPE_NS, ttl, 0);
            ns.put(&mut r, QNAME_OFF);
            let rdlen = (r.len() - 12) as u16;
            r[10..12].copy_from_slice(&rdlen.to_be_bytes());
            head.push(r);
        }
        sig_rr(&[], ttl, &apex.ns, &mut head);
        let addr_rrs = move |key: &[u8], a: &[[u8; 4]], aaaa: &[[u8; 16]], sigs: (&[u8], &[u8])| {
            let mut out = Vec::new();
            for x in a {
                let mut r = key.to_vec();
                put_addrs(&mut r, QNAME_OFF, ttl, std::slice::from_ref(x), TYPE_A);
                out.push(r);
            }
            if !a.is_empty() {
                sig_rr(key, ttl, sigs.0, &mut out);
            }
            for x in aaaa {
                let mut r = key.to_vec();
                put_addrs(&mut r, QNAME_OFF, ttl, std::slice::from_ref(x), TYPE_AAAA);
                out.push(r);
            }
            if !aaaa.is_empty() {
                sig_rr(key, ttl, sigs.1, &mut out);
            }
            out
        };
        head.extend(addr_rrs(&[], &cfg.apex.a, &cfg.apex.aaaa, (&apex.a, &apex.aaaa)));
        for k in &apex.dnskeys {
            head.push(rr(&[], TYPE_DNSKEY, ttl, k));
        }
        sig_rr(&[], ttl, &apex.dnskey_sig, &mut head);
        for c in &apex.cds {
            head.push(rr(&[], TYPE_CDS, ttl, c));
        }
        sig_rr(&[], ttl, &apex.cds_sig, &mut head);
        head.push(rr(&[], TYPE_CDNSKEY, ttl, &self.cap.keys.ksk.dnskey));
        sig_rr(&[], ttl, &apex.cdnskey_sig, &mut head);
        let n = self.entries.len();
        let body = (0..n).flat_map(move |i| {
            let mut out = Vec::new();
            let e = &self.entries[i];
            let key = entry_key(&self.cap, cfg, e);
            if let Some(h) = e.host {
                let host = &cfg.hosts[h as usize];
                let (sa, saaaa) =
                    apex.hosts.get(h as usize).map(|(a, b)| (&a[..], &b[..])).unwrap_or_default();
                out.extend(addr_rrs(key, &host.addrs.a, &host.addrs.aaaa, (sa, saaaa)));
            }
            if let Some(i) = e.node {
                let (_, rrs, sig) = &self.cap.nodes[i as usize];
                split_rrs(key, rrs, &mut out);
                sig_rr(key, ttl, sig, &mut out);
            }
            let next = entry_key(&self.cap, cfg, &self.entries[(i + 1) % n]);
            let mut rdata = Vec::with_capacity(next.len() + cfg.origin.len() + 34);
            nsec_rdata(cfg, e, key, next, &mut rdata);
            out.push(rr(key, TYPE_NSEC, self.neg_ttl, &rdata));
            if let Some(c) = &e.sig {
                let mut sig = Vec::with_capacity(c.len() + cfg.origin.len());
                sig.extend_from_slice(&c[..SIG_HEAD]);
                sig.extend_from_slice(&cfg.origin);
                sig.extend_from_slice(&c[SIG_HEAD..]);
                sig_rr(key, self.neg_ttl, &sig, &mut out);
            }
            out
        });
        head.into_iter().chain(body).chain(std::iter::once(soa_rr(view, serial)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::dnssec::ALG_ECDSAP256SHA256;
    use super::super::signed::DnssecSetup;
    use super::super::view::now_secs;
    use super::super::ZoneConfig;
    use super::*;

    fn view() -> ZoneView {
        let mut cfg =
            ZoneConfig::new("mesh.test", "ns1.mesh.test", "h.mesh.test", &["ns1.mesh.test"]);
        cfg.apex_addrs = vec!["127.0.0.1".parse().unwrap()];
        cfg.hosts = vec![super::super::HostAddrs {
            name: "ns1.mesh.test".into(),
            addrs: vec!["127.0.0.1".parse().unwrap()],
        }];
        let setup = DnssecSetup {
            keys: KeySet::generate(ALG_ECDSAP256SHA256, now_secs()).unwrap(),
            validity_secs: 14 * 86_400,
            zsk_lifetime_secs: 90 * 86_400,
            persist: None,
        };
        ZoneView::new_signed(&cfg, setup).unwrap()
    }

    #[test]
    fn canonical_order_is_rfc4034() {
        // RFC 4034 §6.1's example, relative to example.
        let names: Vec<&[u8]> = vec![
            b"",
            b"\x01a",
            b"\x08yljkjljk\x01a",
            b"\x01Z\x01a",
            b"\x04zABC\x01a",
            b"\x01z",
            b"\x01\x01\x01z",
            b"\x01*\x01z",
            b"\x01\x00\x01z",
        ];
        let lower: Vec<Vec<u8>> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
        let mut sorted = lower.clone();
        sorted.sort_by(|a, b| canonical_cmp(a, b));
        // \001.z sorts before *.z (0x01 < 0x2a), \000 would be first but ... compare raw.
        let want: Vec<&[u8]> = vec![
            b"",
            b"\x01a",
            b"\x08yljkjljk\x01a",
            b"\x01z\x01a",
            b"\x04zabc\x01a",
            b"\x01z",
            b"\x01\x00\x01z",
            b"\x01\x01\x01z",
            b"\x01*\x01z",
        ];
        assert_eq!(sorted, want.iter().map(|w| w.to_vec()).collect::<Vec<_>>());
    }

    #[test]
    fn chain_covers_every_name_and_one_write_signs_two_nsecs() {
        let v = view();
        let now = now_secs();
        for i in 0..50 {
            v.set_txt(&format!("n{i}.mesh.test"), &[b"x"]);
        }
        v.set_txt("slot-1.mb-1.mesh.test", &[b"y"]);
        let mut cache = NsecSigCache::default();
        let z = v.sign_chain(v.signed_capture(v.serial(), now).unwrap(), &mut cache, now);
        // apex + ns1 host + 51 names (mb-1 is an empty non-terminal: no NSEC).
        assert_eq!(z.chain_len(), 53);
        assert_eq!((z.signed, z.reused), (53, 0));
        assert_eq!(cache.len(), 53);
        // Every RR of the stream; the chain closes on the apex.
        let rrs: Vec<Vec<u8>> = z.rrs(&v).collect();
        let nsec: Vec<&Vec<u8>> = rrs
            .iter()
            .filter(|r| {
                let at = r.windows(2).position(|w| w == [0xC0, 0x0C]).unwrap();
                r[at + 2..at + 4] == TYPE_NSEC.to_be_bytes()
            })
            .collect();
        assert_eq!(nsec.len(), 53);
        // Same zone again: all reused.
        let z = v.sign_chain(v.signed_capture(v.serial(), now).unwrap(), &mut cache, now);
        assert_eq!((z.signed, z.reused), (0, 53));
        // One new name: its NSEC and its predecessor's.
        v.set_txt("n25a.mesh.test", &[b"x"]);
        let z = v.sign_chain(v.signed_capture(v.serial(), now).unwrap(), &mut cache, now);
        assert_eq!((z.signed, z.reused), (2, 52));
        // A changed value: the NSECs stay (only the TXT RRSIG changes, in the view).
        v.set_txt("n3.mesh.test", &[b"changed"]);
        let z = v.sign_chain(v.signed_capture(v.serial(), now).unwrap(), &mut cache, now);
        assert_eq!(z.signed, 0);
        // A delete: the predecessor's NSEC only.
        v.set_txt("n25a.mesh.test", &[]);
        let z = v.sign_chain(v.signed_capture(v.serial(), now).unwrap(), &mut cache, now);
        assert_eq!((z.signed, cache.len()), (1, 53));
        // Past half the validity everything is re-signed, and the cache says so first.
        let later = now + 8 * 86_400;
        assert!(!cache.stale(now, 14 * 86_400));
        assert!(cache.stale(later, 14 * 86_400));
        let z = v.sign_chain(v.signed_capture(v.serial(), later).unwrap(), &mut cache, later);
        assert_eq!(z.signed, 53);
        assert!(!cache.stale(later, 14 * 86_400));
    }
}
