//! `recv --watch` and the node's watch stream, real processes on loopback: through our
//! node a message is displayed as soon as the stream names it (long before the next
//! poll); against a reference node (no stream: 404) the CLI falls back to polling and
//! still receives; `watch_stream: false` in config.yaml polls only.
#![cfg(feature = "net")]

mod cli_common;
mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cli_common::*;
use common::Node;

/// A running `dnsmesh recv --watch --json`: its stdout lines and its stderr bytes.
struct Watcher {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Watcher {
    fn start(u: &User, interval: u64) -> Watcher {
        Watcher::start_env(u, interval, &[])
    }

    fn start_env(u: &User, interval: u64, env: &[(&str, &str)]) -> Watcher {
        let mut child = Command::new(env!("CARGO_BIN_EXE_dnsmesh"))
            .arg("--config-home")
            .arg(&u.home)
            .args(["recv", "--watch", "--json", "--interval", &interval.to_string()])
            .env("DMP_PASSPHRASE", &u.pass)
            .env_remove("DMP_PROVIDER_DNS_PORT")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn dnsmesh recv --watch");
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (mut err, se) = (child.stderr.take().unwrap(), stderr.clone());
        std::thread::spawn(move || {
            let mut b = [0u8; 1024];
            while let Ok(n) = err.read(&mut b) {
                if n == 0 {
                    break;
                }
                se.lock().unwrap().push_str(&String::from_utf8_lossy(&b[..n]));
            }
        });
        Watcher { child, lines, stderr }
    }

    /// Wait (bounded) until stderr contains `s`.
    fn wait_stderr(&self, s: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.stderr.lock().unwrap().contains(s) {
            assert!(
                Instant::now() < deadline,
                "no {s:?} on stderr within {within:?}: {}",
                self.stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Time until a message with `text` is printed (panics after `within`).
    fn wait_message(&self, text: &str, within: Duration) -> Duration {
        let t = Instant::now();
        loop {
            let left = within.checked_sub(t.elapsed()).unwrap_or_else(|| {
                panic!("{text:?} not displayed within {within:?}: {}", self.stderr.lock().unwrap())
            });
            let Ok(l) = self.lines.recv_timeout(left) else { continue };
            let v: serde_json::Value = serde_json::from_str(&l).expect("recv --json line");
            if v["kind"] == "message" && v["text"] == text {
                return t.elapsed();
            }
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pair(zone: &str, http: &str, dns: std::net::SocketAddr) -> (User, User) {
    let (alice, bob) = (User::new("alice"), User::new("bob"));
    let r = vec![dns.to_string()];
    alice.setup(zone, http, dns, &r, "http", false);
    bob.setup(zone, http, dns, &r, "http", false);
    alice.ok(&["identity", "fetch", &format!("{}@{zone}", bob.name), "--add"]);
    bob.ok(&["identity", "fetch", &format!("{}@{zone}", alice.name), "--add"]);
    (alice, bob)
}

#[test]
fn recv_watch_displays_a_message_as_soon_as_the_stream_names_it() {
    let node = Node::start("mesh.test", &[]);
    let (alice, bob) = pair("mesh.test", &node.url(), node.dns[0]);
    // Polls 60 s apart: anything displayed sooner came through the stream.
    let w = Watcher::start(&bob, 60);
    w.wait_stderr("stream: live", Duration::from_secs(20));
    let mut lat = Vec::new();
    for i in 0..3 {
        let m = format!("streamed {i} to {}", bob.name);
        alice.ok(&["send", &format!("{}@mesh.test", bob.name), &m]);
        lat.push(w.wait_message(&m, Duration::from_secs(30)));
    }
    eprintln!("send returned -> displayed: {lat:?}");
    for l in &lat {
        assert!(*l < Duration::from_secs(5), "displayed after {l:?}: not through the stream");
    }
}

#[test]
fn recv_watch_polls_when_the_stream_is_turned_off() {
    let node = Node::start("mesh.test", &[]);
    let (alice, bob) = pair("mesh.test", &node.url(), node.dns[0]);
    let cfg = bob.home.join("config.yaml");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("watch_stream: false\n");
    std::fs::write(&cfg, text).unwrap();
    let w = Watcher::start(&bob, 1);
    w.wait_stderr("(polling)", Duration::from_secs(20));
    let m = format!("polled to {}", bob.name);
    alice.ok(&["send", &format!("{}@mesh.test", bob.name), &m]);
    w.wait_message(&m, Duration::from_secs(30));
    assert!(!w.stderr.lock().unwrap().contains("stream"), "{}", w.stderr.lock().unwrap());
}

#[test]
fn recv_watch_falls_back_to_polling_against_a_reference_node() {
    let node = RefNode::start("ref.test");
    let (alice, bob) = pair("ref.test", &node.http, node.dns);
    let w = Watcher::start(&bob, 1);
    w.wait_stderr("no stream (HTTP 404), polling", Duration::from_secs(30));
    let m = format!("polled via the reference to {}", bob.name);
    alice.ok(&["send", &format!("{}@ref.test", bob.name), &m]);
    let t = w.wait_message(&m, Duration::from_secs(60));
    eprintln!("reference node, polling every 1 s: displayed {t:?} after send returned");
}

/// Mail that arrives at a claim provider wakes the watcher too: bob's home node has no
/// stream (route off), alice lives on the claim provider's node, which has one. With polls
/// 60 s apart, a message displayed within seconds came through the provider's stream.
#[test]
fn recv_watch_follows_the_claim_providers_stream_too() {
    let home = Node::start("home.test", &[("DNSMESH_HTTP__WATCH_MAX_TOTAL", "0")]);
    let prov = Node::start("prov.test", &[]);
    let (alice, bob) = (User::new("alice"), User::new("bob"));
    let (hd, pd) = (home.dns[0].to_string(), prov.dns[0].to_string());
    bob.setup("home.test", &home.url(), home.dns[0], &[hd.clone(), pd.clone()], "http", false);
    alice.setup("prov.test", &prov.url(), prov.dns[0], &[pd, hd], "http", false);
    for u in [&alice, &bob] {
        let cfg = u.home.join("config.yaml");
        let mut text = std::fs::read_to_string(&cfg).unwrap();
        text.push_str(&format!(
            "claim_provider_override: {}\nclaim_provider_zone: prov.test\n",
            prov.url()
        ));
        std::fs::write(&cfg, text).unwrap();
    }
    let (to_bob, to_alice) =
        (format!("{}@home.test", bob.name), format!("{}@prov.test", alice.name));
    alice.ok(&["identity", "fetch", &to_bob, "--add"]);
    bob.ok(&["identity", "fetch", &to_alice, "--add"]);
    let w = Watcher::start(&bob, 60);
    w.wait_stderr("streams: 1/2 live", Duration::from_secs(20));
    let m = "via the provider's stream".to_string();
    alice.ok(&["send", &to_bob, &m]);
    let t = w.wait_message(&m, Duration::from_secs(30));
    eprintln!("claim provider stream: displayed {t:?} after send returned");
    assert!(t < Duration::from_secs(5), "displayed after {t:?}: not through a stream");
}

/// A stream that stays open but goes silent (no keep-alives) is taken for dead and
/// replaced: a loopback server that opens the stream and then says nothing sees the CLI
/// connect again, and the status line says why; polling carries on meanwhile.
#[test]
fn recv_watch_replaces_a_silent_stream() {
    use std::io::Write;
    let node = Node::start("mesh.test", &[]);
    let (_alice, bob) = pair("mesh.test", &node.url(), node.dns[0]);
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let (conn_tx, conns) = mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in silent.incoming() {
            let Ok(mut s) = s else { break };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n: open\n\n");
            held.push(s); // open, and silent from now on
            if conn_tx.send(()).is_err() {
                break;
            }
        }
    });
    let cfg = bob.home.join("config.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let text: String = text
        .lines()
        .map(|l| if l.starts_with("endpoint:") { format!("endpoint: {url}") } else { l.into() })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&cfg, text + "\n").unwrap();
    let w = Watcher::start_env(&bob, 60, &[("DNSMESH_WATCH_SILENT_SECS", "2")]);
    conns.recv_timeout(Duration::from_secs(20)).expect("first stream connection");
    w.wait_stderr("stream: live", Duration::from_secs(10));
    w.wait_stderr("silent for 2s", Duration::from_secs(10));
    conns.recv_timeout(Duration::from_secs(10)).expect("a new connection after the silence");
}
