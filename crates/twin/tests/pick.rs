//! Picking against the twin's colliders: rays through known assets return
//! them, nearest first, and never a sensor the viewer may not see.

use std::sync::mpsc;

use bevy::prelude::*;
use polis_protocol::*;
use polis_scene::Scene;
use polis_twin::*;

/// The tiny scene plus a transit route with one vehicle on it.
fn scene() -> Scene {
    let mut json: serde_json::Value =
        serde_json::from_str(include_str!("../../../scenes/tiny.json")).expect("tiny is JSON");
    json["assets"]
        .as_array_mut()
        .expect("assets")
        .push(serde_json::json!({
            "id": "route-1", "kind": "transit_route",
            "line_enu_m": [[-200.0, 100.0], [0.0, 100.0], [0.0, 300.0]],
            "attributes": {"ref": "1"}
        }));
    json["sensors"]
        .as_array_mut()
        .expect("sensors")
        .push(serde_json::json!({
            "id": "vehicle-route-1-1", "domain": "transport",
            "quantity": "distance_along_route", "unit": "m",
            "position_enu_m": [-200.0, 100.0, 0.0], "asset": "route-1", "personal": false
        }));
    Scene::from_json_str(&json.to_string(), "tiny+route.json").expect("scene loads")
}

fn app() -> App {
    let mut app = App::new();
    app.add_plugins((TaskPoolPlugin::default(), bevy::time::TimePlugin))
        .add_plugins(TwinPlugin::new(scene()))
        .add_plugins(PickPlugin);
    for (id, access) in [(1, Access::Operator), (2, Access::Public)] {
        app.world_mut().write_message(ViewerConnected {
            viewer: ViewerId(id),
            access,
            name: format!("viewer-{id}"),
            mailbox: SharedMailbox::new(|| {}),
        });
    }
    // Colliders are added at startup and enter Rapier's query structure on
    // the first step.
    app.update();
    app.update();
    app
}

fn pick(app: &mut App, viewer: u64, origin: [f32; 3], direction: [f32; 3]) -> Vec<PickHit> {
    let (tx, rx) = mpsc::channel();
    app.world_mut().write_message(PickRequested {
        viewer: ViewerId(viewer),
        request: PickRequest {
            request: 7,
            origin_enu_m: origin,
            direction_enu: direction,
            max_distance_m: 5_000.0,
        },
        responder: PickResponder::new(move |reply| {
            let _ = tx.send(reply);
        }),
    });
    app.update();
    let reply = rx
        .try_recv()
        .expect("the pick is answered in the same update");
    assert_eq!(reply.request, 7);
    reply.hits
}

fn ids(hits: &[PickHit]) -> Vec<&str> {
    hits.iter().map(|h| h.id.as_str()).collect()
}

#[test]
fn a_ray_down_through_a_building_returns_that_building_first() {
    let mut app = app();
    // b-east-1: footprint x 270..290, y 5..20, 24 m high.
    let hits = pick(&mut app, 1, [280.0, 12.0, 500.0], [0.0, 0.0, -1.0]);
    assert_eq!(
        hits.first().map(|h| h.id.as_str()),
        Some("b-east-1"),
        "{:?}",
        ids(&hits)
    );
    assert!(matches!(hits[0].target, PickTarget::Asset(_)));
    assert!(
        (hits[0].distance_m - 476.0).abs() < 0.01,
        "roof at 24 m: {}",
        hits[0].distance_m
    );
    // Behind the roof: its meter (an operator may see it), sorted by distance.
    assert!(ids(&hits).contains(&"meter-b-east-1"), "{:?}", ids(&hits));
    assert!(hits.windows(2).all(|w| w[0].distance_m <= w[1].distance_m));
}

#[test]
fn a_horizontal_ray_stops_at_the_first_wall() {
    let mut app = app();
    // From the far west along y = 12.5 at 10 m: b-west-1's west wall at x = -330.
    let hits = pick(&mut app, 1, [-500.0, 12.5, 10.0], [1.0, 0.0, 0.0]);
    assert_eq!(
        hits.first().map(|h| h.id.as_str()),
        Some("b-west-1"),
        "{:?}",
        ids(&hits)
    );
    assert!((hits[0].distance_m - 170.0).abs() < 0.01);
    // The ray goes on through every building in the row.
    let buildings: Vec<&str> = ids(&hits)
        .into_iter()
        .filter(|i| i.starts_with("b-"))
        .collect();
    assert_eq!(buildings, ["b-west-1", "b-west-2", "b-east-1", "b-east-2"]);
}

#[test]
fn a_public_viewer_never_picks_a_household_meter() {
    let mut app = app();
    let operator = pick(&mut app, 1, [-320.0, 12.5, 500.0], [0.0, 0.0, -1.0]);
    let public = pick(&mut app, 2, [-320.0, 12.5, 500.0], [0.0, 0.0, -1.0]);
    assert!(ids(&operator).contains(&"meter-b-west-1"));
    assert_eq!(public.first().map(|h| h.id.as_str()), Some("b-west-1"));
    assert!(
        !ids(&public).contains(&"meter-b-west-1"),
        "{:?}",
        ids(&public)
    );
    // An unknown viewer gets nothing at all.
    assert!(pick(&mut app, 99, [-320.0, 12.5, 500.0], [0.0, 0.0, -1.0]).is_empty());
    // Empty sky.
    assert!(pick(&mut app, 1, [0.0, 500.0, 500.0], [0.0, 0.0, 1.0]).is_empty());
}

#[test]
fn a_vehicle_is_picked_where_its_latest_reading_puts_it() {
    let mut app = app();
    let down_at = |east: f32, north: f32| ([east, north, 300.0], [0.0, 0.0, -1.0]);
    // 250 m along the route: 200 m east, then 50 m north, at (0, 150).
    app.world_mut().write_message(IncomingBatch {
        ticket: BatchTicket(1),
        scope: None,
        batch: ReadingBatch {
            seq: 1,
            readings: vec![Reading {
                sensor: "vehicle-route-1-1".into(),
                device_time_ms: 1_000,
                value: 250.0,
                quality: None,
            }],
        },
    });
    app.update();
    app.update();
    let (origin, direction) = down_at(0.0, 150.0);
    let hits = pick(&mut app, 2, origin, direction);
    assert_eq!(
        hits.first().map(|h| h.id.as_str()),
        Some("vehicle-route-1-1"),
        "{:?}",
        ids(&hits)
    );
    // Where it started, only the route is left.
    let (origin, direction) = down_at(-200.0, 100.0);
    let hits = pick(&mut app, 2, origin, direction);
    assert_eq!(ids(&hits), ["route-1"]);
}
