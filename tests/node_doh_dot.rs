//! DNS over HTTPS (RFC 8484) and DNS over TLS (RFC 7858) against a real node process:
//! Knot's `kdig +https` / `+https-get` / `+tls` get the same RRsets as plain UDP/TCP,
//! DoH carries answers UDP would truncate, `Cache-Control: max-age` follows the answer's
//! TTL; and our CLI sends and receives with the node's DoH URL as its only resolver.
#![cfg(feature = "net")]

mod cli_common;
mod common;

use std::path::Path;
use std::process::Command;

use common::*;

const OP: &str = "operator-secret";

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok()
}

/// A self-signed certificate for 127.0.0.1 (openssl CLI).
fn self_signed(dir: &Path) -> (String, String) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (cert.to_string_lossy().into_owned(), key.to_string_lossy().into_owned())
}

/// `curl -sk` with extra args; returns (status line + headers, body).
fn curl(args: &[&str]) -> (String, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let hdr = dir.path().join("h");
    let body = dir.path().join("b");
    let out = Command::new("curl")
        .args(["-sk", "--max-time", "10", "-D"])
        .arg(&hdr)
        .arg("-o")
        .arg(&body)
        .args(args)
        .output()
        .expect("curl");
    assert!(out.status.success(), "curl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    (
        std::fs::read_to_string(&hdr).unwrap_or_default().to_ascii_lowercase(),
        std::fs::read(&body).unwrap_or_default(),
    )
}

fn publish_https(base: &str, name: &str, value: &str) {
    let body = serde_json::json!({"value": value, "ttl": 300}).to_string();
    let (h, b) = curl(&[
        "-X",
        "POST",
        "-H",
        &format!("Authorization: Bearer {OP}"),
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        &body,
        &format!("{base}/v1/records/{name}"),
    ]);
    assert_eq!(status(&h), 201, "{h} {b:?}");
}

/// The status code of a curl header dump (HTTP/1.1 or HTTP/2).
fn status(h: &str) -> u16 {
    h.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// `kdig` TXT answer lines (`+short`), sorted.
fn kdig(args: &[&str]) -> Vec<String> {
    let out = Command::new("kdig").args(args).arg("+short").arg("+timeout=5").output().unwrap();
    assert!(out.status.success(), "kdig {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with(';'))
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

#[test]
fn kdig_https_and_tls_get_the_same_rrsets_as_udp() {
    assert!(have("kdig"), "kdig missing: apt-get install knot-dnsutils (CI does)");
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(tmp.path());
    let dot_port = free_tcp_port("127.0.0.1").to_string();
    let dot = format!("127.0.0.1:{dot_port}");
    let n = Node::start(
        "mesh.test",
        &[
            ("DNSMESH_AUTH__OPERATOR_TOKEN", OP),
            ("DNSMESH_HTTP__TLS_CERT", &cert),
            ("DNSMESH_HTTP__TLS_KEY", &key),
            ("DNSMESH_DNS__TLS_LISTEN", &dot),
            ("DNSMESH_LIMITS__LIMIT_LOOPBACK", "true"),
            ("DNSMESH_LIMITS__HTTP_BURST", "1000"),
        ],
    );
    let base = format!("https://{}", n.http);
    let long = "L".repeat(600); // three character-strings on the wire
    for v in ["first value", "second", long.as_str()] {
        publish_https(&base, "a.mesh.test", v);
    }
    // An RRset far larger than a UDP reply may be (UDP truncates, DoH must not).
    for i in 0..12 {
        publish_https(&base, "big.mesh.test", &format!("{i:02}{}", "b".repeat(400)));
    }
    let ip = "@127.0.0.1";
    let udp_port = n.dns[0].port().to_string();
    let http_port = n.http.port().to_string();
    for name in ["a.mesh.test", "A.Mesh.Test", "missing.mesh.test"] {
        let udp = kdig(&[ip, "-p", &udp_port, name, "TXT"]);
        let doh_post = kdig(&[ip, "-p", &http_port, "+https=/dns-query", name, "TXT"]);
        let doh_get = kdig(&[ip, "-p", &http_port, "+https=/dns-query", "+https-get", name, "TXT"]);
        let tls = kdig(&[ip, "-p", &dot_port, "+tls", name, "TXT"]);
        assert_eq!(doh_post, udp, "{name}: DoH POST vs UDP");
        assert_eq!(doh_get, udp, "{name}: DoH GET vs UDP");
        assert_eq!(tls, udp, "{name}: DoT vs UDP");
        if name != "missing.mesh.test" {
            assert_eq!(udp.len(), 3, "{udp:?}");
        }
    }
    // The big RRset: DoH and DoT carry all 12 values, like TCP.
    let tcp = kdig(&[ip, "-p", &udp_port, "+tcp", "big.mesh.test", "TXT"]);
    assert_eq!(tcp.len(), 12);
    assert_eq!(kdig(&[ip, "-p", &http_port, "+https=/dns-query", "big.mesh.test", "TXT"]), tcp);
    assert_eq!(kdig(&[ip, "-p", &dot_port, "+tls", "big.mesh.test", "TXT"]), tcp);
    // UDP with a 1232-byte payload is truncated for the same name.
    let q = query("big.mesh.test", hickory_proto::rr::RecordType::TXT, Some(1232));
    assert!(parse(&udp_exchange(n.dns[0], &q)).metadata.truncation);

    // Raw DoH: the wire reply equals the TCP reply; Cache-Control from the TTL.
    let qfile = tmp.path().join("q.bin");
    let q = query("a.mesh.test", hickory_proto::rr::RecordType::TXT, None);
    std::fs::write(&qfile, &q).unwrap();
    let url = format!("{base}/dns-query");
    let (h, body) = curl(&[
        "-H",
        "content-type: application/dns-message",
        "--data-binary",
        &format!("@{}", qfile.display()),
        &url,
    ]);
    assert!(h.contains("content-type: application/dns-message"), "{h}");
    assert!(h.contains("cache-control: max-age=60"), "{h}");
    assert_eq!(body, tcp_exchange(n.dns[0], &[q])[0]);
    // A negative answer: max-age is the SOA's negative TTL (min(TTL, MINIMUM)).
    let q = query("nope.mesh.test", hickory_proto::rr::RecordType::TXT, None);
    std::fs::write(&qfile, &q).unwrap();
    let (h, body) = curl(&[
        "-H",
        "content-type: application/dns-message",
        "--data-binary",
        &format!("@{}", qfile.display()),
        &url,
    ]);
    assert!(h.contains("cache-control: max-age=60"), "{h}");
    assert_eq!(parse(&body).metadata.response_code, hickory_proto::op::ResponseCode::NXDomain);
    // Wrong media type, missing parameter, junk.
    let (h, _) = curl(&["-H", "content-type: text/plain", "--data-binary", "x", &url]);
    assert_eq!(status(&h), 415, "{h}");
    let (h, _) = curl(&[&url]);
    assert_eq!(status(&h), 400, "{h}");
    let (h, _) = curl(&[&format!("{url}?dns=!!!")]);
    assert_eq!(status(&h), 400, "{h}");
    // DoH and DoT cannot be used for zone transfers.
    let q = query("mesh.test", hickory_proto::rr::RecordType::AXFR, None);
    std::fs::write(&qfile, &q).unwrap();
    let (_, body) = curl(&[
        "-H",
        "content-type: application/dns-message",
        "--data-binary",
        &format!("@{}", qfile.display()),
        &url,
    ]);
    assert_eq!(parse(&body).metadata.response_code, hickory_proto::op::ResponseCode::Refused);
}

/// DoT shares the DNS/TCP connection caps: a client over its per-IP cap is closed at
/// once, and a handshake that never comes is cut at the idle timeout.
#[test]
fn dot_connections_are_capped_like_tcp() {
    use std::io::Read;
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(tmp.path());
    let dot_port = free_tcp_port("127.0.0.1");
    let dot = format!("127.0.0.1:{dot_port}");
    let n = Node::start(
        "mesh.test",
        &[
            ("DNSMESH_HTTP__TLS_CERT", &cert),
            ("DNSMESH_HTTP__TLS_KEY", &key),
            ("DNSMESH_DNS__TLS_LISTEN", &dot),
            ("DNSMESH_LIMITS__LIMIT_LOOPBACK", "true"),
            ("DNSMESH_DNS__TCP_MAX_PER_IP", "2"),
            ("DNSMESH_DNS__TCP_TIMEOUT_SECS", "1"),
        ],
    );
    let _keep: Vec<_> = (0..2).map(|_| std::net::TcpStream::connect(&dot).unwrap()).collect();
    let mut third = std::net::TcpStream::connect(&dot).unwrap();
    third.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    let mut b = [0u8; 1];
    let t0 = std::time::Instant::now();
    assert_eq!(third.read(&mut b).unwrap_or(0), 0, "over the per-IP cap: closed");
    assert!(t0.elapsed().as_secs() < 1, "closed at once, not at the idle timeout");
    // A silent connection (no TLS handshake ever sent) is cut at the idle timeout.
    let mut silent = _keep.into_iter().next().unwrap();
    silent.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    assert_eq!(silent.read(&mut b).unwrap_or(1), 0, "idle handshake cut");
    drop(n);
}

#[test]
fn cli_sends_and_receives_with_the_doh_url_as_only_resolver() {
    use cli_common::User;
    let node = Node::start("mesh.test", &[("DNSMESH_AUTH__OPERATOR_TOKEN", OP)]);
    let doh = format!("{}/dns-query", node.url());
    let r = vec![doh];
    let dns_before = dns_answers(&node);
    let (alice, bob) = (User::new("alice"), User::new("bob"));
    alice.setup("mesh.test", &node.url(), node.dns[0], &r, "http", true);
    bob.setup("mesh.test", &node.url(), node.dns[0], &r, "http", true);
    alice.ok(&["identity", "fetch", &bob.name, "--add"]);
    bob.ok(&["identity", "fetch", &format!("{}@mesh.test", alice.name), "--add"]);
    let msg = format!("over DoH to {}", bob.name);
    alice.ok(&["send", &bob.name, &msg]);
    let got = bob.recv_until(&msg, 5);
    assert!(got.iter().any(|m| m["text"] == msg.as_str()));
    let reply = "and back over DoH";
    bob.ok(&["send", &alice.name, reply]);
    alice.recv_until(reply, 5);
    // Every read went over DoH: the node answered no DNS query over UDP or TCP.
    assert_eq!(dns_answers(&node), dns_before, "the CLI used plain DNS");
    let (s, m) = http(&node.url(), "GET", "/metrics", Some(OP), "").unwrap();
    assert_eq!(s, 200);
    let doh: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("dmp_dns_queries_total{outcome=\"doh\"} ")?.parse().ok())
        .unwrap_or(0);
    assert!(doh >= 4, "DoH queries seen: {doh}");
}

/// Plain DNS answers (UDP + TCP) counted by the node.
fn dns_answers(n: &Node) -> u64 {
    let (s, m) = http(&n.url(), "GET", "/metrics", Some(OP), "").unwrap();
    assert_eq!(s, 200);
    m.lines()
        .filter(|l| {
            ["noerror", "nxdomain", "refused", "other"]
                .iter()
                .any(|o| l.starts_with(&format!("dmp_dns_queries_total{{outcome=\"{o}\"}}")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// DoH sits behind the per-IP HTTP bucket like the other routes (loopback limited as a
/// public node runs).
#[test]
fn doh_is_rate_limited_per_ip() {
    use base64::Engine as _;
    let n = Node::start(
        "mesh.test",
        &[
            ("DNSMESH_LIMITS__LIMIT_LOOPBACK", "true"),
            ("DNSMESH_LIMITS__HTTP_RATE", "1"),
            ("DNSMESH_LIMITS__HTTP_BURST", "5"),
        ],
    );
    let q = query("mesh.test", hickory_proto::rr::RecordType::SOA, None);
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&q);
    let path = format!("/dns-query?dns={b64}");
    let statuses: Vec<u16> =
        (0..20).map(|_| http(&n.url(), "GET", &path, None, "").unwrap().0).collect();
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert!((5..=7).contains(&ok), "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 20 - ok, "{statuses:?}");
}
