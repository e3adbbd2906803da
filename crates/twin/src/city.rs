//! The city's assets and sensors as columns indexed by handle.
//!
//! A city of a million buildings with a meter each is two million items. As
//! Bevy entities each carried its own allocations (id, footprint), a record
//! padded to its widest field and the ECS's per-entity bookkeeping; as
//! columns an item costs little more than its fields: ids end to end in one
//! string, shapes end to end in one list of coordinates, a latest reading as
//! two numbers and a byte. A handle is the item's position in the scene and
//! the index into every column.
//!
//! Longer than most modules (≈ 700 lines, a third of them tests): the two
//! tables share their span arithmetic and flat storage, and are one concept,
//! so they are kept together.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;

use bevy::platform::collections::HashTable;
use bevy::platform::hash::FixedHasher;
use bevy::prelude::*;
use polis_protocol::{
    AssetInfo, AssetKind, Domain, Geometry, GeometryClass, Quality, SensorInfo, ValueUpdate,
};

use crate::components::{Audience, StoredReading};

/// The city does not fit the twin's tables, whose offsets are 32-bit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the city is too large for the twin: {0}")]
pub struct CityTooLarge(pub &'static str);

fn offset(len: usize, what: &'static str) -> Result<u32, CityTooLarge> {
    u32::try_from(len).map_err(|_| CityTooLarge(what))
}

/// Where item `index` lies, when items are stored end to end and `ends`
/// holds where each one ends.
fn span(ends: &[u32], index: usize) -> Option<std::ops::Range<usize>> {
    let end = *ends.get(index)? as usize;
    let start = match index.checked_sub(1) {
        Some(previous) => *ends.get(previous)? as usize,
        None => 0,
    };
    Some(start..end)
}

/// Lists end to end in one vector: list `i` is `items[ends[i - 1]..ends[i]]`
/// (from 0 for the first). Lists past the last one pushed are empty.
#[derive(Debug)]
pub(crate) struct Flat<T> {
    ends: Vec<u32>,
    items: Vec<T>,
}

impl<T> Default for Flat<T> {
    fn default() -> Self {
        Self {
            ends: Vec::new(),
            items: Vec::new(),
        }
    }
}

impl<T> Flat<T> {
    fn with_capacity(lists: usize, items: usize) -> Self {
        Self {
            ends: Vec::with_capacity(lists),
            items: Vec::with_capacity(items),
        }
    }

    /// Appends the next list.
    fn push(
        &mut self,
        list: impl IntoIterator<Item = T>,
        what: &'static str,
    ) -> Result<(), CityTooLarge> {
        self.items.extend(list);
        self.ends.push(offset(self.items.len(), what)?);
        Ok(())
    }

    /// List `index`; empty past the last list.
    pub(crate) fn get(&self, index: usize) -> &[T] {
        span(&self.ends, index)
            .and_then(|range| self.items.get(range))
            .unwrap_or_default()
    }

    fn shrink_to_fit(&mut self) {
        self.ends.shrink_to_fit();
        self.items.shrink_to_fit();
    }
}

impl Flat<u32> {
    /// The lists of `(key, value)` pairs grouped by key: list `k` holds the
    /// values paired with `k`, in ascending order.
    pub(crate) fn from_pairs(
        mut pairs: Vec<(u32, u32)>,
        what: &'static str,
    ) -> Result<Self, CityTooLarge> {
        pairs.sort_unstable();
        let lists = pairs.last().map_or(0, |&(key, _)| key as usize + 1);
        let mut flat = Self::with_capacity(lists, pairs.len());
        let mut next = 0;
        for key in 0..lists {
            let start = next;
            while pairs.get(next).is_some_and(|&(k, _)| k as usize == key) {
                next += 1;
            }
            let values = pairs.get(start..next).unwrap_or_default();
            flat.push(values.iter().map(|&(_, value)| value), what)?;
        }
        Ok(flat)
    }
}

/// Strings end to end in one allocation, addressed by position.
#[derive(Debug, Default)]
struct Strings {
    text: String,
    ends: Vec<u32>,
}

impl Strings {
    fn push(&mut self, value: &str, what: &'static str) -> Result<(), CityTooLarge> {
        self.text.push_str(value);
        self.ends.push(offset(self.text.len(), what)?);
        Ok(())
    }

    fn get(&self, index: usize) -> Option<&str> {
        self.text.get(span(&self.ends, index)?)
    }

    fn shrink_to_fit(&mut self) {
        self.text.shrink_to_fit();
        self.ends.shrink_to_fit();
    }
}

/// Every asset of the city (building, pipe, stop, …), by handle.
#[derive(Resource, Debug, Default)]
pub struct AssetTable {
    ids: Strings,
    kinds: Vec<(AssetKind, GeometryClass)>,
    /// Height above ground, metres; NaN when the scene gives none.
    heights_m: Vec<f32>,
    /// Local east/north metres of each point of a footprint or line, or
    /// east/north/up of a point asset.
    coords_enu_m: Flat<f32>,
    /// Attributes from the scene, sorted by key.
    attributes: Flat<(Box<str>, Box<str>)>,
    /// The scene sensors that share each asset's index entry, ascending.
    indexed_with: Flat<u32>,
}

impl AssetTable {
    /// Appends an asset of the scene; its handle is the number before it.
    pub(crate) fn push(&mut self, asset: &polis_scene::Asset) -> Result<(), CityTooLarge> {
        self.ids.push(&asset.id, "asset ids")?;
        self.kinds.push((asset.kind, asset.geometry.class()));
        self.heights_m
            .push(asset.height_m.map_or(f32::NAN, |h| h as f32));
        let what = "asset coordinates";
        match &asset.geometry {
            polis_scene::Geometry::Footprint(points) | polis_scene::Geometry::Line(points) => {
                self.coords_enu_m.push(
                    points.iter().flat_map(|[e, n]| [*e as f32, *n as f32]),
                    what,
                )?;
            }
            polis_scene::Geometry::Point(point) => {
                self.coords_enu_m.push(point.map(|c| c as f32), what)?;
            }
        }
        self.attributes.push(
            asset
                .attributes
                .iter()
                .map(|(k, v)| (k.as_str().into(), v.as_str().into())),
            "asset attributes",
        )
    }

    pub(crate) fn with_capacity(assets: usize, coords: usize) -> Self {
        Self {
            ids: Strings::default(),
            kinds: Vec::with_capacity(assets),
            heights_m: Vec::with_capacity(assets),
            coords_enu_m: Flat::with_capacity(assets, coords),
            attributes: Flat::with_capacity(assets, 0),
            indexed_with: Flat::default(),
        }
    }

    pub(crate) fn set_indexed_with(&mut self, sensors: Flat<u32>) {
        self.indexed_with = sensors;
    }

    pub(crate) fn shrink_to_fit(&mut self) {
        self.ids.shrink_to_fit();
        self.kinds.shrink_to_fit();
        self.heights_m.shrink_to_fit();
        self.coords_enu_m.shrink_to_fit();
        self.attributes.shrink_to_fit();
        self.indexed_with.shrink_to_fit();
    }

    /// Number of assets.
    pub fn len(&self) -> usize {
        self.kinds.len()
    }

    /// True when the city has no assets.
    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }

    /// The scene id of asset `handle`.
    pub fn id(&self, handle: u32) -> Option<&str> {
        self.ids.get(handle as usize)
    }

    /// What asset `handle` is.
    pub fn kind(&self, handle: u32) -> Option<AssetKind> {
        self.kinds.get(handle as usize).map(|(kind, _)| *kind)
    }

    /// Height above ground of asset `handle`, metres, if the scene gives one.
    pub fn height_m(&self, handle: u32) -> Option<f32> {
        self.heights_m
            .get(handle as usize)
            .copied()
            .filter(|h| !h.is_nan())
    }

    /// The shape of asset `handle` in local east/north/up metres.
    pub fn geometry_enu_m(&self, handle: u32) -> Option<Geometry> {
        let (_, class) = *self.kinds.get(handle as usize)?;
        let coords = self.coords_enu_m.get(handle as usize);
        let points = || coords.chunks_exact(2).map(|c| [c[0], c[1]]).collect();
        Some(match class {
            GeometryClass::Footprint => Geometry::Footprint(points()),
            GeometryClass::Line => Geometry::Line(points()),
            GeometryClass::Point => Geometry::Point(<[f32; 3]>::try_from(coords).ok()?),
        })
    }

    /// The east/north box of asset `handle`'s shape, metres.
    pub fn bounds_enu_m(&self, handle: u32) -> Option<([f32; 2], [f32; 2])> {
        let (_, class) = *self.kinds.get(handle as usize)?;
        let coords = self.coords_enu_m.get(handle as usize);
        let step = if class == GeometryClass::Point { 3 } else { 2 };
        let mut points = coords.chunks_exact(step).map(|c| [c[0], c[1]]);
        let first = points.next()?;
        Some(points.fold((first, first), |(min, max), [e, n]| {
            (
                [min[0].min(e), min[1].min(n)],
                [max[0].max(e), max[1].max(n)],
            )
        }))
    }

    /// How asset `handle`'s shape is described.
    pub fn geometry_class(&self, handle: u32) -> Option<GeometryClass> {
        self.kinds.get(handle as usize).map(|(_, class)| *class)
    }

    /// Handles of the scene sensors that share asset `handle`'s index entry,
    /// ascending: those placed on a footprint or point asset, on or near it.
    pub fn sensors_indexed_with(&self, handle: u32) -> &[u32] {
        self.indexed_with.get(handle as usize)
    }

    /// Asset `handle` as sent to viewers.
    pub fn info(&self, handle: u32) -> Option<AssetInfo> {
        Some(AssetInfo {
            handle,
            id: self.id(handle)?.to_owned(),
            kind: self.kind(handle)?,
            geometry: self.geometry_enu_m(handle)?,
            height_m: self.height_m(handle),
            attributes: self
                .attributes
                .get(handle as usize)
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
    }
}

/// A sensor's fixed description, apart from its id and position: 8 bytes.
#[derive(Debug, Clone, Copy)]
struct SensorMeta {
    quantity: u16,
    unit: u16,
    domain: Domain,
    audience: Audience,
    personal: bool,
}

/// An aggregate sensor's rule: its members' values summed or averaged.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AggregateRule {
    /// Sum (additive quantities such as power) or mean.
    pub(crate) additive: bool,
    /// Fewest members with a value for the aggregate to have one.
    pub(crate) min_members: u32,
    /// A member's consent changed since the twin formed it: it has no
    /// value until the twin next starts (see `privacy`).
    pub(crate) withdrawn: bool,
}

/// A sensor to append to the table.
pub(crate) struct NewSensor<'a> {
    pub(crate) id: &'a str,
    pub(crate) domain: Domain,
    pub(crate) quantity: &'a str,
    pub(crate) unit: &'a str,
    pub(crate) position_enu_m: Vec3,
    pub(crate) asset: Option<u32>,
    pub(crate) personal: bool,
    pub(crate) audience: Audience,
}

/// An aggregate to append to the table.
pub(crate) struct NewAggregate<'a> {
    pub(crate) id: &'a str,
    pub(crate) members: &'a [u32],
    pub(crate) position_enu_m: Vec3,
    pub(crate) asset: Option<u32>,
    pub(crate) audience: Audience,
    pub(crate) rule: AggregateRule,
}

/// What the latest-reading state byte means: no reading yet, a reading
/// without a quality flag, or one with a quality flag, whose
/// [`Quality::code`] follows these two.
const NO_READING: u8 = 0;
const NO_QUALITY: u8 = 1;
/// Set in the state byte of a reading restored at start rather than
/// received since (aggregates do not take those).
const RESTORED: u8 = 0x80;
// Quality codes follow `NO_QUALITY` and must stay clear of the flag.
const _: () = assert!(NO_QUALITY + 1 + 3 < RESTORED);

fn quality_code(quality: Option<Quality>) -> u8 {
    quality.map_or(NO_QUALITY, |quality| NO_QUALITY + 1 + quality.code())
}

fn quality_of(code: u8) -> Option<Quality> {
    Quality::from_code(code.checked_sub(NO_QUALITY + 1)?)
}

/// Marks "no asset" in the asset column.
const NO_ASSET: u32 = u32::MAX;

/// Every sensor of the city, by handle: the scene's first, then the
/// aggregates the twin adds for privacy. Scene sensors can be looked up by
/// id; aggregates have ids no gateway can write to.
#[derive(Resource, Debug, Default)]
pub struct SensorTable {
    ids: Strings,
    /// Scene sensor handles, hashed by id.
    by_id: HashTable<u32>,
    hasher: FixedHasher,
    meta: Vec<SensorMeta>,
    /// Quantity and unit names, each once.
    names: Vec<Arc<str>>,
    name_index: HashMap<Arc<str>, u16>,
    positions_enu_m: Vec<Vec3>,
    assets: Vec<u32>,
    latest_time_ms: Vec<i64>,
    latest_value: Vec<f64>,
    latest_state: Vec<u8>,
    /// Members and rule of each aggregate; aggregates are the last
    /// `rules.len()` sensors.
    members: Flat<u32>,
    rules: Vec<AggregateRule>,
}

impl SensorTable {
    pub(crate) fn with_capacity(sensors: usize) -> Self {
        Self {
            by_id: HashTable::with_capacity(sensors),
            meta: Vec::with_capacity(sensors),
            positions_enu_m: Vec::with_capacity(sensors),
            assets: Vec::with_capacity(sensors),
            latest_time_ms: Vec::with_capacity(sensors),
            latest_value: Vec::with_capacity(sensors),
            latest_state: Vec::with_capacity(sensors),
            ..Self::default()
        }
    }

    fn intern(&mut self, name: &str) -> Result<u16, CityTooLarge> {
        if let Some(&index) = self.name_index.get(name) {
            return Ok(index);
        }
        let index =
            u16::try_from(self.names.len()).map_err(|_| CityTooLarge("quantity and unit names"))?;
        let name: Arc<str> = name.into();
        self.names.push(Arc::clone(&name));
        self.name_index.insert(name, index);
        Ok(index)
    }

    /// Appends a sensor's columns; returns its handle.
    fn push(
        &mut self,
        id: &str,
        meta: SensorMeta,
        position_enu_m: Vec3,
        asset: Option<u32>,
    ) -> Result<u32, CityTooLarge> {
        let handle = offset(self.meta.len(), "sensors")?;
        self.ids.push(id, "sensor ids")?;
        self.meta.push(meta);
        self.positions_enu_m.push(position_enu_m);
        self.assets.push(asset.unwrap_or(NO_ASSET));
        self.latest_time_ms.push(0);
        self.latest_value.push(0.0);
        self.latest_state.push(NO_READING);
        Ok(handle)
    }

    /// Appends a scene sensor, addressable by its id (the first of a
    /// repeated id wins; validated scenes have none); returns its handle.
    pub(crate) fn push_scene_sensor(&mut self, sensor: NewSensor<'_>) -> Result<u32, CityTooLarge> {
        let meta = SensorMeta {
            quantity: self.intern(sensor.quantity)?,
            unit: self.intern(sensor.unit)?,
            domain: sensor.domain,
            audience: sensor.audience,
            personal: sensor.personal,
        };
        let handle = self.push(sensor.id, meta, sensor.position_enu_m, sensor.asset)?;
        if self.by_id(sensor.id).is_none() {
            let Self {
                by_id, ids, hasher, ..
            } = self;
            by_id.insert_unique(hasher.hash_one(sensor.id), handle, |&h| {
                hasher.hash_one(ids.get(h as usize).unwrap_or_default())
            });
        }
        Ok(handle)
    }

    /// Appends an aggregate of `members` (after every scene sensor), which
    /// measures what its first member does, in the same unit and layer, and
    /// is seen by `audience`; returns its handle, or `None` without members.
    pub(crate) fn push_aggregate(
        &mut self,
        aggregate: NewAggregate<'_>,
    ) -> Result<Option<u32>, CityTooLarge> {
        let Some(like) = aggregate.members.first().and_then(|&m| self.meta(m)) else {
            return Ok(None);
        };
        let meta = SensorMeta {
            audience: aggregate.audience,
            personal: false,
            ..*like
        };
        let handle = self.push(
            aggregate.id,
            meta,
            aggregate.position_enu_m,
            aggregate.asset,
        )?;
        self.members
            .push(aggregate.members.iter().copied(), "aggregate members")?;
        self.rules.push(aggregate.rule);
        Ok(Some(handle))
    }

    pub(crate) fn shrink_to_fit(&mut self) {
        self.ids.shrink_to_fit();
        self.by_id.shrink_to_fit(|&h| {
            self.hasher
                .hash_one(self.ids.get(h as usize).unwrap_or_default())
        });
        self.meta.shrink_to_fit();
        self.positions_enu_m.shrink_to_fit();
        self.assets.shrink_to_fit();
        self.latest_time_ms.shrink_to_fit();
        self.latest_value.shrink_to_fit();
        self.latest_state.shrink_to_fit();
        self.members.shrink_to_fit();
        self.rules.shrink_to_fit();
    }

    /// Number of sensors, aggregates included.
    pub fn len(&self) -> usize {
        self.meta.len()
    }

    /// True when the city has no sensors.
    pub fn is_empty(&self) -> bool {
        self.meta.is_empty()
    }

    /// The handle of the scene sensor with this id.
    pub fn by_id(&self, id: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(id);
        self.by_id
            .find(hash, |&h| self.ids.get(h as usize) == Some(id))
            .copied()
    }

    /// The id of sensor `handle`.
    pub fn id(&self, handle: u32) -> Option<&str> {
        self.ids.get(handle as usize)
    }

    fn meta(&self, handle: u32) -> Option<&SensorMeta> {
        self.meta.get(handle as usize)
    }

    /// The layer of sensor `handle`.
    pub fn domain(&self, handle: u32) -> Option<Domain> {
        self.meta(handle).map(|m| m.domain)
    }

    /// Which viewers may see sensor `handle`.
    pub fn audience(&self, handle: u32) -> Option<Audience> {
        self.meta(handle).map(|m| m.audience)
    }

    /// Whether sensor `handle`'s readings concern a household or a person.
    pub fn personal(&self, handle: u32) -> Option<bool> {
        self.meta(handle).map(|m| m.personal)
    }

    /// What sensor `handle` measures.
    pub fn quantity(&self, handle: u32) -> Option<&str> {
        let meta = self.meta(handle)?;
        self.names.get(usize::from(meta.quantity)).map(|n| &**n)
    }

    /// The unit of sensor `handle`'s values.
    pub fn unit(&self, handle: u32) -> Option<&str> {
        let meta = self.meta(handle)?;
        self.names.get(usize::from(meta.unit)).map(|n| &**n)
    }

    /// Where sensor `handle` is, local east/north/up metres.
    pub fn position_enu_m(&self, handle: u32) -> Option<Vec3> {
        self.positions_enu_m.get(handle as usize).copied()
    }

    /// The handle of the asset sensor `handle` belongs to.
    pub fn asset(&self, handle: u32) -> Option<u32> {
        self.assets
            .get(handle as usize)
            .copied()
            .filter(|&a| a != NO_ASSET)
    }

    /// The latest reading of sensor `handle` by device time.
    pub fn latest(&self, handle: u32) -> Option<StoredReading> {
        let index = handle as usize;
        let state = *self.latest_state.get(index)? & !RESTORED;
        if state == NO_READING {
            return None;
        }
        Some(StoredReading {
            device_time_ms: *self.latest_time_ms.get(index)?,
            value: *self.latest_value.get(index)?,
            quality: quality_of(state),
        })
    }

    /// The latest reading of sensor `handle` if it arrived since the twin
    /// started (not restored from history): what aggregates combine.
    pub(crate) fn received_latest(&self, handle: u32) -> Option<StoredReading> {
        let state = *self.latest_state.get(handle as usize)?;
        if state & RESTORED != 0 {
            return None;
        }
        self.latest(handle)
    }

    /// Sets the latest reading of sensor `handle` as restored at start.
    pub(crate) fn restore_latest(&mut self, handle: u32, reading: StoredReading) {
        self.set_latest(handle, Some(reading));
        if let Some(state) = self.latest_state.get_mut(handle as usize) {
            *state |= RESTORED;
        }
    }

    /// Sets (or clears) the latest reading of sensor `handle`.
    pub(crate) fn set_latest(&mut self, handle: u32, reading: Option<StoredReading>) {
        let index = handle as usize;
        let (Some(time), Some(value), Some(state)) = (
            self.latest_time_ms.get_mut(index),
            self.latest_value.get_mut(index),
            self.latest_state.get_mut(index),
        ) else {
            return;
        };
        match reading {
            Some(reading) => {
                *time = reading.device_time_ms;
                *value = reading.value;
                *state = quality_code(reading.quality);
            }
            None => *state = NO_READING,
        }
    }

    /// The members and rule of aggregate `handle`; `None` for scene sensors.
    pub(crate) fn aggregate(&self, handle: u32) -> Option<(&[u32], AggregateRule)> {
        let first_aggregate = self.meta.len().checked_sub(self.rules.len())?;
        let index = (handle as usize).checked_sub(first_aggregate)?;
        Some((self.members.get(index), *self.rules.get(index)?))
    }

    /// Whether aggregate `handle` was withdrawn (see `withdraw_aggregate`).
    pub(crate) fn is_withdrawn(&self, handle: u32) -> bool {
        self.aggregate(handle)
            .is_some_and(|(_, rule)| rule.withdrawn)
    }

    /// Withdraws aggregate `handle` for good (it has no value from now on);
    /// `false` if it is no aggregate.
    pub(crate) fn withdraw_aggregate(&mut self, handle: u32) -> bool {
        let Some(first_aggregate) = self.meta.len().checked_sub(self.rules.len()) else {
            return false;
        };
        let rule = (handle as usize)
            .checked_sub(first_aggregate)
            .and_then(|index| self.rules.get_mut(index));
        match rule {
            Some(rule) => {
                rule.withdrawn = true;
                true
            }
            None => false,
        }
    }

    /// The personal sensors aggregate `handle` sums or averages; `None` for
    /// scene sensors.
    pub fn aggregate_members(&self, handle: u32) -> Option<&[u32]> {
        self.aggregate(handle).map(|(members, _)| members)
    }

    /// Sensor `handle` as sent to viewers, with its latest value unless
    /// `with_value` is false (a time-travelling viewer's values come from
    /// history).
    pub fn info(&self, handle: u32, with_value: bool) -> Option<SensorInfo> {
        let meta = self.meta(handle)?;
        Some(SensorInfo {
            handle,
            id: self.id(handle)?.to_owned(),
            domain: meta.domain,
            quantity: self.quantity(handle)?.to_owned(),
            unit: self.unit(handle)?.to_owned(),
            position_enu_m: self.position_enu_m(handle)?.to_array(),
            asset: self.asset(handle),
            personal: meta.personal,
            latest: with_value.then(|| self.value_update(handle)).flatten(),
        })
    }

    /// Sensor `handle`'s latest value as a value update.
    pub fn value_update(&self, handle: u32) -> Option<ValueUpdate> {
        self.latest(handle).map(|reading| ValueUpdate {
            sensor: handle,
            device_time_ms: reading.device_time_ms,
            value: reading.value,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_lists_come_back_as_pushed_and_are_empty_beyond() {
        let mut flat = Flat::default();
        flat.push([1, 2], "test").expect("fits");
        flat.push([], "test").expect("fits");
        flat.push([3], "test").expect("fits");
        assert_eq!(flat.get(0), [1, 2]);
        assert_eq!(flat.get(1), [] as [u32; 0]);
        assert_eq!(flat.get(2), [3]);
        assert_eq!(flat.get(3), [] as [u32; 0]);
    }

    #[test]
    fn pairs_group_by_key() {
        let flat = Flat::from_pairs(vec![(2, 7), (0, 5), (2, 6)], "test").expect("fits");
        assert_eq!(flat.get(0), [5]);
        assert_eq!(flat.get(1), [] as [u32; 0]);
        assert_eq!(flat.get(2), [6, 7]);
        assert_eq!(flat.get(9), [] as [u32; 0]);
    }

    #[test]
    fn strings_come_back_whole() {
        let mut strings = Strings::default();
        for s in ["m1", "", "ü-2"] {
            strings.push(s, "test").expect("fits");
        }
        assert_eq!(strings.get(0), Some("m1"));
        assert_eq!(strings.get(1), Some(""));
        assert_eq!(strings.get(2), Some("ü-2"));
        assert_eq!(strings.get(3), None);
    }

    fn sensor(id: &str) -> NewSensor<'_> {
        NewSensor {
            id,
            domain: Domain::Energy,
            quantity: "active_power",
            unit: "kW",
            position_enu_m: Vec3::new(1.0, 2.0, 3.0),
            asset: None,
            personal: false,
            audience: Audience::EVERYONE,
        }
    }

    #[test]
    fn sensors_are_found_by_id_and_keep_their_latest_reading_and_quality() {
        let mut table = SensorTable::with_capacity(3);
        for id in ["a", "b", "c"] {
            table.push_scene_sensor(sensor(id)).expect("fits");
        }
        table.shrink_to_fit();
        assert_eq!(table.by_id("b"), Some(1));
        assert_eq!(table.by_id("d"), None);
        assert_eq!(table.latest(1), None);
        for quality in [
            None,
            Some(Quality::Good),
            Some(Quality::Uncertain),
            Some(Quality::Bad),
        ] {
            let reading = StoredReading {
                device_time_ms: -5,
                value: -0.0,
                quality,
            };
            table.set_latest(1, Some(reading));
            assert_eq!(table.latest(1), Some(reading));
        }
        table.set_latest(1, None);
        assert_eq!(table.latest(1), None);
        assert_eq!(table.latest(7), None);
        assert_eq!(table.quantity(2), Some("active_power"));
        assert_eq!(table.unit(2), Some("kW"));
        assert_eq!(table.asset(2), None);
        assert!(table.aggregate(2).is_none());
    }
}
