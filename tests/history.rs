//! Time travel and history over the protocol: the state streamed for an area
//! at a past time equals the state that was live then; playback replays the
//! recorded changes; going live again returns to now.

use std::collections::BTreeMap;
use std::time::Duration;

use polis_e2e::*;
use polis_protocol::{Aggregation, ClientToServer, HistoryRequest};

const WAIT: Duration = Duration::from_secs(10);
const T0_MS: i64 = 1_780_000_000_000;
const ROUNDS: i64 = 8;

fn value_of(round: i64, sensor: usize) -> f64 {
    (round * 10 + sensor as i64) as f64 + 0.25
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_travel_streams_the_state_that_was_live_then() {
    let server = TestServer::start();
    let mut live = server.viewer(west(), vec![]).await;
    live.until(WAIT, |v| v.snapshots_complete == 1).await;
    let mut gateway = server.gateway().await;

    // Push rounds of readings and record what the live viewer saw after each.
    let mut seen_live: Vec<BTreeMap<String, (i64, f64)>> = Vec::new();
    for round in 0..ROUNDS {
        let time = T0_MS + round * 1_000;
        let readings = WEST
            .iter()
            .enumerate()
            .map(|(i, id)| reading(id, time, value_of(round, i)))
            .collect();
        gateway.push(readings).await;
        live.until(WAIT, |v| {
            WEST.iter()
                .all(|id| v.values.get(*id).is_some_and(|(t, _)| *t == time))
        })
        .await;
        seen_live.push(live.values.clone());
    }

    // Held at a past time (speed 0): exactly the state that was live then.
    let mut traveller = server.viewer(west(), vec![]).await;
    traveller.until(WAIT, |v| v.snapshots_complete == 1).await;
    let at_round = 3;
    traveller
        .travel(west(), Some(T0_MS + at_round * 1_000 + 500), 0.0)
        .await;
    let want = seen_live[at_round as usize].clone();
    traveller
        .until(WAIT, |v| v.snapshots_complete == 2 && v.values == want)
        .await;
    assert_ne!(
        want,
        seen_live[(ROUNDS - 1) as usize],
        "a past state, not the latest"
    );
    // It stays there: new live readings do not reach a traveller.
    gateway
        .push(vec![reading("air-west", T0_MS + 100_000, 99.0)])
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    while let Ok(result) = tokio::time::timeout(Duration::from_millis(100), traveller.step()).await
    {
        result.expect("frame");
    }
    assert_eq!(traveller.values, want);

    // Played forward at 20× from just after round 0, it reaches the last
    // recorded round (and only recorded values along the way).
    traveller.travel(west(), Some(T0_MS + 500), 20.0).await;
    let last = seen_live[(ROUNDS - 1) as usize].clone();
    let mut passed_through = Vec::new();
    traveller
        .until(WAIT, |v| {
            if !passed_through.contains(&v.values) {
                passed_through.push(v.values.clone());
            }
            v.values == last
        })
        .await;
    for state in &passed_through {
        for (id, (time, value)) in state {
            let round = (time - T0_MS) / 1_000;
            let sensor = WEST.iter().position(|w| w == id).expect("west sensor");
            assert_eq!(*value, value_of(round, sensor), "{id} at round {round}");
        }
    }

    // Back to live: the latest values, including the reading pushed meanwhile.
    traveller.travel(west(), None, 1.0).await;
    traveller
        .until(WAIT, |v| {
            v.values.get("air-west") == Some(&(T0_MS + 100_000, 99.0))
        })
        .await;

    // The same history over the protocol, for sparklines.
    let handle = *traveller
        .ids
        .iter()
        .find(|(_, id)| id.as_str() == "meter-b-west-1")
        .expect("meter in view")
        .0;
    ask_history(&mut traveller, 7, handle, 0, Aggregation::Raw).await;
    traveller.until(WAIT, |v| !v.history.is_empty()).await;
    let reply = &traveller.history[0];
    assert_eq!(reply.request, 7);
    let sensor = WEST
        .iter()
        .position(|w| *w == "meter-b-west-1")
        .expect("index");
    let points: Vec<(i64, f64)> = reply.points.iter().map(|p| (p.time_ms, p.value)).collect();
    let expected: Vec<(i64, f64)> = (0..ROUNDS)
        .map(|round| (T0_MS + round * 1_000, value_of(round, sensor)))
        .collect();
    assert_eq!(points, expected);
    ask_history(&mut traveller, 8, handle, 4_000, Aggregation::Max).await;
    traveller.until(WAIT, |v| v.history.len() == 2).await;
    let maxima: Vec<f64> = traveller.history[1]
        .points
        .iter()
        .map(|p| p.value)
        .collect();
    assert_eq!(maxima.len(), 2);
    assert!(maxima.contains(&value_of(ROUNDS - 1, sensor)), "{maxima:?}");
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .expect("clock after 1970")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_exactly_the_personal_raw_readings_past_their_age() {
    let server = TestServer::start_configured(tiny(), |config| {
        config.history.personal_raw_max_age_hours = 1.0;
        config.history.retention_every_secs = 1;
    });
    let mut gateway = server.gateway().await;
    let now = now_ms();
    let old = now - 2 * 3_600_000;
    let recent = now - 10 * 60_000;
    // meter-b-west-1 is personal (a home); meter-b-west-2 is not (a shop).
    gateway
        .push(vec![
            reading("meter-b-west-1", old, 1.0),
            reading("meter-b-west-1", recent, 2.0),
            reading("meter-b-west-2", old, 3.0),
            reading("meter-b-west-2", recent, 4.0),
        ])
        .await;
    let path = server.data_dir.path().join("history.sqlite");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let reader = polis_history::HistoryReader::open(&path).expect("history");
        let personal = reader
            .readings("meter-b-west-1", i64::MIN, i64::MAX)
            .expect("read");
        if personal.len() == 1 {
            assert_eq!(
                personal[0].device_time_ms, recent,
                "the recent reading stays"
            );
            let other = reader
                .readings("meter-b-west-2", i64::MIN, i64::MAX)
                .expect("read");
            assert_eq!(other.len(), 2, "readings of non-personal sensors are kept");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "retention never ran: {personal:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Asks for `sensor`'s recorded values over the rounds.
async fn ask_history(
    viewer: &mut Viewer,
    request: u32,
    sensor: u32,
    every_ms: i64,
    aggregation: Aggregation,
) {
    viewer
        .session
        .send(&ClientToServer::History(HistoryRequest {
            request,
            sensor,
            from_ms: T0_MS,
            to_ms: T0_MS + ROUNDS * 1_000,
            every_ms,
            aggregation,
        }))
        .await
        .expect("sent");
}
