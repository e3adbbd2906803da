//! Encoders for demo readings: SenML JSON and CBOR, and the default mapped JSON.

use ciborium::value::Value as Cbor;
use serde_json::{Map, Value as Json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::{EncodeError, Quoted};
use crate::senml::is_valid_name;
use crate::time_ms::{MAX_TIME_MS, SENML_RELATIVE_BELOW_S};

/// One reading to encode as a SenML record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SenmlRecord<'a> {
    /// The record's name; the full name (the sensor id once decoded) is the
    /// base name followed by this.
    pub name: &'a str,
    /// Device time, ms since the Unix epoch; from 1978-07-04T21:24:16Z
    /// (2^28 s) to the end of year 9999.
    pub time_ms: i64,
    /// The value; must be finite.
    pub value: f64,
    /// SenML unit name, if any.
    pub unit: Option<&'a str>,
}

/// First absolute time SenML can write: earlier ones read as relative.
const MIN_SENML_TIME_MS: i64 = SENML_RELATIVE_BELOW_S as i64 * 1000;

/// Checks a record and returns its time in seconds.
fn check(base_name: &str, record: &SenmlRecord<'_>) -> Result<f64, EncodeError> {
    let full_name = format!("{base_name}{}", record.name);
    if !is_valid_name(&full_name) {
        return Err(EncodeError::BadName(Quoted::new(&full_name)));
    }
    if !record.value.is_finite() {
        return Err(EncodeError::NonFinite {
            name: Quoted::new(&full_name),
        });
    }
    if !(MIN_SENML_TIME_MS..=MAX_TIME_MS).contains(&record.time_ms) {
        return Err(EncodeError::TimeOutOfRange {
            time_ms: record.time_ms,
        });
    }
    // Below 2^53: exact; the quotient is the nearest f64, which decodes
    // back to the same millisecond.
    Ok(record.time_ms as f64 / 1000.0)
}

/// Encodes readings as an `application/senml+json` pack:
/// `[{"bn":base_name,"n":..,"u":..,"v":..,"t":seconds}, {"n":..,"v":..,"t":..}, ..]`.
///
/// The base name goes in the first record only (omitted when empty); every
/// record carries its absolute time in seconds (to the ms) and its unit, if
/// any. [`decode`](crate::decode) with [`Format::SenmlJson`](crate::Format)
/// gives back the readings with `sensor_id` = base name + name. Refuses
/// invalid full names, non-finite values and times SenML cannot write as
/// absolute (before 2^28 s).
pub fn encode_senml_json(
    base_name: &str,
    records: &[SenmlRecord<'_>],
) -> Result<Vec<u8>, EncodeError> {
    let mut pack = Vec::with_capacity(records.len());
    for (index, record) in records.iter().enumerate() {
        let time_s = check(base_name, record)?;
        let mut map = Map::new();
        if index == 0 && !base_name.is_empty() {
            map.insert("bn".to_owned(), Json::from(base_name));
        }
        map.insert("n".to_owned(), Json::from(record.name));
        if let Some(unit) = record.unit {
            map.insert("u".to_owned(), Json::from(unit));
        }
        map.insert("v".to_owned(), Json::from(record.value));
        map.insert("t".to_owned(), Json::from(time_s));
        pack.push(Json::Object(map));
    }
    serde_json::to_vec(&Json::Array(pack)).map_err(|e| EncodeError::Serialize(e.to_string()))
}

/// Encodes readings as an `application/senml+cbor` pack: the same records as
/// [`encode_senml_json`] with the integer labels of RFC 8428 §6.
pub fn encode_senml_cbor(
    base_name: &str,
    records: &[SenmlRecord<'_>],
) -> Result<Vec<u8>, EncodeError> {
    let label = |key: i8| Cbor::Integer(key.into());
    let mut pack = Vec::with_capacity(records.len());
    for (index, record) in records.iter().enumerate() {
        let time_s = check(base_name, record)?;
        let mut map = Vec::with_capacity(5);
        if index == 0 && !base_name.is_empty() {
            map.push((label(-2), Cbor::Text(base_name.to_owned())));
        }
        map.push((label(0), Cbor::Text(record.name.to_owned())));
        if let Some(unit) = record.unit {
            map.push((label(1), Cbor::Text(unit.to_owned())));
        }
        map.push((label(2), Cbor::Float(record.value)));
        map.push((label(6), Cbor::Float(time_s)));
        pack.push(Cbor::Map(map));
    }
    let mut bytes = Vec::new();
    ciborium::ser::into_writer(&Cbor::Array(pack), &mut bytes)
        .map_err(|e| EncodeError::Serialize(e.to_string()))?;
    Ok(bytes)
}

/// Encodes one reading as the JSON object the [default
/// `JsonMapping`](crate::JsonMapping) reads:
/// `{"sensor":"meter-1","time":"2026-12-03T13:00:00.25Z","value":4.2}`
/// (the time in RFC 3339, UTC, to the ms). Refuses non-finite values and
/// times outside the years 0000–9999. The sensor id may be any string.
pub fn encode_json(sensor_id: &str, time_ms: i64, value: f64) -> Result<Vec<u8>, EncodeError> {
    if !value.is_finite() {
        return Err(EncodeError::NonFinite {
            name: Quoted::new(sensor_id),
        });
    }
    let out_of_range = || EncodeError::TimeOutOfRange { time_ms };
    let time = OffsetDateTime::from_unix_timestamp_nanos(i128::from(time_ms) * 1_000_000)
        .map_err(|_| out_of_range())?;
    let time = time.format(&Rfc3339).map_err(|_| out_of_range())?;
    let mut map = Map::new();
    map.insert("sensor".to_owned(), Json::from(sensor_id));
    map.insert("time".to_owned(), Json::from(time));
    map.insert("value".to_owned(), Json::from(value));
    serde_json::to_vec(&Json::Object(map)).map_err(|e| EncodeError::Serialize(e.to_string()))
}
