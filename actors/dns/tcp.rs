//! DNS over TCP: our own accept loop and connection handler (hickory's listener had no
//! connection caps, spun on EMFILE and kept malformed connections until the idle timeout).
//!
//! - Admission ([`ConnTable`]): a per-client cap (`[dns] tcp_max_per_ip`; loopback exempt
//!   unless `[limits] limit_loopback`) refuses a client's extra connections at once; at
//!   the global cap (`[dns] tcp_max_connections`, default from the soft fd limit) the
//!   connection idle the longest is closed to make room.
//! - Each connection has an idle timeout (`tcp_timeout_secs`, per read and per write) and a
//!   total lifetime (`tcp_lifetime_secs`).
//! - A frame shorter than a DNS header (length 0 or 1 included), a response (QR=1) or a
//!   message that does not parse closes the connection at once (after a FORMERR for the
//!   last, when it has a header).
//! - Plain queries are answered by [`ZoneView::answer`] with the TCP size limit, so UDP and
//!   TCP give the same bytes; everything else (UPDATE, TSIG, odd shapes) goes to the
//!   [`SlowPath`] handler, up to [`PIPELINE`] messages of a connection at once, each reply
//!   sent when ready (pipelined UPDATEs share group commits; replies may be out of order,
//!   RFC 7766 §7).
//! - `accept` failing for lack of resources (EMFILE, ENFILE, ENOBUFS, ENOMEM) backs off
//!   for [`ACCEPT_BACKOFF`] instead of spinning.
//! - DNS over TLS (RFC 7858) is the same handler behind a TLS handshake (bounded by the
//!   idle timeout), with the same table, caps and timeouts.
//! - AXFR/IXFR requests go to the transfer module (`xfr`), which streams the answer on
//!   the connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::rr::Record;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Notify;

use super::xfr::{self, XfrShared};
use super::{formerr, truncated_stub, SlowPath};
use crate::dnswire::{rcode, Disposition, ZoneView};
use crate::policy::tcp_conns::{Admit, ConnLimits, ConnTable};

/// Pause after `accept` fails for lack of file descriptors or memory.
pub(super) const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Shortest DNS message: the header.
const HEADER: usize = 12;

/// Limits of the TCP listener.
#[derive(Debug, Clone, Copy)]
pub(super) struct TcpConfig {
    pub idle: Duration,
    pub lifetime: Duration,
    pub limits: ConnLimits,
}

/// State shared by the accept loops of every listen address.
pub(super) struct TcpShared {
    cfg: TcpConfig,
    table: parking_lot::Mutex<ConnTable<Arc<Notify>>>,
    epoch: Instant,
    view: Arc<ZoneView>,
    slow: SlowPath,
    xfr: Option<Arc<XfrShared>>,
}

impl TcpShared {
    pub(super) fn new(
        cfg: TcpConfig,
        view: Arc<ZoneView>,
        slow: SlowPath,
        xfr: Option<Arc<XfrShared>>,
    ) -> Arc<Self> {
        Arc::new(TcpShared {
            cfg,
            table: parking_lot::Mutex::new(ConnTable::new(cfg.limits)),
            epoch: Instant::now(),
            view,
            slow,
            xfr,
        })
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn bump(&self, outcome: &'static str) {
        self.slow.inner.counters.bump(outcome);
    }
}

/// Releases a connection's slot in the table however its task ends (abort included).
struct Slot {
    shared: Arc<TcpShared>,
    id: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.shared.table.lock().release(self.id);
    }
}

fn out_of_resources(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
}

/// Accept connections on `listener` until the task is aborted; the connections it spawned
/// end with it. With `tls`, each connection is DNS over TLS.
pub(super) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<TcpShared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let mut conns = tokio::task::JoinSet::new();
    let mut warned: Option<Instant> = None;
    loop {
        while conns.try_join_next().is_some() {}
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) if out_of_resources(&e) => {
                if warned.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                    tracing::warn!(error = %e, "dns tcp: accept failed, backing off");
                    warned = Some(Instant::now());
                }
                shared.bump("tcp_accept_backoff");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
            Err(e) => {
                // Per-connection failures (ECONNABORTED and the like).
                tracing::debug!(error = %e, "dns tcp: accept failed");
                continue;
            }
        };
        let clock = Arc::new(AtomicU64::new(shared.now_ms()));
        let kill = Arc::new(Notify::new());
        let admit = shared.table.lock().admit(peer.ip(), clock.clone(), kill.clone());
        match admit {
            Admit::PerClientFull => {
                shared.bump("tcp_refused");
                drop(stream);
            }
            Admit::Yes { id, evicted } => {
                if let Some(victim) = evicted {
                    shared.bump("tcp_evicted");
                    victim.notify_one();
                }
                let slot = Slot { shared: shared.clone(), id };
                let tls = tls.clone();
                conns.spawn(async move {
                    let _ = stream.set_nodelay(true);
                    let end = Instant::now() + slot.shared.cfg.lifetime;
                    match tls {
                        None => serve(stream, peer, &slot.shared, &clock, &kill, end).await,
                        Some(acceptor) => {
                            let deadline = (Instant::now() + slot.shared.cfg.idle).min(end);
                            match bounded(&kill, deadline, acceptor.accept(stream)).await {
                                Some(tls) => {
                                    clock.store(slot.shared.now_ms(), Ordering::Relaxed);
                                    serve(tls, peer, &slot.shared, &clock, &kill, end).await
                                }
                                None => slot.shared.bump("tls_handshake_failed"),
                            }
                        }
                    }
                    drop(slot);
                });
            }
        }
    }
}

/// Run `io` until `deadline`; `None` when it failed, timed out or the connection was
/// evicted (the caller closes).
pub(super) async fn bounded<T>(
    kill: &Notify,
    deadline: Instant,
    io: impl std::future::Future<Output = std::io::Result<T>>,
) -> Option<T> {
    tokio::select! {
        _ = kill.notified() => None,
        r = tokio::time::timeout_at(deadline.into(), io) => r.ok()?.ok(),
    }
}

fn rcode_outcome(code: u16) -> &'static str {
    match code {
        rcode::NOERROR => "noerror",
        rcode::NXDOMAIN => "nxdomain",
        rcode::REFUSED => "refused",
        _ => "other",
    }
}

/// Most messages of one connection in the slow path at once (UPDATEs waiting for their
/// group commit): past it the connection is not read until one is answered.
pub(super) const PIPELINE: usize = 32;

/// A slow-path message being handled: resolves to its reply (`None`: no reply).
type Pending = std::pin::Pin<Box<dyn std::future::Future<Output = Option<Vec<u8>>> + Send>>;

/// Append one reply with its length prefix to `wbuf`; false when it cannot be framed.
fn push_reply(wbuf: &mut Vec<u8>, reply: &[u8]) -> bool {
    let Ok(rlen) = u16::try_from(reply.len()) else { return false };
    wbuf.extend_from_slice(&rlen.to_be_bytes());
    wbuf.extend_from_slice(reply);
    true
}

/// Write out `wbuf` (every reply gathered since the last write, in one syscall where the
/// socket takes it); false when the connection must close.
async fn flush<S: AsyncWrite + Unpin>(
    stream: &mut S,
    wbuf: &mut Vec<u8>,
    kill: &Notify,
    deadline: Instant,
) -> bool {
    if wbuf.is_empty() {
        return true;
    }
    let ok = bounded(kill, deadline, stream.write_all(wbuf)).await.is_some();
    wbuf.clear();
    ok
}

/// Wait for every reply in flight and gather it into `wbuf`; false when one cannot be framed.
async fn drain(
    inflight: &mut futures_util::stream::FuturesUnordered<Pending>,
    wbuf: &mut Vec<u8>,
) -> bool {
    use futures_util::StreamExt as _;
    while let Some(r) = inflight.next().await {
        if let Some(r) = r {
            if !push_reply(wbuf, &r) {
                return false;
            }
        }
    }
    true
}

/// Serve one connection. Messages are read as they come (RFC 7766 §6.2.1.1 pipelining):
/// plain queries are answered at once from the view, in order; slow-path messages
/// (UPDATE above all, which waits for its group commit) are handled concurrently, up to
/// [`PIPELINE`] per connection, and each reply is sent when it is ready, so replies may
/// come out of order (matched by ID, as RFC 7766 §7 allows). Replies ready together
/// (a group commit answers many UPDATEs at once) go out in one write. A transfer request
/// first waits for the replies in flight, then streams alone.
async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send>(
    mut stream: S,
    peer: SocketAddr,
    shared: &TcpShared,
    clock: &AtomicU64,
    kill: &Notify,
    end: Instant,
) {
    use futures_util::{FutureExt as _, StreamExt as _};
    let idle = shared.cfg.idle;
    let deadline = || (Instant::now() + idle).min(end);
    // Bytes read and not yet taken as whole frames.
    let mut rbuf: Vec<u8> = Vec::with_capacity(1024);
    let mut out: Vec<u8> = Vec::with_capacity(512);
    // Replies not yet written.
    let mut wbuf: Vec<u8> = Vec::with_capacity(1024);
    let mut inflight: futures_util::stream::FuturesUnordered<Pending> = Default::default();
    let mut eof = false;
    // When the connection last moved (read or wrote): the idle timeout counts from it.
    let mut last = Instant::now();
    loop {
        // Every whole frame already read, while there is room in the pipeline.
        let mut used = 0;
        while inflight.len() < PIPELINE {
            let Some(head) = rbuf.get(used..used + 2) else { break };
            let n = u16::from_be_bytes([head[0], head[1]]) as usize;
            if n < HEADER {
                // Length 0 or 1 (or anything shorter than a header) is no DNS message.
                shared.bump("tcp_malformed");
                return;
            }
            let Some(msg) = rbuf.get(used + 2..used + 2 + n) else { break };
            used += 2 + n;
            if msg[2] & 0x80 != 0 {
                shared.bump("tcp_malformed");
                return;
            }
            match shared.view.answer(msg, &mut out, true) {
                Disposition::Reply { rcode } => {
                    shared.bump(rcode_outcome(rcode));
                    if !push_reply(&mut wbuf, &out) {
                        return;
                    }
                }
                Disposition::Drop => return,
                Disposition::Slow => {
                    let raw = msg.to_vec();
                    match Request::from_bytes(raw.clone(), peer, Protocol::Tcp) {
                        Ok(req) if xfr::is_transfer(&req) && shared.xfr.is_some() => {
                            let Some(x) = shared.xfr.as_ref() else { return };
                            // The replies in flight go first; the transfer streams alone.
                            if !drain(&mut inflight, &mut wbuf).await
                                || !flush(&mut stream, &mut wbuf, kill, deadline()).await
                            {
                                return;
                            }
                            match x.request(&raw, &req, peer, true) {
                                xfr::Answer::One(reply) => {
                                    if !push_reply(&mut wbuf, &reply) {
                                        return;
                                    }
                                }
                                xfr::Answer::Stream(t) => {
                                    if !x.stream(*t, &mut stream, kill, idle, end).await {
                                        return;
                                    }
                                }
                            }
                            last = Instant::now();
                            clock.store(shared.now_ms(), Ordering::Relaxed);
                        }
                        Ok(req) => {
                            let slow = shared.slow.clone();
                            inflight.push(Box::pin(async move {
                                let rh = TcpReply::default();
                                slow.handle_request::<_, hickory_server::net::runtime::TokioTime>(
                                    &req,
                                    rh.clone(),
                                )
                                .await;
                                let reply = rh.slot.lock().take();
                                reply
                            }));
                        }
                        Err(_) => {
                            shared.bump("malformed");
                            // The replies in flight, then a FORMERR, then close.
                            if drain(&mut inflight, &mut wbuf).await {
                                if let Some(r) = formerr(&raw) {
                                    push_reply(&mut wbuf, &r);
                                }
                            }
                            let _ = flush(&mut stream, &mut wbuf, kill, deadline()).await;
                            return;
                        }
                    }
                }
            }
        }
        rbuf.drain(..used);
        if !wbuf.is_empty() {
            if !flush(&mut stream, &mut wbuf, kill, deadline()).await {
                return;
            }
            last = Instant::now();
            clock.store(shared.now_ms(), Ordering::Relaxed);
        }
        if eof && inflight.is_empty() {
            return;
        }
        // Room to read a frame (a whole one when the client sends a large message).
        if rbuf.capacity() - rbuf.len() < 1024 {
            rbuf.reserve(4096);
        }
        let at = (last + idle).min(end);
        let can_read = !eof && inflight.len() < PIPELINE;
        tokio::select! {
            _ = kill.notified() => return,
            _ = tokio::time::sleep_until(at.into()) => return,
            r = stream.read_buf(&mut rbuf), if can_read => match r {
                // The client is done sending: answer what is in flight, then close.
                Ok(0) => eof = true,
                Ok(_) => {
                    last = Instant::now();
                    clock.store(shared.now_ms(), Ordering::Relaxed);
                }
                Err(_) => return,
            },
            Some(reply) = inflight.next(), if !inflight.is_empty() => {
                // This reply and every other one already done, written together above.
                let mut next = Some(reply);
                while let Some(reply) = next {
                    if let Some(reply) = reply {
                        if !push_reply(&mut wbuf, &reply) {
                            return;
                        }
                    }
                    next = inflight.next().now_or_never().flatten();
                }
            }
        }
    }
}

/// A hickory `ResponseHandler` that encodes the slow path's response for the connection
/// loop to send (a TC stub when it exceeds 65535 bytes).
#[derive(Clone, Default)]
pub(super) struct TcpReply {
    pub(super) slot: Arc<parking_lot::Mutex<Option<Vec<u8>>>>,
}

#[async_trait::async_trait]
impl ResponseHandler for TcpReply {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, hickory_server::net::NetError> {
        let (info, mut buf) = super::udp_reply::emit(response)?;
        if buf.len() > usize::from(u16::MAX) {
            match truncated_stub(&buf) {
                Some(stub) => buf = stub,
                None => return Ok(info),
            }
        }
        *self.slot.lock() = Some(buf);
        Ok(info)
    }
}
