//! The sync actor: anti-entropy with peer nodes over HTTP, wire-compatible with the
//! reference (`/v1/sync/digest`, `/v1/sync/pull`), plus two extensions reference peers
//! simply do not call: `/v1/sync/tombstones` (deletes propagate) and `/v1/sync/notify`
//! (a peer that took a write asks us to pull at once).
//!
//! Unlike the reference (node.md §11.1–11.3) it pulls from every peer concurrently, pages
//! until `has_more` is false, keeps per-peer watermarks in sled across restarts, skips —
//! never stalls on — rows it cannot verify, and applies the local write caps.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use actix::prelude::*;
use serde::{Deserialize, Serialize};

use super::store::{Apply, LocalHashes, Op, Origin, StoreActor, StoreError, Subscribe, ZoneDelta};
use super::supervisor::{Lifecycle, LifecycleEvent, SupervisorActor};
use crate::clock::Clock;
use crate::policy::replication::{valid_sync_name, verify_record};

/// What the sync actor needs from the configuration.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    pub peers: Vec<String>,
    pub token: String,
    pub interval: Duration,
    pub max_ttl: u64,
    pub max_value_bytes: usize,
    pub max_values_per_name: usize,
    pub operator_spk: Option<[u8; 32]>,
}

/// Pull from every peer now (sent by `/v1/sync/notify`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct PullNow;

/// Per-peer counters for `/metrics` and the status page.
#[derive(Message)]
#[rtype(result = "Vec<PeerStats>")]
pub struct GetSyncStats;

/// Test-only fault.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Fail;

/// One peer's sync state.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PeerStats {
    pub peer: String,
    pub pulls: u64,
    pub records_pulled: u64,
    pub records_rejected: u64,
    pub errors: u64,
    /// Unix seconds of the last complete pass (0 = never).
    pub last_success: u64,
    /// Seconds since the last complete pass (the sync lag bound).
    pub lag_secs: u64,
    pub last_error: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Watermark {
    ts: u64,
    name: String,
    hash: String,
    tomb_ms: u64,
}

struct Peer {
    url: String,
    wm: Watermark,
    running: bool,
    again: bool,
    stats: PeerStats,
}

/// The sync actor.
pub struct SyncActor {
    opts: SyncOptions,
    store: Addr<StoreActor>,
    tree: sled::Tree,
    peers: Vec<Peer>,
    notify_pending: bool,
    supervisor: Option<Addr<SupervisorActor>>,
    clock: Clock,
}

#[derive(Deserialize)]
struct DigestJson {
    records: Vec<serde_json::Value>,
    #[serde(default)]
    has_more: bool,
}

#[derive(Deserialize)]
struct PullJson {
    records: Vec<serde_json::Value>,
}

struct PassResult {
    wm: Watermark,
    pulled: u64,
    rejected: u64,
    error: Option<String>,
}

fn client() -> awc::Client {
    awc::Client::builder().timeout(Duration::from_secs(5)).finish()
}

async fn get_json<T: serde::de::DeserializeOwned>(
    c: &awc::Client,
    url: &str,
    token: &str,
) -> Result<Option<T>, String> {
    let mut r =
        c.get(url).bearer_auth(token).send().await.map_err(|e| format!("GET {url}: {e}"))?;
    if r.status().as_u16() == 404 {
        return Ok(None);
    }
    if !r.status().is_success() {
        return Err(format!("GET {url}: HTTP {}", r.status()));
    }
    let body = r.body().limit(64 << 20).await.map_err(|e| format!("GET {url}: {e}"))?;
    serde_json::from_slice(&body).map(Some).map_err(|e| format!("GET {url}: bad JSON: {e}"))
}

/// One full pass against one peer: page the digest to the end, pull what is missing,
/// then apply the peer's deletes.
async fn pass(
    peer: String,
    mut wm: Watermark,
    opts: SyncOptions,
    store: Addr<StoreActor>,
    clock: Clock,
) -> PassResult {
    let c = client();
    let mut pulled = 0;
    let mut rejected = 0;
    let base = peer.trim_end_matches('/').to_string();
    for _page in 0..1000 {
        let url =
            format!("{base}/v1/sync/digest?cursor={}:{}:{}&limit=1000", wm.ts, wm.name, wm.hash);
        let page: DigestJson = match get_json(&c, &url, &opts.token).await {
            Ok(Some(p)) => p,
            Ok(None) => {
                return PassResult {
                    wm,
                    pulled,
                    rejected,
                    error: Some("peer has no sync API".into()),
                }
            }
            Err(e) => return PassResult { wm, pulled, rejected, error: Some(e) },
        };
        // Validate rows (node.md §6.2); invalid ones are skipped, never block the cursor.
        let limit_ts = clock.now_ms() + 60_000;
        let mut rows: Vec<(u64, String, String, u64)> = Vec::new();
        for r in &page.records {
            let name = r.get("name").and_then(|v| v.as_str()).unwrap_or("");
            let hash = r.get("hash").and_then(|v| v.as_str()).unwrap_or("");
            let ts = r.get("ts").and_then(|v| v.as_u64());
            let ttl = r.get("ttl").and_then(|v| v.as_u64());
            match (ts, ttl) {
                (Some(ts), Some(ttl))
                    if valid_sync_name(name)
                        && hash.len() == 64
                        && hash
                            .bytes()
                            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                        && ts <= limit_ts =>
                {
                    rows.push((ts, name.to_ascii_lowercase(), hash.to_string(), ttl))
                }
                _ => rejected += 1,
            }
        }
        if !rows.is_empty() {
            let names: Vec<String> =
                rows.iter().map(|r| r.1.clone()).collect::<HashSet<_>>().into_iter().collect();
            let local = match store.send(LocalHashes { names: names.clone() }).await {
                Ok(Ok(l)) => l,
                _ => {
                    return PassResult {
                        wm,
                        pulled,
                        rejected,
                        error: Some("store unavailable".into()),
                    }
                }
            };
            let local: HashMap<(String, String), u64> =
                local.into_iter().map(|(n, h, t)| ((n, h), t)).collect();
            let mut advertised: HashMap<String, HashSet<String>> = HashMap::new();
            let mut need: Vec<String> = Vec::new();
            for (_, name, hash, ttl) in &rows {
                advertised.entry(name.clone()).or_default().insert(hash.clone());
                let handled = local
                    .get(&(name.clone(), hash.clone()))
                    .map(|lt| *ttl <= lt + 5)
                    .unwrap_or(false);
                if !handled && !need.contains(name) {
                    need.push(name.clone());
                }
            }
            for chunk in need.chunks(256) {
                let url = format!("{base}/v1/sync/pull");
                let res = c
                    .post(&url)
                    .bearer_auth(&opts.token)
                    .send_json(&serde_json::json!({ "names": chunk }))
                    .await;
                let mut resp = match res {
                    Ok(r) if r.status().is_success() => r,
                    Ok(r) => {
                        return PassResult {
                            wm,
                            pulled,
                            rejected,
                            error: Some(format!("POST {url}: HTTP {}", r.status())),
                        }
                    }
                    Err(e) => {
                        return PassResult {
                            wm,
                            pulled,
                            rejected,
                            error: Some(format!("POST {url}: {e}")),
                        }
                    }
                };
                let body = match resp.body().limit(64 << 20).await {
                    Ok(b) => b,
                    Err(e) => {
                        return PassResult {
                            wm,
                            pulled,
                            rejected,
                            error: Some(format!("POST {url}: {e}")),
                        }
                    }
                };
                let Ok(pj) = serde_json::from_slice::<PullJson>(&body) else {
                    return PassResult {
                        wm,
                        pulled,
                        rejected,
                        error: Some(format!("POST {url}: bad JSON")),
                    };
                };
                let now = clock.now_secs();
                let mut applies = Vec::new();
                for r in pj.records {
                    let name =
                        r.get("name").and_then(|v| v.as_str()).unwrap_or("").to_ascii_lowercase();
                    let value = r.get("value").and_then(|v| v.as_str()).unwrap_or("");
                    let ttl = r.get("ttl").and_then(|v| v.as_u64()).unwrap_or(0);
                    let hash = hex::encode(crate::proto::keys::sha256(value.as_bytes()));
                    let ok = ttl > 0
                        && chunk.contains(&name)
                        && advertised.get(&name).map(|h| h.contains(&hash)).unwrap_or(false)
                        && value.len() <= opts.max_value_bytes
                        && verify_record(value, &name, opts.operator_spk.as_ref(), now);
                    if !ok {
                        rejected += 1;
                        continue;
                    }
                    let op = Op::Add { name, value: value.to_string(), ttl: ttl.min(opts.max_ttl) };
                    applies.push(store.send(Apply {
                        ops: vec![op],
                        max_values: opts.max_values_per_name,
                        origin: Origin::Replicated,
                    }));
                }
                for a in futures_util::future::join_all(applies).await {
                    match a {
                        Ok(Ok(_)) => pulled += 1,
                        Ok(Err(StoreError::TooManyValues { .. })) => rejected += 1,
                        _ => {
                            return PassResult {
                                wm,
                                pulled,
                                rejected,
                                error: Some("store write failed".into()),
                            }
                        }
                    }
                }
            }
        }
        // Skip, never stall: the cursor moves past every row of the page.
        if let Some(last) = page.records.last() {
            if let (Some(ts), Some(name), Some(hash)) = (
                last.get("ts").and_then(|v| v.as_u64()),
                last.get("name").and_then(|v| v.as_str()),
                last.get("hash").and_then(|v| v.as_str()),
            ) {
                if (ts, name, hash) > (wm.ts, wm.name.as_str(), wm.hash.as_str()) {
                    wm.ts = ts;
                    wm.name = name.to_string();
                    wm.hash = hash.to_string();
                }
            }
        }
        if !page.has_more || page.records.is_empty() {
            break;
        }
    }
    // Deletes (extension; reference peers answer 404 and are skipped).
    let url = format!("{base}/v1/sync/tombstones?after={}", wm.tomb_ms);
    if let Ok(Some(v)) = get_json::<serde_json::Value>(&c, &url, &opts.token).await {
        let mut ops = Vec::new();
        for t in v.get("tombstones").and_then(|t| t.as_array()).cloned().unwrap_or_default() {
            let (Some(stamp), Some(name), Some(value)) = (
                t.get("stamp").and_then(|x| x.as_u64()),
                t.get("name").and_then(|x| x.as_str()),
                t.get("value").and_then(|x| x.as_str()),
            ) else {
                continue;
            };
            wm.tomb_ms = wm.tomb_ms.max(stamp);
            if valid_sync_name(name) {
                ops.push(Op::DeleteValue {
                    name: name.to_ascii_lowercase(),
                    value: value.to_string(),
                });
            }
        }
        if !ops.is_empty() {
            let _ = store.send(Apply { ops, max_values: 0, origin: Origin::Replicated }).await;
        }
    }
    PassResult { wm, pulled, rejected, error: None }
}

impl SyncActor {
    /// Open the watermark tree in `db`.
    pub fn new(
        opts: SyncOptions,
        store: Addr<StoreActor>,
        db: &sled::Db,
        supervisor: Option<Addr<SupervisorActor>>,
    ) -> Result<Self, StoreError> {
        let tree = db.open_tree("sync")?;
        let peers = opts.peers.iter().map(|url| new_peer(&tree, url)).collect();
        Ok(SyncActor {
            opts,
            store,
            tree,
            peers,
            notify_pending: false,
            supervisor,
            clock: Clock::system(),
        })
    }

    /// Read time from `clock` instead of the system clock.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    fn start_pass(&mut self, i: usize, ctx: &mut Context<Self>) {
        let Some(p) = self.peers.get_mut(i) else { return };
        if p.running {
            p.again = true;
            return;
        }
        p.running = true;
        p.stats.pulls += 1;
        let fut = pass(
            p.url.clone(),
            p.wm.clone(),
            self.opts.clone(),
            self.store.clone(),
            self.clock.clone(),
        );
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            let p = &mut act.peers[i];
            p.running = false;
            p.stats.records_pulled += res.pulled;
            p.stats.records_rejected += res.rejected;
            if let Some(e) = res.error {
                p.stats.errors += 1;
                p.stats.last_error = e;
            } else {
                p.stats.last_success = act.clock.now_secs();
                p.stats.last_error.clear();
            }
            if let Ok(v) = serde_json::to_vec(&res.wm) {
                let _ = act.tree.insert(p.url.as_bytes(), v);
            }
            p.wm = res.wm;
            if std::mem::take(&mut p.again) {
                act.start_pass(i, ctx);
            }
        }));
    }

    fn pull_all(&mut self, ctx: &mut Context<Self>) {
        for i in 0..self.peers.len() {
            self.start_pass(i, ctx);
        }
    }

    fn notify_peers(&mut self) {
        self.notify_pending = false;
        for p in &self.peers {
            let url = format!("{}/v1/sync/notify", p.url.trim_end_matches('/'));
            let token = self.opts.token.clone();
            actix_rt::spawn(async move {
                let _ = client().post(&url).bearer_auth(token).send().await;
            });
        }
    }

    fn report(&self, event: LifecycleEvent) {
        if let Some(s) = &self.supervisor {
            s.do_send(Lifecycle { actor: "sync", event });
        }
    }
}

impl Actor for SyncActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.store.do_send(Subscribe {
            name: "sync",
            to: ctx.address().recipient(),
            snapshot: false,
        });
        ctx.run_interval(self.opts.interval, |act, ctx| act.pull_all(ctx));
        self.pull_all(ctx);
        self.report(LifecycleEvent::Started);
    }
}

impl Supervised for SyncActor {
    fn restarting(&mut self, _: &mut Context<Self>) {
        for p in &mut self.peers {
            p.running = false;
        }
        self.report(LifecycleEvent::Restarting);
    }
}

impl Handler<ZoneDelta> for SyncActor {
    type Result = ();

    fn handle(&mut self, msg: ZoneDelta, ctx: &mut Context<Self>) {
        // A local write: tell peers soon (coalescing bursts) so they pull at once.
        if msg.local && !self.notify_pending && !self.peers.is_empty() {
            self.notify_pending = true;
            ctx.run_later(Duration::from_millis(20), |act, _| act.notify_peers());
        }
    }
}

impl Handler<PullNow> for SyncActor {
    type Result = ();

    fn handle(&mut self, _: PullNow, ctx: &mut Context<Self>) {
        self.pull_all(ctx);
    }
}

impl Handler<GetSyncStats> for SyncActor {
    type Result = MessageResult<GetSyncStats>;

    fn handle(&mut self, _: GetSyncStats, _: &mut Context<Self>) -> Self::Result {
        let now = self.clock.now_secs();
        MessageResult(
            self.peers
                .iter()
                .map(|p| {
                    let mut s = p.stats.clone();
                    s.lag_secs =
                        if s.last_success == 0 { 0 } else { now.saturating_sub(s.last_success) };
                    s
                })
                .collect(),
        )
    }
}

impl Handler<Fail> for SyncActor {
    type Result = ();

    fn handle(&mut self, _: Fail, ctx: &mut Context<Self>) {
        tracing::warn!("sync actor: injected failure, stopping for restart");
        ctx.stop();
    }
}

/// A peer with its persisted watermark (or a fresh one).
fn new_peer(tree: &sled::Tree, url: &str) -> Peer {
    let wm = tree
        .get(url.as_bytes())
        .ok()
        .flatten()
        .and_then(|v| serde_json::from_slice(&v).ok())
        .unwrap_or_default();
    Peer {
        url: url.to_string(),
        wm,
        running: false,
        again: false,
        stats: PeerStats { peer: url.to_string(), ..Default::default() },
    }
}

/// Replace the peer list (reload, or a newer cluster manifest). Peers that stay keep their
/// state; every peer's watermark is the persisted one, so none is lost. Applied between
/// passes (a pass in flight finishes first).
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct SetPeers(pub Vec<String>);

impl Handler<SetPeers> for SyncActor {
    type Result = ();
    fn handle(&mut self, msg: SetPeers, ctx: &mut Context<Self>) {
        if self.peers.iter().any(|p| p.running) {
            ctx.run_later(Duration::from_millis(100), move |act, ctx| act.handle(msg, ctx));
            return;
        }
        let mut old = std::mem::take(&mut self.peers);
        self.peers = msg
            .0
            .iter()
            .map(|url| match old.iter().position(|p| &p.url == url) {
                Some(i) => old.swap_remove(i),
                None => new_peer(&self.tree, url),
            })
            .collect();
        tracing::info!(peers = ?msg.0, "sync peers replaced");
        self.opts.peers = msg.0;
        self.pull_all(ctx);
    }
}

impl Handler<super::actor_db::ExportTrees> for SyncActor {
    type Result = Result<Vec<crate::files::backup::TreeDump>, String>;
    fn handle(&mut self, _: super::actor_db::ExportTrees, _: &mut Context<Self>) -> Self::Result {
        crate::files::backup::TreeDump::of("sync", &self.tree)
            .map(|d| vec![d])
            .map_err(|e| e.to_string())
    }
}
