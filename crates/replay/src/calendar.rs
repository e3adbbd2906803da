//! Simulated time: from wall time to simulated instants, and from simulated
//! instants to positions in the 2016 profile year.

use std::time::Duration;

/// Milliseconds in an hour.
pub(crate) const MS_PER_HOUR: i64 = 3_600_000;
/// Milliseconds in a day.
pub(crate) const MS_PER_DAY: i64 = 24 * MS_PER_HOUR;
/// Milliseconds per profile row (15 minutes).
const MS_PER_QUARTER_HOUR: i64 = MS_PER_HOUR / 4;
/// Quarter hours per day.
const QUARTERS_PER_DAY: i64 = 96;
/// Days before the first of each month in a leap year (2016).
const LEAP_YEAR_MONTH_START_DAY: [i64; 12] =
    [0, 31, 60, 91, 121, 152, 182, 213, 244, 274, 305, 335];

/// The simulated instant after `wall_elapsed` of wall time:
/// `start_ms + wall_elapsed × speed`, in ms since the Unix epoch.
/// Saturates at the ends of `i64` instead of overflowing; a non-finite
/// product counts as no time elapsed.
pub fn sim_time_ms(start_ms: i64, speed: f64, wall_elapsed: Duration) -> i64 {
    let advance_ms = wall_elapsed.as_secs_f64() * 1000.0 * speed;
    if !advance_ms.is_finite() {
        return start_ms;
    }
    // `as` saturates for out-of-range floats.
    start_ms.saturating_add(advance_ms.round() as i64)
}

/// Month (1..=12) and day of month (1..=31) of a UTC instant, for any `i64`
/// of milliseconds (proleptic Gregorian calendar).
pub(crate) fn month_day_utc(time_ms: i64) -> (u32, u32) {
    // Howard Hinnant's `civil_from_days`, on days since 1970-01-01.
    let days = time_ms.div_euclid(MS_PER_DAY);
    let z = days + 719_468;
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    (month as u32, day as u32)
}

/// Fractional row of the 2016 profile table for a simulated instant: the
/// same calendar date (month and day) and UTC time of day in 2016. 2016 is a
/// leap year, so every date, 29 February included, exists in it; other years
/// simply never reach the 29 February rows.
pub(crate) fn profile_position(sim_time_ms: i64) -> f64 {
    let (month, day) = month_day_utc(sim_time_ms);
    let month_start = LEAP_YEAR_MONTH_START_DAY
        .get(month.saturating_sub(1) as usize)
        .copied()
        .unwrap_or(0);
    let day_of_year = month_start + i64::from(day) - 1;
    let ms_of_day = sim_time_ms.rem_euclid(MS_PER_DAY);
    (day_of_year * QUARTERS_PER_DAY) as f64 + ms_of_day as f64 / MS_PER_QUARTER_HOUR as f64
}

/// Hours since midnight UTC of an instant, `0.0..24.0`.
pub(crate) fn hour_of_day_utc(time_ms: i64) -> f64 {
    time_ms.rem_euclid(MS_PER_DAY) as f64 / MS_PER_HOUR as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sim_time_runs_at_speed_and_saturates() {
        assert_eq!(sim_time_ms(1_000, 60.0, Duration::from_secs(2)), 121_000);
        assert_eq!(sim_time_ms(1_000, 1.0, Duration::ZERO), 1_000);
        assert_eq!(
            sim_time_ms(i64::MAX - 5, 1e9, Duration::from_secs(9)),
            i64::MAX
        );
        assert_eq!(sim_time_ms(7, f64::NAN, Duration::from_secs(1)), 7);
    }

    #[test]
    fn calendar_dates() {
        assert_eq!(month_day_utc(0), (1, 1));
        assert_eq!(month_day_utc(-1), (12, 31));
        // 2016-02-29T12:00Z and 2023-03-01T00:00Z.
        assert_eq!(month_day_utc(1_456_747_200_000), (2, 29));
        assert_eq!(month_day_utc(1_677_628_800_000), (3, 1));
        // No panic at the extremes.
        let _ = month_day_utc(i64::MIN);
        let _ = month_day_utc(i64::MAX);
    }

    #[test]
    fn profile_positions() {
        // 2023-03-01T00:00Z is 1 March: day 60 of 2016 (0-based).
        assert_eq!(profile_position(1_677_628_800_000), (60 * 96) as f64);
        // 2024-12-31T23:45Z is the last row.
        assert_eq!(profile_position(1_735_688_700_000), (366 * 96 - 1) as f64);
        // 2025-06-21T11:07:30Z.
        let t = 1_750_504_050_000;
        assert_eq!(profile_position(t), (172 * 96) as f64 + 44.5);
        assert!(profile_position(i64::MIN).is_finite());
        assert_eq!(hour_of_day_utc(t), 11.125);
    }
}

/// The rounds of a replay: one every `interval` from its start (a late
/// round delays the next rather than bunching them), until the optional
/// `duration` has passed.
#[derive(Debug)]
pub struct Rounds {
    started: tokio::time::Instant,
    ticker: tokio::time::Interval,
    deadline: Option<tokio::time::Instant>,
}

impl Rounds {
    /// Rounds starting now.
    pub fn new(interval: Duration, duration: Option<Duration>) -> Self {
        let started = tokio::time::Instant::now();
        let mut ticker = tokio::time::interval_at(started, interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self {
            started,
            ticker,
            deadline: duration.and_then(|d| started.checked_add(d)),
        }
    }

    /// Waits for the next round; false once the duration has passed.
    pub async fn next(&mut self) -> bool {
        match self.deadline {
            Some(deadline) => {
                tokio::select! {
                    _ = self.ticker.tick() => {}
                    () = tokio::time::sleep_until(deadline) => return false,
                }
                tokio::time::Instant::now() < deadline
            }
            None => {
                self.ticker.tick().await;
                true
            }
        }
    }

    /// Wall time since the first round.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}
