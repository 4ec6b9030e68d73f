//! Cluster manifest gossip (node.md §6.5), when the sync peers come from the signed
//! manifest (`[cluster] peers` empty): every sync interval, ask each peer for its
//! `/v1/sync/cluster-manifest`; a wire that verifies under the pinned operator key for our
//! base domain, with a higher seq than ours, is published at `cluster.<base>` and our
//! peers are re-derived from it (`sync::SetPeers`: watermarks are kept per peer URL).
//! A task on the System thread, not an actor: it owns only its current seq and peers.

use std::time::Duration;

use actix::Addr;

use super::store::{Apply, Get, Op, Origin, StoreActor};
use super::sync::{SetPeers, SyncActor};
use crate::policy::cluster_peers::peers_from_manifest;
use crate::proto::records::cluster::ClusterManifest;

/// What the gossip task needs.
#[derive(Debug, Clone)]
pub struct GossipOptions {
    pub operator_spk: [u8; 32],
    pub base: String,
    pub node_id: String,
    pub self_endpoint: String,
    pub sync_token: String,
    pub interval: Duration,
    /// The node's clock (manifest validity windows).
    pub clock: crate::clock::Clock,
}

/// The highest-seq manifest in the store that verifies (for our base), if any.
pub async fn best_stored(o: &GossipOptions, store: &Addr<StoreActor>) -> Option<ClusterManifest> {
    let name = format!("cluster.{}", o.base);
    let vals = store.send(Get { name }).await.ok()?.ok()?;
    vals.into_iter()
        .filter_map(|(wire, _)| {
            ClusterManifest::parse_and_verify(
                &wire,
                &o.operator_spk,
                Some(&o.base),
                o.clock.now_secs(),
            )
        })
        .max_by_key(|m| m.seq)
}

async fn fetch(c: &awc::Client, peer: &str, token: &str) -> Option<String> {
    let url = format!("{peer}/v1/sync/cluster-manifest");
    let mut r = c.get(&url).bearer_auth(token).send().await.ok()?;
    if r.status().as_u16() != 200 {
        return None;
    }
    let body = r.body().limit(64 << 10).await.ok()?;
    let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
    v["wire"].as_str().map(str::to_string)
}

/// Where an installed manifest goes.
pub struct Targets {
    pub store: Addr<StoreActor>,
    pub sync: Addr<SyncActor>,
    /// Gets the new peers' zones as seeds (node.md §7.6).
    pub heartbeat: Option<Addr<super::heartbeat::HeartbeatActor>>,
    /// Our zone (never a seed of ours).
    pub zone: String,
}

/// Run forever: `seq` is the installed manifest's, `peers` the peers derived from it.
pub async fn run(t: Targets, o: GossipOptions, mut seq: u64, mut peers: Vec<String>) {
    let Targets { store, sync, heartbeat, zone } = t;
    let c = awc::Client::builder().timeout(Duration::from_secs(5)).finish();
    let mut tick = tokio::time::interval(o.interval);
    loop {
        tick.tick().await;
        for peer in peers.clone() {
            let Some(wire) = fetch(&c, &peer, &o.sync_token).await else { continue };
            let now = o.clock.now_secs();
            let Some(m) =
                ClusterManifest::parse_and_verify(&wire, &o.operator_spk, Some(&o.base), now)
            else {
                tracing::warn!(peer = %peer, "peer's cluster manifest does not verify; ignored");
                continue;
            };
            if m.seq <= seq {
                continue;
            }
            let op = Op::Add {
                name: format!("cluster.{}", m.cluster_name.to_ascii_lowercase()),
                value: wire,
                ttl: m.exp.saturating_sub(now).max(1),
            };
            match store.send(Apply { ops: vec![op], max_values: 0, origin: Origin::Local }).await {
                Ok(Ok(_)) => {}
                other => {
                    tracing::warn!(result = ?other.map(|r| r.map(|_| ())), "cannot store the newer manifest");
                    continue;
                }
            }
            seq = m.seq;
            peers = peers_from_manifest(&m, &o.node_id, &o.self_endpoint);
            tracing::info!(seq, from = %peer, peers = ?peers, "installed a newer cluster manifest");
            sync.do_send(SetPeers(peers.clone()));
            if let Some(h) = &heartbeat {
                let zones = crate::policy::cluster_peers::seed_zones(&peers, &zone);
                h.do_send(super::heartbeat::AddSeeds(zones));
            }
            break;
        }
    }
}
