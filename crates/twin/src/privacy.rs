//! Privacy: aggregate sensors that stand in for personal ones.
//!
//! Readings of `personal` sensors (a household's meter) are shown raw only to
//! operators. Every other role sees them only summed (power, flow) or
//! averaged over groups of at least its role's `k` households:
//!
//! - **planners**: groups of at least `k_planner` (default 3) personal
//!   sensors of one quantity — a building if it has that many, else its
//!   block (a `block_m` grid cell), else its district (a `district_m` cell),
//!   else none;
//! - **the public**: groups of at least `k` (default 5), each the union of
//!   *whole* planner groups — a building's, else those of a block, else of
//!   a district, else none.
//!
//! Why nothing smaller can be computed from what is shown. Within a role the
//! groups partition the households, so no two of its aggregates overlap and
//! subtracting them isolates nothing. Across roles (someone holding both a
//! planner token and the public view), every public group is a union of
//! planner groups, so a public value minus any planner values inside it is
//! itself a sum over whole planner groups, each of at least `k_planner`
//! households. Households in no planner group (too few even in their
//! district) are in no public group either, so nothing public includes a
//! household a planner group leaves out.
//!
//! Why membership changes reveal nobody. An aggregate's membership is fixed
//! (all of its group) and it has a value only once every member has
//! reported: it never moves from n to n + 1 contributors, which would
//! reveal the newcomer's value as the difference. A member that goes silent
//! keeps its latest reading in the aggregate (the twin keeps latest
//! readings), so going silent or coming back changes nothing but that
//! member's own reading, like any new reading.
//!
//! Consent. A household may refuse that its readings feed planners'
//! aggregates, the public's, or both ([`Consents`], from
//! `<data dir>/consent.json`). Households are grouped only with households
//! of the same consent class, so every group a role is shown holds only
//! households that consent to that role, and the nesting argument above
//! holds within each class (a class shown to the public but not to
//! planners forms public groups of single households, and planners are
//! shown none of them). A change of consent while the twin runs withdraws
//! at once every aggregate the household feeds, for every role: from then
//! on those aggregates have no value (a withdrawn group cannot be
//! subtracted from anything), until the twin next starts and forms the
//! groups anew by class. At that start no aggregate takes a member's
//! restored reading: each has a value only once every member has reported
//! since, so a value of a re-formed group never shares its members'
//! readings with the last value of the group it replaces.
//!
//! Groups across starts. Every group a twin forms is recorded
//! (`<data dir>/groups.json`, before any value is shown). A group formed
//! at a later start — after a change of consent, of the scene or of k —
//! must differ from every recorded group it shares a member with by at
//! least k households (the k of planners when either is a planners'
//! group): old minus new is then a combination of at least k households,
//! even for values that barely change between the two (a cumulative
//! energy register). A group that would differ by fewer is not formed;
//! its households go up to the next level (block, district) like those of
//! a building with too few.
//!
//! Aggregates are sensors like the others (handles after the scene's), with
//! an [`Audience`] that keeps each kind of viewer to its own.

use std::collections::{BTreeMap, HashMap};

use bevy::prelude::*;
use polis_protocol::Consent;

use crate::apply::ChangedSensors;
use crate::city::{AggregateRule, CityTooLarge, Flat, NewAggregate, SensorTable};
use crate::components::{Audience, StoredReading};
use crate::index::IndexedItem;
use crate::messages::ConsentChanged;

/// How personal data is aggregated.
#[derive(Debug, Clone, Copy)]
pub struct PrivacyOptions {
    /// Fewest personal sensors behind a public aggregate.
    pub k: usize,
    /// Fewest personal sensors behind a planner's aggregate (at most `k`).
    pub k_planner: usize,
    /// Side of a block cell, metres.
    pub block_m: f64,
    /// Side of a district cell, metres.
    pub district_m: f64,
}

impl Default for PrivacyOptions {
    fn default() -> Self {
        Self {
            k: 5,
            k_planner: 3,
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
    pub(crate) asset: Option<u32>,
}

fn cell(position: Vec3, side_m: f64) -> (i64, i64) {
    (
        (f64::from(position.x) / side_m).floor() as i64,
        (f64::from(position.y) / side_m).floor() as i64,
    )
}

/// A set of personal sensors grouped together, and where it stands: its
/// building, or (for groups made of several buildings' meters) a
/// representative position.
#[derive(Debug, Clone)]
struct Unit {
    members: Vec<u32>,
    building: Option<u32>,
    at: Vec3,
}

/// A group formed at one level of the hierarchy.
struct Formed {
    level: &'static str,
    key: String,
    unit: Unit,
}

/// Merges `units` into groups of at least `k` members: all units of one
/// building, else of one block cell, else of one district cell. Units are
/// never split, so each group is a union of whole units; units left in a
/// district with fewer than `k` members form no group.
fn merge_units(
    units: Vec<Unit>,
    k: usize,
    options: &PrivacyOptions,
    allowed: &dyn Fn(&[u32]) -> bool,
) -> Vec<Formed> {
    let mut formed = Vec::new();
    let mut buildings: BTreeMap<u32, Vec<Unit>> = BTreeMap::new();
    let mut left = Vec::new();
    for unit in units {
        match unit.building {
            Some(asset) => buildings.entry(asset).or_default().push(unit),
            None => left.push(unit),
        }
    }
    for (asset, units) in buildings {
        let merged = merge(units);
        if merged.members.len() >= k && allowed(&merged.members) {
            formed.push(Formed {
                level: "building",
                key: asset.to_string(),
                unit: merged,
            });
        } else {
            left.push(merged);
        }
    }
    for (level, side_m) in [("block", options.block_m), ("district", options.district_m)] {
        let mut cells: BTreeMap<(i64, i64), Vec<Unit>> = BTreeMap::new();
        for unit in left.drain(..) {
            cells.entry(cell(unit.at, side_m)).or_default().push(unit);
        }
        for ((x, y), units) in cells {
            let members: usize = units.iter().map(|u| u.members.len()).sum();
            let mut merged = merge(units.clone());
            if members >= k && allowed(&merged.members) {
                merged.building = None;
                formed.push(Formed {
                    level,
                    key: format!("{x}_{y}"),
                    unit: merged,
                });
            } else {
                left.extend(units);
            }
        }
    }
    // What is left is in groups smaller than `k` even at district level.
    formed
}

/// One unit of several, standing where the first stands.
fn merge(units: Vec<Unit>) -> Unit {
    let at = units.first().map_or(Vec3::ZERO, |u| u.at);
    let building = units.first().and_then(|u| u.building);
    let mut members: Vec<u32> = units.into_iter().flat_map(|u| u.members).collect();
    members.sort_unstable();
    Unit {
        members,
        building,
        at,
    }
}

/// Households' consent to what is derived from their sensors, by sensor
/// id; a sensor not listed consents to both (the default).
#[derive(Debug, Clone, Default)]
pub struct Consents(HashMap<String, Consent>);

impl Consents {
    /// The consent of each listed sensor.
    pub fn new(consents: impl IntoIterator<Item = (String, Consent)>) -> Self {
        Self(consents.into_iter().collect())
    }

    /// What sensor `id` consents to.
    pub fn of(&self, id: &str) -> Consent {
        self.0.get(id).copied().unwrap_or_default()
    }
}

/// Every group a twin of this data directory has formed before (and so
/// may have shown), by role and members' sensor ids, from
/// `<data dir>/groups.json`: a group formed now must not differ from any
/// of them by fewer than k households (see the module's documentation).
#[derive(Debug, Clone, Default)]
pub struct PastGroups {
    groups: Vec<PastGroup>,
}

/// One group formed before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PastGroup {
    /// Shown to the public (else to planners).
    pub public: bool,
    /// Its members' sensor ids, sorted.
    pub members: Vec<String>,
}

impl PastGroups {
    /// The groups formed before.
    pub fn new(groups: Vec<PastGroup>) -> Self {
        Self { groups }
    }

    /// Every group, in order.
    pub fn groups(&self) -> &[PastGroup] {
        &self.groups
    }

    /// Withdraws every aggregate of `sensors` (no value for anyone): what
    /// a twin does when it cannot record its groups. Returns how many.
    pub fn withdraw_all(sensors: &mut SensorTable) -> usize {
        let mut withdrawn = 0;
        for handle in (0u32..).take(sensors.len()) {
            if sensors.withdraw_aggregate(handle) {
                sensors.set_latest(handle, None);
                withdrawn += 1;
            }
        }
        withdrawn
    }

    /// The groups a twin's `sensors` hold now, as they are to be recorded.
    pub fn formed_in(sensors: &SensorTable) -> Vec<PastGroup> {
        (0u32..)
            .take(sensors.len())
            .filter_map(|handle| {
                let members = sensors.aggregate_members(handle)?;
                let mut ids: Vec<String> = members
                    .iter()
                    .filter_map(|&m| sensors.id(m).map(str::to_owned))
                    .collect();
                ids.sort_unstable();
                Some(PastGroup {
                    public: sensors.audience(handle) == Some(Audience::PUBLIC),
                    members: ids,
                })
            })
            .collect()
    }
}

/// Tells whether a group of `members` may be formed for the public (or
/// planners): whether it differs from every past group it shares a member
/// with by at least the k of the lower of the two roles (someone holding
/// both views could subtract one from the other, which leaves a
/// combination of the households in just one of them).
struct PastCheck<'a> {
    past: &'a PastGroups,
    /// For each scene sensor handle, the past groups holding it.
    by_handle: HashMap<u32, Vec<usize>>,
    /// Each past group's members as handles (ids no longer in the scene
    /// count as members nobody has now).
    handles: Vec<(Vec<u32>, usize)>,
    k: usize,
    k_planner: usize,
}

impl<'a> PastCheck<'a> {
    fn new(sensors: &SensorTable, past: &'a PastGroups, k: usize, k_planner: usize) -> Self {
        let mut by_handle: HashMap<u32, Vec<usize>> = HashMap::new();
        let mut handles = Vec::with_capacity(past.groups.len());
        for (index, group) in past.groups.iter().enumerate() {
            let mut known: Vec<u32> = group
                .members
                .iter()
                .filter_map(|id| sensors.by_id(id))
                .collect();
            known.sort_unstable();
            known.dedup();
            for &handle in &known {
                by_handle.entry(handle).or_default().push(index);
            }
            let gone = group.members.len().saturating_sub(known.len());
            handles.push((known, gone));
        }
        Self {
            past,
            by_handle,
            handles,
            k,
            k_planner,
        }
    }

    fn allows(&self, public: bool, members: &[u32]) -> bool {
        let mut seen: Vec<usize> = members
            .iter()
            .filter_map(|m| self.by_handle.get(m))
            .flatten()
            .copied()
            .collect();
        seen.sort_unstable();
        seen.dedup();
        seen.into_iter().all(|index| {
            let (Some((old, gone)), Some(group)) =
                (self.handles.get(index), self.past.groups.get(index))
            else {
                return true;
            };
            let shared = old
                .iter()
                .filter(|h| members.binary_search(h).is_ok())
                .count();
            let differ = (old.len() - shared) + gone + (members.len() - shared);
            let k = if public && group.public {
                self.k
            } else {
                self.k_planner
            };
            differ == 0 || differ >= k
        })
    }
}

/// The suffix that keeps the groups of one consent class apart from the
/// others' in the same building or cell (none for the default class, whose
/// ids stay as they always were).
fn class_suffix(consent: Consent) -> &'static str {
    match (consent.planners, consent.public) {
        (true, true) => "",
        (true, false) => "-nopublic",
        (false, true) => "-noplanners",
        (false, false) => "-none",
    }
}

/// The planner and public groups of the personal sensors among `sensors`
/// (the scene's, before any aggregate is added), each household in the
/// groups of only the roles it consents to; see the module's documentation
/// for why they nest.
pub(crate) fn plan_groups(
    sensors: &SensorTable,
    options: &PrivacyOptions,
    consents: &Consents,
    past: &PastGroups,
) -> Vec<GroupSpec> {
    let k = options.k.max(2);
    let k_planner = options.k_planner.clamp(2, k);
    let check = PastCheck::new(sensors, past, k, k_planner);
    let for_planners = |members: &[u32]| check.allows(false, members);
    let for_public = |members: &[u32]| check.allows(true, members);
    // Households are grouped only with households of the same consent
    // class: a group mixing classes would let a role it is shown to
    // subtract its way to a household that refused that role.
    let mut by_class: BTreeMap<(&str, bool, bool), Vec<Unit>> = BTreeMap::new();
    let personal = (0u32..)
        .take(sensors.len())
        .filter(|&h| sensors.personal(h) == Some(true));
    for handle in personal {
        let quantity = sensors.quantity(handle).unwrap_or_default();
        let consent = consents.of(sensors.id(handle).unwrap_or_default());
        by_class
            .entry((quantity, consent.planners, consent.public))
            .or_default()
            .push(Unit {
                members: vec![handle],
                building: sensors.asset(handle),
                at: sensors.position_enu_m(handle).unwrap_or_default(),
            });
    }
    let mut groups = Vec::new();
    for ((quantity, planners, public), households) in by_class {
        let suffix = class_suffix(Consent { planners, public });
        // The public's groups are unions of whole planner groups when the
        // class is shown to planners too; otherwise they are made of
        // single households, and planners see nothing smaller within them.
        let public_units = if planners {
            let planner = merge_units(households, k_planner, options, &for_planners);
            let units: Vec<Unit> = planner.iter().map(|f| f.unit.clone()).collect();
            for Formed { level, key, unit } in planner {
                // Planners' building aggregates keep the ids they always had.
                groups.push(GroupSpec {
                    id: format!("agg-{level}-{key}-{quantity}{suffix}"),
                    asset: unit.building,
                    members: unit.members,
                    audience: Audience::PLANNERS,
                });
            }
            units
        } else {
            households
        };
        if !public {
            continue;
        }
        for Formed { level, key, unit } in merge_units(public_units, k, options, &for_public) {
            groups.push(GroupSpec {
                id: format!("agg-public-{level}-{key}-{quantity}{suffix}"),
                asset: unit.building,
                members: unit.members,
                audience: Audience::PUBLIC,
            });
        }
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
                // Fixed membership: a value only once every member has one.
                min_members: u32::try_from(group.members.len()).unwrap_or(u32::MAX),
                withdrawn: false,
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
    if rule.withdrawn {
        return None;
    }
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

/// Households changed their consent: withdraw every aggregate their
/// sensors feed, for every role, before this tick's readings are applied.
pub(crate) fn withdraw_aggregates(
    mut changes: MessageReader<ConsentChanged>,
    mut sensors: ResMut<SensorTable>,
    aggregates_of: Res<AggregatesOf>,
    mut dirty: ResMut<DirtyAggregates>,
    mut changed: ResMut<ChangedSensors>,
) {
    for change in changes.read() {
        let mut withdrawn = 0usize;
        for id in &change.sensors {
            let Some(handle) = sensors.by_id(id) else {
                continue;
            };
            for &aggregate in aggregates_of.of(handle) {
                if sensors.withdraw_aggregate(aggregate) {
                    // No value from now on, before anyone asks again.
                    sensors.set_latest(aggregate, None);
                    changed.0.push(aggregate);
                    dirty.0.push(aggregate);
                    withdrawn += 1;
                }
            }
        }
        tracing::info!(
            sensors = change.sensors.len(),
            aggregates = withdrawn,
            "consent changed: aggregates withdrawn until the next start"
        );
        if let Some(done) = &change.done {
            // The requester may have given up waiting; nothing to do then.
            let _ = done.send(withdrawn);
        }
    }
}
