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
    let georef = tiny().georeference;
    let [lon_min_deg, lat_min_deg] = georef.lonlat_from_enu(min[0], min[1]);
    let [lon_max_deg, lat_max_deg] = georef.lonlat_from_enu(max[0], max[1]);
    GeoBox {
        lon_min_deg,
        lat_min_deg,
        lon_max_deg,
        lat_max_deg,
    }
}

fn west() -> GeoBox {
    area([-400.0, -35.0], [-200.0, 50.0])
}

fn east() -> GeoBox {
    area([200.0, -35.0], [400.0, 50.0])
}

fn connect(app: &mut App, id: u64, area: GeoBox, layers: Vec<Domain>) -> SharedMailbox {
    let mailbox = SharedMailbox::new(|| {});
    app.world_mut().write_message(ViewerConnected {
        viewer: ViewerId(id),
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
    let outcomes: Vec<_> = ack
        .not_accepted
        .iter()
        .map(|n| (n.index, n.outcome))
        .collect();
    assert_eq!(
        outcomes,
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

    let entity = app
        .world()
        .resource::<SensorDirectory>()
        .by_id("meter-b-west-1")
        .expect("sensor exists");
    let state = app.world().get::<LatestReading>(entity).expect("has state");
    assert_eq!(
        state.latest.map(|r| (r.device_time_ms, r.value)),
        Some((2_000, 3.0))
    );
    assert_eq!(
        state.received_count, 5,
        "stale readings still count as received"
    );

    // A later batch with an older reading leaves the newer value in place.
    let ack = push(&mut app, 2, vec![reading("meter-b-west-1", 500, 1.0)]);
    assert_eq!(ack.accepted, 0);
    let state = app.world().get::<LatestReading>(entity).expect("has state");
    assert_eq!(state.latest.map(|r| r.value), Some(3.0));
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
