//! Tests across modules: planning real scenes, and replaying against a real
//! network edge with a stand-in twin.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use polis_net::{
    ClientOptions, NetEvent, NetServer, NetServerConfig, ServerInfo, load_or_create_identity,
};
use polis_protocol::{
    BatchAck, ErrorCode, Georeference, NotAccepted, ProtocolError, ReadingOutcome, Role,
};
use polis_scene::Scene;

use crate::*;

fn tiny() -> Scene {
    Scene::from_json_str(
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../scenes/tiny.json"
        )),
        "tiny.json",
    )
    .expect("tiny loads")
}

fn data() -> FeedData {
    FeedData::bundled().expect("bundled data parses")
}

/// 2025-01-15T00:00Z.
const JAN_15_2025_MS: i64 = 1_736_899_200_000;

#[test]
fn plan_of_the_tiny_scene() {
    let scene = tiny();
    let plan = plan_feeds(&scene);
    let fed: BTreeMap<&str, &Feed> = plan.feeds.iter().map(|(id, f)| (id.as_str(), f)).collect();
    let ids: Vec<&str> = fed.keys().copied().collect();
    assert_eq!(
        ids,
        [
            "flow-pipe-1",
            "meter-b-east-1",
            "meter-b-east-2",
            "meter-b-west-1",
            "meter-b-west-2",
            "pressure-junction-1",
            "pv-b-east-2",
            "pv-b-west-2",
        ]
    );
    let skipped: Vec<(&str, u64)> = plan
        .skipped
        .iter()
        .map(|(reason, n)| (reason.as_str(), *n))
        .collect();
    assert_eq!(
        skipped,
        [
            ("no feed for quantity noise_level", 1),
            ("no feed for quantity passengers_waiting", 1),
            ("no feed for quantity pm2_5", 2),
        ]
    );
    assert_eq!(plan.skipped_total() + plan.feeds.len() as u64, 12);

    // West House: 20 × 15 m × 6 levels, residential.
    match fed.get("meter-b-west-1") {
        Some(Feed::Load { profile, rated_kw }) => {
            assert!(matches!(
                profile,
                ProfileColumn::H0a | ProfileColumn::H0b | ProfileColumn::H0c
            ));
            assert!((rated_kw - 1800.0 * 0.025).abs() < 1e-9, "{rated_kw}");
        }
        other => panic!("unexpected feed {other:?}"),
    }
    // East Office: 20 × 15 m × 8 levels, office.
    assert_eq!(
        fed.get("meter-b-east-2"),
        Some(&&Feed::Load {
            profile: ProfileColumn::G1a,
            rated_kw: 2400.0 * 0.04
        })
    );
    // West Market: commercial.
    assert!(matches!(
        fed.get("meter-b-west-2"),
        Some(Feed::Load {
            profile: ProfileColumn::G0a,
            ..
        })
    ));
    match fed.get("pv-b-west-2") {
        Some(Feed::Pv { peak_kw, .. }) => assert!((peak_kw - 22.5).abs() < 1e-9),
        other => panic!("unexpected feed {other:?}"),
    }
    match fed.get("flow-pipe-1") {
        Some(Feed::Flow { nominal_l_s }) => {
            assert!((nominal_l_s - nominal_flow_l_s(150.0)).abs() < 1e-12);
        }
        other => panic!("unexpected feed {other:?}"),
    }
    match fed.get("pressure-junction-1") {
        Some(Feed::Pressure { pattern }) => assert_eq!(pattern, &DemandPattern::constant()),
        other => panic!("unexpected feed {other:?}"),
    }

    // Every reading of a day is finite and in a plausible range.
    let data = data();
    for q in 0..96 {
        let t = JAN_15_2025_MS + q * 900_000;
        let readings = plan.readings_at(&data, t);
        assert_eq!(readings.len(), 8);
        for reading in readings {
            assert_eq!(reading.device_time_ms, t);
            assert!(
                reading.value.is_finite() && (0.0..=100.0).contains(&reading.value),
                "{reading:?}"
            );
        }
    }
}

/// A scene with the generated conventions: a tank, a patterned junction, a
/// route with stops and vehicles, and sensors on the wrong assets.
const NETWORK_SCENE: &str = r#"{
  "format": "polis-scene",
  "version": 1,
  "name": "network",
  "attribution": [],
  "georeference": { "origin_lon_deg": 24.93, "origin_lat_deg": 60.17 },
  "assets": [
    { "id": "tank-1", "kind": "water_tank", "position_enu_m": [0, 0, 30],
      "attributes": { "init_level_m": "3", "min_level_m": "1", "max_level_m": "7" } },
    { "id": "tank-2", "kind": "water_tank", "position_enu_m": [5, 0, 30],
      "attributes": { "init_level_m": "3" } },
    { "id": "junction-2", "kind": "water_junction", "position_enu_m": [10, 0, 0],
      "attributes": { "demand_pattern": "0.5,1,1.5", "pattern_step_s": "3600" } },
    { "id": "junction-3", "kind": "water_junction", "position_enu_m": [12, 0, 0],
      "attributes": { "demand_pattern": "1,lots" } },
    { "id": "pump-1", "kind": "water_pump", "line_enu_m": [[0, 0], [10, 0]],
      "attributes": { "diameter_mm": "300" } },
    { "id": "stop-a", "kind": "transit_stop", "position_enu_m": [100, 3, 0], "attributes": {} },
    { "id": "stop-b", "kind": "transit_stop", "position_enu_m": [400, 150, 0], "attributes": {} },
    { "id": "route-1", "kind": "transit_route",
      "line_enu_m": [[0, 0], [400, 0], [400, 200]],
      "attributes": { "stops": "stop-b, stop-a, nowhere" } },
    { "id": "office", "kind": "building",
      "footprint_enu_m": [[0, 0], [10, 0], [10, 10], [0, 10]], "height_m": 10,
      "attributes": { "usage": "office", "floor_area_m2": "1234" } }
  ],
  "sensors": [
    { "id": "level-tank-1", "domain": "water", "quantity": "level", "unit": "m",
      "position_enu_m": [0, 0, 30], "asset": "tank-1" },
    { "id": "level-tank-2", "domain": "water", "quantity": "level", "unit": "m",
      "position_enu_m": [5, 0, 30], "asset": "tank-2" },
    { "id": "pressure-junction-2", "domain": "water", "quantity": "pressure", "unit": "m",
      "position_enu_m": [10, 0, 0], "asset": "junction-2" },
    { "id": "pressure-junction-3", "domain": "water", "quantity": "pressure", "unit": "m",
      "position_enu_m": [12, 0, 0], "asset": "junction-3" },
    { "id": "flow-pump-1", "domain": "water", "quantity": "flow", "unit": "l/s",
      "position_enu_m": [5, 0, 0], "asset": "pump-1" },
    { "id": "flow-nowhere", "domain": "water", "quantity": "flow", "unit": "l/s",
      "position_enu_m": [5, 0, 0] },
    { "id": "flow-tank", "domain": "water", "quantity": "flow", "unit": "l/s",
      "position_enu_m": [5, 0, 0], "asset": "tank-1" },
    { "id": "bus-route-1-0", "domain": "transport", "quantity": "distance_along_route",
      "unit": "m", "position_enu_m": [0, 0, 0], "asset": "route-1" },
    { "id": "bus-route-1-1", "domain": "transport", "quantity": "distance_along_route",
      "unit": "m", "position_enu_m": [0, 0, 0], "asset": "route-1" },
    { "id": "meter-office", "domain": "energy", "quantity": "active_power", "unit": "kW",
      "position_enu_m": [5, 5, 1], "asset": "office", "personal": true }
  ]
}"#;

#[test]
fn plan_of_a_network_scene() {
    let scene = Scene::from_json_str(NETWORK_SCENE, "network.json").expect("scene loads");
    let plan = plan_feeds(&scene);
    let fed: HashMap<&str, &Feed> = plan.feeds.iter().map(|(id, f)| (id.as_str(), f)).collect();
    let skipped: Vec<&str> = plan.skipped.keys().map(String::as_str).collect();
    assert_eq!(
        skipped,
        [
            "flow sensor on a water_tank (needs water_pipe or water_pump or water_valve)",
            "flow sensor without an asset (needs water_pipe or water_pump or water_valve)",
            "level sensor on a water_tank without min_level_m and max_level_m",
            "pressure sensor on a water_junction with an invalid demand_pattern or pattern_step_s",
        ]
    );
    assert_eq!(plan.feeds.len(), 6);
    assert_eq!(
        fed.get("level-tank-1"),
        Some(&&Feed::TankLevel {
            init_m: 3.0,
            min_m: 1.0,
            max_m: 7.0
        })
    );
    assert_eq!(
        fed.get("meter-office"),
        Some(&&Feed::Load {
            profile: ProfileColumn::G1a,
            rated_kw: 1234.0 * 0.04
        })
    );
    let Some(Feed::Flow { nominal_l_s }) = fed.get("flow-pump-1") else {
        panic!("pump flow not fed");
    };
    assert!((nominal_l_s - 56.549).abs() < 0.001, "{nominal_l_s}");

    // Pressure follows the 3-step hourly pattern from midnight UTC.
    let data = data();
    let Some(pressure) = fed.get("pressure-junction-2") else {
        panic!("pressure not fed");
    };
    let hourly: Vec<f64> = (0..6)
        .map(|h| pressure.sample(&data, JAN_15_2025_MS + h * 3_600_000 + 1_800_000))
        .collect();
    assert_eq!(hourly, [48.0, 45.0, 42.0, 48.0, 45.0, 42.0]);

    // Two buses on the route, half a cycle apart, both serving both stops.
    let (Some(Feed::Vehicle { route: a }), Some(Feed::Vehicle { route: b })) =
        (fed.get("bus-route-1-0"), fed.get("bus-route-1-1"))
    else {
        panic!("buses not fed");
    };
    assert_eq!(a.stops_m(), &[100.0, 550.0]);
    assert_eq!(a.length_m(), 600.0);
    assert_eq!(a.offset_s(), 0.0);
    assert!((b.offset_s() - a.cycle_s() / 2.0).abs() < 1e-9);
}

#[test]
fn vehicle_numbers_come_from_the_id_suffix() {
    assert_eq!(crate::plan::vehicle_number("bus-12-3"), 3);
    assert_eq!(crate::plan::vehicle_number("tram-7"), 7);
    assert_eq!(crate::plan::vehicle_number("tram"), 0);
    assert_eq!(crate::plan::vehicle_number("tram-x"), 0);
}

/// A network edge on loopback answered by a stand-in twin that keeps the
/// latest reading per known sensor, as the real twin does; see [`Mode`] for
/// how it misbehaves on demand.
struct FakeTwin {
    options: ClientOptions,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

const TOKEN: &str = "replay-test-token";

/// How the stand-in twin answers batches.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Acknowledge every batch.
    Answer,
    /// Answer batches from this sequence number on with an error.
    FailFrom(u64),
    /// Never answer.
    Silent,
}

impl FakeTwin {
    fn start(known: Vec<String>, mode: Mode) -> FakeTwin {
        let dir = tempfile::tempdir().expect("temp dir");
        let identity =
            load_or_create_identity(dir.path(), &["127.0.0.1".to_owned()]).expect("identity");
        let cert = identity.cert_path.clone();
        let tokens = |token: &str| {
            let access = match token {
                TOKEN => polis_protocol::Access::Gateway,
                "viewer" => polis_protocol::Access::Public,
                _ => return None,
            };
            Some(polis_net::Grant {
                access,
                name: token.to_owned(),
                scope: None,
                own_sensors: Arc::from(Vec::<String>::new()),
            })
        };
        let mut net = NetServer::start(NetServerConfig {
            listen: "127.0.0.1:0".parse().expect("address"),
            identity,
            tokens: Arc::new(tokens),
            info: ServerInfo {
                server: "fake".into(),
                scene_name: "tiny".into(),
                georeference: Georeference {
                    origin_lon_deg: 24.931,
                    origin_lat_deg: 60.169,
                },
            },
            event_capacity: 64,
            max_connections: 4,
            gateway_window: 16,
            viewer_frame_bytes: 64 * 1024,
            history: None,
            residents: None,
            limits: polis_net::SessionLimits::default(),
        })
        .expect("net starts");
        let addr = net.local_addr().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let stop = Arc::clone(&stop);
            move || {
                let mut unanswered = Vec::new();
                let mut latest: HashMap<String, Option<(i64, f64)>> =
                    known.into_iter().map(|id| (id, None)).collect();
                while !stop.load(Ordering::Relaxed) {
                    let Some(event) = net.try_recv() else {
                        std::thread::sleep(Duration::from_millis(1));
                        continue;
                    };
                    let NetEvent::Batch { batch, reply, .. } = event else {
                        continue;
                    };
                    match mode {
                        Mode::FailFrom(seq) if batch.seq >= seq => {
                            let _ = reply.send(Err(ProtocolError {
                                code: ErrorCode::ShuttingDown,
                                detail: "history unavailable".into(),
                            }));
                            continue;
                        }
                        Mode::Silent => {
                            unanswered.push(reply);
                            continue;
                        }
                        _ => {}
                    }
                    let mut ack = BatchAck {
                        seq: batch.seq,
                        accepted: 0,
                        not_accepted: Vec::new(),
                    };
                    for (index, reading) in batch.readings.iter().enumerate() {
                        let outcome = match latest.get_mut(&reading.sensor) {
                            None => Some(ReadingOutcome::UnknownSensor),
                            Some(held) => match *held {
                                Some((t, _)) if reading.device_time_ms < t => {
                                    Some(ReadingOutcome::Stale)
                                }
                                Some((t, v)) if reading.device_time_ms == t => {
                                    Some(if v == reading.value {
                                        ReadingOutcome::Duplicate
                                    } else {
                                        ReadingOutcome::ConflictingValue
                                    })
                                }
                                _ => {
                                    *held = Some((reading.device_time_ms, reading.value));
                                    None
                                }
                            },
                        };
                        match outcome {
                            None => ack.accepted += 1,
                            Some(outcome) => ack.not_accepted.push(NotAccepted {
                                index: index as u32,
                                outcome,
                            }),
                        }
                    }
                    let _ = reply.send(Ok(ack));
                }
                net.shutdown();
            }
        });
        FakeTwin {
            options: ClientOptions::new(addr, cert, TOKEN, Role::Gateway),
            stop,
            thread: Some(thread),
            _dir: dir,
        }
    }
}

impl Drop for FakeTwin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn tiny_plan_with_a_stranger() -> FeedPlan {
    let mut plan = plan_feeds(&tiny());
    plan.feeds.push((
        "not-in-the-scene".to_owned(),
        Feed::Flow { nominal_l_s: 1.0 },
    ));
    plan
}

fn known_ids(plan: &FeedPlan) -> Vec<String> {
    plan.feeds
        .iter()
        .map(|(id, _)| id.clone())
        .filter(|id| id != "not-in-the-scene")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_pushes_every_round_and_counts_the_acks() {
    let plan = tiny_plan_with_a_stranger();
    let twin = FakeTwin::start(known_ids(&plan), Mode::Answer);
    let data = data();
    let options = ReplayOptions {
        speed: 3600.0,
        start_ms: JAN_15_2025_MS,
        interval: Duration::from_millis(100),
        duration: Some(Duration::from_millis(650)),
        // 9 readings a round in batches of 2, at most 3 in flight.
        batch_size: 2,
        window: 3,
        ack_timeout: Duration::from_secs(10),
        reconnect_for: Duration::from_secs(5),
    };
    let mut seen = Vec::new();
    let stats = run_replay(&twin.options, &plan, &data, &options, &mut |s| {
        seen.push(*s);
    })
    .await
    .expect("replay runs");
    assert!((3..=7).contains(&stats.rounds), "{stats:?}");
    assert_eq!(seen.len() as u64, stats.rounds);
    assert_eq!(seen.last(), Some(&stats));
    assert_eq!(stats.sent, 9 * stats.rounds);
    assert_eq!(stats.accepted, 8 * stats.rounds);
    assert_eq!(stats.refused, stats.rounds);
    assert_eq!((stats.stale, stats.duplicate), (0, 0));
    // Simulated time runs at an hour per second.
    let first = seen.first().map(|s| s.sim_time_ms).unwrap_or_default();
    assert!(first - JAN_15_2025_MS < 60_000, "first round at {first}");
    // Round k runs at or after k intervals of wall time.
    for (k, round) in seen.iter().enumerate() {
        assert!(
            round.sim_time_ms - JAN_15_2025_MS >= k as i64 * 100 * 3600,
            "{seen:?}"
        );
    }
    assert!(seen.windows(2).all(|w| w[0].sim_time_ms < w[1].sim_time_ms));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_time_gives_duplicates() {
    let plan = plan_feeds(&tiny());
    let twin = FakeTwin::start(known_ids(&plan), Mode::Answer);
    let data = data();
    let options = ReplayOptions {
        speed: 1e-9,
        interval: Duration::from_millis(50),
        duration: Some(Duration::from_millis(180)),
        ..ReplayOptions::new(JAN_15_2025_MS)
    };
    let stats = run_replay(&twin.options, &plan, &data, &options, &mut |_| {})
        .await
        .expect("replay runs");
    assert!(stats.rounds >= 2, "{stats:?}");
    assert_eq!(stats.accepted, 8);
    assert_eq!(stats.duplicate, 8 * (stats.rounds - 1));
    assert_eq!(stats.sim_time_ms, JAN_15_2025_MS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_refuses_bad_roles_and_options_before_connecting() {
    let plan = plan_feeds(&tiny());
    let data = data();
    let client = ClientOptions::new("127.0.0.1:9", "/nonexistent.pem", "t", Role::Viewer);
    let options = ReplayOptions::new(0);
    let err = run_replay(&client, &plan, &data, &options, &mut |_| {})
        .await
        .expect_err("viewer role");
    assert!(
        matches!(err, ReplayError::NotGateway(Role::Viewer)),
        "{err}"
    );
    let bad = ReplayOptions {
        interval: Duration::ZERO,
        ..options
    };
    let err = run_replay(&client, &plan, &data, &bad, &mut |_| {})
        .await
        .expect_err("zero interval");
    assert!(matches!(err, ReplayError::Options(_)), "{err}");
    // A gateway with an unusable certificate fails as a client error.
    let gateway = ClientOptions {
        role: Role::Gateway,
        ..client
    };
    let err = run_replay(&gateway, &plan, &data, &ReplayOptions::new(0), &mut |_| {})
        .await
        .expect_err("no certificate");
    assert!(matches!(err, ReplayError::Client(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_a_client_error() {
    let twin = FakeTwin::start(Vec::new(), Mode::Answer);
    let client = ClientOptions {
        token: "wrong".into(),
        ..twin.options.clone()
    };
    let err = run_replay(
        &client,
        &FeedPlan::default(),
        &data(),
        &ReplayOptions::new(0),
        &mut |_| {},
    )
    .await
    .expect_err("rejected");
    assert!(
        matches!(
            err,
            ReplayError::Client(polis_net::ClientError::Rejected(_))
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_error_ends_the_replay() {
    let plan = plan_feeds(&tiny());
    // Rounds of 8 readings in batches of 4: the second round fails.
    let twin = FakeTwin::start(known_ids(&plan), Mode::FailFrom(2));
    let options = ReplayOptions {
        interval: Duration::from_millis(20),
        batch_size: 4,
        ack_timeout: Duration::from_secs(3),
        ..ReplayOptions::new(JAN_15_2025_MS)
    };
    let mut rounds = 0;
    let err = tokio::time::timeout(
        Duration::from_secs(10),
        run_replay(&twin.options, &plan, &data(), &options, &mut |s| {
            rounds = s.rounds;
        }),
    )
    .await
    .expect("ends by itself")
    .expect_err("server error");
    assert_eq!(rounds, 1);
    match err {
        ReplayError::Server(error) => assert_eq!(error.detail, "history unavailable"),
        other => panic!("unexpected error {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_times_out() {
    let plan = plan_feeds(&tiny());
    let twin = FakeTwin::start(known_ids(&plan), Mode::Silent);
    let options = ReplayOptions {
        ack_timeout: Duration::from_millis(300),
        ..ReplayOptions::new(JAN_15_2025_MS)
    };
    let err = tokio::time::timeout(
        Duration::from_secs(10),
        run_replay(&twin.options, &plan, &data(), &options, &mut |_| {}),
    )
    .await
    .expect("ends by itself")
    .expect_err("times out");
    assert!(
        matches!(err, ReplayError::AckTimeout { seq: 0, .. }),
        "{err}"
    );
}
