//! SenML units against the units Polis's scenes write, converted only by
//! exactly defined scales.
//!
//! The table is small on purpose: the SenML units (RFC 8428 §12.1, the
//! units RFC 8798 added to that registry, and RFC 8798's secondary units)
//! for the quantities Polis measures, and the
//! units its scenes write (`kW`, `l/s`, `m`, `ug/m3`, `dB(A)`, `count` in
//! `scenes/`, and `polis-import`'s generated sensors). Anything outside it is
//! refused, never guessed.

use crate::error::{Quoted, UnitError};

/// What a unit measures; only units of the same quantity convert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quantity {
    Power,
    Energy,
    VolumeFlow,
    Volume,
    Length,
    Pressure,
    MassConcentration,
    Temperature,
    RelativeHumidity,
    Count,
    SoundLevel,
}

/// One unit: its quantity and its exact scale to the quantity's reference
/// unit as `numerator / denominator`, and whether payloads may use it.
struct Unit {
    name: &'static str,
    quantity: Quantity,
    numerator: u64,
    denominator: u64,
    /// A registered SenML unit (IANA "SenML Units": RFC 8428 §12.1 and the
    /// units RFC 8798 added; or IANA "Secondary Units": RFC 8798); the
    /// others are only written in scenes.
    senml: bool,
}

const fn unit(name: &'static str, quantity: Quantity, numerator: u64, denominator: u64) -> Unit {
    Unit {
        name,
        quantity,
        numerator,
        denominator,
        senml: true,
    }
}

const fn scene_only(
    name: &'static str,
    quantity: Quantity,
    numerator: u64,
    denominator: u64,
) -> Unit {
    Unit {
        senml: false,
        ..unit(name, quantity, numerator, denominator)
    }
}

use Quantity::*;

/// Reference units: W, J, m3/s, m3, m, Pa, kg/m3, Cel, %RH, count, dB.
const UNITS: &[Unit] = &[
    // RFC 8428 §12.1, Table 6 (checked against the RFC's text and the IANA
    // "SenML Units" registry).
    unit("W", Power, 1, 1),
    unit("J", Energy, 1, 1),
    unit("m3/s", VolumeFlow, 1, 1),
    // `l/s` and `l` carry the asterisk: "NOT RECOMMENDED to be produced by
    // new implementations but ... SHOULD be implemented by consumers".
    unit("l/s", VolumeFlow, 1, 1_000),
    unit("m3", Volume, 1, 1),
    unit("l", Volume, 1, 1_000),
    unit("m", Length, 1, 1),
    unit("Pa", Pressure, 1, 1),
    // Celsius does not scale to kelvin (an offset), so K is not listed.
    unit("Cel", Temperature, 1, 1),
    // Not `%`: in RFC 8428 that is a ratio (0..1, like `/`), not a percentage.
    unit("%RH", RelativeHumidity, 1, 1),
    unit("count", Count, 1, 1),
    unit("dB", SoundLevel, 1, 1),
    // Not in RFC 8428: RFC 8798 registered `kg/m3` as a new SenML unit.
    unit("kg/m3", MassConcentration, 1, 1),
    // RFC 8798's secondary units: value × scale (offset 0 for all of these)
    // is the value in the SenML unit; `kW` = 1000 W, `Wh` = 3600 J,
    // `kWh` = 3600000 J, `mm` = 1/1000 m, `cm` = 1/100 m, `km` = 1000 m,
    // `hPa` = 100 Pa, `ug/m3` = 1e-9 kg/m3. RFC 8798 defines none for
    // volume flow (`m3/h`) or for kPa, so those stay scene-only below.
    unit("kW", Power, 1_000, 1),
    unit("Wh", Energy, 3_600, 1),
    unit("kWh", Energy, 3_600_000, 1),
    unit("mm", Length, 1, 1_000),
    unit("cm", Length, 1, 100),
    unit("km", Length, 1_000, 1),
    unit("hPa", Pressure, 100, 1),
    unit("ug/m3", MassConcentration, 1, 1_000_000_000),
    // Written in scenes, not SenML units.
    scene_only("m3/h", VolumeFlow, 1, 3_600),
    scene_only("kPa", Pressure, 1_000, 1),
    // A-weighting is a property of the measurement, not of the unit: an
    // A-weighted level is reported in SenML as `dB`.
    scene_only("dB(A)", SoundLevel, 1, 1),
];

fn find(name: &str) -> Option<&'static Unit> {
    UNITS.iter().find(|unit| unit.name == name)
}

/// The exact ratio `from / to` as a reduced fraction, or an error.
fn ratio(senml_unit: &str, sensor_unit: &str) -> Result<(u128, u128), UnitError> {
    if senml_unit == sensor_unit {
        return Ok((1, 1));
    }
    let from = find(senml_unit)
        .filter(|unit| unit.senml)
        .ok_or_else(|| UnitError::UnknownSenml(Quoted::new(senml_unit)))?;
    let to =
        find(sensor_unit).ok_or_else(|| UnitError::UnknownSensorUnit(Quoted::new(sensor_unit)))?;
    if from.quantity != to.quantity {
        return Err(UnitError::Mismatch {
            senml: Quoted::new(senml_unit),
            sensor: Quoted::new(sensor_unit),
        });
    }
    // value_in_to = value_in_from × (from.n / from.d) / (to.n / to.d)
    let numerator = u128::from(from.numerator) * u128::from(to.denominator);
    let denominator = u128::from(from.denominator) * u128::from(to.numerator);
    let divisor = gcd(numerator, denominator);
    Ok((numerator / divisor, denominator / divisor))
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.max(1)
}

/// The factor to multiply a value in `senml_unit` (a SenML unit name, as in
/// a record's `u`) by to get it in `sensor_unit` (the sensor's unit as
/// written in the scene).
///
/// - The same text → `Ok(1.0)`, whatever the unit (no conversion happens).
/// - Units of the same quantity related by an exactly defined scale (SI
///   prefixes, `Wh` = 3600 `J`, `l/s` = 0.001 `m3/s`, …) → that scale, e.g.
///   `unit_factor("W", "kW") == Ok(0.001)`.
/// - Anything else → [`UnitError`]: a unit outside the table, a unit of
///   another quantity, or one related by an offset (`K` and `Cel`) or a
///   physical constant (`Pa` and metres of water head). Such readings must
///   be refused, never converted.
///
/// Payload units must be SenML names (`Cel`, not `°C`); the scene's
/// `dB(A)` accepts SenML `dB`. Prefer [`convert_value`] to apply the
/// factor: it divides by exact integers instead of multiplying by a
/// rounded fraction.
pub fn unit_factor(senml_unit: &str, sensor_unit: &str) -> Result<f64, UnitError> {
    let (numerator, denominator) = ratio(senml_unit, sensor_unit)?;
    // Both are below 2^53 for every pair in the table, so exact in f64.
    Ok(numerator as f64 / denominator as f64)
}

/// `value` (in `senml_unit`) in `sensor_unit`, by the same rules as
/// [`unit_factor`]: multiplied by the integer numerator, then divided by the
/// integer denominator of the exact ratio, so that `1500 W` is exactly
/// `1.5 kW`.
pub fn convert_value(value: f64, senml_unit: &str, sensor_unit: &str) -> Result<f64, UnitError> {
    let (numerator, denominator) = ratio(senml_unit, sensor_unit)?;
    if numerator == 1 && denominator == 1 {
        return Ok(value);
    }
    Ok(value * numerator as f64 / denominator as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_scales_are_exact_in_f64() {
        for unit in UNITS {
            assert!(
                unit.numerator < 1 << 53 && unit.denominator < 1 << 53,
                "{}",
                unit.name
            );
            assert!(unit.numerator > 0 && unit.denominator > 0, "{}", unit.name);
        }
        for (i, a) in UNITS.iter().enumerate() {
            assert!(
                UNITS[i + 1..].iter().all(|b| b.name != a.name),
                "{} twice",
                a.name
            );
        }
        for a in UNITS {
            for b in UNITS.iter().filter(|b| b.quantity == a.quantity) {
                let (n, d) = ratio_of(a, b);
                assert!(n < 1 << 53 && d < 1 << 53, "{} -> {}", a.name, b.name);
            }
        }
    }

    fn ratio_of(a: &Unit, b: &Unit) -> (u128, u128) {
        let n = u128::from(a.numerator) * u128::from(b.denominator);
        let d = u128::from(a.denominator) * u128::from(b.numerator);
        (n / gcd(n, d), d / gcd(n, d))
    }
}
