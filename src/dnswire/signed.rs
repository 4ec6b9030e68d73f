//! The signed zone: precomputed RRSIGs next to the precomputed answer bytes, compact
//! denial of existence (RFC 9824) for negative answers, and the background pass that
//! re-signs before expiry and rolls the ZSK.
//!
//! - Positive answers with DO=1 are the name's precomputed TXT RRs plus its precomputed
//!   RRSIG: a lookup, no signing. Apex RRsets (SOA, NS, A/AAAA, DNSKEY, CDS, CDNSKEY) and
//!   the in-zone hosts' A/AAAA are signed when the keys or the serial change.
//! - Negative answers with DO=1 are NOERROR with the SOA and one NSEC owned by the query
//!   name, next name `\000.<qname>`, bitmap = the types present (plus NXNAME when the
//!   name does not exist), each with its RRSIG. The NSEC is signed on the query path
//!   (one signature per negative DO=1 answer; no allocation).
//! - DO=0 answers are exactly the unsigned node's, except that DNSKEY/CDS/CDNSKEY exist.

use std::cell::RefCell;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use super::answer::{
    patch_rdlen, put_addrs, put_ns, put_ns_glue, put_rr_head, HEADER, TYPE_A, TYPE_AAAA, TYPE_ANY,
    TYPE_NS, TYPE_SOA, TYPE_TXT,
};
use super::config::{Compiled, NameTpl};
use super::dnssec::{
    bitmap, needs_resign, sign_rrset, window, KeySet, RollPolicy, ZoneKey, TYPE_CDNSKEY, TYPE_CDS,
    TYPE_DNSKEY, TYPE_NSEC, TYPE_NXNAME, TYPE_RRSIG,
};
use super::view::{now_secs, ZoneView};

/// Persists the key set (sealed) after a roll; called from the background pass.
pub type PersistKeys = Arc<dyn Fn(&KeySet) -> std::io::Result<()> + Send + Sync>;

/// What a signed view needs: keys and the policy knobs of `[dnssec]`.
#[derive(Clone)]
pub struct DnssecSetup {
    /// The zone's keys (loaded from or created in the data dir).
    pub keys: KeySet,
    /// Validity of every signature, seconds (`signature_validity_days`).
    pub validity_secs: u64,
    /// ZSK lifetime, seconds (`zsk_lifetime_days`).
    pub zsk_lifetime_secs: u64,
    /// Where rolled key sets go.
    pub persist: Option<PersistKeys>,
}

impl std::fmt::Debug for DnssecSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnssecSetup")
            .field("keys", &self.keys)
            .field("validity_secs", &self.validity_secs)
            .field("zsk_lifetime_secs", &self.zsk_lifetime_secs)
            .finish_non_exhaustive()
    }
}

/// RRSIG RDATA (empty = unsigned).
type Sig = Box<[u8]>;

/// Signatures of the apex RRsets and host addresses, replaced as a whole.
#[derive(Clone, Default)]
pub(crate) struct ApexSigs {
    /// The serial the SOA signature covers (answers use it, not the live counter).
    pub(crate) serial: u32,
    pub(crate) soa: Box<[u8]>,
    pub(crate) ns: Box<[u8]>,
    pub(crate) a: Box<[u8]>,
    pub(crate) aaaa: Box<[u8]>,
    pub(crate) dnskeys: Vec<Box<[u8]>>,
    pub(crate) dnskey_sig: Box<[u8]>,
    pub(crate) cds: Vec<Box<[u8]>>,
    pub(crate) cds_sig: Box<[u8]>,
    pub(crate) cdnskey_sig: Box<[u8]>,
    /// (A, AAAA) signatures per `Compiled::hosts` entry.
    pub(crate) hosts: Vec<(Sig, Sig)>,
}

/// The signing state of a view.
pub(crate) struct ZoneSigner {
    keys: ArcSwap<KeySet>,
    apex: ArcSwap<ApexSigs>,
    apex_lock: Mutex<()>,
    validity: u64,
    policy: RollPolicy,
    /// (key tag, finish time) of the last complete re-signing pass.
    resigned: Mutex<Option<(u16, u64)>>,
    persist: Option<PersistKeys>,
    /// Recently signed compact-denial NSECs, direct-mapped by a hash of the NSEC RDATA
    /// (which fixes the owner and the bitmap): a name polled while absent (a mailbox
    /// slot, say) costs one signature per `NSEC_REUSE` instead of one per query.
    nsec_cache: Box<[Mutex<Option<CachedNsec>>]>,
}

/// Slots of the NSEC signature cache (at most ~300 bytes each when full).
const NSEC_SLOTS: usize = 8192;
/// How long a cached NSEC signature is served (its validity is far longer).
const NSEC_REUSE: u64 = 3600;

struct CachedNsec {
    rdata: Box<[u8]>,
    sig: Box<[u8]>,
    tag: u16,
    until: u64,
}

thread_local! {
    /// Signed-data buffer for query-path signatures (reused: no allocation per query).
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(1024));
}

/// A configured name in full canonical wire form.
pub(crate) fn full_name(tpl: &NameTpl, origin: &[u8]) -> Vec<u8> {
    let mut v = tpl.bytes.to_vec();
    if tpl.in_zone {
        v.extend_from_slice(origin);
    }
    v
}

/// Sign one RRset into a boxed RRSIG RDATA; a failure is logged and gives an empty
/// signature (that RRset is then served unsigned and will not validate).
pub(crate) fn sign_boxed(
    key: &ZoneKey,
    cfg: &Compiled,
    owner: &[u8],
    rtype: u16,
    rdatas: &mut [&[u8]],
    now: u64,
    validity: u64,
) -> Box<[u8]> {
    if rdatas.is_empty() {
        return Box::default();
    }
    let mut out = Vec::with_capacity(100 + cfg.origin.len());
    let mut scratch = Vec::new();
    let w = window(now, validity);
    match sign_rrset(key, &cfg.origin, owner, rtype, cfg.ttl, w, rdatas, &mut scratch, &mut out) {
        Ok(()) => out.into_boxed_slice(),
        Err(e) => {
            tracing::error!(error = %e, "DNSSEC signing failed");
            Box::default()
        }
    }
}

/// The RDATAs of answer RRs built by the view (12-byte RR head, then RDATA).
fn rr_rdatas(rrs: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while let Some(len) = rrs.get(pos + 10..pos + 12) {
        let rdlen = u16::from_be_bytes([len[0], len[1]]) as usize;
        let Some(rd) = rrs.get(pos + 12..pos + 12 + rdlen) else { break };
        out.push(rd);
        pos += 12 + rdlen;
    }
    out
}

impl ZoneSigner {
    pub(crate) fn new(cfg: &Compiled, setup: DnssecSetup, serial: u32, now: u64) -> Self {
        let policy = RollPolicy::new(setup.zsk_lifetime_secs, cfg.ttl);
        let signer = ZoneSigner {
            keys: ArcSwap::from_pointee(setup.keys),
            apex: ArcSwap::from_pointee(ApexSigs::default()),
            apex_lock: Mutex::new(()),
            validity: setup.validity_secs.max(3600),
            policy,
            resigned: Mutex::new(None),
            persist: setup.persist,
            nsec_cache: (0..NSEC_SLOTS).map(|_| Mutex::new(None)).collect(),
        };
        let apex = signer.build_apex(cfg, serial, now);
        signer.apex.store(Arc::new(apex));
        signer
    }

    /// Seconds between background passes: often enough for the roll's timings.
    pub(crate) fn pass_interval(&self) -> std::time::Duration {
        let ms = (self.policy.prepublish * 1000 / 4).clamp(200, 300_000);
        std::time::Duration::from_millis(ms)
    }

    pub(crate) fn soa_rdata(cfg: &Compiled, serial: u32) -> Vec<u8> {
        let mut rd = full_name(&cfg.mname, &cfg.origin);
        rd.extend_from_slice(&full_name(&cfg.rname, &cfg.origin));
        for v in [serial, cfg.refresh, cfg.retry, cfg.expire, cfg.minimum] {
            rd.extend_from_slice(&v.to_be_bytes());
        }
        rd
    }

    fn build_apex(&self, cfg: &Compiled, serial: u32, now: u64) -> ApexSigs {
        let keys = self.keys.load();
        let zsk = keys.active_zsk(now);
        let ksk = &keys.ksk;
        let v = self.validity;
        let origin = &cfg.origin[..];
        let soa = Self::soa_rdata(cfg, serial);
        let ns: Vec<Vec<u8>> = cfg.ns.iter().map(|n| full_name(n, origin)).collect();
        let mut ns_refs: Vec<&[u8]> = ns.iter().map(Vec::as_slice).collect();
        let mut a: Vec<&[u8]> = cfg.apex.a.iter().map(|x| &x[..]).collect();
        let mut aaaa: Vec<&[u8]> = cfg.apex.aaaa.iter().map(|x| &x[..]).collect();
        let dnskeys: Vec<Box<[u8]>> = keys.published().map(|k| k.dnskey.clone()).collect();
        let mut dk_refs: Vec<&[u8]> = dnskeys.iter().map(|d| &d[..]).collect();
        let cds: Vec<Box<[u8]>> = vec![ksk.ds_rdata(origin).into()];
        let mut cds_refs: Vec<&[u8]> = cds.iter().map(|d| &d[..]).collect();
        let mut cdnskey_refs: Vec<&[u8]> = vec![&ksk.dnskey[..]];
        let hosts = cfg
            .hosts
            .iter()
            .map(|h| {
                let mut owner = h.key.to_vec();
                owner.extend_from_slice(origin);
                let mut a: Vec<&[u8]> = h.addrs.a.iter().map(|x| &x[..]).collect();
                let mut aaaa: Vec<&[u8]> = h.addrs.aaaa.iter().map(|x| &x[..]).collect();
                (
                    sign_boxed(zsk, cfg, &owner, TYPE_A, &mut a, now, v),
                    sign_boxed(zsk, cfg, &owner, TYPE_AAAA, &mut aaaa, now, v),
                )
            })
            .collect();
        ApexSigs {
            serial,
            soa: sign_boxed(zsk, cfg, origin, TYPE_SOA, &mut [&soa[..]], now, v),
            ns: sign_boxed(zsk, cfg, origin, TYPE_NS, &mut ns_refs, now, v),
            a: sign_boxed(zsk, cfg, origin, TYPE_A, &mut a, now, v),
            aaaa: sign_boxed(zsk, cfg, origin, TYPE_AAAA, &mut aaaa, now, v),
            dnskey_sig: sign_boxed(ksk, cfg, origin, TYPE_DNSKEY, &mut dk_refs, now, v),
            cds_sig: sign_boxed(ksk, cfg, origin, TYPE_CDS, &mut cds_refs, now, v),
            cdnskey_sig: sign_boxed(ksk, cfg, origin, TYPE_CDNSKEY, &mut cdnskey_refs, now, v),
            dnskeys,
            cds,
            hosts,
        }
    }
}

impl ZoneSigner {
    /// The key set now.
    pub(crate) fn keys_now(&self) -> Arc<KeySet> {
        self.keys.load_full()
    }

    /// The apex signatures now.
    pub(crate) fn apex_now(&self) -> Arc<ApexSigs> {
        self.apex.load_full()
    }

    /// Validity of every signature, seconds.
    pub(crate) fn validity(&self) -> u64 {
        self.validity
    }
}

impl ZoneView {
    pub(crate) fn signer(&self) -> Option<&ZoneSigner> {
        self.sec.as_ref()
    }

    /// True when the zone is signed (`[dnssec] enabled`).
    pub fn is_signed(&self) -> bool {
        self.sec.is_some()
    }

    /// The RRSIG RDATA for a name's TXT answer RRs (empty when unsigned).
    pub(crate) fn sign_txt(&self, key: &[u8], rrs: &[u8], now: u64) -> Box<[u8]> {
        let Some(sec) = self.signer() else {
            return Box::default();
        };
        let keys = sec.keys.load();
        let mut owner = key.to_vec();
        owner.extend_from_slice(&self.cfg.origin);
        let mut rdatas = rr_rdatas(rrs);
        let zsk = keys.active_zsk(now);
        sign_boxed(zsk, &self.cfg, &owner, TYPE_TXT, &mut rdatas, now, sec.validity)
    }

    /// Re-sign the SOA when the serial moved past the signed one.
    pub(crate) fn resign_soa(&self, now: u64) {
        let Some(sec) = self.signer() else { return };
        let _g = sec.apex_lock.lock().unwrap_or_else(|p| p.into_inner());
        let cur = sec.apex.load();
        let serial = self.serial();
        if cur.serial == serial {
            return;
        }
        let keys = sec.keys.load();
        let rd = ZoneSigner::soa_rdata(&self.cfg, serial);
        let zsk = keys.active_zsk(now);
        let mut next = ApexSigs::clone(&cur);
        next.soa = sign_boxed(
            zsk,
            &self.cfg,
            &self.cfg.origin,
            TYPE_SOA,
            &mut [&rd[..]],
            now,
            sec.validity,
        );
        next.serial = serial;
        sec.apex.store(Arc::new(next));
    }

    /// Interval between [`ZoneView::dnssec_pass`] calls; `None` when unsigned.
    pub fn dnssec_pass_interval(&self) -> Option<std::time::Duration> {
        self.signer().map(ZoneSigner::pass_interval)
    }

    /// The background pass at `now`: roll the ZSK when due (persisting the new key
    /// set), re-sign the apex when its keys changed or its signatures are past half
    /// their validity, and re-sign every TXT RRset whose signature is stale or made by
    /// a key that no longer signs. Returns the number of RRsets re-signed.
    pub fn dnssec_pass(&self, now: u64) -> usize {
        let Some(sec) = self.signer() else { return 0 };
        let mut ks = KeySet::clone(&sec.keys.load());
        let resigned = *sec.resigned.lock().unwrap_or_else(|p| p.into_inner());
        let changed = match ks.roll(now, &sec.policy, resigned) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "DNSSEC key roll failed");
                false
            }
        };
        if changed {
            if let Some(p) = &sec.persist {
                if let Err(e) = p(&ks) {
                    // Keep serving with the old set rather than publish an unsaved key.
                    tracing::error!(error = %e, "cannot persist rolled DNSSEC keys");
                    return 0;
                }
            }
            let tags: Vec<u16> = ks.zsks.iter().map(|k| k.tag).collect();
            tracing::info!(?tags, "DNSSEC ZSK set changed");
            sec.keys.store(Arc::new(ks));
        }
        let keys = sec.keys.load_full();
        let active = keys.active_zsk(now).tag;
        let mut count = 0usize;
        {
            let _g = sec.apex_lock.lock().unwrap_or_else(|p| p.into_inner());
            let cur = sec.apex.load();
            if changed
                // NS is signed only here (the SOA also on every serial change), so its
                // signature dates the whole apex set.
                || needs_resign(&cur.ns, now, sec.validity, active)
                || needs_resign(&cur.dnskey_sig, now, sec.validity, keys.ksk.tag)
            {
                sec.apex.store(Arc::new(sec.build_apex(&self.cfg, self.serial(), now)));
                count += 1;
            }
        }
        let mut stale: Vec<Box<[u8]>> = Vec::new();
        self.map.for_each(|e| {
            if e.count() > 0 && needs_resign(e.sig(), now, sec.validity, active) {
                stale.push(e.key().into());
            }
        });
        for key in stale {
            let _w = self.write_lock();
            let rrs: Box<[u8]> =
                match self.map.with(&key, |n| n.map(|n| (n.count(), n.rrs().into()))) {
                    Some((c, rrs)) if c > 0 => rrs,
                    _ => continue,
                };
            let sig = self.sign_txt(&key, &rrs, now);
            let replaced = self.map.with_mut(&key, |n| {
                let old = n.sig().len();
                n.set_sig(&sig);
                old
            });
            if let Some(old) = replaced {
                self.adjust_bytes(sig.len(), old);
                count += 1;
            }
        }
        // Remember when the zone was first fully signed by this key (not every pass:
        // the retired key may go only once that moment is `prepublish` old).
        let mut done = sec.resigned.lock().unwrap_or_else(|p| p.into_inner());
        if done.is_none_or(|(tag, _)| tag != active) {
            *done = Some((active, now));
        }
        count
    }

    /// DS records for the KSK, as presentation lines (`zone. IN DS …`).
    pub fn ds_lines(&self) -> Vec<String> {
        self.signer().map(|s| ds_lines(&s.keys.load(), &self.cfg.origin)).unwrap_or_default()
    }

    /// Answer an in-zone query from the signed view. `dnssec_ok` adds RRSIGs and the
    /// compact-denial NSEC; without it only DNSKEY/CDS/CDNSKEY at the apex come here.
    /// `qname` is the lower-cased wire query name. Returns like `resolve`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn resolve_signed(
        &self,
        sec: &ZoneSigner,
        key: &[u8],
        qname: &[u8],
        qtype: u16,
        zone_off: u16,
        dnssec_ok: bool,
        out: &mut Vec<u8>,
    ) -> (u16, bool, u16, u16, u16) {
        if qtype == TYPE_NXNAME {
            // RFC 9824 §3.5: an explicit query for the NXNAME meta-type is a FORMERR.
            return (super::rcode::FORMERR, false, 0, 0, 0);
        }
        let cfg = &self.cfg;
        let ttl = cfg.ttl;
        let sig = |out: &mut Vec<u8>, owner: u16, ttl: u32, rd: &[u8]| -> u16 {
            if !dnssec_ok || rd.is_empty() {
                return 0;
            }
            put_rr_head(out, owner, TYPE_RRSIG, ttl, rd.len() as u16);
            out.extend_from_slice(rd);
            1
        };
        let q = HEADER as u16;
        let mut has_txt = false;
        let txt = qtype == TYPE_TXT || qtype == TYPE_ANY;
        let found = self.map.with(key, |node| match node {
            Some(node) if node.count() > 0 && txt => {
                out.extend_from_slice(node.rrs());
                Err(node.count().saturating_add(sig(out, q, ttl, node.sig())))
            }
            Some(node) => Ok(Some(node.count() > 0)),
            None => Ok(None),
        });
        let node_exists = match found {
            Err(n) => return (super::rcode::NOERROR, true, n, 0, 0),
            Ok(Some(t)) => {
                has_txt = t;
                true
            }
            Ok(None) => false,
        };
        let apex = sec.apex.load();
        let mut types = [0u16; 16];
        let mut nt = 0usize;
        let mut add = |t: u16| {
            if let Some(s) = types.get_mut(nt) {
                *s = t;
                nt += 1;
            }
        };
        let exists;
        if key.is_empty() {
            exists = true;
            let rrset = |out: &mut Vec<u8>, rtype: u16, rds: &[Box<[u8]>], rsig: &[u8]| -> u16 {
                for rd in rds {
                    put_rr_head(out, zone_off, rtype, ttl, rd.len() as u16);
                    out.extend_from_slice(rd);
                }
                let n = rds.len() as u16;
                n + sig(out, zone_off, ttl, rsig)
            };
            let n = match qtype {
                TYPE_SOA | TYPE_ANY => {
                    self.put_soa_serial(out, zone_off, ttl, apex.serial);
                    1 + sig(out, zone_off, ttl, &apex.soa)
                }
                TYPE_NS => {
                    let (mut n, targets) = put_ns(out, cfg, zone_off, ttl);
                    n += sig(out, zone_off, ttl, &apex.ns);
                    let glue = put_ns_glue(out, cfg, &targets, ttl);
                    return (super::rcode::NOERROR, true, n, 0, glue);
                }
                TYPE_A if !cfg.apex.a.is_empty() => {
                    put_addrs(out, q, ttl, &cfg.apex.a, TYPE_A) + sig(out, q, ttl, &apex.a)
                }
                TYPE_AAAA if !cfg.apex.aaaa.is_empty() => {
                    put_addrs(out, q, ttl, &cfg.apex.aaaa, TYPE_AAAA) + sig(out, q, ttl, &apex.aaaa)
                }
                TYPE_DNSKEY => rrset(out, TYPE_DNSKEY, &apex.dnskeys, &apex.dnskey_sig),
                TYPE_CDS => rrset(out, TYPE_CDS, &apex.cds, &apex.cds_sig),
                TYPE_CDNSKEY => {
                    let ksk = &sec.keys.load().ksk;
                    rrset(out, TYPE_CDNSKEY, std::slice::from_ref(&ksk.dnskey), &apex.cdnskey_sig)
                }
                _ => 0,
            };
            if n > 0 {
                return (super::rcode::NOERROR, true, n, 0, 0);
            }
            if !cfg.apex.a.is_empty() {
                add(TYPE_A);
            }
            add(TYPE_NS);
            add(TYPE_SOA);
            if has_txt {
                add(TYPE_TXT);
            }
            if !cfg.apex.aaaa.is_empty() {
                add(TYPE_AAAA);
            }
            add(TYPE_RRSIG);
            add(TYPE_NSEC);
            add(TYPE_DNSKEY);
            add(TYPE_CDS);
            add(TYPE_CDNSKEY);
        } else {
            let host = cfg.hosts.iter().position(|h| &*h.key == key);
            if let Some(i) = host {
                let h = &cfg.hosts[i];
                let (sa, saaaa) =
                    apex.hosts.get(i).map(|(a, b)| (&a[..], &b[..])).unwrap_or_default();
                let n = match qtype {
                    TYPE_A if !h.addrs.a.is_empty() => {
                        put_addrs(out, q, ttl, &h.addrs.a, TYPE_A) + sig(out, q, ttl, sa)
                    }
                    TYPE_AAAA if !h.addrs.aaaa.is_empty() => {
                        put_addrs(out, q, ttl, &h.addrs.aaaa, TYPE_AAAA) + sig(out, q, ttl, saaaa)
                    }
                    _ => 0,
                };
                if n > 0 {
                    return (super::rcode::NOERROR, true, n, 0, 0);
                }
                if !h.addrs.a.is_empty() {
                    add(TYPE_A);
                }
            }
            if has_txt {
                add(TYPE_TXT);
            }
            if let Some(h) = host.and_then(|i| cfg.hosts.get(i)) {
                if !h.addrs.aaaa.is_empty() {
                    add(TYPE_AAAA);
                }
            }
            add(TYPE_RRSIG);
            add(TYPE_NSEC);
            exists = node_exists || host.is_some() || cfg.host_below(key);
            if !exists {
                add(TYPE_NXNAME);
            }
        }
        let neg_ttl = ttl.min(cfg.minimum);
        if dnssec_ok && qtype == TYPE_NSEC {
            // The name's own NSEC is its answer (a NODATA for NSEC would contradict the
            // bitmap, which lists NSEC).
            let n = self.put_nsec(sec, qname, &types[..nt], neg_ttl, out);
            if n > 0 {
                return (super::rcode::NOERROR, true, n, 0, 0);
            }
        }
        self.put_soa_serial(out, zone_off, neg_ttl, apex.serial);
        let mut ns = 1 + sig(out, zone_off, neg_ttl, &apex.soa);
        if dnssec_ok {
            ns += self.put_nsec(sec, qname, &types[..nt], neg_ttl, out);
        }
        // Compact denial: a DO=1 client gets NOERROR even for a name that does not exist
        // (RFC 9824 §3); DO=0 clients never reach this point for TXT/A/… queries.
        let rcode =
            if exists || dnssec_ok { super::rcode::NOERROR } else { super::rcode::NXDOMAIN };
        (rcode, true, 0, ns, 0)
    }

    fn put_soa_serial(&self, out: &mut Vec<u8>, zone_off: u16, ttl: u32, serial: u32) {
        let cfg = &self.cfg;
        let at = out.len();
        put_rr_head(out, zone_off, TYPE_SOA, ttl, 0);
        cfg.mname.put(out, zone_off);
        cfg.rname.put(out, zone_off);
        for v in [serial, cfg.refresh, cfg.retry, cfg.expire, cfg.minimum] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        patch_rdlen(out, at + 10);
    }

    /// Append the compact-denial NSEC owned by the question (`\000.<qname>` next, the
    /// given types) and its RRSIG, signed now. Returns the RR count (0 when the next
    /// name would exceed 255 bytes or signing failed).
    fn put_nsec(
        &self,
        sec: &ZoneSigner,
        qname: &[u8],
        types: &[u16],
        ttl: u32,
        out: &mut Vec<u8>,
    ) -> u16 {
        if qname.len() + 2 > 255 {
            return 0;
        }
        let mut rd = [0u8; 2 + 255 + 34];
        rd[0] = 1;
        rd[1] = 0;
        rd[2..2 + qname.len()].copy_from_slice(qname);
        let mut len = 2 + qname.len();
        let (bm, bl) = bitmap(types);
        rd[len..len + bl].copy_from_slice(&bm[..bl]);
        len += bl;
        let rdata = &rd[..len];
        let now = now_secs();
        let keys = sec.keys.load();
        let zsk = keys.active_zsk(now);
        let base = out.len();
        put_rr_head(out, HEADER as u16, TYPE_NSEC, ttl, len as u16);
        out.extend_from_slice(rdata);
        let sig_at = out.len();
        put_rr_head(out, HEADER as u16, TYPE_RRSIG, ttl, 0);
        let slot = {
            use std::hash::{BuildHasher, Hasher};
            let mut h = rustc_hash::FxBuildHasher.build_hasher();
            h.write(rdata);
            &sec.nsec_cache[h.finish() as usize % NSEC_SLOTS]
        };
        if let Ok(cached) = slot.lock() {
            if let Some(c) = cached.as_ref() {
                if &*c.rdata == rdata && c.tag == zsk.tag && now < c.until {
                    out.extend_from_slice(&c.sig);
                    patch_rdlen(out, sig_at + 10);
                    return 2;
                }
            }
        }
        let w = window(now, sec.validity);
        let signed = SCRATCH.with(|s| {
            let mut scratch = s.borrow_mut();
            sign_rrset(
                zsk,
                &self.cfg.origin,
                qname,
                TYPE_NSEC,
                ttl,
                w,
                &mut [rdata],
                &mut scratch,
                out,
            )
        });
        if signed.is_err() {
            out.truncate(base);
            return 0;
        }
        patch_rdlen(out, sig_at + 10);
        if let (Ok(mut cached), Some(sig)) = (slot.lock(), out.get(sig_at + 10 + 2..)) {
            *cached = Some(CachedNsec {
                rdata: rdata.into(),
                sig: sig.into(),
                tag: zsk.tag,
                until: now + NSEC_REUSE.min(sec.validity / 4),
            });
        }
        2
    }
}

/// Types that exist only in a signed zone (answered at the apex even without DO).
pub(crate) fn dnssec_only_type(qtype: u16) -> bool {
    matches!(qtype, TYPE_DNSKEY | TYPE_CDS | TYPE_CDNSKEY)
}

/// DS presentation lines (digest type 2) for a key set's KSK at `origin` (wire).
pub fn ds_lines(keys: &KeySet, origin: &[u8]) -> Vec<String> {
    let ds = keys.ksk.ds_rdata(origin);
    let digest = hex::encode_upper(&ds[4..]);
    vec![format!("{} IN DS {} {} 2 {}", wire_to_dotted(origin), keys.ksk.tag, keys.ksk.alg, digest)]
}

/// `a.b.` from wire form.
pub(crate) fn wire_to_dotted(wire: &[u8]) -> String {
    let mut s = String::new();
    let mut pos = 0usize;
    while let Some(&len) = wire.get(pos) {
        if len == 0 {
            break;
        }
        if let Some(l) = wire.get(pos + 1..pos + 1 + len as usize) {
            s.push_str(&String::from_utf8_lossy(l));
            s.push('.');
        }
        pos += 1 + len as usize;
    }
    if s.is_empty() {
        s.push('.');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::super::dnssec::{sig_expiry_and_tag, ALG_ECDSAP256SHA256};
    use super::super::ZoneConfig;
    use super::*;

    const DAY: u64 = 86_400;

    fn view(now: u64) -> ZoneView {
        let cfg = ZoneConfig::new(
            "mesh.test",
            "ns1.mesh.test",
            "hostmaster.mesh.test",
            &["ns1.mesh.test"],
        );
        let setup = DnssecSetup {
            keys: KeySet::generate(ALG_ECDSAP256SHA256, now).unwrap(),
            validity_secs: 14 * DAY,
            zsk_lifetime_secs: 90 * DAY,
            persist: None,
        };
        ZoneView::new_signed(&cfg, setup).unwrap()
    }

    fn txt_sig(v: &ZoneView, key: &[u8]) -> (u32, u16) {
        v.map.with(key, |n| sig_expiry_and_tag(n.unwrap().sig())).unwrap()
    }

    #[test]
    fn background_pass_resigns_past_half_validity_and_after_a_roll() {
        let t0 = now_secs();
        let v = view(t0);
        assert!(v.set_txt_at("a.mesh.test", &[b"x"], t0));
        let (exp0, tag0) = txt_sig(&v, b"\x01a");
        assert_eq!(u64::from(exp0), t0 + 14 * DAY);
        // Fresh signatures are left alone.
        assert_eq!(v.dnssec_pass(t0 + DAY), 0);
        assert_eq!(txt_sig(&v, b"\x01a"), (exp0, tag0));
        // Past half of the validity: the TXT RRset and the apex are re-signed.
        let t1 = t0 + 8 * DAY;
        assert!(v.dnssec_pass(t1) >= 2);
        assert_eq!(txt_sig(&v, b"\x01a"), ((t1 + 14 * DAY) as u32, tag0));
        // At the end of the ZSK lifetime a successor was published and now signs.
        let sec = v.sec.as_ref().unwrap();
        let t2 = t0 + 90 * DAY - 1000;
        v.dnssec_pass(t2);
        assert_eq!(sec.keys.load().zsks.len(), 2, "successor pre-published");
        assert_eq!(txt_sig(&v, b"\x01a").1, tag0, "old key still signs");
        // (Generated late, it activates one pre-publish time after it was published.)
        let t3 = t0 + 90 * DAY + 3000;
        v.dnssec_pass(t3);
        let (_, tag1) = txt_sig(&v, b"\x01a");
        assert_ne!(tag1, tag0, "re-signed with the successor");
        assert_eq!(sec.keys.load().zsks.len(), 2, "old key kept while caches may hold it");
        v.dnssec_pass(t3 + 2 * 3600 + 200);
        let keys = sec.keys.load();
        assert_eq!(keys.zsks.len(), 1);
        assert_eq!(keys.zsks[0].tag, tag1);
    }

    #[test]
    fn do1_answers_carry_rrsig_and_compact_denial() {
        let v = view(now_secs());
        v.set_txt("a.b.mesh.test", &[b"x"]);
        let q = |name: &[u8], qtype: u16, dnssec_ok: bool| {
            let mut m = vec![0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1];
            m.extend_from_slice(name);
            m.extend_from_slice(&qtype.to_be_bytes());
            // Class IN, then OPT: root owner, type 41, payload 1232, DO as asked, no options.
            m.extend_from_slice(&[0, 1, 0, 0, 41, 4, 0xd0, 0, 0]);
            m.extend_from_slice(&[if dnssec_ok { 0x80 } else { 0 }, 0, 0, 0]);
            let mut out = Vec::new();
            let d = v.answer(&m, &mut out, true);
            (d, out)
        };
        let has_type =
            |out: &[u8], t: u16| out.windows(4).any(|w| w == [(t >> 8) as u8, t as u8, 0, 1]);
        let (_, out) = q(b"\x01a\x01b\x04mesh\x04test\x00", TYPE_TXT, true);
        assert!(has_type(&out, TYPE_RRSIG));
        let (_, out) = q(b"\x01a\x01b\x04mesh\x04test\x00", TYPE_TXT, false);
        assert!(!has_type(&out, TYPE_RRSIG));
        // A name that does not exist: NOERROR + NSEC for DO=1, NXDOMAIN for DO=0.
        let (d, out) = q(b"\x02zz\x04mesh\x04test\x00", TYPE_TXT, true);
        assert_eq!(d, super::super::Disposition::Reply { rcode: super::super::rcode::NOERROR });
        assert!(has_type(&out, TYPE_NSEC) && has_type(&out, TYPE_RRSIG));
        // The NSEC signature is reused for the same name (ECDSA signatures are randomised,
        // so equal bytes mean the cache answered).
        let (_, again) = q(b"\x02zz\x04mesh\x04test\x00", TYPE_TXT, true);
        assert_eq!(again, out);
        let (d, _) = q(b"\x02zz\x04mesh\x04test\x00", TYPE_TXT, false);
        assert_eq!(d, super::super::Disposition::Reply { rcode: super::super::rcode::NXDOMAIN });
        // Explicit NXNAME: FORMERR.
        let (d, _) = q(b"\x02zz\x04mesh\x04test\x00", TYPE_NXNAME, true);
        assert_eq!(d, super::super::Disposition::Reply { rcode: super::super::rcode::FORMERR });
    }
}
