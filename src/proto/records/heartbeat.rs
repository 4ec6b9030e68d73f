//! Node heartbeat `v=dmp1;t=heartbeat;<b64(body ‖ sig)>` (protocol §4.10, node.md §7):
//! a node's self-signed "I am alive at this endpoint" for the discovery directory.
//!
//! Built as `DMPHB03`; legacy `DMPHB02` (no claim-provider zone) still parses, `DMPHB01`
//! does not (trap T11). Self-authenticating: the embedded operator key signs.

use std::net::{Ipv4Addr, Ipv6Addr};

use ed25519_dalek::SigningKey;

use super::cluster::ensure_signer;
use super::{
    beyond_cap, decode_strict_wire, encode_strict_wire, split_sig, Reader, CAP_30_DAYS, CLOCK_SKEW,
    PREFIX_HEARTBEAT,
};
use crate::proto::{keys, ProtoError};

const MAGIC: &[u8; 7] = b"DMPHB03";
const MAGIC_LEGACY: &[u8; 7] = b"DMPHB02";
/// Capability bit 0: the node accepts first-contact claims (M8.3).
pub const CAP_CLAIM_PROVIDER: u16 = 1;
/// Cap on the endpoint URL (ASCII bytes).
pub const MAX_ENDPOINT_LEN: usize = 255;
/// Cap on the software version string (ASCII bytes).
pub const MAX_VERSION_LEN: usize = 32;
/// Cap on the claim-provider zone (ASCII bytes).
pub const MAX_CLAIM_PROVIDER_ZONE_LEN: usize = 64;
/// Smallest decoded blob the parser looks at (magic + signature).
const MIN_BLOB_LEN: usize = 7 + 64;

/// How strictly to judge a heartbeat. `Default` is the protocol's strict rule set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatPolicy {
    /// Largest accepted `|ts − now|` (default 300 s). A node sweeping its own old
    /// wires passes a huge value, as the reference's directory code does.
    pub max_skew: u64,
    /// Accept loopback/private endpoints and localhost aliases. Only for tests on one
    /// machine; off by default.
    pub allow_private_endpoints: bool,
}

impl Default for HeartbeatPolicy {
    fn default() -> Self {
        HeartbeatPolicy { max_skew: CLOCK_SKEW, allow_private_endpoints: false }
    }
}

/// A node heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    /// `http(s)://host[:port]` where the node's HTTP API answers.
    pub endpoint: String,
    /// The operator's Ed25519 key (same key as its cluster/bootstrap signer); signs.
    pub operator_spk: [u8; 32],
    /// Software version, ASCII, ≤ 32 bytes (e.g. `0.7.5`).
    pub version: String,
    /// Capability bits; see [`CAP_CLAIM_PROVIDER`]. Unknown bits are kept and ignored.
    pub capabilities: u16,
    /// Zone where this node takes claims (empty = the endpoint host; always empty in
    /// legacy `DMPHB02` wires). Signing requires ASCII without whitespace/control;
    /// parsing, like the reference, only UTF-8 — treat it as untrusted text.
    pub claim_provider_zone: String,
    /// Signing time (Unix seconds).
    pub ts: u64,
    /// Expiry; must be greater than `ts`; valid while `now < exp`.
    pub exp: u64,
}

/// True for the bytes the reference calls whitespace or control characters (ASCII).
fn is_space_or_control(b: u8) -> bool {
    b <= 0x20 || b == 0x7f
}

/// IPv4 literals the reference refuses: Python 3.11 `ipaddress` private, loopback,
/// link-local, multicast, reserved or unspecified.
fn ipv4_non_public(ip: Ipv4Addr) -> bool {
    const NETS: [(u32, u32); 15] = [
        (0x0000_0000, 8),  // 0.0.0.0/8 (includes unspecified)
        (0x0a00_0000, 8),  // 10/8
        (0x7f00_0000, 8),  // 127/8 loopback
        (0xa9fe_0000, 16), // 169.254/16 link-local
        (0xac10_0000, 12), // 172.16/12
        (0xc000_0000, 29), // 192.0.0.0/29
        (0xc000_00aa, 31), // 192.0.0.170/31
        (0xc000_0200, 24), // 192.0.2/24 TEST-NET-1
        (0xc0a8_0000, 16), // 192.168/16
        (0xc612_0000, 15), // 198.18/15 benchmarking
        (0xc633_6400, 24), // 198.51.100/24 TEST-NET-2
        (0xcb00_7100, 24), // 203.0.113/24 TEST-NET-3
        (0xe000_0000, 4),  // 224/4 multicast
        (0xf000_0000, 4),  // 240/4 reserved
        (0xffff_ffff, 32), // broadcast
    ];
    let a = u32::from(ip);
    NETS.iter().any(|&(net, len)| a >> (32 - len) == net >> (32 - len))
}

/// IPv6 literals the reference refuses (same flags as [`ipv4_non_public`]). Their union
/// leaves exactly `2000::/3` minus `2001::/23` and `2001:db8::/32`, plus site-local
/// `fec0::/10` (Python does not flag it).
fn ipv6_non_public(ip: Ipv6Addr) -> bool {
    let a = u128::from(ip);
    let in_net = |net: u128, len: u32| a >> (128 - len) == net >> (128 - len);
    let global_unicast = in_net(0x2000 << 112, 3);
    let site_local = in_net(0xfec0 << 112, 10);
    let special = in_net(0x2001 << 112, 23) || in_net(0x2001_0db8 << 96, 32);
    !(site_local || (global_unicast && !special))
}

/// RFC 1123 host name: dot-separated labels of 1..63 letters, digits and hyphens, not
/// starting or ending with a hyphen, at most 253 bytes; one trailing dot allowed.
fn is_rfc1123_host(host: &str) -> bool {
    let h = host.strip_suffix('.').unwrap_or(host);
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            let b = l.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        })
}

/// Validate a heartbeat endpoint (§4.10): ASCII, 1..255 bytes, no whitespace/control,
/// scheme `http`/`https` (any case), a host, an optional port `1..=65535`, no
/// userinfo/path/query/fragment; unless `allow_private`, no localhost alias (`localhost`,
/// `*.localhost`, `localhost.localdomain`, `ip6-localhost`, trailing dots ignored) and
/// no non-public IP literal. Bracketed hosts must be IPv6 literals (optional `%zone` of
/// letters, digits, `.`, `-`, `_`); any other host must be an IPv4 literal or an RFC 1123
/// host name (so no quotes, backslashes, `%`, `_` or other junk reaches a label or a page).
///
/// Stricter than the reference on purpose where its URL splitter lets malformed shapes
/// through (non-numeric ports, `[v1.x]`, bare `?`/`#` tails, `*.localhost`).
pub fn validate_endpoint(endpoint: &str, allow_private: bool) -> Result<(), ProtoError> {
    let bad = |why: &str| Err(ProtoError::field("endpoint", why.to_string()));
    if endpoint.is_empty() || endpoint.len() > MAX_ENDPOINT_LEN || !endpoint.is_ascii() {
        return bad("must be 1..255 ASCII bytes");
    }
    if endpoint.bytes().any(is_space_or_control) {
        return bad("contains whitespace or control characters");
    }
    let Some((scheme, rest)) = endpoint.split_once("://") else {
        return bad("must be <scheme>://<host>[:port]");
    };
    if !scheme.eq_ignore_ascii_case("https") && !scheme.eq_ignore_ascii_case("http") {
        return bad("scheme must be http or https");
    }
    if rest.contains(['/', '?', '#']) {
        return bad("no path, query or fragment allowed");
    }
    if rest.contains('@') {
        return bad("no userinfo allowed");
    }
    let (host, port, ip) = if let Some(inner) = rest.strip_prefix('[') {
        let Some((host, after)) = inner.split_once(']') else {
            return bad("unterminated IPv6 literal");
        };
        let port = match after {
            "" => None,
            p => match p.strip_prefix(':') {
                Some(p) => Some(p),
                None => return bad("junk after IPv6 literal"),
            },
        };
        let (addr, zone_id) = host.split_once('%').unwrap_or((host, ""));
        if !zone_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
        {
            return bad("bad IPv6 zone id");
        }
        let Ok(v6) = addr.parse::<Ipv6Addr>() else {
            return bad("bracketed host is not an IPv6 address");
        };
        (host, port, Some(ipv6_non_public(v6)))
    } else {
        if rest.contains(['[', ']']) {
            return bad("brackets outside an IPv6 literal");
        }
        let (host, port) = match rest.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        };
        let ip = host.parse::<Ipv4Addr>().ok();
        if ip.is_none() && !is_rfc1123_host(host) {
            return bad("host must be an RFC 1123 host name or an IP literal");
        }
        (host, port, ip.map(ipv4_non_public))
    };
    if host.is_empty() {
        return bad("must include a host");
    }
    if let Some(p) = port {
        let numeric = !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit());
        if !numeric || !(1..=65535).contains(&p.parse::<u32>().unwrap_or(0)) {
            return bad("port must be 1..65535");
        }
    }
    if allow_private {
        return Ok(());
    }
    let name = host.to_ascii_lowercase();
    let name = name.trim_end_matches('.');
    if matches!(name, "localhost" | "localhost.localdomain" | "ip6-localhost")
        || name.ends_with(".localhost")
    {
        return bad("localhost alias");
    }
    if ip == Some(true) {
        return bad("IP literal in a non-public range");
    }
    Ok(())
}

fn validate_version(v: &str) -> Result<(), ProtoError> {
    if v.len() > MAX_VERSION_LEN || !v.is_ascii() {
        return Err(ProtoError::field("version", "must be ≤ 32 ASCII bytes"));
    }
    Ok(())
}

fn validate_zone(z: &str) -> Result<(), ProtoError> {
    if z.len() > MAX_CLAIM_PROVIDER_ZONE_LEN || !z.is_ascii() || z.bytes().any(is_space_or_control)
    {
        return Err(ProtoError::field(
            "claim_provider_zone",
            "must be ≤ 64 ASCII bytes without whitespace/control",
        ));
    }
    Ok(())
}

impl Heartbeat {
    /// True when the node advertises [`CAP_CLAIM_PROVIDER`].
    pub fn is_claim_provider(&self) -> bool {
        self.capabilities & CAP_CLAIM_PROVIDER != 0
    }

    /// Sign as `DMPHB03` under the strict [`HeartbeatPolicy::default`].
    pub fn sign(&self, key: &SigningKey) -> Result<String, ProtoError> {
        self.sign_with(key, &HeartbeatPolicy::default())
    }

    /// Validate (endpoint per `policy`, version, zone, `ts < 2^63`, `exp > ts`), sign with
    /// the operator key (which must match `operator_spk`) and return the TXT value.
    pub fn sign_with(
        &self,
        key: &SigningKey,
        policy: &HeartbeatPolicy,
    ) -> Result<String, ProtoError> {
        validate_endpoint(&self.endpoint, policy.allow_private_endpoints)?;
        validate_version(&self.version)?;
        validate_zone(&self.claim_provider_zone)?;
        if self.ts > i64::MAX as u64 || self.exp <= self.ts {
            return Err(ProtoError::field("exp", "need ts < 2^63 and exp > ts"));
        }
        ensure_signer(key, &self.operator_spk)?;
        let mut b = Vec::with_capacity(128 + self.endpoint.len());
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&(self.endpoint.len() as u16).to_be_bytes());
        b.extend_from_slice(self.endpoint.as_bytes());
        b.extend_from_slice(&self.operator_spk);
        b.push(self.version.len() as u8);
        b.extend_from_slice(self.version.as_bytes());
        b.extend_from_slice(&self.capabilities.to_be_bytes());
        b.push(self.claim_provider_zone.len() as u8);
        b.extend_from_slice(self.claim_provider_zone.as_bytes());
        b.extend_from_slice(&self.ts.to_be_bytes());
        b.extend_from_slice(&self.exp.to_be_bytes());
        let sig = keys::sign(key, &b);
        b.extend_from_slice(&sig);
        encode_strict_wire(PREFIX_HEARTBEAT, &b)
    }

    fn from_body(body: &[u8], allow_private: bool) -> Option<Self> {
        let mut r = Reader::new(body);
        let magic = r.take(7)?;
        let legacy = match magic {
            m if m == MAGIC => false,
            m if m == MAGIC_LEGACY => true,
            _ => return None,
        };
        let ep_len = r.u16()? as usize;
        let endpoint = std::str::from_utf8(r.take(ep_len)?).ok()?;
        validate_endpoint(endpoint, allow_private).ok()?;
        let operator_spk = r.array::<32>()?;
        let v_len = r.u8()? as usize;
        let version = std::str::from_utf8(r.take(v_len)?).ok()?;
        validate_version(version).ok()?;
        let capabilities = r.u16()?;
        // Parse checks only UTF-8 and the cap; the character rules apply when signing.
        let zone = if legacy {
            ""
        } else {
            let z_len = r.u8()? as usize;
            std::str::from_utf8(r.take(z_len)?).ok()?
        };
        if zone.len() > MAX_CLAIM_PROVIDER_ZONE_LEN {
            return None;
        }
        let ts = r.u64()?;
        let exp = r.u64()?;
        if !r.is_empty() || exp <= ts {
            return None;
        }
        Some(Heartbeat {
            endpoint: endpoint.to_string(),
            operator_spk,
            version: version.to_string(),
            capabilities,
            claim_provider_zone: zone.to_string(),
            ts,
            exp,
        })
    }

    /// Strict parse: [`Self::parse_and_verify_with`] under [`HeartbeatPolicy::default`].
    pub fn parse_and_verify(txt: &str, now: u64) -> Option<Self> {
        Self::parse_and_verify_with(txt, now, &HeartbeatPolicy::default())
    }

    /// Parse (`DMPHB03` or legacy `DMPHB02`) and verify under the embedded key, then
    /// `|ts − now| > max_skew` → `None`, `exp ≤ now` → `None`, 30-day cap.
    pub fn parse_and_verify_with(txt: &str, now: u64, policy: &HeartbeatPolicy) -> Option<Self> {
        let blob = decode_strict_wire(txt, PREFIX_HEARTBEAT)?;
        let (body, sig) = split_sig(&blob, MIN_BLOB_LEN)?;
        let hb = Self::from_body(body, policy.allow_private_endpoints)?;
        if !keys::verify(&hb.operator_spk, body, sig) {
            return None;
        }
        if hb.ts.abs_diff(now) > policy.max_skew
            || hb.exp <= now
            || beyond_cap(hb.exp, now, CAP_30_DAYS)
        {
            return None;
        }
        Some(hb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_rules() {
        // (endpoint, strict verdict, verdict with allow_private)
        let table = [
            ("https://node.example.com", true, true),
            ("HTTP://node.example.com:8053", true, true),
            ("https://[2606:4700::1]:443", true, true),
            ("https://8.8.8.8", true, true),
            ("https://100.64.0.1", true, true),
            ("https://[fec0::1]", true, true),
            ("https://192.0.0.9", true, true),
            ("https://01.02.03.04", true, true), // not an IP literal for Python either
            ("https://localhost.", false, true),
            ("https://a.localhost", false, true),
            ("https://LOCALHOST", false, true),
            ("https://ip6-localhost", false, true),
            ("http://127.0.0.1:8053", false, true),
            ("https://10.1.2.3", false, true),
            ("https://192.0.2.1", false, true),
            ("https://224.0.0.1", false, true),
            ("https://255.255.255.255", false, true),
            ("https://[::1]", false, true),
            ("https://[fe80::1%eth0]", false, true),
            ("https://[2001:db8::1]", false, true),
            ("https://[2001:20::1]", false, true),
            ("https://[64:ff9b::1]", false, true),
            ("https://[ff02::1]", false, true),
            ("ftp://a.com", false, false),
            ("https://", false, false),
            ("https://:80", false, false),
            ("https://a.com/", false, false),
            ("https://a.com?x", false, false),
            ("https://u@a.com", false, false),
            ("https://a.com:0", false, false),
            ("https://a.com:65536", false, false),
            ("https://a.com:8o", false, false),
            ("https://[v1.x]", false, false),
            ("https://[8.8.8.8]", false, false),
            ("https://[::1", false, false),
            ("https://a .com", false, false),
            ("https://é.com", false, false),
            ("https://a\"b.com", false, false),
            ("https://a\\b.com", false, false),
            ("https://a%22b.com", false, false),
            ("https://a_b.com", false, false),
            ("https://-a.com", false, false),
            ("https://a-.com", false, false),
            ("https://a..com", false, false),
            ("https://a.com.", true, true),
            ("https://a.com..", false, false),
            ("http://x\"}1:80", false, false),
            ("https://[fe80::1%e\"th0]", false, false),
            ("https://my-node.example.com:8443", true, true),
        ];
        for (ep, strict, loose) in table {
            assert_eq!(validate_endpoint(ep, false).is_ok(), strict, "{ep} strict");
            assert_eq!(validate_endpoint(ep, true).is_ok(), loose, "{ep} loose");
        }
        let long = |n: usize| format!("https://{}", vec!["a".repeat(50); n].join("."));
        assert!(validate_endpoint(&long(4), false).is_ok());
        assert!(validate_endpoint(&format!("https://{}", "a".repeat(64)), false).is_err());
        assert!(validate_endpoint(&format!("https://{}", "a".repeat(248)), false).is_err());
    }

    fn sample(key: &SigningKey) -> Heartbeat {
        Heartbeat {
            endpoint: "https://node.example.com".into(),
            operator_spk: key.verifying_key().to_bytes(),
            version: "0.7.5".into(),
            capabilities: 3,
            claim_provider_zone: "mesh.example.com".into(),
            ts: 1_000_000,
            exp: 1_000_600,
        }
    }

    #[test]
    fn sign_rules_and_legacy_parse() {
        let key = SigningKey::from_bytes(&[5u8; 32]);
        let hb = sample(&key);
        assert!(hb.sign(&key).is_ok());
        let bad = |f: &dyn Fn(&mut Heartbeat)| {
            let mut h = hb.clone();
            f(&mut h);
            h.sign(&key).is_err()
        };
        assert!(bad(&|h| h.exp = h.ts));
        assert!(bad(&|h| h.ts = 1 << 63));
        assert!(bad(&|h| h.version = "v".repeat(33)));
        assert!(bad(&|h| h.version = "é".into()));
        assert!(bad(&|h| h.claim_provider_zone = "a b".into()));
        assert!(bad(&|h| h.claim_provider_zone = "z".repeat(65)));
        assert!(bad(&|h| h.endpoint = "http://127.0.0.1:8053".into()));
        assert!(hb.sign(&SigningKey::from_bytes(&[6u8; 32])).is_err(), "key must match");

        // Loopback only with the test knob, on both sides.
        let lo = Heartbeat { endpoint: "http://127.0.0.1:8053".into(), ..hb.clone() };
        let open = HeartbeatPolicy { allow_private_endpoints: true, ..HeartbeatPolicy::default() };
        let txt = lo.sign_with(&key, &open).unwrap();
        assert_eq!(Heartbeat::parse_and_verify(&txt, lo.ts), None);
        assert_eq!(Heartbeat::parse_and_verify_with(&txt, lo.ts, &open), Some(lo));

        // Legacy DMPHB02: no zone field; DMPHB01 is refused.
        let mut body = b"DMPHB02".to_vec();
        body.extend_from_slice(&(hb.endpoint.len() as u16).to_be_bytes());
        body.extend_from_slice(hb.endpoint.as_bytes());
        body.extend_from_slice(&hb.operator_spk);
        body.push(5);
        body.extend_from_slice(b"0.7.4");
        body.extend_from_slice(&1u16.to_be_bytes());
        body.extend_from_slice(&hb.ts.to_be_bytes());
        body.extend_from_slice(&hb.exp.to_be_bytes());
        let wire = |body: &[u8]| {
            let mut blob = body.to_vec();
            blob.extend_from_slice(&keys::sign(&key, body));
            format!("{PREFIX_HEARTBEAT}{}", crate::proto::b64::encode(&blob))
        };
        let parsed = Heartbeat::parse_and_verify(&wire(&body), hb.ts).unwrap();
        assert_eq!((parsed.version.as_str(), parsed.claim_provider_zone.as_str()), ("0.7.4", ""));
        body[6] = b'1';
        assert_eq!(Heartbeat::parse_and_verify(&wire(&body), hb.ts), None);
    }
}
