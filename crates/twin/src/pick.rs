//! Picking: answers to "what lies along this ray" for every asset, sensor
//! and vehicle a viewer may see.
//!
//! Nothing is kept per item for it: the spatial index finds the entries
//! whose bounds the ray passes near while it is within the city's heights,
//! and only those items' shapes are built and cast against (Rapier's
//! shapes, via `parry`), nearest entry first, until no farther entry can
//! hold one of the nearest hits. Buildings are their
//! extruded footprints, lines capsules, points and sensors balls; a vehicle
//! is a ball where its latest reading puts it along its route. Shapes live
//! in the scene's local east/north/up metres (x east, y north, z up), the
//! frame of [`AssetTable::geometry_enu_m`].

use std::sync::{Arc, Mutex, PoisonError};

use bevy::prelude::*;
use bevy_rapier3d::prelude::Collider;
use polis_protocol::{
    AssetKind, Geometry, GeometryClass, MAX_PICK_HITS, PickHit, PickReply, PickRequest, PickTarget,
    QUANTITY_DISTANCE_ALONG_ROUTE, shape,
};

use crate::TwinSystems;
use crate::city::{AssetTable, SensorTable};
use crate::components::ViewerState;
use crate::index::{ItemRef, SpatialIndex, clip_to_slab};
use crate::interest::ViewerDirectory;
use crate::messages::ViewerId;

/// Collider radius of a sensor, metres.
const SENSOR_RADIUS_M: f32 = 2.5;
/// Collider radius of a vehicle, metres.
const VEHICLE_RADIUS_M: f32 = 6.0;
/// Collider radius of point assets (stops, junctions, tanks), metres.
const POINT_ASSET_RADIUS_M: f32 = 4.0;
/// Half-widths of line assets' capsules, metres.
const ROAD_RADIUS_M: f32 = 3.0;
const ROUTE_RADIUS_M: f32 = 2.0;
const OTHER_LINE_RADIUS_M: f32 = 1.5;
/// How far a pick shape reaches beyond its item's bounds in the index,
/// metres: the largest ball or capsule radius.
const REACH_M: f32 = 6.0;
const _: () = assert!(
    REACH_M >= SENSOR_RADIUS_M
        && REACH_M >= VEHICLE_RADIUS_M
        && REACH_M >= POINT_ASSET_RADIUS_M
        && REACH_M >= ROAD_RADIUS_M
        && REACH_M >= ROUTE_RADIUS_M
        && REACH_M >= OTHER_LINE_RADIUS_M
);
/// Most index entries one pick examines, nearest first: a ray along a huge
/// city stops there, which bounds the time a request can cost (shapes are
/// built only for the entries examined, and examining stops earlier as soon
/// as no farther entry can hold one of the nearest hits).
const MAX_EXAMINED: usize = 4_096;

/// Half-width of a line asset's pick collider, metres.
fn line_radius_m(kind: AssetKind) -> f32 {
    match kind {
        AssetKind::Road => ROAD_RADIUS_M,
        AssetKind::TransitRoute => ROUTE_RADIUS_M,
        _ => OTHER_LINE_RADIUS_M,
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

/// When picking's systems run within `Update`.
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PickSystems {
    /// Pick requests are answered, after the tick's readings and interest
    /// changes.
    Answer,
}

/// Most picks answered in one tick by default: a few milliseconds of ray
/// casts on a real city (see BENCHMARKS.md, picks of 10–300 µs), so a burst
/// of picks cannot delay readings, acknowledgements or other viewers.
pub const DEFAULT_PICKS_PER_TICK: usize = 16;

/// How many picks the twin answers per tick; the rest wait, in order, for
/// the next ticks.
#[derive(Resource, Debug, Clone, Copy, PartialEq, Eq)]
pub struct PickBudget {
    /// Picks answered per tick (at least one).
    pub picks_per_tick: usize,
}

impl Default for PickBudget {
    fn default() -> Self {
        Self {
            picks_per_tick: DEFAULT_PICKS_PER_TICK,
        }
    }
}

/// Picks received and not yet answered, oldest first. Bounded by the
/// network: each viewer session has at most one pick outstanding.
#[derive(Resource, Debug, Default)]
pub struct PendingPicks(std::collections::VecDeque<PickRequested>);

impl PendingPicks {
    /// Picks waiting for a later tick.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when every pick received has been answered.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Footprints with at least this many corners keep their pick shape once
/// built: triangulating and building a triangle mesh's tree is what a pick
/// of a large building costs; smaller ones are rebuilt each time, cheaply.
const CACHED_SHAPE_MIN_CORNERS: usize = 64;
/// Most footprint corners the shapes kept hold in all (about 100 B each
/// with their triangle mesh and its tree).
const CACHED_SHAPE_CORNERS: usize = 256 * 1024;

/// Pick shapes of large footprints, built once and kept, oldest evicted
/// first beyond 256 Ki corners in all.
#[derive(Resource, Default)]
pub struct PickShapes {
    shapes: std::collections::HashMap<u32, (std::sync::Arc<(Collider, Transform)>, usize)>,
    order: std::collections::VecDeque<u32>,
    corners: usize,
    built: u64,
}

impl std::fmt::Debug for PickShapes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PickShapes")
            .field("shapes", &self.shapes.len())
            .field("corners", &self.corners)
            .field("built", &self.built)
            .finish()
    }
}

impl PickShapes {
    /// Shapes built so far, kept or not (each large footprint's first pick,
    /// and again after eviction).
    pub fn built(&self) -> u64 {
        self.built
    }

    /// Shapes kept now.
    pub fn len(&self) -> usize {
        self.shapes.len()
    }

    /// True when no shape is kept.
    pub fn is_empty(&self) -> bool {
        self.shapes.is_empty()
    }

    /// The pick shape of asset `handle`, from the cache or built (and kept
    /// when large).
    fn shape(
        &mut self,
        handle: u32,
        assets: &AssetTable,
    ) -> Option<std::sync::Arc<(Collider, Transform)>> {
        if let Some((shape, _)) = self.shapes.get(&handle) {
            return Some(std::sync::Arc::clone(shape));
        }
        let geometry = assets.geometry_enu_m(handle)?;
        let corners = match &geometry {
            Geometry::Footprint(points) => points.len(),
            _ => 0,
        };
        let shape = std::sync::Arc::new(asset_collider(
            assets.kind(handle)?,
            &geometry,
            assets.height_m(handle),
        )?);
        self.built += 1;
        if corners >= CACHED_SHAPE_MIN_CORNERS {
            while self.corners + corners > CACHED_SHAPE_CORNERS {
                let Some(oldest) = self.order.pop_front() else {
                    break;
                };
                if let Some((_, freed)) = self.shapes.remove(&oldest) {
                    self.corners -= freed;
                }
            }
            self.shapes
                .insert(handle, (std::sync::Arc::clone(&shape), corners));
            self.order.push_back(handle);
            self.corners += corners;
        }
        Some(shape)
    }
}

/// Answers [`PickRequested`], at most [`PickBudget::picks_per_tick`] a tick;
/// add after [`crate::TwinPlugin`].
#[derive(Debug, Default)]
pub struct PickPlugin;

impl Plugin for PickPlugin {
    fn build(&self, app: &mut App) {
        app.add_message::<PickRequested>()
            .init_resource::<PickBudget>()
            .init_resource::<PendingPicks>()
            .init_resource::<PickShapes>()
            .add_systems(Startup, measure_heights)
            .configure_sets(Update, PickSystems::Answer.after(TwinSystems::Interest))
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

/// The heights between which every pick shape of the city lies, metres.
#[derive(Resource, Debug, Clone, Copy)]
pub(crate) struct HeightBand {
    bottom_m: f32,
    top_m: f32,
}

/// Finds the city's [`HeightBand`]: from the ground (lines and vehicles lie
/// on it) to the tallest building, point asset or sensor, widened by the
/// largest pick radius.
pub(crate) fn measure_heights(
    mut commands: Commands,
    assets: Res<AssetTable>,
    sensors: Res<SensorTable>,
) {
    let (mut bottom_m, mut top_m) = (0.0f32, 0.0f32);
    for handle in (0u32..).take(assets.len()) {
        match assets.geometry_class(handle) {
            Some(GeometryClass::Footprint) => {
                top_m = top_m.max(shape::building_height_m(assets.height_m(handle)));
            }
            Some(GeometryClass::Point) => {
                if let Some(Geometry::Point([_, _, up_m])) = assets.geometry_enu_m(handle) {
                    bottom_m = bottom_m.min(up_m);
                    top_m = top_m.max(up_m);
                }
            }
            Some(GeometryClass::Line) | None => {}
        }
    }
    for handle in (0u32..).take(sensors.len()) {
        if let Some(position) = sensors.position_enu_m(handle) {
            bottom_m = bottom_m.min(position.z);
            top_m = top_m.max(position.z);
        }
    }
    commands.insert_resource(HeightBand {
        bottom_m: bottom_m - REACH_M,
        top_m: top_m + REACH_M,
    });
}

/// Whether a sensor measuring `quantity` on an asset of `class` is a
/// vehicle: its value is its distance along the line it belongs to.
pub(crate) fn is_vehicle(quantity: &str, class: Option<GeometryClass>) -> bool {
    quantity == QUANTITY_DISTANCE_ALONG_ROUTE && class == Some(GeometryClass::Line)
}

/// Where a sensor's pick shape is, and its radius: a vehicle where its
/// latest reading puts it along its route (where it stands until it has
/// one), any other sensor, aggregates included, at its place.
fn sensor_ball(sensors: &SensorTable, assets: &AssetTable, handle: u32) -> Option<(Vec3, f32)> {
    let place = sensors.position_enu_m(handle)?;
    let route = sensors.asset(handle);
    let vehicle = sensors.aggregate(handle).is_none()
        && is_vehicle(
            sensors.quantity(handle).unwrap_or_default(),
            route.and_then(|r| assets.geometry_class(r)),
        );
    if !vehicle {
        return Some((place, SENSOR_RADIUS_M));
    }
    let points = match route.and_then(|r| assets.geometry_enu_m(r)) {
        Some(Geometry::Line(points)) if !points.is_empty() => points,
        _ => return Some((place, SENSOR_RADIUS_M)),
    };
    let along = sensors
        .latest(handle)
        .and_then(|reading| shape::point_along(&points, reading.value))
        .map(|([east, north], _)| Vec3::new(east, north, 0.0));
    Some((along.unwrap_or(place), VEHICLE_RADIUS_M))
}

/// A ray in local east/north/up metres.
struct Ray {
    origin: Vec3,
    direction: Vec3,
    max_m: f32,
}

impl Ray {
    fn hits(&self, collider: &Collider, at: &Transform) -> Option<f32> {
        collider.cast_ray(
            at.translation,
            at.rotation,
            self.origin,
            self.direction,
            self.max_m,
            true,
        )
    }

    /// From where to where along the ray it is within `band`, if at all.
    fn stretch_within(&self, band: HeightBand) -> Option<[f32; 2]> {
        clip_to_slab(
            [0.0, self.max_m],
            self.origin.z,
            self.direction.z,
            [band.bottom_m, band.top_m],
        )
    }
}

/// The items along `ray` that a viewer with `access` may see, unsorted;
/// among them the [`MAX_PICK_HITS`] nearest of all. Entries are examined
/// nearest first, only where the ray is within the city's heights, and no
/// further than where the nearest hits found so far end.
fn cast(
    ray: &Ray,
    viewer: &ViewerState,
    band: HeightBand,
    index: &SpatialIndex,
    assets: &AssetTable,
    sensors: &SensorTable,
    shapes: &mut PickShapes,
) -> Vec<PickHit> {
    let mut hits = Vec::new();
    let Some(stretch) = ray.stretch_within(band) else {
        return hits;
    };
    let sensor_hit = |handle: u32| -> Option<PickHit> {
        if !viewer.may_see(sensors, handle) {
            return None;
        }
        let (at, radius) = sensor_ball(sensors, assets, handle)?;
        let distance_m = ray.hits(&Collider::ball(radius), &Transform::from_translation(at))?;
        Some(PickHit {
            target: PickTarget::Sensor(handle),
            id: sensors.id(handle)?.to_owned(),
            distance_m,
        })
    };
    let mut asset_hit = |handle: u32| -> Option<PickHit> {
        let shape = shapes.shape(handle, assets)?;
        let (collider, at) = &*shape;
        Some(PickHit {
            target: PickTarget::Asset(handle),
            id: assets.id(handle)?.to_owned(),
            distance_m: ray.hits(collider, at)?,
        })
    };
    let origin = [ray.origin.x, ray.origin.y];
    let direction = [ray.direction.x, ray.direction.y];
    let mut entries: Vec<(f32, ItemRef)> = index
        .entries_along(origin, direction, stretch, REACH_M)
        .collect();
    entries.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    // Distances of the nearest hits so far, ascending, at most MAX_PICK_HITS.
    let mut nearest: Vec<f32> = Vec::with_capacity(MAX_PICK_HITS + 1);
    for (enter_m, entry) in entries.into_iter().take(MAX_EXAMINED) {
        // An entry's shapes lie within its widened bounds, so none of its
        // hits is nearer than where the ray enters them.
        if nearest.len() == MAX_PICK_HITS && nearest.last().is_some_and(|&d| enter_m > d) {
            break;
        }
        let before = hits.len();
        match entry {
            ItemRef::Asset(handle) => {
                hits.extend(asset_hit(handle));
                hits.extend(
                    assets
                        .sensors_indexed_with(handle)
                        .iter()
                        .filter_map(|&s| sensor_hit(s)),
                );
            }
            ItemRef::Sensor(handle) => hits.extend(sensor_hit(handle)),
        }
        for hit in hits.get(before..).unwrap_or_default() {
            let at = nearest.partition_point(|&d| d <= hit.distance_m);
            nearest.insert(at, hit.distance_m);
            nearest.truncate(MAX_PICK_HITS);
        }
    }
    hits
}

/// Answers pick requests, oldest first and at most the tick's budget:
/// everything along the ray that the viewer may see, nearest first.
pub(crate) fn answer_picks(
    mut requests: MessageReader<PickRequested>,
    mut pending: ResMut<PendingPicks>,
    budget: Res<PickBudget>,
    index: Res<SpatialIndex>,
    assets: Res<AssetTable>,
    sensors: Res<SensorTable>,
    band: Res<HeightBand>,
    mut shapes: ResMut<PickShapes>,
    directory: Res<ViewerDirectory>,
    viewers: Query<&ViewerState>,
) {
    pending.0.extend(requests.read().cloned());
    let answered = budget.picks_per_tick.max(1).min(pending.0.len());
    for picked in pending.0.drain(..answered) {
        let viewer = directory
            .get(picked.viewer)
            .and_then(|e| viewers.get(e).ok());
        let request = &picked.request;
        let ray = Ray {
            origin: Vec3::from(request.origin_enu_m),
            direction: Vec3::from(request.direction_enu).normalize_or_zero(),
            max_m: request.max_distance_m,
        };
        let mut hits = match viewer {
            Some(viewer) if ray.direction != Vec3::ZERO => {
                cast(&ray, viewer, *band, &index, &assets, &sensors, &mut shapes)
            }
            _ => Vec::new(),
        };
        hits.sort_by(|a, b| a.distance_m.total_cmp(&b.distance_m));
        hits.truncate(MAX_PICK_HITS);
        picked.responder.respond(PickReply {
            request: request.request,
            hits,
        });
    }
}
