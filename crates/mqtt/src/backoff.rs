//! When to try the broker again: exponential backoff with jitter, capped.
//!
//! No clock and no randomness of its own: the caller passes a jitter
//! sample in `[0, 1)` and sleeps for the delay it is given.

use std::time::Duration;

/// The delay before each reconnection attempt: `base · 2^n` for the n-th
/// failure in a row, at most `cap`, of which a random part is dropped
/// (between half and all of it is waited: "equal jitter"), so that many
/// sources cut off by one broker restart do not all come back in the same
/// instant; back to `base` after a successful connection.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    failures: u32,
}

impl Backoff {
    /// A schedule starting at `base` and never above `cap`.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap: cap.max(base),
            failures: 0,
        }
    }

    /// The delay after one more failure, for a jitter sample `jitter` in
    /// `[0, 1)` (values outside are clamped).
    pub fn next_delay(&mut self, jitter: f64) -> Duration {
        // 2^20 · base is past any sensible cap; stop doubling there.
        let doublings = self.failures.min(20);
        self.failures = self.failures.saturating_add(1);
        let full = self.base.saturating_mul(1u32 << doublings).min(self.cap);
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        full.mul_f64(0.5 + 0.5 * jitter)
    }

    /// Connected again: the next failure waits `base` (with jitter) again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Failures in a row so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_restart_after_a_reset() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let full: Vec<u128> = (0..6)
            .map(|_| backoff.next_delay(1.0).as_millis())
            .collect();
        assert_eq!(full, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff.failures(), 6);
        backoff.reset();
        assert_eq!(backoff.next_delay(1.0), Duration::from_millis(100));
    }

    #[test]
    fn jitter_waits_between_half_and_all_of_the_delay() {
        let mut low = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        let mut high = low.clone();
        for full_ms in [100, 200, 400, 800] {
            let full = Duration::from_millis(full_ms);
            assert_eq!(low.next_delay(0.0), full / 2);
            let h = high.next_delay(0.999);
            assert!(h > full.mul_f64(0.99) && h < full, "{h:?} for {full:?}");
        }
        let mut odd = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        assert_eq!(odd.next_delay(f64::NAN), Duration::from_millis(50));
        assert_eq!(odd.next_delay(7.0), Duration::from_millis(200));
    }

    #[test]
    fn a_long_outage_never_overflows() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        for _ in 0..10_000 {
            assert!(backoff.next_delay(0.5) <= Duration::from_secs(60));
        }
    }
}
