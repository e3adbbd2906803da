//! Turning a scene into entities, directories and the spatial index.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bevy::prelude::*;
use polis_protocol::{Geometry, Georeference};
use polis_scene::{self as scene, Scene};

use crate::components::{AssetRecord, Audience, LatestReading, SensorRecord, StoredReading};
use crate::index::{IndexedItem, SpatialIndex};
use crate::privacy::{PrivacyOptions, plan_groups, spawn_groups};

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

/// Sensors by id and by handle. The id keys share their allocation with
/// the sensors' [`SensorRecord`]s.
#[derive(Resource, Debug, Default)]
pub struct SensorDirectory {
    by_id: HashMap<Arc<str>, Entity>,
    by_handle: Vec<Entity>,
}

impl SensorDirectory {
    /// The sensor entity with this scene id.
    pub fn by_id(&self, id: &str) -> Option<Entity> {
        self.by_id.get(id).copied()
    }

    /// The sensor entity with this handle.
    pub fn by_handle(&self, handle: u32) -> Option<Entity> {
        self.by_handle.get(handle as usize).copied()
    }

    /// Number of sensors.
    pub fn len(&self) -> usize {
        self.by_handle.len()
    }

    /// True when the scene has no sensors.
    pub fn is_empty(&self) -> bool {
        self.by_handle.is_empty()
    }
}

/// Assets by handle.
#[derive(Resource, Debug, Default)]
pub struct AssetDirectory {
    by_handle: Vec<Entity>,
}

impl AssetDirectory {
    /// The asset entity with this handle.
    pub fn by_handle(&self, handle: u32) -> Option<Entity> {
        self.by_handle.get(handle as usize).copied()
    }
}

fn f32_points(points: &[[f64; 2]]) -> Vec<[f32; 2]> {
    points.iter().map(|[e, n]| [*e as f32, *n as f32]).collect()
}

fn wire_geometry(geometry: &scene::Geometry) -> Geometry {
    match geometry {
        scene::Geometry::Footprint(points) => Geometry::Footprint(f32_points(points)),
        scene::Geometry::Line(points) => Geometry::Line(f32_points(points)),
        scene::Geometry::Point([e, n, u]) => Geometry::Point([*e as f32, *n as f32, *u as f32]),
    }
}

/// Spawns every asset and sensor of a (validated) scene and builds the
/// directories and the spatial index. Handles are the items' positions in
/// the scene, so they are stable for a given scene file.
pub(crate) fn spawn_scene(world: &mut World, scene: &Scene, privacy: &PrivacyOptions) {
    let mut index_items = Vec::with_capacity(scene.assets.len() + scene.sensors.len());
    let mut assets = AssetDirectory {
        by_handle: Vec::with_capacity(scene.assets.len()),
    };
    let mut asset_handles = HashMap::with_capacity(scene.assets.len());
    for (handle, asset) in (0u32..).zip(&scene.assets) {
        let record = AssetRecord {
            handle,
            id: asset.id.as_str().into(),
            kind: asset.kind,
            geometry_enu_m: wire_geometry(&asset.geometry),
            height_m: asset.height_m.map(|h| h as f32),
            attributes: asset
                .attributes
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        let (min, max) = asset.geometry.bounds_enu_m();
        index_items.push(IndexedItem::asset(handle, min, max));
        asset_handles.insert(asset.id.as_str(), handle);
        assets.by_handle.push(world.spawn(record).id());
    }
    // Quantities and units repeat across thousands of sensors: one
    // allocation per distinct name.
    let mut names: HashSet<Arc<str>> = HashSet::new();
    let mut intern = |name: &str| -> Arc<str> {
        if let Some(known) = names.get(name) {
            return Arc::clone(known);
        }
        let name: Arc<str> = name.into();
        names.insert(Arc::clone(&name));
        name
    };
    let records: Vec<SensorRecord> = (0u32..)
        .zip(&scene.sensors)
        .map(|(handle, sensor)| {
            let [e, n, u] = sensor.position_enu_m;
            SensorRecord {
                handle,
                id: sensor.id.as_str().into(),
                domain: sensor.domain,
                quantity: intern(&sensor.quantity),
                unit: intern(&sensor.unit),
                position_enu_m: Vec3::new(e as f32, n as f32, u as f32),
                asset: sensor
                    .asset
                    .as_deref()
                    .and_then(|id| asset_handles.get(id).copied()),
                personal: sensor.personal,
                audience: if sensor.personal {
                    Audience::OPERATORS
                } else {
                    Audience::EVERYONE
                },
            }
        })
        .collect();
    let groups = plan_groups(&records, privacy);
    let mut sensors = SensorDirectory {
        by_id: HashMap::with_capacity(scene.sensors.len()),
        by_handle: Vec::with_capacity(scene.sensors.len() + groups.len()),
    };
    for (record, sensor) in records.iter().zip(&scene.sensors) {
        let [e, n, _] = sensor.position_enu_m;
        index_items.push(IndexedItem::sensor(record.handle, [e, n], [e, n]));
        let entity = world.spawn((record.clone(), LatestReading::default())).id();
        sensors.by_id.insert(Arc::clone(&record.id), entity);
        sensors.by_handle.push(entity);
    }
    let first_group = u32::try_from(records.len()).unwrap_or(u32::MAX);
    // Aggregates get handles but no ids a gateway could write to.
    for (entity, item) in spawn_groups(world, &records, groups, first_group) {
        index_items.push(item);
        sensors.by_handle.push(entity);
    }
    world.insert_resource(TwinInfo {
        scene_name: scene.name.clone(),
        georeference: scene.georeference,
        asset_count: scene.assets.len(),
        sensor_count: scene.sensors.len(),
    });
    world.insert_resource(SpatialIndex::bulk_load(index_items));
    world.insert_resource(assets);
    world.insert_resource(sensors);
}

/// Sets the latest reading of each listed sensor; returns how many were known.
pub(crate) fn restore_latest(world: &mut World, restored: &[(String, StoredReading)]) -> usize {
    let mut known = 0;
    for (id, reading) in restored {
        let Some(entity) = world.resource::<SensorDirectory>().by_id(id) else {
            continue;
        };
        if let Some(mut latest) = world.get_mut::<LatestReading>(entity) {
            latest.latest = Some(*reading);
            known += 1;
        }
    }
    known
}
