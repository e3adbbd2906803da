//! Hostile input: floods of random datagrams, garbage on QUIC streams and
//! oversized frames do not stop a well-behaved viewer's updates or grow the
//! server's memory; limits answer with explicit errors.

use std::time::Duration;

use polis_e2e::*;
use polis_net::{ClientError, Session};
use polis_protocol::{
    ClientToServer, ErrorCode, GeoBox, MAX_FRAME_BYTES, ReadingBatch, ReadingOutcome, Rejection,
    Role,
};

const WAIT: Duration = Duration::from_secs(10);

/// A cheap deterministic byte stream (xorshift).
fn noise(seed: &mut u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            (*seed & 0xff) as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_do_not_stop_a_well_behaved_viewer() {
    let server = TestServer::start();
    let mut viewer = server.viewer(west(), vec![]).await;
    let mut gateway = server.gateway().await;
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("socket");
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut resident_after_first = 0;
    for round in 0..6i64 {
        // Random datagrams at the QUIC port.
        for _ in 0..3_000 {
            let len = 1 + (noise(&mut seed, 1)[0] as usize * 5);
            let _ = socket.send_to(&noise(&mut seed, len), &server.addr);
        }
        // Authenticated clients sending garbage and oversized frames.
        for attempt in 0..4 {
            let role = if attempt % 2 == 0 {
                Role::Viewer
            } else {
                Role::Gateway
            };
            let token = if role == Role::Viewer {
                VIEWER_TOKEN
            } else {
                GATEWAY_TOKEN
            };
            let Ok(mut bad) = Session::connect(&server.options(role, token)).await else {
                continue;
            };
            let bytes = if attempt < 2 {
                let mut frame = vec![200, 0, 0, 0];
                frame.extend(noise(&mut seed, 200));
                frame
            } else {
                u32::try_from(MAX_FRAME_BYTES * 4)
                    .expect("fits")
                    .to_le_bytes()
                    .to_vec()
            };
            let _ = bad.send_raw(&bytes).await;
            drop(bad);
        }
        // Unknown tokens.
        let _ = Session::connect(&server.options(Role::Viewer, "no-such-token-at-all")).await;

        // The viewer still gets each new value promptly.
        let time = 5_000 + round;
        gateway
            .push(vec![reading("air-west", time, round as f64)])
            .await;
        tokio::time::timeout(
            Duration::from_secs(3),
            viewer.until(WAIT, |v| {
                v.values.get("air-west") == Some(&(time, round as f64))
            }),
        )
        .await
        .expect("update within 3 s despite the flood");
        if round == 0 {
            resident_after_first = resident_bytes();
        }
    }
    let growth = resident_bytes().saturating_sub(resident_after_first);
    assert!(
        growth < 64 << 20,
        "memory grew by {} MiB under the flood",
        growth >> 20
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_answer_with_explicit_errors() {
    let server = TestServer::start_configured(tiny(), |config| {
        config.limits.max_connections_per_token = 2;
        config.limits.max_readings_per_second = 100.0;
        config.limits.max_area_km2 = 1.0;
    });
    // Connections per token.
    let first = server.viewer(west(), vec![]).await;
    let second = server.viewer(west(), vec![]).await;
    let err = Session::connect(&server.options(Role::Viewer, VIEWER_TOKEN))
        .await
        .expect_err("third connection refused");
    assert!(
        matches!(
            err,
            ClientError::Rejected(Rejection::TooManyConnections { limit: 2 })
        ),
        "{err}"
    );
    drop((first, second));

    // Area size.
    let mut session = Session::connect(&server.options(Role::Viewer, PUBLIC_TOKEN))
        .await
        .expect("connects");
    let huge = GeoBox {
        lon_min_deg: 24.0,
        lat_min_deg: 60.0,
        lon_max_deg: 25.0,
        lat_max_deg: 60.5,
    };
    session
        .send(&ClientToServer::Subscribe(live(huge)))
        .await
        .expect("sent");
    match tokio::time::timeout(WAIT, session.recv::<polis_protocol::ServerToViewer>()).await {
        Ok(Ok(polis_protocol::ServerToViewer::Error(e))) => {
            assert_eq!(e.code, ErrorCode::InvalidArea, "{e}");
            assert!(e.detail.contains("km²"), "{e}");
        }
        other => panic!("expected InvalidArea, got {other:?}"),
    }

    // Readings per second.
    let mut gateway = Session::connect(&server.options(Role::Gateway, GATEWAY_TOKEN))
        .await
        .expect("connects");
    let readings = (0..500).map(|i| reading("air-west", i, 1.0)).collect();
    gateway
        .send(&ClientToServer::Batch(ReadingBatch { seq: 1, readings }))
        .await
        .expect("sent");
    match tokio::time::timeout(WAIT, gateway.recv::<polis_protocol::ServerToGateway>()).await {
        Ok(Ok(polis_protocol::ServerToGateway::Error(e))) => {
            assert_eq!(e.code, ErrorCode::RateLimited, "{e}");
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
}

/// A reading from far in the future (9999-12-31, or i64::MAX ms) is refused
/// over the protocol with its own outcome; the sensor keeps taking real
/// readings; and a future reading already in history is forgotten when the
/// server starts, so it cannot freeze the sensor across a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_from_the_future_neither_freeze_a_sensor_nor_survive_a_restart() {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .expect("clock after 1970");
    let server = TestServer::start();
    let mut gateway = server.gateway().await;
    let ack = gateway
        .push(vec![
            reading("meter-b-west-1", 253_402_300_799_000, 1.0),
            reading("meter-b-west-1", i64::MAX, 1.0),
            reading("meter-b-west-1", now_ms, 2.0),
        ])
        .await;
    assert_eq!(
        ack.outcomes(),
        [
            (0, ReadingOutcome::FutureTime),
            (1, ReadingOutcome::TimeOutOfRange)
        ]
    );
    assert_eq!(ack.accepted, 1);
    let ack = gateway
        .push(vec![reading("meter-b-west-1", now_ms + 1, 3.0)])
        .await;
    assert_eq!(
        ack.accepted, 1,
        "a real reading after the refused ones is taken"
    );
    drop(gateway);
    drop(server);

    // History written by an older server that took a reading from the future.
    let data_dir = tempfile::tempdir().expect("temp dir");
    let scene = tiny();
    let sensors: Vec<(&str, bool)> = scene
        .sensors
        .iter()
        .map(|s| (s.id.as_str(), s.personal))
        .collect();
    let history = polis_history::History::open(
        &data_dir.path().join("history.sqlite"),
        &sensors,
        polis_history::HistoryOptions::default(),
    )
    .expect("history opens");
    let key = history.key("meter-b-west-1").expect("registered");
    let (tx, rx) = std::sync::mpsc::channel();
    history
        .writer()
        .try_append(
            vec![
                polis_history::Row {
                    sensor: key,
                    device_time_ms: now_ms - 1_000,
                    value: 7.0,
                    quality: None,
                },
                polis_history::Row {
                    sensor: key,
                    device_time_ms: 253_402_300_799_000,
                    value: 9.0,
                    quality: None,
                },
            ],
            move |committed| {
                let _ = tx.send(committed);
            },
        )
        .map_err(|_| "queue full")
        .expect("queued");
    assert_eq!(rx.recv_timeout(WAIT), Ok(true), "committed");
    history.close().expect("closed");

    let path = data_dir.path().to_owned();
    let server = TestServer::start_configured(tiny(), |config| config.data_dir = path);
    let mut viewer = server.viewer(west(), vec![]).await;
    viewer
        .until(WAIT, |v| {
            v.values
                .get("meter-b-west-1")
                .is_some_and(|(t, _)| *t == now_ms - 1_000)
        })
        .await;
    let mut gateway = server.gateway().await;
    let ack = gateway
        .push(vec![reading("meter-b-west-1", now_ms, 4.0)])
        .await;
    assert_eq!(ack.accepted, 1, "the restarted sensor is not frozen");
    let reader = polis_history::HistoryReader::open(&data_dir.path().join("history.sqlite"))
        .expect("reader");
    let stored = reader
        .readings("meter-b-west-1", i64::MIN, i64::MAX)
        .expect("readings");
    assert!(
        stored.iter().all(|r| r.device_time_ms <= now_ms),
        "history keeps no reading from the future: {stored:?}"
    );
}
