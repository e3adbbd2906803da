//! What one client may do: the configured [`SessionLimits`], the token bucket
//! that enforces the per-second rates, and the count of connections per
//! token.
//!
//! Plain types with no clock and no I/O: the sessions pass the time in, so
//! every rule here is tested without a socket or a runtime.

use std::collections::HashMap;
use std::time::Instant;

use polis_protocol::Rejection;

/// What one client may do; exceeding a limit gets an explicit error.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// Connections one token may have at once.
    pub max_connections_per_token: u32,
    /// Readings one gateway connection may push per second (burst: one second's worth).
    pub max_readings_per_second: f64,
    /// Subscriptions one viewer connection may make per second (burst: ten).
    pub max_subscriptions_per_second: f64,
    /// Largest area a viewer may subscribe to, km².
    pub max_area_km2: f64,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            max_connections_per_token: 256,
            max_readings_per_second: 1_000_000.0,
            max_subscriptions_per_second: 10.0,
            max_area_km2: 100.0,
        }
    }
}

/// A token bucket: refills at `rate_per_s`, holds at most `burst`, starts
/// full. Time comes in as an argument.
#[derive(Debug, Clone)]
pub(super) struct TokenBucket {
    rate_per_s: f64,
    burst: f64,
    level: f64,
    /// When `level` was last brought up to date.
    updated_at: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub(super) fn new(rate_per_s: f64, burst: f64, now: Instant) -> Self {
        Self {
            rate_per_s,
            burst,
            level: burst,
            updated_at: now,
        }
    }

    /// Takes `amount` at `now`; false, taking nothing, when that exceeds
    /// what the rate allows. A `now` earlier than a previous one refills
    /// nothing.
    pub(super) fn take(&mut self, amount: f64, now: Instant) -> bool {
        let elapsed_s = now.saturating_duration_since(self.updated_at).as_secs_f64();
        self.level = (self.level + elapsed_s * self.rate_per_s).min(self.burst);
        self.updated_at = self.updated_at.max(now);
        if amount > self.level {
            return false;
        }
        self.level -= amount;
        true
    }
}

/// How many connections each token has, against
/// [`SessionLimits::max_connections_per_token`].
#[derive(Debug, Default)]
pub(super) struct TokenConnections {
    /// Only tokens with at least one connection are listed.
    per_token: HashMap<String, u32>,
}

impl TokenConnections {
    /// Counts one more connection of the token `name`, or refuses when it
    /// already has `limit`.
    pub(super) fn admit(&mut self, name: &str, limit: u32) -> Result<(), Rejection> {
        let count = self.per_token.get(name).copied().unwrap_or(0);
        if count >= limit {
            return Err(Rejection::TooManyConnections { limit });
        }
        self.per_token.insert(name.to_owned(), count + 1);
        Ok(())
    }

    /// One connection of the token `name` ended.
    pub(super) fn release(&mut self, name: &str) {
        if let Some(count) = self.per_token.get_mut(name) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.per_token.remove(name);
            }
        }
    }

    /// Tokens with at least one connection.
    #[cfg(test)]
    fn tokens(&self) -> usize {
        self.per_token.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_bucket_allows_its_burst_and_refuses_beyond_it() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(10.0, 3.0, t0);
        assert!(bucket.take(1.0, t0));
        assert!(bucket.take(2.0, t0));
        assert!(!bucket.take(1.0, t0), "the burst is spent");
        assert!(!bucket.take(0.5, t0));
        assert!(bucket.take(0.0, t0), "nothing can always be taken");
    }

    #[test]
    fn the_bucket_refills_with_time_up_to_its_burst() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(10.0, 5.0, t0);
        assert!(bucket.take(5.0, t0));
        // 10 per second: one after 100 ms, not two.
        let t1 = t0 + Duration::from_millis(100);
        assert!(!bucket.take(2.0, t1));
        assert!(bucket.take(1.0, t1));
        assert!(!bucket.take(1.0, t1));
        // An hour later it holds its burst, not 36,000.
        let t2 = t1 + Duration::from_secs(3600);
        assert!(bucket.take(5.0, t2));
        assert!(!bucket.take(1.0, t2));
    }

    #[test]
    fn a_refused_take_takes_nothing() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(1.0, 4.0, t0);
        assert!(
            !bucket.take(5.0, t0),
            "more than the burst is never allowed"
        );
        assert!(bucket.take(4.0, t0), "the refusal left the bucket full");
    }

    #[test]
    fn time_going_backwards_refills_nothing() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut bucket = TokenBucket::new(100.0, 1.0, t0);
        assert!(bucket.take(1.0, t0));
        let earlier = t0 - Duration::from_secs(5);
        assert!(!bucket.take(1.0, earlier));
        // Nor does coming back to `t0`: the 5 s "gap" is not credited.
        assert!(!bucket.take(1.0, t0));
        assert!(bucket.take(1.0, t0 + Duration::from_millis(10)));
    }

    #[test]
    fn a_zero_rate_bucket_never_refills() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(0.0, 2.0, t0);
        assert!(bucket.take(2.0, t0));
        assert!(!bucket.take(1.0, t0 + Duration::from_secs(1_000_000)));
    }

    #[test]
    fn a_token_gets_its_limit_of_connections_and_no_more() {
        let mut connections = TokenConnections::default();
        for _ in 0..3 {
            assert_eq!(connections.admit("meter", 3), Ok(()));
        }
        assert_eq!(
            connections.admit("meter", 3),
            Err(Rejection::TooManyConnections { limit: 3 })
        );
        // Another token is counted on its own.
        assert_eq!(connections.admit("viewer", 3), Ok(()));
        // A connection ending frees its slot.
        connections.release("meter");
        assert_eq!(connections.admit("meter", 3), Ok(()));
        assert!(connections.admit("meter", 3).is_err());
    }

    #[test]
    fn released_tokens_are_forgotten_and_a_refusal_counts_nothing() {
        let mut connections = TokenConnections::default();
        assert!(
            connections.admit("nobody", 0).is_err(),
            "a limit of 0 refuses all"
        );
        assert_eq!(connections.tokens(), 0);
        assert_eq!(connections.admit("meter", 2), Ok(()));
        assert_eq!(connections.admit("meter", 2), Ok(()));
        connections.release("meter");
        connections.release("meter");
        assert_eq!(connections.tokens(), 0);
        // Releasing more than was admitted does not underflow or go negative.
        connections.release("meter");
        connections.release("unknown");
        assert_eq!(connections.tokens(), 0);
        assert_eq!(connections.admit("meter", 1), Ok(()));
        assert!(connections.admit("meter", 1).is_err());
    }
}
