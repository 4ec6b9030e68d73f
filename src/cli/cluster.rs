//! Cluster mode (node.md §6.9): a user pins a cluster (base domain + operator key); the
//! CLI fetches the operator-signed manifest at `cluster.<base>` through its resolvers,
//! keeps the highest `seq` that verifies, and caches it for `cluster_refresh_interval`.
//! With cluster mode on:
//! - the effective domain is the cluster base (mailbox, identity and prekeys live there);
//! - HTTP writes fan out to every node's `http_endpoint` in parallel and succeed once
//!   `ceil(N/2)` nodes acknowledge ([`Fanout`]); TSIG writes still go to the home node;
//! - TXT reads under the base ask every node's `dns_endpoint` at once and return the
//!   deduplicated union ([`Union`]), so one dead node hides nothing the others hold.
//!
//! Commands: `cluster pin|fetch|enable|disable|status`, named as in the reference CLI.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use serde::{Deserialize, Serialize};

use super::config::{parse_pin, ClusterPin, Config};
use super::dns::{self, Pool};
use super::state::{host_port, is_retryable, Credentials, Retryable, Writer};
use super::store::write_atomic;
use super::{net, now};
use crate::proto::records::cluster::ClusterManifest;

/// Per-request timeout of a fan-out write to one node.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a union read waits for the nodes' answers.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

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

/// How a union read reaches one node.
enum Via {
    /// The node's own DNS server.
    Dns(SocketAddr),
    /// The manifest gives no `dns_endpoint`: ask the resolvers.
    Resolver,
    /// The `dns_endpoint` names a host that does not resolve.
    Unresolvable(String),
}

/// Reads of names under the cluster base: every node is asked at once, answers are merged.
pub struct Union {
    base: String,
    nodes: Vec<(String, Via)>,
}

/// A node's `dns_endpoint` (`host`, `host:port`, `[v6]:port`; default port 53) as an
/// address; host names are resolved through the resolver pool.
fn resolve_endpoint(pool: &Pool, ep: &str) -> Via {
    let Some((host, port)) = split_host_port(ep.trim()) else {
        return Via::Unresolvable(format!("dns_endpoint `{ep}` is not host[:port]"));
    };
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Via::Dns(SocketAddr::new(ip, port));
    }
    match pool.addresses(&host).first() {
        Some(ip) => Via::Dns(SocketAddr::new(*ip, port)),
        None => Via::Unresolvable(format!("dns_endpoint host `{host}` does not resolve")),
    }
}

/// Split `host`, `host:port`, `[v6]:port` or a bare IPv6 address (default port 53).
fn split_host_port(ep: &str) -> Option<(String, u16)> {
    if ep.parse::<IpAddr>().is_ok() {
        return Some((ep.to_string(), 53));
    }
    if let Some(rest) = ep.strip_prefix('[') {
        let (h, tail) = rest.split_once(']')?;
        let port = match tail {
            "" => 53,
            t => t.strip_prefix(':')?.parse().ok()?,
        };
        return Some((h.to_string(), port));
    }
    match ep.rsplit_once(':') {
        Some((h, p)) => Some((h.to_string(), p.parse().ok()?)),
        None => Some((ep.to_string(), 53)),
    }
}

/// One node's TXT answer: NOERROR values, NXDOMAIN as a healthy empty answer, any other
/// rcode a failure.
fn node_txt(server: SocketAddr, name: &str) -> Result<Vec<String>> {
    let m = dns::ask(server, name, RecordType::TXT)?;
    match m.metadata.response_code {
        ResponseCode::NoError => Ok(dns::txt_values(&m)),
        ResponseCode::NXDomain => Ok(Vec::new()),
        rc => bail!("{rc}"),
    }
}

impl Union {
    /// The union reader of a manifest (host names in `dns_endpoint` resolved now).
    pub fn new(m: &ClusterManifest, pool: &Pool) -> Union {
        let nodes = m
            .nodes
            .iter()
            .map(|n| {
                let via = match &n.dns_endpoint {
                    Some(ep) => resolve_endpoint(pool, ep),
                    None => Via::Resolver,
                };
                (n.node_id.clone(), via)
            })
            .collect();
        Union { base: m.cluster_name.trim_end_matches('.').to_ascii_lowercase(), nodes }
    }

    /// Is `name` the base or below it?
    pub fn covers(&self, name: &str) -> bool {
        let n = name.trim_end_matches('.').to_ascii_lowercase();
        n == self.base || n.strip_suffix(&self.base).is_some_and(|head| head.ends_with('.'))
    }

    /// The nodes' DNS servers.
    pub fn servers(&self) -> Vec<SocketAddr> {
        self.nodes
            .iter()
            .filter_map(|(_, v)| match v {
                Via::Dns(a) => Some(*a),
                _ => None,
            })
            .collect()
    }

    /// Every node's answer for `name` TXT, in manifest order; nodes that have not
    /// answered within [`READ_TIMEOUT`] count as failed.
    pub fn ask_all(&self, pool: &Pool, name: &str) -> Vec<(String, Result<Vec<String>>)> {
        let (tx, rx) = mpsc::channel();
        let mut waiting = 0usize;
        for (i, (_, via)) in self.nodes.iter().enumerate() {
            if let Via::Dns(addr) = via {
                let (tx, addr, name) = (tx.clone(), *addr, name.to_string());
                // Detached: a node that never answers must not hold up the read.
                std::thread::spawn(move || {
                    let _ = tx.send((i, node_txt(addr, &name)));
                });
                waiting += 1;
            }
        }
        drop(tx);
        let mut out: Vec<Option<Result<Vec<String>>>> = self
            .nodes
            .iter()
            .map(|(_, via)| match via {
                Via::Dns(_) => None,
                Via::Resolver => Some(pool.resolver_txt(name)),
                Via::Unresolvable(e) => Some(Err(anyhow!("{e}"))),
            })
            .collect();
        let deadline = Instant::now() + READ_TIMEOUT;
        while waiting > 0 {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok((i, r)) => {
                    if let Some(slot) = out.get_mut(i) {
                        *slot = Some(r);
                    }
                    waiting -= 1;
                }
                Err(_) => break,
            }
        }
        self.nodes
            .iter()
            .zip(out)
            .map(|((id, _), r)| {
                let r = r.unwrap_or_else(|| {
                    Err(anyhow!("no answer within {} s", READ_TIMEOUT.as_secs()))
                });
                (id.clone(), r)
            })
            .collect()
    }

    /// The deduplicated union of every answering node's TXT values at `name`; an error
    /// only when no node answered.
    pub fn txt(&self, pool: &Pool, name: &str) -> Result<Vec<String>> {
        let mut values: Vec<String> = Vec::new();
        let mut answered = 0usize;
        let mut failures = Vec::new();
        for (id, r) in self.ask_all(pool, name) {
            match r {
                Ok(vs) => {
                    answered += 1;
                    for v in vs {
                        if !values.contains(&v) {
                            values.push(v);
                        }
                    }
                }
                Err(e) => failures.push(format!("{id}: {e:#}")),
            }
        }
        if answered == 0 {
            bail!(
                "no cluster node answered {name} TXT ({}) — are the nodes up? `dnsmesh cluster status` shows each one",
                failures.join("; ")
            );
        }
        Ok(values)
    }
}

/// Cluster writes over HTTP: each node gets every record, in order, in its own thread;
/// a write succeeds when at least `quorum = ceil(N/2)` nodes acknowledged all of it.
pub struct Fanout {
    /// `(node label, that node's HTTP writer)`.
    nodes: Vec<(String, Writer)>,
    quorum: usize,
}

impl Fanout {
    /// One HTTP writer per manifest node, with the bearer token saved for that node's
    /// `host:port` (`dnsmesh register --node HOST:PORT` on each node), if any.
    pub fn new(m: &ClusterManifest, creds: &Credentials, fallback: Option<&str>) -> Result<Fanout> {
        if m.nodes.is_empty() {
            bail!("the cluster manifest lists no nodes");
        }
        let nodes = m
            .nodes
            .iter()
            .map(|n| {
                let endpoint = n.http_endpoint.trim_end_matches('/').to_string();
                let token = creds
                    .tokens
                    .get(&host_port(&endpoint))
                    .map(|t| t.token.clone())
                    .or_else(|| fallback.map(str::to_string));
                let label = format!("{} ({endpoint})", n.node_id);
                (label, Writer::Http { endpoint, token, timeout: WRITE_TIMEOUT })
            })
            .collect::<Vec<_>>();
        Ok(Fanout { quorum: nodes.len().div_ceil(2), nodes })
    }

    /// One line for messages and `doctor`.
    pub fn describe(&self) -> String {
        let with_token =
            self.nodes.iter().filter(|(_, w)| matches!(w, Writer::Http { token: Some(_), .. }));
        format!(
            "HTTP fan-out to {} cluster nodes (quorum {}, bearer tokens for {})",
            self.nodes.len(),
            self.quorum,
            with_token.count()
        )
    }

    /// Node labels without a saved bearer token.
    pub fn without_token(&self) -> Vec<&str> {
        self.nodes
            .iter()
            .filter(|(_, w)| matches!(w, Writer::Http { token: None, .. }))
            .map(|(l, _)| l.as_str())
            .collect()
    }

    /// Publish `records` on every node.
    pub fn publish(&self, records: &[(String, String, u32)], now: u64) -> Result<()> {
        self.run(records.len(), |w, i| match records.get(i) {
            Some(r) => w.publish(std::slice::from_ref(r), now),
            None => Ok(()),
        })
    }

    /// Delete one exact value on every node (already gone counts as done).
    pub fn delete(&self, name: &str, value: &str, now: u64) -> Result<()> {
        self.run(1, |w, _| w.delete(name, value, now))
    }

    /// Run items `0..count` on every node in parallel (each node stops at its first
    /// failure); report the nodes that failed; apply the quorum.
    fn run(&self, count: usize, op: impl Fn(&Writer, usize) -> Result<()> + Sync) -> Result<()> {
        let outcomes: Vec<Option<anyhow::Error>> = std::thread::scope(|s| {
            let handles: Vec<_> = self
                .nodes
                .iter()
                .map(|(_, w)| {
                    let op = &op;
                    s.spawn(move || (0..count).find_map(|i| op(w, i).err()))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Some(anyhow!("writer thread panicked"))))
                .collect()
        });
        let acked = outcomes.iter().filter(|e| e.is_none()).count();
        let failures: Vec<String> = self
            .nodes
            .iter()
            .zip(&outcomes)
            .filter_map(|((label, _), e)| e.as_ref().map(|e| format!("{label}: {e:#}")))
            .collect();
        let (n, q) = (self.nodes.len(), self.quorum);
        if acked >= q {
            if !failures.is_empty() {
                eprintln!(
                    "warning: cluster write acknowledged by {acked}/{n} nodes (quorum {q}); failed: {}",
                    failures.join("; ")
                );
            }
            return Ok(());
        }
        let msg = format!(
            "cluster write acknowledged by only {acked}/{n} nodes (quorum {q}); failed: {}",
            failures.join("; ")
        );
        // Worth retrying only if the transient failures alone could still make a quorum.
        let transient = outcomes.iter().flatten().filter(|e| is_retryable(e)).count();
        if acked + transient >= q {
            Err(Retryable(msg).into())
        } else {
            Err(anyhow!(msg))
        }
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
