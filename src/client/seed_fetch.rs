//! Opt-in HTTP fetch of a public seed list (one zone per line, `#` comments) for
//! discovery. Guarded against SSRF-style abuse: HTTPS only, no redirects, at most 64 KiB,
//! and the host must resolve only to public addresses — unless `allow_private` is set,
//! which exists for tests on one machine.

use std::net::IpAddr;
use std::time::Duration;

/// Largest seed list accepted.
pub const MAX_BYTES: usize = 64 * 1024;

/// Why a seed list was not used.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("{0}: only https:// seed URLs are fetched")]
    Scheme(String),
    #[error("{0}: bad URL")]
    Url(String),
    #[error("{0}: resolves to a private, loopback or reserved address")]
    PrivateTarget(String),
    #[error("{0}: {1}")]
    Fetch(String, String),
}

/// True for addresses a public seed host must not resolve to.
pub fn is_non_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => {
            v.is_private()
                || v.is_loopback()
                || v.is_link_local()
                || v.is_multicast()
                || v.is_broadcast()
                || v.is_unspecified()
                || v.is_documentation()
                || v.octets()[0] == 0
                || (v.octets()[0] == 100 && (64..128).contains(&v.octets()[1]))
                || v.octets()[0] >= 240
        }
        IpAddr::V6(v) => {
            v.is_loopback()
                || v.is_unspecified()
                || v.is_multicast()
                || (v.segments()[0] & 0xfe00) == 0xfc00
                || (v.segments()[0] & 0xffc0) == 0xfe80
                || v.to_ipv4_mapped().map(|m| is_non_public(IpAddr::V4(m))).unwrap_or(false)
        }
    }
}

/// Zones listed in a seed file body.
pub fn parse_list(body: &str) -> Vec<String> {
    body.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .filter(|l| {
            l.split('@')
                .next()
                .map(|z| crate::proto::dnsname::validate(z).is_some())
                .unwrap_or(false)
        })
        .map(|l| l.to_ascii_lowercase())
        .collect()
}

/// Fetch and parse one seed list.
pub async fn fetch(url: &str, allow_private: bool) -> Result<Vec<String>, SeedError> {
    let u = url::Url::parse(url).map_err(|_| SeedError::Url(url.into()))?;
    if u.scheme() != "https" && !(allow_private && u.scheme() == "http") {
        return Err(SeedError::Scheme(url.into()));
    }
    let host = u.host_str().ok_or_else(|| SeedError::Url(url.into()))?.to_string();
    let port = u.port_or_known_default().unwrap_or(443);
    if !allow_private {
        let addrs: Vec<_> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| SeedError::Fetch(url.into(), e.to_string()))?
            .collect();
        if addrs.is_empty() || addrs.iter().any(|a| is_non_public(a.ip())) {
            return Err(SeedError::PrivateTarget(url.into()));
        }
    }
    let client =
        awc::Client::builder().timeout(Duration::from_secs(5)).disable_redirects().finish();
    let mut resp =
        client.get(url).send().await.map_err(|e| SeedError::Fetch(url.into(), e.to_string()))?;
    if !resp.status().is_success() {
        return Err(SeedError::Fetch(
            url.into(),
            format!("HTTP {} (redirects are not followed)", resp.status()),
        ));
    }
    let body = resp
        .body()
        .limit(MAX_BYTES)
        .await
        .map_err(|e| SeedError::Fetch(url.into(), e.to_string()))?;
    Ok(parse_list(&String::from_utf8_lossy(&body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_targets() {
        assert_eq!(
            parse_list("# seeds\ndmp.example.org\n\n bad..name \nMESH.test # c\n"),
            vec!["dmp.example.org", "mesh.test"]
        );
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.1.1",
            "169.254.0.1",
            "::1",
            "fd00::1",
            "100.64.0.1",
            "0.0.0.0",
        ] {
            assert!(is_non_public(ip.parse().unwrap()), "{ip}");
        }
        assert!(!is_non_public("1.1.1.1".parse().unwrap()));
        assert!(!is_non_public("2606:4700::1111".parse().unwrap()));
    }
}
