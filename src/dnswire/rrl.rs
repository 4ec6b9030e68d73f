//! Response-rate limiting (RRL) for the UDP path: a spoofed flood must not turn the
//! node into an amplifier. Responses per client prefix (/24 for IPv4, /56 for IPv6) are
//! metered by a token bucket; past the limit every `slip`-th response goes out as a
//! truncated stub (TC=1, no records — a real client retries over TCP, which cannot be
//! spoofed) and the rest are dropped.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::net::IpAddr;
use std::time::Instant;

use rustc_hash::FxHasher;

/// RRL settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RrlConfig {
    /// Responses per second per prefix.
    pub rate: f64,
    /// Bucket size.
    pub burst: f64,
    /// Past the limit, every `slip`-th response is a TC stub (0 = drop all).
    pub slip: u32,
    /// Loopback sources are never limited.
    pub exempt_loopback: bool,
}

impl RrlConfig {
    /// The share of one of `n` threads that each keep their own table (no state shared
    /// between them, so no lock and no contended cache line per response): `rate / n`,
    /// and the whole `burst`. Whatever threads a client prefix's queries reach (the kernel
    /// picks a thread by source address and port), it gets at most `rate` responses a
    /// second in total once its burst is spent, and at most `n × burst` at once. A client
    /// sending from one fixed port always reaches the same thread: it keeps the whole
    /// burst but `rate / n` a second (resolvers randomise their source ports and are not
    /// affected).
    pub fn per_thread(self, n: usize) -> RrlConfig {
        RrlConfig { rate: self.rate / n.max(1) as f64, ..self }
    }
}

/// What to do with one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Send,
    Slip,
    Drop,
}

/// Per-prefix buckets (bounded: the table is cleared when it grows past `MAX_ENTRIES`).
pub struct Rrl {
    cfg: RrlConfig,
    table: HashMap<u128, (f64, Instant, u32), BuildHasherDefault<FxHasher>>,
}

const MAX_ENTRIES: usize = 200_000;

fn prefix(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => (u32::from(v4) & 0xFFFF_FF00) as u128,
        IpAddr::V6(v6) => (u128::from(v6) & !((1u128 << 72) - 1)) | 1,
    }
}

impl Rrl {
    /// A limiter with `cfg`.
    pub fn new(cfg: RrlConfig) -> Self {
        Rrl { cfg, table: HashMap::default() }
    }

    /// Meter one response to `ip` at `now`.
    pub fn check(&mut self, ip: IpAddr, now: Instant) -> Verdict {
        if self.cfg.exempt_loopback && ip.is_loopback() {
            return Verdict::Send;
        }
        if self.table.len() >= MAX_ENTRIES {
            self.table.clear();
        }
        let (cfg_rate, cfg_burst, slip) = (self.cfg.rate, self.cfg.burst, self.cfg.slip);
        let e = self.table.entry(prefix(ip)).or_insert((cfg_burst, now, 0));
        e.0 = (e.0 + now.saturating_duration_since(e.1).as_secs_f64() * cfg_rate).min(cfg_burst);
        e.1 = now;
        if e.0 >= 1.0 {
            e.0 -= 1.0;
            return Verdict::Send;
        }
        e.2 = e.2.wrapping_add(1);
        if slip > 0 && e.2.is_multiple_of(slip) {
            Verdict::Slip
        } else {
            Verdict::Drop
        }
    }
}

/// Cut a response down to its header and question with TC=1 (and AA cleared).
/// Returns false when the response has no parsable question.
pub fn slip_stub(out: &mut Vec<u8>) -> bool {
    if out.len() < 12 || out[4..6] != [0, 1] {
        return false;
    }
    let mut i = 12;
    loop {
        let Some(&len) = out.get(i) else { return false };
        if len == 0 {
            i += 1;
            break;
        }
        if len & 0xC0 != 0 {
            return false;
        }
        i += 1 + len as usize;
    }
    let end = i + 4;
    if end > out.len() {
        return false;
    }
    out.truncate(end);
    out[2] = (out[2] | 0x02) & !0x04;
    out[6..12].fill(0);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_slip_every_other() {
        let mut r = Rrl::new(RrlConfig { rate: 0.0, burst: 3.0, slip: 2, exempt_loopback: true });
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let t = Instant::now();
        let v: Vec<Verdict> = (0..7).map(|_| r.check(ip, t)).collect();
        use Verdict::*;
        assert_eq!(v, vec![Send, Send, Send, Drop, Slip, Drop, Slip]);
        // Same /24 shares the bucket; another /24 does not.
        assert_ne!(r.check("192.0.2.200".parse().unwrap(), t), Send);
        assert_eq!(r.check("192.0.3.1".parse().unwrap(), t), Send);
        assert_eq!(r.check("127.0.0.1".parse().unwrap(), t), Send, "loopback exempt");
        // Refill.
        let mut r = Rrl::new(RrlConfig { rate: 10.0, burst: 1.0, slip: 0, exempt_loopback: false });
        assert_eq!(r.check(ip, t), Send);
        assert_eq!(r.check(ip, t), Drop);
        assert_eq!(r.check(ip, t + Duration::from_millis(150)), Send);
    }

    #[test]
    fn per_thread_shares_add_up_to_the_rate() {
        let cfg = RrlConfig { rate: 10.0, burst: 40.0, slip: 0, exempt_loopback: false };
        let (ip, t) = ("192.0.2.7".parse().unwrap(), Instant::now());
        let mut threads: Vec<Rrl> = (0..4).map(|_| Rrl::new(cfg.per_thread(4))).collect();
        let sent = |threads: &mut Vec<Rrl>, t| {
            (0..400).filter(|i| threads[i % 4].check(ip, t) == Verdict::Send).count()
        };
        // A flood spread over the threads: each thread's burst at once...
        assert_eq!(sent(&mut threads, t), 4 * 40);
        // ...then the configured rate in total, not four times it.
        assert_eq!(sent(&mut threads, t + Duration::from_secs(2)), 20);
        // One thread alone keeps the whole burst.
        let mut one = Rrl::new(cfg.per_thread(4));
        assert_eq!((0..100).filter(|_| one.check(ip, t) == Verdict::Send).count(), 40);
    }

    #[test]
    fn stub_keeps_question_only() {
        let mut m = vec![0xab, 0xcd, 0x84, 0x00, 0, 1, 0, 1, 0, 0, 0, 1];
        m.extend_from_slice(&[1, b'a', 0, 0, 16, 0, 1]);
        m.extend_from_slice(&[0xC0, 12, 0, 16, 0, 1, 0, 0, 0, 60, 0, 2, 1, b'x']);
        assert!(slip_stub(&mut m));
        assert_eq!(m.len(), 12 + 7);
        assert_eq!(m[2] & 0x02, 0x02);
        assert_eq!(m[2] & 0x04, 0);
        assert_eq!(&m[6..12], &[0; 6]);
        assert!(!slip_stub(&mut vec![0; 5]));
    }
}
