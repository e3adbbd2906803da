//! SenML (RFC 8428) packs in JSON and CBOR: labels, records, resolution.
//!
//! Both representations are read into the same [`RawRecord`]s, which are
//! then resolved (§4.6) into [`Decoded`] readings. A pack is all-or-nothing:
//! the first record that cannot become a numeric reading refuses the pack.

use ciborium::value::Value as Cbor;
use serde_json::Value as Json;

use crate::error::{NonNumeric, PayloadError, Quoted};
use crate::time_ms::senml_time_ms;
use crate::{DecodeLimits, Decoded};

/// The SenML version this decoder implements (RFC 8428 §4.4).
pub(crate) const SENML_VERSION: f64 = 10.0;

/// RFC 9100 feature code of secondary units (RFC 8798), which this decoder
/// understands: a pack that uses them may say so with version 10 + 2^4 = 26.
const SECONDARY_UNITS_FEATURE: u32 = 4;

/// Whether a pack of base version `version` can be read: RFC 8428's
/// versions up to 10, and RFC 9100 feature versions whose lowest four bits
/// say 10 and whose feature bits name only features understood here
/// (secondary units). Anything else asks for something this decoder does
/// not know and is refused.
fn version_supported(version: f64) -> bool {
    if version <= SENML_VERSION {
        return true;
    }
    if version > f64::from(u32::MAX) {
        return false;
    }
    let bits = version as u32;
    let features = bits >> 4;
    bits & 0xF == SENML_VERSION as u32 && features & !(1 << (SECONDARY_UNITS_FEATURE - 4)) == 0
}

/// The labels of RFC 8428 §4.2 and their CBOR integer labels (§6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Label {
    BaseName,
    BaseTime,
    BaseUnit,
    BaseValue,
    BaseSum,
    BaseVersion,
    Name,
    Unit,
    Value,
    StringValue,
    BooleanValue,
    DataValue,
    Sum,
    Time,
    UpdateTime,
}

impl Label {
    fn from_json(key: &str) -> Option<Self> {
        Some(match key {
            "bn" => Self::BaseName,
            "bt" => Self::BaseTime,
            "bu" => Self::BaseUnit,
            "bv" => Self::BaseValue,
            "bs" => Self::BaseSum,
            "bver" => Self::BaseVersion,
            "n" => Self::Name,
            "u" => Self::Unit,
            "v" => Self::Value,
            "vs" => Self::StringValue,
            "vb" => Self::BooleanValue,
            "vd" => Self::DataValue,
            "s" => Self::Sum,
            "t" => Self::Time,
            "ut" => Self::UpdateTime,
            _ => return None,
        })
    }

    fn from_cbor(key: i128) -> Option<Self> {
        Some(match key {
            -2 => Self::BaseName,
            -3 => Self::BaseTime,
            -4 => Self::BaseUnit,
            -5 => Self::BaseValue,
            -6 => Self::BaseSum,
            -1 => Self::BaseVersion,
            0 => Self::Name,
            1 => Self::Unit,
            2 => Self::Value,
            3 => Self::StringValue,
            4 => Self::BooleanValue,
            8 => Self::DataValue,
            5 => Self::Sum,
            6 => Self::Time,
            7 => Self::UpdateTime,
            _ => return None,
        })
    }

    /// Base fields (RFC 8428 §4.1); all their labels start with `b`.
    fn is_base(self) -> bool {
        matches!(
            self,
            Self::BaseName
                | Self::BaseTime
                | Self::BaseUnit
                | Self::BaseValue
                | Self::BaseSum
                | Self::BaseVersion
        )
    }

    fn json_name(self) -> &'static str {
        match self {
            Self::BaseName => "bn",
            Self::BaseTime => "bt",
            Self::BaseUnit => "bu",
            Self::BaseValue => "bv",
            Self::BaseSum => "bs",
            Self::BaseVersion => "bver",
            Self::Name => "n",
            Self::Unit => "u",
            Self::Value => "v",
            Self::StringValue => "vs",
            Self::BooleanValue => "vb",
            Self::DataValue => "vd",
            Self::Sum => "s",
            Self::Time => "t",
            Self::UpdateTime => "ut",
        }
    }
}

/// A field's value, whatever the representation.
enum Field<'a> {
    Text(&'a str),
    Number(f64),
    Bool,
    Bytes,
    Other(&'static str),
}

impl<'a> Field<'a> {
    fn from_json(value: &'a Json) -> Self {
        match value {
            Json::String(s) => Self::Text(s),
            // serde_json numbers are always finite; as_f64 is Some for all.
            Json::Number(n) => n.as_f64().map_or(Self::Other("number"), Self::Number),
            Json::Bool(_) => Self::Bool,
            Json::Null => Self::Other("null"),
            Json::Array(_) => Self::Other("array"),
            Json::Object(_) => Self::Other("object"),
        }
    }

    fn from_cbor(value: &'a Cbor) -> Self {
        match value {
            Cbor::Text(s) => Self::Text(s),
            Cbor::Integer(i) => Self::Number(i128::from(*i) as f64),
            Cbor::Float(f) => Self::Number(*f),
            Cbor::Tag(4, inner) => decimal_fraction(inner).map_or(Self::Other("tag"), Self::Number),
            Cbor::Bool(_) => Self::Bool,
            Cbor::Bytes(_) => Self::Bytes,
            Cbor::Null => Self::Other("null"),
            Cbor::Array(_) => Self::Other("array"),
            Cbor::Map(_) => Self::Other("map"),
            Cbor::Tag(..) => Self::Other("tag"),
            _ => Self::Other("unknown"),
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            Self::Text(_) => "string",
            Self::Number(_) => "number",
            Self::Bool => "boolean",
            Self::Bytes => "byte string",
            Self::Other(name) => name,
        }
    }
}

/// A CBOR decimal fraction (tag 4, RFC 8949 §3.4.4): `[exponent, mantissa]`
/// with integers, read as the nearest `f64` to mantissa × 10^exponent.
fn decimal_fraction(inner: &Cbor) -> Option<f64> {
    let Cbor::Array(parts) = inner else {
        return None;
    };
    let [Cbor::Integer(exponent), Cbor::Integer(mantissa)] = parts.as_slice() else {
        return None;
    };
    let exponent = i128::from(*exponent);
    let mantissa = i128::from(*mantissa);
    // Beyond ±400 the result is 0 or infinite for any 64-bit mantissa;
    // clamp so that the text stays short.
    let exponent = exponent.clamp(-400, 400);
    // Rust's float parsing rounds correctly.
    format!("{mantissa}e{exponent}").parse().ok()
}

/// The fields of one record as given, before resolution.
#[derive(Debug, Default)]
struct RawRecord {
    base_name: Option<String>,
    base_time_s: Option<f64>,
    base_unit: Option<String>,
    base_value: Option<f64>,
    base_version: Option<f64>,
    name: Option<String>,
    unit: Option<String>,
    value: Option<f64>,
    other_values: Vec<NonNumeric>,
    has_sum: bool,
    time_s: Option<f64>,
    /// Whether any base field (`bn`, `bt`, `bu`, `bv`, `bs`, `bver`) is given.
    has_base_field: bool,
    /// Whether any regular field (`n`, `u`, a value, `s`, `t`, `ut`) is given.
    has_regular_field: bool,
}

impl RawRecord {
    /// Sets one field, checking its type (RFC 8428 Table 1).
    fn set(&mut self, record: usize, label: Label, field: Field<'_>) -> Result<(), PayloadError> {
        let wrong_type = |expected: &str, field: &Field<'_>| {
            PayloadError::malformed(
                record,
                format!(
                    "label {} must be {expected}, found {}",
                    label.json_name(),
                    field.type_name()
                ),
            )
        };
        let text = |field: Field<'_>| match field {
            Field::Text(s) => Ok(s.to_owned()),
            other => Err(wrong_type("a string", &other)),
        };
        let number = |field: Field<'_>| match field {
            Field::Number(n) => Ok(n),
            other => Err(wrong_type("a number", &other)),
        };
        if label.is_base() {
            self.has_base_field = true;
        } else {
            self.has_regular_field = true;
        }
        match label {
            Label::BaseName => self.base_name = Some(text(field)?),
            Label::BaseTime => self.base_time_s = Some(number(field)?),
            Label::BaseUnit => self.base_unit = Some(text(field)?),
            Label::BaseValue => self.base_value = Some(number(field)?),
            Label::BaseSum | Label::UpdateTime => {
                number(field)?;
            }
            Label::BaseVersion => {
                let version = number(field)?;
                if !(version.is_finite() && version >= 1.0 && version.fract() == 0.0) {
                    return Err(PayloadError::malformed(
                        record,
                        "base version must be a positive integer",
                    ));
                }
                self.base_version = Some(version);
            }
            Label::Name => self.name = Some(text(field)?),
            Label::Unit => self.unit = Some(text(field)?),
            Label::Value => self.value = Some(number(field)?),
            Label::StringValue => {
                text(field)?;
                self.other_values.push(NonNumeric::String);
            }
            Label::BooleanValue => match field {
                Field::Bool => self.other_values.push(NonNumeric::Boolean),
                other => return Err(wrong_type("a boolean", &other)),
            },
            // JSON carries data as base64url text, CBOR as a byte string.
            Label::DataValue => match field {
                Field::Text(_) | Field::Bytes => self.other_values.push(NonNumeric::Data),
                other => return Err(wrong_type("data", &other)),
            },
            Label::Sum => {
                number(field)?;
                self.has_sum = true;
            }
            Label::Time => self.time_s = Some(number(field)?),
        }
        Ok(())
    }
}

/// Records a label, refusing duplicates (CBOR maps may repeat keys).
fn note_label(seen: &mut Vec<Label>, record: usize, label: Label) -> Result<(), PayloadError> {
    if seen.contains(&label) {
        return Err(PayloadError::malformed(
            record,
            format!("label {} appears twice", label.json_name()),
        ));
    }
    seen.push(label);
    Ok(())
}

fn must_understand(record: usize, label: &str) -> PayloadError {
    PayloadError::MustUnderstand {
        record,
        label: Quoted::new(label),
    }
}

/// Decodes `application/senml+json`. A label given twice in one record is
/// not detected: the JSON parser keeps the last.
pub(crate) fn decode_json(
    payload: &[u8],
    arrival_ms: i64,
    limits: &DecodeLimits,
) -> Result<Vec<Decoded>, PayloadError> {
    let pack: Json =
        serde_json::from_slice(payload).map_err(|e| PayloadError::Syntax(format!("JSON: {e}")))?;
    let Json::Array(records) = pack else {
        return Err(not_a_pack());
    };
    read_pack(&records, arrival_ms, limits, |index, record| {
        let Json::Object(map) = record else {
            return Err(PayloadError::malformed(index, "a record must be an object"));
        };
        let mut fields = RawRecord::default();
        for (key, value) in map {
            match Label::from_json(key) {
                Some(label) => fields.set(index, label, Field::from_json(value))?,
                None if key.ends_with('_') => return Err(must_understand(index, key)),
                None => {}
            }
        }
        Ok(fields)
    })
}

/// Decodes `application/senml+cbor`: the same data model with the integer
/// labels of RFC 8428 §6. Labels given as text are unknown labels (ignored
/// unless they end in `_`); other keys are refused.
pub(crate) fn decode_cbor(
    payload: &[u8],
    arrival_ms: i64,
    limits: &DecodeLimits,
) -> Result<Vec<Decoded>, PayloadError> {
    let mut rest = payload;
    let pack: Cbor = ciborium::de::from_reader(&mut rest)
        .map_err(|e| PayloadError::Syntax(format!("CBOR: {e}")))?;
    if !rest.is_empty() {
        return Err(PayloadError::Syntax(format!(
            "CBOR: {} bytes after the pack",
            rest.len()
        )));
    }
    let Cbor::Array(records) = pack else {
        return Err(not_a_pack());
    };
    read_pack(&records, arrival_ms, limits, |index, record| {
        let Cbor::Map(entries) = record else {
            return Err(PayloadError::malformed(index, "a record must be a map"));
        };
        let mut fields = RawRecord::default();
        let mut seen = Vec::new();
        for (key, value) in entries {
            match key {
                Cbor::Integer(key) => {
                    if let Some(label) = Label::from_cbor(i128::from(*key)) {
                        note_label(&mut seen, index, label)?;
                        fields.set(index, label, Field::from_cbor(value))?;
                    }
                }
                Cbor::Text(key) if key.ends_with('_') => return Err(must_understand(index, key)),
                Cbor::Text(_) => {}
                _ => {
                    return Err(PayloadError::malformed(
                        index,
                        "record keys must be integers or strings",
                    ));
                }
            }
        }
        Ok(fields)
    })
}

/// The error for a pack that is not an array.
fn not_a_pack() -> PayloadError {
    PayloadError::Malformed {
        record: None,
        detail: "a SenML pack must be an array of records".to_owned(),
    }
}

/// Reads every record of a pack (at most the limit) with `read_record`,
/// then resolves them (RFC 8428 §4.6), whatever the encoding.
fn read_pack<T>(
    records: &[T],
    arrival_ms: i64,
    limits: &DecodeLimits,
    read_record: impl Fn(usize, &T) -> Result<RawRecord, PayloadError>,
) -> Result<Vec<Decoded>, PayloadError> {
    check_count(records.len(), limits)?;
    let raw = records
        .iter()
        .enumerate()
        .map(|(index, record)| read_record(index, record))
        .collect::<Result<Vec<_>, _>>()?;
    resolve(raw, arrival_ms)
}

fn check_count(count: usize, limits: &DecodeLimits) -> Result<(), PayloadError> {
    if count > limits.max_records {
        return Err(PayloadError::TooManyRecords {
            count,
            max: limits.max_records,
        });
    }
    Ok(())
}

/// Base fields in force (RFC 8428 §4.6): each applies to its record and all
/// later ones until a record gives it again.
#[derive(Default)]
struct Bases {
    name: String,
    time_s: f64,
    unit: Option<String>,
    /// `None` until a record gives one, so that `-0.0` stays `-0.0`.
    value: Option<f64>,
    /// The base version in force (`None`: the default, 10).
    version: Option<f64>,
}

/// Resolves records into readings (RFC 8428 §4.6), refusing the whole pack
/// at the first record that cannot become a numeric reading.
fn resolve(records: Vec<RawRecord>, arrival_ms: i64) -> Result<Vec<Decoded>, PayloadError> {
    let mut bases = Bases::default();
    let mut readings = Vec::with_capacity(records.len());
    let mut pack_version = None;
    for (record, raw) in records.into_iter().enumerate() {
        if let Some(version) = raw.base_version {
            if !version_supported(version) {
                return Err(PayloadError::UnsupportedVersion { record, version });
            }
            bases.version = Some(version);
        }
        // RFC 8428 §4.4: every record of a pack has the same version (the
        // base version in force, else 10).
        let version = bases.version.unwrap_or(SENML_VERSION);
        match pack_version {
            None => pack_version = Some(version),
            Some(first) if first != version => {
                return Err(PayloadError::malformed(
                    record,
                    format!(
                        "SenML version {version} differs from the pack's {first} \
                         (RFC 8428 §4.4: one version per pack)"
                    ),
                ));
            }
            Some(_) => {}
        }
        if let Some(name) = raw.base_name {
            bases.name = name;
        }
        if let Some(time_s) = raw.base_time_s {
            bases.time_s = time_s;
        }
        if let Some(unit) = raw.base_unit {
            bases.unit = Some(unit);
        }
        if let Some(value) = raw.base_value {
            bases.value = Some(value);
        }
        // A record of base fields only sets them for the records after it
        // and is no reading: RFC 8428 §5.1.7's first example opens its pack
        // with `{"bn":"urn:dev:ow:10e2073a01080063:"}`.
        if raw.has_base_field && !raw.has_regular_field {
            continue;
        }

        let value_fields = usize::from(raw.value.is_some()) + raw.other_values.len();
        if value_fields > 1 {
            return Err(PayloadError::malformed(record, "more than one value field"));
        }
        if let Some(&kind) = raw.other_values.first() {
            return Err(PayloadError::NotNumeric { record, kind });
        }
        let Some(value) = raw.value else {
            if raw.has_sum {
                return Err(PayloadError::NotNumeric {
                    record,
                    kind: NonNumeric::SumOnly,
                });
            }
            return Err(PayloadError::NoValue { record });
        };

        let mut name = bases.name.clone();
        name.push_str(raw.name.as_deref().unwrap_or(""));
        if name.is_empty() {
            return Err(PayloadError::NoSensor {
                record,
                detail: "record has no name and no base name".to_owned(),
            });
        }
        if !is_valid_name(&name) {
            return Err(PayloadError::BadName {
                record,
                name: Quoted::new(&name),
            });
        }

        let value = bases.value.map_or(value, |base| base + value);
        if !value.is_finite() {
            return Err(PayloadError::NonFinite { record });
        }
        let resolved_s = bases.time_s + raw.time_s.unwrap_or(0.0);
        let device_time_ms = senml_time_ms(resolved_s, arrival_ms)
            .map_err(|detail| PayloadError::BadTime { record, detail })?;

        readings.push(Decoded {
            sensor_id: name,
            device_time_ms,
            value,
            unit: raw.unit.or_else(|| bases.unit.clone()),
        });
    }
    Ok(readings)
}

/// RFC 8428 §4.5.1: only `A-Z a-z 0-9 - : . / _`, starting with a letter or digit.
pub(crate) fn is_valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b':' | b'.' | b'/' | b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_section_4_5_1() {
        for good in [
            "a",
            "0",
            "urn:dev:ow:10e2073a01080063",
            "2001:db8::2/temp",
            "a-b_c.d/e:f",
        ] {
            assert!(is_valid_name(good), "{good}");
        }
        for bad in [
            "", "-a", ":a", "_a", ".a", "/a", "a b", "a#", "ä", "a\n", "a+b",
        ] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn decimal_fractions() {
        let frac = |e: i64, m: i64| {
            decimal_fraction(&Cbor::Array(vec![
                Cbor::Integer(e.into()),
                Cbor::Integer(m.into()),
            ]))
        };
        assert_eq!(frac(-2, 27315), Some(273.15));
        assert_eq!(frac(3, 12), Some(12000.0));
        assert_eq!(frac(i64::MAX, 1), Some(f64::INFINITY));
        assert_eq!(frac(i64::MIN, 1), Some(0.0));
        assert_eq!(
            decimal_fraction(&Cbor::Array(vec![Cbor::Integer(1.into())])),
            None
        );
    }
}
