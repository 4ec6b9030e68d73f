//! Test harness: runs the real `dnsmesh-node` binary on loopback with a fresh data
//! directory and ephemeral ports, and small DNS/HTTP client helpers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub use dnsmesh::client::http_client::request as http;

/// A node process.
pub struct Node {
    pub child: Child,
    pub dns: Vec<SocketAddr>,
    pub http: SocketAddr,
    pub data_dir: PathBuf,
    pub zone: String,
    env: Vec<(String, String)>,
    dns_listen: Vec<String>,
    http_listen: String,
    /// Soft and hard RLIMIT_NOFILE of the node process (`None` = inherited).
    nofile: Option<u64>,
    _tmp: Option<tempfile::TempDir>,
}

impl Node {
    /// Start a node for `zone` on 127.0.0.1 (ephemeral ports) with extra env settings.
    pub fn start(zone: &str, env: &[(&str, &str)]) -> Node {
        Node::start_with(zone, &["127.0.0.1:0"], "127.0.0.1:0", env)
    }

    /// As [`Node::start`], with explicit DNS listen addresses (e.g. IPv6 too).
    pub fn start_on(zone: &str, dns_listen: &[&str], env: &[(&str, &str)]) -> Node {
        Node::start_with(zone, dns_listen, "127.0.0.1:0", env)
    }

    /// As [`Node::start`], with explicit DNS and HTTP listen addresses.
    pub fn start_with(
        zone: &str,
        dns_listen: &[&str],
        http_listen: &str,
        env: &[(&str, &str)],
    ) -> Node {
        Node::start_full(zone, dns_listen, http_listen, env, None)
    }

    /// As [`Node::start`], with the node's open-files limit (soft and hard) set to
    /// `nofile`, as a public node runs (e.g. 1024).
    pub fn start_nofile(zone: &str, env: &[(&str, &str)], nofile: u64) -> Node {
        Node::start_full(zone, &["127.0.0.1:0"], "127.0.0.1:0", env, Some(nofile))
    }

    fn start_full(
        zone: &str,
        dns_listen: &[&str],
        http_listen: &str,
        env: &[(&str, &str)],
        nofile: Option<u64>,
    ) -> Node {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut n = Node {
            child: Command::new("true").spawn().unwrap(),
            dns: vec![],
            http: "127.0.0.1:0".parse().unwrap(),
            data_dir: tmp.path().join("data"),
            zone: zone.to_string(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            dns_listen: dns_listen.iter().map(|s| s.to_string()).collect(),
            http_listen: http_listen.to_string(),
            nofile,
            _tmp: Some(tmp),
        };
        n.spawn();
        n
    }

    fn spawn(&mut self) {
        let bin = env!("CARGO_BIN_EXE_dnsmesh-node");
        // The open-files limit through util-linux `prlimit`, which sets it and execs the
        // node (same pid), instead of unsafe code between fork and exec.
        let mut cmd = match self.nofile {
            Some(limit) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={limit}:{limit}")).arg("--").arg(bin);
                c
            }
            None => Command::new(bin),
        };
        cmd.arg("--config").arg(concat!(env!("CARGO_MANIFEST_DIR"), "/dnsmesh.toml"));
        cmd.arg("--zone").arg(&self.zone).arg("--data-dir").arg(&self.data_dir);
        for d in &self.dns_listen {
            cmd.arg("--dns-listen").arg(d);
        }
        cmd.arg("--http-listen").arg(&self.http_listen);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.env("RUST_LOG", "warn");
        cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("spawn dnsmesh-node");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        // Wait for the ready line (an event, not a sleep).
        let line = loop {
            match lines.next() {
                Some(Ok(l)) if l.starts_with("dnsmesh-node ready") => break l,
                Some(Ok(_)) => continue,
                _ => panic!("dnsmesh-node exited before it was ready: {:?}", child.wait()),
            }
        };
        std::thread::spawn(move || for _ in lines {});
        let mut dns = vec![];
        let mut http: Option<SocketAddr> = None;
        for part in line.split_whitespace() {
            if let Some(d) = part.strip_prefix("dns=") {
                dns = d.split(',').map(|a| a.parse().unwrap()).collect();
            }
            if let Some(h) = part.strip_prefix("http=") {
                http = Some(h.parse().unwrap());
            }
        }
        self.child = child;
        // Restarts keep the same ports.
        self.dns_listen = dns.iter().map(|a: &SocketAddr| a.to_string()).collect();
        self.http_listen = http.unwrap().to_string();
        self.dns = dns;
        self.http = http.unwrap();
    }

    /// `http://ip:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.http)
    }

    /// Kill with SIGKILL and wait.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit.
    pub fn term(&mut self) -> std::process::ExitStatus {
        send_signal(self.child.id(), "TERM");
        self.child.wait().unwrap()
    }

    /// Start again on the same ports and data directory.
    pub fn restart(&mut self) {
        self.spawn();
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

fn send_signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Path of the reference venv (installed by `.ci/run`); the test fails if it is missing.
pub fn ref_venv() -> PathBuf {
    let p = std::env::var("REF_VENV").map(PathBuf::from).unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
        PathBuf::from(home).join(".cache/dnsmesh-reference-venv")
    });
    assert!(
        p.join("bin/dnsmesh").exists(),
        "reference venv missing at {} — run ../shared/interop/setup-reference.sh (CI does)",
        p.display()
    );
    p
}

/// Raw DNS over UDP: send `query`, return the reply.
pub fn udp_exchange(server: SocketAddr, query: &[u8]) -> Vec<u8> {
    let bind = if server.is_ipv6() { "[::1]:0" } else { "127.0.0.1:0" };
    let s = std::net::UdpSocket::bind(bind).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    s.send_to(query, server).unwrap();
    let mut buf = vec![0u8; 65535];
    let (n, _) = s.recv_from(&mut buf).expect("no UDP reply");
    buf.truncate(n);
    buf
}

/// Raw DNS over TCP: send several queries on one connection, return the replies.
pub fn tcp_exchange(server: SocketAddr, queries: &[Vec<u8>]) -> Vec<Vec<u8>> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(server).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    let mut out = vec![];
    for q in queries {
        let mut m = (q.len() as u16).to_be_bytes().to_vec();
        m.extend_from_slice(q);
        s.write_all(&m).unwrap();
        let mut len = [0u8; 2];
        s.read_exact(&mut len).unwrap();
        let mut r = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut r).unwrap();
        out.push(r);
    }
    out
}

/// Build a query message by hand (the name's letter case is kept as written).
pub fn query(name: &str, rtype: hickory_proto::rr::RecordType, edns: Option<u16>) -> Vec<u8> {
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(&rand_id().to_be_bytes());
    m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, if edns.is_some() { 1 } else { 0 }]);
    for label in name.trim_end_matches('.').split('.').filter(|l| !l.is_empty()) {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&u16::from(rtype).to_be_bytes());
    m.extend_from_slice(&[0, 1]);
    if let Some(p) = edns {
        m.extend_from_slice(&[0, 0, 41]);
        m.extend_from_slice(&p.to_be_bytes());
        m.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    }
    m
}

pub fn rand_id() -> u16 {
    let mut b = [0u8; 2];
    dnsmesh::proto::keys::random_fill(&mut b);
    u16::from_be_bytes(b)
}

/// Parse a reply.
pub fn parse(bytes: &[u8]) -> hickory_proto::op::Message {
    hickory_proto::op::Message::from_vec(bytes).expect("reply parses")
}

/// POST a record with the operator token.
pub fn publish(node: &Node, token: &str, name: &str, value: &str, ttl: u64) -> u16 {
    let body = serde_json::json!({"value": value, "ttl": ttl}).to_string();
    http(&node.url(), "POST", &format!("/v1/records/{name}"), Some(token), &body).unwrap().0
}

/// A TCP port free on `ip` right now (for nodes that must know each other's URLs).
pub fn free_tcp_port(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0)).unwrap().local_addr().unwrap().port()
}

/// Poll `f` until it returns true, at most `tries` times, `every` apart.
pub fn eventually(tries: usize, every: std::time::Duration, mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..tries {
        if f() {
            return true;
        }
        std::thread::sleep(every);
    }
    false
}

pub fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let p = s.local_addr().unwrap().port();
    drop(s);
    p
}

pub struct Unbound {
    pub child: std::process::Child,
    pub addr: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Unbound {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// unbound on loopback with one stub zone per `(zone, server)`; ready when it answers.
pub fn start_unbound(stubs: &[(&str, std::net::SocketAddr)]) -> Unbound {
    start_unbound_validating(stubs, &[])
}

/// As [`start_unbound`], validating DNSSEC with `anchors` (unbound `trust-anchor:` lines,
/// e.g. `"zone. DS tag alg 2 HEX"`); stub zones without an anchor stay insecure.
pub fn start_unbound_validating(
    stubs: &[(&str, std::net::SocketAddr)],
    anchors: &[&str],
) -> Unbound {
    // A port picked free can be taken again before unbound binds it: retry on that.
    for _ in 0..5 {
        if let Some(u) = try_start_unbound(stubs, anchors) {
            return u;
        }
    }
    panic!("unbound could not bind a free port in 5 attempts");
}

fn try_start_unbound(stubs: &[(&str, std::net::SocketAddr)], anchors: &[&str]) -> Option<Unbound> {
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let conf = format!(
        r#"server:
  interface: 127.0.0.1@{port}
  port: {port}
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "{dir}"
  pidfile: ""
  use-syslog: no
  logfile: ""
  verbosity: 1
  do-ip6: no
  module-config: "iterator"
  local-zone: "test." nodefault
  do-not-query-localhost: no
  qname-minimisation: yes
  use-caps-for-id: yes
  cache-max-negative-ttl: {neg}
  access-control: 127.0.0.0/8 allow
"#,
        dir = dir.path().display(),
        neg = std::env::var("UNBOUND_NEG_TTL").unwrap_or_else(|_| "3600".into()),
    );
    let mut conf = conf;
    if !anchors.is_empty() {
        conf = conf.replace("module-config: \"iterator\"", "module-config: \"validator iterator\"");
        conf.push_str("  val-log-level: 2\n");
        for a in anchors {
            conf.push_str(&format!("  trust-anchor: \"{a}\"\n"));
        }
    }
    for (zone, server) in stubs {
        let anchored =
            anchors.iter().any(|a| a.starts_with(&format!("{}.", zone.trim_end_matches('.'))));
        let insecure = if anchored {
            String::new()
        } else {
            format!("server:\n  domain-insecure: \"{zone}\"\n")
        };
        conf.push_str(&format!(
            "{insecure}stub-zone:\n  name: \"{zone}\"\n  stub-addr: {}@{}\n",
            server.ip(),
            server.port()
        ));
    }
    let path = dir.path().join("unbound.conf");
    std::fs::write(&path, conf).unwrap();
    let log = dir.path().join("unbound.log");
    let mut child = std::process::Command::new("unbound")
        .arg("-d")
        .arg("-c")
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("unbound (Debian package, installed by .ci/run)");
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    // Ready when it answers `version.server CH TXT`, which it answers itself (the stub
    // zones' servers may not be up yet). Bounded number of tries.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_millis(200))).unwrap();
    let mut q = query("version.server.", hickory_proto::rr::RecordType::TXT, None);
    let n = q.len();
    q[n - 1] = 3; // class CH
    for _ in 0..300 {
        if let Ok(Some(status)) = child.try_wait() {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("Address already in use") {
                return None; // the port was taken between picking and binding: retry
            }
            panic!("unbound exited ({status}): {text}");
        }
        let _ = sock.send_to(&q, addr);
        let mut buf = [0u8; 1500];
        if sock.recv_from(&mut buf).is_ok() {
            return Some(Unbound { child, addr, _dir: dir });
        }
    }
    panic!(
        "unbound did not come up on {addr}: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

/// The TXT values (strings of each RR joined) in a reply's answer section.
pub fn txt_values(m: &hickory_proto::op::Message) -> Vec<String> {
    m.answers
        .iter()
        .filter_map(|a| match &a.data {
            hickory_proto::rr::RData::TXT(t) => {
                String::from_utf8(dnsmesh::proto::txt::join(&t.txt_data)).ok()
            }
            _ => None,
        })
        .collect()
}

/// The TXT values at `name`, asked over UDP and again over TCP when truncated.
pub fn txt_at(server: SocketAddr, name: &str) -> Vec<String> {
    let q = query(
        &format!("{}.", name.trim_end_matches('.')),
        hickory_proto::rr::RecordType::TXT,
        Some(4096),
    );
    let m = parse(&udp_exchange(server, &q));
    if !m.metadata.truncation {
        return txt_values(&m);
    }
    // As a resolver does: a truncated UDP answer (larger than `max_udp_payload`) is
    // asked again over TCP.
    let tcp = tcp_exchange(server, &[q]);
    txt_values(&parse(&tcp[0]))
}

/// Self-service registration of `user@<zone>` with an identity from `seed`: a bearer
/// token (`tsig = false`) or a TSIG key with the X25519 proof (`tsig = true`).
pub fn register(
    node: &Node,
    user: &str,
    seed: u8,
    tsig: bool,
) -> (dnsmesh::proto::keys::Identity, serde_json::Value) {
    use dnsmesh::proto::registration;
    let id = dnsmesh::proto::keys::Identity::from_private_bytes([seed; 32]);
    let (s, body) = http(&node.url(), "GET", "/v1/registration/challenge", None, "").unwrap();
    assert_eq!(s, 200, "{body}");
    let ch: serde_json::Value = serde_json::from_str(&body).unwrap();
    let challenge: [u8; 32] =
        hex::decode(ch["challenge"].as_str().unwrap()).unwrap().try_into().unwrap();
    let server_pub: [u8; 32] =
        hex::decode(ch["server_x25519_pub"].as_str().unwrap()).unwrap().try_into().unwrap();
    let subject = format!("{user}@{}", node.zone);
    let sig = registration::sign_registration(
        id.signing_key(),
        &challenge,
        &subject,
        ch["node"].as_str().unwrap(),
    );
    let mut req = serde_json::json!({
        "subject": subject,
        "ed25519_spk": hex::encode(id.ed25519_public()),
        "challenge": hex::encode(challenge),
        "signature": hex::encode(sig),
    });
    if tsig {
        let pop = registration::x25519_pop(id.x25519_private(), &server_pub, &challenge, &subject)
            .unwrap();
        req["x25519_pub"] = hex::encode(id.x25519_public()).into();
        req["x25519_pop"] = hex::encode(pop).into();
    }
    let path = if tsig { "/v1/registration/tsig-confirm" } else { "/v1/registration/confirm" };
    let (s, body) = http(&node.url(), "POST", path, None, &req.to_string()).unwrap();
    assert_eq!(s, 200, "{body}");
    (id, serde_json::from_str(&body).unwrap())
}

/// A node's full sync digest as a set of (name, hash), paged to the end with `sync_token`.
pub fn digest_set(n: &Node, sync_token: &str) -> std::collections::BTreeSet<(String, String)> {
    let mut out = std::collections::BTreeSet::new();
    let mut cursor = "0::".to_string();
    loop {
        let path = format!("/v1/sync/digest?cursor={cursor}&limit=500");
        let (s, body) = http(&n.url(), "GET", &path, Some(sync_token), "").unwrap();
        assert_eq!(s, 200, "digest of {}: {body}", n.url());
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        for r in v["records"].as_array().unwrap() {
            out.insert((
                r["name"].as_str().unwrap().to_string(),
                r["hash"].as_str().unwrap().to_string(),
            ));
        }
        if !v["has_more"].as_bool().unwrap() {
            return out;
        }
        cursor = v["next_cursor"].as_str().unwrap().to_string();
    }
}
