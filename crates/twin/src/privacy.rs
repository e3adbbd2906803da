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

use crate::city::{AggregateRule, CityTooLarge, Flat, NewAggregate, SensorTable};
use crate::components::{Audience, StoredReading};
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

/// For each sensor handle, the aggregates it feeds, as one flat list
/// (nothing per sensor beyond the last member of an aggregate).
#[derive(Resource, Debug, Default)]
pub(crate) struct AggregatesOf(Flat<u32>);

impl AggregatesOf {
    /// The aggregates sensor `handle` feeds (none for aggregates themselves).
    pub(crate) fn of(&self, handle: u32) -> &[u32] {
        self.0.get(handle as usize)
    }
}

/// Quantities whose aggregate is a sum (power, flow); others are averaged.
fn is_additive(quantity: &str) -> bool {
    matches!(quantity, "active_power" | "pv_power" | "energy" | "flow")
}

/// One aggregate to add.
pub(crate) struct GroupSpec {
    pub(crate) id: String,
    pub(crate) members: Vec<u32>,
    pub(crate) audience: Audience,
    pub(crate) min_members: u32,
    pub(crate) asset: Option<u32>,
}

fn cell(position: Vec3, side_m: f64) -> (i64, i64) {
    (
        (f64::from(position.x) / side_m).floor() as i64,
        (f64::from(position.y) / side_m).floor() as i64,
    )
}

/// The building and public groups of the personal sensors among `sensors`
/// (the scene's, before any aggregate is added).
pub(crate) fn plan_groups(sensors: &SensorTable, options: &PrivacyOptions) -> Vec<GroupSpec> {
    let mut groups = Vec::new();
    // Planners: one aggregate per building and quantity, whatever its size.
    let mut by_building: BTreeMap<(u32, &str), Vec<u32>> = BTreeMap::new();
    let mut unassigned: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    let personal = (0u32..)
        .take(sensors.len())
        .filter(|&h| sensors.personal(h) == Some(true));
    for handle in personal {
        let quantity = sensors.quantity(handle).unwrap_or_default();
        if let Some(asset) = sensors.asset(handle) {
            by_building
                .entry((asset, quantity))
                .or_default()
                .push(handle);
        }
        unassigned.entry(quantity).or_default().push(handle);
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
    let min_members = u32::try_from(k).unwrap_or(u32::MAX);
    for (quantity, mut remaining) in unassigned {
        let mut buildings: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        let mut homeless = Vec::new();
        for sensor in remaining.drain(..) {
            match sensors.asset(sensor) {
                Some(asset) => buildings.entry(asset).or_default().push(sensor),
                None => homeless.push(sensor),
            }
        }
        let mut left = homeless;
        for (asset, members) in buildings {
            if members.len() >= k {
                groups.push(GroupSpec {
                    id: format!("agg-public-building-{asset}-{quantity}"),
                    members,
                    audience: Audience::PUBLIC,
                    min_members,
                    asset: Some(asset),
                });
            } else {
                left.extend(members);
            }
        }
        for (level, side_m) in [("block", options.block_m), ("district", options.district_m)] {
            let mut cells: BTreeMap<(i64, i64), Vec<u32>> = BTreeMap::new();
            for sensor in left.drain(..) {
                let position = sensors.position_enu_m(sensor).unwrap_or_default();
                cells
                    .entry(cell(position, side_m))
                    .or_default()
                    .push(sensor);
            }
            for ((x, y), members) in cells {
                if members.len() >= k {
                    groups.push(GroupSpec {
                        id: format!("agg-public-{level}-{x}_{y}-{quantity}"),
                        members,
                        audience: Audience::PUBLIC,
                        min_members,
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

/// Adds the aggregates of `groups` after the scene's sensors. Returns which
/// aggregates each sensor feeds, every aggregate as dirty (so a restored
/// twin starts with their values) and their index entries.
pub(crate) fn add_groups(
    sensors: &mut SensorTable,
    groups: Vec<GroupSpec>,
) -> Result<(AggregatesOf, DirtyAggregates, Vec<IndexedItem>), CityTooLarge> {
    let mut memberships = Vec::new();
    let mut items = Vec::with_capacity(groups.len());
    let mut handles = Vec::with_capacity(groups.len());
    for group in groups {
        let Some(additive) = group
            .members
            .first()
            .and_then(|&first| sensors.quantity(first))
            .map(is_additive)
        else {
            continue;
        };
        let mut sum = Vec3::ZERO;
        let (mut min, mut max) = ([f32::INFINITY; 2], [f32::NEG_INFINITY; 2]);
        for p in group
            .members
            .iter()
            .filter_map(|&m| sensors.position_enu_m(m))
        {
            sum += p;
            min = [min[0].min(p.x), min[1].min(p.y)];
            max = [max[0].max(p.x), max[1].max(p.y)];
        }
        let Some(handle) = sensors.push_aggregate(NewAggregate {
            id: &group.id,
            members: &group.members,
            position_enu_m: sum / group.members.len().max(1) as f32,
            asset: group.asset,
            audience: group.audience,
            rule: AggregateRule {
                additive,
                min_members: group.min_members,
            },
        })?
        else {
            continue;
        };
        memberships.extend(group.members.iter().map(|&member| (member, handle)));
        handles.push(handle);
        items.push(IndexedItem::sensor(handle, min, max));
    }
    let aggregates_of = AggregatesOf(Flat::from_pairs(memberships, "aggregate memberships")?);
    Ok((aggregates_of, DirtyAggregates(handles), items))
}

/// The value of an aggregate from its members' latest readings, or `None`
/// while fewer than its `min_members` have one.
pub(crate) fn combine(
    rule: AggregateRule,
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
    if count < (rule.min_members.max(1) as usize) {
        return None;
    }
    let value = if rule.additive {
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
