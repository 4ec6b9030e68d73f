//! A minimal blocking HTTP/1.1 client (plain HTTP) for the admin command and tests.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Send one request to `base` (`http://host:port`) and return (status, body).
pub fn request(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> std::io::Result<(u16, String)> {
    let hostport = base
        .strip_prefix("http://")
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "only http:// URLs are supported here",
            )
        })?
        .trim_end_matches('/');
    let mut s = TcpStream::connect(hostport)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, "no HTTP status line")
    })?;
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(len.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// As [`request`], for a binary response body (not chunked): (status, body bytes).
pub fn request_bytes(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> std::io::Result<(u16, Vec<u8>)> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let hostport = base
        .strip_prefix("http://")
        .ok_or_else(|| bad("only http:// URLs are supported here"))?
        .trim_end_matches('/');
    let mut s = TcpStream::connect(hostport)?;
    s.set_read_timeout(Some(Duration::from_secs(300)))?;
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| bad("no HTTP head"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no HTTP status line"))?;
    if head.contains("transfer-encoding: chunked") {
        return Err(bad("chunked binary bodies are not supported here"));
    }
    let body = raw.split_off(split + 4);
    if let Some(len) = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        if body.len() != len {
            return Err(bad("response body shorter than its Content-Length"));
        }
    }
    Ok((status, body))
}

/// One request to an `https://` base, trusting the PEM certificates in `ca_file` (e.g.
/// the node's own certificate) or, without one, the Mozilla roots: (status, body bytes).
pub fn request_https(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
    ca_file: Option<&std::path::Path>,
) -> std::io::Result<(u16, Vec<u8>)> {
    use ureq::tls::{parse_pem, PemItem, RootCerts, TlsConfig};
    let other = |e: String| std::io::Error::other(e);
    let mut tls = TlsConfig::builder();
    if let Some(ca) = ca_file {
        let pem = std::fs::read(ca)?;
        let certs: Vec<_> = parse_pem(&pem)
            .filter_map(|i| match i {
                Ok(PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        if certs.is_empty() {
            return Err(other(format!("{}: no PEM certificate", ca.display())));
        }
        tls = tls.root_certs(RootCerts::Specific(std::sync::Arc::new(certs)));
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(300)))
        .http_status_as_error(false)
        .tls_config(tls.build())
        .build()
        .into();
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let auth = token.map(|t| format!("Bearer {t}"));
    let resp = match method {
        "GET" => {
            let mut r = agent.get(&url);
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            r.call()
        }
        _ => {
            let mut r = agent.post(&url).header("Content-Type", "application/json");
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            r.send(body)
        }
    };
    let mut resp = resp.map_err(|e| other(format!("{url}: {e}")))?;
    let status = resp.status().as_u16();
    let bytes = resp
        .body_mut()
        .with_config()
        .limit(4 << 30)
        .read_to_vec()
        .map_err(|e| other(format!("{url}: {e}")))?;
    Ok((status, bytes))
}
