//! Throttling of failed authentication per client IP (operator and sync tokens), so a
//! token cannot be guessed at network speed. Pure (the clock is a parameter), bounded.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// A bucket of allowed failures per IP: each failed attempt takes one; it refills at
/// `rate` per second up to `burst`. While an IP's bucket is empty, every authenticated
/// request from it is refused (429) without being checked — right token or not — so the
/// refusal tells a guesser nothing.
pub struct FailureThrottle {
    rate: f64,
    burst: f64,
    capacity: usize,
    ips: HashMap<IpAddr, (f64, Instant)>,
}

impl FailureThrottle {
    /// At most `capacity` tracked IPs (the stalest are forgotten first).
    pub fn new(rate: f64, burst: f64, capacity: usize) -> Self {
        FailureThrottle {
            rate,
            burst: burst.max(1.0),
            capacity: capacity.max(1),
            ips: HashMap::new(),
        }
    }

    fn level(&self, ip: &IpAddr, now: Instant) -> f64 {
        match self.ips.get(ip) {
            Some((tokens, last)) => (tokens
                + now.saturating_duration_since(*last).as_secs_f64() * self.rate)
                .min(self.burst),
            None => self.burst,
        }
    }

    /// True when `ip` may try to authenticate now.
    pub fn allowed(&self, ip: &IpAddr, now: Instant) -> bool {
        self.level(ip, now) >= 1.0
    }

    /// Record a failed attempt by `ip`.
    pub fn failed(&mut self, ip: IpAddr, now: Instant) {
        if self.ips.len() >= self.capacity && !self.ips.contains_key(&ip) {
            super::limits::evict_stalest(&mut self.ips, self.capacity, |(_, t)| *t);
        }
        let level = (self.level(&ip, now) - 1.0).max(0.0);
        self.ips.insert(ip, (level, now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_few_failures_then_blocked_until_refilled() {
        let mut t = FailureThrottle::new(0.5, 3.0, 10);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(t.allowed(&ip, t0));
            t.failed(ip, t0);
        }
        assert!(!t.allowed(&ip, t0), "blocked after the burst");
        assert!(t.allowed(&other, t0), "other clients unaffected");
        assert!(!t.allowed(&ip, t0 + Duration::from_millis(1900)));
        assert!(t.allowed(&ip, t0 + Duration::from_secs(2)), "one attempt regained after 1/rate");
    }

    #[test]
    fn bounded_memory() {
        let mut t = FailureThrottle::new(0.1, 2.0, 4);
        let now = Instant::now();
        for i in 0..100u32 {
            t.failed(IpAddr::from(i.to_be_bytes()), now);
        }
        assert!(t.ips.len() <= 4);
    }
}
