//! The UDP fast-path loop: one dedicated OS thread per socket, blocking
//! `recvmmsg(MSG_WAITFORONE)` / `sendmmsg` in batches of 32 (`hotpath.md` §5: batching
//! saves about 1 µs per answer against one syscall per datagram). The only I/O of the
//! hot path; everything it cannot answer goes to the `slow` callback.
//!
//! The one module allowed `unsafe` (the crate denies it elsewhere): the `mmsghdr` batch
//! calls, each block with its `SAFETY:` argument.
#![allow(unsafe_code)]

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub use super::rrl::Verdict;
use super::rrl::{slip_stub, Rrl, RrlConfig};
use super::{rcode, Disposition, ZoneView};

/// Datagrams per syscall.
pub const BATCH: usize = 32;
/// Receive buffer per datagram: the largest UDP payload, so nothing is ever cut.
const BUF: usize = 65_536;
/// Room for a `sockaddr_storage` (128 bytes, 8-aligned).
const NAME_WORDS: usize = 16;
const NAME_BYTES: usize = NAME_WORDS * 8;
/// How long a blocked receive waits before re-checking `stop`.
pub const READ_TIMEOUT: Duration = Duration::from_millis(200);
/// Receive buffer requested from the kernel (silently capped by `net.core.rmem_max`).
const RCVBUF: usize = 4 << 20;

/// Counters for metrics, updated with relaxed atomics by the UDP thread. Each thread has
/// its own, aligned so that no two threads' counters share a cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct UdpStats {
    /// Datagrams received.
    pub queries: AtomicU64,
    /// Replies with RCODE NOERROR (answers, NODATA, TC stubs).
    pub noerror: AtomicU64,
    /// Replies with RCODE NXDOMAIN.
    pub nxdomain: AtomicU64,
    /// Replies with RCODE REFUSED (outside the zone).
    pub refused: AtomicU64,
    /// Replies with any other RCODE (BADVERS).
    pub other: AtomicU64,
    /// Replies sent with TC=1 (the client retries over TCP).
    pub truncated: AtomicU64,
    /// Datagrams handed to the slow path.
    pub slow: AtomicU64,
    /// Datagrams dropped without a reply (runts, responses, unknown source family).
    pub dropped: AtomicU64,
    /// Replies the kernel refused to send.
    pub send_errors: AtomicU64,
    /// Service time per answered query (receive to send, batch-amortised), by bucket of
    /// [`LATENCY_BOUNDS_US`] plus a last overflow bucket.
    pub latency: [AtomicU64; LATENCY_BOUNDS_US.len() + 1],
    /// Sum of the service times, nanoseconds.
    pub latency_sum_ns: AtomicU64,
    /// Responses dropped by response-rate limiting.
    pub rrl_dropped: AtomicU64,
    /// Responses sent as TC stubs by response-rate limiting (slip).
    pub rrl_slipped: AtomicU64,
}

/// Upper bounds (µs) of the latency histogram buckets.
pub const LATENCY_BOUNDS_US: [u64; 8] = [10, 50, 100, 250, 500, 1000, 5000, 10000];

/// Count `n` answers that each took `elapsed`.
fn observe(stats: &UdpStats, elapsed: Duration, n: usize) {
    let us = elapsed.as_micros() as u64;
    let i = LATENCY_BOUNDS_US.iter().position(|b| us <= *b).unwrap_or(LATENCY_BOUNDS_US.len());
    stats.latency[i].fetch_add(n as u64, Ordering::Relaxed);
    stats.latency_sum_ns.fetch_add(elapsed.as_nanos() as u64 * n as u64, Ordering::Relaxed);
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Callback receiving datagrams for the slow path, with their source address and the
/// response-rate-limiting verdict for the reply ([`Verdict::Send`] when RRL is off, and
/// for UPDATE messages, whose replies are never larger than the request):
/// RRL meters every UDP response in this thread, whichever path builds it, so the slow
/// path must drop its reply on [`Verdict::Drop`] and send only a TC stub on
/// [`Verdict::Slip`].
pub type SlowHandoff = Box<dyn Fn(Vec<u8>, SocketAddr, Verdict) + Send>;

/// A running UDP loop.
#[derive(Debug)]
pub struct UdpServer {
    thread: JoinHandle<()>,
    stats: Arc<UdpStats>,
    local: SocketAddr,
}

impl UdpServer {
    /// The loop's counters.
    pub fn stats(&self) -> &Arc<UdpStats> {
        &self.stats
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Wait for the thread to end (after `stop` was set, within about [`READ_TIMEOUT`]).
    pub fn join(self) -> std::thread::Result<()> {
        self.thread.join()
    }
}

/// Start the loop on its own OS thread. The socket (IPv4 or IPv6) is switched to
/// blocking mode with a [`READ_TIMEOUT`] read timeout so that `stop` is honoured, and its
/// receive buffer raised to 4 MiB where the kernel allows. Replies go to each query's
/// source address; [`Disposition::Slow`] datagrams are copied to `slow`.
pub fn spawn(
    socket: UdpSocket,
    view: Arc<ZoneView>,
    slow: SlowHandoff,
    stop: Arc<AtomicBool>,
) -> io::Result<UdpServer> {
    spawn_with_rrl(socket, view, slow, stop, None)
}

/// As [`spawn`], with response-rate limiting when `rrl` is given.
pub fn spawn_with_rrl(
    socket: UdpSocket,
    view: Arc<ZoneView>,
    slow: SlowHandoff,
    stop: Arc<AtomicBool>,
    rrl: Option<RrlConfig>,
) -> io::Result<UdpServer> {
    socket.set_nonblocking(false)?;
    socket.set_read_timeout(Some(READ_TIMEOUT))?;
    // Best effort: an unprivileged process gets at most rmem_max.
    let _ = socket2::SockRef::from(&socket).set_recv_buffer_size(RCVBUF);
    let local = socket.local_addr()?;
    let stats = Arc::new(UdpStats::default());
    let thread_stats = stats.clone();
    let thread = std::thread::Builder::new()
        .name("dns-udp".into())
        .spawn(move || run(&socket, &view, &*slow, &stop, &thread_stats, rrl.map(Rrl::new)))?;
    Ok(UdpServer { thread, stats, local })
}

/// Bind `n` UDP sockets to `addr` for `n` receive threads: one plain socket when `n` is 1,
/// otherwise `n` sockets with `SO_REUSEPORT` on the same port (the first one's, when
/// `addr` has port 0), among which the kernel spreads datagrams by a hash of the source
/// and destination address and port, so each thread reads its own queue (no shared
/// receive queue, no lock between the threads). IPv6 sockets stay dual-stack as the
/// system default says, as `UdpSocket::bind` leaves them.
pub fn bind_group(addr: SocketAddr, n: usize) -> io::Result<Vec<UdpSocket>> {
    if n <= 1 {
        return Ok(vec![UdpSocket::bind(addr)?]);
    }
    let mut out: Vec<UdpSocket> = Vec::with_capacity(n);
    let mut at = addr;
    for _ in 0..n {
        let s = socket2::Socket::new(
            socket2::Domain::for_address(at),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        s.set_reuse_port(true)?;
        s.bind(&at.into())?;
        let u: UdpSocket = s.into();
        at.set_port(u.local_addr()?.port());
        out.push(u);
    }
    Ok(out)
}

fn empty_iov() -> libc::iovec {
    libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }
}

fn empty_hdr() -> libc::mmsghdr {
    libc::mmsghdr {
        msg_hdr: libc::msghdr {
            msg_name: std::ptr::null_mut(),
            msg_namelen: 0,
            msg_iov: std::ptr::null_mut(),
            msg_iovlen: 0,
            msg_control: std::ptr::null_mut(),
            msg_controllen: 0,
            msg_flags: 0,
        },
        msg_len: 0,
    }
}

/// Decode a kernel-filled `sockaddr_in`/`sockaddr_in6` held in `words`.
fn sockaddr_from(words: &[u64; NAME_WORDS]) -> Option<SocketAddr> {
    let mut b = [0u8; NAME_BYTES];
    for (dst, w) in b.chunks_exact_mut(8).zip(words) {
        dst.copy_from_slice(&w.to_ne_bytes());
    }
    let family = i32::from(u16::from_ne_bytes([b[0], b[1]]));
    let port = u16::from_be_bytes([b[2], b[3]]);
    if family == libc::AF_INET {
        let ip = Ipv4Addr::new(b[4], b[5], b[6], b[7]);
        Some(SocketAddr::V4(SocketAddrV4::new(ip, port)))
    } else if family == libc::AF_INET6 {
        let flow = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
        let mut ip = [0u8; 16];
        ip.copy_from_slice(&b[8..24]);
        let scope = u32::from_ne_bytes([b[24], b[25], b[26], b[27]]);
        Some(SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(ip), port, flow, scope)))
    } else {
        None
    }
}

fn count_reply(stats: &UdpStats, code: u16, out: &[u8]) {
    bump(match code {
        rcode::NOERROR => &stats.noerror,
        rcode::NXDOMAIN => &stats.nxdomain,
        rcode::REFUSED => &stats.refused,
        _ => &stats.other,
    });
    if out.get(2).is_some_and(|f| f & 0x02 != 0) {
        bump(&stats.truncated);
    }
}

fn run(
    socket: &UdpSocket,
    view: &ZoneView,
    slow: &dyn Fn(Vec<u8>, SocketAddr, Verdict),
    stop: &AtomicBool,
    stats: &UdpStats,
    mut rrl: Option<Rrl>,
) {
    let fd = socket.as_raw_fd();
    let mut rbuf = vec![0u8; BATCH * BUF];
    let mut names = [[0u64; NAME_WORDS]; BATCH];
    let mut riov = [empty_iov(); BATCH];
    let mut rhdr = [empty_hdr(); BATCH];
    let mut outs: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(1232)).collect();
    let mut siov = [empty_iov(); BATCH];
    let mut shdr = [empty_hdr(); BATCH];
    // For each pending reply: index of the datagram it answers.
    let mut pending = [0usize; BATCH];

    while !stop.load(Ordering::Relaxed) {
        // Pointers are rebuilt every batch, each after the last write to its target,
        // so no Rust reference to a buffer is used while the kernel holds a pointer.
        let base = rbuf.as_mut_ptr();
        for (i, iov) in riov.iter_mut().enumerate() {
            *iov = libc::iovec { iov_base: base.wrapping_add(i * BUF).cast(), iov_len: BUF };
        }
        let (iovs, name_base) = (riov.as_mut_ptr(), names.as_mut_ptr());
        for (i, hdr) in rhdr.iter_mut().enumerate() {
            hdr.msg_hdr.msg_name = name_base.wrapping_add(i).cast();
            hdr.msg_hdr.msg_namelen = NAME_BYTES as libc::socklen_t;
            hdr.msg_hdr.msg_iov = iovs.wrapping_add(i);
            hdr.msg_hdr.msg_iovlen = 1;
            hdr.msg_hdr.msg_flags = 0;
            hdr.msg_len = 0;
        }
        // SAFETY: `rhdr` holds BATCH initialised headers; each points at its own
        // `names[i]` (NAME_BYTES writable bytes, the length given in msg_namelen) and
        // `riov[i]`, which points at BUF writable bytes of `rbuf` at offset i * BUF,
        // inside the BATCH * BUF allocation. All of them live across the call and no
        // Rust reference to them is held while the kernel writes.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                rhdr.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            if !matches!(
                err.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
            ) {
                tracing::warn!(error = %err, "dns udp: recvmmsg failed");
                std::thread::sleep(Duration::from_millis(10));
            }
            continue;
        }
        let received = (n as usize).min(BATCH);
        let now = std::time::Instant::now();
        let mut k = 0usize;
        for (i, hdr) in rhdr.iter().take(received).enumerate() {
            bump(&stats.queries);
            let len = (hdr.msg_len as usize).min(BUF);
            let Some(data) = rbuf.get(i * BUF..i * BUF + len) else {
                continue;
            };
            let Some(out) = outs.get_mut(k) else { continue };
            match view.answer(data, out, false) {
                Disposition::Reply { rcode } => {
                    if let Some(rrl) = rrl.as_mut() {
                        let verdict = sockaddr_from(&names[i]).map(|src| rrl.check(src.ip(), now));
                        match verdict {
                            Some(Verdict::Send) => {}
                            Some(Verdict::Slip) if slip_stub(out) => bump(&stats.rrl_slipped),
                            _ => {
                                bump(&stats.rrl_dropped);
                                continue;
                            }
                        }
                    }
                    count_reply(stats, rcode, out);
                    pending[k] = i;
                    k += 1;
                }
                Disposition::Slow => match sockaddr_from(&names[i]) {
                    Some(src) => {
                        // The slow path's reply is metered here, with the same buckets
                        // as the fast path's (one table, no lock). UPDATE replies are not:
                        // one is never larger than its request (header, zone section and
                        // the same OPT/TSIG), so it amplifies nothing, and UPDATEs have
                        // their own per-client and per-key buckets.
                        let is_update = data.get(2).is_some_and(|b| (b >> 3) & 0x0F == 5);
                        let verdict = match rrl.as_mut() {
                            Some(rrl) if !is_update => rrl.check(src.ip(), now),
                            _ => Verdict::Send,
                        };
                        match verdict {
                            Verdict::Send => {}
                            Verdict::Slip => bump(&stats.rrl_slipped),
                            Verdict::Drop => bump(&stats.rrl_dropped),
                        }
                        bump(&stats.slow);
                        slow(data.to_vec(), src, verdict);
                    }
                    None => bump(&stats.dropped),
                },
                Disposition::Drop => bump(&stats.dropped),
            }
        }
        for (iov, out) in siov.iter_mut().zip(outs.iter_mut()).take(k) {
            *iov = libc::iovec { iov_base: out.as_mut_ptr().cast(), iov_len: out.len() };
        }
        let (iovs, name_base) = (siov.as_mut_ptr(), names.as_mut_ptr());
        for (j, (hdr, &i)) in shdr.iter_mut().zip(pending.iter()).take(k).enumerate() {
            hdr.msg_hdr.msg_name = name_base.wrapping_add(i).cast();
            hdr.msg_hdr.msg_namelen = rhdr[i].msg_hdr.msg_namelen;
            hdr.msg_hdr.msg_iov = iovs.wrapping_add(j);
            hdr.msg_hdr.msg_iovlen = 1;
            hdr.msg_hdr.msg_flags = 0;
        }
        let mut sent = 0usize;
        while sent < k {
            // SAFETY: entries sent..k of `shdr` are initialised above; each points at a
            // source address in `names` (with the length the kernel reported) and at an
            // iovec over the initialised bytes of `outs[j]`. None of these buffers is
            // touched until the call returns; the count passed stays within `shdr`.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    shdr.as_mut_ptr().wrapping_add(sent),
                    (k - sent) as libc::c_uint,
                    0,
                )
            };
            if r > 0 {
                sent += r as usize;
            } else if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                // Skip the datagram the kernel refused (e.g. unreachable destination).
                bump(&stats.send_errors);
                sent += 1;
            }
        }
        if k > 0 {
            observe(stats, now.elapsed(), k);
        }
    }
}
