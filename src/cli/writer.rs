//! Writers: how the CLI publishes and deletes records — the home node over HTTP (bearer
//! token) or DNS UPDATE + TSIG, or every node of a cluster over HTTP with quorum acks
//! ([`Fanout`]). Below the commands (`mail`, `account`, `cluster`), above the clients
//! (`net`, `dns`) and the saved documents (`state`).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};

use super::dns::{self, TsigKey, UpdateOp};
use super::net;
use super::state::{host_port, Credentials};
use crate::proto::records::cluster::ClusterManifest;

/// Per-request timeout of a fan-out write to one node.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// A publish failure that may succeed later (node unreachable, 5xx, rate limit): such
/// sends go to the outbox instead of failing.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Retryable(pub String);

/// Does this error (anywhere in its chain) mean "may succeed later"?
pub fn is_retryable(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<Retryable>().is_some())
}

/// The writer: the home node, or every node of the cluster.
pub enum Writer {
    /// `POST`/`DELETE /v1/records/<name>` with an optional bearer token.
    Http { endpoint: String, token: Option<String>, timeout: Duration },
    /// RFC 2136 UPDATE signed with the TSIG key.
    Tsig { server: SocketAddr, zone: String, key: TsigKey },
    /// Cluster mode without TSIG: HTTP to every node of the manifest, quorum acks.
    Fanout(Fanout),
}

impl Writer {
    /// Choose the writer from saved credentials (last registration wins). In cluster
    /// mode (`cluster` given) HTTP writes fan out to every node of the manifest; TSIG
    /// writes still go to the home node only, and anti-entropy spreads them.
    /// `http_token` (config) is used when no token is saved for the endpoint;
    /// `cluster_node_token` for cluster nodes without a saved token.
    pub fn new(
        endpoint: &str,
        creds: &Credentials,
        cluster: Option<&ClusterManifest>,
        http_token: Option<&str>,
        cluster_node_token: Option<&str>,
    ) -> Result<Writer> {
        if let (Some(m), false) = (cluster, creds.mode.as_deref() == Some("tsig")) {
            return Fanout::new(m, creds, cluster_node_token.or(http_token)).map(Writer::Fanout);
        }
        match creds.mode.as_deref() {
            Some("tsig") => {
                let t = creds.tsig.as_ref().ok_or_else(|| {
                    anyhow!("TSIG mode is selected but no TSIG key is saved — run `dnsmesh tsig register --node HOST`")
                })?;
                let server: SocketAddr = t.server.parse().map_err(|_| {
                    anyhow!(
                        "saved TSIG server `{}` is not an address — re-run `dnsmesh tsig register`",
                        t.server
                    )
                })?;
                Ok(Writer::Tsig {
                    server,
                    zone: t.zone.clone(),
                    key: TsigKey {
                        name: t.key_name.clone(),
                        secret: hex::decode(&t.secret_hex).map_err(|_| {
                            anyhow!("saved TSIG secret is not hex — re-run `dnsmesh tsig register`")
                        })?,
                    },
                })
            }
            _ => {
                if endpoint.is_empty() {
                    bail!("no `endpoint` in config.yaml — set the home node's URL (e.g. https://node.example) there");
                }
                let hp = host_port(endpoint);
                let token = creds
                    .tokens
                    .get(&hp)
                    .or_else(|| {
                        (creds.tokens.len() == 1).then(|| creds.tokens.values().next()).flatten()
                    })
                    .map(|t| t.token.clone())
                    .or_else(|| http_token.map(str::to_string));
                Ok(Writer::Http {
                    endpoint: endpoint.trim_end_matches('/').to_string(),
                    token,
                    timeout: net::TIMEOUT,
                })
            }
        }
    }

    /// One line describing the writer (for messages and `doctor`).
    pub fn describe(&self) -> String {
        match self {
            Writer::Http { endpoint, token, .. } => format!(
                "HTTP {endpoint} ({})",
                if token.is_some() { "bearer token" } else { "no token" }
            ),
            Writer::Tsig { server, key, .. } => {
                format!("DNS UPDATE to {server} (TSIG key {})", key.name)
            }
            Writer::Fanout(f) => f.describe(),
        }
    }

    /// Publish records in order; stops at the first failure.
    pub fn publish(&self, records: &[(String, String, u32)], now: u64) -> Result<()> {
        match self {
            Writer::Http { endpoint, token, timeout } => {
                for (name, value, ttl) in records {
                    let url = format!("{endpoint}/v1/records/{}", net::path_segment(name));
                    let body = serde_json::json!({"value": value, "ttl": ttl});
                    let r = with_rate_limit(|| {
                        net::post_json_within(&url, token.as_deref(), &body, *timeout)
                            .map_err(|e| anyhow::Error::new(Retryable(format!("{e:#}"))))
                    })?;
                    check_status(r.status, &r.body, 201, name)?;
                }
                Ok(())
            }
            Writer::Tsig { server, zone, key } => {
                // Keep each UPDATE well under the 64 KiB TCP message limit.
                for batch in records.chunks(40) {
                    let ops: Vec<UpdateOp> = batch
                        .iter()
                        .map(|(n, v, t)| UpdateOp::Add {
                            name: n.clone(),
                            value: v.clone(),
                            ttl: *t,
                        })
                        .collect();
                    tsig_update(*server, zone, &ops, key, now)?;
                }
                Ok(())
            }
            Writer::Fanout(f) => f.publish(records, now),
        }
    }

    /// Delete one exact value. A value that is already gone counts as deleted.
    pub fn delete(&self, name: &str, value: &str, now: u64) -> Result<()> {
        match self {
            Writer::Http { endpoint, token, timeout } => {
                let url = format!("{endpoint}/v1/records/{}", net::path_segment(name));
                let body = serde_json::json!({"value": value});
                let r = with_rate_limit(|| {
                    net::delete_json(&url, token.as_deref(), &body, *timeout)
                        .map_err(|e| anyhow::Error::new(Retryable(format!("{e:#}"))))
                })?;
                if r.status == 404 {
                    return Ok(());
                }
                check_status(r.status, &r.body, 204, name)
            }
            Writer::Tsig { server, zone, key } => {
                let ops = [UpdateOp::Delete { name: name.to_string(), value: value.to_string() }];
                tsig_update(*server, zone, &ops, key, now)
            }
            Writer::Fanout(f) => f.delete(name, value, now),
        }
    }
}

/// Repeat a request while the node answers 429 (its per-token bucket refills at about
/// ten writes a second, and one long message is 40+ writes): back off from 250 ms up to
/// 2 s per wait, for at most about 30 s in all, then report the 429.
fn with_rate_limit(mut f: impl FnMut() -> Result<net::Reply>) -> Result<net::Reply> {
    let mut wait = std::time::Duration::from_millis(250);
    let mut waited = std::time::Duration::ZERO;
    loop {
        let r = f()?;
        if r.status != 429 || waited >= std::time::Duration::from_secs(30) {
            return Ok(r);
        }
        std::thread::sleep(wait);
        waited += wait;
        wait = (wait * 2).min(std::time::Duration::from_secs(2));
    }
}

fn tsig_update(
    server: SocketAddr,
    zone: &str,
    ops: &[UpdateOp],
    key: &TsigKey,
    now: u64,
) -> Result<()> {
    dns::update(server, zone, ops, Some(key), now).map_err(|e| {
        let text = format!("{e:#}");
        if text.contains("connect") || text.contains("SERVFAIL") || text.contains("reply from") {
            anyhow::Error::new(Retryable(text))
        } else {
            e
        }
    })
}

fn check_status(status: u16, body: &str, want: u16, name: &str) -> Result<()> {
    if status == want {
        return Ok(());
    }
    let why = net::reason(body);
    match status {
        401 => bail!("the node refused the write of {name} (401 {why}) — register first: `dnsmesh register --node HOST[:PORT]` (or `dnsmesh tsig register`)"),
        413 => bail!("the node refused {name}: too many values at that name (413 {why}) — wait for old records to expire"),
        400 => bail!("the node refused {name} (400 {why})"),
        429 => Err(Retryable(format!("the node rate-limited the write of {name} (429 {why}); retry later")).into()),
        s if s >= 500 => Err(Retryable(format!("the node failed to store {name} ({s} {why})")).into()),
        s => bail!("unexpected HTTP {s} writing {name}: {why}"),
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
