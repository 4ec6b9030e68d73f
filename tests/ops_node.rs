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
