//! SenML units against the units Polis's scenes write.

use polis_payload::{UnitError, convert_value, unit_factor};

/// Every unit the shipped scenes and `polis-import` write, with the SenML
/// unit a device would send for it.
const SCENE_UNITS: [(&str, &str); 6] = [
    ("kW", "kW"),
    ("m", "m"),
    ("l/s", "l/s"),
    ("ug/m3", "ug/m3"),
    ("dB(A)", "dB"),
    ("count", "count"),
];

#[test]
fn every_scene_unit_accepts_its_senml_equivalent() {
    for (scene, senml) in SCENE_UNITS {
        assert_eq!(unit_factor(senml, scene), Ok(1.0), "{senml} -> {scene}");
        assert_eq!(unit_factor(scene, scene), Ok(1.0), "{scene}");
    }
}

#[test]
fn exact_scales_convert() {
    let cases = [
        ("W", "kW", 0.001),
        ("kW", "W", 1000.0),
        ("Wh", "kWh", 0.001),
        ("kWh", "Wh", 1000.0),
        ("J", "kWh", 1.0 / 3_600_000.0),
        ("kWh", "J", 3_600_000.0),
        ("m3/s", "l/s", 1000.0),
        ("l/s", "m3/s", 0.001),
        ("m3/s", "m3/h", 3600.0),
        ("l/s", "m3/h", 3.6),
        ("l", "m3", 0.001),
        ("Pa", "kPa", 0.001),
        ("hPa", "kPa", 0.1),
        ("hPa", "Pa", 100.0),
        ("mm", "m", 0.001),
        ("cm", "m", 0.01),
        ("km", "m", 1000.0),
        ("Wh", "J", 3600.0),
        ("kWh", "J", 3_600_000.0),
        ("kW", "W", 1000.0),
        ("kg/m3", "ug/m3", 1e9),
        ("ug/m3", "kg/m3", 1e-9),
    ];
    for (senml, sensor, factor) in cases {
        assert_eq!(
            unit_factor(senml, sensor),
            Ok(factor),
            "{senml} -> {sensor}"
        );
    }
}

#[test]
fn convert_value_divides_by_exact_integers() {
    assert_eq!(convert_value(1500.0, "W", "kW"), Ok(1.5));
    assert_eq!(convert_value(1234.0, "mm", "m"), Ok(1.234));
    assert_eq!(convert_value(0.3, "kW", "W"), Ok(300.0));
    assert_eq!(convert_value(2.5, "l/s", "m3/h"), Ok(9.0));
    assert_eq!(convert_value(f64::NAN, "W", "W").map(f64::is_nan), Ok(true));
    assert!(convert_value(1.0, "W", "m").is_err());
}

#[test]
fn everything_else_is_refused() {
    let mismatch = |senml: &str, sensor: &str| {
        let error = unit_factor(senml, sensor).expect_err("refused");
        assert_eq!(error.reason(), "unit_mismatch", "{senml} -> {sensor}");
    };
    mismatch("W", "kWh");
    mismatch("kWh", "kW");
    mismatch("Pa", "m"); // pressure against metres of head: not exact
    mismatch("m", "l/s");
    mismatch("dB", "kW");
    mismatch("count", "kW");
    mismatch("%RH", "count");

    let unknown = |senml: &str, sensor: &str| {
        let error = unit_factor(senml, sensor).expect_err("refused");
        assert_eq!(error.reason(), "unknown_unit", "{senml} -> {sensor}");
    };
    unknown("K", "Cel"); // an offset, not a scale
    unknown("%", "%RH"); // RFC 8428's `%` is a ratio (0..1), not a percentage
    unknown("degC", "Cel");
    unknown("°C", "Cel");
    unknown("kw", "kW"); // units are case-sensitive
    unknown("KW", "kW");
    unknown("W", "watts");
    unknown("", "kW");
    // Scene-only spellings are not SenML: a payload may not use them.
    unknown("dB(A)", "dB");
    unknown("m3/h", "l/s");
    unknown("kPa", "Pa");
    assert!(matches!(
        unit_factor("W", "watts"),
        Err(UnitError::UnknownSensorUnit(_))
    ));
    assert!(matches!(
        unit_factor("degC", "Cel"),
        Err(UnitError::UnknownSenml(_))
    ));
}

#[test]
fn identical_text_is_never_a_conversion() {
    assert_eq!(unit_factor("beats", "beats"), Ok(1.0));
    assert_eq!(unit_factor("Cel", "Cel"), Ok(1.0));
}
