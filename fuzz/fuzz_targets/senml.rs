#![no_main]
//! MQTT sensor payloads (`polis_payload::decode`): any bytes in any format
//! give readings or a typed error, never a panic. The first byte picks the
//! format and the arrival time; the rest is the payload. Accepted readings
//! are finite, within the years 0000-9999, with a non-empty sensor id, no
//! more than the record limit; a SenML JSON pack's readings with absolute
//! times re-encode and decode to the same readings.

use libfuzzer_sys::fuzz_target;
use polis_payload::{
    DecodeLimits, Format, JsonMapping, SenmlRecord, SensorFrom, TimeFormat, TopicTemplate, decode,
    encode_senml_json,
};

const MIN_MS: i64 = -62_167_219_200_000;
const MAX_MS: i64 = 253_402_300_799_999;
const ARRIVALS_MS: [i64; 4] = [1_796_302_800_000, 0, MIN_MS, i64::MAX];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, payload)) = data.split_first() else {
        return;
    };
    let Ok(template) = TopicTemplate::parse("city/{sensor}/+") else {
        return;
    };
    let format = match selector % 5 {
        0 => Format::SenmlJson,
        1 => Format::SenmlCbor,
        2 => Format::Json(JsonMapping::default()),
        3 => Format::Json(JsonMapping {
            sensor: SensorFrom::Topic(template.clone()),
            value_pointer: "/v/0".to_owned(),
            time_pointer: Some("/t".to_owned()),
            time_format: if selector & 0x80 == 0 {
                TimeFormat::EpochSeconds
            } else {
                TimeFormat::EpochMillis
            },
        }),
        _ => Format::Number(template),
    };
    let arrival_ms = ARRIVALS_MS[usize::from(selector >> 5) % ARRIVALS_MS.len()];
    let limits = DecodeLimits {
        max_payload_bytes: 64 * 1024,
        max_records: 256,
    };
    match decode(&format, "city/m-1/power", payload, arrival_ms, &limits) {
        Ok(readings) => {
            assert!(readings.len() <= limits.max_records);
            for reading in &readings {
                assert!(reading.value.is_finite(), "values are finite");
                assert!((MIN_MS..=MAX_MS).contains(&reading.device_time_ms));
                assert!(!reading.sensor_id.is_empty(), "sensor ids are never empty");
            }
            if matches!(format, Format::SenmlJson)
                && readings.iter().all(|r| r.device_time_ms >= 268_435_456_000)
            {
                let records: Vec<SenmlRecord<'_>> = readings
                    .iter()
                    .map(|r| SenmlRecord {
                        name: &r.sensor_id,
                        time_ms: r.device_time_ms,
                        value: r.value,
                        unit: r.unit.as_deref(),
                    })
                    .collect();
                let bytes = encode_senml_json("", &records).expect("decoded readings re-encode");
                let again = decode(&format, "t", &bytes, 0, &DecodeLimits::default());
                assert_eq!(again.as_ref(), Ok(&readings), "round trip");
            }
        }
        Err(err) => {
            assert!(!err.to_string().is_empty());
            assert!(!err.reason().is_empty());
        }
    }
});
