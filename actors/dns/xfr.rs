//! Zone transfers and NOTIFY, the I/O side (the pure part is `dnswire::xfr`).
//!
//! - The [`Journal`] lives behind one mutex together with every write to the view, so a
//!   transfer's snapshot or version list is exactly the zone at its serial. Changes are
//!   published (sealed into a version with a new serial) at most every
//!   [`SEAL_INTERVAL`] by the DNS actor, and at once when a transfer asks.
//! - Every published serial is written to `data_dir/transfer.serial` with the zone's
//!   digest, and each version is appended to `data_dir/transfer.journal` (rewritten
//!   from the live history when it has grown well past it). After a restart whose zone
//!   matches the record, the serial and the history carry on (IXFR even for a secondary
//!   that was behind); otherwise the serial jumps past anything published before and
//!   the history starts empty.
//! - AXFR/IXFR run only over TCP/TLS, streamed in messages of about [`MESSAGE_TARGET`]
//!   bytes, a few at a time, on the connection's task (never on a UDP thread); at most
//!   [`MAX_CONCURRENT`] transfers at once. Access: a source in `[transfer] allow`, or a
//!   request signed with a `[transfer] tsig_keys` key (then every response message is
//!   signed, RFC 8945 §5.3.1); REFUSED otherwise.
//! - NOTIFY (RFC 1996) goes to each `[transfer] notify` target after each publication,
//!   retried with backoff until the target answers; a newer serial replaces an
//!   unacknowledged one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::rr::rdata::tsig::{TsigAlgorithm, TsigError};
use hickory_proto::rr::{Name, RData, RecordType, TSigResponseContext, TSigner};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use hickory_server::server::Request;
use tokio::io::AsyncWrite;

use crate::dnswire::signed_xfr::{NsecSigCache, SignedCapture};
use crate::dnswire::xfr::{self, Journal, Packer, Plan};
use crate::dnswire::ZoneView;
use crate::policy::transfer::{restart_serial, Cidr, SerialState, TransferKey};

/// Shortest time between two published versions (and so between two NOTIFYs).
pub(super) const SEAL_INTERVAL: Duration = Duration::from_millis(200);
/// Size a transfer message is filled to.
const MESSAGE_TARGET: usize = 16 * 1024;
/// Transfers served at once; more are answered SERVFAIL (the secondary retries).
const MAX_CONCURRENT: usize = 4;
/// Messages encoded between two writes of a transfer.
const BATCH: usize = 8;
/// Added to the zone digest of a signed zone (see [`XfrShared::start`]).
const SIGNED_DIGEST_SALT: u64 = 0x5349_474e_4544_7a6e;

/// What the transfer side needs from the configuration.
#[derive(Debug, Clone, Default)]
pub struct TransferOptions {
    pub allow: Vec<Cidr>,
    pub keys: Vec<TransferKey>,
    pub notify: Vec<SocketAddr>,
    pub journal_max_changes: usize,
    /// Where the published serial is kept (`data_dir/transfer.serial`).
    pub state_path: PathBuf,
}

impl TransferOptions {
    /// Transfers are on when anyone may transfer or be notified.
    pub fn enabled(&self) -> bool {
        !self.allow.is_empty() || !self.keys.is_empty() || !self.notify.is_empty()
    }
}

/// Counters (bounded label set in `/metrics`).
#[derive(Default)]
pub(super) struct XfrCounters {
    pub axfr: AtomicU64,
    pub ixfr: AtomicU64,
    pub current: AtomicU64,
    pub refused: AtomicU64,
    pub notify_sent: AtomicU64,
    pub notify_acked: AtomicU64,
    pub published: AtomicU64,
    /// NSEC signatures made for signed transfers (the rest come from the cache).
    pub nsec_signed: AtomicU64,
    /// Versions published only because the signed zone changed (re-signing, key rolls,
    /// restarts).
    pub resign_bumps: AtomicU64,
}

#[derive(Default)]
struct JournalFile {
    bytes: u64,
    compacted: u64,
}

/// Shared by the DNS actor (writes, sealing), the TCP/TLS handlers (transfers) and the
/// notifier tasks.
pub(super) struct XfrShared {
    view: Arc<ZoneView>,
    /// The zone apex, lower-case, fully qualified.
    origin: Name,
    opts: TransferOptions,
    keys: HashMap<String, TSigner>,
    /// `None` until the initial snapshot is in the view.
    journal: parking_lot::Mutex<Option<Journal>>,
    last_seal: parking_lot::Mutex<Instant>,
    /// Journal file sizes: now, and after the last rewrite.
    file: parking_lot::Mutex<JournalFile>,
    serial_tx: tokio::sync::watch::Sender<u32>,
    slots: Arc<tokio::sync::Semaphore>,
    pub counters: XfrCounters,
    /// Wall time for serials and TSIG (the DNS actor's clock; manual in tests).
    pub(super) clock: crate::clock::Clock,
    /// NSEC signatures of the last signed transfer's chain; created by the first
    /// transfer of a signed zone (never for an unsigned one).
    nsec_cache: Arc<parking_lot::Mutex<Option<NsecSigCache>>>,
    /// A version was published because chain signatures grew old and no transfer has
    /// re-signed them since (one such bump until a secondary transfers).
    stale_bumped: std::sync::atomic::AtomicBool,
}

/// The TSIG signer of an operator transfer key.
pub(super) fn signer(k: &TransferKey) -> Option<TSigner> {
    let alg = match k.algorithm.as_str() {
        "hmac-sha256" => TsigAlgorithm::HmacSha256,
        "hmac-sha384" => TsigAlgorithm::HmacSha384,
        "hmac-sha512" => TsigAlgorithm::HmacSha512,
        _ => return None,
    };
    let name = Name::from_ascii(&k.name).ok()?;
    TSigner::new(k.secret.clone(), alg, name, 300).ok()
}

impl XfrShared {
    pub(super) fn new(view: Arc<ZoneView>, origin: Name, opts: TransferOptions) -> Arc<Self> {
        let keys = opts.keys.iter().filter_map(|k| Some((k.name.clone(), signer(k)?))).collect();
        let (serial_tx, _) = tokio::sync::watch::channel(0);
        Arc::new(XfrShared {
            view,
            origin: origin.to_lowercase(),
            opts,
            keys,
            journal: parking_lot::Mutex::new(None),
            last_seal: parking_lot::Mutex::new(Instant::now()),
            file: parking_lot::Mutex::new(JournalFile::default()),
            serial_tx,
            slots: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT)),
            counters: XfrCounters::default(),
            clock: crate::clock::Clock::system(),
            nsec_cache: Arc::new(parking_lot::Mutex::new(None)),
            stale_bumped: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Apply changed names to the view (recording their old values for the journal).
    /// Returns true when something waits to be published.
    pub(super) fn apply(&self, changes: &[(String, Vec<String>)]) -> bool {
        let mut g = self.journal.lock();
        for (name, values) in changes {
            if let Some(j) = g.as_mut() {
                j.note(&self.view, name);
            }
            let refs: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
            self.view.set_txt_at(name, &refs, self.clock.now_secs());
        }
        g.as_ref().is_some_and(|j| j.has_pending())
    }

    /// The initial snapshot is in the view: choose the serial (see module docs) and
    /// start the journal there.
    pub(super) fn start(&self, floor: u32) {
        let mut g = self.journal.lock();
        if g.is_some() {
            return;
        }
        let mut digest = xfr::zone_digest(&self.view);
        if self.view.is_signed() {
            // The same records signed and unsigned are different zones to a secondary
            // (RRSIGs, NSEC chain): switching `[dnssec] enabled` must not continue the
            // serial and history (a secondary would keep the other zone's records).
            digest = digest.wrapping_add(SIGNED_DIGEST_SALT);
        }
        let saved = std::fs::read_to_string(&self.opts.state_path)
            .ok()
            .and_then(|t| SerialState::decode(&t));
        let floor =
            if xfr::serial_gt(self.view.serial(), floor) { self.view.serial() } else { floor };
        let serial = restart_serial(saved, digest, floor);
        tracing::info!(
            serial,
            continued = saved.is_some_and(|s| s.serial == serial),
            "zone transfer journal starts"
        );
        let continued = saved.is_some_and(|s| s.serial == serial);
        let max = self.opts.journal_max_changes.max(1);
        // The same zone as last published: its history (IXFR for lagging secondaries)
        // is read back; otherwise the old history describes another zone and goes.
        let journal = if continued {
            let bytes = std::fs::read(self.journal_path()).unwrap_or_default();
            Journal::restore(serial, digest, max, xfr::Version::decode_all(&bytes))
        } else {
            Journal::new(serial, digest, max)
        };
        tracing::info!(versions = journal.versions(), "zone transfer history restored");
        self.rewrite_journal(&journal);
        self.view.set_manual_serial();
        self.view.set_serial(serial);
        self.persist(SerialState { serial, digest });
        *g = Some(journal);
        let _ = self.serial_tx.send(serial);
        // Signatures are not persisted: the signed zone of this run differs from the one
        // published under the kept serial, so it gets a serial of its own.
        if continued && self.view.is_signed() {
            if let Some(j) = g.as_mut() {
                j.bump(self.clock.now_secs() as u32);
                self.counters.resign_bumps.fetch_add(1, Ordering::Relaxed);
                self.published(j);
            }
        }
    }

    /// After a background DNSSEC pass that re-signed `resigned` RRsets (or rolled keys)
    /// at `now`: publish a new serial so secondaries fetch the new signatures; also when
    /// NSEC signatures sent to secondaries are past half their validity.
    pub(super) fn after_dnssec_pass(&self, resigned: usize, now: u64) {
        let stale = {
            let c = self.nsec_cache.lock();
            let validity = self.view.signer().map(|s| s.validity()).unwrap_or(u64::MAX);
            c.as_ref().is_some_and(|c| c.stale(now, validity))
        };
        let stale = stale && !self.stale_bumped.swap(true, Ordering::Relaxed);
        if resigned == 0 && !stale {
            return;
        }
        let mut g = self.journal.lock();
        let Some(j) = g.as_mut() else { return };
        j.bump(now as u32);
        self.counters.resign_bumps.fetch_add(1, Ordering::Relaxed);
        self.published(j);
    }

    fn journal_path(&self) -> PathBuf {
        self.opts.state_path.with_extension("journal")
    }

    /// Write the whole history to the journal file (at start, and when appends have let
    /// it grow well past the history it holds).
    fn rewrite_journal(&self, j: &Journal) {
        let mut buf = Vec::new();
        for v in j.history() {
            v.encode(&mut buf);
        }
        let path = self.journal_path();
        let tmp = path.with_extension("journal.tmp");
        let res = std::fs::write(&tmp, &buf).and_then(|_| std::fs::rename(&tmp, &path));
        let mut f = self.file.lock();
        f.bytes = buf.len() as u64;
        f.compacted = f.bytes;
        if let Err(e) = res {
            tracing::warn!(error = %e, path = %path.display(), "cannot write the transfer journal");
        }
    }

    /// Append the newest version to the journal file.
    fn append_journal(&self, j: &Journal) {
        use std::io::Write;
        let Some(v) = j.latest() else { return };
        let mut buf = Vec::new();
        v.encode(&mut buf);
        let grown = {
            let mut f = self.file.lock();
            f.bytes += buf.len() as u64;
            f.bytes > 2 * f.compacted + (4 << 20)
        };
        if grown {
            return self.rewrite_journal(j);
        }
        let res = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.journal_path())
            .and_then(|mut file| file.write_all(&buf));
        if let Err(e) = res {
            tracing::warn!(error = %e, "cannot append to the transfer journal");
        }
    }

    fn persist(&self, st: SerialState) {
        let tmp = self.opts.state_path.with_extension("tmp");
        let res = std::fs::write(&tmp, st.encode())
            .and_then(|_| std::fs::rename(&tmp, &self.opts.state_path));
        if let Err(e) = res {
            tracing::warn!(error = %e, path = %self.opts.state_path.display(), "cannot record the zone serial");
        }
    }

    /// Publish pending changes now (the DNS actor's timer).
    pub(super) fn seal_now(&self) {
        let mut g = self.journal.lock();
        let Some(j) = g.as_mut() else { return };
        if j.seal(&self.view, self.clock.now_secs() as u32).is_some() {
            self.published(j);
        }
    }

    /// A version was just sealed: serve it, record it, announce it.
    fn published(&self, j: &Journal) {
        let (serial, digest) = (j.serial(), j.digest());
        self.view.set_serial(serial);
        self.append_journal(j);
        self.persist(SerialState { serial, digest });
        *self.last_seal.lock() = Instant::now();
        self.counters.published.fetch_add(1, Ordering::Relaxed);
        let _ = self.serial_tx.send(serial);
    }

    /// How long the actor should wait before publishing what is pending.
    pub(super) fn seal_delay(&self) -> Duration {
        let next = *self.last_seal.lock() + SEAL_INTERVAL;
        next.saturating_duration_since(Instant::now()).max(Duration::from_millis(5))
    }

    /// Start one NOTIFY task per configured secondary (they end with the returned set).
    pub(super) fn spawn_notifiers(self: &Arc<Self>) -> tokio::task::JoinSet<()> {
        let mut set = tokio::task::JoinSet::new();
        for target in self.opts.notify.clone() {
            let me = self.clone();
            // Subscribed now, so a serial published before the task first runs counts.
            let rx = self.serial_tx.subscribe();
            set.spawn(async move { me.notify_loop(target, rx).await });
        }
        set
    }

    fn notify_message(&self, id: u16, serial: u32) -> Vec<u8> {
        let origin = self.view.origin_wire();
        let mut m = Vec::with_capacity(128);
        m.extend_from_slice(&id.to_be_bytes());
        // Opcode NOTIFY (4), AA; one question (SOA), the new SOA in the answer.
        m.extend_from_slice(&[0x24, 0x00, 0, 1, 0, 1, 0, 0, 0, 0]);
        m.extend_from_slice(origin);
        m.extend_from_slice(&[0, 6, 0, 1]);
        m.extend_from_slice(&xfr::soa_rr(&self.view, serial));
        m
    }

    async fn notify_loop(
        self: Arc<Self>,
        target: SocketAddr,
        mut rx: tokio::sync::watch::Receiver<u32>,
    ) {
        let bind: SocketAddr = if target.is_ipv4() {
            "0.0.0.0:0".parse().expect("literal")
        } else {
            "[::]:0".parse().expect("literal")
        };
        let sock = match tokio::net::UdpSocket::bind(bind).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, %target, "notify: cannot bind a socket");
                return;
            }
        };
        if let Err(e) = sock.connect(target).await {
            tracing::error!(error = %e, %target, "notify: cannot reach target");
            return;
        }
        let mut buf = [0u8; 1500];
        loop {
            if rx.changed().await.is_err() {
                return;
            }
            let mut serial = *rx.borrow_and_update();
            let mut backoff = Duration::from_millis(500);
            let mut id: u16 = rand_id();
            'retry: loop {
                let msg = self.notify_message(id, serial);
                let _ = sock.send(&msg).await;
                self.counters.notify_sent.fetch_add(1, Ordering::Relaxed);
                let deadline = tokio::time::Instant::now() + backoff;
                loop {
                    tokio::select! {
                        r = sock.recv(&mut buf) => {
                            let Ok(n) = r else { continue };
                            let reply = &buf[..n];
                            // Our ID, QR set, opcode NOTIFY: acknowledged (whatever rcode).
                            if n >= 12 && reply[..2] == id.to_be_bytes() && reply[2] & 0x80 != 0
                                && (reply[2] >> 3) & 0x0F == 4
                            {
                                self.counters.notify_acked.fetch_add(1, Ordering::Relaxed);
                                if reply[3] & 0x0F != 0 {
                                    tracing::warn!(%target, rcode = reply[3] & 0x0F, "notify: refused by secondary");
                                }
                                break 'retry;
                            }
                        }
                        _ = tokio::time::sleep_until(deadline) => {
                            backoff = (backoff * 2).min(Duration::from_secs(30));
                            continue 'retry;
                        }
                        r = rx.changed() => {
                            if r.is_err() { return; }
                            serial = *rx.borrow_and_update();
                            backoff = Duration::from_millis(500);
                            id = rand_id();
                            continue 'retry;
                        }
                    }
                }
            }
        }
    }
}

fn rand_id() -> u16 {
    let mut b = [0u8; 2];
    let _ = getrandom_fill(&mut b);
    u16::from_be_bytes(b)
}

fn getrandom_fill(b: &mut [u8]) -> Result<(), ()> {
    use rand_core::RngCore;
    rand_core::OsRng.try_fill_bytes(b).map_err(|_| ())
}

/// A raw error reply: header + question of `query` with `rcode`, AA clear.
fn error_reply(query: &[u8], qend: usize, rcode: u8) -> Vec<u8> {
    let mut out = query[..qend.min(query.len())].to_vec();
    out[2] = 0x80 | (query[2] & 0x79); // QR, opcode and RD copied
    out[3] = rcode;
    out[4..6].copy_from_slice(&1u16.to_be_bytes());
    out[6..12].fill(0);
    out
}

/// Append an encoded TSIG record to `msg`, bumping ARCOUNT.
fn append_tsig(msg: &mut Vec<u8>, rr: &hickory_proto::rr::Record<hickory_proto::rr::rdata::TSIG>) {
    let mut buf = Vec::with_capacity(128);
    if rr.emit(&mut BinEncoder::new(&mut buf)).is_ok() {
        msg.extend_from_slice(&buf);
        let ar = u16::from_be_bytes([msg[10], msg[11]]).saturating_add(1);
        msg[10..12].copy_from_slice(&ar.to_be_bytes());
    }
}

/// Signs the messages of one transfer (RFC 8945 §5.3.1): the first over the request MAC
/// and the full TSIG variables, each later one over the previous MAC and the timers.
struct StreamSigner {
    signer: TSigner,
    prev_mac: Vec<u8>,
    first: bool,
    clock: crate::clock::Clock,
}

impl StreamSigner {
    fn sign(&mut self, msg: &mut Vec<u8>) {
        let now = self.clock.now_secs();
        let id = u16::from_be_bytes([msg[0], msg[1]]);
        if self.first {
            self.first = false;
            let ctx = TSigResponseContext::new(
                id,
                now,
                self.signer.clone(),
                std::mem::take(&mut self.prev_mac),
                None,
            );
            if let Ok(rr) = ctx.sign(msg) {
                self.prev_mac = rr.data.mac.clone();
                append_tsig(msg, &rr);
            }
            return;
        }
        let fudge = self.signer.fudge();
        let mut tbs = Vec::with_capacity(msg.len() + 80);
        tbs.extend_from_slice(&(self.prev_mac.len() as u16).to_be_bytes());
        tbs.extend_from_slice(&self.prev_mac);
        tbs.extend_from_slice(msg);
        tbs.extend_from_slice(&((now >> 32) as u16).to_be_bytes());
        tbs.extend_from_slice(&(now as u32).to_be_bytes());
        tbs.extend_from_slice(&fudge.to_be_bytes());
        let Ok(mac) = self.signer.sign(&tbs) else { return };
        let tsig = hickory_proto::rr::rdata::TSIG::new(
            self.signer.algorithm().clone(),
            now,
            fudge,
            mac.clone(),
            id,
            None,
            Vec::new(),
        );
        let rr = hickory_proto::rr::rdata::tsig::make_tsig_record(
            self.signer.signer_name().clone(),
            tsig,
        );
        append_tsig(msg, &rr);
        self.prev_mac = mac;
    }
}

/// What the connection handler should do with a transfer request.
pub(super) enum Answer {
    /// One message (an error, or an IXFR answered with the SOA alone over UDP).
    One(Vec<u8>),
    /// Stream these RRs.
    Stream(Box<Transfer>),
}

/// What a transfer sends.
enum Body {
    /// An unsigned zone (or any IXFR/SOA-only answer).
    Plan(Plan),
    /// A signed zone, AXFR-style: its NSEC chain is signed when streaming starts.
    Signed(SignedCapture),
}

/// A transfer ready to stream.
pub(super) struct Transfer {
    body: Body,
    id: u16,
    rd: bool,
    question: Vec<u8>,
    signer: Option<StreamSigner>,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

/// True when `msg` is a plain-opcode query for AXFR or IXFR (cheap check on raw bytes).
pub(super) fn is_transfer(req: &Request) -> bool {
    req.metadata.op_code == hickory_proto::op::OpCode::Query
        && req.queries.queries().len() == 1
        && matches!(req.queries.queries()[0].query_type(), RecordType::AXFR | RecordType::IXFR)
}

impl XfrShared {
    /// Check and plan an AXFR/IXFR request (`raw` its bytes). `stream` is false for
    /// transports that cannot carry a transfer (UDP, DoH): IXFR then gets the current
    /// SOA alone when the client is current or ahead, and everything else REFUSED.
    pub(super) fn request(
        self: &Arc<Self>,
        raw: &[u8],
        req: &Request,
        peer: SocketAddr,
        stream: bool,
    ) -> Answer {
        let q = &req.queries.queries()[0];
        let qname_len = q.name().to_bytes().map(|b| b.len()).unwrap_or(0);
        let qend = 12 + qname_len + 4;
        let now = self.clock.now_secs();
        let mut signer = None;
        if let Some(sig) = req.signature.as_ref() {
            let key_name = sig.name.to_lowercase().to_string();
            let Some(s) = self.keys.get(&key_name) else {
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                let mut out = error_reply(raw, qend, 9);
                if let Ok(rr) =
                    TSigResponseContext::unknown_key(req.metadata.id, now, sig.name.clone())
                        .sign(&out)
                {
                    append_tsig(&mut out, &rr);
                }
                return Answer::One(out);
            };
            match s.verify_message_byte(req.as_slice(), None, true) {
                Ok((mac, _, range)) if range.contains(&now) => {
                    signer = Some(StreamSigner {
                        signer: s.clone(),
                        prev_mac: mac,
                        first: true,
                        clock: self.clock.clone(),
                    });
                }
                Ok((mac, _, _)) => {
                    self.counters.refused.fetch_add(1, Ordering::Relaxed);
                    let mut out = error_reply(raw, qend, 9);
                    let ctx = TSigResponseContext::new(
                        req.metadata.id,
                        now,
                        s.clone(),
                        mac,
                        Some(TsigError::BadTime),
                    );
                    if let Ok(rr) = ctx.sign(&out) {
                        append_tsig(&mut out, &rr);
                    }
                    return Answer::One(out);
                }
                Err(_) => {
                    self.counters.refused.fetch_add(1, Ordering::Relaxed);
                    let mut out = error_reply(raw, qend, 9);
                    if let Ok(rr) =
                        TSigResponseContext::bad_signature(req.metadata.id, now, s.clone())
                            .sign(&out)
                    {
                        append_tsig(&mut out, &rr);
                    }
                    return Answer::One(out);
                }
            }
        }
        // From here on, errors to a verified request are signed with its key.
        let refuse = |code: u8, signer: Option<StreamSigner>| {
            let mut out = error_reply(raw, qend, code);
            if let Some(mut s) = signer {
                s.sign(&mut out);
            }
            Answer::One(out)
        };
        if q.query_class() != hickory_proto::rr::DNSClass::IN
            || q.name().to_lowercase() != self.origin
        {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
            return refuse(9, signer); // NOTAUTH: not our zone
        }
        if signer.is_none() && !self.opts.allow.iter().any(|c| c.contains(peer.ip())) {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
            return refuse(5, None);
        }
        let ixfr_from = if q.query_type() == RecordType::IXFR {
            let soa = req.authorities.iter().find_map(|r| match &r.data {
                RData::SOA(s) => Some(s.serial),
                _ => None,
            });
            match soa {
                Some(s) => Some(s),
                None => return refuse(1, signer), // FORMERR: IXFR needs the client's SOA
            }
        } else {
            None
        };
        if !stream && ixfr_from.is_none() {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
            return refuse(5, signer);
        }
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            return refuse(2, signer);
        };
        let body = if self.view.is_signed() {
            // A signed zone goes whole (AXFR, or IXFR answered AXFR-style as RFC 1995 §4
            // allows): its RRSIGs and NSEC chain change with every version.
            let mut g = self.journal.lock();
            let Some(j) = g.as_mut() else { return refuse(2, signer) };
            if j.seal(&self.view, now as u32).is_some() {
                self.published(j);
            }
            let serial = j.serial();
            let current = ixfr_from.is_some_and(|f| f == serial || xfr::serial_gt(f, serial));
            match self.view.signed_capture(serial, now) {
                Some(cap) if stream && !current => Body::Signed(cap),
                _ => Body::Plan(Plan::UpToDate { serial }),
            }
        } else {
            let mut g = self.journal.lock();
            let Some(j) = g.as_mut() else { return refuse(2, signer) };
            let (mut plan, sealed) = j.plan(&self.view, ixfr_from, now as u32);
            if sealed {
                self.published(j);
            }
            if !stream && !matches!(plan, Plan::UpToDate { .. }) {
                // RFC 1995 §2: over UDP, the current SOA tells the client to use TCP.
                plan = Plan::UpToDate { serial: plan.serial() };
            }
            Body::Plan(plan)
        };
        let (kind, serial) = match &body {
            Body::Plan(p) => (p.kind(), p.serial()),
            Body::Signed(c) => ("axfr", c.serial()),
        };
        match kind {
            "current" => &self.counters.current,
            "ixfr" => &self.counters.ixfr,
            _ => &self.counters.axfr,
        }
        .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%peer, kind, serial, signed = self.view.is_signed(), "zone transfer");
        Answer::Stream(Box::new(Transfer {
            body,
            id: req.metadata.id,
            rd: req.metadata.recursion_desired,
            question: raw.get(12..qend).unwrap_or_default().to_vec(),
            signer,
            _slot: slot,
        }))
    }

    /// Stream a transfer on `w` as complete, framed messages, a batch at a time, each
    /// write bounded by the connection's idle timeout and lifetime. False when the
    /// connection must close.
    pub(super) async fn stream<W: AsyncWrite + Unpin + Send>(
        &self,
        t: Transfer,
        w: &mut W,
        kill: &tokio::sync::Notify,
        idle: Duration,
        end: Instant,
    ) -> bool {
        use tokio::io::AsyncWriteExt;
        let Transfer { body, id, rd, question, mut signer, _slot } = t;
        let mut packer = Packer::new(id, rd, &question, MESSAGE_TARGET);
        let (plan, zone) = match body {
            Body::Plan(p) => (Some(p), None),
            Body::Signed(cap) => {
                // Sorting the names and signing the changed NSECs is CPU work: off the
                // runtime's thread.
                let (view, cache) = (self.view.clone(), self.nsec_cache.clone());
                let now = self.clock.now_secs();
                let t0 = Instant::now();
                let built = tokio::task::spawn_blocking(move || {
                    let mut c = cache.lock();
                    let c = c.get_or_insert_with(NsecSigCache::default);
                    (view.sign_chain(cap, c, now), c.approx_bytes())
                })
                .await;
                let Ok((zone, cache_bytes)) = built else { return false };
                self.stale_bumped.store(false, Ordering::Relaxed);
                self.counters.nsec_signed.fetch_add(zone.signed as u64, Ordering::Relaxed);
                tracing::debug!(
                    names = zone.chain_len(),
                    signed = zone.signed,
                    reused = zone.reused,
                    cache_bytes,
                    took_ms = t0.elapsed().as_millis() as u64,
                    "signed zone transfer: NSEC chain ready"
                );
                (None, Some(zone))
            }
        };
        let mut rrs: Box<dyn Iterator<Item = Vec<u8>> + Send + '_> = match (&plan, &zone) {
            (Some(p), _) => p.rrs(&self.view),
            (None, Some(z)) => Box::new(z.rrs(&self.view)),
            (None, None) => return false,
        };
        let mut frame = Vec::with_capacity(MESSAGE_TARGET + 256);
        loop {
            let mut done = true;
            for rr in rrs.by_ref() {
                packer.push(&rr);
                if packer.ready_len() >= BATCH {
                    done = false;
                    break;
                }
            }
            let mut msgs = if done {
                std::mem::replace(&mut packer, Packer::new(id, rd, &question, MESSAGE_TARGET)).end()
            } else {
                packer.take_ready()
            };
            frame.clear();
            for m in &mut msgs {
                if let Some(s) = signer.as_mut() {
                    s.sign(m);
                }
                let Ok(len) = u16::try_from(m.len()) else { return false };
                frame.extend_from_slice(&len.to_be_bytes());
                frame.extend_from_slice(m);
            }
            let deadline = (Instant::now() + idle).min(end);
            if super::tcp::bounded(kill, deadline, w.write_all(&frame)).await.is_none() {
                return false;
            }
            if done {
                return true;
            }
            tokio::task::yield_now().await;
        }
    }
}
