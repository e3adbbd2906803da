//! Plain JSON read through pointers, and bare numbers.

use polis_payload::{
    DecodeLimits, Decoded, Format, JsonMapping, NonNumeric, PayloadError, SensorFrom, TimeFormat,
    TopicTemplate, decode, encode_json,
};

const NOW_MS: i64 = 1_796_302_800_000;

fn template(s: &str) -> TopicTemplate {
    TopicTemplate::parse(s).expect("valid template")
}

fn run(format: &Format, topic: &str, payload: &str) -> Result<Vec<Decoded>, PayloadError> {
    decode(
        format,
        topic,
        payload.as_bytes(),
        NOW_MS,
        &DecodeLimits::default(),
    )
}

fn reading(sensor_id: &str, device_time_ms: i64, value: f64) -> Decoded {
    Decoded {
        sensor_id: sensor_id.to_owned(),
        device_time_ms,
        value,
        unit: None,
    }
}

fn reason(result: Result<Vec<Decoded>, PayloadError>) -> &'static str {
    match result {
        Ok(readings) => panic!("expected a refusal, got {readings:?}"),
        Err(e) => {
            assert!(!e.to_string().is_empty());
            e.reason()
        }
    }
}

#[test]
fn default_mapping_reads_sensor_time_and_value() {
    let format = Format::Json(JsonMapping::default());
    assert_eq!(
        run(
            &format,
            "any/topic",
            r#"{"sensor":"meter-1","time":"2026-12-03T13:00:00.250Z","value":4.2}"#
        ),
        Ok(vec![reading("meter-1", NOW_MS + 250, 4.2)])
    );
    // Offsets are honoured; digits past the ms are truncated.
    assert_eq!(
        run(
            &format,
            "t",
            r#"{"sensor":"m","time":"2026-12-03T14:00:00.1239+01:00","value":-1}"#
        ),
        Ok(vec![reading("m", NOW_MS + 123, -1.0)])
    );
}

#[test]
fn encode_json_round_trips_through_the_default_mapping() {
    let format = Format::Json(JsonMapping::default());
    for (time_ms, value) in [
        (NOW_MS + 7, 0.1),
        (0, -5.0),
        (-1, 1e300),
        (253_402_300_799_999, 3.0),
    ] {
        let bytes = encode_json("sensor \"quoted\" ü", time_ms, value).expect("encodes");
        assert_eq!(
            decode(&format, "t", &bytes, NOW_MS, &DecodeLimits::default()),
            Ok(vec![reading("sensor \"quoted\" ü", time_ms, value)]),
            "{}",
            String::from_utf8_lossy(&bytes)
        );
    }
    assert!(encode_json("s", 0, f64::NAN).is_err());
    assert!(encode_json("s", 253_402_300_800_000, 1.0).is_err());
    assert!(encode_json("s", i64::MIN, 1.0).is_err());
}

#[test]
fn sensor_from_topic_and_nested_pointers() {
    let format = Format::Json(JsonMapping {
        sensor: SensorFrom::Topic(template("city/{sensor}/power")),
        value_pointer: "/data/0/p_kw".to_owned(),
        time_pointer: Some("/ts".to_owned()),
        time_format: TimeFormat::EpochMillis,
    });
    assert_eq!(
        run(
            &format,
            "city/m-7/power",
            r#"{"ts":1700000000123,"data":[{"p_kw":3}]}"#
        ),
        Ok(vec![reading("m-7", 1_700_000_000_123, 3.0)])
    );
    assert_eq!(
        run(
            &format,
            "city/m-7/energy",
            r#"{"ts":1,"data":[{"p_kw":3}]}"#
        ),
        Err(PayloadError::NoSensor {
            record: 0,
            detail: "topic does not match template city/{sensor}/power".to_owned()
        })
    );
}

#[test]
fn arrays_give_several_readings_all_or_nothing() {
    let format = Format::Json(JsonMapping {
        sensor: SensorFrom::Pointer("/id".to_owned()),
        value_pointer: "/v".to_owned(),
        time_pointer: Some("/t".to_owned()),
        time_format: TimeFormat::EpochSeconds,
    });
    assert_eq!(
        run(
            &format,
            "t",
            r#"[{"id":"a","v":1,"t":1700000000.5},{"id":"b","v":2,"t":1700000001}]"#
        ),
        Ok(vec![
            reading("a", 1_700_000_000_500, 1.0),
            reading("b", 1_700_000_001_000, 2.0)
        ])
    );
    assert_eq!(
        run(
            &format,
            "t",
            r#"[{"id":"a","v":1,"t":1},{"id":"b","v":"2","t":1}]"#
        ),
        Err(PayloadError::NotNumeric {
            record: 1,
            kind: NonNumeric::String
        })
    );
    assert_eq!(run(&format, "t", "[]"), Ok(vec![]));
    let limits = DecodeLimits {
        max_records: 1,
        ..DecodeLimits::default()
    };
    assert_eq!(
        decode(
            &format,
            "t",
            br#"[{"id":"a","v":1,"t":1},{"id":"b","v":1,"t":1}]"#,
            NOW_MS,
            &limits
        ),
        Err(PayloadError::TooManyRecords { count: 2, max: 1 })
    );
}

#[test]
fn arrival_time_when_no_time_pointer() {
    let format = Format::Json(JsonMapping {
        time_pointer: None,
        ..JsonMapping::default()
    });
    assert_eq!(
        run(&format, "t", r#"{"sensor":"a","value":1,"time":"ignored"}"#),
        Ok(vec![reading("a", NOW_MS, 1.0)])
    );
}

#[test]
fn mapped_json_refusals() {
    let format = Format::Json(JsonMapping::default());
    let time = r#""time":"2026-12-03T13:00:00Z""#;
    let cases = [
        (
            format!(r#"{{"sensor":"a",{time},"value":"4.2"}}"#),
            "not_numeric",
        ),
        (
            format!(r#"{{"sensor":"a",{time},"value":true}}"#),
            "not_numeric",
        ),
        (
            format!(r#"{{"sensor":"a",{time},"value":[1]}}"#),
            "not_numeric",
        ),
        (
            format!(r#"{{"sensor":"a",{time},"value":null}}"#),
            "no_value",
        ),
        (format!(r#"{{"sensor":"a",{time}}}"#), "no_value"),
        (
            format!(r#"{{"sensor":"a",{time},"value":1e999}}"#),
            "bad_payload",
        ),
        (format!(r#"{{"sensor":"",{time},"value":1}}"#), "no_sensor"),
        (format!(r#"{{"sensor":7,{time},"value":1}}"#), "no_sensor"),
        (format!(r#"{{{time},"value":1}}"#), "no_sensor"),
        (r#"{"sensor":"a","value":1}"#.to_owned(), "bad_time"),
        (
            r#"{"sensor":"a","value":1,"time":1700000000}"#.to_owned(),
            "bad_time",
        ),
        (
            r#"{"sensor":"a","value":1,"time":"yesterday"}"#.to_owned(),
            "bad_time",
        ),
        (
            r#"{"sensor":"a","value":1,"time":"2026-12-03 13:00:00"}"#.to_owned(),
            "bad_time",
        ),
        (
            r#"{"sensor":"a","value":1,"time":"10000-01-01T00:00:00Z"}"#.to_owned(),
            "bad_time",
        ),
        ("{\"sensor\":\"a\"".to_owned(), "bad_payload"),
        ("42".to_owned(), "no_sensor"),
        (String::new(), "bad_payload"),
    ];
    for (payload, expected) in cases {
        assert_eq!(reason(run(&format, "t", &payload)), expected, "{payload}");
    }
    let epoch = |format: TimeFormat| {
        Format::Json(JsonMapping {
            time_format: format,
            ..JsonMapping::default()
        })
    };
    for (format, time) in [
        (TimeFormat::EpochSeconds, "1e300"),
        (TimeFormat::EpochSeconds, "\"1700000000\""),
        (TimeFormat::EpochMillis, "253402300800000"),
        (TimeFormat::EpochMillis, "-1e20"),
        (TimeFormat::EpochMillis, "18446744073709551615"),
    ] {
        let payload = format!(r#"{{"sensor":"a","value":1,"time":{time}}}"#);
        assert_eq!(
            reason(run(&epoch(format), "t", &payload)),
            "bad_time",
            "{time}"
        );
    }
    assert_eq!(
        run(
            &epoch(TimeFormat::EpochMillis),
            "t",
            r#"{"sensor":"a","value":1,"time":-1.6}"#
        ),
        Ok(vec![reading("a", -2, 1.0)])
    );
}

#[test]
fn numbers_take_the_sensor_from_the_topic() {
    let format = Format::Number(template("meters/+/{sensor}"));
    for (payload, value) in [
        ("42", 42.0),
        (" -3.5\n", -3.5),
        ("\t1.2e3\r\n", 1200.0),
        ("+0.25", 0.25),
        (".5", 0.5),
    ] {
        assert_eq!(
            run(&format, "meters/north/m-1", payload),
            Ok(vec![reading("m-1", NOW_MS, value)]),
            "{payload:?}"
        );
    }
    for (payload, expected) in [
        ("", "bad_payload"),
        ("  ", "bad_payload"),
        ("NaN", "bad_payload"),
        ("inf", "bad_payload"),
        ("1,5", "bad_payload"),
        ("0x1f", "bad_payload"),
        ("4 2", "bad_payload"),
        ("{\"v\":1}", "bad_payload"),
        ("1e999", "non_finite"),
    ] {
        assert_eq!(
            reason(run(&format, "meters/north/m-1", payload)),
            expected,
            "{payload:?}"
        );
    }
    assert_eq!(
        reason(decode(
            &format,
            "meters/north/m-1",
            &[0xff, b'1'],
            NOW_MS,
            &DecodeLimits::default()
        )),
        "bad_payload"
    );
    assert_eq!(reason(run(&format, "meters/m-1", "1")), "no_sensor");
    assert_eq!(
        reason(decode(
            &format,
            "meters/n/m",
            b"1",
            i64::MAX,
            &DecodeLimits::default()
        )),
        "bad_time"
    );
}
