//! Components of viewers, and the values the city's tables hold.

use std::collections::HashSet;

use bevy::prelude::*;
use polis_protocol::{Access, Quality, SharedMailbox};

use crate::messages::ViewerId;

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
