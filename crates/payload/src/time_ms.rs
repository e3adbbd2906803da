//! Times in milliseconds since the Unix epoch, and their range.

/// 0000-01-01T00:00:00Z, the earliest time RFC 3339 can write.
pub(crate) const MIN_TIME_MS: i64 = -62_167_219_200_000;
/// 9999-12-31T23:59:59.999Z, the latest time RFC 3339 can write (to the ms).
pub(crate) const MAX_TIME_MS: i64 = 253_402_300_799_999;
/// SenML times below 2^28 s are relative to "now" (RFC 8428 §4.5.3).
pub(crate) const SENML_RELATIVE_BELOW_S: f64 = 268_435_456.0;

/// Checks that `time_ms` is within the years 0000–9999.
pub(crate) fn check_range(time_ms: i64) -> Result<i64, String> {
    if (MIN_TIME_MS..=MAX_TIME_MS).contains(&time_ms) {
        Ok(time_ms)
    } else {
        Err(format!("{time_ms} ms is outside the years 0000-9999"))
    }
}

/// Milliseconds, rounded to the nearest, from a finite number of
/// milliseconds held in an `f64`; refuses what is not finite or outside
/// the years 0000–9999.
pub(crate) fn ms_from_f64(ms: f64) -> Result<i64, String> {
    if !ms.is_finite() {
        return Err("time is not finite".to_owned());
    }
    let rounded = ms.round();
    // Both bounds are exactly representable in f64 (below 2^53).
    if rounded < MIN_TIME_MS as f64 || rounded > MAX_TIME_MS as f64 {
        return Err(format!("{ms} ms is outside the years 0000-9999"));
    }
    // In range, integral and below 2^53: the cast is exact.
    Ok(rounded as i64)
}

/// A resolved SenML time (base time + time, in seconds) as ms since the
/// epoch: below 2^28 s it is relative to `arrival_ms` (RFC 8428 §4.5.3),
/// otherwise absolute. Kept to the millisecond.
pub(crate) fn senml_time_ms(resolved_s: f64, arrival_ms: i64) -> Result<i64, String> {
    if !resolved_s.is_finite() {
        return Err("time is not finite".to_owned());
    }
    if resolved_s >= SENML_RELATIVE_BELOW_S {
        return ms_from_f64(resolved_s * 1000.0);
    }
    // Relative: an offset from the arrival time. Any offset larger than the
    // whole representable span cannot land in range.
    let offset_ms = (resolved_s * 1000.0).round();
    let span_ms = (MAX_TIME_MS - MIN_TIME_MS) as f64;
    if offset_ms.abs() > span_ms {
        return Err(format!(
            "relative time {resolved_s} s lands outside the years 0000-9999"
        ));
    }
    // |offset_ms| ≤ span < 2^53: exact cast; the sum cannot overflow i64
    // for any arrival time, but check anyway.
    let Some(time_ms) = arrival_ms.checked_add(offset_ms as i64) else {
        return Err("relative time overflows".to_owned());
    };
    check_range(time_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_rfc3339_years() {
        let min = time::OffsetDateTime::from_unix_timestamp(MIN_TIME_MS / 1000);
        assert_eq!(min.map(|t| t.year()), Ok(0));
        let max = time::OffsetDateTime::from_unix_timestamp(MAX_TIME_MS / 1000);
        assert_eq!(max.map(|t| (t.year(), t.ordinal())), Ok((9999, 365)));
    }

    #[test]
    fn relative_and_absolute() {
        assert_eq!(senml_time_ms(0.0, 5_000), Ok(5_000));
        assert_eq!(senml_time_ms(-1.5, 5_000), Ok(3_500));
        assert_eq!(senml_time_ms(268_435_455.0, 0), Ok(268_435_455_000));
        assert_eq!(senml_time_ms(268_435_456.0, 99), Ok(268_435_456_000));
        assert_eq!(senml_time_ms(1.276020076001e9, 0), Ok(1_276_020_076_001));
        assert!(senml_time_ms(f64::NAN, 0).is_err());
        assert!(senml_time_ms(f64::INFINITY, 0).is_err());
        assert!(senml_time_ms(-1e300, 0).is_err());
        assert!(senml_time_ms(253_402_300_800.0, 0).is_err());
        assert_eq!(senml_time_ms(253_402_300_799.999, 0), Ok(MAX_TIME_MS));
        assert!(senml_time_ms(-1.0, MIN_TIME_MS).is_err());
    }
}
