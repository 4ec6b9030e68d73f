//! Cluster mode (node.md §6.9): a user pins a cluster (base domain + operator key); the
//! CLI fetches the operator-signed manifest at `cluster.<base>` through its resolvers,
//! keeps the highest `seq` that verifies, and caches it for `cluster_refresh_interval`.
//! With cluster mode on:
//! - the effective domain is the cluster base (mailbox, identity and prekeys live there);
//! - HTTP writes fan out to every node's `http_endpoint` in parallel and succeed once
//!   `ceil(N/2)` nodes acknowledge (`writer::Fanout`); TSIG writes still go to the home node;
//! - TXT reads under the base ask every node's `dns_endpoint` at once and return the
//!   deduplicated union (`dns::Union`), so one dead node hides nothing the others hold.
//!
//! This module holds the manifest (fetch, cache, verify) and the `cluster` commands; the
//! union reader lives with the resolver pool (`dns::union`), the fan-out writer with the
//! other writers (`writer`).
//!
//! Commands: `cluster pin|fetch|enable|disable|status`, named as in the reference CLI.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::config::{parse_pin, ClusterPin, Config};
use super::dns::{Pool, Union};
use super::store::write_atomic;
use super::{net, now};
use crate::proto::records::cluster::ClusterManifest;

/// Owner name of the manifest RRset.
pub fn manifest_name(base: &str) -> String {
    format!("cluster.{base}")
}

/// The cached manifest: the signed wire (re-verified on every load) and when it was fetched.
#[derive(Debug, Serialize, Deserialize)]
struct Cache {
    wire: String,
    fetched_at: u64,
}

fn cache_path(home: &Path) -> PathBuf {
    home.join("cluster_manifest.json")
}

/// The cached manifest if it still verifies under `pin` at `now`, with its fetch time.
fn read_cache(home: &Path, pin: &ClusterPin, now: u64) -> Option<(ClusterManifest, String, u64)> {
    let text = std::fs::read_to_string(cache_path(home)).ok()?;
    let c: Cache = serde_json::from_str(&text).ok()?;
    let m = ClusterManifest::parse_and_verify(&c.wire, &pin.operator_spk, Some(&pin.base), now)?;
    Some((m, c.wire, c.fetched_at))
}

fn write_cache(home: &Path, wire: &str, now: u64) -> Result<()> {
    let text = serde_json::to_string(&Cache { wire: wire.to_string(), fetched_at: now })?;
    write_atomic(&cache_path(home), text.as_bytes(), 0o600)
        .with_context(|| format!("cannot write {}", cache_path(home).display()))
}

/// Fetch `cluster.<base>` through the resolvers and keep the highest `seq` that verifies
/// under the pinned key and names the pinned base.
pub fn fetch(pool: &Pool, pin: &ClusterPin, now: u64) -> Result<(ClusterManifest, String)> {
    let name = manifest_name(&pin.base);
    let values = pool.resolver_txt(&name)?;
    let best = values
        .into_iter()
        .filter_map(|v| {
            ClusterManifest::parse_and_verify(&v, &pin.operator_spk, Some(&pin.base), now)
                .map(|m| (m, v))
        })
        .max_by_key(|(m, _)| m.seq);
    let (m, wire) = best.ok_or_else(|| {
        anyhow!(
            "no record at {name} verifies under the pinned operator key (checked through the resolvers in `dns_resolvers`) — check the key given to `dnsmesh cluster pin`"
        )
    })?;
    if m.nodes.is_empty() {
        bail!("the cluster manifest at {name} (seq {}) lists no nodes", m.seq);
    }
    Ok((m, wire))
}

/// Fetch now and install the result unless the cache holds a higher (unexpired) `seq`;
/// either way the cache is marked fresh.
fn refresh(home: &Path, pool: &Pool, pin: &ClusterPin, now: u64) -> Result<ClusterManifest> {
    let (m, wire) = fetch(pool, pin, now)?;
    match read_cache(home, pin, now) {
        Some((old, old_wire, _)) if old.seq >= m.seq => {
            write_cache(home, &old_wire, now)?;
            Ok(old)
        }
        _ => {
            write_cache(home, &wire, now)?;
            Ok(m)
        }
    }
}

/// The manifest in force: the cache while younger than `refresh_secs`, else a fresh
/// fetch (a fetch failure falls back to a still-valid cache, with a warning).
pub fn load(
    home: &Path,
    pool: &Pool,
    pin: &ClusterPin,
    refresh_secs: u64,
    now: u64,
) -> Result<ClusterManifest> {
    let cached = read_cache(home, pin, now);
    if let Some((m, _, at)) = &cached {
        if *at <= now && now - *at < refresh_secs && !m.nodes.is_empty() {
            return Ok(m.clone());
        }
    }
    match refresh(home, pool, pin, now) {
        Ok(m) => Ok(m),
        Err(e) => match cached {
            Some((m, _, _)) if !m.nodes.is_empty() => {
                eprintln!(
                    "warning: could not refresh the cluster manifest ({e:#}); using the cached one (seq {})",
                    m.seq
                );
                Ok(m)
            }
            _ => Err(e).context("cluster mode is on but no cluster manifest is available — see `dnsmesh cluster fetch`, or `dnsmesh cluster disable`"),
        },
    }
}

/// Print a manifest summary.
fn print_manifest(m: &ClusterManifest) {
    let exp = httpdate::fmt_http_date(std::time::UNIX_EPOCH + Duration::from_secs(m.exp));
    println!(
        "cluster {}: seq {}, expires {exp}, {} node(s), write quorum {}",
        m.cluster_name,
        m.seq,
        m.nodes.len(),
        m.nodes.len().div_ceil(2)
    );
    for n in &m.nodes {
        println!(
            "  {:<16} http {}  dns {}",
            n.node_id,
            n.http_endpoint,
            n.dns_endpoint.as_deref().unwrap_or("(through the resolvers)")
        );
    }
}

fn pinned(cfg: &Config) -> Result<ClusterPin> {
    cfg.cluster_pin()?.ok_or_else(|| {
        anyhow!("no cluster is pinned — run `dnsmesh cluster pin OPERATOR_SPK BASE_DOMAIN` first")
    })
}

/// `cluster pin OPERATOR_SPK BASE_DOMAIN`: store the trust anchor. A changed pin turns
/// cluster mode off until `cluster enable` has verified a manifest under it.
pub fn pin_cmd(home: &Path, operator_spk: &str, base_domain: &str) -> Result<()> {
    let mut cfg = Config::load(home)?;
    let pin = parse_pin(base_domain, operator_spk)?;
    let old = cfg.cluster_pin().ok().flatten();
    cfg.cluster_base_domain = Some(pin.base.clone());
    cfg.cluster_operator_spk = Some(hex::encode(pin.operator_spk));
    if old.as_ref() != Some(&pin) {
        cfg.cluster_enabled = false;
    }
    cfg.save(home)?;
    println!(
        "pinned cluster {} (operator key {}); manifest at {}",
        pin.base,
        hex::encode(pin.operator_spk),
        manifest_name(&pin.base)
    );
    if !cfg.cluster_enabled {
        println!("next: `dnsmesh cluster enable` (fetches and verifies the manifest first)");
    }
    Ok(())
}

/// `cluster fetch`: fetch and verify the manifest now, print it, update the cache.
pub fn fetch_cmd(home: &Path) -> Result<()> {
    let cfg = Config::load(home)?;
    let pin = pinned(&cfg)?;
    let pool = Pool::from_config(&cfg, home)?;
    let m = refresh(home, &pool, &pin, now())?;
    print_manifest(&m);
    Ok(())
}

/// `cluster enable`: switch cluster mode on once a manifest verifies.
pub fn enable_cmd(home: &Path) -> Result<()> {
    let mut cfg = Config::load(home)?;
    let pin = pinned(&cfg)?;
    let pool = Pool::from_config(&cfg, home)?;
    let m = refresh(home, &pool, &pin, now())
        .context("cluster mode stays off until the manifest verifies")?;
    cfg.cluster_enabled = true;
    cfg.save(home)?;
    print_manifest(&m);
    println!(
        "cluster mode on: your records now live under {} (address {}@{}); HTTP writes go to every node — register a token on each (`dnsmesh register --node HOST:PORT`)",
        pin.base, cfg.username, pin.base
    );
    Ok(())
}

/// `cluster disable`: back to the home node and the resolvers; the pin is kept.
pub fn disable_cmd(home: &Path) -> Result<()> {
    let mut cfg = Config::load(home)?;
    cfg.cluster_enabled = false;
    cfg.save(home)?;
    println!(
        "cluster mode off (the pinned cluster is kept; `dnsmesh cluster enable` turns it back on)"
    );
    Ok(())
}

/// `cluster status`: each node's HTTP health and whether its DNS serves the manifest;
/// fails when fewer nodes are healthy than a write quorum needs.
pub fn status_cmd(home: &Path) -> Result<()> {
    let cfg = Config::load(home)?;
    let pin = pinned(&cfg)?;
    let pool = Pool::from_config(&cfg, home)?;
    let t = now();
    let m = load(home, &pool, &pin, cfg.cluster_refresh_interval, t)?;
    print_manifest(&m);
    println!("cluster mode is {}", if cfg.cluster_enabled { "on" } else { "off" });
    let union = Union::new(&m, &pool);
    let answers = union.ask_all(&pool, &manifest_name(&pin.base));
    let mut healthy = 0usize;
    for (n, (_, dns_r)) in m.nodes.iter().zip(answers) {
        let health = format!("{}/health", n.http_endpoint.trim_end_matches('/'));
        let http = match net::get(&health) {
            Ok(r) if r.status == 200 => {
                healthy += 1;
                "ok".to_string()
            }
            Ok(r) => format!("HTTP {}", r.status),
            Err(e) => format!("down ({e:#})"),
        };
        let dns = match dns_r {
            Ok(vals) => {
                let seq = vals
                    .iter()
                    .filter_map(|v| {
                        ClusterManifest::parse_and_verify(v, &pin.operator_spk, Some(&pin.base), t)
                    })
                    .map(|x| x.seq)
                    .max();
                match seq {
                    Some(s) => format!("ok (serves manifest seq {s})"),
                    None => "answers, but no verifying manifest".to_string(),
                }
            }
            Err(e) => format!("down ({e:#})"),
        };
        println!("  {:<16} http {http}; dns {dns}", n.node_id);
    }
    let q = m.nodes.len().div_ceil(2);
    if healthy < q {
        bail!("only {healthy}/{} nodes are healthy over HTTP; writes need {q}", m.nodes.len());
    }
    println!("writes: {healthy}/{} nodes healthy (quorum {q})", m.nodes.len());
    Ok(())
}
