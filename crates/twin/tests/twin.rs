//! The twin in one process, no I/O: readings in, acknowledgements and
//! per-viewer mailboxes out.

use bevy::prelude::*;
use polis_protocol::*;
use polis_scene::Scene;
use polis_twin::*;

fn tiny() -> Scene {
    Scene::from_json_str(include_str!("../../../scenes/tiny.json"), "tiny.json")
        .expect("tiny scene loads")
}

fn app() -> App {
    let mut app = App::new();
    app.add_plugins(TwinPlugin::new(tiny()));
    app.update();
    app
}

fn reading(sensor: &str, device_time_ms: i64, value: f64) -> Reading {
    Reading {
        sensor: sensor.into(),
        device_time_ms,
        value,
        quality: None,
    }
}

fn push(app: &mut App, seq: u64, readings: Vec<Reading>) -> BatchAck {
    app.world_mut().write_message(IncomingBatch {
        ticket: BatchTicket(seq),
        scope: None,
        batch: ReadingBatch { seq, readings },
    });
    app.update();
    let messages = app.world().resource::<Messages<BatchApplied>>();
    let mut cursor = messages.get_cursor();
    let acks: Vec<_> = cursor.read(messages).filter(|a| a.ack.seq == seq).collect();
    assert_eq!(acks.len(), 1, "exactly one ack for batch {seq}");
    acks[0].ack.clone()
}

/// A box in lon/lat covering local east/north metres `min`..`max` of the tiny scene.
fn area(min: [f64; 2], max: [f64; 2]) -> GeoBox {
    GeoBox::from_enu(&tiny().georeference, min, max)
}

fn west() -> GeoBox {
    area([-400.0, -35.0], [-200.0, 50.0])
}

fn east() -> GeoBox {
    area([200.0, -35.0], [400.0, 50.0])
}

fn connect(app: &mut App, id: u64, area: GeoBox, layers: Vec<Domain>) -> SharedMailbox {
    connect_as(app, id, area, layers, Access::Operator)
}

fn connect_as(
    app: &mut App,
    id: u64,
    area: GeoBox,
    layers: Vec<Domain>,
    access: Access,
) -> SharedMailbox {
    let mailbox = SharedMailbox::new(|| {});
    app.world_mut().write_message(ViewerConnected {
        viewer: ViewerId(id),
        access,
        name: format!("viewer-{id}"),
        own_sensors: Vec::new(),
        mailbox: mailbox.clone(),
    });
    app.world_mut().write_message(ViewerSubscribed {
        viewer: ViewerId(id),
        subscribe: Subscribe {
            subscription: 1,
            area,
            layers,
            at_ms: None,
            speed: 1.0,
            publish_interval_ms: 0,
        },
    });
    app.update();
    mailbox
}

fn sensor_ids(sensors: &[SensorInfo]) -> Vec<String> {
    let mut ids: Vec<_> = sensors.iter().map(|s| s.id.clone()).collect();
    ids.sort();
    ids
}

#[test]
fn readings_are_classified_by_device_time() {
    let mut app = app();
    let ack = push(
        &mut app,
        1,
        vec![
            reading("meter-b-west-1", 1_000, 2.5),
            reading("meter-b-west-1", 2_000, 3.0),
            reading("meter-b-west-1", 1_500, 9.9), // older: stale
            reading("meter-b-west-1", 2_000, 3.0), // same: duplicate
            reading("meter-b-west-1", 2_000, 4.0), // same time, other value
            reading("no-such-sensor", 2_000, 1.0),
            reading("meter-b-east-1", 2_000, f64::NAN),
        ],
    );
    assert_eq!(ack.accepted, 2);
    assert_eq!(
        ack.outcomes(),
        [
            (2, ReadingOutcome::Stale),
            (3, ReadingOutcome::Duplicate),
            (4, ReadingOutcome::ConflictingValue),
            (5, ReadingOutcome::UnknownSensor),
            (6, ReadingOutcome::NonFiniteValue),
        ]
    );
    let counters = *app.world().resource::<IngestCounters>();
    assert_eq!(counters.received, 7);
    assert_eq!(counters.accepted, 2);
    assert_eq!(counters.stale, 1);
    assert_eq!(counters.duplicate, 1);
    assert_eq!(counters.refused, 3);

    let sensors = app.world().resource::<SensorTable>();
    let handle = sensors.by_id("meter-b-west-1").expect("sensor exists");
    assert_eq!(
        sensors.latest(handle).map(|r| (r.device_time_ms, r.value)),
        Some((2_000, 3.0))
    );

    // A later batch with an older reading leaves the newer value in place.
    let ack = push(&mut app, 2, vec![reading("meter-b-west-1", 500, 1.0)]);
    assert_eq!(ack.accepted, 0);
    let latest = app.world().resource::<SensorTable>().latest(handle);
    assert_eq!(latest.map(|r| r.value), Some(3.0));
}

/// A reading from the future would stay the sensor's latest and make every
/// real reading after it stale: it is refused, and so are device times
/// RFC 3339 cannot write.
#[test]
fn readings_from_the_future_or_beyond_rfc_3339_are_refused() {
    let mut app = app();
    let now_ms = 1_800_000_000_000;
    app.insert_resource(DeviceTimeLimit {
        newest_ms: now_ms + 300_000,
    });
    let ack = push(
        &mut app,
        1,
        vec![
            reading("meter-b-west-1", 253_402_300_799_000, 1.0), // 9999-12-31
            reading("meter-b-west-1", i64::MAX, 1.0),
            reading("meter-b-west-1", i64::MIN, 1.0),
            reading("meter-b-west-1", now_ms + 300_001, 1.0),
            reading("meter-b-west-1", now_ms + 300_000, 2.0), // within the skew
        ],
    );
    let outcomes: Vec<_> = ack.not_accepted.iter().map(|n| n.outcome).collect();
    assert_eq!(
        outcomes,
        [
            ReadingOutcome::FutureTime,
            ReadingOutcome::TimeOutOfRange,
            ReadingOutcome::TimeOutOfRange,
            ReadingOutcome::FutureTime,
        ]
    );
    assert!(outcomes.iter().all(|o| o.is_refusal()));
    assert_eq!(ack.accepted, 1);
    // The sensor keeps taking real readings.
    let ack = push(
        &mut app,
        2,
        vec![reading("meter-b-west-1", now_ms + 300_001, 3.0)],
    );
    assert_eq!(
        ack.not_accepted.first().map(|n| n.outcome),
        Some(ReadingOutcome::FutureTime)
    );
    app.insert_resource(DeviceTimeLimit {
        newest_ms: now_ms + 600_000,
    });
    let ack = push(
        &mut app,
        3,
        vec![reading("meter-b-west-1", now_ms + 300_001, 3.0)],
    );
    assert_eq!(ack.accepted, 1);
    // Without a clock, the RFC 3339 range still holds.
    let mut unclocked = self::app();
    let ack = push(
        &mut unclocked,
        1,
        vec![reading("meter-b-west-1", i64::MAX, 1.0)],
    );
    assert_eq!(
        ack.not_accepted.first().map(|n| n.outcome),
        Some(ReadingOutcome::TimeOutOfRange)
    );
    assert_eq!(
        (MIN_DEVICE_TIME_MS, MAX_DEVICE_TIME_MS),
        (-62_167_219_200_000, 253_402_300_799_999)
    );
}

#[test]
fn viewers_get_a_snapshot_of_exactly_their_area_then_its_updates() {
    let mut app = app();
    push(&mut app, 1, vec![reading("meter-b-west-1", 1_000, 2.5)]);
    let west_box = connect(&mut app, 1, west(), vec![]);
    let east_box = connect(&mut app, 2, east(), vec![]);

    let frames = west_box.drain_frames(64 * 1024);
    let [ServerToViewer::Snapshot(snapshot)] = frames.as_slice() else {
        panic!("expected one snapshot, got {frames:?}");
    };
    assert!(snapshot.complete);
    assert_eq!(
        sensor_ids(&snapshot.sensors),
        [
            "air-west",
            "count-stop-west",
            "meter-b-west-1",
            "meter-b-west-2",
            "pv-b-west-2"
        ]
    );
    let metered = snapshot
        .sensors
        .iter()
        .find(|s| s.id == "meter-b-west-1")
        .and_then(|s| s.latest);
    assert_eq!(
        metered.map(|v| v.value),
        Some(2.5),
        "snapshot carries latest values"
    );
    let mut assets: Vec<_> = snapshot.assets.iter().map(|a| a.id.as_str()).collect();
    assets.sort_unstable();
    assert_eq!(assets, ["b-west-1", "b-west-2", "road-main", "stop-west"]);
    let _ = east_box.drain_frames(64 * 1024);

    push(
        &mut app,
        2,
        vec![
            reading("meter-b-west-1", 2_000, 3.0),
            reading("meter-b-west-1", 3_000, 3.5),
            reading("flow-pipe-1", 2_000, 12.0),
            reading("noise-road", 2_000, 55.0),
        ],
    );
    let west_updates = west_box.drain_frames(64 * 1024);
    let [ServerToViewer::Update(update)] = west_updates.as_slice() else {
        panic!("expected one update, got {west_updates:?}");
    };
    assert_eq!(
        update.values.len(),
        1,
        "coalesced to the latest value: {update:?}"
    );
    assert_eq!(update.values[0].device_time_ms, 3_000);
    assert_eq!(update.values[0].value, 3.5);
    let east_updates = east_box.drain_frames(64 * 1024);
    let [ServerToViewer::Update(update)] = east_updates.as_slice() else {
        panic!("expected one update, got {east_updates:?}");
    };
    assert_eq!(update.values.len(), 1);
    assert_eq!(update.values[0].value, 12.0);
}

#[test]
fn moving_the_area_enters_and_leaves_items_and_redirects_updates() {
    let mut app = app();
    let mailbox = connect(&mut app, 1, west(), vec![]);
    let _ = mailbox.drain_frames(64 * 1024);
    push(
        &mut app,
        1,
        vec![reading("pressure-junction-1", 1_000, 42.0)],
    );
    app.world_mut().write_message(ViewerSubscribed {
        viewer: ViewerId(1),
        subscribe: Subscribe {
            subscription: 2,
            area: east(),
            layers: vec![],
            at_ms: None,
            speed: 1.0,
            publish_interval_ms: 0,
        },
    });
    app.update();
    let frames = mailbox.drain_frames(64 * 1024);
    let [ServerToViewer::Update(update)] = frames.as_slice() else {
        panic!("expected one update, got {frames:?}");
    };
    assert_eq!(
        sensor_ids(&update.entered_sensors),
        [
            "air-east",
            "flow-pipe-1",
            "meter-b-east-1",
            "meter-b-east-2",
            "pressure-junction-1",
            "pv-b-east-2"
        ]
    );
    let pressure = update
        .entered_sensors
        .iter()
        .find(|s| s.id == "pressure-junction-1")
        .and_then(|s| s.latest);
    assert_eq!(pressure.map(|v| v.value), Some(42.0));
    assert_eq!(update.left_sensors.len(), 5);
    assert_eq!(
        update.left_assets.len(),
        3,
        "road-main spans both areas and stays"
    );

    push(&mut app, 2, vec![reading("meter-b-west-1", 5_000, 1.0)]);
    assert!(
        mailbox.drain_frames(64 * 1024).is_empty(),
        "no updates from the old area"
    );
}

#[test]
fn layers_filter_sensors_but_buildings_stay() {
    let mut app = app();
    let mailbox = connect(&mut app, 1, east(), vec![Domain::Water]);
    let frames = mailbox.drain_frames(64 * 1024);
    let [ServerToViewer::Snapshot(snapshot)] = frames.as_slice() else {
        panic!("expected a snapshot, got {frames:?}");
    };
    assert_eq!(
        sensor_ids(&snapshot.sensors),
        ["flow-pipe-1", "pressure-junction-1"]
    );
    let mut assets: Vec<_> = snapshot.assets.iter().map(|a| a.id.as_str()).collect();
    assets.sort_unstable();
    assert_eq!(assets, ["b-east-1", "b-east-2", "junction-1", "pipe-1"]);
}

#[test]
fn disconnected_viewers_stop_receiving() {
    let mut app = app();
    let mailbox = connect(&mut app, 1, west(), vec![]);
    let _ = mailbox.drain_frames(64 * 1024);
    app.world_mut().write_message(ViewerDisconnected {
        viewer: ViewerId(1),
    });
    app.update();
    push(&mut app, 1, vec![reading("meter-b-west-1", 1_000, 1.0)]);
    assert!(mailbox.drain_frames(64 * 1024).is_empty());
    assert_eq!(
        app.world_mut()
            .query::<&ViewerState>()
            .iter(app.world())
            .count(),
        0
    );
}

/// Everything a mailbox delivered: sensor id → latest value (None when the
/// sensor was announced without one).
fn delivered(
    mailbox: &SharedMailbox,
    names: &mut std::collections::HashMap<u32, String>,
) -> Vec<(String, Option<f64>)> {
    let mut seen = Vec::new();
    for frame in mailbox.drain_frames(1 << 20) {
        let (sensors, values) = match frame {
            ServerToViewer::Snapshot(s) => (s.sensors, Vec::new()),
            ServerToViewer::Update(u) => (u.entered_sensors, u.values),
            _ => continue,
        };
        for sensor in sensors {
            names.insert(sensor.handle, sensor.id.clone());
            seen.push((sensor.id, sensor.latest.map(|v| v.value)));
        }
        for value in values {
            seen.push((names[&value.sensor].clone(), Some(value.value)));
        }
    }
    seen
}

#[test]
fn personal_data_reaches_each_role_only_as_allowed() {
    let mut app = app();
    push(&mut app, 1, vec![reading("meter-b-west-1", 1_000, 2.5)]);
    let operator = connect_as(&mut app, 1, west(), vec![], Access::Operator);
    let planner = connect_as(&mut app, 2, west(), vec![], Access::Planner);
    let public = connect_as(&mut app, 3, west(), vec![], Access::Public);
    push(&mut app, 2, vec![reading("meter-b-west-1", 2_000, 3.5)]);

    let mut names = std::collections::HashMap::new();
    let seen = delivered(&operator, &mut names);
    assert!(
        seen.contains(&("meter-b-west-1".into(), Some(3.5))),
        "{seen:?}"
    );

    let seen = delivered(&planner, &mut names);
    assert!(
        seen.iter().all(|(id, _)| id != "meter-b-west-1"),
        "{seen:?}"
    );
    // One home in its building, block and district: fewer than
    // k_planner = 3, so planners get no aggregate of it either.
    assert!(
        seen.iter()
            .all(|(id, v)| !id.starts_with("agg-") && *v != Some(3.5) && *v != Some(2.5)),
        "planners see nothing of a lone home: {seen:?}"
    );

    // The public sees neither the house nor an aggregate over fewer than k = 5.
    let seen = delivered(&public, &mut names);
    assert!(
        seen.iter()
            .all(|(id, _)| id != "meter-b-west-1" && !id.starts_with("agg-")),
        "{seen:?}"
    );
    assert!(
        seen.iter().all(|(_, v)| *v != Some(3.5) && *v != Some(2.5)),
        "{seen:?}"
    );
}

#[test]
fn the_public_sees_only_aggregates_over_at_least_k_homes() {
    // Six homes in one 100 m block, one per building.
    let mut scene = tiny();
    scene.assets.retain(|a| a.kind != AssetKind::Building);
    scene
        .sensors
        .retain(|s| s.asset.as_deref().is_none_or(|a| !a.starts_with("b-")));
    for i in 0..6 {
        let east = -380.0 + f64::from(i) * 12.0;
        scene.assets.push(polis_scene::Asset {
            id: format!("home-{i}"),
            kind: AssetKind::Building,
            geometry: polis_scene::Geometry::Footprint(vec![
                [east, 10.0],
                [east + 10.0, 10.0],
                [east + 10.0, 20.0],
                [east, 20.0],
            ]),
            height_m: Some(9.0),
            attributes: Default::default(),
        });
        scene.sensors.push(polis_scene::Sensor {
            id: format!("meter-home-{i}"),
            domain: Domain::Energy,
            quantity: "active_power".into(),
            unit: "kW".into(),
            position_enu_m: [east + 5.0, 15.0, 1.5],
            asset: Some(format!("home-{i}")),
            personal: true,
        });
    }
    scene.validate().expect("valid scene");
    let mut app = App::new();
    app.add_plugins(TwinPlugin::new(scene));
    app.update();
    let public = connect_as(&mut app, 1, west(), vec![], Access::Public);
    let mut names = std::collections::HashMap::new();
    let snapshot = delivered(&public, &mut names);
    let aggregates: Vec<_> = snapshot
        .iter()
        .filter(|(id, _)| id.starts_with("agg-public-block-"))
        .collect();
    assert_eq!(aggregates.len(), 1, "{snapshot:?}");
    assert!(
        snapshot.iter().all(|(id, _)| !id.starts_with("meter-home")),
        "{snapshot:?}"
    );

    // Five homes reporting, k of them, but not the whole group: its
    // membership is fixed, so no value yet (a value over five, then six,
    // would give away the sixth home as the difference).
    for i in 0..5 {
        push(
            &mut app,
            10 + i,
            vec![reading(&format!("meter-home-{i}"), 1_000, 1.0)],
        );
    }
    let seen = delivered(&public, &mut names);
    assert!(seen.iter().all(|(_, v)| v.is_none()), "{seen:?}");
    // The sixth completes it: the public gets the sum, never a single home.
    push(&mut app, 20, vec![reading("meter-home-5", 1_000, 2.0)]);
    let seen = delivered(&public, &mut names);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].0.starts_with("agg-public-block-"));
    assert_eq!(seen[0].1, Some(7.0));
    // A home going silent keeps its latest reading in the sum; a new
    // reading of one home changes only its own part.
    push(&mut app, 21, vec![reading("meter-home-0", 2_000, 3.0)]);
    assert_eq!(delivered(&public, &mut names)[0].1, Some(9.0));
}

#[test]
fn a_gateway_outside_its_scope_is_refused_per_reading() {
    let mut app = app();
    app.world_mut().write_message(IncomingBatch {
        ticket: BatchTicket(99),
        scope: Some(std::sync::Arc::from(
            vec!["air-".to_owned()].into_boxed_slice(),
        )),
        batch: ReadingBatch {
            seq: 99,
            readings: vec![
                reading("air-west", 1_000, 1.0),
                reading("meter-b-west-1", 1_000, 1.0),
            ],
        },
    });
    app.update();
    let messages = app.world().resource::<Messages<BatchApplied>>();
    let mut cursor = messages.get_cursor();
    let ack = cursor
        .read(messages)
        .find(|a| a.ack.seq == 99)
        .expect("ack")
        .ack
        .clone();
    assert_eq!(ack.accepted, 1);
    assert_eq!(ack.not_accepted.len(), 1);
    assert_eq!(
        (ack.not_accepted[0].index, ack.not_accepted[0].outcome),
        (1, ReadingOutcome::OutOfScope)
    );
}

#[test]
fn an_area_query_checks_a_building_and_its_meter_each_at_its_own_place() {
    // A 10 m building whose meter stands 40 m east of it (a cabinet at the
    // street): one index entry for both, but each is found only where it is.
    let scene = Scene {
        name: "one building".into(),
        description: None,
        attribution: vec![],
        georeference: tiny().georeference,
        assets: vec![polis_scene::Asset {
            id: "b".into(),
            kind: AssetKind::Building,
            geometry: polis_scene::Geometry::Footprint(vec![
                [0.0, 0.0],
                [10.0, 0.0],
                [10.0, 10.0],
                [0.0, 10.0],
            ]),
            height_m: Some(10.0),
            attributes: Default::default(),
        }],
        sensors: vec![polis_scene::Sensor {
            id: "m".into(),
            domain: Domain::Energy,
            quantity: "active_power".into(),
            unit: "kW".into(),
            position_enu_m: [50.0, 5.0, 1.5],
            asset: Some("b".into()),
            personal: false,
        }],
    };
    let mut app = App::new();
    app.add_plugins(TwinPlugin::new(scene));
    app.update();
    let world = app.world();
    let index = world.resource::<SpatialIndex>();
    let (assets, sensors) = (
        world.resource::<AssetTable>(),
        world.resource::<SensorTable>(),
    );
    assert_eq!(index.len(), 1, "a building and its meter share an entry");
    let found = |min: [f64; 2], max: [f64; 2]| {
        let mut items: Vec<ItemRef> = index.items_in_area(min, max, assets, sensors).collect();
        items.sort_by_key(|item| format!("{item:?}"));
        items
    };
    assert_eq!(found([-1.0, -1.0], [11.0, 11.0]), [ItemRef::Asset(0)]);
    assert_eq!(found([45.0, 0.0], [55.0, 10.0]), [ItemRef::Sensor(0)]);
    assert_eq!(found([20.0, 0.0], [30.0, 10.0]), []);
    assert_eq!(
        found([60.0, 20.0], [-1.0, -1.0]),
        [ItemRef::Asset(0), ItemRef::Sensor(0)],
        "corners in either order"
    );
    assert_eq!(assets.sensors_indexed_with(0), [0]);
}
