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

/// The factor a value in the first unit is multiplied by to be in the
/// second (a SenML unit name and the sensor's unit as the scene writes
/// it), when the conversion is exact; `None` when the units do not match.
pub type UnitFactor = fn(&str, &str) -> Option<f64>;

/// The scene's sensors as a source checks readings against them.
#[derive(Debug, Clone)]
pub struct Sensors {
    units: HashMap<String, String>,
    unit_factor: UnitFactor,
}

impl Sensors {
    /// The sensors as (id, unit), and how units convert.
    pub fn new(
        sensors: impl IntoIterator<Item = (String, String)>,
        unit_factor: UnitFactor,
    ) -> Self {
        Self {
            units: sensors.into_iter().collect(),
            unit_factor,
        }
    }

    /// The unit of sensor `id`, if the scene has it.
    pub fn unit(&self, id: &str) -> Option<&str> {
        self.units.get(id).map(String::as_str)
    }

    /// The factor from `unit` to the unit of sensor `id` (which exists).
    pub fn factor(&self, unit: &str, sensor_unit: &str) -> Option<f64> {
        (self.unit_factor)(unit, sensor_unit)
    }
}
