//! What subscriptions may cost the twin: items entering or leaving viewers'
//! areas per tick, per second in all and per second per viewer.
//!
//! A subscription's cost is the number of items it touches: those its area
//! query finds, then each item that enters or leaves. The twin works through
//! subscriptions in slices of at most [`InterestBudget::items_per_tick`]
//! items, round robin over the viewers with work, so that readings and
//! acknowledgements are applied between two slices; and a viewer whose
//! subscriptions cost more than its share per second waits (its latest
//! subscription replacing any it had queued) until its allowance refills.
//! One viewer switching between the whole city and a corner many times a
//! second so gets its fair share of the twin and no more.

use std::time::Duration;

use bevy::prelude::*;

/// Limits on the work subscriptions may cause. [`Default`] is unlimited
/// (every subscription is handled whole in the tick it arrives), for tests
/// and tools; the server sets its limits from its configuration.
#[derive(Resource, Debug, Clone, Copy, PartialEq)]
pub struct InterestBudget {
    /// Items entered, left or queried per tick, over all viewers.
    pub items_per_tick: u64,
    /// Items per second over all viewers.
    pub items_per_second: f64,
    /// Items per second for one viewer.
    pub items_per_second_per_viewer: f64,
}

impl InterestBudget {
    /// No limit.
    pub const UNLIMITED: InterestBudget = InterestBudget {
        items_per_tick: u64::MAX,
        items_per_second: f64::INFINITY,
        items_per_second_per_viewer: f64::INFINITY,
    };
}

impl Default for InterestBudget {
    fn default() -> Self {
        Self::UNLIMITED
    }
}

/// Time since the server started, set before each tick by whoever runs the
/// twin (the twin reads no clock). Allowances refill by it.
#[derive(Resource, Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TwinClock {
    /// Monotonic time since start.
    pub since_start: Duration,
}

/// A token bucket of items: refills at `rate` per second up to a second's
/// worth, may go into debt (a subscription's area query is charged whole),
/// and allows work only while it is positive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Allowance {
    items: f64,
    refilled_at: Duration,
}

impl Allowance {
    /// A full allowance for `rate` items per second at `now`.
    pub(crate) fn full(rate: f64, now: Duration) -> Self {
        Self {
            items: capacity(rate),
            refilled_at: now,
        }
    }

    /// Adds what `rate` earned since the last refill, up to a second's worth.
    pub(crate) fn refill(&mut self, rate: f64, now: Duration) {
        if !rate.is_finite() {
            self.items = f64::INFINITY;
            return;
        }
        let elapsed_s = now.saturating_sub(self.refilled_at).as_secs_f64();
        self.refilled_at = self.refilled_at.max(now);
        self.items = (self.items + rate * elapsed_s).min(capacity(rate));
    }

    /// Items that may be spent now (0 while in debt).
    pub(crate) fn available(&self) -> u64 {
        if self.items >= u64::MAX as f64 {
            u64::MAX
        } else if self.items >= 1.0 {
            self.items as u64
        } else {
            0
        }
    }

    /// Whether the allowance is in debt (waiting for a refill).
    pub(crate) fn in_debt(&self) -> bool {
        self.items < 0.0
    }

    /// Charges `items`; may go into debt.
    pub(crate) fn spend(&mut self, items: u64) {
        if self.items.is_finite() {
            self.items -= items as f64;
        }
    }
}

/// A second's worth of `rate`, at least one item.
fn capacity(rate: f64) -> f64 {
    rate.max(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_allowance_refills_at_its_rate_up_to_a_second_and_may_go_into_debt() {
        let start = Duration::from_secs(10);
        let mut allowance = Allowance::full(1_000.0, start);
        assert_eq!(allowance.available(), 1_000);
        allowance.spend(1_600);
        assert!(allowance.in_debt());
        assert_eq!(allowance.available(), 0);
        allowance.refill(1_000.0, start + Duration::from_millis(500));
        assert!(allowance.in_debt(), "-600 + 500 is still in debt");
        allowance.refill(1_000.0, start + Duration::from_millis(700));
        assert_eq!(allowance.available(), 100);
        allowance.refill(1_000.0, start + Duration::from_secs(60));
        assert_eq!(allowance.available(), 1_000, "at most a second's worth");
        // A clock that goes backwards earns nothing.
        allowance.spend(1_000);
        allowance.refill(1_000.0, start);
        assert_eq!(allowance.available(), 0);
    }

    #[test]
    fn an_unlimited_allowance_never_runs_out() {
        let mut allowance = Allowance::full(f64::INFINITY, Duration::ZERO);
        allowance.spend(u64::MAX);
        allowance.refill(f64::INFINITY, Duration::from_secs(1));
        assert_eq!(allowance.available(), u64::MAX);
        assert!(!allowance.in_debt());
    }
}
