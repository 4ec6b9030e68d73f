//! `GET /v1/watch/mb-<hash12>` (Server-Sent Events) end to end with a real node process,
//! its limits under a bounded flood of subscriptions (`limit_loopback = true`), and the
//! store's size metrics.

#![cfg(feature = "net")]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;

const OP: &str = "watch-operator-token";
const MB: &str = "mb-0123456789ab";

/// An open SSE stream (or the refusal): status and, when 200, a reader past the head.
struct Sse {
    status: u16,
    reader: BufReader<TcpStream>,
}

fn connect_from(src: &str, dst: SocketAddr) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let ip: IpAddr = src.parse().unwrap();
    sock.bind(&SocketAddr::new(ip, 0).into()).unwrap();
    sock.connect_timeout(&dst.into(), Duration::from_secs(5)).unwrap();
    sock.into()
}

fn open_watch(node: &Node, src: &str, mailbox: &str) -> Sse {
    let mut s = connect_from(src, node.http);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET /v1/watch/{mailbox} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(s);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).unwrap();
    let status = status_line.split_whitespace().nth(1).and_then(|x| x.parse().ok()).unwrap_or(0);
    loop {
        let mut l = String::new();
        if reader.read_line(&mut l).unwrap_or(0) == 0 || l == "\r\n" {
            break;
        }
    }
    Sse { status, reader }
}

impl Sse {
    /// The next SSE line of substance (chunked framing and blank lines skipped), or None
    /// at end of stream / after `wait`.
    fn next_line(&mut self, wait: Duration) -> Option<String> {
        self.reader.get_ref().set_read_timeout(Some(wait)).unwrap();
        loop {
            let mut l = String::new();
            match self.reader.read_line(&mut l) {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            let l = l.trim_end();
            // Chunk-size lines are hex digits only; SSE lines start with "data:" or ":".
            if l.starts_with("data:") || l.starts_with(':') {
                return Some(l.to_string());
            }
            if l == "0" {
                return None; // the last chunk: the server ended the stream
            }
        }
    }

    /// The next `data:` line (comments skipped).
    fn next_event(&mut self, wait: Duration) -> Option<String> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let l = self.next_line(left)?;
            if let Some(d) = l.strip_prefix("data: ") {
                return Some(d.to_string());
            }
        }
    }
}

fn metric(node: &Node, name: &str) -> u64 {
    let (s, body) = http(&node.url(), "GET", "/metrics", Some(OP), "").unwrap();
    assert_eq!(s, 200);
    body.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{name} missing from /metrics"))
}

#[test]
fn watch_streams_names_of_created_and_removed_mailbox_records_and_nothing_else() {
    let node = Node::start("mesh.test", &[("DNSMESH_AUTH__OPERATOR_TOKEN", OP)]);
    let mut w = open_watch(&node, "127.0.0.1", MB);
    assert_eq!(w.status, 200);
    // The subscription is in place once its first comment arrives.
    assert_eq!(w.next_line(Duration::from_secs(10)).as_deref(), Some(": watching mb-0123456789ab"));

    let slot = format!("slot-3.{MB}.mesh.test");
    let claim = format!("claim-7.{MB}.mesh.test");
    let t = Instant::now();
    assert_eq!(publish(&node, OP, &slot, "v=dmp1;t=secret-value-one", 300), 201);
    assert_eq!(w.next_event(Duration::from_secs(10)).as_deref(), Some(slot.as_str()));
    let first = t.elapsed();
    // Other mailboxes, chunks and unrelated names are not announced here.
    assert_eq!(publish(&node, OP, "slot-3.mb-ffffffffffff.mesh.test", "v=dmp1;x", 300), 201);
    assert_eq!(publish(&node, OP, &format!("chunk-0001-abc.{MB}.mesh.test"), "v=dmp1;c", 300), 201);
    assert_eq!(publish(&node, OP, "id-alice.mesh.test", "v=dmp1;i", 300), 201);
    assert_eq!(publish(&node, OP, &claim, "v=dmp1;t=claim-value", 300), 201);
    assert_eq!(w.next_event(Duration::from_secs(10)).as_deref(), Some(claim.as_str()));
    // A delete is announced too.
    let (s, _) = http(
        &node.url(),
        "DELETE",
        &format!("/v1/records/{slot}"),
        Some(OP),
        &serde_json::json!({"value": "v=dmp1;t=secret-value-one"}).to_string(),
    )
    .unwrap();
    assert_eq!(s, 204);
    assert_eq!(w.next_event(Duration::from_secs(10)).as_deref(), Some(slot.as_str()));
    // Upper-case mailbox in the path is the same mailbox; a malformed one is refused.
    let mut up = open_watch(&node, "127.0.0.1", "MB-0123456789AB");
    assert_eq!(up.status, 200);
    assert!(up.next_line(Duration::from_secs(10)).is_some());
    assert_eq!(open_watch(&node, "127.0.0.1", "mb-xyz").status, 400);
    assert_eq!(publish(&node, OP, &slot, "v=dmp1;t=again", 300), 201);
    assert_eq!(up.next_event(Duration::from_secs(10)).as_deref(), Some(slot.as_str()));
    assert_eq!(w.next_event(Duration::from_secs(10)).as_deref(), Some(slot.as_str()));
    assert!(first < Duration::from_secs(1), "first event after {first:?}");
}

#[test]
fn watch_route_off_answers_404() {
    let node = Node::start("mesh.test", &[("DNSMESH_HTTP__WATCH_MAX_TOTAL", "0")]);
    assert_eq!(open_watch(&node, "127.0.0.1", MB).status, 404);
}

#[test]
fn watch_subscriptions_are_bounded_per_client_and_in_total_and_idle_streams_close() {
    let node = Node::start_nofile(
        "mesh.test",
        &[
            ("DNSMESH_AUTH__OPERATOR_TOKEN", OP),
            ("DNSMESH_LIMITS__LIMIT_LOOPBACK", "true"),
            // The per-IP request bucket is not what is tested here.
            ("DNSMESH_LIMITS__HTTP_RATE", "1000"),
            ("DNSMESH_LIMITS__HTTP_BURST", "1000"),
            ("DNSMESH_HTTP__WATCH_MAX_PER_IP", "3"),
            ("DNSMESH_HTTP__WATCH_MAX_TOTAL", "8"),
            ("DNSMESH_HTTP__WATCH_IDLE_SECS", "3"),
        ],
        1024,
    );
    let pid = node.child.id();
    let rss = || -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    };
    let rss0 = rss();
    // A bounded flood: 200 subscriptions from each of two addresses, held open.
    let mut held = Vec::new();
    let mut refused = std::collections::BTreeMap::<(String, u16), usize>::new();
    let t = Instant::now();
    for src in ["127.0.0.2", "127.0.0.3", "127.0.0.4"] {
        for _ in 0..200 {
            let w = open_watch(&node, src, MB);
            if w.status == 200 {
                held.push(w);
            } else {
                *refused.entry((src.to_string(), w.status)).or_default() += 1;
            }
        }
    }
    let flood = t.elapsed();
    // 3 + 3 from the first two addresses, then only 2 more fit the total of 8.
    assert_eq!(held.len(), 8, "held {}, refused {refused:?}", held.len());
    assert_eq!(refused.get(&("127.0.0.2".into(), 429)), Some(&197));
    assert_eq!(refused.get(&("127.0.0.3".into(), 429)), Some(&197));
    assert_eq!(refused.get(&("127.0.0.4".into(), 503)), Some(&198));
    let grew = rss().saturating_sub(rss0);
    assert!(grew < 16 * 1024, "RSS grew {grew} KiB during the flood");
    // The node keeps answering while the streams are held.
    assert_eq!(http(&node.url(), "GET", "/health", None, "").unwrap().0, 200);
    let slot = format!("slot-1.{MB}.mesh.test");
    assert_eq!(publish(&node, OP, &slot, "v=dmp1;x", 300), 201);
    for w in &mut held {
        assert_eq!(w.next_event(Duration::from_secs(10)).as_deref(), Some(slot.as_str()));
    }
    // A client that goes away frees its place.
    held.truncate(7);
    assert!(
        eventually(100, Duration::from_millis(100), || {
            let w = open_watch(&node, "127.0.0.5", MB);
            let ok = w.status == 200;
            if ok {
                held.push(w);
            }
            ok
        }),
        "a closed stream's place was not freed"
    );
    // Idle streams (no event for 3 s) get keep-alive comments and are then closed.
    let t = Instant::now();
    let mut w = held.pop().unwrap();
    let mut keepalives = 0;
    while let Some(l) = w.next_line(Duration::from_secs(10)) {
        if l.starts_with(": keep-alive") {
            keepalives += 1;
        }
    }
    let closed_after = t.elapsed();
    assert!(keepalives >= 1, "no keep-alive before the idle close");
    assert!(closed_after < Duration::from_secs(8), "idle stream closed after {closed_after:?}");
    let mut buf = [0u8; 16];
    assert_eq!(w.reader.get_mut().read(&mut buf).unwrap_or(0), 0, "stream still open");
    eprintln!(
        "watch flood: 600 attempts in {flood:?}, 8 held, refused {refused:?}, RSS +{grew} KiB; idle close after {closed_after:?} with {keepalives} keep-alives"
    );
}

#[test]
fn metrics_report_live_bytes_and_data_dir_size() {
    let node = Node::start("mesh.test", &[("DNSMESH_AUTH__OPERATOR_TOKEN", OP)]);
    assert_eq!(metric(&node, "dmp_store_live_bytes"), 0);
    let mut want = 0u64;
    for i in 0..20 {
        let name = format!("slot-{i}.{MB}.mesh.test");
        let value = format!("v=dmp1;t=value-{i:04}");
        assert_eq!(publish(&node, OP, &name, &value, 300), 201);
        want += (name.len() + value.len()) as u64;
    }
    assert_eq!(metric(&node, "dmp_store_live_bytes"), want);
    let (s, _) =
        http(&node.url(), "DELETE", &format!("/v1/records/slot-0.{MB}.mesh.test"), Some(OP), "")
            .unwrap();
    assert_eq!(s, 204);
    want -= (format!("slot-0.{MB}.mesh.test").len() + "v=dmp1;t=value-0000".len()) as u64;
    assert_eq!(metric(&node, "dmp_store_live_bytes"), want);
    let disk = metric(&node, "dmp_store_disk_bytes");
    assert!(disk > 0, "data dir size 0");
    // Kept across a restart (stored with the rows).
    let mut node = node;
    node.term();
    node.restart();
    assert_eq!(metric(&node, "dmp_store_live_bytes"), want);
}
