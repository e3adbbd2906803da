//! The spine over real QUIC on loopback: gateways push, viewers see exactly
//! the latest values of their area, bad clients get clear errors while
//! everyone else keeps being served, and a stalled viewer costs bounded memory.

use std::collections::BTreeMap;
use std::time::Duration;

use polis_e2e::*;
use polis_net::{ClientError, Session};
use polis_protocol::{
    AssetKind, ClientToServer, Domain, ErrorCode, GeoBox, MAX_FRAME_BYTES, ReadingBatch,
    ReadingOutcome, Rejection, Role, Subscribe,
};
use polis_scene::{Asset, Geometry, Scene, Sensor};

const EAST: [&str; 6] = [
    "air-east",
    "flow-pipe-1",
    "meter-b-east-1",
    "meter-b-east-2",
    "pressure-junction-1",
    "pv-b-east-2",
];
const MIDDLE: &str = "noise-road";

const WAIT: Duration = Duration::from_secs(10);

/// Readings for every sensor at several device times, deliberately out of
/// order, with each sensor's newest reading in the middle of the stream.
fn shuffled_readings(
    base_ms: i64,
) -> (
    Vec<Vec<polis_protocol::Reading>>,
    BTreeMap<String, (i64, f64)>,
) {
    let mut batches = Vec::new();
    let mut latest = BTreeMap::new();
    let all: Vec<&str> = WEST
        .iter()
        .chain(EAST.iter())
        .copied()
        .chain([MIDDLE])
        .collect();
    // Device times per round: the newest (round 2) arrives before round 1's.
    for round in [0i64, 2, 1] {
        let batch = all
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let time = base_ms + round * 1_000 + i as i64;
                let value = (round * 100 + i as i64) as f64 + 0.5;
                reading(id, time, value)
            })
            .collect();
        batches.push(batch);
    }
    for (i, id) in all.iter().enumerate() {
        latest.insert(
            (*id).to_owned(),
            (base_ms + 2_000 + i as i64, (200 + i) as f64 + 0.5),
        );
    }
    (batches, latest)
}

fn subset(latest: &BTreeMap<String, (i64, f64)>, ids: &[&str]) -> BTreeMap<String, (i64, f64)> {
    ids.iter()
        .map(|id| ((*id).to_owned(), latest[*id]))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_end_with_exactly_the_latest_values_of_their_area() {
    let server = TestServer::start();
    let mut west_viewer = server.viewer(west(), vec![]).await;
    west_viewer.until(WAIT, |v| v.snapshots_complete == 1).await;
    assert_eq!(west_viewer.sensor_ids(), WEST);

    let mut gateway = server.gateway().await;
    let (batches, latest) = shuffled_readings(1_700_000_000_000);
    for batch in batches {
        let ack = gateway.push(batch).await;
        assert!(
            ack.not_accepted
                .iter()
                .all(|n| n.outcome == ReadingOutcome::Stale)
        );
    }
    // A viewer that arrives after the pushes gets the same state from its snapshot.
    let mut east_viewer = server.viewer(east(), vec![]).await;

    let want_west = subset(&latest, &WEST);
    let want_east = subset(&latest, &EAST);
    west_viewer.until(WAIT, |v| v.values == want_west).await;
    east_viewer.until(WAIT, |v| v.values == want_east).await;
    assert!(
        west_viewer
            .ever_seen
            .iter()
            .all(|id| WEST.contains(&id.as_str()))
    );
    assert!(
        east_viewer
            .ever_seen
            .iter()
            .all(|id| EAST.contains(&id.as_str()))
    );

    // Moving the west viewer to the east brings the east's values and drops the west's.
    west_viewer.subscribe(east(), vec![]).await;
    west_viewer.until(WAIT, |v| v.values == want_east).await;
    assert_eq!(west_viewer.sensor_ids(), EAST);

    // Values from the old area no longer arrive; the new area's do.
    gateway
        .push(vec![
            reading("meter-b-west-1", 1_750_000_000_000, 7.0),
            reading("flow-pipe-1", 1_750_000_000_000, 8.0),
        ])
        .await;
    west_viewer
        .until(WAIT, |v| {
            v.values.get("flow-pipe-1") == Some(&(1_750_000_000_000, 8.0))
        })
        .await;
    assert!(!west_viewer.values.contains_key("meter-b-west-1"));
    let seen_before = west_viewer.ever_seen.len();
    east_viewer
        .until(WAIT, |v| {
            v.values.get("flow-pipe-1") == Some(&(1_750_000_000_000, 8.0))
        })
        .await;
    assert_eq!(west_viewer.ever_seen.len(), seen_before);
    assert!(
        !east_viewer
            .ever_seen
            .iter()
            .any(|id| id == MIDDLE || id.contains("west"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_duplicate_and_unknown_readings_are_reported_per_reading() {
    let server = TestServer::start();
    let mut gateway = server.gateway().await;
    let ack = gateway
        .push(vec![
            reading("air-west", 2_000, 10.0),
            reading("air-west", 1_000, 99.0),
            reading("air-west", 2_000, 10.0),
            reading("no-such-sensor", 2_000, 1.0),
        ])
        .await;
    assert_eq!(ack.accepted, 1);
    assert_eq!(
        ack.outcomes(),
        [
            (1, ReadingOutcome::Stale),
            (2, ReadingOutcome::Duplicate),
            (3, ReadingOutcome::UnknownSensor)
        ]
    );
    // Resending the same batch (as after a reconnect) changes nothing.
    let again = gateway.push(vec![reading("air-west", 2_000, 10.0)]).await;
    assert_eq!(again.accepted, 0);
    assert_eq!(again.not_accepted[0].outcome, ReadingOutcome::Duplicate);

    let mut viewer = server.viewer(west(), vec![Domain::Environment]).await;
    viewer
        .until(WAIT, |v| v.values.get("air-west") == Some(&(2_000, 10.0)))
        .await;
    let metrics = server.server.metrics();
    let received = metrics
        .readings_received
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        received, 5,
        "stale and duplicate readings are counted as received"
    );
}

/// Pushes a fresh value to `air-west` and waits until `viewer` has it.
async fn still_served(gateway: &mut Gateway, viewer: &mut Viewer, round: i64) {
    let time = 1_760_000_000_000 + round;
    gateway
        .push(vec![reading("air-west", time, round as f64)])
        .await;
    viewer
        .until(WAIT, |v| {
            v.values.get("air-west") == Some(&(time, round as f64))
        })
        .await;
}

async fn expect_server_error(session: &mut Session, code: ErrorCode) {
    let result = tokio::time::timeout(WAIT, session.recv::<polis_protocol::ServerToViewer>())
        .await
        .expect("answer within the wait");
    match result {
        Ok(polis_protocol::ServerToViewer::Error(error)) => assert_eq!(error.code, code, "{error}"),
        other => panic!("expected a {code:?} error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_clients_get_clear_errors_while_others_keep_being_served() {
    let server = TestServer::start();
    let mut viewer = server.viewer(west(), vec![]).await;
    let mut gateway = server.gateway().await;
    still_served(&mut gateway, &mut viewer, 0).await;

    // Wrong token.
    let err = Session::connect(&server.options(Role::Viewer, "not-a-token-at-all"))
        .await
        .expect_err("refused");
    assert!(
        matches!(err, ClientError::Rejected(Rejection::UnknownToken)),
        "{err}"
    );
    still_served(&mut gateway, &mut viewer, 1).await;

    // Wrong protocol version.
    let mut options = server.options(Role::Viewer, VIEWER_TOKEN);
    options.protocol_version = 99;
    let err = Session::connect(&options).await.expect_err("refused");
    assert!(
        matches!(
            err,
            ClientError::Rejected(Rejection::VersionMismatch {
                server: polis_protocol::PROTOCOL_VERSION,
                client: 99
            })
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("protocol version mismatch"),
        "{err}"
    );
    still_served(&mut gateway, &mut viewer, 2).await;

    // A viewer token cannot be used to push, nor a gateway token to watch.
    for (role, token) in [(Role::Gateway, VIEWER_TOKEN), (Role::Viewer, GATEWAY_TOKEN)] {
        let err = Session::connect(&server.options(role, token))
            .await
            .expect_err("refused");
        assert!(
            matches!(
                err,
                ClientError::Rejected(Rejection::RoleNotAllowed { requested }) if requested == role
            ),
            "{err}"
        );
    }
    still_served(&mut gateway, &mut viewer, 3).await;

    // A viewer that pushes, and a gateway that subscribes, are told why.
    let mut wrong = Session::connect(&server.options(Role::Viewer, VIEWER_TOKEN))
        .await
        .expect("connects");
    wrong
        .send(&ClientToServer::Batch(ReadingBatch {
            seq: 1,
            readings: vec![reading("air-west", 1, 1.0)],
        }))
        .await
        .expect("sent");
    expect_server_error(&mut wrong, ErrorCode::UnexpectedMessage).await;
    refused_subscription(
        &server,
        Role::Gateway,
        GATEWAY_TOKEN,
        live(west()),
        ErrorCode::UnexpectedMessage,
    )
    .await;
    still_served(&mut gateway, &mut viewer, 4).await;

    // A garbage frame, an oversized frame and an invalid area.
    let mut garbage = Session::connect(&server.options(Role::Viewer, VIEWER_TOKEN))
        .await
        .expect("connects");
    garbage
        .send_raw(&[5, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff])
        .await
        .expect("sent");
    expect_server_error(&mut garbage, ErrorCode::MalformedFrame).await;
    let mut oversized = Session::connect(&server.options(Role::Gateway, GATEWAY_TOKEN))
        .await
        .expect("connects");
    let announced = u32::try_from(MAX_FRAME_BYTES + 1).expect("fits");
    oversized
        .send_raw(&announced.to_le_bytes())
        .await
        .expect("sent");
    expect_server_error(&mut oversized, ErrorCode::FrameTooLarge).await;
    let bad_area = GeoBox {
        lon_min_deg: 10.0,
        lat_min_deg: 0.0,
        lon_max_deg: 5.0,
        lat_max_deg: f64::NAN,
    };
    refused_subscription(
        &server,
        Role::Viewer,
        VIEWER_TOKEN,
        live(bad_area),
        ErrorCode::InvalidArea,
    )
    .await;
    still_served(&mut gateway, &mut viewer, 5).await;

    // A publishing interval beyond the limit.
    let too_slow = Subscribe {
        publish_interval_ms: polis_protocol::MAX_PUBLISH_INTERVAL_MS + 1,
        ..live(west())
    };
    refused_subscription(
        &server,
        Role::Viewer,
        VIEWER_TOKEN,
        too_slow,
        ErrorCode::InvalidRequest,
    )
    .await;
    still_served(&mut gateway, &mut viewer, 6).await;
}

/// A new session as `role` sends `subscribe` and gets a `code` error.
async fn refused_subscription(
    server: &TestServer,
    role: Role,
    token: &str,
    subscribe: Subscribe,
    code: ErrorCode,
) {
    let mut session = Session::connect(&server.options(role, token))
        .await
        .expect("connects");
    session
        .send(&ClientToServer::Subscribe(subscribe))
        .await
        .expect("sent");
    expect_server_error(&mut session, code).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publishing_interval_coalesces_values_but_never_holds_back_area_changes() {
    const INTERVAL: Duration = Duration::from_millis(400);
    let server = TestServer::start();
    let mut gateway = server.gateway().await;
    let mut paced = server.viewer(west(), vec![]).await;
    paced.until(WAIT, |v| v.snapshots_complete == 1).await;
    // The same area again: nothing enters or leaves, only the interval
    // changes; the barrier makes sure the server has taken it.
    paced.publish_interval_ms = INTERVAL.as_millis() as u32;
    paced.subscribe(west(), vec![]).await;
    paced.barrier(WAIT).await;

    // Eight changes of one sensor, 50 ms apart, while the viewer reads (so
    // that frames are timed as they arrive): one latest value per interval
    // reaches it, and the last one always does.
    let start_ms = 1_700_000_000_000;
    let pushes = tokio::spawn(async move {
        let started = tokio::time::Instant::now();
        for step in 0..8 {
            gateway
                .push(vec![reading(
                    "meter-b-west-1",
                    start_ms + step * 1_000,
                    step as f64,
                )])
                .await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (gateway, started.elapsed())
    });
    let last = (start_ms + 7_000, 7.0);
    paced
        .until(WAIT, |v| v.values.get("meter-b-west-1") == Some(&last))
        .await;
    let (mut gateway, pushing) = pushes.await.expect("pushes");
    // Sends at least INTERVAL apart over the pushes, one more at the end.
    let most = (pushing.as_millis() / INTERVAL.as_millis()) as usize + 2;
    let arrivals = &paced.value_frames;
    assert!(
        !arrivals.is_empty() && arrivals.len() <= most.min(7),
        "8 changes in {pushing:?} reach a viewer with a {INTERVAL:?} interval in at most {} frames, got {}",
        most.min(7),
        arrivals.len()
    );
    for pair in arrivals.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= INTERVAL / 2,
            "value frames {gap:?} apart under a {INTERVAL:?} interval"
        );
    }

    // Under a one-minute interval a new value waits ...
    paced.publish_interval_ms = 60_000;
    paced.subscribe(west(), vec![]).await;
    paced.barrier(WAIT).await;
    gateway
        .push(vec![reading("meter-b-west-2", start_ms + 9_000, 9.0)])
        .await;
    let frames_before = paced.value_frames.len();
    let held = tokio::time::timeout(Duration::from_millis(1_500), async {
        while paced.value_frames.len() == frames_before {
            paced.step().await.expect("viewer frame");
        }
    })
    .await;
    assert!(
        held.is_err(),
        "a value arrived within 1.5 s of a one-minute interval"
    );
    // A reply is not held back with the values, nor does it release them.
    paced.barrier(Duration::from_secs(5)).await;
    assert_eq!(paced.value_frames.len(), frames_before);
    // ... but moving the area does not: what enters comes at once, and the
    // held value with it.
    let moved = tokio::time::Instant::now();
    paced
        .subscribe(area([-400.0, -35.0], [400.0, 50.0]), vec![])
        .await;
    paced
        .until(WAIT, |v| {
            v.ids.values().any(|id| id == "flow-pipe-1")
                && v.values.get("meter-b-west-2") == Some(&(start_ms + 9_000, 9.0))
        })
        .await;
    assert!(moved.elapsed() < WAIT);
}

/// A scene of `side × side` sensors on a 10 m grid, each on its own junction.
fn grid_scene(side: u32) -> Scene {
    let mut scene = tiny();
    scene.name = "grid".into();
    scene.assets.clear();
    scene.sensors.clear();
    for row in 0..side {
        for col in 0..side {
            let (east_m, north_m) = (f64::from(col) * 10.0, f64::from(row) * 10.0);
            let asset = format!("j-{row}-{col}");
            scene.assets.push(Asset {
                id: asset.clone(),
                kind: AssetKind::WaterJunction,
                geometry: Geometry::Point([east_m, north_m, 0.0]),
                height_m: None,
                attributes: Default::default(),
            });
            scene.sensors.push(Sensor {
                id: format!("p-{row}-{col}"),
                domain: Domain::Water,
                quantity: "pressure".into(),
                unit: "m".into(),
                position_enu_m: [east_m, north_m, 0.0],
                asset: Some(asset),
                personal: false,
            });
        }
    }
    scene.validate().expect("grid scene is valid");
    scene
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_viewer_does_not_delay_others_and_costs_bounded_memory() {
    const SIDE: u32 = 70; // 4,900 sensors
    let sensors = (SIDE * SIDE) as usize;
    let server = TestServer::start_with(grid_scene(SIDE));
    let whole = area(
        [-5.0, -5.0],
        [f64::from(SIDE) * 10.0, f64::from(SIDE) * 10.0],
    );
    let corner = area([-5.0, -5.0], [25.0, 25.0]); // 3 × 3 sensors

    // The stalled viewer subscribes to everything and then never reads.
    let mut stalled = Session::connect(&server.options(Role::Viewer, VIEWER_TOKEN))
        .await
        .expect("connects");
    stalled
        .send(&ClientToServer::Subscribe(live(whole)))
        .await
        .expect("sent");
    let mut watcher = server.viewer(corner, vec![]).await;
    watcher.until(WAIT, |v| v.snapshots_complete == 1).await;
    assert_eq!(watcher.ids.len(), 9);
    let mut gateway = server.gateway().await;

    let metrics = server.server.metrics();
    let mut resident_after_warmup = 0;
    let rounds = 60i64;
    // Thirds have no short decimal form, so each value takes its full 8
    // bytes on the wire and the stalled connection's flow-control window
    // fills within the rounds below.
    let value = |round: i64| round as f64 + 1.0 / 3.0;
    for round in 0..rounds {
        let time = 1_700_000_000_000 + round;
        let readings: Vec<_> = (0..SIDE)
            .flat_map(|row| (0..SIDE).map(move |col| (row, col)))
            .map(|(row, col)| reading(&format!("p-{row}-{col}"), time, value(round)))
            .collect();
        let batches: Vec<_> = readings.chunks(2_500).map(<[_]>::to_vec).collect();
        let acks = gateway.push_pipelined(batches, 4).await;
        assert_eq!(
            acks.iter().map(|a| a.accepted as usize).sum::<usize>(),
            sensors
        );
        // The watcher keeps up with every round, stall or not.
        watcher
            .until(WAIT, |v| {
                v.values.get("p-1-1") == Some(&(time, value(round)))
            })
            .await;
        if round == 10 {
            resident_after_warmup = resident_bytes();
        }
    }
    let backlog_peak = metrics
        .viewer_backlog_peak
        .load(std::sync::atomic::Ordering::Relaxed) as usize;
    let backlog_now = metrics
        .viewer_backlog_max
        .load(std::sync::atomic::Ordering::Relaxed) as usize;
    assert!(
        backlog_now > 0,
        "the stalled viewer's connection should be blocked with changes waiting"
    );
    // The grid has one junction asset per sensor.
    let items_in_area = 2 * sensors;
    assert!(
        backlog_peak <= items_in_area,
        "a mailbox holds at most one entry per asset and sensor of its area: \
         peak {backlog_peak} > {items_in_area}"
    );
    let growth = resident_bytes().saturating_sub(resident_after_warmup);
    eprintln!(
        "stalled viewer: {backlog_now} entries waiting (peak {backlog_peak}, area {items_in_area}); \
         resident growth after warm-up {} KiB",
        growth >> 10
    );
    assert!(
        growth < 64 << 20,
        "resident memory grew by {} MiB while the viewer was stalled",
        growth >> 20
    );
    drop(stalled);
}
