//! The one wall clock of the node: every actor takes a [`Clock`] instead of reading
//! `SystemTime` itself, so expiry and time windows are tested by advancing a manual clock
//! rather than by sleeping. (The protocol core never reads a clock: time is a parameter.)

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Unix time, from the system or (in tests) from a manual clock shared by its clones.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// `None`: the system clock; `Some`: manual, milliseconds since the epoch.
    manual: Option<Arc<AtomicU64>>,
}

impl Clock {
    /// The system's wall clock.
    pub fn system() -> Clock {
        Clock { manual: None }
    }

    /// A manual clock starting at `unix_secs`; it moves only by [`Clock::advance`].
    pub fn manual(unix_secs: u64) -> Clock {
        Clock { manual: Some(Arc::new(AtomicU64::new(unix_secs.saturating_mul(1000)))) }
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        match &self.manual {
            Some(ms) => ms.load(Ordering::Relaxed),
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
        }
    }

    /// Seconds since the Unix epoch.
    pub fn now_secs(&self) -> u64 {
        self.now_ms() / 1000
    }

    /// Move a manual clock forward (every clone sees it). Panics on the system clock:
    /// only tests advance time.
    pub fn advance(&self, by: Duration) {
        let ms = self.manual.as_ref().expect("only a manual clock can be advanced");
        ms.fetch_add(by.as_millis() as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced_and_clones_share_it() {
        let c = Clock::manual(1_000);
        let d = c.clone();
        assert_eq!((c.now_secs(), c.now_ms()), (1_000, 1_000_000));
        d.advance(Duration::from_millis(1_500));
        assert_eq!((c.now_secs(), c.now_ms()), (1_001, 1_001_500));
    }

    #[test]
    fn system_clock_is_the_wall_clock() {
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        assert!(Clock::system().now_secs().abs_diff(wall) <= 1);
    }
}
