//! Picking against the twin's shapes: rays through known assets return
//! them, nearest first, and never a sensor the viewer may not see.

use std::sync::mpsc;

use bevy::prelude::*;
use polis_protocol::*;
use polis_scene::Scene;
use polis_twin::*;

/// The tiny scene plus a transit route with one vehicle on it and buildings
/// of three kinds of footprint.
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
    // An L (concave: a triangle mesh), a rectangle turned 45° (a cuboid) and
    // a hexagon (convex: a hull), away from the rest.
    let shapes = [
        (
            "b-l",
            serde_json::json!([
                [1000.0, 0.0],
                [1040.0, 0.0],
                [1040.0, 20.0],
                [1020.0, 20.0],
                [1020.0, 40.0],
                [1000.0, 40.0]
            ]),
        ),
        (
            "b-diamond",
            serde_json::json!([
                [1100.0, 0.0],
                [1120.0, 20.0],
                [1100.0, 40.0],
                [1080.0, 20.0]
            ]),
        ),
        (
            "b-hexagon",
            serde_json::json!([
                [1200.0, 0.0],
                [1220.0, 0.0],
                [1230.0, 17.0],
                [1220.0, 34.0],
                [1200.0, 34.0],
                [1190.0, 17.0]
            ]),
        ),
    ];
    for (id, footprint) in shapes {
        json["assets"]
            .as_array_mut()
            .expect("assets")
            .push(serde_json::json!({
                "id": id, "kind": "building", "footprint_enu_m": footprint, "height_m": 12.0,
                "attributes": {}
            }));
    }
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
    app_with(scene())
}

fn app_with(scene: Scene) -> App {
    let mut app = App::new();
    app.add_plugins((TaskPoolPlugin::default(), bevy::time::TimePlugin))
        .add_plugins(TwinPlugin::new(scene))
        .add_plugins(PickPlugin);
    for (id, access) in [(1, Access::Operator), (2, Access::Public)] {
        app.world_mut().write_message(ViewerConnected {
            viewer: ViewerId(id),
            access,
            name: format!("viewer-{id}"),
            own_sensors: Vec::new(),
            mailbox: SharedMailbox::new(|| {}),
        });
    }
    // The viewers connect on the first update.
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
    assert_eq!(
        buildings,
        [
            "b-west-1",
            "b-west-2",
            "b-east-1",
            "b-east-2",
            "b-l",
            "b-diamond",
            "b-hexagon"
        ]
    );
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

#[test]
fn every_footprint_shape_is_hit_where_it_stands_and_missed_where_it_does_not() {
    let mut app = app();
    let down = [0.0, 0.0, -1.0];
    let first = |hits: &[PickHit]| hits.first().map(|h| (h.id.clone(), h.distance_m));
    // The L: its arms are hit at the 12 m roof, its inner corner is empty.
    let roof = Some(("b-l".to_owned(), 88.0));
    assert_eq!(first(&pick(&mut app, 1, [1010.0, 30.0, 100.0], down)), roof);
    assert_eq!(first(&pick(&mut app, 1, [1030.0, 10.0, 100.0], down)), roof);
    assert!(pick(&mut app, 1, [1030.0, 30.0, 100.0], down).is_empty());
    // The diamond (a rectangle turned 45°): its centre is in, its bounding
    // box's corner is not.
    assert_eq!(
        first(&pick(&mut app, 1, [1100.0, 20.0, 100.0], down)).map(|h| h.0),
        Some("b-diamond".to_owned())
    );
    assert!(pick(&mut app, 1, [1083.0, 3.0, 100.0], down).is_empty());
    // The hexagon: in at its middle, out beyond a slanted side.
    let hits = pick(&mut app, 1, [1210.0, 17.0, 100.0], down);
    assert_eq!(first(&hits).map(|h| h.0), Some("b-hexagon".to_owned()));
    assert!((hits[0].distance_m - 88.0).abs() < 0.01);
    assert!(pick(&mut app, 1, [1192.0, 2.0, 100.0], down).is_empty());
}

#[test]
fn a_level_ray_down_a_long_row_returns_the_nearest_buildings_in_order() {
    // Forty 10 m buildings in a row, 5 m apart, 12 m high.
    let mut json: serde_json::Value =
        serde_json::from_str(include_str!("../../../scenes/tiny.json")).expect("tiny is JSON");
    for i in 0..40 {
        let west = 3_000.0 + 15.0 * f64::from(i);
        json["assets"]
            .as_array_mut()
            .expect("assets")
            .push(serde_json::json!({
                "id": format!("row-{i}"), "kind": "building", "height_m": 12.0,
                "footprint_enu_m": [
                    [west, -3_000.0], [west + 10.0, -3_000.0],
                    [west + 10.0, -2_990.0], [west, -2_990.0]
                ],
                "attributes": {}
            }));
    }
    let scene = Scene::from_json_str(&json.to_string(), "tiny+row.json").expect("scene loads");
    let mut app = app_with(scene);
    // At eye level from 50 m west of the row, looking east along it.
    let hits = pick(&mut app, 1, [2_950.0, -2_995.0, 1.7], [1.0, 0.0, 0.0]);
    let expected: Vec<String> = (0..MAX_PICK_HITS).map(|i| format!("row-{i}")).collect();
    assert_eq!(ids(&hits), expected);
    for (i, hit) in hits.iter().enumerate() {
        let wall_m = 50.0 + 15.0 * i as f32;
        assert!((hit.distance_m - wall_m).abs() < 0.01, "{hit:?}");
    }
    // The same ray above the roofs finds nothing; the one below them, from
    // the far end looking back, finds the row from the other side.
    assert!(pick(&mut app, 1, [2_950.0, -2_995.0, 40.0], [1.0, 0.0, 0.0]).is_empty());
    let back = pick(&mut app, 1, [3_700.0, -2_995.0, 6.0], [-1.0, 0.0, 0.0]);
    assert_eq!(back.first().map(|h| h.id.as_str()), Some("row-39"));
}

/// A burst of picks is answered at most a budget per tick, oldest first, so
/// a viewer clicking (or a client scripting) many picks cannot stall the
/// tick that applies readings for everyone.
#[test]
fn a_burst_of_picks_is_answered_a_budget_per_tick_in_order() {
    let mut app = app();
    assert_eq!(
        app.world().resource::<PickBudget>().picks_per_tick,
        DEFAULT_PICKS_PER_TICK
    );
    let burst = 2 * DEFAULT_PICKS_PER_TICK + 5;
    let (tx, rx) = mpsc::channel();
    for request in 0..burst as u32 {
        let tx = tx.clone();
        app.world_mut().write_message(PickRequested {
            viewer: ViewerId(1),
            request: PickRequest {
                request,
                origin_enu_m: [280.0, 12.0, 500.0],
                direction_enu: [0.0, 0.0, -1.0],
                max_distance_m: 5_000.0,
            },
            responder: PickResponder::new(move |reply| {
                let _ = tx.send(reply.request);
            }),
        });
    }
    let mut answered_per_tick = Vec::new();
    let mut order = Vec::new();
    for _ in 0..4 {
        app.update();
        let answered: Vec<u32> = rx.try_iter().collect();
        answered_per_tick.push(answered.len());
        order.extend(answered);
    }
    assert_eq!(
        answered_per_tick,
        [DEFAULT_PICKS_PER_TICK, DEFAULT_PICKS_PER_TICK, 5, 0]
    );
    assert_eq!(order, (0..burst as u32).collect::<Vec<_>>());
    assert!(app.world().resource::<PendingPicks>().is_empty());
}

#[test]
fn a_large_concave_building_is_shaped_once_and_picked_where_it_stands() {
    // A comb of 1,000 corners (250 teeth 10 m deep, 2 m apart) at x 2000+.
    let mut json: serde_json::Value =
        serde_json::from_str(&scene().to_json_string_pretty()).expect("scene as JSON");
    let mut footprint = vec![[2_000.0, 0.0], [2_500.0, 0.0]];
    for tooth in (0..250).rev() {
        let x = 2_000.0 + f64::from(tooth) * 2.0;
        footprint.extend([[x + 2.0, 1.0], [x + 1.0, 1.0], [x + 1.0, 11.0], [x, 11.0]]);
    }
    footprint.truncate(1_000);
    json["assets"]
        .as_array_mut()
        .expect("assets")
        .push(serde_json::json!({
            "id": "b-comb", "kind": "building", "footprint_enu_m": footprint, "height_m": 12.0,
            "attributes": {}
        }));
    let scene = Scene::from_json_str(&json.to_string(), "comb.json").expect("scene loads");
    let mut app = app_with(scene);
    let down = [0.0, 0.0, -1.0];
    let first = |hits: &[PickHit]| hits.first().map(|h| h.id.clone());
    // A tooth is hit, the gap between two teeth is not.
    assert_eq!(
        first(&pick(&mut app, 1, [2_100.5, 5.0, 100.0], down)),
        Some("b-comb".to_owned())
    );
    assert!(pick(&mut app, 1, [2_101.5, 5.0, 100.0], down).is_empty());
    assert_eq!(
        first(&pick(&mut app, 1, [2_300.5, 8.0, 100.0], down)),
        Some("b-comb".to_owned())
    );
    let shapes = app.world().resource::<PickShapes>();
    assert_eq!(shapes.len(), 1, "the comb's shape is kept");
    assert_eq!(shapes.built(), 1, "and built once for three picks");
}
