//! DNS over HTTPS (RFC 8484) at `/dns-query` on the HTTP(S) listener: GET with
//! `?dns=<base64url>` and POST with an `application/dns-message` body, answered by the
//! same code as DNS over TCP ([`Responder`]: plain queries from the view with no size
//! truncation, the rest by the slow path). `Cache-Control: max-age` is the smallest TTL
//! in the answer (0 when it has no records).

use std::net::{IpAddr, SocketAddr};

use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse};
use base64::Engine as _;

use super::dns::Responder;

const CONTENT_TYPE: &str = "application/dns-message";
/// The largest DNS message.
const MAX_MESSAGE: usize = 65535;

fn plain(status: u16, msg: &str) -> HttpResponse {
    HttpResponse::build(
        actix_web::http::StatusCode::from_u16(status)
            .unwrap_or(actix_web::http::StatusCode::BAD_REQUEST),
    )
    .content_type("text/plain")
    .body(format!("{msg}\n"))
}

fn b64url() -> base64::engine::GeneralPurpose {
    base64::engine::GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    )
}

/// The DNS message of a request, or the error response.
fn message(req: &HttpRequest, body: &[u8]) -> Result<Vec<u8>, Box<HttpResponse>> {
    if req.method() == Method::GET {
        let q = web_query(req.query_string(), "dns")
            .ok_or_else(|| Box::new(plain(400, "missing dns parameter")))?;
        if q.len() > MAX_MESSAGE * 4 / 3 + 4 {
            return Err(Box::new(plain(414, "dns parameter too long")));
        }
        return b64url()
            .decode(q.as_bytes())
            .map_err(|_| Box::new(plain(400, "dns parameter is not base64url")));
    }
    if req.method() == Method::POST {
        let ct = req.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
        if !ct.trim().eq_ignore_ascii_case(CONTENT_TYPE) {
            return Err(Box::new(plain(415, "content-type must be application/dns-message")));
        }
        if body.len() > MAX_MESSAGE {
            return Err(Box::new(plain(413, "message too large")));
        }
        return Ok(body.to_vec());
    }
    Err(Box::new(HttpResponse::MethodNotAllowed().insert_header(("allow", "GET, POST")).finish()))
}

/// The value of `key` in a query string (no percent-decoding: base64url needs none).
fn web_query<'a>(qs: &'a str, key: &str) -> Option<&'a str> {
    qs.split('&').find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

/// Answer one DoH request from `client`.
pub async fn handle(req: &HttpRequest, body: &[u8], r: &Responder, client: IpAddr) -> HttpResponse {
    let msg = match message(req, body) {
        Ok(m) => m,
        Err(resp) => return *resp,
    };
    if msg.len() < 12 {
        return plain(400, "not a DNS message");
    }
    let Some(out) = r.answer(&msg, SocketAddr::new(client, 0)).await else {
        return plain(400, "not a DNS query");
    };
    let max_age = crate::dnswire::ttl::min_ttl(&out).unwrap_or(0);
    HttpResponse::Ok()
        .content_type(CONTENT_TYPE)
        .insert_header(("cache-control", format!("max-age={max_age}")))
        .body(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_param() {
        assert_eq!(web_query("a=1&dns=AAAB", "dns"), Some("AAAB"));
        assert_eq!(web_query("dnsx=1", "dns"), None);
        assert_eq!(b64url().decode("AAAB").unwrap(), vec![0, 0, 1]);
        assert_eq!(b64url().decode("AAE").unwrap(), vec![0, 1]);
        assert_eq!(b64url().decode("AAE=").unwrap(), vec![0, 1]);
    }
}
