//! Operating a node: structured logs, HTTP details (HEAD, trailing slash), operator
//! tokens and the audit trail, backup/restore, reload. Real node processes on loopback.

#![cfg(feature = "net")]

mod cli_common;
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

/// `dnsmesh-node admin …` against `node` with the operator token.
fn admin(node: &Node, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dnsmesh-node"))
        .args(["admin", "--node", &node.url(), "--token", OP])
        .args(args)
        .output()
        .unwrap()
}

fn admin_ok(node: &Node, args: &[&str]) -> String {
    let out = admin(node, args);
    assert!(out.status.success(), "admin {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Operator-issued tokens (`admin token issue|rotate|list|revoke`) work with the reference
/// CLI's and our CLI's `init --http-token`; a revoked or rotated-out token gets 401; every
/// issue, rotation, revocation and registration lands in the audit trail (0600, no token).
#[test]
fn operator_tokens_and_audit_trail() {
    use cli_common::{RefUser, User};
    let zone = "tok.test";
    let node = Node::start(zone, &[("DNSMESH_AUTH__OPERATOR_TOKEN", OP)]);
    let rf = RefUser::new("refa", node.dns[0].port());
    let ours = User::new("ourb");
    let issued = |subject: &str, extra: &[&str]| -> serde_json::Value {
        let mut args = vec!["token", "issue", subject];
        args.extend_from_slice(extra);
        serde_json::from_str(&admin_ok(&node, &args)).unwrap()
    };
    let ref_subject = format!("{}@{zone}", rf.name);
    let t1 = issued(&ref_subject, &["--rate", "5", "--burst", "40", "--expires", "1d"]);
    let tok1 = t1["token"].as_str().unwrap().to_string();
    let b32 = tok1.strip_prefix("dmp_v1_").expect("dmp_v1_ prefix");
    assert!(
        b32.len() == 52 && b32.bytes().all(|c| matches!(c, b'A'..=b'Z' | b'2'..=b'7')),
        "{tok1}"
    );
    assert_eq!(t1["rate_per_sec"], 5.0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let exp = t1["expires_at"].as_u64().unwrap();
    assert!(exp >= now + 86_390 && exp <= now + 86_410, "{t1}");

    // The reference CLI publishes its identity with the issued token.
    rf.ok(&[
        "init",
        &rf.name,
        "--domain",
        zone,
        "--endpoint",
        &node.url(),
        "--http-token",
        &tok1,
        "--dns-resolvers",
        &node.dns[0].to_string(),
        "--no-probe-local-dns",
    ]);
    rf.ok(&["identity", "publish"]);
    // Our CLI with a token of its own.
    let our_subject = format!("{}@{zone}", ours.name);
    let tok2 = issued(&our_subject, &[])["token"].as_str().unwrap().to_string();
    ours.ok(&[
        "init",
        &ours.name,
        "--domain",
        zone,
        "--endpoint",
        &node.url(),
        "--http-token",
        &tok2,
        "--dns-host",
        &node.dns[0].ip().to_string(),
        "--dns-port",
        &node.dns[0].port().to_string(),
    ]);
    assert!(ours.ok(&["identity", "publish"]).contains("published identity"));
    ours.ok(&["identity", "fetch", &ref_subject, "--add"]);

    // A self-service registration is audited too.
    let (_, reg) = register(&node, "selfie", 7, false);
    assert!(reg["token"].as_str().unwrap().starts_with("dmp_v1_"));

    let list = admin_ok(&node, &["token", "list", "--subject", &ref_subject]);
    let rows: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(rows[0]["issuer"], "admin");
    assert!(!list.contains(&tok1), "a listing never shows a token");

    // Revoke: the reference CLI's next write is refused, the raw write gets 401.
    let slot = "slot-1.mb-0123456789ab.tok.test";
    let write = |tok: &str| publish(&node, tok, slot, "v=1", 60);
    assert_eq!(write(&tok1), 201);
    assert!(admin_ok(&node, &["token", "revoke", &ref_subject]).contains("\"revoked\":1"));
    assert_eq!(write(&tok1), 401);
    assert!(!rf.run(&["identity", "publish"]).status.success(), "revoked token still writes");

    // Rotate: the old token stops, the new one writes.
    let t3 = issued(&our_subject, &[]);
    let rot: serde_json::Value =
        serde_json::from_str(&admin_ok(&node, &["token", "rotate", &our_subject])).unwrap();
    assert_eq!(rot["revoked"].as_array().unwrap().len(), 2, "{rot}");
    let tok4 = rot["token"].as_str().unwrap();
    assert_eq!(write(&tok2), 401);
    assert_eq!(write(t3["token"].as_str().unwrap()), 401);
    assert_eq!(write(tok4), 201);
    // Only the operator administers tokens.
    let (s, _) = http(
        &node.url(),
        "POST",
        "/v1/admin/tokens",
        Some(tok4),
        &serde_json::json!({"subject": "x@tok.test"}).to_string(),
    )
    .unwrap();
    assert_eq!(s, 401);
    assert!(!admin(&node, &["token", "issue", "not-a-subject"]).status.success());

    // The audit trail: every action in order, no secret, 0600.
    let audit = admin_ok(&node, &["audit", "--limit", "100"]);
    let entries: Vec<serde_json::Value> =
        audit.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let events: Vec<&str> = entries.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(
        events,
        ["token.issued", "token.issued", "registered", "revoked", "token.issued", "token.rotated"],
        "{audit}"
    );
    assert_eq!(entries[0]["subject"], ref_subject.as_str());
    assert_eq!(entries[0]["actor"], "operator");
    assert_eq!(entries[0]["remote"], "127.0.0.1");
    assert_eq!(entries[2]["subject"], "selfie@tok.test");
    assert_eq!(entries[3]["what"], ref_subject.as_str());
    let raw = std::fs::read_to_string(node.data_dir.join("audit.jsonl")).unwrap();
    for t in [tok1.as_str(), tok2.as_str(), tok4, reg["token"].as_str().unwrap()] {
        assert!(!raw.contains(t) && !audit.contains(t), "a token in the audit log");
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(node.data_dir.join("audit.jsonl")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let only = admin_ok(&node, &["audit", "--event", "token.rotated"]);
    assert_eq!(only.lines().count(), 1, "{only}");
}

/// Backup and restore: write, back up online, write more, kill -9, restore into a fresh
/// directory → exactly the backed-up state (records, tokens, TSIG keys, node key), and a
/// node started on it serves it.
#[test]
fn backup_restore_round_trip() {
    const SYNC: &str = "sync-token-for-backup";
    let zone = "bak.test";
    let mut node = Node::start(
        zone,
        &[("DNSMESH_AUTH__OPERATOR_TOKEN", OP), ("DNSMESH_CLUSTER__SYNC_TOKEN", SYNC)],
    );
    for i in 0..200 {
        assert_eq!(publish(&node, OP, &format!("r{i}.{zone}"), &format!("v=before{i}"), 3600), 201);
    }
    let (_, tok) = register(&node, "keep", 3, false);
    let keep_token = tok["token"].as_str().unwrap().to_string();
    let (_, tsig) = register(&node, "tkey", 4, true);
    let before = digest_set(&node, SYNC);
    assert!(before.len() >= 200);

    let file = node.data_dir.parent().unwrap().join("node.backup");
    let out = admin_ok(&node, &["backup", file.to_str().unwrap()]);
    assert!(out.contains("backup written"), "{out}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);

    // Writes after the backup: must not come back.
    for i in 0..50 {
        assert_eq!(publish(&node, OP, &format!("after{i}.{zone}"), "v=after", 3600), 201);
    }
    let (_, late) = register(&node, "late", 5, false);
    let revoked = admin_ok(&node, &["token", "revoke", "keep@bak.test"]);
    assert!(revoked.contains("\"revoked\":1"), "{revoked}");
    assert_ne!(digest_set(&node, SYNC), before);
    node.kill9();

    // The old directory is not empty: refused without --force.
    let restore = |dir: &std::path::Path, force: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_dnsmesh-node"));
        c.arg("restore").arg("--data-dir").arg(dir).arg(&file);
        if force {
            c.arg("--force");
        }
        c.output().unwrap()
    };
    let refused = restore(&node.data_dir, false);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not empty"));
    let fresh = node.data_dir.parent().unwrap().join("restored");
    let ok = restore(&fresh, false);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert_eq!(
        std::fs::read(fresh.join("node.key")).unwrap(),
        std::fs::read(node.data_dir.join("node.key")).unwrap()
    );

    // A node on the restored directory (same ports) serves exactly the backed-up state.
    node.data_dir = fresh;
    node.restart();
    assert_eq!(digest_set(&node, SYNC), before);
    assert_eq!(txt_at(node.dns[0], &format!("r199.{zone}")), ["v=before199"]);
    assert!(txt_at(node.dns[0], &format!("after0.{zone}")).is_empty());
    let slot = "slot-2.mb-0123456789ab.bak.test";
    assert_eq!(publish(&node, &keep_token, slot, "v=1", 60), 201, "revocation after the backup");
    assert_eq!(publish(&node, late["token"].as_str().unwrap(), slot, "v=2", 60), 401);
    // The restored TSIG key (sealed under the restored node key) still lists.
    let creds = admin_ok(&node, &["list"]);
    assert!(
        creds.contains(tsig["tsig_key_name"].as_str().unwrap().trim_end_matches('.')),
        "{creds}"
    );
    // The audit trail came back as of the backup (its later entries did not).
    let audit = admin_ok(&node, &["audit", "--limit", "100"]);
    assert_eq!(audit.lines().filter(|l| l.contains("\"registered\"")).count(), 2, "{audit}");
    assert!(!audit.contains("late@bak.test"), "{audit}");
}

/// A child process killed when the test ends, even by a panic.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn self_signed(dir: &std::path::Path, cn: &str) -> (String, String) {
    let (cert, key) = (dir.join(format!("{cn}.crt")), dir.join(format!("{cn}.key")));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"])
        .args(["-nodes", "-days", "2", "-subj", &format!("/CN={cn}")])
        .args([
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (std::fs::read_to_string(cert).unwrap(), std::fs::read_to_string(key).unwrap())
}

/// The subject of the certificate the HTTPS listener at `addr` presents.
fn served_cn(addr: std::net::SocketAddr) -> String {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &addr.to_string(), "-servername", "localhost"])
        .stdin(Stdio::null())
        .output()
        .expect("openssl s_client");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("subject=").map(|s| s.replace(' ', "")))
        .unwrap_or_else(|| panic!("no certificate from {addr}: {text}"))
}

/// Reload without a restart: SIGHUP (and `POST /v1/admin/reload`) swap the TLS pair
/// (new handshakes get the new certificate), a pair that does not load is refused and the
/// old one kept, and DNS keeps answering throughout: zero lost UDP answers across the
/// reloads under a query loop.
#[test]
fn reload_swaps_tls_without_losing_queries() {
    let tmp = tempfile::tempdir().unwrap();
    let (c1, k1) = self_signed(tmp.path(), "one");
    let (c2, k2) = self_signed(tmp.path(), "two");
    let (cert, key) = (tmp.path().join("tls.crt"), tmp.path().join("tls.key"));
    std::fs::write(&cert, &c1).unwrap();
    std::fs::write(&key, &k1).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_dnsmesh-node"))
        .arg("--config")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/dnsmesh.toml"))
        .args(["--zone", "reload.test", "--dns-listen", "127.0.0.1:0", "--http-listen"])
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .env("DNSMESH_HTTP__TLS_CERT", &cert)
        .env("DNSMESH_HTTP__TLS_KEY", &key)
        .env("DNSMESH_AUTH__OPERATOR_TOKEN", OP)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let ready = BufReader::new(child.0.stdout.take().unwrap())
        .lines()
        .map(|l| l.unwrap())
        .find(|l| l.starts_with("dnsmesh-node ready"))
        .expect("ready line");
    let field = |k: &str| -> std::net::SocketAddr {
        ready.split_whitespace().find_map(|p| p.strip_prefix(k)).unwrap().parse().unwrap()
    };
    let (dns, https) = (field("dns="), field("http="));
    let pid = child.0.id().to_string();
    assert_eq!(served_cn(https), "CN=one");

    // A query loop (one outstanding query at a time, bounded in count) while we reload.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let looper = std::thread::spawn(move || {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(2))).unwrap();
        let (mut sent, mut lost) = (0u64, 0u64);
        let mut buf = [0u8; 1500];
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) && sent < 200_000 {
            let q = query("reload.test.", hickory_proto::rr::RecordType::SOA, None);
            s.send_to(&q, dns).unwrap();
            sent += 1;
            match s.recv_from(&mut buf) {
                Ok((n, _)) if n >= 12 && buf[..2] == q[..2] => {}
                _ => lost += 1,
            }
        }
        (sent, lost)
    });
    let sighup = || assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    // `dnsmesh-node admin` over HTTPS, trusting both certificates.
    let bundle = tmp.path().join("both.pem");
    std::fs::write(&bundle, format!("{c1}{c2}")).unwrap();
    let admin_reload = || {
        let out = Command::new(env!("CARGO_BIN_EXE_dnsmesh-node"))
            .args(["admin", "--node", &format!("https://{https}"), "--token", OP, "--ca-file"])
            .arg(&bundle)
            .arg("reload")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    for round in 0..3 {
        let (c, k, want) = if round % 2 == 0 { (&c2, &k2, "two") } else { (&c1, &k1, "one") };
        std::fs::write(&cert, c).unwrap();
        std::fs::write(&key, k).unwrap();
        sighup();
        assert!(
            eventually(100, std::time::Duration::from_millis(50), || served_cn(https)
                == format!("CN={want}")),
            "round {round}: still {}",
            served_cn(https)
        );
    }
    // Over HTTP too (audited); a key that does not match is refused, the pair kept.
    std::fs::write(&cert, &c1).unwrap();
    std::fs::write(&key, &k1).unwrap();
    let ok = admin_reload();
    assert!(ok.contains("tls"), "{ok}");
    assert_eq!(served_cn(https), "CN=one");
    std::fs::write(&key, &k2).unwrap();
    let refused = admin_reload();
    assert!(refused.contains("reload refused"), "{refused}");
    sighup();
    assert_eq!(served_cn(https), "CN=one");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (sent, lost) = looper.join().unwrap();
    assert!(sent > 100, "the loop ran ({sent} queries)");
    assert_eq!(lost, 0, "{lost} of {sent} UDP queries unanswered across the reloads");
    drop(child);
    let audit = std::fs::read_to_string(tmp.path().join("data/audit.jsonl")).unwrap();
    assert_eq!(audit.lines().filter(|l| l.contains("\"reload\"")).count(), 2, "{audit}");
}

/// A cluster that configures itself from its signed manifest: with `[cluster] peers`
/// empty, node A syncs with the manifest's other nodes (not itself, by `node_id`); a seq+1
/// manifest POSTed to B reaches A by gossip, and A then syncs with the new node C too.
#[test]
fn cluster_peers_follow_the_signed_manifest() {
    use dnsmesh::proto::records::cluster::{ClusterManifest, ClusterNode};
    const SYNC: &str = "sync-token-gossip";
    let zone = "gossip.test";
    let op = ed25519_dalek::SigningKey::from_bytes(&[21; 32]);
    let spk = hex::encode(op.verifying_key().to_bytes());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let ports: Vec<u16> = (0..3).map(|_| free_tcp_port("127.0.0.1")).collect();
    let url = |i: usize| format!("http://127.0.0.1:{}", ports[i]);
    let manifest = |seq: u64, n: usize| {
        ClusterManifest {
            cluster_name: zone.into(),
            operator_spk: op.verifying_key().to_bytes(),
            nodes: (0..n)
                .map(|i| ClusterNode {
                    node_id: ["a", "b", "c"][i].into(),
                    http_endpoint: url(i),
                    dns_endpoint: None,
                })
                .collect(),
            seq,
            exp: now + 3600,
        }
        .sign(&op)
        .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cluster.wire");
    std::fs::write(&file, manifest(1, 2)).unwrap();
    let start = |i: usize, with_manifest: bool| {
        let mut env = vec![
            ("DNSMESH_AUTH__OPERATOR_TOKEN", OP.to_string()),
            ("DNSMESH_CLUSTER__SYNC_TOKEN", SYNC.to_string()),
            ("DNSMESH_CLUSTER__SYNC_INTERVAL_SECS", "1".to_string()),
            ("DNSMESH_CLUSTER__OPERATOR_SPK", spk.clone()),
            ("DNSMESH_CLUSTER__BASE_DOMAIN", zone.to_string()),
            ("DNSMESH_CLUSTER__NODE_ID", ["a", "b", "c"][i].to_string()),
        ];
        if with_manifest {
            env.push(("DNSMESH_CLUSTER__MANIFEST_FILE", file.to_str().unwrap().to_string()));
        }
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Node::start_with(zone, &["127.0.0.1:0"], &format!("127.0.0.1:{}", ports[i]), &env)
    };
    let b = start(1, true);
    let c = start(2, false);
    let a = start(0, true);
    let peers_of = |n: &Node| -> Vec<String> {
        let (_, s) = http(&n.url(), "GET", "/status.json", None, "").unwrap();
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        v["cluster_peers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["peer"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(peers_of(&a), [url(1)], "A's peers: the manifest's nodes but itself");
    assert_eq!(publish(&b, OP, "fromb.gossip.test", "v=b", 600), 201);
    assert_eq!(publish(&c, OP, "fromc.gossip.test", "v=c", 600), 201);
    let has = |n: &Node, name: &str| {
        http(&n.url(), "GET", &format!("/v1/records/{name}"), Some(OP), "").unwrap().0 == 200
    };
    let tick = std::time::Duration::from_millis(100);
    assert!(eventually(100, tick, || has(&a, "fromb.gossip.test")), "A syncs from B");
    assert!(!has(&a, "fromc.gossip.test"), "C is not in the cluster yet");

    // The operator publishes seq 2 (A, B, C) on B only.
    let wire2 = manifest(2, 3);
    assert_eq!(publish(&b, OP, "cluster.gossip.test", &wire2, 3600), 201);
    assert!(eventually(100, tick, || peers_of(&a) == [url(1), url(2)]), "{:?}", peers_of(&a));
    assert!(eventually(100, tick, || has(&a, "fromc.gossip.test")), "A syncs from C");
    let (s, body) = http(&a.url(), "GET", "/v1/sync/cluster-manifest", Some(SYNC), "").unwrap();
    assert_eq!(s, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["seq"], 2, "A installed and serves the newer manifest");
    // A replayed older manifest changes nothing.
    assert_eq!(publish(&b, OP, "cluster.gossip.test", &manifest(1, 2), 3600), 201);
    assert_eq!(peers_of(&a), [url(1), url(2)]);
}

/// A node run on its own configuration file (so a reload can see it change):
/// (process, DNS address, HTTP base URL).
fn start_on_config(
    config: &std::path::Path,
    data: &std::path::Path,
) -> (KillOnDrop, std::net::SocketAddr, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dnsmesh-node"))
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ready = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map(|l| l.unwrap())
        .find(|l| l.starts_with("dnsmesh-node ready"))
        .expect("ready line");
    let field =
        |k: &str| ready.split_whitespace().find_map(|p| p.strip_prefix(k)).unwrap().to_string();
    let dns = field("dns=").parse().unwrap();
    let http = format!("http://{}", field("http="));
    (KillOnDrop(child), dns, http)
}

/// Self-service token registration of `user@zone` at `url`: the HTTP status and body.
fn try_register(url: &str, user: &str, zone: &str) -> (u16, String) {
    use dnsmesh::proto::registration;
    let id = dnsmesh::proto::keys::Identity::from_private_bytes([9; 32]);
    let (s, body) = http(url, "GET", "/v1/registration/challenge", None, "").unwrap();
    assert_eq!(s, 200, "{body}");
    let ch: serde_json::Value = serde_json::from_str(&body).unwrap();
    let challenge: [u8; 32] =
        hex::decode(ch["challenge"].as_str().unwrap()).unwrap().try_into().unwrap();
    let subject = format!("{user}@{zone}");
    let sig = registration::sign_registration(
        id.signing_key(),
        &challenge,
        &subject,
        ch["node"].as_str().unwrap(),
    );
    let req = serde_json::json!({
        "subject": subject,
        "ed25519_spk": hex::encode(id.ed25519_public()),
        "challenge": hex::encode(challenge),
        "signature": hex::encode(sig),
    });
    http(url, "POST", "/v1/registration/confirm", None, &req.to_string()).unwrap()
}

/// SIGHUP re-reads the file: a registration allowlist added there applies at once, and
/// removing it again re-opens registration; meanwhile dnsperf's queries are all answered
/// (`Queries lost: 0`) across the reloads.
#[test]
fn reload_applies_the_allowlist_under_dnsperf_load() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("node.toml");
    let write_conf = |allow: &str| {
        std::fs::write(
            &conf,
            format!(
                "[node]\nzone = \"hup.test\"\n[dns]\nlisten = [\"127.0.0.1:0\"]\n\
                 [http]\nlisten = \"127.0.0.1:0\"\n[auth]\noperator_token = \"{OP}\"\n\
                 registration_allowlist = [{allow}]\n"
            ),
        )
        .unwrap()
    };
    write_conf("");
    let (node, dns, url) = start_on_config(&conf, &tmp.path().join("data"));
    let pid = node.0.id().to_string();
    let queries = tmp.path().join("queries.txt");
    std::fs::write(&queries, "hup.test SOA\nhup.test NS\nnone.hup.test TXT\n").unwrap();
    let perf = Command::new("dnsperf")
        .args(["-s", &dns.ip().to_string(), "-p", &dns.port().to_string(), "-l", "4"])
        .args(["-Q", "3000", "-t", "2", "-d"])
        .arg(&queries)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dnsperf (Debian package)");
    let hup = || assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    // Allowlist on: our zone's subjects are refused.
    write_conf("\"elsewhere.test\"");
    hup();
    assert!(
        eventually(50, std::time::Duration::from_millis(50), || try_register(
            &url, "amy", "hup.test"
        )
        .0 == 403),
        "allowlist not applied"
    );
    for _ in 0..3 {
        hup();
    }
    // Allowlist off again: registration works.
    write_conf("");
    hup();
    assert!(eventually(50, std::time::Duration::from_millis(50), || {
        let (s, b) = try_register(&url, "amy", "hup.test");
        s == 200 && b.contains("dmp_v1_")
    }));
    let out = perf.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "dnsperf: {text}{}", String::from_utf8_lossy(&out.stderr));
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    };
    assert!(field("Queries completed:") > 1000, "{text}");
    assert_eq!(field("Queries lost:"), 0, "{text}");
    drop(node);
}
