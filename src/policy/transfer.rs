//! `[transfer]` policy, pure: CIDR allow lists, operator transfer keys
//! (`name:hmac-sha256:BASE64SECRET`), and the persisted serial state.

use std::net::IpAddr;

use base64::Engine as _;

/// One allowed network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// True when `ip` is inside the network (IPv4-mapped IPv6 counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// Parse `ADDR/PREFIX` (or a bare address = one host).
pub fn parse_cidr(s: &str) -> Result<Cidr, String> {
    let s = s.trim();
    let (a, p) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let addr: IpAddr = a.parse().map_err(|_| format!("{s:?} is not ADDR/PREFIX"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match p {
        Some(p) => p
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("{s:?}: prefix must be 0..={max}"))?,
        None => max,
    };
    Ok(Cidr { addr, prefix })
}

/// Parse every entry of `[transfer] allow`.
pub fn parse_allow(list: &[String]) -> Result<Vec<Cidr>, String> {
    list.iter().map(|s| parse_cidr(s)).collect()
}

/// One operator transfer key.
#[derive(Clone, PartialEq, Eq)]
pub struct TransferKey {
    /// Lower-case key name with a trailing dot.
    pub name: String,
    /// `hmac-sha256`, `hmac-sha384` or `hmac-sha512`.
    pub algorithm: String,
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for TransferKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TransferKey({}, {})", self.name, self.algorithm)
    }
}

/// Parse every entry of `[transfer] tsig_keys` (`name:algorithm:BASE64SECRET`). Errors
/// never echo the secret.
pub fn parse_keys(list: &[String]) -> Result<Vec<TransferKey>, String> {
    let mut out: Vec<TransferKey> = Vec::new();
    for (i, s) in list.iter().enumerate() {
        let mut parts = s.trim().splitn(3, ':');
        let (Some(name), Some(alg), Some(secret)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("entry {i}: expected name:hmac-sha256:BASE64SECRET"));
        };
        let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
        if name.is_empty() || crate::proto::dnsname::validate(&name).is_none() {
            return Err(format!("entry {i}: key name {name:?} is not a DNS name"));
        }
        let alg = alg.trim().to_ascii_lowercase();
        if !matches!(alg.as_str(), "hmac-sha256" | "hmac-sha384" | "hmac-sha512") {
            return Err(format!(
                "entry {i} ({name}): algorithm {alg:?} (expected hmac-sha256, hmac-sha384 or hmac-sha512)"
            ));
        }
        let secret = base64::engine::general_purpose::STANDARD
            .decode(secret.trim())
            .map_err(|_| format!("entry {i} ({name}): the secret is not base64"))?;
        if secret.len() < 16 {
            return Err(format!("entry {i} ({name}): the secret is shorter than 16 bytes"));
        }
        let name = format!("{name}.");
        if out.iter().any(|k| k.name == name) {
            return Err(format!("entry {i}: key {name} appears twice"));
        }
        out.push(TransferKey { name, algorithm: alg, secret });
    }
    Ok(out)
}

/// What the node remembers about its published serial across restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SerialState {
    /// The last published serial.
    pub serial: u32,
    /// The zone digest at that serial.
    pub digest: u64,
}

impl SerialState {
    /// The file's text.
    pub fn encode(&self) -> String {
        format!("serial {}\ndigest {:016x}\n", self.serial, self.digest)
    }

    /// Parse the file's text (`None` when it is not ours or damaged).
    pub fn decode(text: &str) -> Option<SerialState> {
        let mut serial = None;
        let mut digest = None;
        for line in text.lines() {
            match line.split_once(' ') {
                Some(("serial", v)) => serial = v.trim().parse().ok(),
                Some(("digest", v)) => digest = u64::from_str_radix(v.trim(), 16).ok(),
                _ => {}
            }
        }
        Some(SerialState { serial: serial?, digest: digest? })
    }
}

/// Serial margin after an unclean restart (the zone differs from the last recorded
/// version): the next serial jumps past anything published since the record was written.
pub const UNCLEAN_MARGIN: u32 = 1_000_000;

/// The serial to start from after a restart: the recorded one when the zone is exactly
/// the one recorded (so secondaries keep asking IXFR from it), otherwise a serial
/// strictly greater than anything published before (recorded + margin, the clock, the
/// store's newest stamp), in RFC 1982 arithmetic.
pub fn restart_serial(saved: Option<SerialState>, digest: u64, floor: u32) -> u32 {
    use crate::dnswire::xfr::serial_gt;
    match saved {
        Some(s) if s.digest == digest => s.serial,
        Some(s) => {
            let bumped = s.serial.wrapping_add(UNCLEAN_MARGIN);
            if serial_gt(floor, bumped) {
                floor
            } else {
                bumped
            }
        }
        None => floor,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        let c = parse_cidr("127.0.0.0/8").unwrap();
        assert!(c.contains("127.1.2.3".parse().unwrap()));
        assert!(c.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!c.contains("10.0.0.1".parse().unwrap()));
        let h = parse_cidr("10.1.2.3").unwrap();
        assert!(h.contains("10.1.2.3".parse().unwrap()));
        assert!(!h.contains("10.1.2.4".parse().unwrap()));
        assert!(parse_cidr("::1/128").unwrap().contains("::1".parse().unwrap()));
        assert!(parse_cidr("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("nonsense").is_err());
    }

    #[test]
    fn keys() {
        let k = parse_keys(&[
            "Xfr.Key.:hmac-sha256:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".into()
        ])
        .unwrap();
        assert_eq!(k[0].name, "xfr.key.");
        assert_eq!(k[0].secret.len(), 32);
        for bad in
            ["x:hmac-md5:MDEyMzQ1Njc4OWFiY2RlZg==", "x:hmac-sha256:!!", "x:hmac-sha256:YQ==", "x"]
        {
            let e = parse_keys(&[bad.into()]).unwrap_err();
            assert!(!e.contains("MDEy"), "{e}");
        }
    }

    #[test]
    fn serial_state_roundtrip_and_restart() {
        let s = SerialState { serial: 4_000_000_000, digest: 0xdead_beef };
        assert_eq!(SerialState::decode(&s.encode()), Some(s));
        assert_eq!(SerialState::decode("junk"), None);
        assert_eq!(restart_serial(Some(s), 0xdead_beef, 5), 4_000_000_000);
        let r = restart_serial(Some(s), 1, 5);
        assert!(crate::dnswire::xfr::serial_gt(r, s.serial));
        assert_eq!(restart_serial(None, 1, 77), 77);
    }
}
