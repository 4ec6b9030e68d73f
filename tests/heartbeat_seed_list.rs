//! Opt-in HTTP seed lists for discovery: a list served over HTTP is fetched and its zones
//! harvested; a list behind a redirect is not followed.
#![cfg(feature = "net")]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use common::*;

/// A tiny HTTP server on loopback: `/seeds.txt` → `body`, `/moved` → 302 to `/other.txt`,
/// `/other.txt` → `other`. Runs on a thread for the test's lifetime.
fn serve(body: String, other: String) -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let mut line = String::new();
            let _ = BufReader::new(&s).read_line(&mut line);
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            let resp = match path.as_str() {
                "/seeds.txt" => format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()),
                "/moved" => "HTTP/1.1 302 Found\r\nLocation: /other.txt\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string(),
                "/other.txt" => format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{other}", other.len()),
                _ => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string(),
            };
            let _ = s.write_all(resp.as_bytes());
        }
    });
    addr
}

fn hb_node(zone: &str, endpoint: &str, seed_urls: &str) -> Node {
    Node::start(
        zone,
        &[
            ("DNSMESH_HEARTBEAT__ENABLED", "true"),
            ("DNSMESH_HEARTBEAT__SELF_ENDPOINT", endpoint),
            ("DNSMESH_HEARTBEAT__INTERVAL_SECS", "1"),
            ("DNSMESH_HEARTBEAT__ALLOW_PRIVATE_ENDPOINTS", "true"),
            ("DNSMESH_HEARTBEAT__SEED_URLS", seed_urls),
        ],
    )
}

#[test]
fn seed_list_is_fetched_and_redirects_are_refused() {
    let b = hb_node("b.test", "http://b.test:1", "");
    let c = hb_node("c.test", "http://c.test:1", "");
    let srv = serve(format!("# seeds\nb.test@{}\n", b.dns[0]), format!("c.test@{}\n", c.dns[0]));
    let a =
        hb_node("a.test", "http://a.test:1", &format!("http://{srv}/seeds.txt,http://{srv}/moved"));
    let peers = |n: &Node| -> Vec<String> {
        let (_, s) = http(&n.url(), "GET", "/status.json", None, "").unwrap();
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        v["heartbeat_peers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["endpoint"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(
        eventually(100, Duration::from_millis(200), || peers(&a)
            .contains(&"http://b.test:1".to_string())),
        "zone from the seed list not harvested: {:?}",
        peers(&a)
    );
    assert!(
        !peers(&a).contains(&"http://c.test:1".to_string()),
        "a redirect was followed: {:?}",
        peers(&a)
    );
}
