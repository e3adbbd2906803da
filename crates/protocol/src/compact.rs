//! The compact wire form of an [`Update`](crate::Update)'s values.
//!
//! Value updates are most of what Polis sends, and a frame usually carries a
//! handful of them for sensors of one area, sorted by handle, stamped within
//! a few seconds of each other, with values a meter wrote in a few decimal
//! digits. In binary formats (postcard, on the wire) the values are one
//! byte string of records, each
//!
//! 1. a header varint: the zigzag difference to the previous record's sensor
//!    handle (the first: to 0), shifted left by 3, or'ed with the value's
//!    form (below);
//! 2. the zigzag varint difference to the previous record's device time in
//!    ms (the first: to 0);
//! 3. the value: for forms 0–6, a zigzag varint `m` with value = `m / 10^form`
//!    (used only when that division gives back exactly the same `f64`,
//!    bit for bit); for form 7, the `f64`'s 8 bytes, little-endian.
//!
//! So `43.27` bar is 2 bytes and a whole record typically 5–8 bytes instead
//! of 17, with no loss: every `f64` (NaN payloads, −0.0, infinities
//! included) decodes to the same bits. Human-readable formats (JSON) get the
//! plain list of [`ValueUpdate`]s.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ValueUpdate;

/// Most bytes one record can take: header (zigzag of a 33-bit difference,
/// shifted by 3: 6 bytes), time difference (10), value (9 for a varint of a
/// 54-bit zigzag, 8 for raw).
pub(crate) const MAX_RECORD_BYTES: usize = 6 + 10 + 9;

const RAW_F64: u8 = 7;
const POW10: [f64; 7] = [1.0, 10.0, 100.0, 1_000.0, 10_000.0, 100_000.0, 1_000_000.0];
/// Largest `|m|` tried: integers up to 2^53 are exact in an `f64`.
const MAX_EXACT: f64 = 9_007_199_254_740_992.0;

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn take_varint(bytes: &mut &[u8]) -> Result<u64, &'static str> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first().ok_or("value record cut short")?;
        *bytes = rest;
        // The tenth byte holds bit 63 only.
        if shift == 63 && byte > 1 {
            return Err("varint overflows 64 bits in a value record");
        }
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    // Unreachable: the tenth byte either ends the varint or overflows.
    Err("varint overflows 64 bits in a value record")
}

/// The decimal form of `value`: the fewest digits `k` (0–6) and the integer
/// `m` with `m / 10^k == value` exactly, if there are such.
fn decimal(value: f64) -> Option<(u8, i64)> {
    // −0.0 would come back as 0.0 (m = 0).
    if !value.is_finite() || (value == 0.0 && value.is_sign_negative()) {
        return None;
    }
    for (digits, scale) in (0u8..).zip(POW10) {
        let scaled = (value * scale).round();
        if scaled.abs() > MAX_EXACT {
            return None;
        }
        if (scaled / scale).to_bits() == value.to_bits() {
            return Some((digits, scaled as i64));
        }
    }
    None
}

/// Encodes `values` as the byte string described in the module docs.
pub(crate) fn encode(values: &[ValueUpdate], out: &mut Vec<u8>) {
    let (mut sensor, mut time_ms) = (0i64, 0i64);
    for value in values {
        let form = decimal(value.value);
        let header = zigzag(i64::from(value.sensor) - sensor) << 3
            | u64::from(form.map_or(RAW_F64, |(digits, _)| digits));
        put_varint(out, header);
        put_varint(out, zigzag(value.device_time_ms.wrapping_sub(time_ms)));
        match form {
            Some((_, m)) => put_varint(out, zigzag(m)),
            None => out.extend_from_slice(&value.value.to_le_bytes()),
        }
        sensor = i64::from(value.sensor);
        time_ms = value.device_time_ms;
    }
}

/// Decodes a byte string made by [`encode`].
pub(crate) fn decode(mut bytes: &[u8]) -> Result<Vec<ValueUpdate>, &'static str> {
    let mut values = Vec::with_capacity(bytes.len() / 5);
    let (mut sensor, mut time_ms) = (0i64, 0i64);
    while !bytes.is_empty() {
        let header = take_varint(&mut bytes)?;
        let form = (header & 7) as u8;
        sensor = sensor
            .checked_add(unzigzag(header >> 3))
            .ok_or("sensor handle out of range")?;
        let handle = u32::try_from(sensor).map_err(|_| "sensor handle out of range")?;
        time_ms = time_ms.wrapping_add(unzigzag(take_varint(&mut bytes)?));
        let value = if form == RAW_F64 {
            let (raw, rest) = bytes
                .split_first_chunk::<8>()
                .ok_or("value record cut short")?;
            bytes = rest;
            f64::from_le_bytes(*raw)
        } else {
            unzigzag(take_varint(&mut bytes)?) as f64 / POW10[usize::from(form)]
        };
        values.push(ValueUpdate {
            sensor: handle,
            device_time_ms: time_ms,
            value,
        });
    }
    Ok(values)
}

/// `#[serde(with = …)]` for `Update::values`.
pub(crate) fn serialize<S: Serializer>(
    values: &[ValueUpdate],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    if serializer.is_human_readable() {
        return values.serialize(serializer);
    }
    let mut bytes = Vec::with_capacity(values.len() * 8);
    encode(values, &mut bytes);
    serializer.serialize_bytes(&bytes)
}

/// `#[serde(with = …)]` for `Update::values`.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<ValueUpdate>, D::Error> {
    if deserializer.is_human_readable() {
        return Vec::<ValueUpdate>::deserialize(deserializer);
    }
    deserializer.deserialize_bytes(RecordsVisitor)
}

struct RecordsVisitor;

impl serde::de::Visitor<'_> for RecordsVisitor {
    type Value = Vec<ValueUpdate>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("the byte string of compact value records")
    }

    fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Self::Value, E> {
        decode(bytes).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(values: &[ValueUpdate]) -> Vec<ValueUpdate> {
        let mut bytes = Vec::new();
        encode(values, &mut bytes);
        decode(&bytes).expect("decodes")
    }

    #[test]
    fn decimal_values_are_short_and_exact() {
        let values = [
            ValueUpdate {
                sensor: 7,
                device_time_ms: 1_780_000_000_000,
                value: 43.27,
            },
            ValueUpdate {
                sensor: 9,
                device_time_ms: 1_780_000_000_250,
                value: 0.125,
            },
            ValueUpdate {
                sensor: 9,
                device_time_ms: 1_780_000_000_250,
                value: -3.0,
            },
        ];
        let mut bytes = Vec::new();
        encode(&values, &mut bytes);
        // 43.27: header 1 + time 6 + m=4327 2; 0.125: header 1 + time
        // +250 2 + m=125 2 (3 digits); -3.0: 1 + 1 + 1. Plain postcard: 17 each.
        assert_eq!(bytes.len(), 9 + 5 + 3, "{bytes:?}");
        assert_eq!(round_trip(&values), values);
    }

    #[test]
    fn every_f64_comes_back_bit_for_bit() {
        let awkward = [
            f64::NAN,
            -f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            0.0,
            0.1 + 0.2,
            1e300,
            -1e-300,
            f64::MIN_POSITIVE,
            9_007_199_254_740_993.0,
            123_456.789_012_3,
        ];
        for (handle, value) in (0u32..).zip(awkward) {
            let values = [ValueUpdate {
                sensor: u32::MAX - handle,
                device_time_ms: i64::MIN,
                value,
            }];
            let back = round_trip(&values);
            assert_eq!(back[0].value.to_bits(), value.to_bits(), "{value:?}");
            assert_eq!(back[0].sensor, u32::MAX - handle);
            assert_eq!(back[0].device_time_ms, i64::MIN);
        }
    }

    #[test]
    fn records_stay_within_their_bound() {
        let worst = [
            ValueUpdate {
                sensor: u32::MAX,
                device_time_ms: i64::MIN,
                value: f64::NAN,
            },
            ValueUpdate {
                sensor: 0,
                device_time_ms: i64::MAX,
                value: -4_503_599_627_370_495.0,
            },
        ];
        for value in worst {
            let mut bytes = Vec::new();
            encode(&[value], &mut bytes);
            assert!(bytes.len() <= MAX_RECORD_BYTES, "{} bytes", bytes.len());
        }
    }

    #[test]
    fn malformed_records_are_errors() {
        assert_eq!(decode(&[0x80]), Err("value record cut short"));
        assert_eq!(decode(&[7, 0, 1, 2]), Err("value record cut short"));
        let mut overflow = [0xff; 10];
        overflow[9] = 0x02;
        assert_eq!(
            decode(&overflow),
            Err("varint overflows 64 bits in a value record")
        );
        assert_eq!(
            decode(&[0xff; 11]),
            Err("varint overflows 64 bits in a value record")
        );
        let mut longest = [0xff; 10];
        longest[9] = 0x01;
        assert_eq!(take_varint(&mut &longest[..]), Ok(u64::MAX));
        // A negative handle difference from 0.
        assert_eq!(decode(&[0b1_000, 0, 0]), Err("sensor handle out of range"));
    }
}
