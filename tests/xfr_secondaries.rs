//! Zone transfers to real secondaries: Debian's Knot DNS (`knotd`) and NSD run on
//! loopback as secondaries of a real node (their own temp dirs and configs, killed at
//! the end). A write over HTTP is answered by both within 2 s (NOTIFY + IXFR); a delete
//! disappears from both; after the node restarts, writes keep flowing without any AXFR;
//! a large zone transfers completely; a transfer from a network not allowed and without
//! a key is refused, one signed with the operator key is served (every message signed).
//!
//! `XFR_BIG_RECORDS` sets the large zone's size (default 100000).
#![cfg(feature = "net")]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::rr::{RData, RecordType};

const OP: &str = "operator-secret";
const KEY_NAME: &str = "xfr-key";
const KEY_SECRET: &str = "c2VjcmV0LXRyYW5zZmVyLWtleS0zMi1ieXRlcy1sb25n";

/// A daemon process killed (and reaped) on drop.
struct Daemon {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The tests of this file start real daemons and load the node hard (a 100k-record
/// zone); run them one at a time so that one's load does not stretch another's
/// write-to-secondary delays.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn run_as_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The Knot DNS config the README shows (paths and ports filled in).
pub fn knot_conf(dir: &Path, port: u16, primary: SocketAddr, tsig: bool) -> String {
    let d = dir.display();
    let user = if run_as_root() { "    user: root:root\n" } else { "" };
    let (keys, remote_key) = if tsig {
        (
            format!(
                "key:\n  - id: {KEY_NAME}\n    algorithm: hmac-sha256\n    secret: {KEY_SECRET}\n"
            ),
            format!("    key: {KEY_NAME}\n"),
        )
    } else {
        (String::new(), String::new())
    };
    format!(
        r#"{keys}server:
    rundir: "{d}/run"
{user}    listen: 127.0.0.1@{port}
database:
    storage: "{d}/db"
control:
    listen: "{d}/run/knot.sock"
log:
  - target: "{d}/knot.log"
    any: info
remote:
  - id: dnsmesh
    address: {ip}@{pport}
{remote_key}acl:
  - id: notify_from_dnsmesh
    address: {ip}
    action: notify
  - id: transfer_out
    address: 127.0.0.0/8
    action: transfer
template:
  - id: default
    storage: "{d}/zones"
    zonefile-sync: -1
    zonefile-load: none
    journal-content: changes
zone:
  - domain: mesh.test
    master: dnsmesh
    acl: [notify_from_dnsmesh, transfer_out]
"#,
        ip = primary.ip(),
        pport = primary.port()
    )
}

/// The NSD config the README shows (paths and ports filled in).
pub fn nsd_conf(dir: &Path, port: u16, primary: SocketAddr, tsig: bool) -> String {
    let d = dir.display();
    let (keys, key) = if tsig {
        (
            format!(
                "key:\n    name: \"{KEY_NAME}\"\n    algorithm: hmac-sha256\n    secret: \"{KEY_SECRET}\"\n"
            ),
            KEY_NAME,
        )
    } else {
        (String::new(), "NOKEY")
    };
    format!(
        r#"{keys}server:
    ip-address: 127.0.0.1@{port}
    port: {port}
    ip4-only: yes
    username: ""
    chroot: ""
    zonesdir: "{d}"
    database: ""
    zonelistfile: "{d}/zone.list"
    xfrdfile: "{d}/xfrd.state"
    xfrdir: "{d}"
    pidfile: "{d}/nsd.pid"
    logfile: "{d}/nsd.log"
    verbosity: 2
    server-count: 1
    xfrd-reload-timeout: 0
remote-control:
    control-enable: no
zone:
    name: "mesh.test"
    zonefile: "mesh.test.zone"
    request-xfr: {ip}@{pport} {key}
    allow-notify: {ip} NOKEY
    provide-xfr: 127.0.0.0/8 NOKEY
"#,
        ip = primary.ip(),
        pport = primary.port()
    )
}

/// TXT values at `name` from `server` over UDP (empty on NXDOMAIN/NODATA/no answer).
fn txt_udp(server: SocketAddr, name: &str) -> Option<Vec<String>> {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let q = query(name, RecordType::TXT, Some(4096));
    s.send_to(&q, server).ok()?;
    let mut buf = vec![0u8; 65535];
    let (n, _) = s.recv_from(&mut buf).ok()?;
    let m = hickory_proto::op::Message::from_vec(&buf[..n]).ok()?;
    if m.metadata.response_code != hickory_proto::op::ResponseCode::NoError
        && m.metadata.response_code != hickory_proto::op::ResponseCode::NXDomain
    {
        return None; // SERVFAIL while the secondary has no zone yet
    }
    Some(txt_values(&m))
}

fn soa_serial(server: SocketAddr) -> Option<u32> {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    s.send_to(&query("mesh.test", RecordType::SOA, None), server).ok()?;
    let mut buf = vec![0u8; 4096];
    let (n, _) = s.recv_from(&mut buf).ok()?;
    let m = hickory_proto::op::Message::from_vec(&buf[..n]).ok()?;
    m.answers.iter().find_map(|r| match &r.data {
        RData::SOA(s) => Some(s.serial),
        _ => None,
    })
}

/// Wait until `f` holds on every server; returns how long each took (None past `limit`).
fn until_each(
    servers: &[SocketAddr],
    limit: Duration,
    f: impl Fn(SocketAddr) -> bool,
) -> Option<Vec<Duration>> {
    let t0 = Instant::now();
    let mut done: Vec<Option<Duration>> = vec![None; servers.len()];
    while t0.elapsed() < limit {
        for (i, s) in servers.iter().enumerate() {
            if done[i].is_none() && f(*s) {
                done[i] = Some(t0.elapsed());
            }
        }
        if done.iter().all(Option::is_some) {
            return done.into_iter().collect();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

/// As [`until_each`]: the time until all hold.
fn until_all(
    servers: &[SocketAddr],
    limit: Duration,
    f: impl Fn(SocketAddr) -> bool,
) -> Option<Duration> {
    until_each(servers, limit, f).map(|v| v.into_iter().max().unwrap_or_default())
}

fn metric(n: &Node, outcome: &str) -> u64 {
    let (_, m) = http(&n.url(), "GET", "/metrics", Some(OP), "").unwrap();
    let key = format!("dmp_dns_queries_total{{outcome=\"{outcome}\"}} ");
    m.lines().find_map(|l| l.strip_prefix(&key)?.trim().parse().ok()).unwrap_or(0)
}

fn kdig(args: &[&str]) -> String {
    let out = Command::new("kdig").args(args).arg("+timeout=10").output().expect("kdig");
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn node_with(notify: &[SocketAddr]) -> Node {
    node_allowing(notify, Some("127.0.0.1/32"))
}

fn node_allowing(notify: &[SocketAddr], allow: Option<&str>) -> Node {
    let notify: Vec<String> = notify.iter().map(|a| a.to_string()).collect();
    let key = format!("{KEY_NAME}:hmac-sha256:{KEY_SECRET}");
    let mut env = vec![
        ("DNSMESH_AUTH__OPERATOR_TOKEN", OP),
        ("DNSMESH_DNS__APEX_ADDRESSES", "127.0.0.1"),
        ("DNSMESH_TRANSFER__TSIG_KEYS", key.as_str()),
    ];
    let notify = notify.join(",");
    env.push(("DNSMESH_TRANSFER__NOTIFY", notify.as_str()));
    if let Some(a) = allow {
        env.push(("DNSMESH_TRANSFER__ALLOW", a));
    }
    Node::start("mesh.test", &env)
}

/// A port free for both UDP and TCP on 127.0.0.1, below the kernel's ephemeral range (so
/// the test's own client connections cannot take it before the daemon binds it).
fn daemon_port() -> u16 {
    for _ in 0..1000 {
        let p = 20_000 + (rand_id() % 12_000);
        let udp = std::net::UdpSocket::bind(("127.0.0.1", p));
        let tcp = std::net::TcpListener::bind(("127.0.0.1", p));
        if udp.is_ok() && tcp.is_ok() {
            return p;
        }
    }
    panic!("no free port");
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[test]
fn knot_and_nsd_follow_writes_deletes_and_restarts() {
    let _serial = serial();
    // Ports first: the node NOTIFYs the secondaries, the secondaries pull from the node.
    let knot_port = daemon_port();
    let nsd_port = daemon_port();
    let knot_addr: SocketAddr = format!("127.0.0.1:{knot_port}").parse().unwrap();
    let nsd_addr: SocketAddr = format!("127.0.0.1:{nsd_port}").parse().unwrap();
    let mut n = node_with(&[knot_addr, nsd_addr]);
    assert_eq!(publish(&n, OP, "first.mesh.test", "hello", 300), 201);
    let (knot, nsd) = start_pair(n.dns[0], knot_port, nsd_port);
    let both = [knot_addr, nsd_addr];
    until_all(&both, Duration::from_secs(20), |s| {
        txt_udp(s, "first.mesh.test") == Some(vec!["hello".into()])
    })
    .unwrap_or_else(|| panic!("initial transfer\nknot:\n{}\nnsd:\n{}", knot.log(), nsd.log()));

    // 100 writes: each answered by both within 2 s.
    let (mut delays, mut dk, mut dn) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..100 {
        let name = format!("w{i}.mesh.test");
        let value = format!("value-{i}");
        let t0 = Instant::now();
        assert_eq!(publish(&n, OP, &name, &value, 300), 201);
        let d = until_each(&both, Duration::from_secs(2), |s| {
            txt_udp(s, &name) == Some(vec![value.clone()])
        })
        .unwrap_or_else(|| {
            panic!("write {i} not on both within 2 s\nknot:\n{}\nnsd:\n{}", knot.log(), nsd.log())
        });
        let w = t0.elapsed() - d.iter().max().copied().unwrap_or_default();
        dk.push(w + d[0]);
        dn.push(w + d[1]);
        delays.push(w + d.iter().max().copied().unwrap_or_default());
    }
    for (what, v) in [("knot and nsd", &mut delays), ("knot", &mut dk), ("nsd", &mut dn)] {
        v.sort();
        println!(
            "write (HTTP POST sent) -> answered by {what}: p50 {:?} p99 {:?} max {:?} (100 writes)",
            pct(v, 0.50),
            pct(v, 0.99),
            v[99]
        );
    }
    assert!(metric(&n, "xfr_ixfr") >= 100, "writes went by IXFR");

    // A delete disappears from both.
    let (s, _) = http(&n.url(), "DELETE", "/v1/records/w0.mesh.test", Some(OP), "").unwrap();
    assert_eq!(s, 204);
    until_all(&both, Duration::from_secs(2), |s| txt_udp(s, "w0.mesh.test") == Some(vec![]))
        .expect("delete reached both within 2 s");
    // One value of a multi-value RRset.
    assert_eq!(publish(&n, OP, "w1.mesh.test", "second", 300), 201);
    let body = r#"{"value":"value-1"}"#;
    let (s, _) = http(&n.url(), "DELETE", "/v1/records/w1.mesh.test", Some(OP), body).unwrap();
    assert_eq!(s, 204);
    until_all(&both, Duration::from_secs(2), |s| {
        txt_udp(s, "w1.mesh.test") == Some(vec!["second".into()])
    })
    .expect("value delete reached both");

    // Restart (clean, then kill -9): the serial carries on, writes keep flowing by IXFR.
    for (round, hard) in [(0, false), (1, true)] {
        let serial_before = soa_serial(n.dns[0]).unwrap();
        if hard {
            n.kill9();
        } else {
            n.term();
        }
        n.restart();
        assert_eq!(soa_serial(n.dns[0]), Some(serial_before), "serial kept across restart");
        for i in 0..5 {
            let name = format!("after{round}-{i}.mesh.test");
            assert_eq!(publish(&n, OP, &name, "v", 300), 201);
            until_all(&both, Duration::from_secs(2), |s| {
                txt_udp(s, &name) == Some(vec!["v".into()])
            })
            .unwrap_or_else(|| panic!("after restart\nknot:\n{}\nnsd:\n{}", knot.log(), nsd.log()));
        }
        assert_eq!(metric(&n, "xfr_axfr"), 0, "no full transfer after the restart");
        assert!(metric(&n, "xfr_ixfr") >= 2, "both followed by IXFR");
    }

    // Access control: an address outside `allow`, unsigned: REFUSED (TCP), for AXFR and IXFR.
    let port = n.dns[0].port().to_string();
    let out = kdig(&["-b", "127.0.0.5", "@127.0.0.1", "-p", &port, "mesh.test", "AXFR"]);
    assert!(out.contains("REFUSED"), "{out}");
    let out = kdig(&["-b", "127.0.0.5", "@127.0.0.1", "-p", &port, "mesh.test", "IXFR=1"]);
    assert!(out.contains("REFUSED"), "{out}");
    // The operator key from anywhere: served, every message's TSIG checked by kdig.
    let key = format!("hmac-sha256:{KEY_NAME}:{KEY_SECRET}");
    let out =
        kdig(&["-b", "127.0.0.5", "-y", &key, "@127.0.0.1", "-p", &port, "mesh.test", "AXFR"]);
    assert!(out.contains("value-99") && !out.contains("REFUSED"), "{out}");
    // A wrong secret: NOTAUTH.
    let bad = format!("hmac-sha256:{KEY_NAME}:d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldC13cm9uZw==");
    let out =
        kdig(&["-b", "127.0.0.5", "-y", &bad, "@127.0.0.1", "-p", &port, "mesh.test", "AXFR"]);
    assert!(out.contains("NOTAUTH") || out.contains("BADSIG"), "{out}");
    drop(knot);
    drop(nsd);
}

fn start_pair(primary: SocketAddr, knot_port: u16, nsd_port: u16) -> (Daemon, Daemon) {
    start_pair_tsig(primary, knot_port, nsd_port, false)
}

fn start_pair_tsig(
    primary: SocketAddr,
    knot_port: u16,
    nsd_port: u16,
    tsig: bool,
) -> (Daemon, Daemon) {
    let (k, _) = start_knot_on(primary, knot_port, tsig);
    let (n, _) = start_nsd_on(primary, nsd_port, tsig);
    (k, n)
}

fn start_knot_on(primary: SocketAddr, port: u16, tsig: bool) -> (Daemon, SocketAddr) {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["run", "db", "zones"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    let conf = dir.path().join("knot.conf");
    std::fs::write(&conf, knot_conf(dir.path(), port, primary, tsig)).unwrap();
    let child = Command::new("knotd")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("knotd (apt-get install knot; CI does)");
    let log = dir.path().join("knot.log");
    (Daemon { child, log, _dir: dir }, format!("127.0.0.1:{port}").parse().unwrap())
}

fn start_nsd_on(primary: SocketAddr, port: u16, tsig: bool) -> (Daemon, SocketAddr) {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("nsd.conf");
    std::fs::write(&conf, nsd_conf(dir.path(), port, primary, tsig)).unwrap();
    let check = Command::new("nsd-checkconf").arg(&conf).output().expect("nsd-checkconf");
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let child = Command::new("nsd")
        .arg("-d")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("nsd (apt-get install nsd; CI does)");
    let log = dir.path().join("nsd.log");
    (Daemon { child, log, _dir: dir }, format!("127.0.0.1:{port}").parse().unwrap())
}

/// Write `count` records (`big-<i>.mesh.test`) with the operator token over `conns`
/// concurrent keep-alive HTTP/1.1 connections. Returns the elapsed time.
fn load(http_addr: SocketAddr, count: usize, conns: usize) -> Duration {
    load_padded(http_addr, count, conns, 0)
}

/// As [`load`], each value followed by `pad` filler characters.
fn load_padded(http_addr: SocketAddr, count: usize, conns: usize, pad: usize) -> Duration {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let next = std::sync::Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let threads: Vec<_> = (0..conns)
        .map(|_| {
            let next = next.clone();
            std::thread::spawn(move || {
                let mut conn: Option<BufReader<std::net::TcpStream>> = None;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        return;
                    }
                    let body = format!(
                        r#"{{"value":"v{i}-0123456789abcdef{}","ttl":86400}}"#,
                        "p".repeat(pad)
                    );
                    let req = format!(
                        "POST /v1/records/big-{i}.mesh.test HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {OP}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    for attempt in 0..3 {
                        let c = conn.get_or_insert_with(|| {
                            BufReader::new(std::net::TcpStream::connect(http_addr).unwrap())
                        });
                        let ok = (|| -> std::io::Result<u16> {
                            c.get_mut().write_all(req.as_bytes())?;
                            let mut line = String::new();
                            c.read_line(&mut line)?;
                            let status = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
                            let mut len = 0usize;
                            loop {
                                let mut h = String::new();
                                c.read_line(&mut h)?;
                                if h == "\r\n" || h.is_empty() {
                                    break;
                                }
                                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                                    len = v.trim().parse().unwrap_or(0);
                                }
                            }
                            let mut b = vec![0u8; len];
                            c.read_exact(&mut b)?;
                            Ok(status)
                        })();
                        match ok {
                            Ok(201) => break,
                            Ok(s) => panic!("write {i}: HTTP {s}"),
                            Err(e) => {
                                conn = None;
                                assert!(attempt < 2, "write {i}: {e}");
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    t0.elapsed()
}

/// TXT RRs in a `kdig AXFR` listing.
fn axfr_txt_count(server: SocketAddr, from: &str) -> usize {
    let out = Command::new("kdig")
        .args(["-b", from, &format!("@{}", server.ip()), "-p", &server.port().to_string()])
        .args(["mesh.test", "AXFR", "+timeout=30", "+noall", "+answer"])
        .output()
        .expect("kdig");
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains("\tTXT\t")).count()
}

#[test]
fn a_large_zone_transfers_completely_to_knot_and_nsd() {
    let _serial = serial();
    let count: usize =
        std::env::var("XFR_BIG_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let knot_port = daemon_port();
    let nsd_port = daemon_port();
    let knot_addr: SocketAddr = format!("127.0.0.1:{knot_port}").parse().unwrap();
    let nsd_addr: SocketAddr = format!("127.0.0.1:{nsd_port}").parse().unwrap();
    let n = node_with(&[knot_addr, nsd_addr]);
    let took = load(n.http, count, 48);
    println!("loaded {count} records over HTTP in {took:?}");
    // Our own AXFR carries every record.
    assert_eq!(axfr_txt_count(n.dns[0], "127.0.0.1"), count);
    let serial = soa_serial(n.dns[0]).unwrap();
    let (knot, nsd) = start_pair(n.dns[0], knot_port, nsd_port);
    let both = [knot_addr, nsd_addr];
    let t = until_each(&both, Duration::from_secs(300), |s| soa_serial(s) == Some(serial))
        .unwrap_or_else(|| panic!("large transfer\nknot:\n{}\nnsd:\n{}", knot.log(), nsd.log()));
    println!("{count}-record zone at knot after {:?}, at nsd after {:?}", t[0], t[1]);
    // Signed with the operator key: every message of the multi-message stream carries
    // a TSIG chained to the previous one, and kdig checks each.
    let key = format!("hmac-sha256:{KEY_NAME}:{KEY_SECRET}");
    let out = Command::new("kdig")
        .args(["-b", "127.0.0.5", "-y", &key, "@127.0.0.1", "-p", &n.dns[0].port().to_string()])
        .args(["mesh.test", "AXFR", "+timeout=30", "+noall", "+answer", "+stats"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.lines().filter(|l| l.contains("\tTXT\t")).count(),
        count,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("TSIG"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for s in both {
        assert_eq!(axfr_txt_count(s, "127.0.0.1"), count, "secondary {s} holds every record");
        assert_eq!(txt_udp(s, "big-0.mesh.test"), Some(vec!["v0-0123456789abcdef".into()]));
        let last = format!("big-{}.mesh.test", count - 1);
        assert_eq!(txt_udp(s, &last), Some(vec![format!("v{}-0123456789abcdef", count - 1)]));
    }
    // Then small changes flow by IXFR on top of the large zone.
    let ixfr_before = metric(&n, "xfr_ixfr");
    assert_eq!(publish(&n, OP, "big-0.mesh.test", "changed", 300), 201);
    until_all(&both, Duration::from_secs(5), |s| {
        txt_udp(s, "big-0.mesh.test").is_some_and(|v| v.contains(&"changed".to_string()))
    })
    .expect("change after the large transfer");
    assert!(metric(&n, "xfr_ixfr") > ixfr_before);
    drop(knot);
    drop(nsd);
}

fn lines_with(text: &str, what: &str) -> usize {
    text.lines().filter(|l| l.contains(what)).count()
}

/// IXFR from the journal (one version per publication), AXFR-style when the journal no
/// longer reaches back, the SOA alone when the client is current.
#[test]
fn ixfr_from_the_journal_and_fallback_to_axfr() {
    let _serial = serial();
    let n = Node::start(
        "mesh.test",
        &[
            ("DNSMESH_AUTH__OPERATOR_TOKEN", OP),
            ("DNSMESH_TRANSFER__ALLOW", "127.0.0.0/8"),
            ("DNSMESH_TRANSFER__JOURNAL_MAX_CHANGES", "6"),
        ],
    );
    let port = n.dns[0].port().to_string();
    let ixfr = |serial: u32| {
        kdig(&[
            "@127.0.0.1",
            "-p",
            &port,
            "mesh.test",
            &format!("IXFR={serial}"),
            "+noall",
            "+answer",
        ])
    };
    let s0 = soa_serial(n.dns[0]).unwrap();
    assert_eq!(publish(&n, OP, "a.mesh.test", "one", 300), 201);
    let t0 = Instant::now();
    while soa_serial(n.dns[0]) == Some(s0) {
        assert!(t0.elapsed() < Duration::from_secs(2), "serial moves after a write");
        std::thread::sleep(Duration::from_millis(5));
    }
    let s1 = soa_serial(n.dns[0]).unwrap();
    assert!(dnsmesh::dnswire::xfr::serial_gt(s1, s0));
    let out = ixfr(s0);
    assert_eq!(
        lines_with(&out, "\tSOA\t"),
        4,
        "incremental: SOA new, SOA old, SOA new, SOA new\n{out}"
    );
    assert_eq!(lines_with(&out, "\tTXT\t"), 1, "{out}");
    assert_eq!(lines_with(&ixfr(s1), "\tSOA\t"), 1, "current: SOA alone");
    // Eight more changes: the journal (6 changes) no longer reaches s0.
    for i in 0..8 {
        assert_eq!(publish(&n, OP, &format!("b{i}.mesh.test"), "x", 300), 201);
    }
    let t0 = Instant::now();
    while lines_with(&ixfr(s1), "\tTXT\t") < 8 && t0.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = ixfr(s0);
    assert_eq!(lines_with(&out, "\tSOA\t"), 2, "AXFR-style: SOA, zone, SOA\n{out}");
    assert_eq!(lines_with(&out, "\tTXT\t"), 9, "{out}");
    assert!(metric(&n, "xfr_axfr") >= 1);
}

/// CPU seconds (user + system) used so far by process `pid`.
fn cpu_secs(pid: u32) -> f64 {
    stat_cpu(&format!("/proc/{pid}/stat"))
}

/// CPU seconds used so far by the node's `dns-udp` threads.
fn udp_thread_cpu_secs(pid: u32) -> f64 {
    let mut sum = 0.0;
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.trim() == "dns-udp" {
            sum += stat_cpu(&t.path().join("stat").to_string_lossy());
        }
    }
    sum
}

fn stat_cpu(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime), counted from after the command name.
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    ticks / rustix::param::clock_ticks_per_second().max(1) as f64
}

/// Closed-loop UDP load for `secs`: `sockets` sockets with `window` queries in flight
/// each, over `names`. Returns answers received.
fn udp_load(server: SocketAddr, secs: f64, sockets: usize, window: usize, names: usize) -> u64 {
    let stop = Instant::now() + Duration::from_secs_f64(secs);
    let threads: Vec<_> = (0..sockets)
        .map(|t| {
            std::thread::spawn(move || {
                let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
                let mut buf = [0u8; 4096];
                let mut got = 0u64;
                let mut i = t * 7919;
                let send = |i: usize| {
                    let q = query(&format!("big-{}.mesh.test", i % names), RecordType::TXT, None);
                    let _ = s.send_to(&q, server);
                };
                for _ in 0..window {
                    i += 1;
                    send(i);
                }
                while Instant::now() < stop {
                    // A lost reply: the resend below keeps the window full.
                    if s.recv_from(&mut buf).is_ok() {
                        got += 1;
                    }
                    i += 1;
                    send(i);
                }
                got
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).sum()
}

/// One AXFR over TCP, read to the final SOA; returns the number of RRs.
fn axfr_once(server: SocketAddr) -> usize {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(server).unwrap();
    let q = query("mesh.test", RecordType::AXFR, None);
    let mut m = (q.len() as u16).to_be_bytes().to_vec();
    m.extend_from_slice(&q);
    s.write_all(&m).unwrap();
    let (mut rrs, mut soas) = (0usize, 0usize);
    while soas < 2 {
        let mut len = [0u8; 2];
        s.read_exact(&mut len).unwrap();
        let mut b = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut b).unwrap();
        let msg = hickory_proto::op::Message::from_vec(&b).unwrap();
        if msg.metadata.response_code != hickory_proto::op::ResponseCode::NoError {
            return 0;
        }
        rrs += msg.answers.len();
        soas += msg.answers.iter().filter(|r| r.record_type() == RecordType::SOA).count();
    }
    rrs
}

/// Measurement for the issue's note (run it alone, release build preferably):
/// `cargo test --release --test xfr_secondaries -- --ignored --nocapture udp_during_axfr`.
/// UDP answers per second and per node CPU-second, without and during back-to-back
/// AXFRs of a 100k-record zone, in the same run.
#[test]
#[ignore]
fn udp_during_axfr() {
    let _serial = serial();
    let count: usize =
        std::env::var("XFR_BIG_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let secs: f64 =
        std::env::var("XFR_BENCH_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(5.0);
    let n = Node::start(
        "mesh.test",
        &[("DNSMESH_AUTH__OPERATOR_TOKEN", OP), ("DNSMESH_TRANSFER__ALLOW", "127.0.0.0/8")],
    );
    let took = load(n.http, count, 48);
    println!("loaded {count} records in {took:?}");
    let pid = n.child.id();
    let server = n.dns[0];
    let report = |label: &str, axfr: bool| {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let xfrs = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut done = 0;
                while axfr && !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    assert!(axfr_once(server) >= count + 3); // SOA, NS, the records, SOA
                    done += 1;
                }
                done
            })
        };
        let c0 = cpu_secs(pid);
        let u0 = udp_thread_cpu_secs(pid);
        let t0 = Instant::now();
        let answers = udp_load(server, secs, 2, 16, count);
        let wall = t0.elapsed().as_secs_f64();
        let cpu = cpu_secs(pid) - c0;
        let ucpu = udp_thread_cpu_secs(pid) - u0;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let transfers = xfrs.join().unwrap();
        println!(
            "{label}: {answers} UDP answers in {wall:.1} s = {:.0}/s; node CPU {cpu:.2} s = {:.0} answers per node CPU-second; dns-udp thread CPU {ucpu:.2} s = {:.0} answers per UDP-thread CPU-second; {transfers} AXFRs of {count} records completed",
            answers as f64 / wall,
            answers as f64 / cpu.max(0.01),
            answers as f64 / ucpu.max(0.01)
        );
    };
    report("without AXFR", false);
    report("during AXFR ", true);
    report("without AXFR", false);
}

/// With no `allow` list, Knot and NSD transfer with the operator TSIG key: a multi-message
/// AXFR and then IXFRs, every message signed and checked by the secondary.
#[test]
fn knot_and_nsd_transfer_with_the_operator_tsig_key() {
    let _serial = serial();
    let knot_port = daemon_port();
    let nsd_port = daemon_port();
    let knot_addr: SocketAddr = format!("127.0.0.1:{knot_port}").parse().unwrap();
    let nsd_addr: SocketAddr = format!("127.0.0.1:{nsd_port}").parse().unwrap();
    let n = node_allowing(&[knot_addr, nsd_addr], None);
    // Enough data for several AXFR messages (~16 KiB each).
    load(n.http, 1500, 8);
    let port = n.dns[0].port().to_string();
    let out = kdig(&["@127.0.0.1", "-p", &port, "mesh.test", "AXFR"]);
    assert!(out.contains("REFUSED"), "unsigned from loopback is refused without allow: {out}");
    let (knot, nsd) = start_pair_tsig(n.dns[0], knot_port, nsd_port, true);
    let both = [knot_addr, nsd_addr];
    until_all(&both, Duration::from_secs(20), |s| soa_serial(s) == soa_serial(n.dns[0]))
        .unwrap_or_else(|| panic!("signed AXFR\nknot:\n{}\nnsd:\n{}", knot.log(), nsd.log()));
    for s in both {
        assert_eq!(axfr_txt_count(s, "127.0.0.1"), 1500);
    }
    for i in 0..5 {
        let name = format!("signed-{i}.mesh.test");
        assert_eq!(publish(&n, OP, &name, "v", 300), 201);
        until_all(&both, Duration::from_secs(2), |s| txt_udp(s, &name) == Some(vec!["v".into()]))
            .unwrap_or_else(|| panic!("signed IXFR\nknot:\n{}\nnsd:\n{}", knot.log(), nsd.log()));
    }
    assert!(metric(&n, "xfr_ixfr") >= 10);
    assert_eq!(metric(&n, "xfr_refused"), 1);
    // hickory's TSIG verifier over a signed AXFR: every message carries a valid TSIG
    // chained to the previous one; a signed request for a zone not ours gets a signed
    // NOTAUTH.
    let msgs = signed_xfr(n.dns[0], "mesh.test.");
    assert!(msgs.len() > 1, "multi-message");
    let txt: usize = msgs
        .iter()
        .map(|m| m.answers.iter().filter(|r| r.record_type() == RecordType::TXT).count())
        .sum();
    assert_eq!(txt, 1505);
    let msgs = signed_xfr(n.dns[0], "other.test.");
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].metadata.response_code, hickory_proto::op::ResponseCode::NotAuth);
    // The transfer key signs queries (the secondaries' SOA checks) but writes nothing.
    let script = format!(
        "server 127.0.0.1 {port}\nzone mesh.test\nupdate add evil.mesh.test 60 TXT x\nsend\n"
    );
    let mut child = Command::new("nsupdate")
        .args(["-y", &format!("hmac-sha256:{KEY_NAME}:{KEY_SECRET}")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nsupdate (dnsutils)");
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("REFUSED"), "{text}");
    assert_eq!(txt_udp(n.dns[0], "evil.mesh.test"), Some(vec![]));
    assert!(knot.log().contains("TSIG") || !knot.log().contains("error"), "{}", knot.log());
}

/// Parse a NOTIFY: (id, serial from the answer SOA).
fn notify_parts(b: &[u8]) -> Option<(u16, u32)> {
    let m = hickory_proto::op::Message::from_vec(b).ok()?;
    if m.metadata.op_code != hickory_proto::op::OpCode::Notify
        || m.metadata.message_type != hickory_proto::op::MessageType::Query
    {
        return None;
    }
    let serial = m.answers.iter().find_map(|r| match &r.data {
        RData::SOA(s) => Some(s.serial),
        _ => None,
    })?;
    Some((m.metadata.id, serial))
}

fn ack(sock: &std::net::UdpSocket, b: &[u8], to: SocketAddr) {
    let mut r = b.to_vec();
    r[2] |= 0x80; // QR
    r[6..12].fill(0); // no records
    sock.send_to(&r, to).unwrap();
}

/// NOTIFY is retried until the secondary answers, and a burst of writes gives at most one
/// NOTIFY per 200 ms, the last one carrying the final serial.
#[test]
fn notify_is_retried_until_acknowledged_and_coalesced() {
    let _serial = serial();
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = sock.local_addr().unwrap();
    let n = node_allowing(&[target], None);
    let mut buf = [0u8; 4096];
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // The start-up NOTIFY, unanswered: it comes again (same ID), then we answer.
    let (len, from) = sock.recv_from(&mut buf).expect("start-up NOTIFY");
    let (id, serial) = notify_parts(&buf[..len]).expect("a NOTIFY");
    let t0 = Instant::now();
    let (len, from2) = sock.recv_from(&mut buf).expect("NOTIFY retried");
    assert_eq!(notify_parts(&buf[..len]), Some((id, serial)));
    assert_eq!(from, from2);
    assert!(t0.elapsed() >= Duration::from_millis(300), "backoff, not a flood");
    ack(&sock, &buf[..len], from);
    // Acknowledged: no more NOTIFY for this serial.
    sock.set_read_timeout(Some(Duration::from_millis(1500))).unwrap();
    assert!(sock.recv_from(&mut buf).is_err(), "NOTIFY repeated after the acknowledgement");

    // A burst of 30 writes over ~0.6 s (answer every NOTIFY at once).
    let start = Instant::now();
    let writer = {
        let url = n.url();
        std::thread::spawn(move || {
            for i in 0..30 {
                let body = serde_json::json!({"value": "v", "ttl": 60}).to_string();
                let path = format!("/v1/records/burst-{i}.mesh.test");
                assert_eq!(http(&url, "POST", &path, Some(OP), &body).unwrap().0, 201);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let mut serials = Vec::new();
    sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    while start.elapsed() < Duration::from_secs(3) {
        if let Ok((len, from)) = sock.recv_from(&mut buf) {
            if let Some((_, s)) = notify_parts(&buf[..len]) {
                serials.push((start.elapsed(), s));
                ack(&sock, &buf[..len], from);
            }
        }
    }
    writer.join().unwrap();
    let window = serials.last().unwrap().0;
    assert!(
        serials.len() as u128 <= window.as_millis() / 200 + 2,
        "coalesced to ≤ 1 per 200 ms: {serials:?}"
    );
    assert!(serials.len() >= 2, "{serials:?}");
    assert_eq!(serials.last().unwrap().1, soa_serial(n.dns[0]).unwrap(), "{serials:?}");
    for w in serials.windows(2) {
        assert!(dnsmesh::dnswire::xfr::serial_gt(w[1].1, w[0].1), "{serials:?}");
    }
}

/// A TSIG-signed AXFR of `zone` over TCP with the operator key; every response message is
/// checked with hickory's TSIG verifier (multi-message chain, RFC 8945 §5.3.1).
fn signed_xfr(server: SocketAddr, zone: &str) -> Vec<hickory_proto::op::Message> {
    use hickory_proto::op::{Message, MessageType, OpCode, Query};
    use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
    use hickory_proto::rr::{Name, TSigner};
    use std::io::{Read, Write};
    use std::str::FromStr;
    let secret =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, KEY_SECRET).unwrap();
    let signer =
        TSigner::new(secret, TsigAlgorithm::HmacSha256, Name::from_str(KEY_NAME).unwrap(), 300)
            .unwrap();
    let mut m = Message::new(rand_id(), MessageType::Query, OpCode::Query);
    let mut q = Query::new();
    q.set_name(Name::from_str(zone).unwrap()).set_query_type(RecordType::AXFR);
    m.add_query(q);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let mut verifier = m.finalize(&signer, now).unwrap().expect("verifier");
    let bytes = m.to_vec().unwrap();
    let mut s = std::net::TcpStream::connect(server).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut f = (bytes.len() as u16).to_be_bytes().to_vec();
    f.extend_from_slice(&bytes);
    s.write_all(&f).unwrap();
    let mut out = Vec::new();
    let mut soas = 0;
    loop {
        let mut len = [0u8; 2];
        s.read_exact(&mut len).unwrap();
        let mut b = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut b).unwrap();
        verifier.verify(&b).unwrap_or_else(|e| panic!("message {}: TSIG: {e}", out.len()));
        let msg = Message::from_vec(&b).unwrap();
        soas += msg.answers.iter().filter(|r| r.record_type() == RecordType::SOA).count();
        let done =
            msg.metadata.response_code != hickory_proto::op::ResponseCode::NoError || soas >= 2;
        out.push(msg);
        if done {
            return out;
        }
    }
}

/// Transfers are capped: clients that ask for a large AXFR and never read hold at most
/// MAX_CONCURRENT (4) slots, an extra request gets SERVFAIL at once, UDP keeps answering,
/// and the stalled connections are cut at the idle timeout, freeing the slots.
#[test]
fn stalled_transfers_are_capped_and_cut() {
    let _serial = serial();
    use std::io::{Read, Write};
    let n = Node::start(
        "mesh.test",
        &[
            ("DNSMESH_AUTH__OPERATOR_TOKEN", OP),
            ("DNSMESH_TRANSFER__ALLOW", "127.0.0.0/8"),
            ("DNSMESH_DNS__TCP_TIMEOUT_SECS", "1"),
            ("DNSMESH_LIMITS__LIMIT_LOOPBACK", "true"),
            ("DNSMESH_LIMITS__HTTP_RATE", "1000000"),
            ("DNSMESH_LIMITS__HTTP_BURST", "1000000"),
        ],
    );
    // ~12 MB of zone: more than the kernel buffers of a connection can hold.
    load_padded(n.http, 20_000, 16, 600);
    let axfr = {
        let q = query("mesh.test", RecordType::AXFR, None);
        let mut f = (q.len() as u16).to_be_bytes().to_vec();
        f.extend_from_slice(&q);
        f
    };
    // Four clients ask and never read (the zone is far larger than the socket buffers).
    let stalled: Vec<std::net::TcpStream> = (0..4)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(n.dns[0]).unwrap();
            s.write_all(&axfr).unwrap();
            s
        })
        .collect();
    // A fifth concurrent transfer is refused with SERVFAIL once the four hold their
    // slots (polled: an attempt that still got a slot is dropped, freeing it).
    let t0 = Instant::now();
    loop {
        let mut s = std::net::TcpStream::connect(n.dns[0]).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(&axfr).unwrap();
        let mut len = [0u8; 2];
        s.read_exact(&mut len).unwrap();
        let mut b = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut b).unwrap();
        if b[3] & 0x0F == 2 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "no cap on concurrent transfers");
    }
    // UDP answers meanwhile.
    assert_eq!(txt_udp(n.dns[0], "big-7.mesh.test").map(|v| v.len()), Some(1));
    // The stalled ones are cut at the idle timeout: a full transfer goes through.
    let t0 = Instant::now();
    loop {
        if axfr_once(n.dns[0]) >= 20_000 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "slots never freed");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(stalled);
}

/// The IXFR history survives restarts (clean and `kill -9`): a secondary that was several
/// versions behind when the node went down still gets an incremental transfer after.
#[test]
fn ixfr_history_survives_restarts() {
    let _serial = serial();
    let mut n = Node::start(
        "mesh.test",
        &[("DNSMESH_AUTH__OPERATOR_TOKEN", OP), ("DNSMESH_TRANSFER__ALLOW", "127.0.0.0/8")],
    );
    let wait_serial_past = |n: &Node, s: u32| {
        let t0 = Instant::now();
        while soa_serial(n.dns[0]) == Some(s) {
            assert!(t0.elapsed() < Duration::from_secs(2), "serial moves after a write");
            std::thread::sleep(Duration::from_millis(5));
        }
        soa_serial(n.dns[0]).unwrap()
    };
    let s0 = soa_serial(n.dns[0]).unwrap();
    assert_eq!(publish(&n, OP, "a.mesh.test", "one", 300), 201);
    let s1 = wait_serial_past(&n, s0);
    assert_eq!(publish(&n, OP, "b.mesh.test", "two", 300), 201);
    let s2 = wait_serial_past(&n, s1);
    for (round, hard) in [(0, false), (1, true)] {
        if hard {
            n.kill9();
        } else {
            n.term();
        }
        n.restart();
        assert_eq!(soa_serial(n.dns[0]), Some(s2), "round {round}: serial kept");
        let port = n.dns[0].port().to_string();
        let out = kdig(&[
            "@127.0.0.1",
            "-p",
            &port,
            "mesh.test",
            &format!("IXFR={s0}"),
            "+noall",
            "+answer",
        ]);
        assert_eq!(lines_with(&out, "\tSOA\t"), 6, "round {round}: two versions\n{out}");
        assert_eq!(lines_with(&out, "\tTXT\t"), 2, "round {round}\n{out}");
        assert_eq!(metric(&n, "xfr_axfr"), 0);
        assert_eq!(metric(&n, "xfr_ixfr"), 1);
    }
    assert_eq!(publish(&n, OP, "c.mesh.test", "three", 300), 201);
    wait_serial_past(&n, s2);
    let port = n.dns[0].port().to_string();
    let out =
        kdig(&["@127.0.0.1", "-p", &port, "mesh.test", &format!("IXFR={s0}"), "+noall", "+answer"]);
    assert_eq!(lines_with(&out, "\tSOA\t"), 8, "{out}");
    assert_eq!(lines_with(&out, "\tTXT\t"), 3, "{out}");
}
