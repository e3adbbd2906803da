//! Sans-IO decoding of sensor payloads (SenML JSON/CBOR, mapped JSON, bare numbers) and SenML unit checks; no I/O.
//!
//! This crate contains no networking code and reads no clock: the MQTT
//! source hands [`decode`] a message's topic, its payload bytes and the time
//! it arrived, and gets [`Decoded`] readings or a typed [`PayloadError`]
//! whose [`reason`](PayloadError::reason) labels a metric. The twin still
//! checks every reading (known sensor, device time, value); this crate only
//! turns bytes into readings.
//!
//! # Formats
//! - [`Format::SenmlJson`] and [`Format::SenmlCbor`]: Sensor Measurement
//!   Lists (RFC 8428), `application/senml+json` and `application/senml+cbor`.
//!   Base fields are resolved as in §4.6 (base name + name, base time + time,
//!   base value + value, base unit when a record has none; each base field
//!   holds until a later record gives it again). The resolved name is the
//!   sensor id, unchanged. Times below 2^28 s are relative to the arrival
//!   time, others are seconds since the Unix epoch, kept to the millisecond;
//!   a record without time is "now". Unknown labels are ignored, unknown
//!   labels ending in `_` refuse the pack, base versions above 10 refuse it.
//! - [`Format::Json`]: one JSON object (or an array of them) read through
//!   RFC 6901 pointers, see [`JsonMapping`].
//! - [`Format::Number`]: the payload is one decimal number; the sensor id
//!   comes from the topic, the time is the arrival time.
//!
//! # All or nothing
//! A payload yields all its readings or none: the first record that cannot
//! become a numeric reading refuses the whole message, so a message is
//! applied whole or not at all. Polis's sensors are numeric, so SenML records
//! with a string, boolean or data value, or only a sum, are refused with
//! [`PayloadError::NotNumeric`]; a record with no value field at all is
//! refused with [`PayloadError::NoValue`] (RFC 8428 §4.2 requires exactly
//! one value field unless a sum is given), except a record of base fields
//! only, which sets them for the records after it and yields no reading (as
//! the first record of RFC 8428 §5.1.7's example does).
//!
//! # Units
//! [`Decoded::unit`] is the record's SenML unit, unchecked. The caller
//! compares it with the sensor's unit from the scene through
//! [`unit_factor`] or [`convert_value`], which accept only equal units and
//! exactly defined scales (W→kW, l/s→m3/s, …) and refuse everything else.
//!
//! # Example
//! ```
//! use polis_payload::{DecodeLimits, Decoded, Format, decode, unit_factor};
//!
//! let payload = br#"[{"bn":"meter-1:","n":"p","u":"W","v":1500,"t":1.7e9}]"#;
//! let readings = decode(&Format::SenmlJson, "city/senml", payload, 0, &DecodeLimits::default())?;
//! assert_eq!(
//!     readings,
//!     [Decoded {
//!         sensor_id: "meter-1:p".to_owned(),
//!         device_time_ms: 1_700_000_000_000,
//!         value: 1500.0,
//!         unit: Some("W".to_owned()),
//!     }]
//! );
//! // The scene's sensor is in kW: 1500 W is 1.5 kW.
//! assert_eq!(unit_factor("W", "kW"), Ok(0.001));
//! assert_eq!(polis_payload::convert_value(1500.0, "W", "kW"), Ok(1.5));
//! # Ok::<(), polis_payload::PayloadError>(())
//! ```
//!
//! # Encoding
//! [`encode_senml_json`], [`encode_senml_cbor`] and [`encode_json`] write
//! demo readings that [`decode`] reads back unchanged.

mod encode;
mod error;
mod json_mapping;
mod number;
mod senml;
mod time_ms;
mod topic;
mod units;

pub use encode::{SenmlRecord, encode_json, encode_senml_cbor, encode_senml_json};
pub use error::{EncodeError, NonNumeric, PayloadError, Quoted, TemplateError, UnitError};
pub use json_mapping::{JsonMapping, SensorFrom, TimeFormat, is_valid_pointer};
pub use topic::TopicTemplate;
pub use units::{convert_value, unit_factor};

/// How a source's (or topic filter's) payloads are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// SenML in JSON (`application/senml+json`, RFC 8428 §5).
    SenmlJson,
    /// SenML in CBOR (`application/senml+cbor`, RFC 8428 §6).
    SenmlCbor,
    /// A plain JSON object, or an array of them, read through pointers.
    Json(JsonMapping),
    /// One ASCII decimal number; the template's `{sensor}` level of the
    /// topic is the sensor id, the arrival time is the device time.
    Number(TopicTemplate),
}

/// Bounds on what one payload may make the decoder hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Longest payload accepted, in bytes; checked before parsing. Default 256 KiB.
    pub max_payload_bytes: usize,
    /// Most records (SenML) or array elements (mapped JSON) in one payload.
    /// Default 4096.
    pub max_records: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_payload_bytes: 256 * 1024,
            max_records: 4096,
        }
    }
}

/// One reading decoded from a payload, before the twin checks it.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The sensor id: the resolved SenML name (base name + name), the
    /// topic's `{sensor}` level, or the string a JSON pointer found. The
    /// caller maps it to a scene sensor (for instance by stripping a prefix).
    pub sensor_id: String,
    /// When the device measured the value, ms since the Unix epoch; within
    /// the years 0000–9999.
    pub device_time_ms: i64,
    /// The value, finite, in `unit`.
    pub value: f64,
    /// The SenML unit (the record's, else the base unit); `None` when the
    /// payload gives none (always for mapped JSON and numbers).
    pub unit: Option<String>,
}

/// Decodes one message's payload into readings, all or nothing.
///
/// `topic` is the message's MQTT topic (used by topic templates),
/// `arrival_ms` the time it arrived in ms since the Unix epoch (the "now"
/// of SenML relative times, and the device time where the payload gives
/// none). Payloads longer than `limits.max_payload_bytes` are refused before
/// they are parsed. Never panics, whatever the bytes.
pub fn decode(
    format: &Format,
    topic: &str,
    payload: &[u8],
    arrival_ms: i64,
    limits: &DecodeLimits,
) -> Result<Vec<Decoded>, PayloadError> {
    if payload.len() > limits.max_payload_bytes {
        return Err(PayloadError::TooLarge {
            len_bytes: payload.len(),
            max_bytes: limits.max_payload_bytes,
        });
    }
    match format {
        Format::SenmlJson => senml::decode_json(payload, arrival_ms, limits),
        Format::SenmlCbor => senml::decode_cbor(payload, arrival_ms, limits),
        Format::Json(mapping) => json_mapping::decode(mapping, topic, payload, arrival_ms, limits),
        Format::Number(template) => number::decode(template, topic, payload, arrival_ms),
    }
}
