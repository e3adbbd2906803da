//! Properties: encoders round-trip through `decode`, and `decode` never
//! panics, whatever the bytes.

use polis_payload::{
    DecodeLimits, Decoded, Format, JsonMapping, SenmlRecord, TopicTemplate, decode, encode_json,
    encode_senml_cbor, encode_senml_json,
};
use proptest::prelude::*;

/// 2^28 s in ms: the first absolute SenML time.
const MIN_SENML_MS: i64 = 268_435_456_000;
const MAX_MS: i64 = 253_402_300_799_999;

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9:./_-]{0,20}"
}

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |v| v.is_finite()),
        -1e6..1e6f64,
        Just(0.0),
        Just(-0.0),
    ]
}

fn unit() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(prop_oneof![
        Just("kW".to_owned()),
        Just("l/s".to_owned()),
        Just("%RH".to_owned()),
        Just("Cel".to_owned()),
    ])
}

type Owned = (String, i64, f64, Option<String>);

fn records() -> impl Strategy<Value = Vec<Owned>> {
    proptest::collection::vec((name(), MIN_SENML_MS..=MAX_MS, value(), unit()), 0..12)
}

fn borrowed(records: &[Owned]) -> Vec<SenmlRecord<'_>> {
    records
        .iter()
        .map(|(name, time_ms, value, unit)| SenmlRecord {
            name,
            time_ms: *time_ms,
            value: *value,
            unit: unit.as_deref(),
        })
        .collect()
}

fn expected(base_name: &str, records: &[Owned]) -> Vec<Decoded> {
    records
        .iter()
        .map(|(name, time_ms, value, unit)| Decoded {
            sensor_id: format!("{base_name}{name}"),
            device_time_ms: *time_ms,
            value: *value,
            unit: unit.clone(),
        })
        .collect()
}

/// Compares values bit for bit (so -0.0 and 0.0 differ).
fn same(a: &[Decoded], b: &[Decoded]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(a, b)| {
            a.sensor_id == b.sensor_id
                && a.device_time_ms == b.device_time_ms
                && a.value.to_bits() == b.value.to_bits()
                && a.unit == b.unit
        })
}

fn any_format() -> impl Strategy<Value = Format> {
    prop_oneof![
        Just(Format::SenmlJson),
        Just(Format::SenmlCbor),
        Just(Format::Json(JsonMapping::default())),
        Just(Format::Number(
            TopicTemplate::parse("a/{sensor}").expect("valid template")
        )),
    ]
}

proptest! {
    #[test]
    fn senml_json_round_trips(
        base in proptest::option::of(name()),
        records in records(),
        arrival_ms in any::<i64>(),
    ) {
        let base = base.unwrap_or_default();
        let bytes = encode_senml_json(&base, &borrowed(&records)).expect("encodes");
        let decoded = decode(&Format::SenmlJson, "t", &bytes, arrival_ms, &DecodeLimits::default());
        let decoded = decoded.expect("decodes");
        prop_assert!(same(&decoded, &expected(&base, &records)), "{}", String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn senml_cbor_round_trips(
        base in proptest::option::of(name()),
        records in records(),
        arrival_ms in any::<i64>(),
    ) {
        let base = base.unwrap_or_default();
        let bytes = encode_senml_cbor(&base, &borrowed(&records)).expect("encodes");
        let decoded = decode(&Format::SenmlCbor, "t", &bytes, arrival_ms, &DecodeLimits::default());
        prop_assert!(same(&decoded.expect("decodes"), &expected(&base, &records)));
    }

    #[test]
    fn mapped_json_round_trips(
        sensor in "\\PC{0,30}".prop_filter("non-empty", |s| !s.is_empty()),
        time_ms in -62_167_219_200_000..=MAX_MS,
        value in value(),
    ) {
        let bytes = encode_json(&sensor, time_ms, value).expect("encodes");
        let format = Format::Json(JsonMapping::default());
        let decoded = decode(&format, "t", &bytes, 0, &DecodeLimits::default()).expect("decodes");
        let want = [Decoded { sensor_id: sensor, device_time_ms: time_ms, value, unit: None }];
        prop_assert!(same(&decoded, &want));
    }

    #[test]
    fn encoders_refuse_times_senml_reads_as_relative(
        time_ms in -1_000_000_000_000i64..MIN_SENML_MS,
    ) {
        let records = [SenmlRecord { name: "a", time_ms, value: 1.0, unit: None }];
        prop_assert!(encode_senml_json("", &records).is_err());
        prop_assert!(encode_senml_cbor("", &records).is_err());
    }

    #[test]
    fn decode_never_panics_on_arbitrary_bytes(
        format in any_format(),
        payload in proptest::collection::vec(any::<u8>(), 0..512),
        arrival_ms in any::<i64>(),
    ) {
        let limits = DecodeLimits::default();
        if let Err(error) = decode(&format, "a/b", &payload, arrival_ms, &limits) {
            prop_assert!(!error.to_string().is_empty());
            prop_assert!(!error.reason().is_empty());
        }
    }

    #[test]
    fn decode_never_panics_on_near_valid_senml(
        keys in proptest::collection::vec(
            prop_oneof![
                Just("n"), Just("bn"), Just("v"), Just("bv"), Just("t"), Just("bt"),
                Just("u"), Just("bu"), Just("vs"), Just("vb"), Just("vd"), Just("s"),
                Just("bs"), Just("bver"), Just("ut"), Just("x_"), Just("x"),
            ],
            0..8,
        ),
        values in proptest::collection::vec(
            prop_oneof![
                Just("1".to_owned()), Just("-1e308".to_owned()), Just("1e308".to_owned()),
                Just("268435456".to_owned()), Just("\"a\"".to_owned()), Just("\"\"".to_owned()),
                Just("true".to_owned()), Just("null".to_owned()), Just("[]".to_owned()),
                Just("{}".to_owned()), Just("11".to_owned()),
                any::<f64>().prop_filter("finite", |v| v.is_finite()).prop_map(|v| format!("{v:e}")),
            ],
            8,
        ),
        arrival_ms in any::<i64>(),
    ) {
        let fields: Vec<String> = keys
            .iter()
            .zip(&values)
            .map(|(key, value)| format!("\"{key}\":{value}"))
            .collect();
        let pack = format!("[{{{}}}]", fields.join(","));
        let result = decode(&Format::SenmlJson, "t", pack.as_bytes(), arrival_ms, &DecodeLimits::default());
        if let Ok(readings) = result {
            for reading in readings {
                prop_assert!(reading.value.is_finite());
                prop_assert!((-62_167_219_200_000..=MAX_MS).contains(&reading.device_time_ms));
            }
        }
    }
}
