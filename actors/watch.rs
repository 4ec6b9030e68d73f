//! The watch actor: owns the table of `GET /v1/watch/mb-<hash12>` subscribers (Server-Sent
//! Events) and tells each one the owner names of mailbox records (`slot-N.mb-<h>.<zone>`,
//! `claim-N.mb-<h>.<zone>`) that were created or went away, from the store's
//! [`ZoneDelta`]s (local writes, replicated ones and expiry alike). Names only: values
//! stay in DNS, where the client reads them at once.
//!
//! Bounds: at most `max_per_ip` streams per client address (loopback exempt unless
//! `limit_loopback`) and `max_total` in all; a stream that had no event for `idle` is
//! closed (the client reconnects), and every stream gets a keep-alive comment every
//! `keepalive` so proxies and clients see a live connection. A subscriber whose buffer is
//! full (a client that does not read) is dropped rather than buffered without end.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::web::Bytes;
use tokio::sync::mpsc;

use super::store::{StoreActor, Subscribe, ZoneDelta};

/// Events buffered per subscriber before it counts as stalled and is dropped.
const BUFFER: usize = 256;

/// Configuration of the watch table.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    pub zone: String,
    pub max_per_ip: usize,
    pub max_total: usize,
    pub idle: Duration,
    pub limit_loopback: bool,
}

impl WatchOptions {
    /// Keep-alive period: a quarter of the idle timeout, between 1 and 15 s.
    pub fn keepalive(&self) -> Duration {
        (self.idle / 4).clamp(Duration::from_secs(1), Duration::from_secs(15))
    }
}

/// The mailbox label (`mb-<12 hex>`) of a watchable name (`slot-N.mb-<h>.<zone>` or
/// `claim-N.mb-<h>.<zone>`, already lower-cased), or `None`.
pub fn mailbox_of<'a>(name: &'a str, zone: &str) -> Option<&'a str> {
    let rest = name.strip_suffix(zone)?.strip_suffix('.')?;
    let (first, mb) = rest.split_once('.')?;
    let n = first.strip_prefix("slot-").or_else(|| first.strip_prefix("claim-"))?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) || !valid_mailbox(mb) {
        return None;
    }
    Some(mb)
}

/// `mb-` and 12 lower-case hex digits.
pub fn valid_mailbox(mb: &str) -> bool {
    mb.strip_prefix("mb-").is_some_and(|h| {
        h.len() == 12 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Why a subscription was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WatchRefused {
    #[error("too many watch streams from this address")]
    PerClient,
    #[error("too many watch streams on this node")]
    Total,
}

/// Open a stream for `mailbox` (`mb-<h>`) from `ip`.
#[derive(Message)]
#[rtype(result = "Result<WatchStream, WatchRefused>")]
pub struct WatchOpen {
    pub mailbox: String,
    pub ip: Option<IpAddr>,
}

/// A stream went away (the HTTP response was dropped).
#[derive(Message)]
#[rtype(result = "()")]
struct WatchClose(u64);

/// Streams open now (for `/metrics` and tests).
#[derive(Message)]
#[rtype(result = "usize")]
pub struct WatchCount;

struct Sub {
    mailbox: String,
    ip: Option<IpAddr>,
    tx: mpsc::Sender<Bytes>,
    last_event: Instant,
}

/// The actor. Start it, then send it [`WatchOpen`]s; it subscribes to `store` itself.
pub struct WatchActor {
    opts: WatchOptions,
    store: Addr<StoreActor>,
    subs: HashMap<u64, Sub>,
    by_mailbox: HashMap<String, Vec<u64>>,
    per_ip: HashMap<IpAddr, usize>,
    next_id: u64,
}

impl WatchActor {
    pub fn new(opts: WatchOptions, store: Addr<StoreActor>) -> Self {
        WatchActor {
            opts,
            store,
            subs: HashMap::new(),
            by_mailbox: HashMap::new(),
            per_ip: HashMap::new(),
            next_id: 0,
        }
    }

    fn counted_ip(&self, ip: Option<IpAddr>) -> Option<IpAddr> {
        ip.filter(|ip| self.opts.limit_loopback || !ip.is_loopback())
    }

    fn remove(&mut self, id: u64) {
        let Some(sub) = self.subs.remove(&id) else { return };
        if let Some(v) = self.by_mailbox.get_mut(&sub.mailbox) {
            v.retain(|x| *x != id);
            if v.is_empty() {
                self.by_mailbox.remove(&sub.mailbox);
            }
        }
        if let Some(ip) = self.counted_ip(sub.ip) {
            if let Some(n) = self.per_ip.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    self.per_ip.remove(&ip);
                }
            }
        }
    }

    /// Keep-alive to every stream; close the idle and the gone.
    fn tick(&mut self) {
        let now = Instant::now();
        let idle = self.opts.idle;
        let drop: Vec<u64> = self
            .subs
            .iter()
            .filter(|(_, s)| {
                now.duration_since(s.last_event) >= idle
                    || s.tx.try_send(Bytes::from_static(b": keep-alive\n\n")).is_err()
            })
            .map(|(id, _)| *id)
            .collect();
        for id in drop {
            self.remove(id);
        }
    }
}

impl Actor for WatchActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(65536);
        self.store.do_send(Subscribe {
            name: "watch",
            to: ctx.address().recipient(),
            snapshot: false,
        });
        ctx.run_interval(self.opts.keepalive(), |act, _| act.tick());
    }
}

impl Supervised for WatchActor {
    fn restarting(&mut self, _: &mut Context<Self>) {
        // Streams end (their senders drop); clients reconnect.
        self.subs.clear();
        self.by_mailbox.clear();
        self.per_ip.clear();
    }
}

impl Handler<ZoneDelta> for WatchActor {
    type Result = ();

    fn handle(&mut self, d: ZoneDelta, _: &mut Context<Self>) {
        if self.subs.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut gone = Vec::new();
        for (name, _) in &d.changes {
            let Some(mb) = mailbox_of(name, &self.opts.zone) else { continue };
            let Some(ids) = self.by_mailbox.get(mb) else { continue };
            let ev = Bytes::from(format!("data: {name}\n\n"));
            for id in ids {
                if let Some(s) = self.subs.get_mut(id) {
                    if s.tx.try_send(ev.clone()).is_ok() {
                        s.last_event = now;
                    } else {
                        gone.push(*id);
                    }
                }
            }
        }
        for id in gone {
            self.remove(id);
        }
    }
}

impl Handler<WatchOpen> for WatchActor {
    type Result = Result<WatchStream, WatchRefused>;

    fn handle(&mut self, m: WatchOpen, ctx: &mut Context<Self>) -> Self::Result {
        if self.subs.len() >= self.opts.max_total {
            return Err(WatchRefused::Total);
        }
        let counted = self.counted_ip(m.ip);
        if let Some(ip) = counted {
            if self.per_ip.get(&ip).copied().unwrap_or(0) >= self.opts.max_per_ip {
                return Err(WatchRefused::PerClient);
            }
            *self.per_ip.entry(ip).or_insert(0) += 1;
        }
        let (tx, rx) = mpsc::channel(BUFFER);
        // The first bytes tell the client the subscription is in place.
        let _ = tx.try_send(Bytes::from(format!(": watching {}\n\n", m.mailbox)));
        let id = self.next_id;
        self.next_id += 1;
        self.by_mailbox.entry(m.mailbox.clone()).or_default().push(id);
        self.subs.insert(id, Sub { mailbox: m.mailbox, ip: m.ip, tx, last_event: Instant::now() });
        Ok(WatchStream { rx, id, watch: ctx.address() })
    }
}

impl Handler<WatchClose> for WatchActor {
    type Result = ();
    fn handle(&mut self, m: WatchClose, _: &mut Context<Self>) {
        self.remove(m.0);
    }
}

impl Handler<WatchCount> for WatchActor {
    type Result = usize;
    fn handle(&mut self, _: WatchCount, _: &mut Context<Self>) -> usize {
        self.subs.len()
    }
}

/// The body of one SSE response; dropping it (client gone) frees its place in the table.
pub struct WatchStream {
    rx: mpsc::Receiver<Bytes>,
    id: u64,
    watch: Addr<WatchActor>,
}

impl futures_util::Stream for WatchStream {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|o| o.map(Ok))
    }
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        self.watch.do_send(WatchClose(self.id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_mailbox_slots_and_claims_are_watchable() {
        let z = "mesh.test";
        assert_eq!(mailbox_of("slot-3.mb-0123456789ab.mesh.test", z), Some("mb-0123456789ab"));
        assert_eq!(mailbox_of("claim-12.mb-0123456789ab.mesh.test", z), Some("mb-0123456789ab"));
        for n in [
            "slot-3.mb-0123456789ab.other.test",
            "slot-.mb-0123456789ab.mesh.test",
            "slot-x.mb-0123456789ab.mesh.test",
            "chunk-0001-abc.mb-0123456789ab.mesh.test",
            "slot-3.mb-0123456789a.mesh.test",
            "slot-3.mb-0123456789AB.mesh.test",
            "slot-3.x.mb-0123456789ab.mesh.test",
            "slot-3.mb-0123456789abmesh.test",
            "mesh.test",
        ] {
            assert_eq!(mailbox_of(n, z), None, "{n}");
        }
        assert!(valid_mailbox("mb-abcdef012345"));
        assert!(!valid_mailbox("mb-abcdef01234"));
        assert!(!valid_mailbox("xb-abcdef012345"));
    }
}
