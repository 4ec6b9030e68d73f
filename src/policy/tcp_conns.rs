//! Admission policy for DNS-over-TCP connections (no I/O): a per-client cap and a global
//! cap. A client over its own cap is refused; at the global cap the connection idle the
//! longest is evicted to make room, so a flood of idle connections from many addresses
//! cannot lock out a client that actually asks something.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// Most connections held at once (≥ 1).
    pub max_total: usize,
    /// Most connections per client (IPv4 address, IPv6 /64) (≥ 1).
    pub max_per_ip: usize,
    /// Whether the per-client cap applies to loopback clients.
    pub limit_loopback: bool,
}

/// The default global cap for a soft fd limit: a quarter of it (the rest stays for the
/// store, HTTP and everything else), at most 1024, at least 16.
pub fn default_max_total(soft_fd_limit: u64) -> usize {
    usize::try_from(soft_fd_limit / 4).unwrap_or(usize::MAX).clamp(16, 1024)
}

/// The process's current soft `RLIMIT_NOFILE` (1024 when it cannot be read). The one
/// system call in `policy` (feature `net`).
#[cfg(feature = "net")]
pub fn soft_fd_limit() -> u64 {
    // `None` is RLIM_INFINITY.
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// What [`ConnTable::admit`] decided.
#[derive(Debug)]
pub enum Admit<H> {
    /// Serve it under this id; the connection in `evicted` (if any) must be closed now.
    Yes { id: u64, evicted: Option<H> },
    /// The client already holds its share: close the new connection at once.
    PerClientFull,
}

struct Entry<H> {
    client: IpAddr,
    last_active: Arc<AtomicU64>,
    handle: H,
}

/// The live connections. `H` is whatever the caller needs to close one (a notifier).
pub struct ConnTable<H> {
    limits: ConnLimits,
    per_client: HashMap<IpAddr, usize>,
    live: HashMap<u64, Entry<H>>,
    next_id: u64,
}

/// The per-client key: an IPv4 address (IPv4-mapped included) or an IPv6 /64.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

impl<H> ConnTable<H> {
    /// An empty table.
    pub fn new(limits: ConnLimits) -> Self {
        ConnTable { limits, per_client: HashMap::new(), live: HashMap::new(), next_id: 0 }
    }

    /// Connections held.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// True when none is held.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// Admit a new connection from `ip`. `last_active` is its activity clock (any
    /// monotonic unit, updated by the connection); the smallest value is evicted first.
    pub fn admit(&mut self, ip: IpAddr, last_active: Arc<AtomicU64>, handle: H) -> Admit<H> {
        let client = client_key(ip);
        let capped = self.limits.limit_loopback || !ip.is_loopback();
        let held = self.per_client.get(&client).copied().unwrap_or(0);
        if capped && held >= self.limits.max_per_ip.max(1) {
            return Admit::PerClientFull;
        }
        let mut evicted = None;
        if self.live.len() >= self.limits.max_total.max(1) {
            let victim = self
                .live
                .iter()
                .min_by_key(|(id, e)| (e.last_active.load(Ordering::Relaxed), **id))
                .map(|(id, _)| *id);
            if let Some(v) = victim {
                evicted = self.release(v);
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        *self.per_client.entry(client).or_insert(0) += 1;
        self.live.insert(id, Entry { client, last_active, handle });
        Admit::Yes { id, evicted }
    }

    /// Forget connection `id` (idempotent); returns its handle if it was still held.
    pub fn release(&mut self, id: u64) -> Option<H> {
        let e = self.live.remove(&id)?;
        if let Some(n) = self.per_client.get_mut(&e.client) {
            *n -= 1;
            if *n == 0 {
                self.per_client.remove(&e.client);
            }
        }
        Some(e.handle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock(v: u64) -> Arc<AtomicU64> {
        Arc::new(AtomicU64::new(v))
    }

    #[test]
    fn per_client_cap_then_lru_eviction() {
        let mut t =
            ConnTable::new(ConnLimits { max_total: 3, max_per_ip: 2, limit_loopback: true });
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let c: IpAddr = "127.0.0.4".parse().unwrap();
        let ca = clock(5);
        let Admit::Yes { id: a1, evicted: None } = t.admit(a, ca.clone(), "a1") else { panic!() };
        assert!(matches!(t.admit(a, clock(1), "a2"), Admit::Yes { evicted: None, .. }));
        assert!(matches!(t.admit(a, clock(9), "a3"), Admit::PerClientFull));
        assert!(matches!(t.admit(b, clock(7), "b1"), Admit::Yes { evicted: None, .. }));
        // Full: the least recently active ("a2", clock 1) makes room.
        assert!(matches!(t.admit(c, clock(9), "c1"), Admit::Yes { evicted: Some("a2"), .. }));
        assert_eq!(t.len(), 3);
        // a has one slot again; activity moves a1 out of the way, b1 goes next.
        ca.store(100, Ordering::Relaxed);
        assert!(matches!(t.admit(a, clock(9), "a4"), Admit::Yes { evicted: Some("b1"), .. }));
        assert_eq!(t.release(a1), Some("a1"));
        assert_eq!(t.release(a1), None, "idempotent");
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn loopback_exempt_unless_limited_and_v6_by_64() {
        let mut t =
            ConnTable::new(ConnLimits { max_total: 100, max_per_ip: 1, limit_loopback: false });
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..5 {
            assert!(matches!(t.admit(lo, clock(0), ()), Admit::Yes { .. }));
        }
        let x: IpAddr = "2001:db8::1".parse().unwrap();
        let y: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        assert!(matches!(t.admit(x, clock(0), ()), Admit::Yes { .. }));
        assert!(matches!(t.admit(y, clock(0), ()), Admit::PerClientFull), "same /64");
        assert_eq!(default_max_total(1024), 256);
        assert_eq!(default_max_total(1 << 20), 1024);
        assert_eq!(default_max_total(20), 16);
    }
}
