//! Clicking: a ray through the pointer goes to the server, which answers
//! from its colliders; the nearest hit becomes the selection, with a
//! sparkline of its recent values.

use bevy::prelude::*;
use bevy::window::PrimaryWindow;
use polis_protocol::{
    Aggregation, ClientToServer, HistoryPoint, HistoryRequest, PickReply, PickRequest, PickTarget,
};

use crate::camera::{Drag, FlyTo, Orbit};
use crate::city::{City, Look, Shows, enu_from_bevy};
use crate::link::Link;

/// How far a pick ray reaches, metres.
const PICK_DISTANCE_M: f32 = 20_000.0;
/// Span of the sparkline before the sensor's latest reading, ms.
const SPARKLINE_SPAN_MS: i64 = 6 * 3_600_000;
/// Points in the sparkline.
const SPARKLINE_POINTS: i64 = 36;

/// What is selected and what the panel shows about it.
#[derive(Resource, Debug, Default)]
pub struct Selection {
    /// Id of the last pick request sent.
    pub request: u32,
    /// The picked target, its scene id and its distance from the camera.
    pub target: Option<(PickTarget, String)>,
    /// The entity drawn for it (highlighted).
    pub entity: Option<Entity>,
    /// Sensor the sparkline shows.
    pub sparkline_sensor: Option<u32>,
    /// Recorded points for the sparkline (empty until the server answers).
    pub history: Vec<HistoryPoint>,
    /// Why there is no recorded history, if the server said so.
    pub history_note: Option<String>,
    /// A message about the last pick (e.g. nothing hit).
    pub note: Option<String>,
    /// Set when the panel must be redrawn.
    pub changed: bool,
}

/// Sends a pick for a left click (a press and release without dragging).
pub fn click_to_pick(
    buttons: Res<ButtonInput<MouseButton>>,
    drag: Res<Drag>,
    windows: Query<&Window, With<PrimaryWindow>>,
    cameras: Query<(&Camera, &GlobalTransform), With<Orbit>>,
    link: Res<Link>,
    mut selection: ResMut<Selection>,
) {
    if !buttons.just_released(MouseButton::Left) || drag.travel_px > 4.0 {
        return;
    }
    let (Ok(window), Ok((camera, camera_transform))) = (windows.single(), cameras.single()) else {
        return;
    };
    let Some(cursor) = window.cursor_position() else {
        return;
    };
    let Ok(ray) = camera.viewport_to_world(camera_transform, cursor) else {
        return;
    };
    selection.request = selection.request.wrapping_add(1);
    let request = PickRequest {
        request: selection.request,
        origin_enu_m: enu_from_bevy(ray.origin),
        direction_enu: enu_from_bevy(*ray.direction),
        max_distance_m: PICK_DISTANCE_M,
    };
    if !link.send(ClientToServer::Pick(request)) {
        selection.note = Some("not connected: cannot pick".into());
        selection.changed = true;
    }
}

/// Takes a pick reply: selects the nearest hit and asks for its history.
pub fn take_pick(
    reply: PickReply,
    city: &City,
    look: &Look,
    link: &Link,
    selection: &mut Selection,
    commands: &mut Commands,
) {
    if reply.request != selection.request {
        return; // An older click's answer.
    }
    unselect(city, look, selection, commands);
    let Some(hit) = reply.hits.into_iter().next() else {
        selection.note = Some("nothing there".into());
        selection.changed = true;
        return;
    };
    select(hit.target, hit.id, city, look, link, selection, commands);
}

fn unselect(city: &City, look: &Look, selection: &mut Selection, commands: &mut Commands) {
    if let (Some(entity), Some((target, _))) = (selection.entity.take(), &selection.target)
        && let Some(material) = city.material_of(shows(*target), look)
    {
        commands.entity(entity).try_insert(MeshMaterial3d(material));
    }
    *selection = Selection {
        request: selection.request,
        changed: true,
        ..Selection::default()
    };
}

fn shows(target: PickTarget) -> Shows {
    match target {
        PickTarget::Asset(h) => Shows::Asset(h),
        PickTarget::Sensor(h) => Shows::Sensor(h),
    }
}

/// Selects `target`: highlights it and asks for its sensor's history.
pub fn select(
    target: PickTarget,
    id: String,
    city: &City,
    look: &Look,
    link: &Link,
    selection: &mut Selection,
    commands: &mut Commands,
) {
    let (entity, sensor) = match target {
        PickTarget::Asset(h) => (
            city.assets.get(&h).map(|v| v.entity),
            city.primary_sensor(h, look.layer),
        ),
        PickTarget::Sensor(h) => (city.sensors.get(&h).and_then(|v| v.entity), Some(h)),
    };
    if let Some(entity) = entity {
        commands
            .entity(entity)
            .try_insert(MeshMaterial3d(look.selected.clone()));
    }
    selection.target = Some((target, id));
    selection.entity = entity;
    selection.sparkline_sensor = sensor;
    selection.history.clear();
    selection.history_note = None;
    selection.note = None;
    selection.changed = true;
    if let Some(latest) = sensor
        .and_then(|s| city.sensors.get(&s))
        .and_then(|s| s.latest)
    {
        let to_ms = latest.device_time_ms + 1;
        let request = HistoryRequest {
            request: selection.request,
            sensor: latest.sensor,
            from_ms: to_ms - SPARKLINE_SPAN_MS,
            to_ms,
            every_ms: SPARKLINE_SPAN_MS / SPARKLINE_POINTS,
            aggregation: Aggregation::Mean,
        };
        if !link.send(ClientToServer::History(request)) {
            selection.history_note = Some("history not requested: not connected".into());
        }
    }
}

/// Flies the camera to the selection (key `F` … is pitch; `G` goes there).
pub fn fly_to_selection(
    keys: Res<ButtonInput<KeyCode>>,
    selection: Res<Selection>,
    city: Res<City>,
    mut commands: Commands,
    cameras: Query<Entity, With<Orbit>>,
) {
    if !keys.just_pressed(KeyCode::KeyG) {
        return;
    }
    let Some((target, _)) = &selection.target else {
        return;
    };
    if let (Some(at), Ok(camera)) = (target_position(*target, &city), cameras.single()) {
        commands.entity(camera).insert(FlyTo {
            focus_enu_m: at,
            distance_m: 250.0,
        });
    }
}

/// Where a target is, local east/north metres.
pub fn target_position(target: PickTarget, city: &City) -> Option<Vec2> {
    match target {
        PickTarget::Asset(h) => {
            let view = city.assets.get(&h)?;
            let points: Vec<[f32; 2]> = match &view.info.geometry {
                polis_protocol::Geometry::Footprint(p) | polis_protocol::Geometry::Line(p) => {
                    p.clone()
                }
                polis_protocol::Geometry::Point([e, n, _]) => vec![[*e, *n]],
            };
            let n = points.len().max(1) as f32;
            let sum = points
                .iter()
                .fold(Vec2::ZERO, |acc, p| acc + Vec2::from(*p));
            Some(sum / n)
        }
        PickTarget::Sensor(h) => {
            let view = city.sensors.get(&h)?;
            let [e, n, _] = view.info.position_enu_m;
            Some(Vec2::new(e, n))
        }
    }
}
