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
        let mut child = Command::new(env!("CARGO_BIN_EXE_dnsmesh"))
            .arg("--config-home")
            .arg(&u.home)
            .args(["recv", "--watch", "--json", "--interval", &interval.to_string()])
            .env("DMP_PASSPHRASE", &u.pass)
            .env_remove("DMP_PROVIDER_DNS_PORT")
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
