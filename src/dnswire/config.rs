//! Zone configuration and its compiled, wire-ready form.

use std::net::IpAddr;

use crate::proto::ProtoError;

/// What the node serves at its zone apex and at its in-zone NS host names. Strict
/// resolvers need a correct apex (SOA, NS, optionally A/AAAA) to accept a delegation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneConfig {
    /// Served zone, e.g. `mesh.example.org` (a trailing dot and upper case are tolerated).
    pub origin: String,
    /// TTL of every answer RR (the node-wide `DMP_DNS_TTL`).
    pub ttl: u32,
    /// SOA MNAME (primary name server).
    pub soa_mname: String,
    /// SOA RNAME, dotted (`hostmaster.mesh.example.org`) or as a mail address (first `@`
    /// becomes a dot).
    pub soa_rname: String,
    /// SOA REFRESH.
    pub soa_refresh: u32,
    /// SOA RETRY.
    pub soa_retry: u32,
    /// SOA EXPIRE.
    pub soa_expire: u32,
    /// SOA MINIMUM (negative-caching TTL); `None` means the answer TTL.
    pub soa_minimum: Option<u32>,
    /// Apex NS target names.
    pub ns: Vec<String>,
    /// Addresses served as apex A (IPv4) and AAAA (IPv6) records.
    pub apex_addrs: Vec<IpAddr>,
    /// Addresses served at in-zone host names (normally the NS hosts); also added as
    /// glue in the ADDITIONAL section of apex NS answers.
    pub hosts: Vec<HostAddrs>,
    /// Largest UDP reply sent, whatever the client's EDNS payload (the reply is at most
    /// min(client's payload, this); larger answers go out as TC stubs). Values below
    /// 512 count as 512. Default 1232 (DNS Flag Day 2020).
    pub max_udp_payload: u16,
}

/// Addresses served at one in-zone host name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostAddrs {
    /// Host name; must be strictly inside the zone.
    pub name: String,
    /// Its A (IPv4) and AAAA (IPv6) addresses.
    pub addrs: Vec<IpAddr>,
}

impl ZoneConfig {
    /// A config with the usual defaults (TTL 60, REFRESH 3600, RETRY 600, EXPIRE 604800,
    /// MINIMUM = TTL) and no addresses.
    pub fn new(origin: &str, soa_mname: &str, soa_rname: &str, ns: &[&str]) -> Self {
        ZoneConfig {
            origin: origin.to_string(),
            ttl: 60,
            soa_mname: soa_mname.to_string(),
            soa_rname: soa_rname.to_string(),
            soa_refresh: 3600,
            soa_retry: 600,
            soa_expire: 604_800,
            soa_minimum: None,
            ns: ns.iter().map(|s| s.to_string()).collect(),
            apex_addrs: Vec::new(),
            hosts: Vec::new(),
            max_udp_payload: 1232,
        }
    }
}

/// A name ready to be written into a response: in-zone names are their labels relative
/// to the origin followed by a compression pointer to the zone suffix of the question.
#[derive(Debug)]
pub(crate) struct NameTpl {
    /// Relative labels (no terminator) when `in_zone`, else the full wire name.
    pub bytes: Box<[u8]>,
    pub in_zone: bool,
}

impl NameTpl {
    /// Append this name; `zone_off` is where the zone suffix sits in the response.
    pub fn put(&self, out: &mut Vec<u8>, zone_off: u16) {
        out.extend_from_slice(&self.bytes);
        if self.in_zone {
            out.extend_from_slice(&(0xC000 | zone_off).to_be_bytes());
        }
    }
}

/// A/AAAA addresses in wire form.
#[derive(Debug, Default)]
pub(crate) struct Addrs {
    pub a: Vec<[u8; 4]>,
    pub aaaa: Vec<[u8; 16]>,
}

impl Addrs {
    fn from_ips(ips: &[IpAddr]) -> Self {
        let mut out = Addrs::default();
        for ip in ips {
            match ip {
                IpAddr::V4(v4) => out.a.push(v4.octets()),
                IpAddr::V6(v6) => out.aaaa.push(v6.octets()),
            }
        }
        out
    }
}

/// An in-zone host with addresses, keyed like the view's names (relative wire labels).
#[derive(Debug)]
pub(crate) struct Host {
    pub key: Box<[u8]>,
    pub addrs: Addrs,
}

/// The config checked and pre-encoded once, so that answering does no parsing.
#[derive(Debug)]
pub(crate) struct Compiled {
    /// Origin in lower-case wire form, root terminator included.
    pub origin: Box<[u8]>,
    pub ttl: u32,
    pub mname: NameTpl,
    pub rname: NameTpl,
    pub refresh: u32,
    pub retry: u32,
    pub expire: u32,
    pub minimum: u32,
    pub ns: Vec<NameTpl>,
    pub apex: Addrs,
    pub hosts: Vec<Host>,
    /// Largest UDP reply in bytes (≥ 512).
    pub max_udp: usize,
}

/// Lower-cased wire labels of a dotted name, without the root terminator. `""` and `"."`
/// give no labels. `None` for empty labels, labels over 63 bytes or names over 255 bytes.
pub(crate) fn dotted_to_labels(name: &str) -> Option<Vec<u8>> {
    let name = name.strip_suffix('.').unwrap_or(name);
    let mut out = Vec::with_capacity(name.len() + 1);
    if name.is_empty() {
        return Some(out);
    }
    for label in name.split('.') {
        let len = u8::try_from(label.len()).ok().filter(|l| (1..=63).contains(l))?;
        out.push(len);
        out.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
    }
    // The full wire name adds one terminator byte and must stay within 255.
    (out.len() < 255).then_some(out)
}

/// The part of `labels` in front of `origin_labels` when `labels` is at or below the
/// origin (a label-boundary suffix match), else `None`.
pub(crate) fn strip_origin<'a>(labels: &'a [u8], origin_labels: &[u8]) -> Option<&'a [u8]> {
    let mut pos = 0usize;
    loop {
        let rest = labels.get(pos..)?;
        if rest == origin_labels {
            return labels.get(..pos);
        }
        let len = *rest.first()? as usize;
        pos = pos.checked_add(1 + len)?;
    }
}

/// True when `anc` is a proper ancestor of `desc` (both relative label sequences);
/// the empty sequence (the apex) is never counted.
pub(crate) fn is_proper_ancestor(anc: &[u8], desc: &[u8]) -> bool {
    if anc.is_empty() || anc.len() >= desc.len() {
        return false;
    }
    let mut pos = 0usize;
    while let Some(&len) = desc.get(pos) {
        pos += 1 + len as usize;
        if desc.get(pos..) == Some(anc) {
            return true;
        }
    }
    false
}

fn field(name: &'static str, reason: &str) -> ProtoError {
    ProtoError::field(name, reason)
}

impl Compiled {
    /// Check and encode a config.
    pub fn new(cfg: &ZoneConfig) -> Result<Self, ProtoError> {
        let origin_labels = dotted_to_labels(&cfg.origin)
            .filter(|l| !l.is_empty())
            .ok_or_else(|| field("origin", "not a valid non-root DNS name"))?;
        let tpl = |name: &str, what: &'static str| -> Result<NameTpl, ProtoError> {
            let labels = dotted_to_labels(name)
                .filter(|l| !l.is_empty())
                .ok_or_else(|| field(what, "not a valid non-root DNS name"))?;
            Ok(match strip_origin(&labels, &origin_labels) {
                Some(rel) => NameTpl { bytes: rel.into(), in_zone: true },
                None => {
                    let mut full = labels;
                    full.push(0);
                    NameTpl { bytes: full.into(), in_zone: false }
                }
            })
        };
        let rname = cfg.soa_rname.replacen('@', ".", 1);
        let mut hosts = Vec::with_capacity(cfg.hosts.len());
        for h in &cfg.hosts {
            let labels = dotted_to_labels(&h.name).ok_or_else(|| field("hosts", "invalid name"))?;
            let rel = strip_origin(&labels, &origin_labels)
                .filter(|r| !r.is_empty())
                .ok_or_else(|| field("hosts", "host name must be strictly inside the zone"))?;
            hosts.push(Host { key: rel.into(), addrs: Addrs::from_ips(&h.addrs) });
        }
        let mut origin = origin_labels.clone();
        origin.push(0);
        Ok(Compiled {
            origin: origin.into(),
            ttl: cfg.ttl,
            mname: tpl(&cfg.soa_mname, "soa_mname")?,
            rname: tpl(&rname, "soa_rname")?,
            refresh: cfg.soa_refresh,
            retry: cfg.soa_retry,
            expire: cfg.soa_expire,
            minimum: cfg.soa_minimum.unwrap_or(cfg.ttl),
            ns: cfg.ns.iter().map(|n| tpl(n, "ns")).collect::<Result<_, _>>()?,
            apex: Addrs::from_ips(&cfg.apex_addrs),
            hosts,
            max_udp: usize::from(cfg.max_udp_payload.max(512)),
        })
    }

    /// Origin labels without the terminator.
    pub fn origin_labels(&self) -> &[u8] {
        self.origin.split_last().map(|(_, l)| l).unwrap_or(&[])
    }

    /// Relative key of a dotted name, or `None` when it is invalid or outside the zone.
    pub fn rel_key(&self, name: &str) -> Option<Vec<u8>> {
        let labels = dotted_to_labels(name)?;
        let rel_len = strip_origin(&labels, self.origin_labels())?.len();
        let mut labels = labels;
        labels.truncate(rel_len);
        Some(labels)
    }

    /// The host entry with exactly this key.
    pub fn host(&self, key: &[u8]) -> Option<&Host> {
        self.hosts.iter().find(|h| &*h.key == key)
    }

    /// True when some host name lies strictly below `key` (so `key` is an ENT).
    pub fn host_below(&self, key: &[u8]) -> bool {
        self.hosts.iter().any(|h| is_proper_ancestor(key, &h.key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_suffixes() {
        assert_eq!(dotted_to_labels("A.b.").unwrap(), b"\x01a\x01b");
        assert_eq!(dotted_to_labels("").unwrap(), b"");
        assert!(dotted_to_labels("a..b").is_none());
        assert!(dotted_to_labels(&"x".repeat(64)).is_none());
        let origin = dotted_to_labels("mesh.test").unwrap();
        let n = dotted_to_labels("s.mb.mesh.test").unwrap();
        assert_eq!(strip_origin(&n, &origin).unwrap(), b"\x01s\x02mb");
        assert_eq!(strip_origin(&origin, &origin).unwrap(), b"");
        assert!(strip_origin(&dotted_to_labels("xmesh.test").unwrap(), &origin).is_none());
        assert!(is_proper_ancestor(b"\x02mb", b"\x01s\x02mb"));
        assert!(!is_proper_ancestor(b"\x02mb", b"\x02mb"));
        assert!(!is_proper_ancestor(b"", b"\x02mb"));
        assert!(!is_proper_ancestor(b"\x01b", b"\x03a\x01b"));
    }
}
