//! Abuse of the HTTP ingress on a node configured as a public one (`[limits]
//! limit_loopback = true`): made-up methods and random paths cannot grow `/metrics` or
//! memory and are charged to the per-IP bucket; label values are escaped; a slow body is
//! cut off; failed operator/sync authentication is throttled; writes outside the zone
//! are refused; the data directory is private; a taken listen address exits cleanly.
#![cfg(feature = "net")]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;

const OP: &str = "op-token-abuse-http";

/// Resident set size of a process, KiB (from /proc/PID/status).
fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// One keep-alive HTTP/1.1 connection speaking raw bytes (any method, any path).
struct Conn {
    r: BufReader<TcpStream>,
}

impl Conn {
    fn open(addr: SocketAddr) -> Conn {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_nodelay(true).unwrap();
        Conn { r: BufReader::new(s) }
    }

    /// Send one request, read the response; returns (status, body length), or None when
    /// the server closed the connection.
    fn exchange(&mut self, method: &str, path: &str) -> Option<(u16, usize)> {
        let req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
        self.r.get_mut().write_all(req.as_bytes()).ok()?;
        let mut line = String::new();
        if self.r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let status: u16 = line.split_whitespace().nth(1)?.parse().ok()?;
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            self.r.read_line(&mut h).ok()?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().ok()?;
                }
            }
        }
        let mut body = vec![0u8; len];
        self.r.read_exact(&mut body).ok()?;
        Some((status, len))
    }
}

fn rand_token(len: usize) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut b = vec![0u8; len];
    dnsmesh::proto::keys::random_fill(&mut b);
    b.iter().map(|x| A[*x as usize % A.len()] as char).collect()
}

fn metrics(n: &Node) -> String {
    let (s, m) = http(&n.url(), "GET", "/metrics", Some(OP), "").unwrap();
    assert_eq!(s, 200, "{m}");
    m
}

#[test]
fn made_up_methods_and_paths_are_bounded_and_rate_limited() {
    let n = Node::start(
        "flood.test",
        &[("DNSMESH_LIMITS__LIMIT_LOOPBACK", "true"), ("DNSMESH_AUTH__OPERATOR_TOKEN", OP)],
    );
    let pid = n.child.id();
    // Warm up the paths the flood takes (allocator arenas, worker threads).
    let mut warm = Conn::open(n.http);
    for _ in 0..50 {
        warm.exchange("GET", "/warm-up");
    }
    drop(warm);
    let m0 = metrics(&n).len();
    let rss0 = rss_kib(pid);
    // The flood: one client, made-up 100-character methods, random paths.
    let total = 20_000;
    let (mut limited, mut other) = (0usize, 0usize);
    let mut conn = Conn::open(n.http);
    let t0 = Instant::now();
    for _ in 0..total {
        let method = rand_token(100);
        let path = format!("/{}/{}", rand_token(40), rand_token(40));
        match conn.exchange(&method, &path) {
            Some((429, _)) => limited += 1,
            Some(_) => other += 1,
            None => conn = Conn::open(n.http),
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let m1 = metrics(&n);
    let rss1 = rss_kib(pid);
    eprintln!(
        "flood of {total} made-up requests in {secs:.1} s: {other} answered, {limited} got 429; \
         /metrics {m0} -> {} bytes; RSS {rss0} -> {rss1} KiB (+{} KiB)",
        m1.len(),
        rss1.saturating_sub(rss0)
    );
    // Past its bucket (burst 100, 10/s) the client gets 429.
    assert!(limited > 0, "a flood of 404s is never rate-limited");
    let allowed = 100.0 + 10.0 * secs + 60.0; // + the warm-up requests
    assert!((other as f64) <= allowed, "{other} answered beyond burst + rate × {secs:.1} s");
    // Bounded label set: the made-up methods fold into one value.
    assert!(m1.len() < m0 + 2048, "/metrics grew from {m0} to {} bytes", m1.len());
    assert!(m1.contains("dmp_http_requests_total{method=\"other\",status=\"429\"}"), "{m1}");
    assert!(rss1 < rss0 + 4 * 1024, "RSS grew from {rss0} KiB to {rss1} KiB under a bounded flood");
    // The operator still reads /metrics (above) and /health still answers this client.
    assert_eq!(http(&n.url(), "GET", "/health", None, "").unwrap().0, 200);
    // Other routes are charged too: the status page is refused to this client now.
    assert_eq!(http(&n.url(), "GET", "/status.json", None, "").unwrap().0, 429);
}

#[test]
fn label_values_from_remote_data_cannot_inject_a_label() {
    // A peer URL with a quote, a backslash and a fake sample in it (sync peer label).
    let evil = r#"http://127.0.0.1:1/x"} 99 injected{a="\"#;
    let n = Node::start(
        "labels.test",
        &[("DNSMESH_AUTH__OPERATOR_TOKEN", OP), ("DNSMESH_CLUSTER__PEERS", evil)],
    );
    let m = metrics(&n);
    let line = m
        .lines()
        .find(|l| l.starts_with("dmp_sync_pulls_total{"))
        .unwrap_or_else(|| panic!("no sync peer line: {m}"));
    assert_eq!(
        line.rsplit_once(' ').unwrap().0,
        r#"dmp_sync_pulls_total{peer="http://127.0.0.1:1/x\"} 99 injected{a=\"\\"}"#
    );
    for l in m.lines().filter(|l| !l.starts_with('#')) {
        assert!(!l.starts_with("injected"), "injected sample: {l}");
        // Every sample line is `name{labels} value` or `name value` with a numeric value.
        let v = l.rsplit_once(' ').unwrap().1;
        assert!(v.parse::<f64>().is_ok() || v == "+Inf", "bad sample line: {l}");
    }
}

/// Send a request head announcing a 10 KB body, then the body one byte every 200 ms
/// (`stall`: a few bytes, then nothing). Returns (what the server sent, seconds until it
/// closed the connection).
fn slow_body(addr: SocketAddr, path: &str, stall: bool) -> (String, f64) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(
        format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10000\r\n\r\n{{\"value\":")
            .as_bytes(),
    )
    .unwrap();
    let mut w = s.try_clone().unwrap();
    let t0 = Instant::now();
    let writer = std::thread::spawn(move || {
        while !stall && t0.elapsed() < Duration::from_secs(15) {
            if w.write_all(b" ").is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Err(e) => {
                eprintln!("slow body read: {e}");
                break;
            }
            Ok(k) => got.extend_from_slice(&buf[..k]),
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let _ = s.shutdown(std::net::Shutdown::Both);
    writer.join().unwrap();
    (String::from_utf8_lossy(&got).into_owned(), secs)
}

#[test]
fn a_slow_or_stalled_body_is_cut_off() {
    let n = Node::start(
        "body.test",
        &[("DNSMESH_HTTP__BODY_TIMEOUT_SECS", "2"), ("DNSMESH_HTTP__REQUEST_TIMEOUT_SECS", "2")],
    );
    for (path, stall) in [
        ("/v1/records/x.body.test", false),
        ("/v1/records/x.body.test", true),
        ("/v1/registration/confirm", false),
        ("/no/such/route", false),
        ("/no/such/route", true),
    ] {
        let (got, secs) = slow_body(n.http, path, stall);
        eprintln!(
            "slow body to {path} (stall {stall}): closed after {secs:.1} s: {:?}",
            got.lines().next()
        );
        assert!(secs < 6.0, "{path}: connection held {secs:.1} s by a slow body");
        assert!(got.is_empty() || got.starts_with("HTTP/1.1 4"), "{path}: {got}");
    }
    assert_eq!(http(&n.url(), "GET", "/health", None, "").unwrap().0, 200);
}

#[test]
fn soft_fd_limit_is_raised_to_the_hard_limit() {
    let dir = tempfile::tempdir().unwrap();
    // A soft open-files limit of 1024 (hard limit kept), set by util-linux `prlimit`.
    let mut cmd = std::process::Command::new("prlimit");
    cmd.args(["--nofile=1024:", "--", env!("CARGO_BIN_EXE_dnsmesh-node")]);
    cmd.arg("--config")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/dnsmesh.toml"))
        .args(["--zone", "fd.test", "--dns-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(lines.any(|l| l.is_ok_and(|l| l.starts_with("dnsmesh-node ready"))), "node not ready");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let f: Vec<&str> = line.split_whitespace().collect();
    eprintln!("{line}");
    assert_eq!(f[3], f[4], "soft limit raised to the hard limit: {line}");
}

#[test]
fn data_dir_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let n = Node::start("perm.test", &[("DNSMESH_AUTH__OPERATOR_TOKEN", OP)]);
    assert_eq!(publish(&n, OP, "a.perm.test", "v", 60), 201);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(n.data_dir()), 0o700, "data dir");
    let mut files = 0;
    let mut stack = vec![n.data_dir().to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                assert_eq!(mode(&p), 0o700, "{}", p.display());
                stack.push(p);
            } else {
                assert_eq!(mode(&p), 0o600, "{}", p.display());
                files += 1;
            }
        }
    }
    assert!(files >= 2, "the store's files were checked ({files})");
}

#[test]
fn a_write_outside_the_zone_is_refused_with_a_reason() {
    let n = Node::start("zone.test", &[("DNSMESH_AUTH__OPERATOR_TOKEN", OP)]);
    for name in ["a.other.test", "zone.test.evil", "xzone.test"] {
        let body = serde_json::json!({"value": "v", "ttl": 60}).to_string();
        let (s, b) =
            http(&n.url(), "POST", &format!("/v1/records/{name}"), Some(OP), &body).unwrap();
        assert_eq!(s, 400, "{name}: {b}");
        assert!(b.contains("outside the zone zone.test"), "{name}: {b}");
    }
    assert_eq!(publish(&n, OP, "a.zone.test", "v", 60), 201);
    assert_eq!(publish(&n, OP, "Zone.Test", "apex", 60), 201);
}

/// Run the node binary to its exit (it must not start); returns (exit code, stderr).
fn run_to_exit(dns: &str, http_listen: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_dnsmesh-node"))
        .arg("--config")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/dnsmesh.toml"))
        .args(["--zone", "busy.test", "--dns-listen", dns, "--http-listen", http_listen])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("node did not exit with its listen address taken");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    (status.code(), err)
}

#[test]
fn a_listen_address_in_use_exits_2_with_a_clean_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (code, err) = run_to_exit("127.0.0.1:0", &taken.local_addr().unwrap().to_string());
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("http.listen") && err.contains("in use"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let (code, err) = run_to_exit(&taken.local_addr().unwrap().to_string(), "127.0.0.1:0");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("dns.listen") && err.contains("in use"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// `count` attempts with a wrong bearer token: (statuses other than 429, 429s, seconds).
fn guess(n: &Node, method: &str, path: &str, count: usize) -> (usize, usize, f64) {
    let t0 = Instant::now();
    let (mut answered, mut limited) = (0, 0);
    for i in 0..count {
        let (s, _) = http(&n.url(), method, path, Some(&format!("guess-{i}")), "{}").unwrap();
        if s == 429 {
            limited += 1;
        } else {
            assert!(s == 401 || s == 403, "{path}: {s}");
            answered += 1;
        }
    }
    (answered, limited, t0.elapsed().as_secs_f64())
}

#[test]
fn failed_token_guesses_are_throttled_per_ip() {
    let env = [
        ("DNSMESH_LIMITS__LIMIT_LOOPBACK", "true"),
        ("DNSMESH_AUTH__OPERATOR_TOKEN", OP),
        ("DNSMESH_CLUSTER__SYNC_TOKEN", "sync-secret"),
    ];
    // Operator routes (default allowance: 5 failures, then one per 10 s).
    let n = Node::start("guess.test", &env);
    let (answered, limited, secs) = guess(&n, "GET", "/v1/admin/credentials", 200);
    eprintln!("admin: 200 wrong tokens in {secs:.2} s: {answered} checked, {limited} got 429");
    assert!(answered as f64 <= 5.0 + 0.1 * secs + 1.0, "{answered} guesses checked");
    assert!(limited > 0);
    // While blocked, even the right token is not checked (a guesser learns nothing).
    let (s, _) = http(&n.url(), "GET", "/v1/admin/credentials", Some(OP), "").unwrap();
    assert_eq!(s, 429);
    let (s, _) = http(&n.url(), "GET", "/metrics", Some("wrong"), "").unwrap();
    assert_eq!(s, 429);
    // Sync-token routes, on a fresh node.
    let m = Node::start("guess2.test", &env);
    let (answered, limited, secs) = guess(&m, "GET", "/v1/sync/digest", 60);
    eprintln!("sync: 60 wrong tokens in {secs:.2} s: {answered} checked, {limited} got 429");
    assert!(answered as f64 <= 5.0 + 0.1 * secs + 1.0, "{answered} guesses checked");
    assert!(limited > 0);
    let (s, _) = http(&m.url(), "POST", "/v1/sync/notify", Some("wrong"), "").unwrap();
    assert_eq!(s, 429);
    // Right tokens work for others: the node itself is unaffected.
    assert_eq!(http(&m.url(), "GET", "/health", None, "").unwrap().0, 200);
}
