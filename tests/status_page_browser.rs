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

/// The charts: queries/s, writes/s and p99 latency over the last hour, sync lag per peer
/// and heartbeat peers on a timeline, as inline SVG drawn by the server (no script, no
/// external asset), on a page that refreshes itself; rendered in headless Chromium.
#[test]
fn status_page_draws_charts() {
    const OP: &str = "op-token-charts";
    let b = Node::start("charts.test", &[("DNSMESH_CLUSTER__SYNC_TOKEN", "t")]);
    let a = Node::start(
        "charts.test",
        &[
            ("DNSMESH_CLUSTER__SYNC_TOKEN", "t"),
            ("DNSMESH_CLUSTER__PEERS", &b.url()),
            ("DNSMESH_AUTH__OPERATOR_TOKEN", OP),
        ],
    );
    // Traffic between two samples: queries and writes.
    for i in 0..20 {
        assert_eq!(publish(&a, OP, &format!("w{i}.charts.test"), "v=1", 300), 201);
    }
    let q = query("w1.charts.test.", hickory_proto::rr::RecordType::TXT, None);
    for _ in 0..300 {
        udp_exchange(a.dns[0], &q);
    }
    // The page samples when loaded (at most once a second): poll until the query chart
    // has a measured interval (a line) and the sync peer has a lag point.
    let mut page = String::new();
    assert!(
        eventually(50, Duration::from_millis(200), || {
            page = http(&a.url(), "GET", "/", None, "").unwrap().1;
            let qps = page.split("id=\"chart-qps\"").nth(1).unwrap_or("");
            let qps = qps.split("</svg>").next().unwrap_or("");
            qps.contains("<polyline") || qps.contains("<circle")
        }),
        "{page}"
    );
    let dir = tempfile::tempdir().unwrap();
    let shot = dir.path().join("charts.png");
    let dom = render(&format!("{}/", a.url()), &shot);
    for id in ["chart-qps", "chart-wps", "chart-p99", "chart-sync-lag", "chart-heartbeat"] {
        assert!(dom.contains(&format!("<svg id=\"{id}\"")), "chart {id} missing: {dom}");
    }
    let chart = |id: &str| {
        dom.split(&format!("<svg id=\"{id}\"")).nth(1).unwrap().split("</svg>").next().unwrap()
    };
    // The latest value and the peak are written next to each chart: the queries and the
    // writes of the burst above show as a non-zero peak.
    let peak = |id: &str| -> f64 {
        let c = chart(id);
        let legend = c.split("class=\"latest\"").nth(1).unwrap_or("");
        legend
            .split("(peak ")
            .nth(1)
            .and_then(|t| t.split(')').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no peak in {id}: {c}"))
    };
    assert!(peak("chart-qps") > 0.0 && peak("chart-wps") > 0.0);
    assert!(chart("chart-sync-lag").contains(&b.url()), "the peer's lag series");
    assert!(dom.contains("http-equiv=\"refresh\""), "the page refreshes itself");
    assert!(!dom.contains("<script") && !dom.contains("src=\""), "no script or external asset");
    assert!(std::fs::metadata(&shot).map(|m| m.len() > 5000).unwrap_or(false), "screenshot");
    if let Ok(keep) = std::env::var("CHARTS_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
}
