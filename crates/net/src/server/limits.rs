//! What one client may do: the configured [`SessionLimits`], the token bucket
//! that enforces the per-second rates, the count of connections per token
//! (and per token and source address), and the count of handshakes in
//! progress per source address.
//!
//! Plain types with no clock and no I/O: the sessions pass the time in, so
//! every rule here is tested without a socket or a runtime.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use polis_protocol::Rejection;

/// What one client may do; exceeding a limit gets an explicit error.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// Connections one token may have at once.
    pub max_connections_per_token: u32,
    /// Connections one token may have at once from one source (IP) address,
    /// so one client cannot use up a shared token's allowance.
    pub max_connections_per_token_per_address: u32,
    /// Readings one gateway connection may push per second (burst: one second's worth).
    pub max_readings_per_second: f64,
    /// Subscriptions one viewer connection may make per second (burst: ten).
    pub max_subscriptions_per_second: f64,
    /// Picks one viewer connection may make per second (burst: one second's
    /// worth); further picks are answered `RateLimited`, and the connection
    /// stays open.
    pub max_picks_per_second: f64,
    /// Largest area a viewer may subscribe to, km².
    pub max_area_km2: f64,
    /// Handshakes in progress (connected, not yet welcomed) above which a
    /// client whose address is not yet validated is sent a QUIC retry
    /// first, so that spoofed sources hold nothing.
    pub retry_above_handshakes: usize,
    /// Handshakes one source address may have in progress; more are refused.
    pub max_handshakes_per_address: u32,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            max_connections_per_token: 256,
            max_connections_per_token_per_address: 64,
            max_readings_per_second: 1_000_000.0,
            max_subscriptions_per_second: 10.0,
            max_picks_per_second: 20.0,
            max_area_km2: 100.0,
            retry_above_handshakes: 64,
            max_handshakes_per_address: 16,
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

/// How many connections each token has, in all and from each source
/// address, against [`SessionLimits::max_connections_per_token`] and
/// [`SessionLimits::max_connections_per_token_per_address`].
#[derive(Debug, Default)]
pub(super) struct TokenConnections {
    /// Only tokens with at least one connection are listed.
    per_token: HashMap<String, u32>,
    /// Only (token, address) pairs with at least one connection are listed.
    per_token_address: HashMap<(String, IpAddr), u32>,
}

impl TokenConnections {
    /// Counts one more connection of the token `name` from `source`, or
    /// refuses when the token already has `limit` connections, or
    /// `per_address_limit` from `source`.
    pub(super) fn admit(
        &mut self,
        name: &str,
        source: IpAddr,
        limit: u32,
        per_address_limit: u32,
    ) -> Result<(), Rejection> {
        let count = self.per_token.get(name).copied().unwrap_or(0);
        if count >= limit {
            return Err(Rejection::TooManyConnections { limit });
        }
        let key = (name.to_owned(), source);
        let from_source = self.per_token_address.get(&key).copied().unwrap_or(0);
        if from_source >= per_address_limit {
            return Err(Rejection::TooManyConnections {
                limit: per_address_limit,
            });
        }
        self.per_token.insert(name.to_owned(), count + 1);
        self.per_token_address.insert(key, from_source + 1);
        Ok(())
    }

    /// One connection of the token `name` from `source` ended.
    pub(super) fn release(&mut self, name: &str, source: IpAddr) {
        if let Some(count) = self.per_token.get_mut(name) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.per_token.remove(name);
            }
        }
        let key = (name.to_owned(), source);
        if let Some(count) = self.per_token_address.get_mut(&key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.per_token_address.remove(&key);
            }
        }
    }

    /// Tokens with at least one connection.
    #[cfg(test)]
    fn tokens(&self) -> usize {
        debug_assert!(self.per_token_address.len() >= self.per_token.len());
        self.per_token.len()
    }
}

/// Handshakes in progress (from the first packet until the client's hello
/// is read), in all and per source address.
#[derive(Debug, Default)]
pub(super) struct Handshakes {
    total: usize,
    /// Only addresses with at least one handshake are listed.
    per_address: HashMap<IpAddr, u32>,
}

impl Handshakes {
    /// Handshakes in progress.
    pub(super) fn total(&self) -> usize {
        self.total
    }

    /// Counts one more handshake from `source`, or refuses (counting
    /// nothing) when `source` already has `per_address_limit`.
    pub(super) fn begin(&mut self, source: IpAddr, per_address_limit: u32) -> bool {
        let count = self.per_address.entry(source).or_insert(0);
        if *count >= per_address_limit {
            if *count == 0 {
                self.per_address.remove(&source);
            }
            return false;
        }
        *count += 1;
        self.total += 1;
        true
    }

    /// A handshake from `source` ended (completed or failed).
    pub(super) fn end(&mut self, source: IpAddr) {
        if let Some(count) = self.per_address.get_mut(&source) {
            *count = count.saturating_sub(1);
            self.total = self.total.saturating_sub(1);
            if *count == 0 {
                self.per_address.remove(&source);
            }
        }
    }

    /// Addresses with a handshake in progress.
    #[cfg(test)]
    fn addresses(&self) -> usize {
        self.per_address.len()
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

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn a_token_gets_its_limit_of_connections_and_no_more() {
        let mut connections = TokenConnections::default();
        for _ in 0..3 {
            assert_eq!(connections.admit("meter", A, 3, 3), Ok(()));
        }
        assert_eq!(
            connections.admit("meter", B, 3, 3),
            Err(Rejection::TooManyConnections { limit: 3 })
        );
        // Another token is counted on its own.
        assert_eq!(connections.admit("viewer", A, 3, 3), Ok(()));
        // A connection ending frees its slot.
        connections.release("meter", A);
        assert_eq!(connections.admit("meter", B, 3, 3), Ok(()));
        assert!(connections.admit("meter", A, 3, 3).is_err());
    }

    #[test]
    fn one_address_cannot_use_up_a_shared_token() {
        let mut connections = TokenConnections::default();
        for _ in 0..2 {
            assert_eq!(connections.admit("public", A, 10, 2), Ok(()));
        }
        assert_eq!(
            connections.admit("public", A, 10, 2),
            Err(Rejection::TooManyConnections { limit: 2 })
        );
        // The same token from another address still gets in.
        assert_eq!(connections.admit("public", B, 10, 2), Ok(()));
        // The refusal took no slot of the token as a whole.
        assert_eq!(connections.per_token.get("public"), Some(&3));
        connections.release("public", A);
        assert_eq!(connections.admit("public", A, 10, 2), Ok(()));
    }

    #[test]
    fn released_tokens_are_forgotten_and_a_refusal_counts_nothing() {
        let mut connections = TokenConnections::default();
        assert!(
            connections.admit("nobody", A, 0, 5).is_err(),
            "a limit of 0 refuses all"
        );
        assert!(connections.admit("nobody", A, 5, 0).is_err());
        assert_eq!(connections.tokens(), 0);
        assert!(connections.per_token_address.is_empty());
        assert_eq!(connections.admit("meter", A, 2, 2), Ok(()));
        assert_eq!(connections.admit("meter", B, 2, 2), Ok(()));
        connections.release("meter", A);
        connections.release("meter", B);
        assert_eq!(connections.tokens(), 0);
        assert!(connections.per_token_address.is_empty());
        // Releasing more than was admitted does not underflow or go negative.
        connections.release("meter", A);
        connections.release("unknown", B);
        assert_eq!(connections.tokens(), 0);
        assert_eq!(connections.admit("meter", A, 1, 1), Ok(()));
        assert!(connections.admit("meter", B, 1, 1).is_err());
    }

    #[test]
    fn handshakes_are_bounded_per_address_and_counted_in_all() {
        let mut handshakes = Handshakes::default();
        for _ in 0..3 {
            assert!(handshakes.begin(A, 3));
        }
        assert!(!handshakes.begin(A, 3), "a fourth from A is refused");
        assert!(handshakes.begin(B, 3), "B is counted on its own");
        assert_eq!(handshakes.total(), 4);
        handshakes.end(A);
        assert!(handshakes.begin(A, 3));
        for _ in 0..3 {
            handshakes.end(A);
        }
        handshakes.end(B);
        assert_eq!(handshakes.total(), 0);
        assert_eq!(handshakes.addresses(), 0);
        // Ending more than began changes nothing; a limit of 0 refuses all
        // and remembers nothing.
        handshakes.end(A);
        assert_eq!(handshakes.total(), 0);
        assert!(!handshakes.begin(B, 0));
        assert_eq!(handshakes.addresses(), 0);
    }
}
