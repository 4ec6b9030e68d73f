//! HTTP for the CLI (ureq, blocking; rustls on ring for https, plain http without TLS):
//! the node's registration and record API, `/health`, and DNS-over-HTTPS.

use std::time::Duration;

use anyhow::{Context, Result};

/// A response: status, body text, and the `Date` header (for clock-skew checks).
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub date: Option<String>,
}

/// Whole-request timeout for calls to the home node.
pub const TIMEOUT: Duration = Duration::from_secs(15);

fn agent() -> ureq::Agent {
    agent_within(TIMEOUT)
}

fn agent_within(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into()
}

fn finish(
    resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    what: &str,
) -> Result<Reply> {
    let mut resp = resp.with_context(|| format!("{what}: cannot reach the node"))?;
    let status = resp.status().as_u16();
    let date = resp.headers().get("date").and_then(|v| v.to_str().ok()).map(str::to_string);
    let body = resp.body_mut().read_to_string().unwrap_or_default();
    Ok(Reply { status, body, date })
}

/// `GET url`.
pub fn get(url: &str) -> Result<Reply> {
    finish(agent().get(url).call(), &format!("GET {url}"))
}

/// `POST url` with a JSON body and an optional bearer token.
pub fn post_json(url: &str, token: Option<&str>, body: &serde_json::Value) -> Result<Reply> {
    post_json_within(url, token, body, TIMEOUT)
}

/// [`post_json`] with an explicit whole-request timeout (cluster fan-out uses 5 s).
pub fn post_json_within(
    url: &str,
    token: Option<&str>,
    body: &serde_json::Value,
    timeout: Duration,
) -> Result<Reply> {
    let mut r = agent_within(timeout).post(url);
    if let Some(t) = token {
        r = r.header("Authorization", &format!("Bearer {t}"));
    }
    finish(r.send_json(body), &format!("POST {url}"))
}

/// `DELETE url` with a JSON body, an optional bearer token and a whole-request timeout.
pub fn delete_json(
    url: &str,
    token: Option<&str>,
    body: &serde_json::Value,
    timeout: Duration,
) -> Result<Reply> {
    let mut r = agent_within(timeout).delete(url).force_send_body();
    if let Some(t) = token {
        r = r.header("Authorization", &format!("Bearer {t}"));
    }
    finish(r.send_json(body), &format!("DELETE {url}"))
}

/// How a Server-Sent Events stream ([`sse`]) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SseEnd {
    /// The server answered this status instead of a stream (404: it has none).
    Refused(u16),
    /// The stream ended (server closed it, connection lost, or the callback said stop).
    Closed,
}

/// `GET url` as Server-Sent Events: `on_line(Some(data))` for each `data:` line and
/// `on_line(None)` for each comment (the opening one and keep-alives); returns when the
/// stream ends or the callback returns false. Connecting and the response head have 5 and
/// 10 seconds; the body (the long-lived stream) is read for at most `backstop`, so a
/// connection that stalls without being closed ends too.
pub fn sse(
    url: &str,
    backstop: Duration,
    mut on_line: impl FnMut(Option<&str>) -> bool,
) -> Result<SseEnd> {
    use std::io::BufRead;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(5)))
        .timeout_recv_response(Some(Duration::from_secs(10)))
        .timeout_recv_body(Some(backstop))
        .http_status_as_error(false)
        .build()
        .into();
    let resp = agent
        .get(url)
        .header("Accept", "text/event-stream")
        .call()
        .with_context(|| format!("GET {url}: cannot reach the node"))?;
    let status = resp.status().as_u16();
    if status != 200 {
        return Ok(SseEnd::Refused(status));
    }
    let reader = std::io::BufReader::new(resp.into_body().into_reader());
    for line in reader.lines() {
        let Ok(line) = line else { break };
        let go = if let Some(d) = line.strip_prefix("data:") {
            on_line(Some(d.trim()))
        } else if line.starts_with(':') {
            on_line(None)
        } else {
            true
        };
        if !go {
            break;
        }
    }
    Ok(SseEnd::Closed)
}

/// RFC 8484 DNS-over-HTTPS: POST the wire query, return the wire reply.
pub fn doh(url: &str, query: &[u8]) -> Result<Vec<u8>> {
    let mut resp = agent()
        .post(url)
        .header("Content-Type", "application/dns-message")
        .header("Accept", "application/dns-message")
        .send(query)
        .with_context(|| format!("DoH {url}"))?;
    if resp.status().as_u16() != 200 {
        anyhow::bail!("DoH {url}: HTTP {}", resp.status().as_u16());
    }
    resp.body_mut()
        .with_config()
        .limit(65535)
        .read_to_vec()
        .with_context(|| format!("DoH {url}: reading the reply"))
}

/// Percent-encode one path segment (record names are plain LDH, but be safe).
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Short reason text from a node's JSON error body.
pub fn reason(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or_else(|| body.chars().take(200).collect())
}
