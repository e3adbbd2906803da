//! The orbit camera (mouse and keyboard), flying to assets, and the
//! subscription that follows the camera.

use bevy::input::mouse::{AccumulatedMouseMotion, AccumulatedMouseScroll, MouseScrollUnit};
use bevy::prelude::*;
use polis_protocol::{ClientToServer, GeoBox, Georeference, Subscribe};

use crate::city::bevy_from_enu;
use crate::link::{Link, LinkState};

/// Closest and farthest camera distance from its focus, metres.
const DISTANCE_RANGE_M: (f32, f32) = (40.0, 8_000.0);
/// Lowest and highest camera pitch above the ground, radians.
const PITCH_RANGE: (f32, f32) = (0.15, 1.5);
/// Smallest and largest half-side of the subscribed square, metres.
const AREA_HALF_SIDE_M: (f32, f32) = (300.0, 1_800.0);
/// At most this many subscriptions per second (the server limits them too).
const MIN_SUBSCRIBE_INTERVAL_S: f32 = 0.5;

/// Where the camera looks from: a focus on the ground, a heading, a pitch
/// and a distance.
#[derive(Component, Debug, Clone, Copy, PartialEq)]
pub struct Orbit {
    /// Point looked at, local east/north metres.
    pub focus_enu_m: Vec2,
    /// Heading of the view, radians clockwise from north.
    pub yaw_rad: f32,
    /// Angle above the ground, radians.
    pub pitch_rad: f32,
    /// Distance from the focus, metres.
    pub distance_m: f32,
}

/// Where the camera is flying to (from `F` or `--focus`).
#[derive(Component, Debug, Clone, Copy)]
pub struct FlyTo {
    /// Target focus, local east/north metres.
    pub focus_enu_m: Vec2,
    /// Target distance, metres.
    pub distance_m: f32,
}

impl Orbit {
    /// The camera's transform in Bevy coordinates.
    pub fn transform(&self) -> Transform {
        let ground = self.pitch_rad.cos() * self.distance_m;
        let offset = [
            -self.yaw_rad.sin() * ground,
            -self.yaw_rad.cos() * ground,
            self.pitch_rad.sin() * self.distance_m,
        ];
        let focus = bevy_from_enu([self.focus_enu_m.x, self.focus_enu_m.y, 0.0]);
        let eye = focus + bevy_from_enu(offset);
        Transform::from_translation(eye).looking_at(focus, Vec3::Y)
    }

    /// Half-side of the square to subscribe to, metres.
    pub fn area_half_side_m(&self) -> f32 {
        (self.distance_m * 1.2).clamp(AREA_HALF_SIDE_M.0, AREA_HALF_SIDE_M.1)
    }
}

/// The subscription in force, to decide when to move it.
#[derive(Resource, Debug, Default)]
pub struct Subscription {
    /// Id of the last subscription sent.
    pub id: u32,
    /// Centre and half-side it was sent with, local metres.
    sent: Option<(Vec2, f32)>,
    /// Seconds since the app started when it was sent.
    sent_at_s: f32,
    /// The publishing interval every subscription asks for, ms.
    publish_interval_ms: u32,
}

impl Subscription {
    /// No subscription yet; each will ask for `publish_interval_ms`.
    pub fn with_publish_interval(publish_interval_ms: u32) -> Self {
        Self {
            publish_interval_ms,
            ..Self::default()
        }
    }

    /// Forget the area (a new connection must subscribe again).
    pub fn reset(&mut self) {
        self.sent = None;
    }
}

/// The area of a square around `centre` as WGS84 degrees.
pub fn geobox(georeference: &Georeference, centre: Vec2, half_side_m: f32) -> GeoBox {
    let [lon_min_deg, lat_min_deg] = georeference.lonlat_from_enu(
        f64::from(centre.x - half_side_m),
        f64::from(centre.y - half_side_m),
    );
    let [lon_max_deg, lat_max_deg] = georeference.lonlat_from_enu(
        f64::from(centre.x + half_side_m),
        f64::from(centre.y + half_side_m),
    );
    GeoBox {
        lon_min_deg,
        lat_min_deg,
        lon_max_deg,
        lat_max_deg,
    }
}

/// Whether the camera moved far enough from the subscribed area to move it.
pub fn needs_move(sent: Option<(Vec2, f32)>, focus: Vec2, half_side_m: f32) -> bool {
    match sent {
        None => true,
        Some((centre, sent_half)) => {
            centre.distance(focus) > sent_half * 0.25
                || (half_side_m - sent_half).abs() > sent_half * 0.3
        }
    }
}

/// Moves the subscription with the camera.
pub fn follow_camera(
    time: Res<Time>,
    link: Res<Link>,
    mut subscription: ResMut<Subscription>,
    orbits: Query<&Orbit>,
) {
    let (Some(welcome), LinkState::Connected(_)) = (&link.welcome, &link.state) else {
        return;
    };
    let Ok(orbit) = orbits.single() else { return };
    let now = time.elapsed_secs();
    let half = orbit.area_half_side_m();
    if !needs_move(subscription.sent, orbit.focus_enu_m, half)
        || (subscription.sent.is_some() && now - subscription.sent_at_s < MIN_SUBSCRIBE_INTERVAL_S)
    {
        return;
    }
    let id = subscription.id.wrapping_add(1);
    let message = ClientToServer::Subscribe(Subscribe {
        subscription: id,
        area: geobox(&welcome.georeference, orbit.focus_enu_m, half),
        layers: Vec::new(),
        at_ms: None,
        speed: 1.0,
        publish_interval_ms: subscription.publish_interval_ms,
    });
    if link.send(message) {
        subscription.id = id;
        subscription.sent = Some((orbit.focus_enu_m, half));
        subscription.sent_at_s = now;
    }
}

/// Mouse and keyboard state for telling clicks from drags.
#[derive(Resource, Debug, Default)]
pub struct Drag {
    /// Pointer travel since the left or right button went down, pixels.
    pub travel_px: f32,
}

/// Orbit (right drag, Q/E, R/F), pan (left or middle drag, WASD/arrows),
/// zoom (wheel, +/-); flying to a target when one is set.
pub fn control_camera(
    time: Res<Time>,
    keys: Res<ButtonInput<KeyCode>>,
    buttons: Res<ButtonInput<MouseButton>>,
    motion: Res<AccumulatedMouseMotion>,
    scroll: Res<AccumulatedMouseScroll>,
    mut drag: ResMut<Drag>,
    mut commands: Commands,
    mut cameras: Query<(Entity, &mut Orbit, &mut Transform, Option<&FlyTo>)>,
) {
    let Ok((entity, mut orbit, mut transform, fly)) = cameras.single_mut() else {
        return;
    };
    let dt = time.delta_secs().min(0.1);
    let before = *orbit;
    if buttons.just_pressed(MouseButton::Left) || buttons.just_pressed(MouseButton::Right) {
        drag.travel_px = 0.0;
    }
    drag.travel_px += motion.delta.length();
    let heading = Vec2::new(orbit.yaw_rad.sin(), orbit.yaw_rad.cos());
    let right = Vec2::new(heading.y, -heading.x);
    let metres_per_px = orbit.distance_m * 0.0015;
    if buttons.pressed(MouseButton::Right) {
        orbit.yaw_rad += motion.delta.x * 0.005;
        orbit.pitch_rad += motion.delta.y * 0.005;
    }
    if (buttons.pressed(MouseButton::Left) && drag.travel_px > 4.0)
        || buttons.pressed(MouseButton::Middle)
    {
        orbit.focus_enu_m += (-right * motion.delta.x + heading * motion.delta.y) * metres_per_px;
    }
    let lines = match scroll.unit {
        MouseScrollUnit::Line => scroll.delta.y,
        MouseScrollUnit::Pixel => scroll.delta.y / 40.0,
    };
    orbit.distance_m *= 0.9f32.powf(lines);
    let pan_m = orbit.distance_m * dt;
    let pressed = |a: KeyCode, b: KeyCode| keys.pressed(a) || keys.pressed(b);
    if pressed(KeyCode::KeyW, KeyCode::ArrowUp) {
        orbit.focus_enu_m += heading * pan_m;
    }
    if pressed(KeyCode::KeyS, KeyCode::ArrowDown) {
        orbit.focus_enu_m -= heading * pan_m;
    }
    if pressed(KeyCode::KeyD, KeyCode::ArrowRight) {
        orbit.focus_enu_m += right * pan_m;
    }
    if pressed(KeyCode::KeyA, KeyCode::ArrowLeft) {
        orbit.focus_enu_m -= right * pan_m;
    }
    if keys.pressed(KeyCode::KeyQ) {
        orbit.yaw_rad -= dt;
    }
    if keys.pressed(KeyCode::KeyE) {
        orbit.yaw_rad += dt;
    }
    if keys.pressed(KeyCode::KeyR) {
        orbit.pitch_rad += dt * 0.7;
    }
    if keys.pressed(KeyCode::KeyF) {
        orbit.pitch_rad -= dt * 0.7;
    }
    if pressed(KeyCode::Equal, KeyCode::NumpadAdd) {
        orbit.distance_m *= 1.0 - dt;
    }
    if pressed(KeyCode::Minus, KeyCode::NumpadSubtract) {
        orbit.distance_m *= 1.0 + dt;
    }
    let user_moved = *orbit != before;
    if let Some(target) = fly {
        if user_moved {
            commands.entity(entity).remove::<FlyTo>();
        } else {
            let blend = 1.0 - (-dt / 0.35).exp();
            orbit.focus_enu_m = orbit.focus_enu_m.lerp(target.focus_enu_m, blend);
            orbit.distance_m += (target.distance_m - orbit.distance_m) * blend;
            if orbit.focus_enu_m.distance(target.focus_enu_m) < 0.5
                && (orbit.distance_m - target.distance_m).abs() < 0.5
            {
                commands.entity(entity).remove::<FlyTo>();
            }
        }
    }
    orbit.pitch_rad = orbit.pitch_rad.clamp(PITCH_RANGE.0, PITCH_RANGE.1);
    orbit.distance_m = orbit
        .distance_m
        .clamp(DISTANCE_RANGE_M.0, DISTANCE_RANGE_M.1);
    if *orbit != before || fly.is_some() {
        *transform = orbit.transform();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_camera_looks_at_its_focus_from_the_south_at_heading_zero() {
        let orbit = Orbit {
            focus_enu_m: Vec2::new(100.0, 200.0),
            yaw_rad: 0.0,
            pitch_rad: std::f32::consts::FRAC_PI_4,
            distance_m: 1000.0,
        };
        let t = orbit.transform();
        let eye = crate::city::enu_from_bevy(t.translation);
        assert!((eye[0] - 100.0).abs() < 1e-2);
        assert!(eye[1] < 200.0 - 700.0, "south of the focus: {eye:?}");
        assert!((eye[2] - 707.1).abs() < 0.5);
        let forward = crate::city::enu_from_bevy(*t.forward());
        assert!(
            forward[1] > 0.5 && forward[2] < -0.5,
            "looks north and down: {forward:?}"
        );
    }

    #[test]
    fn the_subscription_moves_only_when_the_view_has_moved_enough() {
        let sent = Some((Vec2::ZERO, 800.0));
        assert!(needs_move(None, Vec2::ZERO, 800.0));
        assert!(!needs_move(sent, Vec2::new(100.0, 0.0), 800.0));
        assert!(needs_move(sent, Vec2::new(300.0, 0.0), 800.0));
        assert!(needs_move(sent, Vec2::ZERO, 300.0));
        let georeference = Georeference {
            origin_lon_deg: 24.9443,
            origin_lat_deg: 60.1716,
        };
        let area = geobox(&georeference, Vec2::ZERO, 1_000.0);
        assert!(area.is_valid());
        assert!((area.area_km2() - 4.0).abs() < 0.1, "{}", area.area_km2());
    }
}
