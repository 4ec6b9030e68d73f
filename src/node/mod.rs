//! The node runtime: configuration, start-up wiring of the actors, shutdown. Nothing
//! below imports it: the actors build on `crate::policy` and `crate::client`
//! (`layering::actors_policy_and_clients_never_reach_the_node`).

pub mod config;
pub mod dnssec_keys;
pub mod docs;
pub mod fdlimit;
pub mod reload;
pub use crate::files::{audit, backup, logfmt, private_dir};
pub use crate::policy::{
    auth, auth_throttle, charts, claims, cluster_peers, heartbeat_policy, limits, metrics, replay,
    replication, tcp_conns, transfer,
};

use std::net::SocketAddr;
use std::time::Duration;

use actix::prelude::*;
use anyhow::Context as _;

use crate::actors::auth::{AuthActor, AuthOptions, SetKeyringSink};
use crate::actors::dns::WriteImage;
use crate::actors::dns::{DnsActor, DnsOptions};
use crate::actors::http::{self, HttpOptions, Peers};
use crate::actors::store::{Checkpoint, Flush, Freeze, SealImage, StoreActor, StoreError};
use crate::actors::supervisor::SupervisorActor;
use crate::clock::Clock;
use config::Settings;

/// The running node's addresses and the handles to stop it.
pub struct NodeHandle {
    pub dns: Vec<SocketAddr>,
    /// DNS-over-TLS addresses bound.
    pub dot: Vec<SocketAddr>,
    pub http: SocketAddr,
    pub store: Addr<StoreActor>,
    http_server: actix_web::dev::ServerHandle,
    dns_actor: Addr<DnsActor>,
    /// Applies a reloaded configuration (SIGHUP, `admin reload`).
    pub reloader: reload::Reloader,
    /// Reloads asked for over HTTP (`POST /v1/admin/reload`).
    pub reload_requests: tokio::sync::mpsc::Receiver<reload::ReloadRequest>,
}

impl NodeHandle {
    /// Graceful stop: stop accepting HTTP, let in-flight writes finish, flush the store.
    pub async fn stop(self) {
        self.http_server.stop(true).await;
        if let Ok(Ok(())) = self.store.send(Flush).await {
            // DNS keeps answering from the view meanwhile.
            match self.store.send(Checkpoint).await {
                Ok(Ok(took)) => tracing::info!(ms = took.as_millis() as u64, "store checkpointed"),
                Ok(Err(e)) => tracing::warn!(error = %e, "store checkpoint failed"),
                Err(_) => {}
            }
            self.write_view_image().await;
        }
        self.dns_actor.do_send(StopDns);
    }
}

impl NodeHandle {
    /// Freeze the store, write the DNS view's image, and seal the store to it, so the
    /// next start reads the view back instead of rebuilding it (`dnswire::image`).
    /// Skipped (with a log line) when anything fails: the next start then builds the
    /// view from the store.
    async fn write_view_image(&self) {
        if let Err(e) = self.store.send(Freeze).await.unwrap_or(Err(StoreError::Unavailable)) {
            tracing::warn!(error = %e, "store freeze failed; no view image");
            return;
        }
        let mut token = [0u8; 16];
        if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut token).is_err() {
            return;
        }
        let t = std::time::Instant::now();
        match self.dns_actor.send(WriteImage(token)).await {
            Ok(Ok(bytes)) => match self.store.send(SealImage(token)).await {
                Ok(Ok(())) => {
                    tracing::info!(bytes, ms = t.elapsed().as_millis() as u64, "view image written")
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "store seal failed; the image will not be used")
                }
                Err(_) => {}
            },
            Ok(Err(e)) => tracing::info!(reason = %e, "no view image"),
            Err(_) => {}
        }
    }
}

/// Ask the DNS actor to stop serving (shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopDns;

impl Handler<StopDns> for DnsActor {
    type Result = ();
    fn handle(&mut self, _: StopDns, ctx: &mut Context<Self>) {
        // A plain stop (not a failure): the supervisor would restart it, so stop the
        // whole system's use of it by terminating the context.
        ctx.terminate();
    }
}

/// The `[dnssec]` keys and policy, when signing is on.
fn dnssec_setup(
    settings: &Settings,
    clock: &crate::clock::Clock,
) -> anyhow::Result<Option<crate::dnswire::DnssecSetup>> {
    let d = &settings.dnssec;
    if !d.enabled {
        return Ok(None);
    }
    let now = clock.now_secs();
    let (keys, persist) = dnssec_keys::load_or_create(&settings.node.data_dir, d.algorithm, now)?;
    Ok(Some(crate::dnswire::DnssecSetup {
        keys,
        validity_secs: d.signature_validity_days * 86_400,
        zsk_lifetime_secs: d.zsk_lifetime(),
        persist: Some(persist),
    }))
}

/// The auth actor's options from the settings (at start and on reload).
pub fn auth_options(settings: &Settings) -> AuthOptions {
    AuthOptions {
        zone: settings.node.zone.clone(),
        hostname: settings.node.hostname.clone(),
        mode: settings.auth.mode.clone(),
        operator_token: settings.auth.operator_token.clone(),
        registration: settings.auth.registration,
        tsig_enabled: settings.dns.update,
        allowlist: settings.auth.registration_allowlist.clone(),
        token_ttl_secs: settings.auth.token_ttl_secs,
        token_rate: settings.limits.token_rate,
        token_burst: settings.limits.token_burst,
        mailbox_rate: settings.limits.mailbox_rate,
        mailbox_burst: settings.limits.mailbox_burst,
        zone_aliases: settings.auth.zone_aliases.clone(),
    }
}

/// Start every actor inside the current actix `System`. Must be called from within it.
pub async fn start(settings: &Settings) -> anyhow::Result<NodeHandle> {
    crate::actors::dns::fix_mmap_threshold();
    fdlimit::raise_fd_limit();
    let data_dir = &settings.node.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating node.data_dir {}", data_dir.display()))?;
    private_dir::make_private(data_dir)
        .with_context(|| format!("making node.data_dir {} private (0700)", data_dir.display()))?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut expected = vec!["store", "dns", "auth", "http", "sync"];
    if settings.heartbeat.enabled {
        expected.push("heartbeat");
    }
    let supervisor = SupervisorActor::new(&expected).start();
    // The one wall clock every actor reads.
    let clock = Clock::system();
    let store_actor = StoreActor::open_with(
        data_dir,
        Duration::from_secs(settings.node.sweep_interval_secs),
        settings.node.store_compression,
    )
    .with_context(|| format!("opening the store in {}", data_dir.display()))?
    .with_supervisor(supervisor.clone())
    .with_commit_delay(Duration::from_micros(settings.node.commit_delay_us))
    .with_max_tombstones(settings.limits.max_tombstones)
    .with_compaction(settings.node.compact_ratio, settings.node.compact_min_bytes)
    .with_clock(clock.clone());
    // Each of auth, sync and heartbeat owns its own database; data dirs of older versions
    // kept their trees in the store's, moved out here once, before any actor runs.
    let own_db = |name: &str, trees: &[&str]| -> anyhow::Result<sled::Db> {
        let dir = crate::actors::actor_db::dir(data_dir, name);
        let db = crate::actors::actor_db::open(data_dir, name)
            .with_context(|| format!("opening {}", dir.display()))?;
        let moved = store_actor
            .hand_over_trees(trees, &db)
            .with_context(|| format!("moving {trees:?} into {}", dir.display()))?;
        if moved > 0 {
            tracing::info!(rows = moved, to = %dir.display(), "moved trees out of the store's database");
        }
        Ok(db)
    };
    let auth_db = own_db("auth", &["tokens", "tsig"])?;
    let sync_db = own_db("sync", &["sync"])?;
    let heartbeat_db = own_db("heartbeat", &["heartbeats"])?;
    let store = actix::Supervisor::start(move |_| store_actor);

    let auth_opts = auth_options(settings);
    let auth_actor = AuthActor::open(auth_opts, auth_db, &data_dir.join("node.key"))?
        .with_supervisor(supervisor.clone())
        .with_clock(clock.clone());
    let auth = actix::Supervisor::start(move |_| auth_actor);

    let dns_opts = DnsOptions {
        zone: settings.node.zone.clone(),
        listen: settings.dns_listen(),
        ttl: settings.dns.ttl,
        ns: settings.dns.ns.clone(),
        soa_rname: settings.dns.soa_rname.clone(),
        apex_addresses: settings.dns.apex_addresses.iter().filter_map(|a| a.parse().ok()).collect(),
        update: settings.dns.update,
        claim_provider: settings.dns.claim_provider,
        max_ttl: settings.limits.max_ttl,
        max_value_bytes: settings.limits.max_value_bytes,
        max_values_per_name: settings.limits.max_values_per_name,
        claim_rate: settings.limits.claim_rate,
        claim_burst: settings.limits.claim_burst,
        update_rate: settings.limits.update_rate,
        update_burst: settings.limits.update_burst,
        key_rate: settings.limits.update_key_rate,
        key_burst: settings.limits.update_key_burst,
        mailbox_rate: settings.limits.mailbox_rate,
        mailbox_burst: settings.limits.mailbox_burst,
        tcp_timeout: Duration::from_secs(settings.dns.tcp_timeout_secs.max(1)),
        limit_loopback: settings.limits.limit_loopback,
        rrl: (settings.dns.rrl_rate > 0.0).then_some(crate::dnswire::rrl::RrlConfig {
            rate: settings.dns.rrl_rate,
            burst: settings.dns.rrl_burst.max(1.0),
            slip: settings.dns.rrl_slip,
            exempt_loopback: !settings.limits.limit_loopback,
        }),
        max_udp_payload: settings.dns.max_udp_payload,
        tcp_max_connections: settings.dns.tcp_max_connections,
        tcp_max_per_ip: settings.dns.tcp_max_per_ip,
        tcp_lifetime: Duration::from_secs(settings.dns.tcp_lifetime_secs),
        claim_max_ttl: settings.dns.claim_max_ttl,
        receiver_claims: settings.dns.receiver_claim_notifications,
        claim_limits: crate::policy::claims::ClaimLimits {
            max_total: settings.limits.unsigned_claims_max,
            per_net: settings.limits.unsigned_claims_per_net,
            share_per_sender: settings.limits.claim_share_per_sender,
        },
        tombstones_per_key: settings.limits.tombstones_per_key,
        tls_listen: settings.dns_tls_listen(),
        tls: if settings.http.tls_cert.is_empty() {
            None
        } else {
            Some((settings.http.tls_cert.clone(), settings.http.tls_key.clone()))
        },
        transfer: crate::actors::dns::TransferOptions {
            allow: crate::policy::transfer::parse_allow(&settings.transfer.allow)
                .map_err(|e| anyhow::anyhow!("transfer.allow: {e}"))?,
            keys: crate::policy::transfer::parse_keys(&settings.transfer.tsig_keys)
                .map_err(|e| anyhow::anyhow!("transfer.tsig_keys: {e}"))?,
            notify: settings.transfer.notify.iter().filter_map(|n| n.parse().ok()).collect(),
            journal_max_changes: settings.transfer.journal_max_changes,
            state_path: data_dir.join("transfer.serial"),
        },
        dnssec: dnssec_setup(settings, &clock)?,
        udp_threads: settings.dns.udp_threads,
        image_path: Some(data_dir.join(crate::actors::dns::image::FILE)),
    };
    let dns_actor = DnsActor::bind(dns_opts, store.clone(), Some(supervisor.clone()))
        .with_context(|| format!("binding dns.listen {:?}", settings.dns.listen))?
        .with_clock(clock.clone());
    let dns_addrs = dns_actor.bound().to_vec();
    let dot_addrs = dns_actor.tls_bound().to_vec();
    let responder = dns_actor.responder();
    let dns = actix::Supervisor::start(move |_| dns_actor);
    // Serve nothing as "ready" before the view holds every stored record.
    dns.send(crate::actors::dns::WhenReady).await.context("DNS actor did not start")?;
    auth.do_send(SetKeyringSink(dns.clone().recipient()));

    let http_opts = HttpOptions {
        listen: settings.http_listen(),
        tls: if settings.http.tls_cert.is_empty() {
            None
        } else {
            Some((settings.http.tls_cert.clone(), settings.http.tls_key.clone()))
        },
        workers: settings.http.workers,
        request_timeout: Duration::from_secs(settings.http.request_timeout_secs.max(1)),
        max_connections: settings.http.max_connections.max(1),
        trusted_proxies: settings.trusted_proxies(),
        zone: settings.node.zone.clone(),
        node_name: settings.node.hostname.clone(),
        version: env!("CARGO_PKG_VERSION"),
        max_ttl: settings.limits.max_ttl,
        max_value_bytes: settings.limits.max_value_bytes,
        max_values_per_name: settings.limits.max_values_per_name,
        max_body_bytes: settings.limits.max_body_bytes,
        http_rate: settings.limits.http_rate,
        http_burst: settings.limits.http_burst,
        registration_rate: settings.limits.registration_rate,
        registration_burst: settings.limits.registration_burst,
        limit_loopback: settings.limits.limit_loopback,
        fault_injection: settings.debug.fault_injection,
        sync_token: settings.cluster.sync_token.clone(),
        operator_spk: settings.operator_spk(),
        cluster_base: settings.cluster.base_domain.clone(),
        body_timeout: Duration::from_secs(settings.http.body_timeout_secs),
        auth_failure_rate: settings.limits.auth_failure_rate,
        auth_failure_burst: settings.limits.auth_failure_burst,
    };
    publish_cluster_manifest(settings, &store, &clock).await?;
    // With no configured peers, the peers come from the best signed manifest we hold
    // (node.md §6.1), and gossip keeps them current (§6.5).
    let gossip = match settings.operator_spk() {
        Some(spk)
            if settings.cluster.peers.is_empty() && !settings.cluster.base_domain.is_empty() =>
        {
            Some(crate::actors::manifest_gossip::GossipOptions {
                operator_spk: spk,
                base: settings.cluster.base_domain.clone(),
                node_id: settings.cluster.node_id.clone(),
                self_endpoint: settings.heartbeat.self_endpoint.clone(),
                sync_token: settings.cluster.sync_token.clone(),
                interval: Duration::from_secs(settings.cluster.sync_interval_secs),
                clock: clock.clone(),
            })
        }
        _ => None,
    };
    let mut sync_peers = settings.cluster.peers.clone();
    let mut manifest_seq = 0;
    if let Some(g) = &gossip {
        if let Some(m) = crate::actors::manifest_gossip::best_stored(g, &store).await {
            manifest_seq = m.seq;
            sync_peers = cluster_peers::peers_from_manifest(&m, &g.node_id, &g.self_endpoint);
            tracing::info!(seq = m.seq, peers = ?sync_peers, "sync peers from the cluster manifest");
        }
    }
    let sync_opts = crate::actors::sync::SyncOptions {
        peers: sync_peers.clone(),
        token: settings.cluster.sync_token.clone(),
        interval: Duration::from_secs(settings.cluster.sync_interval_secs),
        max_ttl: settings.limits.max_ttl,
        max_value_bytes: settings.limits.max_value_bytes,
        max_values_per_name: settings.limits.max_values_per_name,
        operator_spk: settings.operator_spk(),
    };
    if !settings.cluster.peers.is_empty() && settings.cluster.sync_token.is_empty() {
        tracing::warn!(
            "cluster.peers is set but cluster.sync_token is empty: peers will refuse our pulls"
        );
    }
    let sync_actor = crate::actors::sync::SyncActor::new(
        sync_opts,
        store.clone(),
        &sync_db,
        Some(supervisor.clone()),
    )
    .context("opening sync watermarks")?
    .with_clock(clock.clone());
    let sync = actix::Supervisor::start(move |_| sync_actor);
    let heartbeat = if settings.heartbeat.enabled {
        let h = &settings.heartbeat;
        let key_path = if h.operator_key_file.is_empty() {
            data_dir.join("operator.key")
        } else {
            std::path::PathBuf::from(&h.operator_key_file)
        };
        let key = crate::actors::heartbeat::load_or_create_operator_key(&key_path)
            .with_context(|| format!("heartbeat.operator_key_file {}", key_path.display()))?;
        let resolvers: Vec<SocketAddr> = if h.resolvers.is_empty() {
            system_resolvers()
        } else {
            h.resolvers.iter().filter_map(|r| r.parse().ok()).collect()
        };
        let interval = h.interval_secs;
        let opts = crate::actors::heartbeat::HeartbeatOptions {
            zone: settings.node.zone.clone(),
            self_endpoint: h.self_endpoint.clone(),
            version: if h.version.is_empty() {
                env!("CARGO_PKG_VERSION").to_string()
            } else {
                h.version.clone()
            },
            claim_provider: settings.dns.claim_provider && settings.dns.update,
            // Configured seeds, then the sync peers' zones (node.md §7.6).
            seeds: {
                let mut seeds = h.seeds.clone();
                for z in cluster_peers::seed_zones(&sync_peers, &settings.node.zone) {
                    if !seeds.iter().any(|s| s.split('@').next() == Some(z.as_str())) {
                        seeds.push(z);
                    }
                }
                seeds
            },
            resolvers,
            interval: Duration::from_secs(interval),
            ttl: h.ttl_secs,
            peer_timeout: if h.peer_timeout_secs == 0 {
                2 * interval + 60
            } else {
                h.peer_timeout_secs
            },
            max_zones: h.max_zones,
            allow_private_endpoints: h.allow_private_endpoints,
            seed_urls: h.seed_urls.clone(),
            seed_refresh: Duration::from_secs(h.seed_refresh_secs.max(60)),
            seen_max_rows: h.seen_max_rows,
            max_new_per_seed: h.max_new_per_seed,
        };
        let actor = crate::actors::heartbeat::HeartbeatActor::new(
            opts,
            key,
            store.clone(),
            &heartbeat_db,
            Some(supervisor.clone()),
        )
        .context("opening the heartbeat seen store")?
        .with_clock(clock.clone());
        Some(actix::Supervisor::start(move |_| actor))
    } else {
        None
    };
    if let Some(g) = gossip.clone() {
        actix_rt::spawn(crate::actors::manifest_gossip::run(
            crate::actors::manifest_gossip::Targets {
                store: store.clone(),
                sync: sync.clone(),
                heartbeat: heartbeat.clone(),
                zone: settings.node.zone.clone(),
            },
            g,
            manifest_seq,
            sync_peers.clone(),
        ));
    }
    let tls = if settings.http.tls_cert.is_empty() {
        None
    } else {
        Some(reload::SwapCert::load(&settings.http.tls_cert, &settings.http.tls_key)?)
    };
    let (reload_tx, reload_requests) = tokio::sync::mpsc::channel(4);
    let hooks = reload::Hooks {
        http_limits: std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(reload::http_limits(
            settings,
        ))),
        tls,
        requests: reload_tx,
    };
    let reloader = reload::Reloader {
        hooks: hooks.clone(),
        auth: auth.clone(),
        sync: sync.clone(),
        started_with: settings.clone(),
        manifest_peers: gossip.is_some(),
    };
    let watch = (settings.http.watch_max_total > 0).then(|| {
        let opts = crate::actors::watch::WatchOptions {
            zone: settings.node.zone.clone(),
            max_per_ip: settings.http.watch_max_per_ip,
            max_total: settings.http.watch_max_total,
            idle: Duration::from_secs(settings.http.watch_idle_secs),
            limit_loopback: settings.limits.limit_loopback,
        };
        let st = store.clone();
        actix::Supervisor::start(move |_| crate::actors::watch::WatchActor::new(opts, st))
    });
    let peers = Peers {
        store: store.clone(),
        auth,
        dns: dns.clone(),
        supervisor: supervisor.clone(),
        sync,
        heartbeat,
        responder: Some(responder),
        hooks,
        audit: std::sync::Arc::new(
            audit::AuditLog::open(data_dir)
                .with_context(|| format!("opening the audit log in {}", data_dir.display()))?,
        ),
        watch,
    };
    let (http_server, http_addr) = http::start(http_opts, peers)
        .with_context(|| format!("binding http.listen {}", settings.http.listen))?;
    // The `http` row of the health board: `Started` comes from the server's workers once
    // they serve (see `http::start`), `Stopped` when the server ends.
    let server_handle = http_server.handle();
    actix_rt::spawn(async move {
        let r = http_server.await;
        if let Err(e) = &r {
            tracing::error!(error = %e, "HTTP server failed");
        }
        supervisor.do_send(crate::actors::supervisor::Lifecycle {
            actor: "http",
            event: crate::actors::supervisor::LifecycleEvent::Stopped,
        });
    });
    tracing::info!(dns = ?dns_addrs, dot = ?dot_addrs, http = %http_addr, zone = %settings.node.zone, "dnsmesh node up");
    Ok(NodeHandle {
        dns: dns_addrs,
        dot: dot_addrs,
        http: http_addr,
        store,
        http_server: server_handle,
        dns_actor: dns,
        reloader,
        reload_requests,
    })
}

/// Verify (under the pinned operator key) and publish the configured cluster manifest at
/// `cluster.<name>` with TTL `exp - now`.
async fn publish_cluster_manifest(
    settings: &Settings,
    store: &Addr<StoreActor>,
    clock: &Clock,
) -> anyhow::Result<()> {
    use crate::actors::store::{Apply, Op, Origin};
    let path = &settings.cluster.manifest_file;
    if path.is_empty() {
        return Ok(());
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading cluster.manifest_file {path}"))?;
    let text = text.trim();
    let wire = if text.starts_with('{') {
        serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .and_then(|v| v.get("wire").and_then(|w| w.as_str()).map(str::to_string))
            .with_context(|| format!("cluster.manifest_file {path}: expected {{\"wire\": ...}}"))?
    } else {
        text.to_string()
    };
    let now = clock.now_secs();
    let spk = settings
        .operator_spk()
        .context("cluster.manifest_file needs cluster.operator_spk to verify it")?;
    let m =
        crate::proto::records::cluster::ClusterManifest::parse_and_verify(&wire, &spk, None, now)
            .with_context(|| {
            format!("cluster.manifest_file {path}: does not verify under cluster.operator_spk")
        })?;
    let ttl = m.exp.saturating_sub(now).max(1);
    let op = Op::Add {
        name: format!("cluster.{}", m.cluster_name.to_ascii_lowercase()),
        value: wire,
        ttl,
    };
    store
        .send(Apply { ops: vec![op], max_values: 0, origin: Origin::Local })
        .await
        .context("store unavailable")?
        .context("publishing the cluster manifest")?;
    Ok(())
}

/// Name servers from /etc/resolv.conf (port 53).
fn system_resolvers() -> Vec<SocketAddr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|ip| ip.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}
