//! Picking: colliders for every asset, sensor and vehicle, and answers to
//! "what lies along this ray" from Rapier's query pipeline.
//!
//! Each collider is an entity of its own that names the asset or sensor it
//! stands for ([`Pickable`]). Colliders live in the scene's local
//! east/north/up metres (x east, y north, z up), the frame of
//! [`AssetTable::geometry_enu_m`]. Nothing is simulated:
//! the colliders are fixed, so Rapier's systems only keep its query structure
//! current. They run in their own schedule, [`PickSync`], and only on ticks
//! where a collider was added or a vehicle moved: on other ticks picking
//! costs nothing, however many colliders the city has.

use std::sync::{Arc, Mutex, PoisonError};

use bevy::ecs::schedule::ScheduleLabel;
use bevy::prelude::*;
use bevy_rapier3d::prelude::{
    Collider, NoUserData, QueryFilter, RapierPhysicsPlugin, ReadRapierContext,
};
use polis_protocol::{
    AssetKind, Geometry, MAX_PICK_HITS, PickHit, PickReply, PickRequest, PickTarget,
    QUANTITY_DISTANCE_ALONG_ROUTE, shape,
};

use crate::TwinSystems;
use crate::city::{AssetTable, SensorTable};
use crate::components::ViewerState;
use crate::index::ItemRef;
use crate::interest::ViewerDirectory;
use crate::messages::ViewerId;

/// Collider radius of a sensor, metres.
const SENSOR_RADIUS_M: f32 = 2.5;
/// Collider radius of a vehicle, metres.
const VEHICLE_RADIUS_M: f32 = 6.0;
/// Collider radius of point assets (stops, junctions, tanks), metres.
const POINT_ASSET_RADIUS_M: f32 = 4.0;
/// Most intersections one pick examines: a ray along a huge city stops
/// collecting there, which bounds the time and memory a request can cost.
const MAX_CANDIDATES: usize = 4_096;

/// Half-width of a line asset's pick collider, metres.
fn line_radius_m(kind: AssetKind) -> f32 {
    match kind {
        AssetKind::Road => 3.0,
        AssetKind::TransitRoute => 2.0,
        _ => 1.5,
    }
}

/// Answers a [`PickRequested`] once; later calls do nothing.
#[derive(Clone)]
pub struct PickResponder(Arc<Mutex<Option<Box<dyn FnOnce(PickReply) + Send>>>>);

impl PickResponder {
    /// A responder that hands the reply to `respond`.
    pub fn new(respond: impl FnOnce(PickReply) + Send + 'static) -> Self {
        Self(Arc::new(Mutex::new(Some(Box::new(respond)))))
    }

    /// Sends the reply (the first call only).
    pub fn respond(&self, reply: PickReply) {
        let taken = self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(respond) = taken {
            respond(reply);
        }
    }
}

impl std::fmt::Debug for PickResponder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PickResponder")
    }
}

/// A viewer asks what lies along a ray (validated by the transport).
#[derive(Message, Debug, Clone)]
pub struct PickRequested {
    /// The viewer; sensors it may not see are left out of the answer.
    pub viewer: ViewerId,
    /// The ray.
    pub request: PickRequest,
    /// Where the answer goes.
    pub responder: PickResponder,
}

/// The asset or sensor a collider stands for.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pickable(pub ItemRef);

/// A vehicle: a sensor whose value is its distance along `route_enu_m`.
#[derive(Component, Debug, Clone)]
pub struct Vehicle {
    /// The route's polyline, local east/north metres.
    pub route_enu_m: Arc<[[f32; 2]]>,
    /// The vehicle's sensor handle.
    pub sensor: u32,
    /// Device time of the reading its collider was last placed by.
    pub placed_at_ms: Option<i64>,
}

/// The schedule Rapier's systems run in, on demand (see the module docs).
#[derive(ScheduleLabel, Debug, Clone, PartialEq, Eq, Hash)]
pub struct PickSync;

/// Set when colliders changed since Rapier last synchronised.
#[derive(Resource, Debug, Default)]
pub(crate) struct CollidersChanged(bool);

/// When picking's systems run within `Update`.
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PickSystems {
    /// Vehicles' colliders follow their latest position readings.
    MoveVehicles,
    /// Pick requests are answered.
    Answer,
}

/// Adds pick colliders to the twin and answers [`PickRequested`]; add after
/// [`crate::TwinPlugin`]. Brings Rapier with it when the app has not added
/// it. Not Bevy's `TransformPlugin`: its systems visit every entity with a
/// transform on every tick (a quarter of a busy twin's time with 200,000
/// colliders), while Rapier's own transform sync, in [`PickSync`], updates
/// the colliders' global transforms exactly when they change.
#[derive(Debug, Default)]
pub struct PickPlugin;

impl Plugin for PickPlugin {
    fn build(&self, app: &mut App) {
        // Bevy's parallel transform propagation, which Rapier runs when
        // Bevy is built with `multi_threaded` (as the viewer's build is),
        // reads this resource; `TransformPlugin` would have added it.
        app.init_resource::<StaticTransformOptimizations>();
        if !app.is_plugin_added::<RapierPhysicsPlugin<NoUserData>>() {
            app.add_plugins(RapierPhysicsPlugin::<NoUserData>::default().in_schedule(PickSync));
        }
        app.add_message::<PickRequested>()
            .init_resource::<CollidersChanged>()
            .add_systems(PostUpdate, sync_colliders)
            .configure_sets(
                Update,
                (
                    PickSystems::MoveVehicles.after(TwinSystems::Apply),
                    PickSystems::Answer.after(TwinSystems::Interest),
                ),
            )
            .add_systems(Startup, add_colliders)
            .add_systems(Update, move_vehicles.in_set(PickSystems::MoveVehicles))
            .add_systems(Update, answer_picks.in_set(PickSystems::Answer));
    }
}

/// The pick collider of an asset and where it sits. Buildings are their
/// extruded footprints: a cuboid for a rectangle, a convex hull for a convex
/// footprint, a triangle mesh otherwise (in that order of memory cost).
pub fn asset_collider(
    kind: AssetKind,
    geometry_enu_m: &Geometry,
    height_m: Option<f32>,
) -> Option<(Collider, Transform)> {
    match geometry_enu_m {
        Geometry::Footprint(points) => {
            let ring = shape::open_ring(points);
            let (min, max) = bounds(&ring)?;
            // Vertices relative to the footprint's centre keep f32 precise.
            let centre = Vec2::new((min.x + max.x) / 2.0, (min.y + max.y) / 2.0);
            let local: Vec<[f32; 2]> = ring
                .iter()
                .map(|&[e, n]| [e - centre.x, n - centre.y])
                .collect();
            let height = shape::building_height_m(height_m);
            if let Some((half, angle_rad, middle)) = rectangle(&local) {
                let at = (centre + middle).extend(height / 2.0);
                let collider = Collider::cuboid(half.x, half.y, height / 2.0);
                let transform =
                    Transform::from_translation(at).with_rotation(Quat::from_rotation_z(angle_rad));
                return Some((collider, transform));
            }
            let (vertices, triangles) = shape::extrude(&local, height);
            let vertices: Vec<Vec3> = vertices.into_iter().map(Vec3::from).collect();
            let collider = if is_convex(&local) {
                Collider::convex_hull(&vertices)
            } else {
                None
            };
            let collider = match collider {
                Some(collider) => collider,
                None => Collider::trimesh(vertices, triangles).ok()?,
            };
            Some((collider, Transform::from_translation(centre.extend(0.0))))
        }
        Geometry::Line(points) => {
            let (min, max) = bounds(points)?;
            let centre = Vec2::new((min.x + max.x) / 2.0, (min.y + max.y) / 2.0);
            let radius = line_radius_m(kind);
            let segments: Vec<_> = points
                .windows(2)
                .filter(|w| w[0] != w[1])
                .map(|w| {
                    let a = Vec2::from(w[0]) - centre;
                    let b = Vec2::from(w[1]) - centre;
                    let capsule = Collider::capsule(a.extend(0.0), b.extend(0.0), radius);
                    (Vec3::ZERO, Quat::IDENTITY, capsule)
                })
                .collect();
            if segments.is_empty() {
                let at = Vec2::from(points[0]).extend(0.0);
                return Some((Collider::ball(radius), Transform::from_translation(at)));
            }
            let at = centre.extend(0.0);
            Some((
                Collider::compound(segments),
                Transform::from_translation(at),
            ))
        }
        Geometry::Point(point) => Some((
            Collider::ball(POINT_ASSET_RADIUS_M),
            Transform::from_translation(Vec3::from(*point)),
        )),
    }
}

/// Half-extents, rotation about up and centre of a rectangular ring.
fn rectangle(ring: &[[f32; 2]]) -> Option<(Vec2, f32, Vec2)> {
    let [a, b, c, d] = <[[f32; 2]; 4]>::try_from(ring).ok()?.map(Vec2::from);
    let (ab, bc, cd, da) = (b - a, c - b, d - c, a - d);
    let (width, depth) = (ab.length(), bc.length());
    let tolerance = 1e-3 * width.max(depth);
    let square = (ab + cd).length() < tolerance
        && (bc + da).length() < tolerance
        && ab.dot(bc).abs() < tolerance * width.max(depth);
    (square && width > 0.0 && depth > 0.0).then(|| {
        (
            Vec2::new(width / 2.0, depth / 2.0),
            ab.y.atan2(ab.x),
            (a + c) / 2.0,
        )
    })
}

/// Whether a ring turns the same way at every corner.
fn is_convex(ring: &[[f32; 2]]) -> bool {
    let n = ring.len();
    if n < 3 {
        return false;
    }
    let mut sign = 0.0f32;
    for i in 0..n {
        let (a, b, c) = (
            Vec2::from(ring[i]),
            Vec2::from(ring[(i + 1) % n]),
            Vec2::from(ring[(i + 2) % n]),
        );
        let turn = (b - a).perp_dot(c - b);
        if turn.abs() < 1e-6 {
            continue;
        }
        if sign == 0.0 {
            sign = turn.signum();
        } else if turn.signum() != sign {
            return false;
        }
    }
    sign != 0.0
}

fn bounds(points: &[[f32; 2]]) -> Option<(Vec2, Vec2)> {
    let first = Vec2::from(*points.first()?);
    let (min, max) = points.iter().fold((first, first), |(min, max), p| {
        (min.min(Vec2::from(*p)), max.max(Vec2::from(*p)))
    });
    (min.is_finite() && max.is_finite()).then_some((min, max))
}

/// Runs Rapier's systems when colliders changed since they last ran.
fn sync_colliders(world: &mut World) {
    let changed = std::mem::take(&mut world.resource_mut::<CollidersChanged>().0);
    if changed {
        world.run_schedule(PickSync);
    }
}

/// Gives every asset and sensor a collider entity; vehicles also learn
/// their route.
pub(crate) fn add_colliders(
    mut commands: Commands,
    mut changed: ResMut<CollidersChanged>,
    assets: Res<AssetTable>,
    sensors: Res<SensorTable>,
) {
    let mut skipped = 0usize;
    for handle in (0u32..).take(assets.len()) {
        let collider = assets
            .kind(handle)
            .zip(assets.geometry_enu_m(handle))
            .and_then(|(kind, geometry)| asset_collider(kind, &geometry, assets.height_m(handle)));
        match collider {
            Some((collider, at)) => {
                commands.spawn((Pickable(ItemRef::Asset(handle)), collider, at));
            }
            None => skipped += 1,
        }
    }
    for handle in (0u32..).take(sensors.len()) {
        let Some(position) = sensors.position_enu_m(handle) else {
            continue;
        };
        let route = (sensors.quantity(handle) == Some(QUANTITY_DISTANCE_ALONG_ROUTE))
            .then(|| sensors.asset(handle))
            .flatten()
            .and_then(|route| assets.geometry_enu_m(route))
            .and_then(|route| match route {
                Geometry::Line(points) if !points.is_empty() => Some(points),
                _ => None,
            });
        let at = Transform::from_translation(position);
        let target = Pickable(ItemRef::Sensor(handle));
        match route {
            Some(points) => {
                commands.spawn((
                    target,
                    Collider::ball(VEHICLE_RADIUS_M),
                    at,
                    Vehicle {
                        route_enu_m: points.into(),
                        sensor: handle,
                        placed_at_ms: None,
                    },
                ));
            }
            None => {
                commands.spawn((target, Collider::ball(SENSOR_RADIUS_M), at));
            }
        }
    }
    changed.0 = true;
    if skipped > 0 {
        tracing::warn!(skipped, "assets without a usable shape are not pickable");
    }
}

/// Moves each vehicle's collider to the position its latest reading gives.
pub(crate) fn move_vehicles(
    mut vehicles: Query<(&mut Vehicle, &mut Transform)>,
    sensors: Res<SensorTable>,
    mut changed: ResMut<CollidersChanged>,
) {
    for (mut vehicle, mut transform) in &mut vehicles {
        let Some(reading) = sensors.latest(vehicle.sensor) else {
            continue;
        };
        if vehicle.placed_at_ms == Some(reading.device_time_ms) {
            continue;
        }
        vehicle.placed_at_ms = Some(reading.device_time_ms);
        if let Some(([east, north], _)) = shape::point_along(&vehicle.route_enu_m, reading.value) {
            transform.translation = Vec3::new(east, north, 0.0);
            changed.0 = true;
        }
    }
}

/// Answers pick requests: everything along the ray that the viewer may see,
/// nearest first.
pub(crate) fn answer_picks(
    mut requests: MessageReader<PickRequested>,
    rapier: ReadRapierContext,
    targets: Query<&Pickable>,
    assets: Res<AssetTable>,
    sensors: Res<SensorTable>,
    directory: Res<ViewerDirectory>,
    viewers: Query<&ViewerState>,
) {
    if requests.is_empty() {
        return;
    }
    let context = rapier.single();
    for picked in requests.read() {
        let access = directory
            .get(picked.viewer)
            .and_then(|e| viewers.get(e).ok())
            .map(|v| v.access);
        let request = &picked.request;
        let mut hits: Vec<PickHit> = Vec::new();
        if let (Ok(context), Some(access)) = (&context, access) {
            let origin = Vec3::from(request.origin_enu_m);
            let direction = Vec3::from(request.direction_enu).normalize_or_zero();
            context.intersect_ray(
                origin,
                direction,
                request.max_distance_m,
                true,
                QueryFilter::default(),
                |entity, hit| {
                    let target = match targets.get(entity).map(|p| p.0) {
                        Ok(ItemRef::Asset(handle)) => assets
                            .id(handle)
                            .map(|id| (PickTarget::Asset(handle), id.to_owned())),
                        Ok(ItemRef::Sensor(handle)) => sensors
                            .audience(handle)
                            .filter(|audience| audience.admits(access))
                            .and(sensors.id(handle))
                            .map(|id| (PickTarget::Sensor(handle), id.to_owned())),
                        Err(_) => None,
                    };
                    if let Some((target, id)) = target {
                        hits.push(PickHit {
                            target,
                            id,
                            distance_m: hit.time_of_impact,
                        });
                    }
                    hits.len() < MAX_CANDIDATES
                },
            );
        }
        hits.sort_by(|a, b| a.distance_m.total_cmp(&b.distance_m));
        hits.truncate(MAX_PICK_HITS);
        picked.responder.respond(PickReply {
            request: request.request,
            hits,
        });
    }
}
