//! The DNS actor: the node's authoritative responder.
//!
//! Read path: the actor owns a [`ZoneView`] — its own copy of the zone, fed only by the
//! store actor's [`ZoneDelta`] messages. Plain UDP queries are answered by dedicated
//! threads straight from the view's precomputed response bytes (`dnswire`), never
//! waiting on another actor. DNS over TCP is our own listener (module `tcp`): plain queries
//! are answered from the same view, the rest goes to [`SlowPath`]. Everything else —
//! UPDATE, TSIG-signed messages, unusual shapes — goes to [`SlowPath`], one hickory-server
//! `RequestHandler` shared by the TCP listener and by UDP packets the fast path hands over.
//!
//! Write path: UPDATE ops are checked here (zone, TSIG, scope, caps, claim signatures)
//! and applied all-or-nothing by the store actor; the change then reaches the view as
//! a `ZoneDelta` like any other write.
//!
//! Files by concern: this one holds the actor, its messages, sockets and stats and the
//! slow path's query side; `tsig` (verifying a request's TSIG), `update` (DNS UPDATE),
//! `udp_reply` (slow-path replies on the fast path's UDP socket), `tcp` (DNS over
//! TCP/TLS), `xfr` (zone transfers and NOTIFY).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use arc_swap::ArcSwap;
use hickory_proto::op::{Edns, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::tsig::TsigError;
use hickory_proto::rr::rdata::{A, AAAA, NS, SOA, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, TSigResponseContext, TSigner};
use hickory_proto::serialize::binary::BinEncoder;
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder};

use super::store::{
    Apply, LiveSnapshot, Op, Origin, StoreActor, StoreError, SubscribeLive, ZoneDelta,
};
use super::supervisor::{Lifecycle, LifecycleEvent, SupervisorActor};
use crate::dnswire::udp::{UdpServer, UdpStats, Verdict};
use crate::dnswire::{HostAddrs, NameState, ZoneConfig, ZoneView};
use crate::policy::limits::TokenBuckets;

pub mod image;
mod tcp;
mod tsig;
mod udp_reply;
mod update;
mod xfr;

use tsig::TsigCheck;
use udp_reply::{truncated_stub, UdpReply};

pub use xfr::TransferOptions;

/// Most UDP slow-path messages (UPDATE, TSIG, odd shapes) handled at once.
const SLOW_INFLIGHT: usize = 512;

/// Our UDP payload size advertised in OPT.
const OUR_UDP_PAYLOAD: u16 = 1232;

/// TSIG fudge (seconds) of every key (the auth actor mints keys with 300).
const TSIG_FUDGE: u64 = 300;
/// Replay cache bound overall (about 60 bytes an entry). Per key, the bound is what the
/// per-key bucket lets through in the cache's window (2 × fudge), so only a key sending
/// faster than its bucket allows is ever refused by it.
const REPLAY_TOTAL: usize = 200_000;

/// One TSIG key as the DNS actor needs it.
#[derive(Clone)]
pub struct KeyEntry {
    pub signer: TSigner,
    /// Allowed owner suffixes (lower-case, no trailing dot), `*` within one label.
    pub scope: Vec<String>,
    /// Unix seconds; 0 = never.
    pub expires_at: u64,
}

/// The active TSIG keys, by lower-case key name with trailing dot.
pub type Keyring = HashMap<String, KeyEntry>;

/// Replace the keyring (sent by whoever owns the credentials, on every change).
#[derive(Message)]
#[rtype(result = "()")]
pub struct KeyringChanged(pub Keyring);

/// Test-only fault: the actor stops itself and is restarted by its supervisor.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Fail;

/// Answered once the view holds the store's initial snapshot (start-up readiness).
#[derive(Message)]
#[rtype(result = "()")]
pub struct WhenReady;

/// Ask for counters (for `/metrics` and the status page).
#[derive(Message)]
#[rtype(result = "DnsStats")]
pub struct GetStats;

/// DNS counters.
#[derive(Debug, Clone, Default, serde::Serialize, actix::MessageResponse)]
pub struct DnsStats {
    /// Outcome name → count (fast path and slow path together).
    pub outcomes: Vec<(String, u64)>,
    /// Names in the read view.
    pub names: usize,
    /// SOA serial now.
    pub serial: u32,
    /// Response-time histogram: counts per bucket of `LATENCY_BOUNDS_US` (+ overflow).
    pub latency_buckets: Vec<u64>,
    /// Sum of response times, seconds.
    pub latency_sum_secs: f64,
    /// Datagrams received by each running UDP thread (every listen address's threads, in
    /// order; its length is the number of UDP threads).
    pub udp_thread_queries: Vec<u64>,
    /// Whether the view was read from the image the last graceful stop wrote.
    pub view_from_image: bool,
}

/// What the DNS actor needs from the configuration.
#[derive(Debug, Clone)]
pub struct DnsOptions {
    pub zone: String,
    pub listen: Vec<SocketAddr>,
    pub ttl: u32,
    pub ns: Vec<String>,
    pub soa_rname: String,
    pub apex_addresses: Vec<IpAddr>,
    pub update: bool,
    pub claim_provider: bool,
    pub max_ttl: u64,
    pub max_value_bytes: usize,
    pub max_values_per_name: usize,
    pub claim_rate: f64,
    pub claim_burst: f64,
    /// Per-client-IP bucket for UPDATE messages (loopback exempt unless `limit_loopback`).
    pub update_rate: f64,
    pub update_burst: f64,
    /// Per-TSIG-key bucket for UPDATE records.
    pub key_rate: f64,
    pub key_burst: f64,
    /// Per (key, recipient mailbox) bucket for adds to `slot-*`/`claim-*` names.
    pub mailbox_rate: f64,
    pub mailbox_burst: f64,
    pub limit_loopback: bool,
    /// Idle timeout of a DNS-over-TCP connection.
    pub tcp_timeout: Duration,
    /// Response-rate limiting on the UDP path (`None` = off).
    pub rrl: Option<crate::dnswire::rrl::RrlConfig>,
    /// Largest UDP reply, whatever the client's EDNS payload (`[dns] max_udp_payload`).
    pub max_udp_payload: u16,
    /// Most DNS-over-TCP connections held at once; 0 = from the soft fd limit.
    pub tcp_max_connections: usize,
    /// Most DNS-over-TCP connections per client address (loopback exempt unless
    /// `limit_loopback`).
    pub tcp_max_per_ip: usize,
    /// Total lifetime of a DNS-over-TCP connection.
    pub tcp_lifetime: Duration,
    /// Longest life of an unsigned claim, seconds (`[dns] claim_max_ttl`).
    pub claim_max_ttl: u64,
    /// Unsigned claims only for recipients registered here.
    pub receiver_claims: bool,
    /// Budgets of live unsigned claims.
    pub claim_limits: crate::policy::claims::ClaimLimits,
    /// Per-TSIG-key delete budget (refilled over `max_ttl`).
    pub tombstones_per_key: usize,
    /// DNS-over-TLS listen addresses.
    pub tls_listen: Vec<SocketAddr>,
    /// PEM certificate chain and key for DNS over TLS.
    pub tls: Option<(String, String)>,
    /// Zone transfers and NOTIFY.
    pub transfer: TransferOptions,
    /// `[dnssec]`: sign the zone with these keys (`None` = unsigned).
    pub dnssec: Option<crate::dnswire::DnssecSetup>,
    /// UDP receive threads per listen address (`[dns] udp_threads`; 0 = one per core).
    pub udp_threads: usize,
    /// Where the view image lives (`<data_dir>/view.img`; `None`: never written or read).
    pub image_path: Option<std::path::PathBuf>,
}

/// Slow-path counters by outcome.
#[derive(Default)]
struct SlowCounters {
    by_outcome: parking_lot::Mutex<HashMap<&'static str, u64>>,
    /// Slow-path handling time, as the UDP path's histogram.
    latency: UdpStats,
}

impl SlowCounters {
    fn bump(&self, outcome: &'static str) {
        *self.by_outcome.lock().entry(outcome).or_insert(0) += 1;
    }
}

/// The hickory `RequestHandler` for everything the UDP fast path does not answer.
#[derive(Clone)]
pub struct SlowPath {
    inner: Arc<SlowInner>,
}

struct SlowInner {
    opts: DnsOptions,
    origin: Name,
    view: Arc<ZoneView>,
    store: Addr<StoreActor>,
    keyring: ArcSwap<Keyring>,
    claim_buckets: parking_lot::Mutex<TokenBuckets<String>>,
    ip_buckets: parking_lot::Mutex<TokenBuckets<IpAddr>>,
    key_buckets: parking_lot::Mutex<TokenBuckets<String>>,
    mailbox_buckets: parking_lot::Mutex<TokenBuckets<(String, String)>>,
    counters: SlowCounters,
    /// Live claims, for the unsigned-claim budgets (fed from `ZoneDelta`).
    claims: parking_lot::Mutex<crate::policy::claims::ClaimBook>,
    /// Mailbox hashes of recipients registered here (from the keyring) → the latest
    /// expiry of a key holding it (`u64::MAX` = never).
    registered: ArcSwap<HashMap<String, u64>>,
    /// MACs of recent signed UPDATEs (replay protection).
    replay: parking_lot::Mutex<crate::policy::replay::ReplayCache>,
    /// Per-key delete budget (tombstones).
    delete_buckets: parking_lot::Mutex<TokenBuckets<String>>,
    /// The wall clock (TSIG time, claim expiry); manual in tests.
    clock: crate::clock::Clock,
    /// `[transfer] tsig_keys`, for signed queries from secondaries (empty scope).
    transfer_keys: Keyring,
}

fn rcode_name(r: ResponseCode) -> &'static str {
    match r {
        ResponseCode::NoError => "noerror",
        ResponseCode::NXDomain => "nxdomain",
        ResponseCode::Refused => "refused",
        ResponseCode::NotAuth => "notauth",
        ResponseCode::NotZone => "notzone",
        ResponseCode::FormErr => "formerr",
        ResponseCode::ServFail => "servfail",
        ResponseCode::NotImp => "notimp",
        _ => "other",
    }
}

impl SlowPath {
    fn soa_record(&self) -> Record {
        let o = &self.inner.opts;
        let mname =
            Name::from_str(&format!("{}.", o.ns[0])).unwrap_or_else(|_| self.inner.origin.clone());
        let rname = Name::from_str(&format!("{}.", o.soa_rname))
            .unwrap_or_else(|_| self.inner.origin.clone());
        let soa = SOA::new(mname, rname, self.inner.view.serial(), 3600, 600, 604800, o.ttl);
        Record::from_rdata(self.inner.origin.clone(), o.ttl, RData::SOA(soa))
    }

    /// Send a response with the given sections, TSIG-signed when `ctx` is given.
    async fn respond<R: ResponseHandler>(
        &self,
        request: &Request,
        mut rh: R,
        metadata: Metadata,
        answers: Vec<Record>,
        authority: Vec<Record>,
        ctx: Option<TSigResponseContext>,
    ) -> ResponseInfo {
        let edns = Self::response_edns(request);
        self.inner.counters.bump(rcode_name(metadata.response_code));
        let mut response = MessageResponseBuilder::new(&request.queries, edns.as_ref()).build(
            metadata,
            answers.iter(),
            authority.iter(),
            [].iter(),
            [].iter(),
        );
        if let Some(ctx) = ctx {
            let mut tbs = Vec::with_capacity(512);
            let tbs_resp = MessageResponseBuilder::new(&request.queries, edns.as_ref()).build(
                metadata,
                answers.iter(),
                authority.iter(),
                [].iter(),
                [].iter(),
            );
            if tbs_resp.destructive_emit(&mut BinEncoder::new(&mut tbs)).is_ok() {
                if let Ok(sig) = ctx.sign(&tbs) {
                    response.set_signature(sig);
                }
            }
        }
        match rh.send_response(response).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(error = %e, "dns: sending response failed");
                serve_failed(request)
            }
        }
    }

    fn response_edns(request: &Request) -> Option<Edns> {
        request.edns.as_ref().map(|req| {
            let mut e = Edns::new();
            e.set_max_payload(OUR_UDP_PAYLOAD);
            e.set_version(0);
            // RFC 3225 §3: the DO bit is copied; unknown flags are not.
            e.set_dnssec_ok(req.flags().dnssec_ok);
            e
        })
    }

    async fn handle_query<R: ResponseHandler>(&self, request: &Request, rh: R) -> ResponseInfo {
        let now = self.inner.clock.now_secs();
        let (ctx, tsig_failed) = match self.check_tsig(request, now) {
            TsigCheck::Unsigned => (None, false),
            TsigCheck::Verified { ctx, .. } => (Some(ctx), false),
            TsigCheck::Failed(ctx) => (Some(ctx), true),
        };
        let mut meta = Metadata::response_from_request(&request.metadata);
        if tsig_failed {
            meta.response_code = ResponseCode::NotAuth;
            return self.respond(request, rh, meta, vec![], vec![], ctx).await;
        }
        if let Some(e) = request.edns.as_ref() {
            if e.version() != 0 {
                meta.response_code = ResponseCode::BADVERS;
                return self.respond(request, rh, meta, vec![], vec![], ctx).await;
            }
        }
        let queries = request.queries.queries();
        if queries.len() != 1 {
            meta.response_code = ResponseCode::FormErr;
            return self.respond(request, rh, meta, vec![], vec![], ctx).await;
        }
        let q = &queries[0];
        let owner = q.original().name().clone();
        let qtype = q.query_type();
        if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
            // Transfers run on the TCP/TLS listeners only (module `xfr`).
            meta.response_code = ResponseCode::Refused;
            return self.respond(request, rh, meta, vec![], vec![], ctx).await;
        }
        let lname = q.name().to_string().to_ascii_lowercase();
        let lname = lname.trim_end_matches('.');
        if !self.inner.origin.zone_of(&Name::from(q.name().clone()))
            || !matches!(q.query_class(), DNSClass::IN | DNSClass::ANY)
        {
            meta.response_code = ResponseCode::Refused;
            return self.respond(request, rh, meta, vec![], vec![], ctx).await;
        }
        meta.authoritative = true;
        let ttl = self.inner.opts.ttl;
        let mut answers: Vec<Record> = Vec::new();
        let is_apex = lname == self.inner.opts.zone;
        let addr_owner = is_apex || self.inner.opts.ns.iter().any(|n| n == lname);
        if addr_owner && matches!(qtype, RecordType::A | RecordType::AAAA) {
            for ip in &self.inner.opts.apex_addresses {
                match (ip, qtype) {
                    (IpAddr::V4(v4), RecordType::A) => {
                        answers.push(Record::from_rdata(owner.clone(), ttl, RData::A(A(*v4))))
                    }
                    (IpAddr::V6(v6), RecordType::AAAA) => {
                        answers.push(Record::from_rdata(owner.clone(), ttl, RData::AAAA(AAAA(*v6))))
                    }
                    _ => {}
                }
            }
        }
        if is_apex && qtype == RecordType::SOA {
            let mut soa = self.soa_record();
            soa.name = owner.clone();
            answers.push(soa);
        }
        if is_apex && qtype == RecordType::NS {
            for ns in &self.inner.opts.ns {
                if let Ok(n) = Name::from_str(&format!("{ns}.")) {
                    answers.push(Record::from_rdata(owner.clone(), ttl, RData::NS(NS(n))));
                }
            }
        }
        let state = self.inner.view.txt(lname);
        if matches!(qtype, RecordType::TXT | RecordType::ANY) {
            if let NameState::Txt(values) = &state {
                for v in values {
                    let parts = crate::proto::txt::split(v);
                    answers.push(Record::from_rdata(
                        owner.clone(),
                        ttl,
                        RData::TXT(TXT::from_bytes(parts)),
                    ));
                }
            }
        }
        let exists = addr_owner || matches!(state, NameState::Txt(_) | NameState::EmptyNonTerminal);
        let authority = if answers.is_empty() {
            if !exists {
                meta.response_code = ResponseCode::NXDomain;
            }
            vec![self.soa_record()]
        } else {
            vec![]
        };
        self.respond(request, rh, meta, answers, authority, ctx).await
    }
}

/// A FORMERR reply to an unparseable message that at least has a header.
fn formerr(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 {
        return None;
    }
    let mut out = query[..12].to_vec();
    out[2] = 0x80 | (query[2] & 0x78); // QR, opcode copied
    out[3] = 1; // FORMERR
    out[4..12].fill(0);
    Some(out)
}

fn serve_failed(request: &Request) -> ResponseInfo {
    let mut m = Metadata::response_from_request(&request.metadata);
    m.response_code = ResponseCode::ServFail;
    ResponseInfo::from(hickory_proto::op::Header { metadata: m, counts: Default::default() })
}

#[async_trait::async_trait]
impl RequestHandler for SlowPath {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        rh: R,
    ) -> ResponseInfo {
        let t0 = Instant::now();
        let info = self.dispatch(request, rh).await;
        let us = t0.elapsed().as_micros() as u64;
        let bounds = crate::dnswire::udp::LATENCY_BOUNDS_US;
        let i = bounds.iter().position(|b| us <= *b).unwrap_or(bounds.len());
        let lat = &self.inner.counters.latency;
        lat.latency[i].fetch_add(1, Ordering::Relaxed);
        lat.latency_sum_ns.fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
        info
    }
}

impl SlowPath {
    async fn dispatch<R: ResponseHandler>(&self, request: &Request, rh: R) -> ResponseInfo {
        match request.metadata.op_code {
            OpCode::Update => self.handle_update(request, rh).await,
            OpCode::Query => self.handle_query(request, rh).await,
            _ => {
                let mut meta = Metadata::response_from_request(&request.metadata);
                meta.response_code = ResponseCode::NotImp;
                self.respond(request, rh, meta, vec![], vec![], None).await
            }
        }
    }
}

/// The DNS actor.
pub struct DnsActor {
    rrl: Option<crate::dnswire::rrl::RrlConfig>,
    view: Arc<ZoneView>,
    slow: SlowPath,
    /// Per listen address, one UDP socket per receive thread (`SO_REUSEPORT` group).
    udp: Vec<Vec<UdpSocket>>,
    tcp: Vec<std::net::TcpListener>,
    bound: Vec<SocketAddr>,
    stop: Arc<AtomicBool>,
    threads: Vec<UdpServer>,
    /// Counters of UDP loops that were stopped (restarts), kept so totals never drop.
    retired_stats: Vec<Arc<UdpStats>>,
    server: Option<tokio::task::JoinHandle<()>>,
    supervisor: Option<Addr<SupervisorActor>>,
    store: Addr<StoreActor>,
    seeded_serial: bool,
    ready: bool,
    ready_waiters: Vec<tokio::sync::oneshot::Sender<()>>,
    slow_queue_dropped: Arc<AtomicU64>,
    /// Zone transfers (None when `[transfer]` is not configured).
    xfr: Option<Arc<xfr::XfrShared>>,
    seal_scheduled: bool,
    tls_listeners: Vec<std::net::TcpListener>,
    tls_bound: Vec<SocketAddr>,
    tls_acceptor: Option<tokio_rustls::TlsAcceptor>,
    /// Tells the DNSSEC pass where transfers are (set once the actor starts).
    xfr_hook: XfrHook,
    /// The store's records are being loaded into the view on the loader thread; changes
    /// arriving meanwhile wait in `pending` and are applied after it, in order.
    loading: bool,
    pending: Vec<ZoneDelta>,
    /// Which start's load is current (a restart during a load starts another one; the
    /// older loader's `Loaded` is then ignored).
    load_gen: u64,
    /// The current view was read from the view image (`dmp_dns_view_from_image`).
    from_image: bool,
}

/// The transfer side, for the DNSSEC background pass (set once the actor has started,
/// so `with_clock` can still reach the transfer state alone before).
type XfrHook = Arc<std::sync::OnceLock<std::sync::Weak<xfr::XfrShared>>>;

/// The loader thread is done: every record of the store's [`LiveSnapshot`] is in the view.
#[derive(Message)]
#[rtype(result = "()")]
struct Loaded {
    /// The claim names met (with their values), for the unsigned-claim budgets.
    claims: Vec<(String, Vec<String>)>,
    last_stored_ms: u64,
    load_gen: u64,
    from_image: bool,
}

/// Load every record of `snap` into `view` (on the loader thread): values go from
/// sled's buffers straight into the view's answer bytes, no `String` in between. Two
/// threads: this one reads the store and builds each name's answer bytes, a second one
/// puts them into the view's table. Returns the claim names met, with their values.
fn load_view(
    view: &Arc<ZoneView>,
    snap: &LiveSnapshot,
    now: u64,
    zone: &str,
) -> Vec<(String, Vec<String>)> {
    /// Names per hand-over, and hand-overs in flight (bounds the memory in transit).
    const BATCH: usize = 1024;
    let mut claims = Vec::new();
    // Room for the names and about as many parents (DMP names sit under `mb-…` empty
    // non-terminals); what goes unused is given back after the load.
    view.reserve(snap.rows.saturating_mul(2));
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<crate::dnswire::Prepared>>(4);
    let inserter = {
        let view = view.clone();
        std::thread::Builder::new().name("dns-load-insert".into()).spawn(move || {
            for batch in rx {
                for p in batch {
                    view.set_prepared(p, now);
                }
            }
        })
    };
    let mut batch = Vec::with_capacity(BATCH);
    snap.for_each(|name, values| {
        if crate::policy::update::claim_owner_hash(name, zone).is_some() {
            let values = values.iter().map(|v| String::from_utf8_lossy(v).into_owned());
            claims.push((name.to_string(), values.collect()));
        }
        let Some(p) = view.prepare(name, values, now) else { return };
        match &inserter {
            Ok(_) => {
                batch.push(p);
                if batch.len() >= BATCH {
                    let _ = tx.send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)));
                }
            }
            // No second thread: insert here.
            Err(_) => {
                view.set_prepared(p, now);
            }
        }
    });
    let _ = tx.send(batch);
    drop(tx);
    if let Ok(t) = inserter {
        let _ = t.join();
    }
    view.shrink_to_fit();
    trim_heap();
    claims
}

/// Load the view from the image the last graceful stop wrote, if the store handed over
/// its token (first start after that stop only) and it checks out; then bring the names
/// with rows expired since up to date from the store. `None`: build from the store.
/// The image file is deleted either way (it is never valid again).
fn load_image(
    view: &Arc<ZoneView>,
    snap: &LiveSnapshot,
    path: Option<&std::path::Path>,
    now: u64,
    zone: &str,
) -> Option<Vec<(String, Vec<String>)>> {
    let path = path?;
    let token = snap.image_token;
    let usable = token.is_some() && view.is_empty() && path.exists();
    let loaded = match token {
        Some(token) if usable => match image::read(view, path, &token) {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::warn!(error = %e, "dns: building the view from the store instead");
                None
            }
        },
        _ => None,
    };
    // A half-written image from a stop that did not finish.
    let _ = std::fs::remove_file(path.with_extension("img.tmp"));
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(error = %e, path = %path.display(), "dns: cannot remove the view image")
        }
    }
    let loaded = loaded?;
    let mut expired = 0usize;
    snap.for_each_expired(|name, values| {
        expired += 1;
        view.set_txt_at(name, values, now);
    });
    // Signatures as they were at the stop: replace the aged ones and those of a key
    // that no longer signs before anything is answered.
    let resigned = view.dnssec_pass(now);
    let mut claims = Vec::new();
    view.for_each_txt_labelled(b"claim-", |rel, values| {
        let name = format!("{rel}.{zone}");
        if crate::policy::update::claim_owner_hash(&name, zone).is_some() {
            let values = values.iter().map(|v| String::from_utf8_lossy(v).into_owned());
            claims.push((name, values.collect()));
        }
    });
    tracing::info!(
        names = loaded.names,
        entries = loaded.entries,
        expired,
        resigned,
        "zone view read from its image"
    );
    Some(claims)
}

/// Write the view image (graceful stop, after the store's [`crate::actors::store::Freeze`]:
/// every change it made has reached this actor's mailbox before this message). Replies
/// with the bytes written; an error when there is nothing to write (no path, still
/// loading) or the write failed.
#[derive(Message)]
#[rtype(result = "Result<u64, String>")]
pub struct WriteImage(pub [u8; 16]);

impl Handler<WriteImage> for DnsActor {
    type Result = ResponseFuture<Result<u64, String>>;

    fn handle(&mut self, msg: WriteImage, _: &mut Context<Self>) -> Self::Result {
        let path = self.slow.inner.opts.image_path.clone();
        let view = self.view.clone();
        let ready = !self.loading && self.ready;
        Box::pin(async move {
            let path = path.ok_or("no image path")?;
            if !ready {
                return Err("the view is still loading".to_string());
            }
            // Off the actor's thread: a million names take a moment to write.
            let (tx, rx) = tokio::sync::oneshot::channel();
            std::thread::Builder::new()
                .name("dns-image".into())
                .spawn(move || {
                    let _ = tx.send(image::write(&view, &path, msg.0).map_err(|e| e.to_string()));
                })
                .map_err(|e| e.to_string())?;
            rx.await.map_err(|_| "the image writer stopped".to_string())?
        })
    }
}

/// Hand the allocator's free pages back to the system after the bulk load: glibc keeps
/// what sled's page cache churned through during the scan in its arenas otherwise.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim_heap() {
    // SAFETY: malloc_trim only releases free pages of glibc's own arenas; it takes no
    // pointer and touches no memory Rust owns.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_heap() {}

/// Keep glibc's mmap threshold at 128 KiB for the life of the process. By default it
/// rises (up to 32 MiB) after the first large free, so the view's shard arenas (MiBs
/// each with a million names) then grow inside the heap: every step copies and leaves
/// the old block as a hole (measured: +135 MiB RSS after loading 1M records over HTTP).
/// Above the threshold they are mappings of their own that grow in place (`mremap`).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn fix_mmap_threshold() {
    // SAFETY: mallopt only changes glibc's allocation policy; no pointer is involved.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn fix_mmap_threshold() {}

/// Answers one DNS message as the TCP listener does (plain queries from the view with no
/// size truncation, the rest by the slow path); DNS over HTTPS uses it.
#[derive(Clone)]
pub struct Responder {
    view: Arc<ZoneView>,
    slow: SlowPath,
}

impl Responder {
    /// The response to `msg` from `peer`, or `None` when it deserves none (a response,
    /// shorter than a header).
    pub async fn answer(&self, msg: &[u8], peer: SocketAddr) -> Option<Vec<u8>> {
        self.slow.inner.counters.bump("doh");
        let mut out = Vec::with_capacity(512);
        match self.view.answer(msg, &mut out, true) {
            crate::dnswire::Disposition::Reply { .. } => Some(out),
            crate::dnswire::Disposition::Drop => None,
            crate::dnswire::Disposition::Slow => {
                match Request::from_bytes(msg.to_vec(), peer, Protocol::Tcp) {
                    Ok(req) => {
                        let rh = tcp::TcpReply::default();
                        self.slow
                            .handle_request::<_, hickory_server::net::runtime::TokioTime>(
                                &req,
                                rh.clone(),
                            )
                            .await;
                        let out = rh.slot.lock().take();
                        out
                    }
                    Err(_) => {
                        self.slow.inner.counters.bump("malformed");
                        formerr(msg)
                    }
                }
            }
        }
    }
}

fn tls_acceptor(cert: &str, key: &str) -> std::io::Result<tokio_rustls::TlsAcceptor> {
    let cfg = crate::actors::http::tls_config(cert, key)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{e:#}")))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

/// The background re-signing / key-roll pass of a signed view, on its own thread (a
/// full re-sign of a large zone must not stall the actors); it ends with the view. With
/// transfers on, what it re-signed gets a new serial (secondaries must fetch it).
fn spawn_dnssec_pass(view: &Arc<ZoneView>, clock: crate::clock::Clock, xfr: XfrHook) {
    let Some(every) = view.dnssec_pass_interval() else { return };
    let weak = Arc::downgrade(view);
    let spawned = std::thread::Builder::new().name("dnssec".into()).spawn(move || loop {
        std::thread::sleep(every);
        let Some(view) = weak.upgrade() else { return };
        let now = clock.now_secs();
        let n = view.dnssec_pass(now);
        if n > 0 {
            tracing::debug!(resigned = n, "DNSSEC background pass");
        }
        if let Some(x) = xfr.get().and_then(std::sync::Weak::upgrade) {
            x.after_dnssec_pass(n, now);
        }
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the DNSSEC re-signing thread");
    }
}

fn bind_pair(
    addr: SocketAddr,
    threads: usize,
) -> std::io::Result<(Vec<UdpSocket>, std::net::TcpListener)> {
    // Port 0: take the UDP port the kernel picks and bind TCP on the same number.
    for _ in 0..20 {
        let udp = crate::dnswire::udp::bind_group(addr, threads)?;
        let Some(first) = udp.first() else { break };
        let port = first.local_addr()?.port();
        let mut taddr = addr;
        taddr.set_port(port);
        match std::net::TcpListener::bind(taddr) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if addr.port() != 0 => return Err(e),
            Err(_) => continue,
        }
    }
    Err(std::io::Error::new(std::io::ErrorKind::AddrInUse, "no free UDP+TCP port pair"))
}

impl DnsActor {
    /// Bind every listen address (UDP and TCP on the same port) and build the actor.
    pub fn bind(
        opts: DnsOptions,
        store: Addr<StoreActor>,
        supervisor: Option<Addr<SupervisorActor>>,
    ) -> std::io::Result<DnsActor> {
        let mut udp = Vec::new();
        let mut tcp = Vec::new();
        let mut bound = Vec::new();
        let threads = match opts.udp_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        for a in &opts.listen {
            let (u, t) = bind_pair(*a, threads)?;
            bound.push(t.local_addr()?);
            tracing::info!(listen = %t.local_addr()?, threads = u.len(), "dns: UDP receive threads");
            udp.push(u);
            tcp.push(t);
        }
        let ns: Vec<&str> = opts.ns.iter().map(String::as_str).collect();
        let mut cfg = ZoneConfig::new(&opts.zone, &opts.ns[0], &opts.soa_rname, &ns);
        cfg.ttl = opts.ttl;
        cfg.apex_addrs = opts.apex_addresses.clone();
        cfg.max_udp_payload = opts.max_udp_payload;
        let suffix = format!(".{}", opts.zone);
        cfg.hosts = opts
            .ns
            .iter()
            .filter(|n| n.ends_with(&suffix) && !opts.apex_addresses.is_empty())
            .map(|n| HostAddrs { name: n.clone(), addrs: opts.apex_addresses.clone() })
            .collect();
        let view = match opts.dnssec.clone() {
            Some(setup) => ZoneView::new_signed(&cfg, setup),
            None => ZoneView::new(&cfg),
        };
        let view =
            Arc::new(view.map_err(|e| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string())
            })?);
        let origin = Name::from_str(&format!("{}.", opts.zone))
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        let mut tls_listeners = Vec::new();
        let mut tls_bound = Vec::new();
        for a in &opts.tls_listen {
            let l = std::net::TcpListener::bind(a)?;
            tls_bound.push(l.local_addr()?);
            tls_listeners.push(l);
        }
        let tls_acceptor = match (&opts.tls, opts.tls_listen.is_empty()) {
            (Some((cert, key)), false) => Some(tls_acceptor(cert, key)?),
            _ => None,
        };
        let xfr = opts
            .transfer
            .enabled()
            .then(|| xfr::XfrShared::new(view.clone(), origin.clone(), opts.transfer.clone()));
        // The background pass keeps wall time (key rolls are tested in real time).
        let xfr_hook = XfrHook::default();
        spawn_dnssec_pass(&view, crate::clock::Clock::system(), xfr_hook.clone());
        let slow = SlowPath {
            inner: Arc::new(SlowInner {
                opts: opts.clone(),
                origin,
                view: view.clone(),
                store: store.clone(),
                keyring: ArcSwap::from_pointee(Keyring::new()),
                claim_buckets: parking_lot::Mutex::new(TokenBuckets::new(100_000)),
                ip_buckets: parking_lot::Mutex::new(TokenBuckets::new(100_000)),
                key_buckets: parking_lot::Mutex::new(TokenBuckets::new(100_000)),
                mailbox_buckets: parking_lot::Mutex::new(TokenBuckets::new(100_000)),
                counters: SlowCounters::default(),
                claims: parking_lot::Mutex::new(crate::policy::claims::ClaimBook::new()),
                registered: ArcSwap::from_pointee(Default::default()),
                replay: parking_lot::Mutex::new(crate::policy::replay::ReplayCache::new(
                    TSIG_FUDGE,
                    ((opts.key_burst + opts.key_rate * (2 * TSIG_FUDGE) as f64).ceil() as usize)
                        .saturating_add(64)
                        .min(REPLAY_TOTAL),
                    REPLAY_TOTAL,
                )),
                delete_buckets: parking_lot::Mutex::new(TokenBuckets::new(100_000)),
                clock: crate::clock::Clock::system(),
                transfer_keys: opts
                    .transfer
                    .keys
                    .iter()
                    .filter_map(|k| {
                        let signer = xfr::signer(k)?;
                        Some((k.name.clone(), KeyEntry { signer, scope: vec![], expires_at: 0 }))
                    })
                    .collect(),
            }),
        };
        Ok(DnsActor {
            rrl: opts.rrl,
            view,
            slow,
            udp,
            tcp,
            bound,
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
            retired_stats: Vec::new(),
            server: None,
            supervisor,
            store,
            seeded_serial: false,
            ready: false,
            ready_waiters: Vec::new(),
            slow_queue_dropped: Arc::new(AtomicU64::new(0)),
            xfr,
            seal_scheduled: false,
            tls_listeners,
            tls_bound,
            tls_acceptor,
            xfr_hook,
            loading: false,
            pending: Vec::new(),
            load_gen: 0,
            from_image: false,
        })
    }

    /// Read time from `clock` (TSIG, claim expiry) instead of the system clock. Call
    /// before starting the actor.
    pub fn with_clock(mut self, clock: crate::clock::Clock) -> Self {
        match Arc::get_mut(&mut self.slow.inner) {
            Some(inner) => inner.clock = clock.clone(),
            None => tracing::error!("DnsActor::with_clock after start: clock not changed"),
        }
        if let Some(x) = self.xfr.as_mut() {
            match Arc::get_mut(x) {
                Some(x) => x.clock = clock,
                None => {
                    tracing::error!("DnsActor::with_clock after start: transfer clock not changed")
                }
            }
        }
        self
    }

    /// The DNS-over-TLS addresses actually bound.
    pub fn tls_bound(&self) -> &[SocketAddr] {
        &self.tls_bound
    }

    /// An answerer sharing this actor's view and slow path (for DNS over HTTPS).
    pub fn responder(&self) -> Responder {
        Responder { view: self.view.clone(), slow: self.slow.clone() }
    }

    /// The addresses actually bound (UDP and TCP share each).
    pub fn bound(&self) -> &[SocketAddr] {
        &self.bound
    }

    fn start_listeners(&mut self) {
        let (tx, mut rx) =
            tokio::sync::mpsc::channel::<(Vec<u8>, SocketAddr, usize, Verdict)>(4096);
        // Slow-path replies go out on a clone of the receiving thread's socket (any
        // socket of a SO_REUSEPORT group sends from the same address and port).
        let mut sockets = Vec::new();
        for group in &self.udp {
            // Each thread keeps its own RRL table with its share of the limit: no state
            // shared between threads (`RrlConfig::per_thread` states the bound).
            let rrl = self.rrl.map(|r| r.per_thread(group.len()));
            for u in group {
                let i = sockets.len();
                let Ok(clone) = u.try_clone() else { continue };
                let Ok(reply) = u.try_clone() else { continue };
                sockets.push(Arc::new(reply));
                let tx = tx.clone();
                let dropped = self.slow_queue_dropped.clone();
                let slow = Box::new(move |bytes: Vec<u8>, src: SocketAddr, verdict: Verdict| {
                    if tx.try_send((bytes, src, i, verdict)).is_err() {
                        dropped.fetch_add(1, Ordering::Relaxed);
                    }
                });
                match crate::dnswire::udp::spawn_with_rrl(
                    clone,
                    self.view.clone(),
                    slow,
                    self.stop.clone(),
                    rrl,
                ) {
                    Ok(h) => self.threads.push(h),
                    Err(e) => tracing::error!(error = %e, "dns: cannot start UDP thread"),
                }
            }
        }
        let opts = &self.slow.inner.opts;
        let tcp_cfg = tcp::TcpConfig {
            idle: opts.tcp_timeout,
            lifetime: opts.tcp_lifetime,
            limits: crate::policy::tcp_conns::ConnLimits {
                max_total: match opts.tcp_max_connections {
                    0 => crate::policy::tcp_conns::default_max_total(
                        crate::policy::tcp_conns::soft_fd_limit(),
                    ),
                    n => n,
                },
                max_per_ip: opts.tcp_max_per_ip,
                limit_loopback: opts.limit_loopback,
            },
        };
        let shared =
            tcp::TcpShared::new(tcp_cfg, self.view.clone(), self.slow.clone(), self.xfr.clone());
        // The accept loops (and through them every connection) end with `self.server`.
        let mut tcp_loops = tokio::task::JoinSet::new();
        for t in &self.tcp {
            match t.try_clone().and_then(|t| {
                t.set_nonblocking(true)?;
                tokio::net::TcpListener::from_std(t)
            }) {
                Ok(l) => {
                    tcp_loops.spawn(tcp::accept_loop(l, shared.clone(), None));
                }
                Err(e) => tracing::error!(error = %e, "dns: cannot start TCP listener"),
            }
        }
        for t in &self.tls_listeners {
            match t.try_clone().and_then(|t| {
                t.set_nonblocking(true)?;
                tokio::net::TcpListener::from_std(t)
            }) {
                Ok(l) => {
                    tcp_loops.spawn(tcp::accept_loop(l, shared.clone(), self.tls_acceptor.clone()));
                }
                Err(e) => tracing::error!(error = %e, "dns: cannot start TLS listener"),
            }
        }
        let notifiers = self.xfr.as_ref().map(|x| x.spawn_notifiers());
        let slow = self.slow.clone();
        self.server = Some(tokio::spawn(async move {
            let _tcp_loops = tcp_loops;
            let _notifiers = notifiers;
            // Slow-path UDP messages are handled concurrently (an UPDATE waits for its
            // group commit), at most SLOW_INFLIGHT at a time.
            let permits = Arc::new(tokio::sync::Semaphore::new(SLOW_INFLIGHT));
            let mut tasks = tokio::task::JoinSet::new();
            let max_udp = usize::from(slow.inner.opts.max_udp_payload.max(512));
            while let Some((bytes, src, i, verdict)) = rx.recv().await {
                // RRL dropped the reply: nothing to do (UPDATEs are never metered).
                if verdict == Verdict::Drop {
                    continue;
                }
                while tasks.try_join_next().is_some() {}
                let Some(sock) = sockets.get(i).cloned() else {
                    continue;
                };
                let Ok(permit) = permits.clone().acquire_owned().await else { break };
                let slow = slow.clone();
                tasks.spawn(async move {
                    let _permit = permit;
                    match Request::from_bytes(bytes.clone(), src, Protocol::Udp) {
                        Ok(req) => {
                            let limit = req
                                .edns
                                .as_ref()
                                .map(|e| (e.max_payload().max(512) as usize).min(max_udp))
                                .unwrap_or(512);
                            let rh = UdpReply { socket: sock, dst: src, limit, verdict };
                            slow.handle_request::<_, hickory_server::net::runtime::TokioTime>(
                                &req, rh,
                            )
                            .await;
                        }
                        Err(_) => {
                            slow.inner.counters.bump("malformed");
                            match formerr(&bytes) {
                                Some(r) if verdict != Verdict::Drop => {
                                    let _ = sock.send_to(&r, src);
                                }
                                _ => {}
                            }
                        }
                    }
                });
            }
        }));
    }

    fn stop_listeners(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            self.retired_stats.push(t.stats().clone());
            let _ = t.join();
        }
        if let Some(s) = self.server.take() {
            s.abort();
        }
        self.stop = Arc::new(AtomicBool::new(false));
    }

    fn report(&self, event: LifecycleEvent) {
        if let Some(s) = &self.supervisor {
            s.do_send(Lifecycle { actor: "dns", event });
        }
    }
}

impl Actor for DnsActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(65536);
        if let Some(x) = &self.xfr {
            let _ = self.xfr_hook.set(Arc::downgrade(x));
        }
        self.start_listeners();
        // (Re)subscribe: the store replaces our previous subscription and hands over its
        // records, which the loader thread puts into the view (a restarted actor
        // rebuilds nothing it has not been told). Changes meanwhile wait in `pending`.
        self.loading = true;
        self.load_gen += 1;
        let load_gen = self.load_gen;
        let sub = SubscribeLive { name: "dns", to: ctx.address().recipient() };
        let me = ctx.address();
        let view = self.view.clone();
        let clock = self.slow.inner.clock.clone();
        let zone = self.slow.inner.opts.zone.clone();
        let image_path = self.slow.inner.opts.image_path.clone();
        let store = self.store.clone();
        ctx.spawn(
            async move {
                let Ok(snap) = store.send(sub).await else {
                    tracing::error!("dns: the store did not answer the subscription");
                    return;
                };
                let spawned =
                    std::thread::Builder::new().name("dns-load".into()).spawn(move || {
                        let t0 = Instant::now();
                        let now = clock.now_secs();
                        let image = load_image(&view, &snap, image_path.as_deref(), now, &zone);
                        let from_image = image.is_some();
                        let claims = match image {
                            Some(claims) => claims,
                            None => load_view(&view, &snap, now, &zone),
                        };
                        tracing::info!(
                            names = view.len(),
                            ms = t0.elapsed().as_millis() as u64,
                            "zone view loaded"
                        );
                        me.do_send(Loaded {
                            claims,
                            last_stored_ms: snap.last_stored_ms,
                            load_gen,
                            from_image,
                        });
                    });
                if let Err(e) = spawned {
                    tracing::error!(error = %e, "dns: cannot start the loader thread");
                }
            }
            .into_actor(self),
        );
        self.report(LifecycleEvent::Started);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.stop_listeners();
    }
}

impl Supervised for DnsActor {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.report(LifecycleEvent::Restarting);
        self.pending.clear();
    }
}

impl Handler<Loaded> for DnsActor {
    type Result = ();

    fn handle(&mut self, msg: Loaded, ctx: &mut Context<Self>) {
        if msg.load_gen != self.load_gen {
            return;
        }
        if !self.seeded_serial {
            self.view.set_serial_floor((msg.last_stored_ms / 1000) as u32);
            self.seeded_serial = true;
        }
        self.slow.note_claims(&msg.claims);
        self.from_image = msg.from_image;
        self.loading = false;
        // Changes that arrived while loading, then the snapshot is complete.
        for d in std::mem::take(&mut self.pending) {
            self.apply_delta(d, ctx);
        }
        self.apply_delta(
            ZoneDelta {
                changes: Vec::new(),
                last_stored_ms: msg.last_stored_ms,
                snapshot_complete: true,
                local: false,
            },
            ctx,
        );
    }
}

impl Handler<ZoneDelta> for DnsActor {
    type Result = ();

    fn handle(&mut self, msg: ZoneDelta, ctx: &mut Context<Self>) {
        if self.loading {
            self.pending.push(msg);
            return;
        }
        self.apply_delta(msg, ctx);
    }
}

impl DnsActor {
    /// A change (or the end of the initial load, `snapshot_complete`) into the view.
    fn apply_delta(&mut self, msg: ZoneDelta, ctx: &mut Context<Self>) {
        if !self.seeded_serial {
            self.view.set_serial_floor((msg.last_stored_ms / 1000) as u32);
            self.seeded_serial = true;
        }
        if let Some(x) = self.xfr.clone() {
            if msg.snapshot_complete {
                x.apply(&msg.changes);
                x.start(self.view.serial());
            }
            // Publish what changed, at most every SEAL_INTERVAL (one NOTIFY each).
            if !msg.snapshot_complete && x.apply(&msg.changes) && !self.seal_scheduled {
                self.seal_scheduled = true;
                ctx.run_later(x.seal_delay(), move |act, _| {
                    act.seal_scheduled = false;
                    x.seal_now();
                });
            }
        } else {
            for (name, values) in &msg.changes {
                let refs: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
                self.view.set_txt_at(name, &refs, self.slow.inner.clock.now_secs());
            }
        }
        self.slow.note_claims(&msg.changes);
        if msg.snapshot_complete && !self.ready {
            self.ready = true;
            for w in self.ready_waiters.drain(..) {
                let _ = w.send(());
            }
        }
    }
}

impl Handler<WhenReady> for DnsActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: WhenReady, _: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.ready {
            let _ = tx.send(());
        } else {
            self.ready_waiters.push(tx);
        }
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

impl Handler<KeyringChanged> for DnsActor {
    type Result = ();

    fn handle(&mut self, msg: KeyringChanged, _: &mut Context<Self>) {
        self.slow.note_keyring(&msg.0);
        self.slow.inner.keyring.store(Arc::new(msg.0));
    }
}

impl Handler<Fail> for DnsActor {
    type Result = ();

    fn handle(&mut self, _: Fail, ctx: &mut Context<Self>) {
        tracing::warn!("dns actor: injected failure, stopping for restart");
        ctx.stop();
    }
}

impl Handler<GetStats> for DnsActor {
    type Result = DnsStats;

    fn handle(&mut self, _: GetStats, _: &mut Context<Self>) -> DnsStats {
        let mut outcomes: HashMap<String, u64> = self
            .slow
            .inner
            .counters
            .by_outcome
            .lock()
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        let all: Vec<Arc<UdpStats>> = self
            .threads
            .iter()
            .map(|t| t.stats().clone())
            .chain(self.retired_stats.iter().cloned())
            .collect();
        for s in all {
            let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
            for (k, v) in [
                ("noerror", r(&s.noerror)),
                ("nxdomain", r(&s.nxdomain)),
                ("refused", r(&s.refused)),
                ("other", r(&s.other)),
                ("truncated", r(&s.truncated)),
                ("dropped", r(&s.dropped)),
                ("rrl_dropped", r(&s.rrl_dropped)),
                ("rrl_slipped", r(&s.rrl_slipped)),
            ] {
                *outcomes.entry(k.to_string()).or_insert(0) += v;
            }
        }
        if let Some(x) = &self.xfr {
            let c = &x.counters;
            for (k, v) in [
                ("xfr_axfr", &c.axfr),
                ("xfr_ixfr", &c.ixfr),
                ("xfr_current", &c.current),
                ("xfr_refused", &c.refused),
                ("xfr_published", &c.published),
                ("xfr_nsec_signed", &c.nsec_signed),
                ("xfr_resign_bumps", &c.resign_bumps),
                ("notify_sent", &c.notify_sent),
                ("notify_acked", &c.notify_acked),
            ] {
                outcomes.insert(k.to_string(), v.load(Ordering::Relaxed));
            }
        }
        let mut outcomes: Vec<(String, u64)> = outcomes.into_iter().collect();
        outcomes.sort();
        let mut buckets = vec![0u64; crate::dnswire::udp::LATENCY_BOUNDS_US.len() + 1];
        let mut sum_ns = 0u64;
        let fast: Vec<Arc<UdpStats>> = self
            .threads
            .iter()
            .map(|t| t.stats().clone())
            .chain(self.retired_stats.iter().cloned())
            .collect();
        for s in fast.iter().map(|s| &**s).chain(std::iter::once(&self.slow.inner.counters.latency))
        {
            for (b, c) in buckets.iter_mut().zip(s.latency.iter()) {
                *b += c.load(Ordering::Relaxed);
            }
            sum_ns += s.latency_sum_ns.load(Ordering::Relaxed);
        }
        DnsStats {
            outcomes,
            names: self.view.len(),
            serial: self.view.serial(),
            latency_buckets: buckets,
            latency_sum_secs: sum_ns as f64 / 1e9,
            udp_thread_queries: self
                .threads
                .iter()
                .map(|t| t.stats().queries.load(Ordering::Relaxed))
                .collect(),
            view_from_image: self.from_image,
        }
    }
}
