//! SenML as RFC 8428 writes it: the examples of §5.1 and §6, character for
//! character and byte for byte from the RFC's text, resolved to what the
//! RFC's own resolved forms say; then resolution rules and malformed packs.
//!
//! The examples were checked against the text of RFC 8428
//! (<https://www.rfc-editor.org/rfc/rfc8428>; the copy in the
//! `core-wg/senml-spec` repository, `rfc8428.txt`) and, for the §6 bytes,
//! against the hex other CBOR implementations quote from §6.

use polis_payload::{DecodeLimits, Decoded, Format, NonNumeric, PayloadError, decode};

/// An arrival time well after every example (2026-12-03T13:00:00Z).
const NOW_MS: i64 = 1_796_302_800_000;

fn json(text: &str) -> Result<Vec<Decoded>, PayloadError> {
    decode(
        &Format::SenmlJson,
        "senml/topic",
        text.as_bytes(),
        NOW_MS,
        &DecodeLimits::default(),
    )
}

fn cbor(bytes: &[u8]) -> Result<Vec<Decoded>, PayloadError> {
    decode(
        &Format::SenmlCbor,
        "senml/topic",
        bytes,
        NOW_MS,
        &DecodeLimits::default(),
    )
}

fn reading(sensor_id: &str, device_time_ms: i64, value: f64, unit: Option<&str>) -> Decoded {
    Decoded {
        sensor_id: sensor_id.to_owned(),
        device_time_ms,
        value,
        unit: unit.map(str::to_owned),
    }
}

fn reason(result: Result<Vec<Decoded>, PayloadError>) -> &'static str {
    match result {
        Ok(readings) => panic!("expected a refusal, got {readings:?}"),
        Err(e) => {
            // Every error renders.
            assert!(!e.to_string().is_empty());
            e.reason()
        }
    }
}

/// §1 and §2: the overview's examples, with absolute times, and a base
/// name that is the whole name when a record has none.
#[test]
fn overview_examples() {
    let n = "urn:dev:ow:10e2073a01080063";
    let expected = vec![
        reading(n, 1_276_020_076_000, 23.5, Some("Cel")),
        reading(n, 1_276_020_091_000, 23.6, Some("Cel")),
    ];
    let pack = r#"[
     {"n":"urn:dev:ow:10e2073a01080063","u":"Cel","t":1.276020076e+09,
      "v":23.5},
     {"n":"urn:dev:ow:10e2073a01080063","u":"Cel","t":1.276020091e+09,
      "v":23.6}
   ]"#;
    assert_eq!(json(pack), Ok(expected.clone()));
    let compact = r#"[
     {"bn":"urn:dev:ow:10e2073a01080063","u":"Cel","t":1.276020076e+09,
      "v":23.5},
     {"u":"Cel","t":1.276020091e+09,
      "v":23.6}
   ]"#;
    assert_eq!(json(compact), Ok(expected));
}

/// §5.1.1 Single Data Point: no time, so "now".
#[test]
fn single_data_point() {
    let pack = r#"[
     {"n":"urn:dev:ow:10e2073a01080063","u":"Cel","v":23.1}
   ]"#;
    assert_eq!(
        json(pack),
        Ok(vec![reading(
            "urn:dev:ow:10e2073a01080063",
            NOW_MS,
            23.1,
            Some("Cel")
        )])
    );
}

/// §5.1.2 Multiple Data Points, first example: base name concatenated with
/// each name, "now".
#[test]
fn multiple_data_points() {
    let pack = r#"[
  {"bn":"urn:dev:ow:10e2073a01080063:","n":"voltage","u":"V","v":120.1},
  {"n":"current","u":"A","v":1.2}
]"#;
    assert_eq!(
        json(pack),
        Ok(vec![
            reading(
                "urn:dev:ow:10e2073a01080063:voltage",
                NOW_MS,
                120.1,
                Some("V")
            ),
            reading(
                "urn:dev:ow:10e2073a01080063:current",
                NOW_MS,
                1.2,
                Some("A")
            ),
        ])
    );
}

/// §5.1.2 Multiple Data Points, second example (the pack §6 and §7 encode
/// again): base time plus relative times, base unit for records without a
/// unit, base version 5. "Tue Jun 8 18:01:16.001 UTC 2010 and at each
/// second for the previous 5 seconds."
const MULTIPLE_DATA_POINTS_WITH_TIME: &str = r#"[
     {"bn":"urn:dev:ow:10e2073a0108006:","bt":1.276020076001e+09,
      "bu":"A","bver":5,
      "n":"voltage","u":"V","v":120.1},
     {"n":"current","t":-5,"v":1.2},
     {"n":"current","t":-4,"v":1.3},
     {"n":"current","t":-3,"v":1.4},
     {"n":"current","t":-2,"v":1.5},
     {"n":"current","t":-1,"v":1.6},
     {"n":"current","v":1.7}
   ]"#;

fn multiple_data_points_with_time_resolved() -> Vec<Decoded> {
    let name = |n: &str| format!("urn:dev:ow:10e2073a0108006:{n}");
    let mut expected = vec![reading(
        &name("voltage"),
        1_276_020_076_001,
        120.1,
        Some("V"),
    )];
    for (t, v) in [
        (-5, 1.2),
        (-4, 1.3),
        (-3, 1.4),
        (-2, 1.5),
        (-1, 1.6),
        (0, 1.7),
    ] {
        expected.push(reading(
            &name("current"),
            1_276_020_076_001 + t * 1000,
            v,
            Some("A"),
        ));
    }
    expected
}

#[test]
fn multiple_data_points_with_base_time_and_unit() {
    assert_eq!(
        json(MULTIPLE_DATA_POINTS_WITH_TIME),
        Ok(multiple_data_points_with_time_resolved())
    );
}

/// §5.1.3 Multiple Measurements: humidity, position and battery of one
/// device, a base name without names, a base time with offsets.
const MULTIPLE_MEASUREMENTS: &str = r#"[
     {"bn":"urn:dev:ow:10e2073a01080063","bt":1.320067464e+09,
      "bu":"%RH","v":20},
     {"u":"lon","v":24.30621},
     {"u":"lat","v":60.07965},
     {"t":60,"v":20.3},
     {"u":"lon","t":60,"v":24.30622},
     {"u":"lat","t":60,"v":60.07965},
     {"t":120,"v":20.7},
     {"u":"lon","t":120,"v":24.30623},
     {"u":"lat","t":120,"v":60.07966},
     {"u":"%EL","t":150,"v":98},
     {"t":180,"v":21.2},
     {"u":"lon","t":180,"v":24.30628},
     {"u":"lat","t":180,"v":60.07967}
   ]"#;

/// §5.1.4 Resolved Data: "the example from the previous section in
/// resolved format".
const RESOLVED_DATA: &str = r#"[
     {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067464e+09,
      "v":20},
     {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067464e+09,
      "v":24.30621},
     {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067464e+09,
      "v":60.07965},
     {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067524e+09,
      "v":20.3},
     {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067524e+09,
      "v":24.30622},
     {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067524e+09,
      "v":60.07965},
     {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067584e+09,
      "v":20.7},
     {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067584e+09,
      "v":24.30623},
     {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067584e+09,
      "v":60.07966},
     {"n":"urn:dev:ow:10e2073a01080063","u":"%EL","t":1.320067614e+09,
      "v":98},
     {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067644e+09,
      "v":21.2},
     {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067644e+09,
      "v":24.30628},
     {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067644e+09,
      "v":60.07967}
   ]"#;

/// The readings of §5.1.4, written out (times in ms).
fn multiple_measurements_resolved() -> Vec<Decoded> {
    let n = "urn:dev:ow:10e2073a01080063";
    [
        (1_320_067_464_000, 20.0, "%RH"),
        (1_320_067_464_000, 24.30621, "lon"),
        (1_320_067_464_000, 60.07965, "lat"),
        (1_320_067_524_000, 20.3, "%RH"),
        (1_320_067_524_000, 24.30622, "lon"),
        (1_320_067_524_000, 60.07965, "lat"),
        (1_320_067_584_000, 20.7, "%RH"),
        (1_320_067_584_000, 24.30623, "lon"),
        (1_320_067_584_000, 60.07966, "lat"),
        (1_320_067_614_000, 98.0, "%EL"),
        (1_320_067_644_000, 21.2, "%RH"),
        (1_320_067_644_000, 24.30628, "lon"),
        (1_320_067_644_000, 60.07967, "lat"),
    ]
    .into_iter()
    .map(|(t, v, u)| reading(n, t, v, Some(u)))
    .collect()
}

#[test]
fn multiple_measurements_resolve_to_section_5_1_4() {
    assert_eq!(
        json(MULTIPLE_MEASUREMENTS),
        Ok(multiple_measurements_resolved())
    );
}

#[test]
fn resolved_data_gives_the_same_readings() {
    assert_eq!(json(RESOLVED_DATA), Ok(multiple_measurements_resolved()));
}

/// §5.1.5 Multiple Data Types: the string, boolean and data records cannot
/// become numeric readings, and the pack is all-or-nothing.
#[test]
fn multiple_data_types_are_refused_typed() {
    let pack = r#"[
    {"bn":"urn:dev:ow:10e2073a01080063:","n":"temp","u":"Cel","v":23.1},
    {"n":"label","vs":"Machine Room"},
    {"n":"open","vb":false},
    {"n":"nfv-reader","vd":"aGkgCg"}
  ]"#;
    assert_eq!(
        json(pack),
        Err(PayloadError::NotNumeric {
            record: 1,
            kind: NonNumeric::String
        })
    );
    // Each kind on its own.
    let one = |record: &str| json(&format!("[{record}]"));
    assert_eq!(
        one(r#"{"n":"open","vb":false}"#),
        Err(PayloadError::NotNumeric {
            record: 0,
            kind: NonNumeric::Boolean
        })
    );
    assert_eq!(
        one(r#"{"n":"nfv-reader","vd":"aGkgCg"}"#),
        Err(PayloadError::NotNumeric {
            record: 0,
            kind: NonNumeric::Data
        })
    );
    assert_eq!(
        one(r#"{"n":"energy","s":1.5}"#),
        Err(PayloadError::NotNumeric {
            record: 0,
            kind: NonNumeric::SumOnly
        })
    );
    assert_eq!(reason(one(r#"{"n":"label","vs":"x"}"#)), "not_numeric");
}

/// §5.1.6 Collection of Resources: base names change mid-pack while the
/// base time holds: "the last record would use the Base Name from the 3rd
/// record but the Base Time from the first record".
#[test]
fn collection_of_resources() {
    let pack = r#"[
     {"bn":"2001:db8::2/","bt":1.320078429e+09,
      "n":"temperature","u":"Cel","v":25.2},
     {"n":"humidity","u":"%RH","v":30},
     {"bn":"2001:db8::1/","n":"temperature","u":"Cel","v":12.3},
     {"n":"humidity","u":"%RH","v":67}
   ]"#;
    let t = 1_320_078_429_000;
    assert_eq!(
        json(pack),
        Ok(vec![
            reading("2001:db8::2/temperature", t, 25.2, Some("Cel")),
            reading("2001:db8::2/humidity", t, 30.0, Some("%RH")),
            reading("2001:db8::1/temperature", t, 12.3, Some("Cel")),
            reading("2001:db8::1/humidity", t, 67.0, Some("%RH")),
        ])
    );
}

/// §5.1.7 Setting an Actuator: a first record that holds only a base name,
/// the unit `/`, and times 0.1 s after a base time.
#[test]
fn setting_an_actuator() {
    let thermostat = r#"[
     {"bn":"urn:dev:ow:10e2073a01080063:"},
     {"n":"temp","u":"Cel","v":23.1},
     {"n":"heat","u":"/","v":1},
     {"n":"fan","u":"/","v":0}
   ]"#;
    let n = |name: &str| format!("urn:dev:ow:10e2073a01080063:{name}");
    assert_eq!(
        json(thermostat),
        Ok(vec![
            reading(&n("temp"), NOW_MS, 23.1, Some("Cel")),
            reading(&n("heat"), NOW_MS, 1.0, Some("/")),
            reading(&n("fan"), NOW_MS, 0.0, Some("/")),
        ])
    );

    let t = 1_320_078_429_000;
    let lights_on = r#"[
     {"bt":1.320078429e+09,"bu":"/","n":"2001:db8::3","v":1},
     {"n":"2001:db8::4","v":1}
   ]"#;
    assert_eq!(
        json(lights_on),
        Ok(vec![
            reading("2001:db8::3", t, 1.0, Some("/")),
            reading("2001:db8::4", t, 1.0, Some("/")),
        ])
    );

    let lights_off = r#"[
     {"bt":1.320078429e+09,"bu":"/","n":"2001:db8::3","v":0.5},
     {"n":"2001:db8::4","v":0.5},
     {"n":"2001:db8::3","t":0.1,"v":0},
     {"n":"2001:db8::4","t":0.1,"v":0}
   ]"#;
    assert_eq!(
        json(lights_off),
        Ok(vec![
            reading("2001:db8::3", t, 0.5, Some("/")),
            reading("2001:db8::4", t, 0.5, Some("/")),
            reading("2001:db8::3", t + 100, 0.0, Some("/")),
            reading("2001:db8::4", t + 100, 0.0, Some("/")),
        ])
    );
}

/// §6: the CBOR dump of the second §5.1.2 pack, byte for byte, one line
/// per line of the RFC's dump (offsets 0000 to 00c0; 0xc3 bytes). The
/// record for 1.5 A carries it as a half-precision float (`f9 3e 00`), and
/// the last record has an explicit time 0 (`06 00`), as the RFC's
/// diagnostic notation `{0: "current", 6: 0, 2: 1.7}` says.
const RFC_CBOR: &str = "\
87 a7 21 78 1b 75 72 6e 3a 64 65 76 3a 6f 77 3a
31 30 65 32 30 37 33 61 30 31 30 38 30 30 36 3a
22 fb 41 d3 03 a1 5b 00 10 62 23 61 41 20 05 00
67 76 6f 6c 74 61 67 65 01 61 56 02 fb 40 5e 06
66 66 66 66 66 a3 00 67 63 75 72 72 65 6e 74 06
24 02 fb 3f f3 33 33 33 33 33 33 a3 00 67 63 75
72 72 65 6e 74 06 23 02 fb 3f f4 cc cc cc cc cc
cd a3 00 67 63 75 72 72 65 6e 74 06 22 02 fb 3f
f6 66 66 66 66 66 66 a3 00 67 63 75 72 72 65 6e
74 06 21 02 f9 3e 00 a3 00 67 63 75 72 72 65 6e
74 06 20 02 fb 3f f9 99 99 99 99 99 9a a3 00 67
63 75 72 72 65 6e 74 06 00 02 fb 3f fb 33 33 33
33 33 33";

fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|pair| {
            let text = std::str::from_utf8(pair).expect("hex digits are ASCII");
            u8::from_str_radix(text, 16).expect("two hex digits")
        })
        .collect()
}

#[test]
fn cbor_example_of_section_6() {
    assert_eq!(hex(RFC_CBOR).len(), 0xc3);
    assert_eq!(
        cbor(&hex(RFC_CBOR)),
        Ok(multiple_data_points_with_time_resolved())
    );
}

/// A check of the transcription: the bytes above are exactly what a CBOR
/// encoder writes (shortest exact floats, keys in the RFC's order) for the
/// RFC's diagnostic notation of the same pack:
///
/// ```text
/// [{-2: "urn:dev:ow:10e2073a0108006:",
///   -3: 1276020076.001, -4: "A", -1: 5, 0: "voltage", 1: "V", 2: 120.1},
///  {0: "current", 6: -5, 2: 1.2}, {0: "current", 6: -4, 2: 1.3},
///  {0: "current", 6: -3, 2: 1.4}, {0: "current", 6: -2, 2: 1.5},
///  {0: "current", 6: -1, 2: 1.6}, {0: "current", 6: 0, 2: 1.7}]
/// ```
#[test]
fn cbor_example_is_its_diagnostic_notation() {
    use ciborium::value::Value;
    let int = |i: i64| Value::Integer(i.into());
    let text = |s: &str| Value::Text(s.to_owned());
    let mut records = vec![Value::Map(vec![
        (int(-2), text("urn:dev:ow:10e2073a0108006:")),
        (int(-3), Value::Float(1276020076.001)),
        (int(-4), text("A")),
        (int(-1), int(5)),
        (int(0), text("voltage")),
        (int(1), text("V")),
        (int(2), Value::Float(120.1)),
    ])];
    for (t, v) in [
        (-5, 1.2),
        (-4, 1.3),
        (-3, 1.4),
        (-2, 1.5),
        (-1, 1.6),
        (0, 1.7),
    ] {
        records.push(Value::Map(vec![
            (int(0), text("current")),
            (int(6), int(t)),
            (int(2), Value::Float(v)),
        ]));
    }
    let mut bytes = Vec::new();
    ciborium::ser::into_writer(&Value::Array(records), &mut bytes).expect("encode");
    assert_eq!(bytes, hex(RFC_CBOR));
}

#[test]
fn cbor_and_json_agree_on_the_example() {
    assert_eq!(cbor(&hex(RFC_CBOR)), json(MULTIPLE_DATA_POINTS_WITH_TIME));
}

#[test]
fn cbor_numbers_may_be_integers_halves_and_decimal_fractions() {
    // [{0: "a", 2: 7, 6: 1.5 (half)}, {0: "b", 2: 4([-2, 27315])}]
    let bytes = hex("82 a3 00 61 61 02 07 06 f9 3e00  a2 00 61 62 02 c4 82 21 19 6ab3");
    assert_eq!(
        cbor(&bytes),
        Ok(vec![
            reading("a", NOW_MS + 1_500, 7.0, None),
            reading("b", NOW_MS, 273.15, None),
        ])
    );
}

#[test]
fn cbor_text_labels_are_unknown_labels() {
    // {"n": "a", 0: "b", 2: 1}: the text "n" is ignored.
    let bytes = hex("81 a3 61 6e 61 61 00 61 62 02 01");
    assert_eq!(cbor(&bytes), Ok(vec![reading("b", NOW_MS, 1.0, None)]));
    // {"x_": 1, 0: "b", 2: 1}: must understand.
    let bytes = hex("81 a3 62 78 5f 01 00 61 62 02 01");
    assert_eq!(reason(cbor(&bytes)), "must_understand");
    // Unknown integer labels are ignored: {0: "b", 2: 1, 99: 0}.
    let bytes = hex("81 a3 00 61 62 02 01 18 63 00");
    assert_eq!(cbor(&bytes), Ok(vec![reading("b", NOW_MS, 1.0, None)]));
}

#[test]
fn cbor_malformed() {
    // Duplicate label: {0: "a", 0: "b", 2: 1}.
    assert_eq!(
        reason(cbor(&hex("81 a3 00 61 61 00 61 62 02 01"))),
        "bad_payload"
    );
    // A map key that is an array.
    assert_eq!(reason(cbor(&hex("81 a1 80 01"))), "bad_payload");
    // NaN value (half-precision NaN).
    assert_eq!(
        reason(cbor(&hex("81 a2 00 61 61 02 f9 7e00"))),
        "non_finite"
    );
    // Infinite time.
    assert_eq!(
        reason(cbor(&hex("81 a3 00 61 61 02 01 06 f9 7c00"))),
        "bad_time"
    );
    // Not an array, truncated, trailing garbage in a string, empty input.
    assert_eq!(reason(cbor(&hex("a1 00 61 61"))), "bad_payload");
    assert_eq!(reason(cbor(&hex("81 a2 00 61"))), "bad_payload");
    assert_eq!(reason(cbor(&[])), "bad_payload");
    // A valid pack followed by more bytes.
    assert_eq!(reason(cbor(&hex("80 00"))), "bad_payload");
    // A byte string is fine for vd, but still not numeric.
    assert_eq!(reason(cbor(&hex("81 a2 00 61 61 08 41 00"))), "not_numeric");
    // A text string for v is the wrong type.
    assert_eq!(reason(cbor(&hex("81 a2 00 61 61 02 61 31"))), "bad_payload");
}

#[test]
fn base_values_carry_forward_until_changed() {
    let pack = r#"[
      {"bn":"a:","bv":100,"bu":"W","bt":1.7e9,"n":"x","v":1},
      {"n":"y","v":2,"t":1},
      {"bv":0,"bn":"b:","n":"z","v":3,"u":"kW"},
      {"bt":0,"n":"w","v":4,"t":-10}
    ]"#;
    assert_eq!(
        json(pack),
        Ok(vec![
            reading("a:x", 1_700_000_000_000, 101.0, Some("W")),
            reading("a:y", 1_700_000_001_000, 102.0, Some("W")),
            reading("b:z", 1_700_000_000_000, 3.0, Some("kW")),
            reading("b:w", NOW_MS - 10_000, 4.0, Some("W")),
        ])
    );
}

#[test]
fn times_keep_milliseconds_and_split_at_2_pow_28() {
    let at =
        |t: &str| json(&format!(r#"[{{"n":"a","v":1,"t":{t}}}]"#)).map(|r| r[0].device_time_ms);
    assert_eq!(at("1.7000000001234e9"), Ok(1_700_000_000_123));
    assert_eq!(at("268435456"), Ok(268_435_456_000));
    assert_eq!(at("268435455.5"), Ok(NOW_MS + 268_435_455_500));
    assert_eq!(at("-0.25"), Ok(NOW_MS - 250));
    assert_eq!(at("0"), Ok(NOW_MS));
    // Year 10000 and beyond, or before year 0, are refused.
    assert_eq!(
        reason(json(r#"[{"n":"a","v":1,"t":253402300800}]"#)),
        "bad_time"
    );
    assert_eq!(reason(json(r#"[{"n":"a","v":1,"t":1e300}]"#)), "bad_time");
    assert_eq!(reason(json(r#"[{"n":"a","v":1,"t":-1e15}]"#)), "bad_time");
    // Base time + time that overflows to infinity.
    assert_eq!(
        reason(json(r#"[{"n":"a","v":1,"bt":1.7e308,"t":1.7e308}]"#)),
        "bad_time"
    );
}

#[test]
fn values_must_be_finite_after_the_base_value() {
    assert_eq!(
        reason(json(r#"[{"n":"a","bv":1.7e308,"v":1.7e308}]"#)),
        "non_finite"
    );
    // JSON cannot write NaN; as a string it is the wrong type.
    assert_eq!(reason(json(r#"[{"n":"a","v":"NaN"}]"#)), "bad_payload");
    assert_eq!(reason(json(r#"[{"n":"a","v":NaN}]"#)), "bad_payload");
    assert_eq!(reason(json(r#"[{"n":"a","v":Infinity}]"#)), "bad_payload");
    assert_eq!(reason(json(r#"[{"n":"a","v":1e400}]"#)), "bad_payload");
}

#[test]
fn must_understand_labels_refuse_the_pack() {
    assert_eq!(
        reason(json(r#"[{"n":"a","v":1},{"n":"b","v":2,"new_":1}]"#)),
        "must_understand"
    );
    // Other unknown labels are ignored.
    assert_eq!(
        json(r#"[{"n":"a","v":1,"new":{"x":[1,2]},"ct":"60"}]"#),
        Ok(vec![reading("a", NOW_MS, 1.0, None)])
    );
}

#[test]
fn rfc_9100_feature_versions_are_read_when_their_features_are_understood() {
    // 26 = 10 + 2^4: the pack uses secondary units (RFC 8798), understood.
    assert_eq!(
        json(r#"[{"bver":26,"n":"a","u":"kW","v":1.5}]"#),
        Ok(vec![reading("a", NOW_MS, 1.5, Some("kW"))])
    );
    // 42 = 10 + 2^5, and 27 (lowest bits not 10): features or a version
    // this decoder does not know.
    for version in [42.0, 27.0, 58.0] {
        assert_eq!(
            json(&format!(r#"[{{"bver":{version},"n":"a","v":1}}]"#)),
            Err(PayloadError::UnsupportedVersion { record: 0, version }),
            "{version}"
        );
    }
}

#[test]
fn base_version_up_to_10() {
    assert!(json(r#"[{"bver":10,"n":"a","v":1}]"#).is_ok());
    assert!(json(r#"[{"bver":1,"n":"a","v":1}]"#).is_ok());
    assert_eq!(
        json(r#"[{"n":"a","v":1},{"bver":11,"n":"a","v":1}]"#),
        Err(PayloadError::UnsupportedVersion {
            record: 1,
            version: 11.0
        })
    );
    for bad in ["0", "-1", "10.5", "\"10\""] {
        assert_eq!(
            reason(json(&format!(r#"[{{"bver":{bad},"n":"a","v":1}}]"#))),
            "bad_payload",
            "{bad}"
        );
    }
}

#[test]
fn every_record_of_a_pack_has_the_same_version() {
    // Given once, in force for the records after it (§4.4's usual way).
    assert!(json(r#"[{"bver":5,"n":"a","v":1},{"n":"b","v":2}]"#).is_ok());
    // Given again, the same: fine.
    assert!(json(r#"[{"bver":5,"n":"a","v":1},{"bver":5,"n":"b","v":2}]"#).is_ok());
    // The first record has the default (10); a later 5 mixes versions.
    assert_eq!(
        json(r#"[{"n":"a","v":1},{"bver":5,"n":"b","v":2}]"#),
        Err(PayloadError::Malformed {
            record: Some(1),
            detail: "SenML version 5 differs from the pack's 10 \
                     (RFC 8428 §4.4: one version per pack)"
                .into()
        })
    );
    assert_eq!(
        reason(json(
            r#"[{"bver":5,"n":"a","v":1},{"bver":10,"n":"b","v":2}]"#
        )),
        "bad_payload"
    );
}

#[test]
fn names_follow_section_4_5_1_after_concatenation() {
    assert_eq!(reason(json(r#"[{"n":"-a","v":1}]"#)), "bad_name");
    assert_eq!(reason(json(r#"[{"bn":"_x","n":"a","v":1}]"#)), "bad_name");
    assert_eq!(reason(json(r#"[{"n":"a b","v":1}]"#)), "bad_name");
    assert_eq!(reason(json(r#"[{"n":"caf\u00e9","v":1}]"#)), "bad_name");
    // The base name may end in a character a name may not start with.
    assert!(json(r#"[{"bn":"dev/","n":"-a","v":1}]"#).is_ok());
    // No name at all.
    assert_eq!(reason(json(r#"[{"v":1}]"#)), "no_sensor");
    assert_eq!(reason(json(r#"[{"bn":"","n":"","v":1}]"#)), "no_sensor");
}

#[test]
fn records_need_exactly_one_value_field() {
    assert_eq!(
        json(r#"[{"n":"a","u":"W"}]"#),
        Err(PayloadError::NoValue { record: 0 })
    );
    // A record of base fields only is no reading; its bases hold for the
    // records after it (as in §5.1.7's first example).
    assert_eq!(
        json(r#"[{"bn":"a:","bt":1.7e9,"bu":"W"},{"n":"x","v":1}]"#),
        Ok(vec![reading("a:x", 1_700_000_000_000, 1.0, Some("W"))])
    );
    assert_eq!(json(r#"[{"bn":"a:"}]"#), Ok(vec![]));
    // Its base version is still checked.
    assert_eq!(
        reason(json(r#"[{"bver":11},{"n":"x","v":1}]"#)),
        "unsupported_version"
    );
    // A record with no field at all, or a regular field but no value, is
    // still refused.
    assert_eq!(reason(json(r#"[{}]"#)), "no_value");
    assert_eq!(reason(json(r#"[{"bn":"a:","n":"x"}]"#)), "no_value");
    assert_eq!(reason(json(r#"[{"n":"a","v":1,"vs":"x"}]"#)), "bad_payload");
    // A sum beside a value is allowed and ignored.
    assert_eq!(
        json(r#"[{"n":"a","v":1,"s":20,"bs":3,"ut":60}]"#),
        Ok(vec![reading("a", NOW_MS, 1.0, None)])
    );
}

#[test]
fn malformed_packs() {
    for bad in [
        "",
        "   ",
        "{\"n\":\"a\",\"v\":1}",
        "[1,2]",
        "[[{\"n\":\"a\",\"v\":1}]]",
        "[{\"n\":1,\"v\":1}]",
        "[{\"n\":\"a\",\"v\":true}]",
        "[{\"n\":\"a\",\"v\":null}]",
        "[{\"n\":\"a\",\"v\":1,\"t\":\"now\"}]",
        "[{\"n\":\"a\",\"v\":1,\"u\":5}]",
        "[{\"n\":\"a\",\"vb\":\"true\"}]",
        "[{\"n\":\"a\",\"v\":1}",
        "[{\"n\":\"a\",\"v\":1}] x",
        "\u{feff}[]",
        "null",
        "\"[]\"",
    ] {
        assert_eq!(reason(json(bad)), "bad_payload", "{bad:?}");
    }
    // Deep nesting is refused by the parser's recursion limit, not the stack.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(reason(json(&deep)), "bad_payload");
    let deep_cbor = vec![0x81; 100_000];
    assert_eq!(reason(cbor(&deep_cbor)), "bad_payload");
}

#[test]
fn empty_pack_yields_nothing() {
    assert_eq!(json("[]"), Ok(vec![]));
    assert_eq!(cbor(&[0x80]), Ok(vec![]));
}

#[test]
fn limits_are_checked() {
    let limits = DecodeLimits {
        max_payload_bytes: 64,
        max_records: 2,
    };
    let decode_json =
        |text: &str| decode(&Format::SenmlJson, "t", text.as_bytes(), NOW_MS, &limits);
    let long = format!(r#"[{{"n":"{}","v":1}}]"#, "a".repeat(64));
    assert_eq!(
        decode_json(&long),
        Err(PayloadError::TooLarge {
            len_bytes: long.len(),
            max_bytes: 64
        })
    );
    assert_eq!(
        decode_json(r#"[{"n":"a","v":1},{"n":"b","v":1},{"n":"c","v":1}]"#),
        Err(PayloadError::TooManyRecords { count: 3, max: 2 })
    );
    assert_eq!(
        decode_json(r#"[{"n":"a","v":1},{"n":"b","v":1}]"#).map(|r| r.len()),
        Ok(2)
    );
    let huge = vec![b' '; DecodeLimits::default().max_payload_bytes + 1];
    assert_eq!(
        reason(json(std::str::from_utf8(&huge).expect("ASCII"))),
        "too_large"
    );
    // CBOR counts records too: an array of 4097 empty maps.
    let mut many = vec![0x99, 0x10, 0x01];
    many.extend(std::iter::repeat_n(0xa0, 4097));
    assert_eq!(reason(cbor(&many)), "too_many_records");
}

#[test]
fn error_messages_quote_and_shorten_sender_text() {
    let name = format!("-{}\n", "x".repeat(500));
    let pack = serde_json_pack(&name);
    let error = json(&pack).expect_err("bad name");
    let message = error.to_string();
    assert!(message.len() < 200, "{message}");
    assert!(!message.contains('\n'), "{message}");
}

fn serde_json_pack(name: &str) -> String {
    let escaped: String = name
        .chars()
        .map(|c| {
            if c == '\n' {
                "\\n".to_owned()
            } else {
                c.to_string()
            }
        })
        .collect();
    format!(r#"[{{"n":"{escaped}","v":1}}]"#)
}
