//! What a source asks of a payload format, and of the scene's sensors.
//!
//! The formats themselves (SenML, JSON with a mapping, a bare number) are
//! implemented elsewhere (`polis-payload`); a source only needs readings
//! out of a message, or the reason there are none.

use std::collections::HashMap;

/// One reading decoded from a message.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedReading {
    /// The sensor's id (before the subscription's `sensor_prefix`).
    pub sensor_id: String,
    /// Device time, ms since the Unix epoch.
    pub device_time_ms: i64,
    /// The value, in `unit`.
    pub value: f64,
    /// The unit the message gave (SenML unit name), if any.
    pub unit: Option<String>,
}

/// Turns a message into readings.
pub trait Payloads: Send + Sync + 'static {
    /// The readings in `payload` published on `topic`, arriving at
    /// `arrival_ms` (the time of readings that carry none), or the reason
    /// the whole message is refused (a short `snake_case` word for the
    /// metric's label).
    fn decode(
        &self,
        topic: &str,
        payload: &[u8],
        arrival_ms: i64,
    ) -> Result<Vec<DecodedReading>, &'static str>;
}

/// A value in the first unit (a SenML unit name) in the second (the
/// sensor's unit as the scene writes it), when the conversion is exact;
/// `None` when the units do not match.
pub type UnitConversion = fn(f64, &str, &str) -> Option<f64>;

/// The scene's sensors as a source checks readings against them.
#[derive(Debug, Clone)]
pub struct Sensors {
    units: HashMap<String, String>,
    convert: UnitConversion,
}

impl Sensors {
    /// The sensors as (id, unit), and how units convert.
    pub fn new(
        sensors: impl IntoIterator<Item = (String, String)>,
        convert: UnitConversion,
    ) -> Self {
        Self {
            units: sensors.into_iter().collect(),
            convert,
        }
    }

    /// The unit of sensor `id`, if the scene has it.
    pub fn unit(&self, id: &str) -> Option<&str> {
        self.units.get(id).map(String::as_str)
    }

    /// `value` in `unit` converted into `sensor_unit`, if exactly possible.
    pub fn convert(&self, value: f64, unit: &str, sensor_unit: &str) -> Option<f64> {
        (self.convert)(value, unit, sensor_unit)
    }
}
