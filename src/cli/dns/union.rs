//! Cluster-mode reads (node.md §6.9): TXT reads under the cluster base ask every node's
//! `dns_endpoint` at once and return the deduplicated union, so one dead node hides
//! nothing the others hold. Part of the resolver pool ([`super::Pool`] routes names under
//! the base here); it needs the manifest only, never the cluster commands.

use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use super::Pool;
use crate::proto::records::cluster::ClusterManifest;

/// How long a union read waits for the nodes' answers.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

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
    let m = super::ask(server, name, RecordType::TXT)?;
    match m.metadata.response_code {
        ResponseCode::NoError => Ok(super::txt_values(&m)),
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
