//! Components of assets, sensors and viewers.

use std::collections::HashSet;
use std::sync::Arc;

use bevy::prelude::*;
use polis_protocol::{
    Access, AssetInfo, AssetKind, Domain, Geometry, Quality, SensorInfo, SharedMailbox, ValueUpdate,
};

use crate::messages::ViewerId;

/// A physical asset of the city (building, pipe, stop, …).
#[derive(Component, Debug, Clone)]
pub struct AssetRecord {
    /// Compact handle used on the wire.
    pub handle: u32,
    /// Stable id from the scene.
    pub id: Box<str>,
    /// What it is.
    pub kind: AssetKind,
    /// Shape in local east/north/up metres.
    pub geometry_enu_m: Geometry,
    /// Height above ground, metres.
    pub height_m: Option<f32>,
    /// Attributes from the scene, sorted by key.
    pub attributes: Box<[(String, String)]>,
}

impl AssetRecord {
    /// The asset as sent to viewers.
    pub fn info(&self) -> AssetInfo {
        AssetInfo {
            handle: self.handle,
            id: self.id.to_string(),
            kind: self.kind,
            geometry: self.geometry_enu_m.clone(),
            height_m: self.height_m,
            attributes: self.attributes.to_vec(),
        }
    }
}

/// A sensor's fixed description. Its id is shared with the
/// [`SensorDirectory`](crate::SensorDirectory); quantity and unit are
/// interned (one allocation per distinct name, not per sensor).
#[derive(Component, Debug, Clone)]
pub struct SensorRecord {
    /// Compact handle used on the wire.
    pub handle: u32,
    /// Stable id from the scene.
    pub id: Arc<str>,
    /// Its domain (layer).
    pub domain: Domain,
    /// What it measures.
    pub quantity: Arc<str>,
    /// Unit of its values.
    pub unit: Arc<str>,
    /// Position in local east/north/up metres.
    pub position_enu_m: Vec3,
    /// Handle of the asset it belongs to.
    pub asset: Option<u32>,
    /// Whether its readings concern a household or a person.
    pub personal: bool,
    /// Which viewers may see it.
    pub audience: Audience,
}

/// Which kinds of viewer may see a sensor: raw personal sensors only
/// operators, building aggregates only planners, k-anonymous aggregates only
/// the public, everything else everyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Audience(u8);

impl Audience {
    /// Every viewer.
    pub const EVERYONE: Audience = Audience(0b111);
    /// Operators only (raw personal data).
    pub const OPERATORS: Audience = Audience(0b001);
    /// Planners only (building-level aggregates).
    pub const PLANNERS: Audience = Audience(0b010);
    /// The public only (aggregates over at least k sensors).
    pub const PUBLIC: Audience = Audience(0b100);

    /// Whether a viewer with `access` may see it.
    pub fn admits(self, access: Access) -> bool {
        let bit = match access {
            Access::Operator => 0b001,
            Access::Planner => 0b010,
            Access::Public => 0b100,
            Access::Gateway => 0,
        };
        self.0 & bit != 0
    }
}

/// An aggregate sensor: its value combines its members' latest values.
#[derive(Component, Debug, Clone)]
pub struct Aggregate {
    /// Handles of the member sensors.
    pub members: Vec<u32>,
    /// Sum (additive quantities such as power) or mean.
    pub additive: bool,
    /// Fewest members with a value for the aggregate to have one.
    pub min_members: usize,
}

/// A reading as the twin keeps it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StoredReading {
    /// Device timestamp, ms since the Unix epoch, UTC.
    pub device_time_ms: i64,
    /// The value in the sensor's unit.
    pub value: f64,
    /// Quality flag, if the gateway sent one.
    pub quality: Option<Quality>,
}

/// A sensor's latest reading by device time, and how many it received.
#[derive(Component, Debug, Clone, Default)]
pub struct LatestReading {
    /// The newest reading by device time.
    pub latest: Option<StoredReading>,
    /// Readings received for this sensor, whatever their outcome.
    pub received_count: u64,
}

impl SensorRecord {
    /// The sensor as sent to viewers, with `latest` as its value.
    pub fn info(&self, latest: &LatestReading) -> SensorInfo {
        SensorInfo {
            handle: self.handle,
            id: self.id.to_string(),
            domain: self.domain,
            quantity: self.quantity.to_string(),
            unit: self.unit.to_string(),
            position_enu_m: self.position_enu_m.to_array(),
            asset: self.asset,
            personal: self.personal,
            latest: latest.latest.map(|r| self.value_update(&r)),
        }
    }

    /// A value update for this sensor.
    pub fn value_update(&self, reading: &StoredReading) -> ValueUpdate {
        ValueUpdate {
            sensor: self.handle,
            device_time_ms: reading.device_time_ms,
            value: reading.value,
        }
    }
}

/// A connected viewer and what it currently sees.
#[derive(Component, Debug)]
pub struct ViewerState {
    /// The connection.
    pub id: ViewerId,
    /// Where its changes coalesce until the connection can send them.
    pub mailbox: SharedMailbox,
    /// The subscribed area in local east/north metres (min, max), once subscribed.
    pub area_enu_m: Option<([f64; 2], [f64; 2])>,
    /// Handles of the sensors it sees.
    pub sensors: HashSet<u32>,
    /// Handles of the assets it sees.
    pub assets: HashSet<u32>,
    /// Set while the viewer travels in time (its values come from history).
    pub travel: Option<Travel>,
    /// What its token grants.
    pub access: Access,
    /// Its token's name, for the audit log.
    pub name: String,
}

/// A viewer's trip to a past time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Travel {
    /// The device time travelled to, ms since the Unix epoch.
    pub at_ms: i64,
    /// Playback speed (simulated seconds per second).
    pub speed: f32,
}
