//! Claim providers (protocol.md §8): where first-contact claims go on send and are
//! polled on receive. As the reference builds the list: `claim_provider_override` if set;
//! else verified heartbeats with the claim-provider capability from `_dnsmesh-seen.<zone>`
//! of the candidate zones (own zone, TSIG zone, endpoint host, cluster node hosts),
//! one per operator key, newest three; plus `claim_provider_seed` when configured.
//! (The reference always adds its public seed; ours adds one only when configured.)

use super::config::Config;
use super::state::{self, Credentials};
use super::{now, Ctx};
use crate::proto::names;
use crate::proto::records::heartbeat::{Heartbeat, HeartbeatPolicy};

/// Most discovered providers used.
pub const MAX_DISCOVERED: usize = 3;

/// Host of a URL (no scheme, port or path), lower-case.
pub fn url_host(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let hp = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let host = if let Some(v6) = hp.strip_prefix('[') {
        v6.split(']').next().unwrap_or(v6)
    } else {
        hp.rsplit_once(':').map_or(hp, |(h, p)| if p.parse::<u16>().is_ok() { h } else { hp })
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

fn is_dns_name(h: &str) -> bool {
    h.parse::<std::net::IpAddr>().is_err() && h.contains('.') && h != "localhost"
}

/// Zones whose `_dnsmesh-seen` sets are searched.
fn candidate_zones(ctx: &Ctx) -> Vec<String> {
    let mut v = vec![ctx.cfg.zone()];
    let creds: Credentials = ctx.store.load(state::CREDENTIALS).unwrap_or_default();
    if let Some(t) = &creds.tsig {
        v.push(t.zone.trim_end_matches('.').to_ascii_lowercase());
    }
    v.push(url_host(&ctx.cfg.endpoint));
    if let Some(m) = &ctx.cluster {
        for n in &m.nodes {
            v.push(url_host(&n.http_endpoint));
        }
    }
    let mut out: Vec<String> = Vec::new();
    for z in v {
        if is_dns_name(&z) && !out.contains(&z) {
            out.push(z);
        }
    }
    out
}

/// Verified claim-provider heartbeats from the candidate zones: one per operator key
/// (its newest), newest first, at most [`MAX_DISCOVERED`].
pub fn discovered(ctx: &Ctx) -> Vec<Heartbeat> {
    let t = now();
    // Liveness is `exp` (a seen set republishes wires harvested a while ago).
    let policy = HeartbeatPolicy { max_skew: u64::MAX / 4, allow_private_endpoints: false };
    let mut best: Vec<Heartbeat> = Vec::new();
    for z in candidate_zones(ctx) {
        for v in ctx.pool.txt(&names::seen(&z)).unwrap_or_default() {
            let Some(h) = Heartbeat::parse_and_verify_with(&v, t, &policy) else { continue };
            if !h.is_claim_provider() {
                continue;
            }
            match best.iter_mut().find(|b| b.operator_spk == h.operator_spk) {
                Some(b) if b.ts < h.ts => *b = h,
                Some(_) => {}
                None => best.push(h),
            }
        }
    }
    best.sort_by_key(|h| std::cmp::Reverse(h.ts));
    best.truncate(MAX_DISCOVERED);
    best
}

/// `(claim zone, provider URL)` of every claim provider, in order.
pub fn claim_providers(ctx: &Ctx) -> Vec<(String, String)> {
    let zone_of = |url: &str, zone: &Option<String>| {
        Config::opt(zone)
            .map(|z| z.trim_end_matches('.').to_ascii_lowercase())
            .unwrap_or_else(|| url_host(url))
    };
    if let Some(url) = Config::opt(&ctx.cfg.claim_provider_override) {
        return vec![(zone_of(url, &ctx.cfg.claim_provider_zone), url.to_string())];
    }
    let mut out: Vec<(String, String)> = discovered(ctx)
        .into_iter()
        .map(|h| {
            let z = if h.claim_provider_zone.is_empty() {
                url_host(&h.endpoint)
            } else {
                h.claim_provider_zone.trim_end_matches('.').to_ascii_lowercase()
            };
            (z, h.endpoint)
        })
        .collect();
    if let Some(url) = Config::opt(&ctx.cfg.claim_provider_seed) {
        let z = zone_of(url, &ctx.cfg.claim_provider_seed_zone);
        if !out.iter().any(|(oz, _)| *oz == z) {
            out.push((z, url.to_string()));
        }
    }
    out.retain(|(z, _)| !z.is_empty());
    out
}
