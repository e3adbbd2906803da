//! The part of the city the server streams: assets and sensors in view,
//! their entities and meshes, and their colours.
//!
//! Longer than most modules (≈ 730 lines with its tests): applying a
//! snapshot or update, the meshes built for it and their colouring change
//! together, so they are kept together.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bevy::asset::RenderAssetUsages;
use bevy::mesh::{Indices, PrimitiveTopology};
use bevy::prelude::*;
use polis_protocol::{
    AssetInfo, AssetKind, Geometry, QUANTITY_DISTANCE_ALONG_ROUTE, SensorInfo, ServerToViewer,
    Snapshot, Update, ValueUpdate, shape,
};

use crate::colour::{self, LAYERS, Palette, STEPS};

/// Live values kept per sensor for its sparkline.
const RECENT_VALUES: usize = 64;
/// Time constant of a vehicle's glide to its reported position, seconds.
const VEHICLE_GLIDE_S: f32 = 0.6;

/// The scene's local east/north/up metres as a Bevy position (x east, y up,
/// z south).
pub fn bevy_from_enu([east, north, up]: [f32; 3]) -> Vec3 {
    Vec3::new(east, up, -north)
}

/// A Bevy position as local east/north/up metres.
pub fn enu_from_bevy(p: Vec3) -> [f32; 3] {
    [p.x, -p.z, p.y]
}

/// Groups the viewer can show and hide (keys 1–5).
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Group {
    /// Buildings.
    Buildings,
    /// Roads.
    Roads,
    /// Water pipes, junctions, tanks, pumps, reservoirs.
    Water,
    /// Transit routes, stops and vehicles.
    Transit,
    /// Sensor markers.
    Sensors,
}

impl Group {
    /// All groups with their toggle key number.
    pub const ALL: [Group; 5] = [
        Group::Buildings,
        Group::Roads,
        Group::Water,
        Group::Transit,
        Group::Sensors,
    ];

    /// Name for the help line.
    pub fn name(self) -> &'static str {
        match self {
            Group::Buildings => "buildings",
            Group::Roads => "roads",
            Group::Water => "water",
            Group::Transit => "transit",
            Group::Sensors => "sensors",
        }
    }

    fn of_asset(kind: AssetKind) -> Group {
        match kind {
            AssetKind::Building => Group::Buildings,
            AssetKind::Road => Group::Roads,
            AssetKind::TransitRoute | AssetKind::TransitStop => Group::Transit,
            _ => Group::Water,
        }
    }
}

/// What an entity shows.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shows {
    /// An asset, by handle.
    Asset(u32),
    /// A sensor or vehicle, by handle.
    Sensor(u32),
}

/// A vehicle gliding along its route to its latest reported distance.
#[derive(Component, Debug, Clone)]
pub struct Glide {
    route_enu_m: Arc<[[f32; 2]]>,
    shown_m: f64,
    target_m: f64,
}

/// An asset in view.
#[derive(Debug)]
pub struct AssetView {
    /// As the server describes it.
    pub info: AssetInfo,
    /// Its entity.
    pub entity: Entity,
    /// Handles of its sensors in view.
    pub sensors: Vec<u32>,
    /// Colour step shown (None: neutral).
    step: Option<usize>,
}

/// A sensor in view.
#[derive(Debug)]
pub struct SensorView {
    /// As the server describes it.
    pub info: SensorInfo,
    /// Its latest value.
    pub latest: Option<ValueUpdate>,
    /// Its marker or vehicle entity, if drawn.
    pub entity: Option<Entity>,
    /// Live values received since it came into view (device ms, value).
    pub recent: VecDeque<(i64, f64)>,
    step: Option<usize>,
}

/// Everything in view, and the counters the status line shows.
#[derive(Resource, Debug, Default)]
pub struct City {
    /// Assets by handle.
    pub assets: HashMap<u32, AssetView>,
    /// Sensors by handle.
    pub sensors: HashMap<u32, SensorView>,
    /// Values received since the last rate sample.
    pub values_since_sample: u64,
    /// Values per second over the last sample.
    pub values_per_s: f64,
    /// Whether a complete snapshot arrived since connecting.
    pub complete: bool,
    /// Whether colours need recomputing.
    dirty: bool,
    /// Range of the colour layer's values in view.
    pub range: Option<(f64, f64)>,
    /// Unit of the colour layer's values.
    pub unit: String,
}

impl City {
    /// The sensor an asset is coloured by / its panel starts with.
    pub fn primary_sensor(&self, asset: u32, layer: usize) -> Option<u32> {
        let view = self.assets.get(&asset)?;
        view.sensors
            .iter()
            .copied()
            .find(|s| {
                self.sensors
                    .get(s)
                    .is_some_and(|s| s.info.quantity == LAYERS[layer].quantity)
            })
            .or_else(|| view.sensors.first().copied())
    }
}

/// How the city is drawn: colour layer, palette, hidden groups, and the
/// shared meshes and materials.
#[derive(Resource, Debug)]
pub struct Look {
    /// Index into [`LAYERS`].
    pub layer: usize,
    /// The palette.
    pub palette: Palette,
    /// Groups switched off.
    pub hidden: Vec<Group>,
    steps: Vec<Handle<StandardMaterial>>,
    neutral: HashMap<Group, Handle<StandardMaterial>>,
    vehicle: Handle<StandardMaterial>,
    /// Material of the picked entity.
    pub selected: Handle<StandardMaterial>,
    marker: Handle<Mesh>,
    vehicle_mesh: Handle<Mesh>,
    point_meshes: HashMap<AssetKind, Handle<Mesh>>,
}

fn lit(colour: Color) -> StandardMaterial {
    StandardMaterial {
        base_color: colour,
        perceptual_roughness: 0.9,
        reflectance: 0.2,
        ..default()
    }
}

impl Look {
    /// Materials and meshes for `layer` and `palette`.
    pub fn new(
        layer: usize,
        palette: Palette,
        meshes: &mut Assets<Mesh>,
        materials: &mut Assets<StandardMaterial>,
    ) -> Look {
        let steps = (0..STEPS)
            .map(|s| {
                let [r, g, b] = palette.srgb(colour::step_position(s));
                materials.add(lit(Color::srgb(r, g, b)))
            })
            .collect();
        let neutral = [
            (Group::Buildings, Color::srgb(0.78, 0.77, 0.74)),
            (Group::Roads, Color::srgb(0.36, 0.37, 0.40)),
            (Group::Water, Color::srgb(0.35, 0.55, 0.80)),
            (Group::Transit, Color::srgb(0.80, 0.45, 0.70)),
            (Group::Sensors, Color::srgb(0.60, 0.60, 0.60)),
        ]
        .into_iter()
        .map(|(g, c)| {
            // Flat things on the ground need no lighting.
            let flat = matches!(g, Group::Roads);
            (
                g,
                materials.add(StandardMaterial {
                    unlit: flat,
                    ..lit(c)
                }),
            )
        })
        .collect();
        let point_meshes = [
            (AssetKind::TransitStop, Cuboid::new(4.0, 3.0, 4.0)),
            (AssetKind::WaterJunction, Cuboid::new(3.0, 3.0, 3.0)),
            (AssetKind::WaterTank, Cuboid::new(14.0, 10.0, 14.0)),
            (AssetKind::WaterReservoir, Cuboid::new(24.0, 4.0, 24.0)),
            (AssetKind::WaterPump, Cuboid::new(5.0, 5.0, 5.0)),
        ]
        .into_iter()
        .map(|(k, c)| (k, meshes.add(c)))
        .collect();
        Look {
            layer,
            palette,
            hidden: Vec::new(),
            steps,
            neutral,
            vehicle: materials.add(lit(Color::srgb(0.95, 0.95, 0.95))),
            selected: materials.add(StandardMaterial {
                base_color: Color::srgb(1.0, 0.2, 0.2),
                emissive: LinearRgba::rgb(0.6, 0.05, 0.05),
                ..default()
            }),
            marker: meshes.add(Cuboid::new(3.0, 3.0, 3.0)),
            vehicle_mesh: meshes.add(Cuboid::new(12.0, 3.5, 3.0)),
            point_meshes,
        }
    }

    /// Recolours the step materials for a new palette.
    pub fn set_palette(&mut self, palette: Palette, materials: &mut Assets<StandardMaterial>) {
        self.palette = palette;
        for (s, handle) in self.steps.iter().enumerate() {
            if let Some(mut material) = materials.get_mut(handle) {
                let [r, g, b] = palette.srgb(colour::step_position(s));
                material.base_color = Color::srgb(r, g, b);
            }
        }
    }

    fn material(&self, group: Group, step: Option<usize>) -> Handle<StandardMaterial> {
        match step {
            Some(s) => self.steps[s.min(STEPS - 1)].clone(),
            None => self.neutral[&group].clone(),
        }
    }
}

/// A mesh of flat-shaded triangles given in local east/north/up metres.
fn flat_mesh(vertices: &[[f32; 3]], triangles: &[[u32; 3]]) -> Mesh {
    let mut positions = Vec::with_capacity(triangles.len() * 3);
    let mut normals = Vec::with_capacity(triangles.len() * 3);
    for tri in triangles {
        let [a, b, c] = tri.map(|i| bevy_from_enu(vertices[i as usize]));
        let normal = (b - a).cross(c - a).normalize_or_zero();
        for p in [a, b, c] {
            positions.push(p.to_array());
            normals.push(normal.to_array());
        }
    }
    let count = positions.len() as u32;
    Mesh::new(
        PrimitiveTopology::TriangleList,
        RenderAssetUsages::default(),
    )
    .with_inserted_attribute(Mesh::ATTRIBUTE_POSITION, positions)
    .with_inserted_attribute(Mesh::ATTRIBUTE_NORMAL, normals)
    .with_inserted_indices(Indices::U32((0..count).collect()))
}

/// A flat ribbon `width_m` wide along a polyline, `up_m` above the ground.
fn ribbon(points: &[[f32; 2]], width_m: f32, up_m: f32) -> (Vec<[f32; 3]>, Vec<[u32; 3]>) {
    let mut vertices = Vec::new();
    let mut triangles = Vec::new();
    for w in points.windows(2) {
        let (a, b) = (Vec2::from(w[0]), Vec2::from(w[1]));
        let along = (b - a).normalize_or_zero();
        if along == Vec2::ZERO {
            continue;
        }
        let side = along.perp() * (width_m / 2.0);
        let base = vertices.len() as u32;
        for p in [a - side, a + side, b + side, b - side] {
            vertices.push([p.x, p.y, up_m]);
        }
        // Counter-clockwise seen from above.
        triangles.push([base, base + 3, base + 2]);
        triangles.push([base, base + 2, base + 1]);
    }
    (vertices, triangles)
}

/// The mesh and where it sits, for an asset.
fn asset_mesh(info: &AssetInfo) -> Option<Mesh> {
    let (vertices, triangles) = match &info.geometry {
        Geometry::Footprint(points) => {
            shape::extrude(points, shape::building_height_m(info.height_m))
        }
        Geometry::Line(points) => match info.kind {
            AssetKind::Road => ribbon(points, 6.0, 0.05),
            AssetKind::TransitRoute => ribbon(points, 1.5, 0.25),
            _ => ribbon(points, 2.0, 0.4),
        },
        Geometry::Point(_) => return None,
    };
    (!triangles.is_empty()).then(|| flat_mesh(&vertices, &triangles))
}

fn hidden(look: &Look, group: Group) -> Visibility {
    if look.hidden.contains(&group) {
        Visibility::Hidden
    } else {
        Visibility::Inherited
    }
}

impl City {
    fn clear(&mut self, commands: &mut Commands) {
        for (_, view) in self.assets.drain() {
            commands.entity(view.entity).despawn();
        }
        for (_, view) in self.sensors.drain() {
            if let Some(entity) = view.entity {
                commands.entity(entity).despawn();
            }
        }
        self.complete = false;
        self.dirty = true;
    }

    /// Forgets everything (e.g. the connection was lost).
    pub fn reset(&mut self, commands: &mut Commands) {
        self.clear(commands);
    }

    fn add_asset(
        &mut self,
        info: AssetInfo,
        commands: &mut Commands,
        meshes: &mut Assets<Mesh>,
        look: &Look,
    ) {
        self.remove_asset(info.handle, commands);
        let group = Group::of_asset(info.kind);
        let material = MeshMaterial3d(look.material(group, None));
        let entity = match (&info.geometry, asset_mesh(&info)) {
            (Geometry::Point(point), _) => {
                let mesh = look
                    .point_meshes
                    .get(&info.kind)
                    .cloned()
                    .unwrap_or_else(|| look.marker.clone());
                let mut at = bevy_from_enu(*point);
                at.y += 1.5;
                commands.spawn((
                    Mesh3d(mesh),
                    material,
                    Transform::from_translation(at),
                    group,
                    Shows::Asset(info.handle),
                    hidden(look, group),
                ))
            }
            (_, Some(mesh)) => commands.spawn((
                Mesh3d(meshes.add(mesh)),
                material,
                Transform::IDENTITY,
                group,
                Shows::Asset(info.handle),
                hidden(look, group),
            )),
            (_, None) => commands.spawn((Transform::IDENTITY, Shows::Asset(info.handle))),
        }
        .id();
        let sensors = self
            .sensors
            .values()
            .filter(|s| s.info.asset == Some(info.handle))
            .map(|s| s.info.handle)
            .collect();
        self.assets.insert(
            info.handle,
            AssetView {
                info,
                entity,
                sensors,
                step: None,
            },
        );
        self.dirty = true;
    }

    fn remove_asset(&mut self, handle: u32, commands: &mut Commands) {
        if let Some(view) = self.assets.remove(&handle) {
            commands.entity(view.entity).despawn();
            self.dirty = true;
        }
    }

    fn add_sensor(&mut self, info: SensorInfo, commands: &mut Commands, look: &Look) {
        self.remove_sensor(info.handle, commands);
        let handle = info.handle;
        let on_building = info.asset.is_some_and(|a| {
            self.assets
                .get(&a)
                .is_some_and(|v| v.info.kind == AssetKind::Building)
        });
        let entity = if info.quantity == QUANTITY_DISTANCE_ALONG_ROUTE {
            self.spawn_vehicle(&info, commands, look)
        } else if on_building {
            // Buildings show their meters' values themselves.
            None
        } else {
            let mut at = bevy_from_enu(info.position_enu_m);
            at.y += 4.0;
            Some(
                commands
                    .spawn((
                        Mesh3d(look.marker.clone()),
                        MeshMaterial3d(look.material(Group::Sensors, None)),
                        Transform::from_translation(at),
                        Group::Sensors,
                        Shows::Sensor(handle),
                        hidden(look, Group::Sensors),
                    ))
                    .id(),
            )
        };
        if let Some(asset) = info.asset.and_then(|a| self.assets.get_mut(&a))
            && !asset.sensors.contains(&handle)
        {
            asset.sensors.push(handle);
        }
        let latest = info.latest;
        let mut recent = VecDeque::new();
        if let Some(v) = latest {
            recent.push_back((v.device_time_ms, v.value));
        }
        self.sensors.insert(
            handle,
            SensorView {
                info,
                latest,
                entity,
                recent,
                step: None,
            },
        );
        self.dirty = true;
    }

    fn spawn_vehicle(
        &self,
        info: &SensorInfo,
        commands: &mut Commands,
        look: &Look,
    ) -> Option<Entity> {
        let route = self.assets.get(&info.asset?)?;
        let Geometry::Line(points) = &route.info.geometry else {
            return None;
        };
        let distance = info.latest.map_or(0.0, |v| v.value);
        let glide = Glide {
            route_enu_m: points.clone().into(),
            shown_m: distance,
            target_m: distance,
        };
        Some(
            commands
                .spawn((
                    Mesh3d(look.vehicle_mesh.clone()),
                    MeshMaterial3d(look.vehicle.clone()),
                    vehicle_transform(&glide),
                    glide,
                    Group::Transit,
                    Shows::Sensor(info.handle),
                    hidden(look, Group::Transit),
                ))
                .id(),
        )
    }

    fn remove_sensor(&mut self, handle: u32, commands: &mut Commands) {
        if let Some(view) = self.sensors.remove(&handle) {
            if let Some(entity) = view.entity {
                commands.entity(entity).despawn();
            }
            if let Some(asset) = view.info.asset.and_then(|a| self.assets.get_mut(&a)) {
                asset.sensors.retain(|s| *s != handle);
            }
            self.dirty = true;
        }
    }

    fn set_value(&mut self, value: ValueUpdate) {
        if let Some(view) = self.sensors.get_mut(&value.sensor) {
            view.latest = Some(value);
            view.recent.push_back((value.device_time_ms, value.value));
            while view.recent.len() > RECENT_VALUES {
                view.recent.pop_front();
            }
            self.values_since_sample += 1;
            self.dirty = true;
        }
    }

    /// Applies a snapshot part or an update; returns vehicle targets to glide to.
    pub fn apply(
        &mut self,
        frame: ServerToViewer,
        commands: &mut Commands,
        meshes: &mut Assets<Mesh>,
        look: &Look,
    ) -> Vec<(Entity, f64)> {
        let mut glides = Vec::new();
        match frame {
            ServerToViewer::Snapshot(Snapshot {
                part,
                complete,
                assets,
                sensors,
                ..
            }) => {
                if part == 0 {
                    self.clear(commands);
                }
                for asset in assets {
                    self.add_asset(asset, commands, meshes, look);
                }
                for sensor in sensors {
                    self.values_since_sample += u64::from(sensor.latest.is_some());
                    self.add_sensor(sensor, commands, look);
                }
                self.complete |= complete;
            }
            ServerToViewer::Update(Update {
                entered_assets,
                entered_sensors,
                left_assets,
                left_sensors,
                values,
                ..
            }) => {
                for handle in left_sensors {
                    self.remove_sensor(handle, commands);
                }
                for handle in left_assets {
                    self.remove_asset(handle, commands);
                }
                for asset in entered_assets {
                    self.add_asset(asset, commands, meshes, look);
                }
                for sensor in entered_sensors {
                    self.add_sensor(sensor, commands, look);
                }
                for value in values {
                    self.set_value(value);
                    if let Some(view) = self.sensors.get(&value.sensor)
                        && view.info.quantity == QUANTITY_DISTANCE_ALONG_ROUTE
                        && let Some(entity) = view.entity
                    {
                        glides.push((entity, value.value));
                    }
                }
            }
            ServerToViewer::Error(_)
            | ServerToViewer::History(_)
            | ServerToViewer::Pick(_)
            | ServerToViewer::Resident(_) => {}
        }
        glides
    }

    /// Recomputes the colour layer's range and the colour of every asset and
    /// marker, when something changed.
    pub fn recolour(
        &mut self,
        look: &Look,
        commands: &mut Commands,
        selected: Option<Entity>,
        force: bool,
    ) {
        if !(self.dirty || force) {
            return;
        }
        self.dirty = false;
        let quantity = LAYERS[look.layer].quantity;
        let values: Vec<f64> = self
            .sensors
            .values()
            .filter(|s| s.info.quantity == quantity)
            .filter_map(|s| s.latest.map(|v| v.value))
            .collect();
        self.unit = self
            .sensors
            .values()
            .find(|s| s.info.quantity == quantity)
            .map(|s| s.info.unit.clone())
            .unwrap_or_default();
        self.range = colour::value_range(&values);
        let range = self.range;
        let step_of = |value: Option<f64>| Some(colour::step_of(value?, range?));
        let sensors = &self.sensors;
        for view in self.assets.values_mut() {
            let mut sum = 0.0;
            let mut count = 0usize;
            for s in &view.sensors {
                if let Some(sensor) = sensors.get(s)
                    && sensor.info.quantity == quantity
                    && let Some(v) = sensor.latest
                {
                    sum += v.value;
                    count += 1;
                }
            }
            let step = step_of((count > 0).then(|| sum / count as f64));
            if (step != view.step || force) && Some(view.entity) != selected {
                view.step = step;
                let group = Group::of_asset(view.info.kind);
                commands
                    .entity(view.entity)
                    .try_insert(MeshMaterial3d(look.material(group, step)));
            }
        }
        for view in self.sensors.values_mut() {
            let Some(entity) = view.entity else { continue };
            if view.info.quantity == QUANTITY_DISTANCE_ALONG_ROUTE {
                continue;
            }
            let value = (view.info.quantity == quantity)
                .then(|| view.latest.map(|v| v.value))
                .flatten();
            let step = step_of(value);
            if (step != view.step || force) && Some(entity) != selected {
                view.step = step;
                commands
                    .entity(entity)
                    .try_insert(MeshMaterial3d(look.material(Group::Sensors, step)));
            }
        }
    }

    /// The material an entity shows when not selected.
    pub fn material_of(&self, shows: Shows, look: &Look) -> Option<Handle<StandardMaterial>> {
        match shows {
            Shows::Asset(h) => {
                let view = self.assets.get(&h)?;
                Some(look.material(Group::of_asset(view.info.kind), view.step))
            }
            Shows::Sensor(h) => {
                let view = self.sensors.get(&h)?;
                if view.info.quantity == QUANTITY_DISTANCE_ALONG_ROUTE {
                    Some(look.vehicle.clone())
                } else {
                    Some(look.material(Group::Sensors, view.step))
                }
            }
        }
    }

    /// Marks colours for recomputation.
    pub fn touch(&mut self) {
        self.dirty = true;
    }
}

fn vehicle_transform(glide: &Glide) -> Transform {
    let Some(([east, north], [d_east, d_north])) =
        shape::point_along(&glide.route_enu_m, glide.shown_m)
    else {
        return Transform::default();
    };
    let at = bevy_from_enu([east, north, 2.0]);
    let heading = bevy_from_enu([d_east, d_north, 0.0]);
    Transform::from_translation(at).looking_to(heading, Vec3::Y)
        * Transform::from_rotation(Quat::from_rotation_y(std::f32::consts::FRAC_PI_2))
}

/// Sets where vehicles glide to.
pub fn retarget(glides: &[(Entity, f64)], vehicles: &mut Query<&mut Glide>) {
    for &(entity, target) in glides {
        if let Ok(mut glide) = vehicles.get_mut(entity) {
            glide.target_m = target;
        }
    }
}

/// Moves vehicles smoothly along their routes towards their latest position.
pub fn glide_vehicles(time: Res<Time>, mut vehicles: Query<(&mut Glide, &mut Transform)>) {
    let blend = 1.0 - (-time.delta_secs() / VEHICLE_GLIDE_S).exp();
    for (mut glide, mut transform) in &mut vehicles {
        if (glide.target_m - glide.shown_m).abs() < 0.01 {
            continue;
        }
        // Far jumps (a new lap, a restart) snap rather than race across town.
        if (glide.target_m - glide.shown_m).abs() > 2_000.0 {
            glide.shown_m = glide.target_m;
        } else {
            glide.shown_m += (glide.target_m - glide.shown_m) * f64::from(blend);
        }
        *transform = vehicle_transform(&glide);
    }
}

/// Applies the hidden groups to every entity.
pub fn apply_visibility(look: Res<Look>, mut entities: Query<(&Group, &mut Visibility)>) {
    if !look.is_changed() {
        return;
    }
    for (group, mut visibility) in &mut entities {
        let wanted = hidden(&look, *group);
        if *visibility != wanted {
            *visibility = wanted;
        }
    }
}
