//! A parsed EPANET network, with values as in the file.

use std::collections::BTreeMap;

use super::units::FlowUnits;

/// An EPANET network as read from a `.inp` file. Values are as in the file,
/// in the units [`flow_units`](Self::flow_units) implies (feet and inches
/// for US units, metres and millimetres for SI); coordinates are in the
/// file's drawing units.
#[derive(Debug, Clone, PartialEq)]
pub struct EpanetNetwork {
    /// Where the network was read from (the file name or the origin given
    /// to [`parse_epanet_str`](crate::parse_epanet_str)).
    pub source: String,
    /// The `[TITLE]` text, lines joined with `\n`.
    pub title: String,
    /// `[OPTIONS] Units`; GPM when not given, as in EPANET.
    pub flow_units: FlowUnits,
    /// `[OPTIONS] Pattern`: the demand pattern of junctions that name none.
    pub default_pattern: Option<String>,
    /// `[TIMES] Pattern Timestep`, seconds; one hour when not given.
    pub pattern_timestep_s: u64,
    /// `[JUNCTIONS]`, in file order.
    pub junctions: Vec<EpanetJunction>,
    /// `[RESERVOIRS]`, in file order.
    pub reservoirs: Vec<EpanetReservoir>,
    /// `[TANKS]`, in file order.
    pub tanks: Vec<EpanetTank>,
    /// `[PIPES]`, in file order.
    pub pipes: Vec<EpanetPipe>,
    /// `[PUMPS]`, in file order.
    pub pumps: Vec<EpanetPump>,
    /// `[VALVES]`, in file order.
    pub valves: Vec<EpanetValve>,
    /// `[PATTERNS]`: pattern id → multipliers, one per pattern time step.
    pub patterns: BTreeMap<String, Vec<f64>>,
    /// `[COORDINATES]`: node id → `[x, y]` drawing coordinates.
    pub coordinates: BTreeMap<String, [f64; 2]>,
    /// `[VERTICES]`: link id → intermediate `[x, y]` points, in order.
    pub vertices: BTreeMap<String, Vec<[f64; 2]>>,
}

/// A junction: a node where water is drawn or pipes meet.
#[derive(Debug, Clone, PartialEq)]
pub struct EpanetJunction {
    /// Node id.
    pub id: String,
    /// Elevation (ft or m).
    pub elevation: f64,
    /// Base demand, in the flow units; 0 when not given.
    pub base_demand: f64,
    /// Demand pattern id, if given.
    pub pattern: Option<String>,
}

/// A reservoir: an infinite source at a fixed head.
#[derive(Debug, Clone, PartialEq)]
pub struct EpanetReservoir {
    /// Node id.
    pub id: String,
    /// Total head (ft or m).
    pub head: f64,
    /// Head pattern id, if given.
    pub pattern: Option<String>,
}

/// A storage tank.
#[derive(Debug, Clone, PartialEq)]
pub struct EpanetTank {
    /// Node id.
    pub id: String,
    /// Bottom elevation (ft or m).
    pub elevation: f64,
    /// Initial water level above the bottom (ft or m).
    pub init_level: f64,
    /// Minimum water level (ft or m).
    pub min_level: f64,
    /// Maximum water level (ft or m).
    pub max_level: f64,
    /// Diameter (ft or m).
    pub diameter: f64,
    /// Volume at the minimum level (ft³ or m³); 0 when not given.
    pub min_volume: f64,
    /// Volume curve id, if given.
    pub volume_curve: Option<String>,
}

/// A pipe between two nodes.
#[derive(Debug, Clone, PartialEq)]
pub struct EpanetPipe {
    /// Link id.
    pub id: String,
    /// Start node id.
    pub node1: String,
    /// End node id.
    pub node2: String,
    /// Length (ft or m).
    pub length: f64,
    /// Diameter (in or mm).
    pub diameter: f64,
    /// Roughness coefficient (its meaning depends on the head-loss formula).
    pub roughness: f64,
    /// Minor loss coefficient; 0 when not given.
    pub minor_loss: f64,
    /// Initial status: `Open`, `Closed` or `CV`; `Open` when not given.
    pub status: String,
}

/// A pump between two nodes.
#[derive(Debug, Clone, PartialEq)]
pub struct EpanetPump {
    /// Link id.
    pub id: String,
    /// Suction node id.
    pub node1: String,
    /// Discharge node id.
    pub node2: String,
    /// Keyword/value pairs: `HEAD` curve id, `POWER` (hp or kW), `SPEED`,
    /// `PATTERN` id. Keywords are upper case.
    pub parameters: Vec<(String, String)>,
}

/// A valve between two nodes.
#[derive(Debug, Clone, PartialEq)]
pub struct EpanetValve {
    /// Link id.
    pub id: String,
    /// Upstream node id.
    pub node1: String,
    /// Downstream node id.
    pub node2: String,
    /// Diameter (in or mm).
    pub diameter: f64,
    /// Type: `PRV`, `PSV`, `PBV`, `FCV`, `TCV` or `GPV` (upper case).
    pub valve_type: String,
    /// Setting as written: a pressure, flow or loss coefficient, or a curve
    /// id for `GPV`.
    pub setting: String,
    /// Minor loss coefficient; 0 when not given.
    pub minor_loss: f64,
}

impl EpanetNetwork {
    /// The demand pattern of a junction: its own, else the default pattern
    /// (`[OPTIONS] Pattern`, else pattern `1` when defined), as EPANET does.
    pub fn junction_pattern<'a>(&'a self, junction: &'a EpanetJunction) -> Option<&'a str> {
        if let Some(own) = &junction.pattern {
            return Some(own);
        }
        let default = self.default_pattern.as_deref().unwrap_or("1");
        self.patterns.contains_key(default).then_some(default)
    }
}
