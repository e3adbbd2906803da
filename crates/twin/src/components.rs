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
            Access::Public | Access::Resident => 0b100,
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
    /// A resident's own sensors (handles), seen raw; empty for other roles.
    pub own_sensors: HashSet<u32>,
    /// Its token's name, for the audit log.
    pub name: String,
    /// Its latest subscription not yet started (a newer one replaces it).
    pub(crate) pending: Option<polis_protocol::Subscribe>,
    /// What is left to do of the subscription being worked on.
    pub(crate) job: Option<crate::interest::InterestJob>,
    /// Items its subscriptions may still cost now.
    pub(crate) allowance: crate::budget::Allowance,
}

impl ViewerState {
    /// Whether this viewer may see sensor `handle` (live, in its area, in
    /// picks): its audience admits the viewer's role, or it is one of a
    /// resident's own sensors. One rule for every path.
    pub fn may_see(&self, sensors: &crate::SensorTable, handle: u32) -> bool {
        sensors
            .audience(handle)
            .is_some_and(|audience| audience.admits(self.access))
            || self.own_sensors.contains(&handle)
    }
}

/// A viewer's trip to a past time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Travel {
    /// The device time travelled to, ms since the Unix epoch.
    pub at_ms: i64,
    /// Playback speed (simulated seconds per second).
    pub speed: f32,
}
