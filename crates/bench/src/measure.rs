//! What every scenario measures with: the run's clock, the measurement
//! window, a latency histogram shared by many tasks, and percentiles.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A sender gives up when its client takes no readings for this long.
pub(crate) const STALL_TIMEOUT: Duration = Duration::from_secs(10);
/// After the last reading, receivers keep receiving this long.
const DRAIN: Duration = Duration::from_secs(2);

/// Microseconds since the start of the run: the one clock of senders and
/// receivers (all in the load generator's process).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock(Instant);

impl Clock {
    pub(crate) fn now_us(self) -> u64 {
        u64::try_from(self.0.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn us_at(self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.0).as_micros()).unwrap_or(u64::MAX)
    }
}

/// The run's clock origin (set once at the start of a scenario).
static CLOCK_ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// Starts the run's clock (later calls keep the first origin).
pub(crate) fn start_clock() {
    let _ = CLOCK_ORIGIN.set(Instant::now());
}

/// When the sender runs and which readings are measured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    pub(crate) clock: Clock,
    /// Sending starts.
    pub(crate) start: Instant,
    /// Readings sent from here on are measured.
    pub(crate) measure_from: Instant,
    /// Sending stops.
    pub(crate) until: Instant,
    /// Receivers stop receiving.
    pub(crate) end: Instant,
}

impl Window {
    /// The measurement window starting now: a warm-up of a fifth of the
    /// measured time (at least 1 s), the measured time, then [`DRAIN`].
    pub(crate) fn starting_now(seconds: f64) -> Window {
        let start = Instant::now();
        let measure_from = start + Duration::from_secs_f64((seconds / 5.0).max(1.0));
        let until = measure_from + Duration::from_secs_f64(seconds);
        Window {
            clock: Clock(CLOCK_ORIGIN.get().copied().unwrap_or(start)),
            start,
            measure_from,
            until,
            end: until + DRAIN,
        }
    }

    /// Whether a reading sent at `sent_us` (on [`Window::clock`]) is measured.
    pub(crate) fn measured(&self, sent_us: u64) -> bool {
        sent_us >= self.clock.us_at(self.measure_from) && sent_us < self.clock.us_at(self.until)
    }

    /// The measured part's length, seconds.
    pub(crate) fn measured_s(&self) -> f64 {
        self.until.duration_since(self.measure_from).as_secs_f64()
    }
}

/// Latencies in log-linear buckets: 1 µs wide below 1,024 µs, then 64
/// buckets per power of two (≤ 1.6 % error); fixed size, shared by all
/// receivers.
pub(crate) struct LatencyHistogram {
    buckets: Vec<AtomicU64>,
}

const LINEAR_US: u64 = 1_024;
const SUB_BUCKETS: u64 = 64;
const MAX_EXPONENT: u32 = 40;

impl LatencyHistogram {
    pub(crate) fn new() -> Self {
        let count = LINEAR_US + u64::from(MAX_EXPONENT - 9) * SUB_BUCKETS;
        Self {
            buckets: (0..count).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn index(us: u64) -> usize {
        let us = us.min((1 << MAX_EXPONENT) - 1);
        if us < LINEAR_US {
            return us as usize;
        }
        let exponent = 63 - us.leading_zeros(); // >= 10
        let sub = (us >> (exponent - 6)) & (SUB_BUCKETS - 1);
        (LINEAR_US + u64::from(exponent - 10) * SUB_BUCKETS + sub) as usize
    }

    /// Middle of bucket `index`, µs.
    fn value_us(index: usize) -> f64 {
        let index = index as u64;
        if index < LINEAR_US {
            return index as f64 + 0.5;
        }
        let exponent = (index - LINEAR_US) / SUB_BUCKETS + 10;
        let sub = (index - LINEAR_US) % SUB_BUCKETS;
        let width = 1u64 << (exponent - 6);
        ((1u64 << exponent) + sub * width) as f64 + width as f64 / 2.0
    }

    pub(crate) fn record(&self, us: u64) {
        if let Some(bucket) = self.buckets.get(Self::index(us)) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// The `p`-th percentile in milliseconds (NaN when empty).
    pub(crate) fn percentile_ms(&self, p: f64) -> f64 {
        let total = self.count();
        if total == 0 {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (index, bucket) in self.buckets.iter().enumerate() {
            seen += bucket.load(Ordering::Relaxed);
            if seen >= rank {
                return Self::value_us(index) / 1e3;
            }
        }
        f64::NAN
    }

    /// The largest latency recorded, milliseconds (NaN when empty).
    pub(crate) fn max_ms(&self) -> f64 {
        self.buckets
            .iter()
            .rposition(|b| b.load(Ordering::Relaxed) > 0)
            .map_or(f64::NAN, |i| Self::value_us(i) / 1e3)
    }
}

/// The `p`-th percentile of sorted values (NaN when empty).
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_round_trip_within_two_percent() {
        for us in [
            0u64,
            1,
            999,
            1_023,
            1_024,
            1_500,
            65_432,
            3_000_000,
            1 << 39,
        ] {
            let value = LatencyHistogram::value_us(LatencyHistogram::index(us));
            let error = (value - us as f64).abs() / (us as f64).max(1.0);
            assert!(
                error <= 0.02 || (value - us as f64).abs() <= 0.5,
                "{us} → {value}"
            );
        }
    }

    #[test]
    fn histogram_percentiles() {
        let histogram = LatencyHistogram::new();
        for us in 1..=1_000u64 {
            histogram.record(us);
        }
        assert_eq!(histogram.count(), 1_000);
        assert!((histogram.percentile_ms(50.0) - 0.5005).abs() < 0.001);
        assert!((histogram.percentile_ms(99.0) - 0.9905).abs() < 0.001);
    }
}
