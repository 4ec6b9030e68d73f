//! The status page's charts: a sampler (every 10 s, and when the page is loaded) fills
//! the ring buffer of `node::charts`; the page embeds the rendered SVG.

use std::time::Duration;

use super::{Shared, State};
use crate::policy::charts::{self, Sample};

/// Seconds between background samples.
const EVERY: Duration = Duration::from_secs(10);

fn now_ms() -> u64 {
    crate::clock::Clock::system().now_ms()
}

/// Take one sample (DNS counters, writes, sync lag, heartbeat peers).
pub(super) async fn sample(st: &State, transient: bool) {
    let dns = st.peers.dns.send(super::GetStats).await.ok();
    let (queries, updates, latency) = match &dns {
        Some(d) => (
            d.latency_buckets.iter().sum::<u64>(),
            d.outcomes.iter().filter(|(k, _)| k.contains("update")).map(|(_, v)| *v).sum::<u64>(),
            d.latency_buckets.clone(),
        ),
        None => (0, 0, vec![]),
    };
    let http_writes: u64 = st.writes.lock().values().sum();
    let sync = st.peers.sync.send(crate::actors::sync::GetSyncStats).await.unwrap_or_default();
    let hb = super::heartbeat_peers(st).await;
    let s = Sample {
        t_ms: now_ms(),
        queries,
        writes: http_writes + updates,
        latency,
        sync_lag: sync.into_iter().map(|p| (p.peer, p.lag_secs)).collect(),
        heartbeat: hb.into_iter().map(|p| (format!("{} ({})", p.endpoint, p.zone), p.up)).collect(),
        transient,
    };
    st.history.lock().push(s);
}

/// Background sampling for the life of the server.
pub(super) async fn sampler(st: Shared) {
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tick.tick().await;
        sample(&st, false).await;
    }
}

/// The charts section of the page: samples once more if the last is over a second old.
pub(super) async fn charts_html(st: &State) -> String {
    let stale = st.history.lock().last_ms().is_none_or(|t| t + 1000 < now_ms());
    if stale {
        sample(st, true).await;
    }
    let now = now_ms();
    let h = st.history.lock();
    let bounds = crate::dnswire::udp::LATENCY_BOUNDS_US;
    let one = |v| vec![(String::new(), v)];
    [
        charts::line_chart("chart-qps", "DNS queries per second", "q/s", &one(h.qps()), now),
        charts::line_chart(
            "chart-wps",
            "Writes per second (HTTP + UPDATE)",
            "w/s",
            &one(h.wps()),
            now,
        ),
        charts::line_chart(
            "chart-p99",
            "DNS p99 response time",
            "ms",
            &one(h.p99_ms(&bounds)),
            now,
        ),
        charts::line_chart("chart-sync-lag", "Sync lag per peer", "s", &h.sync_lag(), now),
        charts::timeline("chart-heartbeat", "Heartbeat peers (up / down)", &h.heartbeat(), now),
    ]
    .join("\n")
}
