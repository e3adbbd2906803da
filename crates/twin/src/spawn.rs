//! Turning a scene into the city's tables and the spatial index.

use std::collections::HashMap;

use bevy::prelude::*;
use polis_protocol::{GeometryClass, Georeference};
use polis_scene::{self as scene, Scene};

use crate::city::{AssetTable, CityTooLarge, Flat, NewSensor, SensorTable};
use crate::components::{Audience, StoredReading};
use crate::index::{IndexedItem, SpatialIndex};
use crate::pick::is_vehicle;
use crate::privacy::{
    AggregatesOf, Consents, DirtyAggregates, PastGroups, PrivacyOptions, add_groups, plan_groups,
};

/// What the twin serves: the scene's name and georeference.
#[derive(Resource, Debug, Clone)]
pub struct TwinInfo {
    /// Scene name.
    pub scene_name: String,
    /// Where local metres sit on the Earth.
    pub georeference: Georeference,
    /// Number of assets.
    pub asset_count: usize,
    /// Number of sensors.
    pub sensor_count: usize,
}

/// How far from its asset's shape a sensor may stand and still share the
/// asset's index entry, metres.
const SHARED_ENTRY_REACH_M: f32 = 50.0;

/// Whether a sensor measuring `quantity` at `position` on `asset` shares
/// the asset's index entry: when the asset is compact (a footprint or a
/// point) and the sensor stands on or near it, and when it is a vehicle on
/// its route (picking finds it anywhere along the route, whose box the
/// entry is). Other sensors along lines (a main's meters, a road's
/// counters) keep entries of their own, so a long line does not drag all
/// of them into every query that meets its box.
fn shares_entry(assets: &AssetTable, asset: u32, quantity: &str, position: Vec3) -> bool {
    let class = assets.geometry_class(asset);
    if is_vehicle(quantity, class) {
        return true;
    }
    class.is_some_and(|class| class != GeometryClass::Line)
        && assets.bounds_enu_m(asset).is_some_and(|(min, max)| {
            let reach = SHARED_ENTRY_REACH_M;
            (min[0] - reach..=max[0] + reach).contains(&position.x)
                && (min[1] - reach..=max[1] + reach).contains(&position.y)
        })
}

fn coordinate_count(geometry: &scene::Geometry) -> usize {
    match geometry {
        scene::Geometry::Footprint(points) | scene::Geometry::Line(points) => 2 * points.len(),
        scene::Geometry::Point(_) => 3,
    }
}

/// Everything the twin knows of the city, ready to go into the world.
pub(crate) struct City {
    info: TwinInfo,
    index: SpatialIndex,
    assets: AssetTable,
    pub(crate) sensors: SensorTable,
    pub(crate) aggregates_of: AggregatesOf,
    dirty: DirtyAggregates,
}

impl City {
    /// No assets and no sensors, under `scene`'s name and georeference.
    pub(crate) fn empty(scene: &Scene) -> Self {
        Self {
            info: TwinInfo {
                scene_name: scene.name.clone(),
                georeference: scene.georeference,
                asset_count: 0,
                sensor_count: 0,
            },
            index: SpatialIndex::bulk_load(Vec::new()),
            assets: AssetTable::default(),
            sensors: SensorTable::default(),
            aggregates_of: AggregatesOf::default(),
            dirty: DirtyAggregates::default(),
        }
    }

    /// Inserts every part as a resource.
    pub(crate) fn insert_into(self, world: &mut World) {
        world.insert_resource(self.info);
        world.insert_resource(self.index);
        world.insert_resource(self.assets);
        world.insert_resource(self.sensors);
        world.insert_resource(self.aggregates_of);
        world.insert_resource(self.dirty);
    }
}

/// Builds the tables of every asset and sensor of a (validated) scene, the
/// privacy aggregates and the spatial index. Handles are the items'
/// positions in the scene, so they are stable for a given scene file.
pub(crate) fn build_city(
    scene: &Scene,
    privacy: &PrivacyOptions,
    consents: &Consents,
    past: &PastGroups,
) -> Result<City, CityTooLarge> {
    let coords = scene
        .assets
        .iter()
        .map(|a| coordinate_count(&a.geometry))
        .sum();
    let mut assets = AssetTable::with_capacity(scene.assets.len(), coords);
    let mut asset_handles = HashMap::with_capacity(scene.assets.len());
    for (handle, asset) in (0u32..).zip(&scene.assets) {
        assets.push(asset)?;
        asset_handles.insert(asset.id.as_str(), handle);
    }
    let mut sensors = SensorTable::with_capacity(scene.sensors.len());
    // (asset, sensor) for every sensor that shares its asset's index entry.
    let mut sharing = Vec::with_capacity(scene.sensors.len());
    let mut own_entries = Vec::new();
    for sensor in &scene.sensors {
        let [e, n, u] = sensor.position_enu_m;
        let asset = sensor
            .asset
            .as_deref()
            .and_then(|id| asset_handles.get(id).copied());
        let position_enu_m = Vec3::new(e as f32, n as f32, u as f32);
        let handle = sensors.push_scene_sensor(NewSensor {
            id: &sensor.id,
            domain: sensor.domain,
            quantity: &sensor.quantity,
            unit: &sensor.unit,
            position_enu_m,
            asset,
            personal: sensor.personal,
            audience: if sensor.personal {
                Audience::OPERATORS
            } else {
                Audience::EVERYONE
            },
        })?;
        match asset.filter(|&a| shares_entry(&assets, a, &sensor.quantity, position_enu_m)) {
            Some(asset) => sharing.push((asset, handle)),
            None => own_entries.push(handle),
        }
    }
    drop(asset_handles);
    assets.set_indexed_with(Flat::from_pairs(sharing, "sensors indexed with assets")?);

    // One index entry per asset, bounding it and the sensors that share it
    // (a building and its meters are one entry, not several); one per
    // other sensor and per aggregate.
    let mut index_items = Vec::with_capacity(scene.assets.len() + own_entries.len());
    let position = |handle: u32| {
        sensors
            .position_enu_m(handle)
            .map(|p| [p.x, p.y])
            .unwrap_or_default()
    };
    for handle in (0u32..).take(assets.len()) {
        if let Some((min, max)) = assets.bounds_enu_m(handle) {
            let sharing = assets
                .sensors_indexed_with(handle)
                .iter()
                .map(|&s| position(s));
            index_items.push(IndexedItem::asset(handle, min, max, sharing));
        }
    }
    for handle in own_entries {
        let point = position(handle);
        index_items.push(IndexedItem::sensor(handle, point, point));
    }
    let groups = plan_groups(&sensors, privacy, consents, past);
    let (aggregates_of, dirty, aggregate_items) = add_groups(&mut sensors, groups)?;
    index_items.extend(aggregate_items);
    assets.shrink_to_fit();
    sensors.shrink_to_fit();
    Ok(City {
        info: TwinInfo {
            scene_name: scene.name.clone(),
            georeference: scene.georeference,
            asset_count: scene.assets.len(),
            sensor_count: scene.sensors.len(),
        },
        index: SpatialIndex::bulk_load(index_items),
        assets,
        sensors,
        aggregates_of,
        dirty,
    })
}

/// Sets the latest reading of each listed sensor, marked as restored (no
/// aggregate takes it; see `privacy`); returns how many were known.
pub(crate) fn restore_latest(world: &mut World, restored: &[(String, StoredReading)]) -> usize {
    let mut sensors = world.resource_mut::<SensorTable>();
    let mut known = 0;
    for (id, reading) in restored {
        if let Some(handle) = sensors.by_id(id) {
            sensors.restore_latest(handle, *reading);
            known += 1;
        }
    }
    known
}
