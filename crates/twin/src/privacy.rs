//! Privacy: aggregate sensors that stand in for personal ones.
//!
//! Readings of `personal` sensors (a household's meter) are shown raw only to
//! operators. For every personal sensor the twin also keeps:
//!
//! - a **building aggregate** per building and quantity, for planners;
//! - a **public aggregate** over at least `k` personal sensors of the same
//!   quantity: its building if the building has `k`, else its block (a
//!   `block_m` grid cell), else its district (a `district_m` cell), else
//!   none. The public groups partition the personal sensors — each is in at
//!   most one — so no two published aggregates can be subtracted to isolate
//!   a household, and an aggregate has a value only while at least `k` of
//!   its members have one.
//!
//! Aggregates are sensors like the others (handles after the scene's), with
//! an [`Audience`] that keeps each kind of viewer to its own.

use std::collections::BTreeMap;

use bevy::prelude::*;

use crate::components::{Aggregate, Audience, LatestReading, SensorRecord, StoredReading};
use crate::index::IndexedItem;

/// How personal data is aggregated.
#[derive(Debug, Clone, Copy)]
pub struct PrivacyOptions {
    /// Fewest personal sensors behind a public aggregate.
    pub k: usize,
    /// Side of a block cell, metres.
    pub block_m: f64,
    /// Side of a district cell, metres.
    pub district_m: f64,
}

impl Default for PrivacyOptions {
    fn default() -> Self {
        Self {
            k: 5,
            block_m: 100.0,
            district_m: 500.0,
        }
    }
}

/// Aggregates to recompute at the next apply step: those whose members
/// changed, and all of them at start (so a restored twin starts with their
/// values).
#[derive(Resource, Debug, Default)]
pub(crate) struct DirtyAggregates(pub(crate) Vec<u32>);

/// For each sensor handle, the aggregates it feeds: one flat list with an
/// offset per sensor (4 bytes per sensor that feeds none, where a list per
/// sensor took 24).
#[derive(Resource, Debug, Default)]
pub(crate) struct AggregatesOf {
    /// `aggregates[starts[s]..starts[s + 1]]` are sensor `s`'s.
    starts: Vec<u32>,
    aggregates: Vec<u32>,
}

impl AggregatesOf {
    /// From `(sensor, aggregate)` pairs, for sensors `0..sensor_count`.
    fn new(sensor_count: usize, mut memberships: Vec<(u32, u32)>) -> Self {
        memberships.sort_unstable();
        let offset = |index: usize| u32::try_from(index).unwrap_or(u32::MAX);
        let mut starts = Vec::with_capacity(sensor_count + 1);
        let mut next = 0;
        for sensor in 0..sensor_count {
            starts.push(offset(next));
            while memberships
                .get(next)
                .is_some_and(|&(member, _)| member as usize == sensor)
            {
                next += 1;
            }
        }
        starts.push(offset(next));
        let aggregates = memberships
            .into_iter()
            .map(|(_, aggregate)| aggregate)
            .collect();
        Self { starts, aggregates }
    }

    /// The aggregates sensor `handle` feeds (none for aggregates themselves).
    pub(crate) fn of(&self, handle: u32) -> &[u32] {
        let index = handle as usize;
        match (self.starts.get(index), self.starts.get(index + 1)) {
            (Some(&start), Some(&end)) => self
                .aggregates
                .get(start as usize..end as usize)
                .unwrap_or_default(),
            _ => &[],
        }
    }
}

/// Quantities whose aggregate is a sum (power, flow); others are averaged.
fn is_additive(quantity: &str) -> bool {
    matches!(quantity, "active_power" | "pv_power" | "energy" | "flow")
}

/// One aggregate to spawn.
pub(crate) struct GroupSpec {
    pub(crate) id: String,
    pub(crate) members: Vec<u32>,
    pub(crate) audience: Audience,
    pub(crate) min_members: usize,
    pub(crate) asset: Option<u32>,
}

fn cell(position: Vec3, side_m: f64) -> (i64, i64) {
    (
        (f64::from(position.x) / side_m).floor() as i64,
        (f64::from(position.y) / side_m).floor() as i64,
    )
}

/// The building and public groups of the personal sensors among `sensors`.
pub(crate) fn plan_groups(sensors: &[SensorRecord], options: &PrivacyOptions) -> Vec<GroupSpec> {
    let mut groups = Vec::new();
    // Planners: one aggregate per building and quantity, whatever its size.
    let mut by_building: BTreeMap<(u32, &str), Vec<u32>> = BTreeMap::new();
    let mut unassigned: BTreeMap<&str, Vec<&SensorRecord>> = BTreeMap::new();
    for sensor in sensors.iter().filter(|s| s.personal) {
        if let Some(asset) = sensor.asset {
            by_building
                .entry((asset, &*sensor.quantity))
                .or_default()
                .push(sensor.handle);
        }
        unassigned
            .entry(&*sensor.quantity)
            .or_default()
            .push(sensor);
    }
    for ((asset, quantity), members) in &by_building {
        groups.push(GroupSpec {
            id: format!("agg-building-{asset}-{quantity}"),
            members: members.clone(),
            audience: Audience::PLANNERS,
            min_members: 1,
            asset: Some(*asset),
        });
    }
    // Public: building, else block, else district, until k is reached.
    let k = options.k.max(1);
    for (quantity, mut remaining) in unassigned {
        let mut buildings: BTreeMap<u32, Vec<&SensorRecord>> = BTreeMap::new();
        let mut homeless = Vec::new();
        for sensor in remaining.drain(..) {
            match sensor.asset {
                Some(asset) => buildings.entry(asset).or_default().push(sensor),
                None => homeless.push(sensor),
            }
        }
        let mut left = homeless;
        for (asset, members) in buildings {
            if members.len() >= k {
                groups.push(GroupSpec {
                    id: format!("agg-public-building-{asset}-{quantity}"),
                    members: members.iter().map(|s| s.handle).collect(),
                    audience: Audience::PUBLIC,
                    min_members: k,
                    asset: Some(asset),
                });
            } else {
                left.extend(members);
            }
        }
        for (level, side_m) in [("block", options.block_m), ("district", options.district_m)] {
            let mut cells: BTreeMap<(i64, i64), Vec<&SensorRecord>> = BTreeMap::new();
            for sensor in left.drain(..) {
                cells
                    .entry(cell(sensor.position_enu_m, side_m))
                    .or_default()
                    .push(sensor);
            }
            for ((x, y), members) in cells {
                if members.len() >= k {
                    groups.push(GroupSpec {
                        id: format!("agg-public-{level}-{x}_{y}-{quantity}"),
                        members: members.iter().map(|s| s.handle).collect(),
                        audience: Audience::PUBLIC,
                        min_members: k,
                        asset: None,
                    });
                } else {
                    left.extend(members);
                }
            }
        }
        // Whatever is left is in groups smaller than k even at district
        // level: the public sees nothing of it.
    }
    groups
}

/// Spawns the aggregates of `groups` after the scene's sensors, returning
/// their records' index entries; fills [`AggregatesOf`].
pub(crate) fn spawn_groups(
    world: &mut World,
    sensors: &[SensorRecord],
    groups: Vec<GroupSpec>,
    first_handle: u32,
) -> Vec<(Entity, IndexedItem)> {
    let mut memberships = Vec::new();
    let mut spawned = Vec::with_capacity(groups.len());
    let mut handles = Vec::with_capacity(groups.len());
    // Handles follow on from the scene's, one per spawned aggregate, so that
    // the sensor directory's by-handle list stays aligned.
    let mut handle = first_handle;
    for group in groups {
        let Some(first) = group.members.first().and_then(|h| sensors.get(*h as usize)) else {
            continue;
        };
        let mut sum = Vec3::ZERO;
        let (mut min, mut max) = ([f64::INFINITY; 2], [f64::NEG_INFINITY; 2]);
        for member in &group.members {
            if let Some(sensor) = sensors.get(*member as usize) {
                let p = sensor.position_enu_m;
                sum += p;
                min = [min[0].min(f64::from(p.x)), min[1].min(f64::from(p.y))];
                max = [max[0].max(f64::from(p.x)), max[1].max(f64::from(p.y))];
            }
            memberships.push((*member, handle));
        }
        let record = SensorRecord {
            handle,
            id: group.id.into(),
            domain: first.domain,
            quantity: first.quantity.clone(),
            unit: first.unit.clone(),
            position_enu_m: sum / group.members.len().max(1) as f32,
            asset: group.asset,
            personal: false,
            audience: group.audience,
        };
        let aggregate = Aggregate {
            additive: is_additive(&record.quantity),
            members: group.members,
            min_members: group.min_members,
        };
        let entity = world
            .spawn((record, aggregate, LatestReading::default()))
            .id();
        handles.push(handle);
        spawned.push((entity, IndexedItem::sensor(handle, min, max)));
        handle += 1;
    }
    world.insert_resource(AggregatesOf::new(sensors.len(), memberships));
    world.insert_resource(DirtyAggregates(handles));
    spawned
}

/// The value of an aggregate from its members' latest readings, or `None`
/// while fewer than `min_members` have one.
pub(crate) fn combine(
    aggregate: &Aggregate,
    member_readings: impl Iterator<Item = Option<StoredReading>>,
) -> Option<StoredReading> {
    let mut count = 0usize;
    let mut total = 0.0;
    let mut newest = i64::MIN;
    for reading in member_readings.flatten() {
        count += 1;
        total += reading.value;
        newest = newest.max(reading.device_time_ms);
    }
    if count < aggregate.min_members.max(1) {
        return None;
    }
    let value = if aggregate.additive {
        total
    } else {
        total / count as f64
    };
    Some(StoredReading {
        device_time_ms: newest,
        value,
        quality: None,
    })
}
