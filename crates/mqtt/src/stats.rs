//! A source's counters, readable from any thread (the metrics endpoint).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Upper bound of the first bucket of [`AckLatency`], µs.
const FIRST_BUCKET_US: f64 = 50.0;
/// Ratio between successive bucket bounds of [`AckLatency`].
const BUCKET_RATIO: f64 = 1.25;
/// Buckets of [`AckLatency`]: 50 µs · 1.25^k, up to ~40 s, then one for
/// everything longer.
pub const ACK_LATENCY_BUCKETS: usize = 62;

/// How long messages waited from arrival to their acknowledgement (queued
/// for the broker once durable, in order): counts per bucket, bounds
/// 50 µs · 1.25^k (a percentile read from it is within 25 %).
#[derive(Debug)]
pub struct AckLatency {
    buckets: [AtomicU64; ACK_LATENCY_BUCKETS],
    /// Sum of every latency recorded, µs.
    sum_us: AtomicU64,
}

impl Default for AckLatency {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_us: AtomicU64::new(0),
        }
    }
}

impl AckLatency {
    /// Upper bound of bucket `index`, seconds (infinite for the last).
    pub fn bound_secs(index: usize) -> f64 {
        if index + 1 >= ACK_LATENCY_BUCKETS {
            return f64::INFINITY;
        }
        FIRST_BUCKET_US * BUCKET_RATIO.powi(index as i32) / 1e6
    }

    /// Counts one acknowledgement that took `latency`.
    pub fn record(&self, latency: Duration) {
        let us = latency.as_secs_f64() * 1e6;
        let whole_us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.sum_us.fetch_add(whole_us, Ordering::Relaxed);
        let index = if us <= FIRST_BUCKET_US {
            0
        } else {
            ((us / FIRST_BUCKET_US).ln() / BUCKET_RATIO.ln()).ceil() as usize
        };
        self.buckets[index.min(ACK_LATENCY_BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
    }

    /// Sum of every latency recorded so far, seconds.
    pub fn sum_secs(&self) -> f64 {
        self.sum_us.load(Ordering::Relaxed) as f64 / 1e6
    }

    /// Counts per bucket so far.
    pub fn counts(&self) -> [u64; ACK_LATENCY_BUCKETS] {
        std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed))
    }

    /// The upper bound of the bucket holding the `p`-th percentile of
    /// `counts` (e.g. the difference of two [`AckLatency::counts`]),
    /// seconds; `None` without any count.
    pub fn percentile_secs(counts: &[u64; ACK_LATENCY_BUCKETS], p: f64) -> Option<f64> {
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((p / 100.0) * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (index, count) in counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(Self::bound_secs(index));
            }
        }
        None
    }
}

/// Counters of one MQTT source.
#[derive(Debug)]
pub struct SourceStats {
    /// The source's name.
    pub name: String,
    /// True while connected to its broker.
    pub connected: AtomicBool,
    /// Subscriptions the broker granted on the current connection.
    pub subscribed: AtomicU64,
    /// Messages received.
    pub messages: AtomicU64,
    /// Readings handed to the twin and recorded anew (accepted or stale;
    /// exact repeats, e.g. sent again by the broker after a reconnect, are
    /// not counted).
    pub readings: AtomicU64,
    /// Arrival to acknowledgement of QoS 1 messages.
    pub ack_latency: AckLatency,
    refused: Mutex<BTreeMap<&'static str, u64>>,
}

impl SourceStats {
    /// Zeroed counters of source `name`.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            connected: AtomicBool::new(false),
            subscribed: AtomicU64::new(0),
            messages: AtomicU64::new(0),
            readings: AtomicU64::new(0),
            ack_latency: AckLatency::default(),
            refused: Mutex::new(BTreeMap::new()),
        }
    }

    /// Counts `count` refusals for `reason`.
    pub fn refuse(&self, reason: &'static str, count: u64) {
        let mut refused = self
            .refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *refused.entry(reason).or_default() += count;
    }

    /// Refusals so far by reason, sorted by reason.
    pub fn refused(&self) -> Vec<(&'static str, u64)> {
        self.refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(reason, count)| (*reason, *count))
            .collect()
    }

    /// Refusals so far for `reason`.
    pub fn refused_for(&self, reason: &str) -> u64 {
        self.refused()
            .into_iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, count)| count)
    }

    pub(crate) fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Relaxed);
        self.subscribed.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_land_in_buckets_a_quarter_apart_and_percentiles_read_back() {
        let latency = AckLatency::default();
        for _ in 0..98 {
            latency.record(Duration::from_micros(900));
        }
        latency.record(Duration::from_millis(20));
        latency.record(Duration::from_secs(3600));
        let counts = latency.counts();
        assert_eq!(counts.iter().sum::<u64>(), 100);
        assert_eq!(
            counts[ACK_LATENCY_BUCKETS - 1],
            1,
            "an hour is beyond the last bound"
        );
        let p50 = AckLatency::percentile_secs(&counts, 50.0).expect("counts");
        assert!((900e-6..900e-6 * 1.25).contains(&p50), "{p50}");
        let p99 = AckLatency::percentile_secs(&counts, 99.0).expect("counts");
        assert!((20e-3..20e-3 * 1.25).contains(&p99), "{p99}");
        assert_eq!(
            AckLatency::percentile_secs(&[0; ACK_LATENCY_BUCKETS], 50.0),
            None
        );
        assert!(AckLatency::bound_secs(ACK_LATENCY_BUCKETS - 2) > 30.0);
        let sum = latency.sum_secs();
        assert!((3600.0..3600.2).contains(&sum), "{sum}");
    }
}
