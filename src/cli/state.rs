//! The documents kept sealed in the store (see `store`), and the home-node writer
//! (HTTP bearer or DNS UPDATE + TSIG) chosen from the saved credentials.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use serde::{Deserialize, Serialize};

use super::cluster::Fanout;
use super::dns::{self, TsigKey, UpdateOp};
use super::net;
use crate::proto::records::cluster::ClusterManifest;

/// Store document names.
pub const CONTACTS: &str = "contacts";
pub const REPLAY: &str = "replay";
pub const PREKEYS: &str = "prekeys";
pub const CREDENTIALS: &str = "credentials";
pub const OUTBOX: &str = "outbox";
pub const INTROS: &str = "intros";
/// Next intro number (intros keep their number while queued).
pub const INTRO_SEQ: &str = "intro_seq";
/// Sender keys blocked with `intro block` (honoured on the claim and slot paths).
pub const BLOCKED: &str = "blocked";
pub const PUBLISHED: &str = "published";
/// Prekeys we already used per contact (`user@domain` → [(prekey id, forget after)]):
/// a prekey is one-time, and the recipient deletes it only once it reads our message.
pub const USED_PREKEYS: &str = "used_prekeys";

/// The contents of [`USED_PREKEYS`].
pub type UsedPrekeys = std::collections::BTreeMap<String, Vec<(u32, u64)>>;

/// A pinned contact: the keys we accept messages from and encrypt to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Contact {
    pub username: String,
    /// The contact's home zone (where their mailbox, identity and prekeys live).
    pub domain: String,
    pub x25519_hex: String,
    pub ed25519_hex: String,
    /// Protocol versions their identity record advertised when pinned.
    pub versions: Vec<u8>,
    pub added_at: u64,
}

impl Contact {
    /// `user@domain`, the key of the contacts map.
    pub fn address(&self) -> String {
        format!("{}@{}", self.username, self.domain)
    }
    /// Decoded X25519 key.
    pub fn x25519(&self) -> Result<[u8; 32]> {
        hex32(&self.x25519_hex)
    }
    /// Decoded Ed25519 key.
    pub fn ed25519(&self) -> Result<[u8; 32]> {
        hex32(&self.ed25519_hex)
    }
}

/// Decode 64 hex characters.
pub fn hex32(s: &str) -> Result<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).map_err(|_| anyhow!("stored key `{s}` is not 64 hex"))?;
    Ok(out)
}

/// Contacts keyed by `user@domain`.
pub type Contacts = BTreeMap<String, Contact>;

/// A prekey we published: its secret and the exact TXT value (to DELETE it later).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrekeySecret {
    pub id: u32,
    pub private_hex: String,
    pub name: String,
    pub txt: String,
    pub exp: u64,
    /// Still published (not yet withdrawn by a refresh or consumed).
    pub published: bool,
}

/// A bearer token from `register`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Token {
    pub token: String,
    pub subject: String,
    pub node: String,
    pub expires_at: u64,
}

/// A TSIG key from `tsig register`, with where to send UPDATEs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TsigCred {
    pub key_name: String,
    pub secret_hex: String,
    pub algorithm: String,
    pub zone: String,
    pub server: String,
    pub allowed_suffixes: Vec<String>,
    pub expires_at: u64,
}

/// Write credentials. `mode` is the writer the last registration chose.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Credentials {
    /// Bearer tokens keyed by the node's `host:port`.
    pub tokens: BTreeMap<String, Token>,
    pub tsig: Option<TsigCred>,
    /// `http` or `tsig`; absent = HTTP without a token (an open node).
    pub mode: Option<String>,
}

/// A message waiting to be published (the node was unreachable).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutboxItem {
    pub id: String,
    /// Contact key (`user@domain`).
    pub to: String,
    pub body: String,
    pub ttl: u64,
    pub created: u64,
    pub attempts: u32,
    pub next_attempt: u64,
    pub last_error: String,
    /// The composed wires, republished unchanged (same msg id) while unexpired, so a
    /// retry after a partial publish never makes a second copy.
    #[serde(default)]
    pub wires: Option<Wires>,
}

/// One composed message: everything its publication writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Wires {
    pub msg_id: String,
    pub prekey_id: u32,
    pub v2: bool,
    pub chunks: usize,
    /// Chunks in order, then the manifest: `(name, value, ttl)`.
    pub records: Vec<(String, String, u32)>,
    /// Claim notifications: `(zone, name, value)`.
    pub claims: Vec<(String, String, String)>,
    /// The manifest's expiry (Unix seconds); after it the message is recomposed.
    pub exp: u64,
    pub ttl: u32,
}

/// A decrypted first-contact message from a sender we have not pinned.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Intro {
    /// Number shown by `intro list` (0 in queues written before numbering).
    #[serde(default)]
    pub id: u64,
    pub sender_spk_hex: String,
    pub msg_id_hex: String,
    pub sender_zone: String,
    /// The DMPv2 `from` address, if any (verified against the sender's identity or not).
    pub claimed_from: Option<String>,
    pub from_verified: bool,
    pub body: String,
    pub ts: u64,
    pub exp: u64,
}

/// A blocked sender key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Blocked {
    pub spk_hex: String,
    /// Who it claimed to be, for the listing.
    pub label: String,
    pub note: String,
    pub at: u64,
}

/// What we published ourselves (so a republish can withdraw the old value).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Published {
    pub identity: Option<(String, String)>,
    /// The zone-anchored copy at `dmp.<identity_domain>`.
    #[serde(default)]
    pub anchored: Option<(String, String)>,
}

/// `host:port` of a URL (default port by scheme), the key of saved tokens.
pub fn host_port(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("https", url));
    let hp = rest.split('/').next().unwrap_or(rest);
    if hp.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) && !hp.ends_with(']') {
        hp.to_ascii_lowercase()
    } else {
        format!("{}:{}", hp.to_ascii_lowercase(), if scheme == "http" { 80 } else { 443 })
    }
}

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
