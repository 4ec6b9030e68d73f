//! The status page in a real browser: headless Chromium (Debian `chromium`, installed by
//! `.ci/run`) loads `/` from a node that has a cluster peer, and the rendered page shows
//! the zone, every actor healthy, and the peer with its sync lag.
#![cfg(feature = "net")]

mod common;

use std::time::Duration;

use common::*;

fn chromium() -> &'static str {
    for c in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if std::path::Path::new(c).exists() {
            return c;
        }
    }
    panic!("chromium is not installed (Debian package `chromium`; .ci/run installs it)");
}

fn render(url: &str, screenshot: &std::path::Path) -> String {
    let profile = tempfile::tempdir().unwrap();
    let flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1100,900",
    ];
    let shot = std::process::Command::new(chromium())
        .args(flags)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", screenshot.display()))
        .arg(url)
        .output()
        .unwrap();
    assert!(shot.status.success(), "{}", String::from_utf8_lossy(&shot.stderr));
    let out = std::process::Command::new(chromium())
        .args(flags)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn status_page_shows_zone_healthy_actors_and_peer() {
    let b = Node::start("status.test", &[("DNSMESH_CLUSTER__SYNC_TOKEN", "t")]);
    let a = Node::start(
        "status.test",
        &[
            ("DNSMESH_CLUSTER__SYNC_TOKEN", "t"),
            ("DNSMESH_CLUSTER__PEERS", &b.url()),
            ("DNSMESH_NODE__HOSTNAME", "node-a.status.test"),
        ],
    );
    // Wait until A has completed a sync pass with B (the page then shows a lag).
    assert!(eventually(100, Duration::from_millis(100), || {
        let (_, s) = http(&a.url(), "GET", "/status.json", None, "").unwrap();
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        v["cluster_peers"][0]["last_success"].as_u64().unwrap_or(0) > 0
    }));
    let dir = tempfile::tempdir().unwrap();
    let shot = dir.path().join("status.png");
    let dom = render(&format!("{}/", a.url()), &shot);
    assert!(
        std::fs::metadata(&shot).map(|m| m.len() > 1000).unwrap_or(false),
        "screenshot written"
    );
    assert!(dom.contains("<b id=\"zone\">status.test</b>"), "{dom}");
    assert!(dom.contains("node-a.status.test"), "{dom}");
    for actor in ["store", "dns", "auth", "http", "sync"] {
        assert!(
            dom.contains(&format!("<td>{actor}</td><td class=\"ok\">healthy</td>")),
            "actor {actor} not shown healthy: {dom}"
        );
    }
    assert!(!dom.contains(">down<"), "{dom}");
    assert!(dom.contains(&format!("<td>{}</td>", b.url())), "peer missing: {dom}");
    if let Ok(keep) = std::env::var("STATUS_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
}
