//! The status page's history and charts: a ring buffer of samples over the last hour and
//! server-rendered SVG (inline, no scripts, no external assets). Pure: samples come in
//! with their time; rendering returns strings.

use std::collections::VecDeque;
use std::fmt::Write as _;

/// How far back the charts go, seconds.
pub const WINDOW_SECS: u64 = 3600;
/// Most samples kept (one per 10 s for an hour, plus page-driven extra ones).
pub const MAX_SAMPLES: usize = 720;

/// Cumulative counters and per-peer states at one instant.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Unix time, milliseconds.
    pub t_ms: u64,
    /// DNS answers sent (all outcomes), cumulative.
    pub queries: u64,
    /// Writes applied (HTTP and UPDATE), cumulative.
    pub writes: u64,
    /// DNS response-time histogram, cumulative, per bucket of `bounds_us` (+ overflow).
    pub latency: Vec<u64>,
    /// Sync lag per cluster peer, seconds.
    pub sync_lag: Vec<(String, u64)>,
    /// Heartbeat peers (endpoint, up).
    pub heartbeat: Vec<(String, bool)>,
    /// Taken for a page load rather than by the periodic sampler: the next sample replaces
    /// it, so page loads (however many) never crowd the hour out of the ring buffer.
    pub transient: bool,
}

/// The ring buffer.
#[derive(Debug, Default)]
pub struct History {
    samples: VecDeque<Sample>,
}

impl History {
    pub fn push(&mut self, s: Sample) {
        if self.samples.back().is_some_and(|b| b.t_ms >= s.t_ms) {
            return;
        }
        if self.samples.back().is_some_and(|b| b.transient) {
            self.samples.pop_back();
        }
        self.samples.push_back(s);
        let newest = self.samples.back().map_or(0, |b| b.t_ms);
        while self.samples.len() > MAX_SAMPLES
            || self.samples.front().is_some_and(|f| f.t_ms + WINDOW_SECS * 1000 < newest)
        {
            self.samples.pop_front();
        }
    }

    pub fn last_ms(&self) -> Option<u64> {
        self.samples.back().map(|s| s.t_ms)
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Rates between consecutive samples: (t_ms, per-second value) of `f`'s counter.
    fn rate(&self, f: impl Fn(&Sample) -> u64) -> Vec<(u64, f64)> {
        self.pairs()
            .map(|(a, b)| {
                let dt = (b.t_ms - a.t_ms) as f64 / 1000.0;
                (b.t_ms, f(b).saturating_sub(f(a)) as f64 / dt)
            })
            .collect()
    }

    fn pairs(&self) -> impl Iterator<Item = (&Sample, &Sample)> {
        self.samples.iter().zip(self.samples.iter().skip(1))
    }

    /// DNS answers per second.
    pub fn qps(&self) -> Vec<(u64, f64)> {
        self.rate(|s| s.queries)
    }

    /// Writes per second.
    pub fn wps(&self) -> Vec<(u64, f64)> {
        self.rate(|s| s.writes)
    }

    /// p99 DNS response time per interval, milliseconds (the upper bound of the bucket
    /// holding the 99th percentile; the overflow bucket counts as twice the last bound).
    pub fn p99_ms(&self, bounds_us: &[u64]) -> Vec<(u64, f64)> {
        self.pairs()
            .filter_map(|(a, b)| {
                let d: Vec<u64> = b
                    .latency
                    .iter()
                    .zip(a.latency.iter().chain(std::iter::repeat(&0)))
                    .map(|(x, y)| x.saturating_sub(*y))
                    .collect();
                let total: u64 = d.iter().sum();
                if total == 0 {
                    return None;
                }
                let want = total - total / 100;
                let mut acc = 0;
                for (i, c) in d.iter().enumerate() {
                    acc += c;
                    if acc >= want {
                        let us = bounds_us
                            .get(i)
                            .copied()
                            .unwrap_or_else(|| bounds_us.last().copied().unwrap_or(0) * 2);
                        return Some((b.t_ms, us as f64 / 1000.0));
                    }
                }
                None
            })
            .collect()
    }

    /// Sync lag per peer over time.
    pub fn sync_lag(&self) -> Vec<(String, Vec<(u64, f64)>)> {
        let mut out: Vec<(String, Vec<(u64, f64)>)> = vec![];
        for s in &self.samples {
            for (peer, lag) in &s.sync_lag {
                if let Some(i) = out.iter().position(|(p, _)| p == peer) {
                    out[i].1.push((s.t_ms, *lag as f64));
                } else if out.len() < 8 {
                    out.push((peer.clone(), vec![(s.t_ms, *lag as f64)]));
                }
            }
        }
        out
    }

    /// Heartbeat peers' up/down over time.
    pub fn heartbeat(&self) -> Vec<(String, Vec<(u64, bool)>)> {
        let mut out: Vec<(String, Vec<(u64, bool)>)> = vec![];
        for s in &self.samples {
            for (peer, up) in &s.heartbeat {
                if let Some(i) = out.iter().position(|(p, _)| p == peer) {
                    out[i].1.push((s.t_ms, *up));
                } else if out.len() < 20 {
                    out.push((peer.clone(), vec![(s.t_ms, *up)]));
                }
            }
        }
        out
    }
}

/// Escape text for SVG/HTML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

const COLORS: [&str; 8] =
    ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"];
const W: f64 = 520.0;
const H: f64 = 130.0;
const LEFT: f64 = 48.0;
const TOP: f64 = 22.0;
const BOTTOM: f64 = 20.0;

fn fmt_num(v: f64) -> String {
    if v >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn time_axis(svg: &mut String, now_ms: u64) {
    let y = H - BOTTOM;
    let _ = write!(
        svg,
        "<line x1=\"{LEFT}\" y1=\"{y}\" x2=\"{W}\" y2=\"{y}\" stroke=\"#999\"/>\
         <text x=\"{LEFT}\" y=\"{}\" font-size=\"10\" fill=\"#666\">-60 min</text>\
         <text x=\"{}\" y=\"{}\" font-size=\"10\" fill=\"#666\">-30 min</text>\
         <text x=\"{}\" y=\"{}\" font-size=\"10\" fill=\"#666\" text-anchor=\"end\">now</text>",
        H - 6.0,
        LEFT + (W - LEFT) / 2.0 - 18.0,
        H - 6.0,
        W,
        H - 6.0
    );
    let _ = now_ms;
}

fn x_of(t_ms: u64, now_ms: u64) -> f64 {
    let age = now_ms.saturating_sub(t_ms) as f64 / 1000.0;
    let frac = 1.0 - (age / WINDOW_SECS as f64).min(1.0);
    LEFT + frac * (W - LEFT)
}

/// A line chart of one or more series over the last hour, with the latest value of each.
pub fn line_chart(
    id: &str,
    title: &str,
    unit: &str,
    series: &[(String, Vec<(u64, f64)>)],
    now_ms: u64,
) -> String {
    let max =
        series.iter().flat_map(|(_, v)| v.iter().map(|p| p.1)).fold(0.0f64, f64::max).max(1e-9);
    let top = if max <= 1.0 { 1.0 } else { nice_ceiling(max) };
    let plot_h = H - TOP - BOTTOM;
    let mut svg = format!(
        "<svg id=\"{id}\" class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{t}\">\
         <title>{t}</title><rect width=\"{W}\" height=\"{H}\" fill=\"#fafafa\"/>\
         <text x=\"4\" y=\"14\" font-size=\"12\" font-weight=\"bold\">{t}</text>\
         <text x=\"{}\" y=\"{}\" font-size=\"10\" fill=\"#666\" text-anchor=\"end\">{}</text>\
         <text x=\"{}\" y=\"{}\" font-size=\"10\" fill=\"#666\" text-anchor=\"end\">0</text>\
         <line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{W}\" y2=\"{TOP}\" stroke=\"#eee\"/>",
        LEFT - 4.0,
        TOP + 4.0,
        fmt_num(top),
        LEFT - 4.0,
        H - BOTTOM,
        t = esc(title),
    );
    time_axis(&mut svg, now_ms);
    let mut legend_x = 14.0 + 7.0 * title.chars().count() as f64;
    for (i, (label, pts)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let coords: Vec<String> = pts
            .iter()
            .map(|(t, v)| format!("{:.1},{:.1}", x_of(*t, now_ms), TOP + plot_h * (1.0 - v / top)))
            .collect();
        if coords.len() == 1 {
            let (x, y) = coords[0].split_once(',').unwrap_or(("0", "0"));
            let _ = write!(svg, "<circle cx=\"{x}\" cy=\"{y}\" r=\"2.5\" fill=\"{color}\"/>");
        } else if !coords.is_empty() {
            let _ = write!(
                svg,
                "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" points=\"{}\"/>",
                coords.join(" ")
            );
        }
        let peak = pts.iter().map(|p| p.1).fold(0.0f64, f64::max);
        let latest = pts.last().map_or("–".to_string(), |p| {
            format!("{} {unit} (peak {})", fmt_num(p.1), fmt_num(peak))
        });
        let text = if label.is_empty() { latest } else { format!("{label}: {latest}") };
        let _ = write!(
            svg,
            "<text class=\"latest\" x=\"{legend_x}\" y=\"14\" font-size=\"11\" fill=\"{color}\">{}</text>",
            esc(&text)
        );
        legend_x += 8.0 + 6.0 * text.chars().count() as f64;
    }
    if series.iter().all(|(_, v)| v.is_empty()) {
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"#999\" text-anchor=\"middle\">no data yet</text>",
            LEFT + (W - LEFT) / 2.0,
            TOP + plot_h / 2.0
        );
    }
    svg.push_str("</svg>");
    svg
}

fn nice_ceiling(v: f64) -> f64 {
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if v <= m * mag {
            return m * mag;
        }
    }
    10.0 * mag
}

/// One row per peer: green where it was up, red where down, over the last hour.
pub fn timeline(id: &str, title: &str, rows: &[(String, Vec<(u64, bool)>)], now_ms: u64) -> String {
    let row_h = 16.0;
    let h = TOP + BOTTOM + row_h * rows.len().max(1) as f64;
    let left = 190.0;
    let xw = |t: u64| {
        let age = now_ms.saturating_sub(t) as f64 / 1000.0;
        left + (1.0 - (age / WINDOW_SECS as f64).min(1.0)) * (W - left)
    };
    let mut svg = format!(
        "<svg id=\"{id}\" class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{h}\" viewBox=\"0 0 {W} {h}\" role=\"img\" aria-label=\"{t}\">\
         <title>{t}</title><rect width=\"{W}\" height=\"{h}\" fill=\"#fafafa\"/>\
         <text x=\"4\" y=\"14\" font-size=\"12\" font-weight=\"bold\">{t}</text>",
        t = esc(title)
    );
    if rows.is_empty() {
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"#999\" text-anchor=\"middle\">no heartbeat peers</text>",
            W / 2.0,
            TOP + 12.0
        );
    }
    for (i, (peer, states)) in rows.iter().enumerate() {
        let y = TOP + row_h * i as f64;
        let label: String = peer.chars().take(30).collect();
        let _ = write!(
            svg,
            "<text class=\"peer\" x=\"4\" y=\"{}\" font-size=\"10\">{}</text>",
            y + 11.0,
            esc(&label)
        );
        for (j, (t, up)) in states.iter().enumerate() {
            let x0 = xw(*t);
            let x1 = states.get(j + 1).map_or(W, |n| xw(n.0)).max(x0 + 2.0);
            let _ = write!(
                svg,
                "<rect x=\"{x0:.1}\" y=\"{}\" width=\"{:.1}\" height=\"{}\" fill=\"{}\"/>",
                y + 2.0,
                x1 - x0,
                row_h - 4.0,
                if *up { "#2ca02c" } else { "#d62728" }
            );
        }
    }
    let _ = write!(
        svg,
        "<text x=\"{left}\" y=\"{}\" font-size=\"10\" fill=\"#666\">-60 min</text>\
         <text x=\"{W}\" y=\"{}\" font-size=\"10\" fill=\"#666\" text-anchor=\"end\">now</text></svg>",
        h - 6.0,
        h - 6.0
    );
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t_s: u64, q: u64, lat: Vec<u64>) -> Sample {
        Sample { t_ms: t_s * 1000, queries: q, writes: q / 10, latency: lat, ..Default::default() }
    }

    #[test]
    fn rates_p99_and_window() {
        let mut h = History::default();
        h.push(s(1000, 0, vec![0, 0, 0]));
        h.push(s(1010, 1000, vec![980, 15, 5]));
        h.push(s(1005, 5, vec![])); // out of order: ignored
        assert_eq!(h.qps(), [(1_010_000, 100.0)]);
        assert_eq!(h.wps(), [(1_010_000, 10.0)]);
        // 99th percentile of 1000 answers lands in the second bucket (≤ 50 µs).
        assert_eq!(h.p99_ms(&[10, 50]), [(1_010_000, 0.05)]);
        // Page-driven samples replace each other.
        h.push(Sample { transient: true, ..s(1011, 1100, vec![]) });
        h.push(Sample { transient: true, ..s(1012, 1200, vec![]) });
        assert_eq!(h.len(), 3);
        assert_eq!(h.qps().last(), Some(&(1_012_000, 100.0)));
        h.push(s(1020, 2000, vec![]));
        assert_eq!(h.len(), 3, "the periodic sample replaced the page's");
        h.push(s(1020 + WINDOW_SECS + 1, 2000, vec![]));
        assert_eq!(h.len(), 1, "samples older than the window are dropped");
        let svg = line_chart("c", "DNS <q>/s", "q/s", &[("".into(), h.qps())], 5_000_000);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>") && svg.contains("&lt;q&gt;"));
    }
}
