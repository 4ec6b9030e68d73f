//! Operating a node: structured logs, HTTP details (HEAD, trailing slash), operator
//! tokens and the audit trail, backup/restore, reload. Real node processes on loopback.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::*;

const OP: &str = "op-secret";

/// `[log] format = "json"`: every line the node writes on stderr is one JSON object with
/// exactly the fields timestamp, level, target, message and fields.
#[test]
fn json_log_lines_parse() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dnsmesh-node"))
        .arg("--config")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/dnsmesh.toml"))
        .args(["--zone", "log.test", "--dns-listen", "127.0.0.1:0", "--http-listen"])
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .env("DNSMESH_LOG__FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(out.any(|l| l.unwrap().starts_with("dnsmesh-node ready")), "node did not start");
    // SIGTERM: the shutdown line is logged too; then stderr reaches EOF.
    Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    let err = BufReader::new(child.stderr.take().unwrap());
    let lines: Vec<String> = err.lines().map(|l| l.unwrap()).collect();
    child.wait().unwrap();
    assert!(lines.len() >= 3, "{lines:?}");
    let mut saw_actor = false;
    let mut saw_shutdown = false;
    for l in &lines {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        let obj = v.as_object().unwrap();
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["fields", "level", "message", "target", "timestamp"], "{l}");
        assert!(["ERROR", "WARN", "INFO", "DEBUG", "TRACE"].contains(&v["level"].as_str().unwrap()));
        let ts = v["timestamp"].as_str().unwrap();
        assert!(ts.len() == 24 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{ts}");
        assert!(v["fields"].is_object());
        if v["message"] == "actor started" && v["fields"]["actor"] == "store" {
            assert_eq!(v["target"], "dnsmesh::actors::supervisor");
            assert!(v["fields"]["restarts"].is_u64(), "{l}");
            saw_actor = true;
        }
        saw_shutdown |= v["message"].as_str().unwrap().starts_with("shutting down");
    }
    assert!(saw_actor && saw_shutdown, "{lines:#?}");
}

/// One raw HTTP/1.1 exchange: (status, lower-cased headers, body bytes).
fn raw_http(node: &Node, method: &str, path: &str, token: Option<&str>) -> (u16, String, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(node.http).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}\r\n").unwrap();
    let mut raw = vec![];
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a head") + 4;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head, raw[split..].to_vec())
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| l.strip_prefix(&format!("{name}: ")))
}

/// HEAD is answered as GET (node.md §2.1): same status and headers (Content-Length of the
/// GET body), no body. Was 404 for every path.
#[test]
fn head_is_answered_like_get() {
    let node = Node::start("head.test", &[("DNSMESH_AUTH__OPERATOR_TOKEN", OP)]);
    assert_eq!(publish(&node, OP, "a.head.test", "v=1", 300), 201);
    let paths =
        ["/", "/health", "/status.json", "/v1/records/a.head.test", "/v1/records/none.head.test"];
    for path in paths {
        let (gs, ghead, gbody) = raw_http(&node, "GET", path, Some(OP));
        let (hs, hhead, hbody) = raw_http(&node, "HEAD", path, Some(OP));
        assert_eq!(hs, gs, "HEAD {path}");
        assert!(hbody.is_empty(), "HEAD {path} has a body: {:?}", String::from_utf8_lossy(&hbody));
        assert_eq!(header(&hhead, "content-type"), header(&ghead, "content-type"), "{path}");
        if !path.starts_with("/status") {
            // (status.json carries the uptime, so its length may differ by a digit.)
            assert_eq!(
                header(&hhead, "content-length"),
                Some(gbody.len().to_string().as_str()),
                "HEAD {path}: {hhead}"
            );
        }
    }
    assert_eq!(raw_http(&node, "HEAD", "/v1/records/a.head.test", None).0, 401);
    assert_eq!(raw_http(&node, "HEAD", "/nowhere", None).0, 404);
}

/// `/v1/records/{name}/` is the same resource as `/v1/records/{name}` for GET, POST and
/// DELETE (the reference's route allows one trailing slash); two slashes are not.
#[test]
fn records_route_accepts_a_trailing_slash() {
    let node = Node::start("slash.test", &[("DNSMESH_AUTH__OPERATOR_TOKEN", OP)]);
    let body = serde_json::json!({"value": "v=slash", "ttl": 300}).to_string();
    let (s, b) = http(&node.url(), "POST", "/v1/records/s.slash.test/", Some(OP), &body).unwrap();
    assert_eq!(s, 201, "{b}");
    let (s, b) = http(&node.url(), "GET", "/v1/records/s.slash.test/", Some(OP), "").unwrap();
    assert_eq!(s, 200, "{b}");
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["values"], serde_json::json!(["v=slash"]));
    assert_eq!(txt_at(node.dns[0], "s.slash.test"), ["v=slash"]);
    let (s, _) = http(&node.url(), "GET", "/v1/records/s.slash.test//", Some(OP), "").unwrap();
    assert_eq!(s, 404);
    let del = serde_json::json!({"value": "v=slash"}).to_string();
    let (s, b) = http(&node.url(), "DELETE", "/v1/records/s.slash.test/", Some(OP), &del).unwrap();
    assert!(s == 200 || s == 204, "{s} {b}");
    assert!(txt_at(node.dns[0], "s.slash.test").is_empty());
}
