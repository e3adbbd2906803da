//! Typed refusals of payloads, topic templates and units.

use std::fmt;

/// Longest excerpt of sender-controlled text (a name, a label) quoted in an
/// error message; longer text is cut and marked with `…`.
const MAX_QUOTED_CHARS: usize = 64;

/// Sender-controlled text for an error message: at most
/// 64 characters, quoted and escaped by `{:?}` when shown,
/// so a payload cannot forge log lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quoted(String);

impl Quoted {
    pub(crate) fn new(text: &str) -> Self {
        let mut chars = text.chars();
        let mut cut: String = chars.by_ref().take(MAX_QUOTED_CHARS).collect();
        if chars.next().is_some() {
            cut.push('…');
        }
        Self(cut)
    }

    /// The (possibly shortened) text, unescaped.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Quoted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// A value that Polis cannot use because its sensors are numeric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonNumeric {
    /// A SenML string value (`vs`), or a JSON string where a number was expected.
    String,
    /// A SenML boolean value (`vb`), or a JSON boolean.
    Boolean,
    /// A SenML data value (`vd`).
    Data,
    /// A SenML record carrying only a sum (`s`) and no value.
    SumOnly,
    /// A JSON array or object where a number was expected.
    Structure,
}

impl fmt::Display for NonNumeric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::String => "a string value",
            Self::Boolean => "a boolean value",
            Self::Data => "a data value",
            Self::SumOnly => "a sum without a value",
            Self::Structure => "an array or object",
        })
    }
}

/// Why a payload was refused. A refused payload yields no readings at all:
/// decoding is all-or-nothing per message.
///
/// `record` fields count from 0: the record of a SenML pack, or the element
/// of a top-level JSON array (0 for a single object or number).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// The payload is longer than [`DecodeLimits::max_payload_bytes`](crate::DecodeLimits).
    #[error("payload of {len_bytes} bytes exceeds the limit of {max_bytes} bytes")]
    TooLarge {
        /// Length of the payload.
        len_bytes: usize,
        /// The limit.
        max_bytes: usize,
    },
    /// The pack or array has more records than [`DecodeLimits::max_records`](crate::DecodeLimits).
    #[error("{count} records exceed the limit of {max}")]
    TooManyRecords {
        /// Number of records in the payload.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The bytes are not JSON, CBOR or a number as the format requires.
    #[error("payload does not parse: {0}")]
    Syntax(String),
    /// The payload parses but is not of the required shape: not an array of
    /// records, a label of the wrong type, two value fields in one record, a
    /// base version that is not a positive integer, a label given twice.
    #[error("{}: {detail}", record_text(*record))]
    Malformed {
        /// The record at fault, or `None` for the whole payload.
        record: Option<usize>,
        /// What is wrong.
        detail: String,
    },
    /// A SenML label ending in `_` ("must understand", RFC 8428 §4.4) that
    /// this decoder does not know.
    #[error("record {record}: unknown must-understand label {label}")]
    MustUnderstand {
        /// The record at fault.
        record: usize,
        /// The label.
        label: Quoted,
    },
    /// A SenML base version (`bver`) above 10, the version this decoder implements.
    #[error("record {record}: SenML version {version} is newer than 10")]
    UnsupportedVersion {
        /// The record at fault.
        record: usize,
        /// The version given.
        version: f64,
    },
    /// A resolved SenML name that breaks RFC 8428 §4.5.1 (only `A-Z a-z 0-9 - : . / _`,
    /// starting with a letter or digit).
    #[error("record {record}: name {name} is not a valid SenML name")]
    BadName {
        /// The record at fault.
        record: usize,
        /// The resolved name.
        name: Quoted,
    },
    /// No sensor id: a SenML record with neither name nor base name, a topic
    /// that does not match the template, a pointer that yields no non-empty string.
    #[error("record {record}: no sensor id ({detail})")]
    NoSensor {
        /// The record at fault.
        record: usize,
        /// Where the id was looked for.
        detail: String,
    },
    /// A value Polis cannot use: its sensors are numeric.
    #[error("record {record}: {kind} where a number is required")]
    NotNumeric {
        /// The record at fault.
        record: usize,
        /// What was found.
        kind: NonNumeric,
    },
    /// A record with no value at all.
    #[error("record {record}: no value")]
    NoValue {
        /// The record at fault.
        record: usize,
    },
    /// A value (after adding the base value) that is NaN or infinite.
    #[error("record {record}: value is not finite")]
    NonFinite {
        /// The record at fault.
        record: usize,
    },
    /// A time that is missing where required, of the wrong format, not
    /// finite, or outside the years 0000–9999.
    #[error("record {record}: bad time ({detail})")]
    BadTime {
        /// The record at fault.
        record: usize,
        /// What is wrong.
        detail: String,
    },
}

fn record_text(record: Option<usize>) -> String {
    match record {
        Some(index) => format!("record {index}"),
        None => "payload".to_owned(),
    }
}

impl PayloadError {
    /// A short, stable `snake_case` label for metrics: `too_large`,
    /// `too_many_records`, `bad_payload` (syntax or shape), `must_understand`,
    /// `unsupported_version`, `bad_name`, `no_sensor`, `not_numeric`,
    /// `no_value`, `non_finite`, `bad_time`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too_large",
            Self::TooManyRecords { .. } => "too_many_records",
            Self::Syntax(_) | Self::Malformed { .. } => "bad_payload",
            Self::MustUnderstand { .. } => "must_understand",
            Self::UnsupportedVersion { .. } => "unsupported_version",
            Self::BadName { .. } => "bad_name",
            Self::NoSensor { .. } => "no_sensor",
            Self::NotNumeric { .. } => "not_numeric",
            Self::NoValue { .. } => "no_value",
            Self::NonFinite { .. } => "non_finite",
            Self::BadTime { .. } => "bad_time",
        }
    }

    pub(crate) fn malformed(record: usize, detail: impl Into<String>) -> Self {
        Self::Malformed {
            record: Some(record),
            detail: detail.into(),
        }
    }
}

/// Why a topic template was refused by [`TopicTemplate::parse`](crate::TopicTemplate::parse).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The template is empty.
    #[error("topic template is empty")]
    Empty,
    /// No level is `{sensor}`.
    #[error("topic template {0} has no {{sensor}} level")]
    NoSensorLevel(Quoted),
    /// More than one level is `{sensor}`.
    #[error("topic template {0} has more than one {{sensor}} level")]
    SeveralSensorLevels(Quoted),
    /// A level mixes a wildcard or brace with other text, or is `#`.
    #[error(
        "topic template level {0} must be literal text without + # {{ }}, or exactly + or {{sensor}}"
    )]
    BadLevel(Quoted),
}

/// Why a SenML unit cannot be used for a sensor (see [`unit_factor`](crate::unit_factor)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// The payload's unit is not a SenML unit this crate converts.
    #[error("unit {0} is not a SenML unit Polis converts")]
    UnknownSenml(Quoted),
    /// The sensor's unit (as written in the scene) is not in the table.
    #[error("sensor unit {0} has no SenML equivalent in Polis's table")]
    UnknownSensorUnit(Quoted),
    /// Both units are known but measure different quantities, or differ by
    /// more than an exact scale (an offset, a physical constant).
    #[error("unit {senml} does not convert exactly to the sensor's unit {sensor}")]
    Mismatch {
        /// The payload's unit.
        senml: Quoted,
        /// The sensor's unit.
        sensor: Quoted,
    },
}

impl UnitError {
    /// A short, stable `snake_case` label for metrics: `unknown_unit` or `unit_mismatch`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::UnknownSenml(_) | Self::UnknownSensorUnit(_) => "unknown_unit",
            Self::Mismatch { .. } => "unit_mismatch",
        }
    }
}

/// Why readings could not be encoded by the encoders in this crate.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EncodeError {
    /// A value is NaN or infinite (JSON cannot carry it; Polis refuses it).
    #[error("value of {name} is not finite")]
    NonFinite {
        /// The reading's full name.
        name: Quoted,
    },
    /// The full name (base name + name) breaks RFC 8428 §4.5.1.
    #[error("name {0} is not a valid SenML name")]
    BadName(Quoted),
    /// SenML reads times below 2^28 s (before 1978-07-04T21:24:16Z) as
    /// relative to "now", so such absolute times cannot be sent; times past
    /// year 9999 cannot be written in RFC 3339.
    #[error("time {time_ms} ms since the epoch cannot be encoded")]
    TimeOutOfRange {
        /// The time.
        time_ms: i64,
    },
    /// The serializer failed (not expected for in-memory output).
    #[error("serializing failed: {0}")]
    Serialize(String),
}
