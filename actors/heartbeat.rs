//! The heartbeat actor: node discovery through signed heartbeat records in DNS,
//! wire-compatible with reference nodes (protocol.md §4.10, node.md §7).
//!
//! Each tick it publishes this node's signed wire at `_dnsmesh-heartbeat.<zone>`,
//! harvests `_dnsmesh-heartbeat` and `_dnsmesh-seen` of its seed zones over DNS, keeps
//! the verified peers (persisted, capped), and republishes up to 50 of them (round-robin
//! over the seed zones they came from) at
//! `_dnsmesh-seen.<zone>`. Unlike the reference (node.md §11.1 item 9) second-hand wires
//! from `_dnsmesh-seen` are not held to the ±300 s freshness window — only to their
//! signature, their expiry and the future-skew bound — so transitive discovery works.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use actix::prelude::*;
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use super::store::{Apply, Get, Op, Origin, StoreActor};
use super::supervisor::{Lifecycle, LifecycleEvent, SupervisorActor};
use crate::clock::Clock;
use crate::proto::records::heartbeat::{Heartbeat, HeartbeatPolicy, CAP_CLAIM_PROVIDER};
use crate::proto::{keys, names};

/// What the heartbeat actor needs from the configuration.
#[derive(Debug, Clone)]
pub struct HeartbeatOptions {
    pub zone: String,
    pub self_endpoint: String,
    pub version: String,
    pub claim_provider: bool,
    /// Seed zones: `zone` (asked through `resolvers`) or `zone@ip:port` (asked directly).
    pub seeds: Vec<String>,
    pub resolvers: Vec<SocketAddr>,
    pub interval: Duration,
    pub ttl: u64,
    /// A peer not heard from for this long is down.
    pub peer_timeout: u64,
    pub max_zones: usize,
    pub allow_private_endpoints: bool,
    /// Opt-in seed-list URLs and how often to refresh them.
    pub seed_urls: Vec<String>,
    pub seed_refresh: Duration,
    /// Most rows in the seen set (the largest contributor's oldest rows go first).
    pub seen_max_rows: usize,
    /// Most new peers one seed zone can add per tick.
    pub max_new_per_seed: usize,
}

/// Ask for the seen peers.
#[derive(Message)]
#[rtype(result = "Vec<PeerView>")]
pub struct GetPeers;

/// Run one tick now (tests and operators; the interval keeps running).
#[derive(Message)]
#[rtype(result = "()")]
pub struct TickNow;

/// Test-only fault.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Fail;

/// A seen peer, for the status page and metrics.
#[derive(Debug, Clone, Serialize)]
pub struct PeerView {
    pub operator_spk: String,
    pub endpoint: String,
    pub zone: String,
    pub version: String,
    /// Unix seconds of the newest wire's `ts`.
    pub last_seen: u64,
    pub age_secs: u64,
    pub up: bool,
    pub claim_provider: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SeenRow {
    wire: String,
    ts: u64,
    exp: u64,
    endpoint: String,
    zone: String,
    version: String,
    caps: u16,
    /// The seed zone this row was harvested from (rows stored before this field: "").
    #[serde(default)]
    source: String,
}

/// What [`HeartbeatActor::accept`] did with a wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Accepted {
    /// Refused (bad signature, expired, from the future, ours, …).
    No,
    /// A peer already in the seen set (refreshed, or an older wire ignored).
    Known,
    /// A new peer.
    New,
}

/// The heartbeat actor.
pub struct HeartbeatActor {
    opts: HeartbeatOptions,
    key: SigningKey,
    store: Addr<StoreActor>,
    tree: sled::Tree,
    seen: BTreeMap<(String, String), SeenRow>,
    last_own: Option<String>,
    published_seen: Vec<String>,
    first_tick: bool,
    running: bool,
    cooldown: HashSet<String>,
    /// Zones from the fetched seed lists (kept when a later fetch fails).
    url_seeds: Vec<String>,
    supervisor: Option<Addr<SupervisorActor>>,
    clock: Clock,
}

/// Load the operator key (an Ed25519 seed: 32 raw bytes or 64 hex), creating a new
/// random one (64 hex, mode 0600) when the file does not exist.
pub fn load_or_create_operator_key(path: &std::path::Path) -> std::io::Result<SigningKey> {
    let seed: [u8; 32] = match std::fs::read(path) {
        Ok(b) => {
            let t = String::from_utf8_lossy(&b).trim().to_string();
            if b.len() == 32 {
                b.try_into().unwrap_or([0; 32])
            } else {
                hex::decode(&t).ok().and_then(|v| v.try_into().ok()).ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "operator key must be 32 raw bytes or 64 hex",
                    )
                })?
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let seed = keys::random_32();
            let mut f =
                std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
            f.write_all(hex::encode(seed).as_bytes())?;
            f.sync_all()?;
            seed
        }
        Err(e) => return Err(e),
    };
    Ok(SigningKey::from_bytes(&seed))
}

impl HeartbeatActor {
    /// Build with the operator key and the persisted seen set.
    pub fn new(
        opts: HeartbeatOptions,
        key: SigningKey,
        store: Addr<StoreActor>,
        db: &sled::Db,
        supervisor: Option<Addr<SupervisorActor>>,
    ) -> Result<Self, sled::Error> {
        let tree = db.open_tree("heartbeats")?;
        let mut seen = BTreeMap::new();
        for (k, v) in tree.iter().flatten() {
            if let (Ok(k), Ok(row)) =
                (String::from_utf8(k.to_vec()), serde_json::from_slice::<SeenRow>(&v))
            {
                if let Some((spk, ep)) = k.split_once(' ') {
                    seen.insert((spk.to_string(), ep.to_string()), row);
                }
            }
        }
        let mut act = HeartbeatActor {
            opts,
            key,
            store,
            tree,
            seen,
            last_own: None,
            published_seen: Vec::new(),
            first_tick: true,
            running: false,
            cooldown: HashSet::new(),
            url_seeds: Vec::new(),
            supervisor,
            clock: Clock::system(),
        };
        act.enforce_cap();
        Ok(act)
    }

    /// Read time from `clock` instead of the system clock.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Keep at most `seen_max_rows` rows: while over, drop the oldest row of the source
    /// zone that holds the most rows, so one hostile seed cannot push everyone else out.
    fn enforce_cap(&mut self) {
        let max = self.opts.seen_max_rows.max(1);
        if self.seen.len() <= max {
            return;
        }
        let victims = crate::policy::heartbeat_policy::evict(
            self.seen.iter().map(|(k, r)| (k.clone(), r.source.as_str(), r.ts)),
            self.seen.len() - max,
        );
        for k in victims {
            let _ = self.tree.remove(format!("{} {}", k.0, k.1).as_bytes());
            self.seen.remove(&k);
        }
    }

    fn own_spk(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    fn own_wire(&self, now: u64) -> Option<String> {
        let caps = if self.opts.claim_provider { CAP_CLAIM_PROVIDER } else { 0 };
        let hb = Heartbeat {
            endpoint: self.opts.self_endpoint.clone(),
            operator_spk: self.own_spk(),
            version: self.opts.version.clone(),
            capabilities: caps,
            claim_provider_zone: self.opts.zone.clone(),
            ts: now,
            exp: now + self.opts.ttl,
        };
        let policy = HeartbeatPolicy {
            allow_private_endpoints: self.opts.allow_private_endpoints,
            ..Default::default()
        };
        match hb.sign_with(&self.key, &policy) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::error!(error = %e, "heartbeat: cannot sign our own wire (check heartbeat.self_endpoint)");
                None
            }
        }
    }

    /// Seed zones for this tick: config, then zones learned from seen wires.
    fn zones(&self) -> Vec<(String, Option<SocketAddr>)> {
        let mut out: Vec<(String, Option<SocketAddr>)> = Vec::new();
        // Adds a zone (once); returns how many there are.
        let mut push = |z: &str, server: Option<SocketAddr>| {
            let z = z.trim().trim_end_matches('.').to_ascii_lowercase();
            if !z.is_empty() && z != self.opts.zone && !out.iter().any(|(x, _)| *x == z) {
                out.push((z, server));
            }
            out.len()
        };
        for s in &self.opts.seeds {
            match s.split_once('@') {
                Some((z, addr)) => push(z, addr.parse().ok()),
                None => push(s, None),
            };
        }
        for s in &self.url_seeds {
            match s.split_once('@') {
                Some((z, addr)) if self.opts.allow_private_endpoints => push(z, addr.parse().ok()),
                Some((z, _)) => push(z, None),
                None => push(s, None),
            };
        }
        // Learned zones round-robin over the seeds they came from, so one seed's peers
        // cannot take every slot of `max_zones`.
        let rows: Vec<&SeenRow> = self.seen.values().collect();
        let order = crate::policy::heartbeat_policy::diverse(
            rows.iter().map(|r| (r.source.as_str(), r.ts)),
            rows.len(),
        );
        let enough = self.opts.max_zones + self.cooldown.len();
        for i in order {
            if push(&rows[i].zone, None) >= enough {
                break;
            }
        }
        out.retain(|(z, _)| !self.cooldown.contains(z));
        out.truncate(self.opts.max_zones);
        out
    }

    fn accept(
        &mut self,
        wire: &str,
        now: u64,
        second_hand: bool,
        source: &str,
        may_add: bool,
    ) -> Accepted {
        let policy = HeartbeatPolicy {
            max_skew: if second_hand {
                self.opts.ttl.max(86_400)
            } else {
                crate::proto::records::CLOCK_SKEW
            },
            allow_private_endpoints: self.opts.allow_private_endpoints,
        };
        let Some(hb) = Heartbeat::parse_and_verify_with(wire, now, &policy) else {
            return Accepted::No;
        };
        // A second-hand wire may be old but never from the future.
        if hb.ts > now + crate::proto::records::CLOCK_SKEW || hb.operator_spk == self.own_spk() {
            return Accepted::No;
        }
        let key = (hex::encode(hb.operator_spk), hb.endpoint.clone());
        let known = match self.seen.get(&key) {
            Some(old) if old.ts >= hb.ts => return Accepted::Known,
            Some(_) => true,
            None if !may_add => return Accepted::No,
            None => false,
        };
        let zone = if hb.claim_provider_zone.is_empty() {
            url::Url::parse(&hb.endpoint)
                .ok()
                .and_then(|u| u.host_str().map(str::to_string))
                .unwrap_or_default()
        } else {
            hb.claim_provider_zone.to_ascii_lowercase()
        };
        // The zone is harvested later: only a real DNS name, never junk from the wire.
        let zone =
            if crate::proto::dnsname::validate(&zone).is_some() { zone } else { String::new() };
        let row = SeenRow {
            wire: wire.to_string(),
            ts: hb.ts,
            exp: hb.exp,
            endpoint: hb.endpoint.clone(),
            zone,
            version: hb.version.clone(),
            caps: hb.capabilities,
            source: source.to_string(),
        };
        if let Ok(v) = serde_json::to_vec(&row) {
            let _ = self.tree.insert(format!("{} {}", key.0, key.1).as_bytes(), v);
        }
        self.seen.insert(key, row);
        if known {
            Accepted::Known
        } else {
            Accepted::New
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.running {
            return;
        }
        self.running = true;
        let zones = self.zones();
        let resolvers = self.opts.resolvers.clone();
        let store = self.store.clone();
        let hb_name = names::heartbeat(&self.opts.zone);
        let first = self.first_tick;
        let fut = async move {
            // Own old wires to sweep on the first tick (any age).
            let existing = if first {
                store
                    .send(Get { name: hb_name })
                    .await
                    .ok()
                    .and_then(|r| r.ok())
                    .unwrap_or_default()
            } else {
                Vec::new()
            };
            let mut harvested = Vec::new();
            for (zone, server) in zones {
                let servers = match server {
                    Some(s) => vec![s],
                    None => resolvers.clone(),
                };
                let t = Duration::from_secs(3);
                let own =
                    crate::client::dns_client::txt(&servers, &names::heartbeat(&zone), t).await;
                let seen = crate::client::dns_client::txt(&servers, &names::seen(&zone), t).await;
                harvested.push((zone, own.unwrap_or_default(), seen.unwrap_or_default()));
            }
            (existing, harvested)
        };
        ctx.spawn(fut.into_actor(self).map(|(existing, harvested), act, _ctx| {
            act.running = false;
            let now = act.clock.now_secs();
            let mut ops = Vec::new();
            let hb_name = names::heartbeat(&act.opts.zone);
            let own_spk = act.own_spk();
            let sweep = HeartbeatPolicy { max_skew: u64::MAX / 4, allow_private_endpoints: true };
            for (v, _) in existing {
                if Heartbeat::parse_and_verify_with(&v, now, &sweep)
                    .map(|h| h.operator_spk == own_spk)
                    .unwrap_or(false)
                {
                    ops.push(Op::DeleteValue { name: hb_name.clone(), value: v });
                }
            }
            if let Some(prev) = act.last_own.take() {
                ops.push(Op::DeleteValue { name: hb_name.clone(), value: prev });
            }
            if let Some(w) = act.own_wire(now) {
                ops.push(Op::Add { name: hb_name.clone(), value: w.clone(), ttl: act.opts.ttl });
                act.last_own = Some(w);
            }
            act.cooldown.clear();
            for (zone, own, seen) in harvested {
                // At most `max_new_per_seed` new peers from one seed zone per tick.
                let (mut got, mut new) = (0, 0);
                let wires = own.iter().take(20).map(|w| (w, false));
                for (w, second_hand) in wires.chain(seen.iter().take(20).map(|w| (w, true))) {
                    let may_add = new < act.opts.max_new_per_seed;
                    match act.accept(w, now, second_hand, &zone, may_add) {
                        Accepted::No => {}
                        Accepted::Known => got += 1,
                        Accepted::New => {
                            got += 1;
                            new += 1;
                        }
                    }
                }
                if got == 0 {
                    act.cooldown.insert(zone);
                }
            }
            act.enforce_cap();
            // Drop expired rows.
            let expired: Vec<_> =
                act.seen.iter().filter(|(_, r)| r.exp <= now).map(|(k, _)| k.clone()).collect();
            for k in expired {
                let _ = act.tree.remove(format!("{} {}", k.0, k.1).as_bytes());
                act.seen.remove(&k);
            }
            // Republish the seen graph: 50 wires taken round-robin over the seed zones they
            // came from (newest first within each), replacing what we published before.
            let picked = crate::policy::heartbeat_policy::diverse(
                act.seen.values().map(|r| (r.source.as_str(), r.ts)),
                50,
            );
            let rows: Vec<&SeenRow> = act.seen.values().collect();
            let new_set: Vec<String> = picked.into_iter().map(|i| rows[i].wire.clone()).collect();
            let seen_name = names::seen(&act.opts.zone);
            for old in &act.published_seen {
                if !new_set.contains(old) {
                    ops.push(Op::DeleteValue { name: seen_name.clone(), value: old.clone() });
                }
            }
            for w in &new_set {
                ops.push(Op::Add { name: seen_name.clone(), value: w.clone(), ttl: act.opts.ttl });
            }
            act.published_seen = new_set;
            act.first_tick = false;
            act.store.do_send(Apply { ops, max_values: 0, origin: Origin::Local });
        }));
    }

    fn refresh_seed_lists(&mut self, ctx: &mut Context<Self>) {
        let urls = self.opts.seed_urls.clone();
        let allow = self.opts.allow_private_endpoints;
        let fut = async move {
            let mut zones = Vec::new();
            let mut any_ok = false;
            for u in urls {
                match crate::client::seed_fetch::fetch(&u, allow).await {
                    Ok(z) => {
                        any_ok = true;
                        zones.extend(z);
                    }
                    Err(e) => tracing::warn!(error = %e, "heartbeat: seed list not used"),
                }
            }
            any_ok.then_some(zones)
        };
        ctx.spawn(fut.into_actor(self).map(|zones, act, ctx| {
            if let Some(z) = zones {
                act.url_seeds = z;
                act.tick(ctx);
            }
        }));
    }

    fn report(&self, event: LifecycleEvent) {
        if let Some(s) = &self.supervisor {
            s.do_send(Lifecycle { actor: "heartbeat", event });
        }
    }
}

impl Actor for HeartbeatActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if !self.opts.seed_urls.is_empty() {
            self.refresh_seed_lists(ctx);
            ctx.run_interval(self.opts.seed_refresh, |act, ctx| act.refresh_seed_lists(ctx));
        }
        self.tick(ctx);
        ctx.run_interval(self.opts.interval, |act, ctx| act.tick(ctx));
        self.report(LifecycleEvent::Started);
    }
}

impl Supervised for HeartbeatActor {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.running = false;
        self.report(LifecycleEvent::Restarting);
    }
}

impl Handler<GetPeers> for HeartbeatActor {
    type Result = MessageResult<GetPeers>;

    fn handle(&mut self, _: GetPeers, _: &mut Context<Self>) -> Self::Result {
        let now = self.clock.now_secs();
        MessageResult(
            self.seen
                .iter()
                .map(|((spk, ep), r)| PeerView {
                    operator_spk: spk.clone(),
                    endpoint: ep.clone(),
                    zone: r.zone.clone(),
                    version: r.version.clone(),
                    last_seen: r.ts,
                    age_secs: now.saturating_sub(r.ts),
                    up: now.saturating_sub(r.ts) <= self.opts.peer_timeout,
                    claim_provider: r.caps & CAP_CLAIM_PROVIDER != 0,
                })
                .collect(),
        )
    }
}

impl Handler<TickNow> for HeartbeatActor {
    type Result = ();

    fn handle(&mut self, _: TickNow, ctx: &mut Context<Self>) {
        self.tick(ctx);
    }
}

impl Handler<Fail> for HeartbeatActor {
    type Result = ();

    fn handle(&mut self, _: Fail, ctx: &mut Context<Self>) {
        tracing::warn!("heartbeat actor: injected failure, stopping for restart");
        ctx.stop();
    }
}

/// More seed zones (the zones of sync peers added by a newer cluster manifest,
/// node.md §7.6); zones already seeded are left as they are.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AddSeeds(pub Vec<String>);

impl Handler<AddSeeds> for HeartbeatActor {
    type Result = ();
    fn handle(&mut self, msg: AddSeeds, _: &mut Context<Self>) {
        for z in msg.0 {
            if !self.opts.seeds.iter().any(|s| s.split('@').next() == Some(z.as_str())) {
                tracing::info!(zone = %z, "heartbeat seed added from the cluster manifest");
                self.opts.seeds.push(z);
            }
        }
    }
}

impl Handler<super::actor_db::ExportTrees> for HeartbeatActor {
    type Result = Result<Vec<crate::files::backup::TreeDump>, String>;
    fn handle(&mut self, _: super::actor_db::ExportTrees, _: &mut Context<Self>) -> Self::Result {
        crate::files::backup::TreeDump::of("heartbeat", &self.tree)
            .map(|d| vec![d])
            .map_err(|e| e.to_string())
    }
}
