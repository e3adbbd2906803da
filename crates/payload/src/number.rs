//! Bare numbers: the whole payload is one ASCII decimal number.

use crate::Decoded;
use crate::error::PayloadError;
use crate::time_ms::check_range;
use crate::topic::TopicTemplate;

/// Decodes a payload such as `42`, ` -3.5\n` or `1.2e3`: optional ASCII
/// whitespace around one decimal number (optional sign, digits with an
/// optional fraction, optional exponent). The sensor id comes from the
/// topic, the time is the arrival time, there is no unit.
pub(crate) fn decode(
    template: &TopicTemplate,
    topic: &str,
    payload: &[u8],
    arrival_ms: i64,
) -> Result<Vec<Decoded>, PayloadError> {
    let record = 0;
    let text = std::str::from_utf8(payload)
        .map_err(|_| PayloadError::Syntax("a number must be ASCII text".to_owned()))?
        .trim_ascii();
    if !is_decimal(text) {
        return Err(PayloadError::Syntax(
            "expected one decimal number such as 42, -3.5 or 1.2e3".to_owned(),
        ));
    }
    let value: f64 = text
        .parse()
        .map_err(|e| PayloadError::Syntax(format!("number: {e}")))?;
    if !value.is_finite() {
        return Err(PayloadError::NonFinite { record });
    }
    let sensor_id = template
        .sensor_of(topic)
        .ok_or_else(|| PayloadError::NoSensor {
            record,
            detail: format!("topic does not match template {template}"),
        })?;
    let device_time_ms =
        check_range(arrival_ms).map_err(|detail| PayloadError::BadTime { record, detail })?;
    Ok(vec![Decoded {
        sensor_id: sensor_id.to_owned(),
        device_time_ms,
        value,
        unit: None,
    }])
}

/// `[+-]? (digits [. digits?] | . digits) ([eE] [+-]? digits)?`: what Rust
/// parses as a float, without `inf`, `NaN` and the like.
fn is_decimal(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    let digits = |i: &mut usize| {
        let start = *i;
        while bytes.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    if matches!(bytes.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let mut mantissa_digits = digits(&mut i);
    if bytes.get(i) == Some(&b'.') {
        i += 1;
        mantissa_digits += digits(&mut i);
    }
    if mantissa_digits == 0 {
        return false;
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(bytes.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_grammar() {
        for good in ["0", "42", "-3.5", "+7", "1.", ".5", "1e3", "1.2E-3", "-0.0"] {
            assert!(is_decimal(good), "{good}");
        }
        for bad in [
            "", "-", ".", "e3", "1e", "1e+", "inf", "NaN", "infinity", "0x10", "1,5", "1 2", "--1",
            "1.2.3", "١",
        ] {
            assert!(!is_decimal(bad), "{bad}");
        }
    }
}
