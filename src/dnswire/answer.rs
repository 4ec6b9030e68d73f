//! The pure answer function: query bytes in, response bytes out, no allocation on the
//! hit path and no panics on any input.

use super::config::Compiled;
use super::view::ZoneView;

/// What the caller should do with a query after [`ZoneView::answer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// `out` holds the response; `rcode` is the full 12-bit RCODE (16 = BADVERS) so the
    /// caller can count replies without re-parsing.
    Reply {
        /// Response code, extended bits included.
        rcode: u16,
    },
    /// Not a plain query this path answers: hand the packet to the hickory slow path.
    Slow,
    /// Not worth any reply (too short to carry an ID, or itself a response).
    Drop,
}

/// Response codes used here.
pub mod rcode {
    /// No error.
    pub const NOERROR: u16 = 0;
    /// Format error (an explicit NXNAME query to a signed zone, RFC 9824 §3.5).
    pub const FORMERR: u16 = 1;
    /// Name does not exist.
    pub const NXDOMAIN: u16 = 3;
    /// Query refused (outside the zone).
    pub const REFUSED: u16 = 5;
    /// Unsupported EDNS version (extended RCODE, carried in OPT).
    pub const BADVERS: u16 = 16;
}

pub(super) const HEADER: usize = 12;
pub(super) const TYPE_A: u16 = 1;
pub(super) const TYPE_NS: u16 = 2;
pub(super) const TYPE_SOA: u16 = 6;
pub(super) const TYPE_TXT: u16 = 16;
pub(super) const TYPE_AAAA: u16 = 28;
const TYPE_OPT: u16 = 41;
pub(super) const TYPE_ANY: u16 = 255;
const CLASS_IN: u16 = 1;
/// The UDP payload size we advertise (DNS flag day 2020).
const OUR_PAYLOAD: u16 = 1232;
const OPT_LEN: usize = 11;

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn put16(out: &mut [u8], at: usize, v: u16) {
    if let Some(s) = out.get_mut(at..at + 2) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}

/// The parts of a plain query this path needs.
struct Query {
    /// Length of the wire QNAME, root terminator included.
    qname_len: usize,
    qtype: u16,
    /// The client's OPT: (UDP payload, version); `None` without EDNS.
    edns: Option<(u16, u8)>,
    /// The client's DO bit, copied into our OPT (RFC 3225 §3).
    dnssec_ok: bool,
}

/// Parse a query this path may answer, lower-casing its QNAME into `lower`.
/// `Err(Disposition)` says what to do with anything else.
fn parse(q: &[u8], lower: &mut [u8; 255]) -> Result<Query, Disposition> {
    let slow = Err(Disposition::Slow);
    if q.len() < HEADER {
        return Err(Disposition::Drop);
    }
    if q[2] & 0x80 != 0 {
        return Err(Disposition::Drop);
    }
    let opcode = (q[2] >> 3) & 0x0F;
    let (qd, an, ns, ar) = (be16(q, 4), be16(q, 6), be16(q, 8), be16(q, 10));
    if opcode != 0 || qd != Some(1) || an != Some(0) || ns != Some(0) || ar > Some(1) {
        return slow;
    }
    let mut pos = HEADER;
    let mut n = 0usize;
    loop {
        let Some(&len) = q.get(pos) else { return slow };
        let len = len as usize;
        if len & 0xC0 != 0 || n + 1 + len > lower.len() {
            return slow;
        }
        let Some(label) = q.get(pos + 1..pos + 1 + len) else {
            return slow;
        };
        lower[n] = len as u8;
        for (d, s) in lower[n + 1..n + 1 + len].iter_mut().zip(label) {
            *d = s.to_ascii_lowercase();
        }
        n += 1 + len;
        pos += 1 + len;
        if len == 0 {
            break;
        }
    }
    let (Some(qtype), Some(qclass)) = (be16(q, pos), be16(q, pos + 2)) else {
        return slow;
    };
    pos += 4;
    // Zone transfers and the obsolete MAILA/MAILB meta-types belong to the slow path.
    if qclass != CLASS_IN || (251..=254).contains(&qtype) {
        return slow;
    }
    let mut edns = None;
    let mut dnssec_ok = false;
    if ar == Some(1) {
        // Only an OPT with the root owner: a TSIG or anything else goes to hickory.
        if q.get(pos) != Some(&0) || be16(q, pos + 1) != Some(TYPE_OPT) {
            return slow;
        }
        let (Some(payload), Some(&version), Some(rdlen)) =
            (be16(q, pos + 3), q.get(pos + 6), be16(q, pos + 9))
        else {
            return slow;
        };
        dnssec_ok = q.get(pos + 7).is_some_and(|f| f & 0x80 != 0);
        pos += OPT_LEN;
        let end = pos + rdlen as usize;
        // Options must be well-formed TLVs; their content is ignored (RFC 6891 §6.1.2).
        while pos < end {
            let Some(olen) = be16(q, pos + 2) else {
                return slow;
            };
            pos += 4 + olen as usize;
        }
        if pos != end {
            return slow;
        }
        edns = Some((payload, version));
    }
    if pos != q.len() {
        return slow;
    }
    Ok(Query { qname_len: n, qtype, edns, dnssec_ok })
}

/// Append an OPT RR advertising our payload, with the given extended-RCODE high bits and
/// the client's DO bit echoed.
fn put_opt(out: &mut Vec<u8>, ext_rcode: u8, dnssec_ok: bool) {
    out.push(0);
    out.extend_from_slice(&TYPE_OPT.to_be_bytes());
    out.extend_from_slice(&OUR_PAYLOAD.to_be_bytes());
    out.extend_from_slice(&[ext_rcode, 0, if dnssec_ok { 0x80 } else { 0 }, 0, 0, 0]);
}

/// Append an RR header whose owner is a pointer to offset `owner`.
pub(super) fn put_rr_head(out: &mut Vec<u8>, owner: u16, rtype: u16, ttl: u32, rdlen: u16) {
    out.extend_from_slice(&(0xC000 | owner).to_be_bytes());
    out.extend_from_slice(&rtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(&rdlen.to_be_bytes());
}

/// Patch the RDLENGTH at `at` to cover everything written after it.
pub(super) fn patch_rdlen(out: &mut [u8], at: usize) {
    let len = out.len().saturating_sub(at + 2);
    put16(out, at, u16::try_from(len).unwrap_or(u16::MAX));
}

impl ZoneView {
    /// Answer a plain UDP/TCP query from the view. `out` is cleared and reused; with
    /// `max_tcp` the size limit is 65535, otherwise the client's EDNS payload (at least
    /// 512) capped at [`ZoneConfig::max_udp_payload`](super::ZoneConfig), or 512 without
    /// EDNS. Oversized replies become TC=1 stubs (question and OPT
    /// only). Out-of-zone names get REFUSED; EDNS versions other than 0 get BADVERS.
    ///
    /// QTYPE ANY (RFC 8482 minimal answer): a name with TXT answers its TXT RRset, the
    /// apex answers its SOA, every other existing name answers NODATA.
    pub fn answer(&self, query: &[u8], out: &mut Vec<u8>, max_tcp: bool) -> Disposition {
        out.clear();
        let mut lower = [0u8; 255];
        let q = match parse(query, &mut lower) {
            Ok(q) => q,
            Err(d) => return d,
        };
        let qsec_end = HEADER + q.qname_len + 4;
        let Some(question) = query.get(HEADER..qsec_end) else {
            return Disposition::Slow;
        };
        // UDP: the client's payload (floor 512, 512 without EDNS), never above the
        // configured cap, so one small query cannot draw a large reply (amplification).
        let limit = match (max_tcp, q.edns) {
            (true, _) => 65535,
            (false, Some((payload, _))) => (payload.max(512) as usize).min(self.cfg.max_udp),
            (false, None) => 512,
        };
        // Header: ID, QR, opcode 0, RD and CD copied, QDCOUNT 1; the rest patched below.
        out.extend_from_slice(&query[..2]);
        let flags = [0x80 | (query[2] & 0x01), query[3] & 0x10];
        out.extend_from_slice(&flags);
        out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(question);

        if matches!(q.edns, Some((_, version)) if version != 0) {
            put_opt(out, (rcode::BADVERS >> 4) as u8, q.dnssec_ok);
            put16(out, 10, 1);
            return Disposition::Reply { rcode: rcode::BADVERS };
        }

        let origin = &self.cfg.origin;
        let rel_len = q.qname_len.saturating_sub(origin.len());
        let in_zone = q.qname_len >= origin.len()
            && lower.get(rel_len..q.qname_len) == Some(&origin[..])
            && at_label_start(&lower, rel_len);
        let (rcode, aa, an, ns, extra) = if in_zone {
            let key = &lower[..rel_len];
            // The zone suffix of the question, for compression pointers (< 12 + 255).
            let zone_off = (HEADER + rel_len) as u16;
            match &self.sec {
                Some(sec)
                    if q.dnssec_ok
                        || q.qtype == super::dnssec::TYPE_NXNAME
                        || (key.is_empty() && super::signed::dnssec_only_type(q.qtype)) =>
                {
                    let qname = &lower[..q.qname_len];
                    self.resolve_signed(sec, key, qname, q.qtype, zone_off, q.dnssec_ok, out)
                }
                _ => self.resolve(key, q.qtype, zone_off, out),
            }
        } else {
            (rcode::REFUSED, false, 0, 0, 0)
        };
        let mut ar = extra;
        if q.edns.is_some() {
            put_opt(out, 0, q.dnssec_ok);
            ar = ar.saturating_add(1);
        }
        put16(out, 6, an);
        put16(out, 8, ns);
        put16(out, 10, ar);
        if let Some(flags) = out.get_mut(2..4) {
            flags[0] |= if aa { 0x04 } else { 0 };
            flags[1] |= rcode as u8 & 0x0F;
        }
        if out.len() > limit {
            out.truncate(qsec_end);
            out[2] |= 0x02;
            put16(out, 6, 0);
            put16(out, 8, 0);
            put16(out, 10, 0);
            if q.edns.is_some() {
                put_opt(out, 0, q.dnssec_ok);
                put16(out, 10, 1);
            }
        }
        Disposition::Reply { rcode }
    }

    /// Write the answer/authority/additional records for an in-zone name.
    /// Returns (rcode, AA, ANCOUNT, NSCOUNT, ARCOUNT without OPT).
    fn resolve(
        &self,
        key: &[u8],
        qtype: u16,
        zone_off: u16,
        out: &mut Vec<u8>,
    ) -> (u16, bool, u16, u16, u16) {
        let cfg = &self.cfg;
        let ttl = cfg.ttl;
        let txt = qtype == TYPE_TXT || qtype == TYPE_ANY;
        let found = self.map.with(key, |node| match node {
            Some(node) if node.count() > 0 && txt => {
                out.extend_from_slice(node.rrs());
                Err(node.count())
            }
            Some(_) => Ok(true),
            None => Ok(false),
        });
        let node_exists = match found {
            Err(count) => return (rcode::NOERROR, true, count, 0, 0),
            Ok(e) => e,
        };
        let exists;
        if key.is_empty() {
            exists = true;
            let n = match qtype {
                TYPE_SOA | TYPE_ANY => {
                    self.put_soa(out, zone_off);
                    1
                }
                TYPE_NS => {
                    let (n, targets) = put_ns(out, cfg, zone_off, ttl);
                    let glue = put_ns_glue(out, cfg, &targets, ttl);
                    return (rcode::NOERROR, true, n, 0, glue);
                }
                TYPE_A => put_addrs(out, HEADER as u16, ttl, &cfg.apex.a, TYPE_A),
                TYPE_AAAA => put_addrs(out, HEADER as u16, ttl, &cfg.apex.aaaa, TYPE_AAAA),
                _ => 0,
            };
            if n > 0 {
                return (rcode::NOERROR, true, n, 0, 0);
            }
        } else {
            let host = cfg.host(key);
            if let Some(h) = host {
                let n = match qtype {
                    TYPE_A => put_addrs(out, HEADER as u16, ttl, &h.addrs.a, TYPE_A),
                    TYPE_AAAA => put_addrs(out, HEADER as u16, ttl, &h.addrs.aaaa, TYPE_AAAA),
                    _ => 0,
                };
                if n > 0 {
                    return (rcode::NOERROR, true, n, 0, 0);
                }
            }
            exists = node_exists || host.is_some() || cfg.host_below(key);
        }
        self.put_soa_authority(out, zone_off);
        let rcode = if exists { rcode::NOERROR } else { rcode::NXDOMAIN };
        (rcode, true, 0, 1, 0)
    }

    /// The apex SOA as an RR owned by the zone suffix of the question.
    fn put_soa(&self, out: &mut Vec<u8>, zone_off: u16) {
        self.put_soa_ttl(out, zone_off, self.cfg.ttl);
    }

    /// The SOA for a negative answer: TTL = min(SOA TTL, MINIMUM) (RFC 2308 §3).
    fn put_soa_authority(&self, out: &mut Vec<u8>, zone_off: u16) {
        self.put_soa_ttl(out, zone_off, self.cfg.ttl.min(self.cfg.minimum));
    }

    fn put_soa_ttl(&self, out: &mut Vec<u8>, zone_off: u16, ttl: u32) {
        let cfg = &self.cfg;
        let at = out.len();
        put_rr_head(out, zone_off, TYPE_SOA, ttl, 0);
        cfg.mname.put(out, zone_off);
        cfg.rname.put(out, zone_off);
        for v in [self.serial(), cfg.refresh, cfg.retry, cfg.expire, cfg.minimum] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        patch_rdlen(out, at + 10);
    }
}

/// Append the apex NS RRset (owner at `zone_off`); returns the count and, for the first
/// 16, the offset of each target name (for glue owners).
pub(super) fn put_ns(
    out: &mut Vec<u8>,
    cfg: &Compiled,
    zone_off: u16,
    ttl: u32,
) -> (u16, [u16; 16]) {
    let mut targets = [0u16; 16];
    let mut n = 0u16;
    for ns in &cfg.ns {
        let at = out.len();
        put_rr_head(out, zone_off, TYPE_NS, ttl, 0);
        if let Some(t) = targets.get_mut(n as usize) {
            *t = (out.len() as u16) & 0x3FFF;
        }
        ns.put(out, zone_off);
        patch_rdlen(out, at + 10);
        n = n.saturating_add(1);
    }
    (n, targets)
}

/// Append the glue (A/AAAA) of in-zone NS targets written by [`put_ns`]; returns the count.
pub(super) fn put_ns_glue(out: &mut Vec<u8>, cfg: &Compiled, targets: &[u16; 16], ttl: u32) -> u16 {
    let mut glue = 0u16;
    for (i, ns) in cfg.ns.iter().enumerate() {
        let (Some(&target), true) = (targets.get(i), ns.in_zone) else {
            continue;
        };
        if let Some(host) = cfg.host(&ns.bytes) {
            let a = put_addrs(out, target, ttl, &host.addrs.a, TYPE_A);
            let aaaa = put_addrs(out, target, ttl, &host.addrs.aaaa, TYPE_AAAA);
            glue = a.saturating_add(aaaa).saturating_add(glue);
        }
    }
    glue
}

/// Append one A or AAAA RR per address, owned by the name at `owner`; returns the count.
pub(super) fn put_addrs<const N: usize>(
    out: &mut Vec<u8>,
    owner: u16,
    ttl: u32,
    addrs: &[[u8; N]],
    rtype: u16,
) -> u16 {
    for a in addrs {
        put_rr_head(out, owner, rtype, ttl, N as u16);
        out.extend_from_slice(a);
    }
    u16::try_from(addrs.len()).unwrap_or(u16::MAX)
}

/// True when offset `at` of the wire name `name` starts a label.
fn at_label_start(name: &[u8], at: usize) -> bool {
    let mut pos = 0usize;
    while pos < at {
        let Some(&len) = name.get(pos) else {
            return false;
        };
        pos += 1 + len as usize;
    }
    pos == at
}
