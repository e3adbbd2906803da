//! Plain JSON objects read through RFC 6901 JSON pointers.

use serde_json::Value as Json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::{NonNumeric, PayloadError};
use crate::time_ms::{check_range, ms_from_f64};
use crate::topic::TopicTemplate;
use crate::{DecodeLimits, Decoded};

/// How a plain JSON object is read: where its sensor id, value and time are.
///
/// The payload is one object, or a top-level array of objects read alike
/// (several readings, all-or-nothing). The [`Default`] mapping reads what
/// [`encode_json`](crate::encode_json) writes:
/// `{"sensor": "meter-1", "time": "2026-12-03T13:00:00.250Z", "value": 4.2}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonMapping {
    /// Where the sensor id comes from.
    pub sensor: SensorFrom,
    /// RFC 6901 JSON pointer to the value, e.g. `/value`; it must point at a
    /// JSON number (strings, even numeric ones, are refused).
    pub value_pointer: String,
    /// RFC 6901 JSON pointer to the device time; `None` takes the arrival time.
    pub time_pointer: Option<String>,
    /// How the time found by `time_pointer` is written.
    pub time_format: TimeFormat,
}

impl Default for JsonMapping {
    fn default() -> Self {
        Self {
            sensor: SensorFrom::Pointer("/sensor".to_owned()),
            value_pointer: "/value".to_owned(),
            time_pointer: Some("/time".to_owned()),
            time_format: TimeFormat::Rfc3339,
        }
    }
}

impl JsonMapping {
    /// Checks the pointers' syntax (RFC 6901: empty, or `/`-separated tokens
    /// where `~` is only followed by `0` or `1`), so a configuration error
    /// shows at start rather than as a refusal of every message. Returns the
    /// first bad pointer.
    pub fn check(&self) -> Result<(), String> {
        let mut pointers = vec![self.value_pointer.as_str()];
        if let SensorFrom::Pointer(pointer) = &self.sensor {
            pointers.push(pointer);
        }
        if let Some(pointer) = &self.time_pointer {
            pointers.push(pointer);
        }
        match pointers.into_iter().find(|p| !is_valid_pointer(p)) {
            Some(bad) => Err(bad.to_owned()),
            None => Ok(()),
        }
    }
}

/// True when `pointer` is a JSON pointer (RFC 6901): empty, or `/`-separated
/// reference tokens whose `~` escapes are `~0` or `~1`.
pub fn is_valid_pointer(pointer: &str) -> bool {
    if pointer.is_empty() {
        return true;
    }
    if !pointer.starts_with('/') {
        return false;
    }
    let mut chars = pointer.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return false;
        }
    }
    true
}

/// Where a mapped JSON payload's sensor id comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SensorFrom {
    /// The `{sensor}` level of the message's topic.
    Topic(TopicTemplate),
    /// An RFC 6901 JSON pointer into the object; it must point at a non-empty string.
    Pointer(String),
}

/// How a mapped JSON payload writes its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeFormat {
    /// An RFC 3339 string, e.g. `2026-12-03T13:00:00.250Z` (sub-millisecond
    /// digits are truncated).
    Rfc3339,
    /// A JSON number of seconds since the Unix epoch (fractions kept to the ms).
    EpochSeconds,
    /// A JSON number of milliseconds since the Unix epoch (rounded to the ms).
    EpochMillis,
}

pub(crate) fn decode(
    mapping: &JsonMapping,
    topic: &str,
    payload: &[u8],
    arrival_ms: i64,
    limits: &DecodeLimits,
) -> Result<Vec<Decoded>, PayloadError> {
    let document: Json =
        serde_json::from_slice(payload).map_err(|e| PayloadError::Syntax(format!("JSON: {e}")))?;
    let items: &[Json] = match &document {
        Json::Array(items) => {
            if items.len() > limits.max_records {
                return Err(PayloadError::TooManyRecords {
                    count: items.len(),
                    max: limits.max_records,
                });
            }
            items
        }
        single => std::slice::from_ref(single),
    };
    // From the topic: the same id for every element, checked once.
    let source = match &mapping.sensor {
        SensorFrom::Topic(template) => IdSource::Topic(template.sensor_of(topic).ok_or_else(
            || PayloadError::NoSensor {
                record: 0,
                detail: format!("topic does not match template {template}"),
            },
        )?),
        SensorFrom::Pointer(pointer) => IdSource::Pointer(pointer),
    };
    items
        .iter()
        .enumerate()
        .map(|(record, item)| {
            let sensor_id = match source {
                IdSource::Topic(id) => id.to_owned(),
                IdSource::Pointer(pointer) => sensor_at(item, pointer, record)?,
            };
            let value = value_at(item, &mapping.value_pointer, record)?;
            let device_time_ms = match &mapping.time_pointer {
                None => check_range(arrival_ms)
                    .map_err(|detail| PayloadError::BadTime { record, detail })?,
                Some(pointer) => time_at(item, pointer, mapping.time_format, record)?,
            };
            Ok(Decoded {
                sensor_id,
                device_time_ms,
                value,
                unit: None,
            })
        })
        .collect()
}

/// A sensor id found in the topic, or the pointer to look it up in each element.
#[derive(Clone, Copy)]
enum IdSource<'a> {
    Topic(&'a str),
    Pointer(&'a str),
}

fn sensor_at(item: &Json, pointer: &str, record: usize) -> Result<String, PayloadError> {
    match item.pointer(pointer) {
        Some(Json::String(id)) if !id.is_empty() => Ok(id.clone()),
        _ => Err(PayloadError::NoSensor {
            record,
            detail: format!("no non-empty string at {pointer:?}"),
        }),
    }
}

fn value_at(item: &Json, pointer: &str, record: usize) -> Result<f64, PayloadError> {
    let not_numeric = |kind| PayloadError::NotNumeric { record, kind };
    match item.pointer(pointer) {
        None | Some(Json::Null) => Err(PayloadError::NoValue { record }),
        Some(Json::Number(n)) => match n.as_f64() {
            Some(v) if v.is_finite() => Ok(v),
            _ => Err(PayloadError::NonFinite { record }),
        },
        Some(Json::String(_)) => Err(not_numeric(NonNumeric::String)),
        Some(Json::Bool(_)) => Err(not_numeric(NonNumeric::Boolean)),
        Some(Json::Array(_) | Json::Object(_)) => Err(not_numeric(NonNumeric::Structure)),
    }
}

fn time_at(
    item: &Json,
    pointer: &str,
    format: TimeFormat,
    record: usize,
) -> Result<i64, PayloadError> {
    let bad_time = |detail: String| PayloadError::BadTime { record, detail };
    let Some(found) = item.pointer(pointer) else {
        return Err(bad_time(format!("no time at {pointer:?}")));
    };
    match (format, found) {
        (TimeFormat::Rfc3339, Json::String(text)) => {
            let time = OffsetDateTime::parse(text, &Rfc3339)
                .map_err(|e| bad_time(format!("not RFC 3339: {e}")))?;
            let ms = time.unix_timestamp_nanos().div_euclid(1_000_000);
            let ms = i64::try_from(ms).map_err(|_| bad_time("time out of range".to_owned()))?;
            check_range(ms).map_err(bad_time)
        }
        (TimeFormat::EpochSeconds, Json::Number(n)) => {
            let s = n.as_f64().unwrap_or(f64::NAN);
            ms_from_f64(s * 1000.0).map_err(bad_time)
        }
        (TimeFormat::EpochMillis, Json::Number(n)) => {
            // Integers are exact; as_f64 would round those above 2^53,
            // which are out of range anyway.
            match n.as_i64() {
                Some(ms) => check_range(ms).map_err(bad_time),
                None => ms_from_f64(n.as_f64().unwrap_or(f64::NAN)).map_err(bad_time),
            }
        }
        (TimeFormat::Rfc3339, _) => Err(bad_time("expected an RFC 3339 string".to_owned())),
        (_, _) => Err(bad_time("expected a JSON number".to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointer_syntax() {
        for good in ["", "/", "/a", "/a/0", "/a~0b", "/a~1b"] {
            assert!(is_valid_pointer(good), "{good}");
        }
        for bad in ["a", "/a~", "/a~2", "value"] {
            assert!(!is_valid_pointer(bad), "{bad}");
        }
        let mut mapping = JsonMapping::default();
        assert_eq!(mapping.check(), Ok(()));
        mapping.time_pointer = Some("time".to_owned());
        assert_eq!(mapping.check(), Err("time".to_owned()));
    }
}
