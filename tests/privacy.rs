//! Privacy over real QUIC: a public viewer whose area holds one house never
//! receives that house's raw value or anything it can be recovered from;
//! planners and operators get what their roles allow; the same for history
//! and time travel; operators' access is audited.

use std::time::Duration;

use polis_e2e::*;
use polis_net::ClientError;
use polis_protocol::{Aggregation, ClientToServer, ErrorCode, HistoryRequest};

const WAIT: Duration = Duration::from_secs(10);
const HOUSE: &str = "meter-b-west-1"; // the only personal sensor in the west

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_sees_personal_data_only_as_allowed() {
    let server = TestServer::start();
    let mut public = server.viewer_with(PUBLIC_TOKEN, west(), vec![]).await;
    let mut planner = server.viewer_with(PLANNER_TOKEN, west(), vec![]).await;
    let mut operator = server.viewer_with(VIEWER_TOKEN, west(), vec![]).await;
    let mut gateway = server.gateway().await;
    let raw = [3.25, 4.5, 5.75];
    for (i, value) in raw.iter().enumerate() {
        gateway
            .push(vec![
                reading(HOUSE, 1_000 * (i as i64 + 1), *value),
                reading("air-west", 1_000 * (i as i64 + 1), 10.0 + i as f64),
            ])
            .await;
    }
    // Everyone sees the non-personal sensor.
    for viewer in [&mut public, &mut planner, &mut operator] {
        viewer
            .until(WAIT, |v| v.values.get("air-west") == Some(&(3_000, 12.0)))
            .await;
    }
    // The operator sees the house raw.
    operator
        .until(WAIT, |v| v.values.get(HOUSE) == Some(&(3_000, 5.75)))
        .await;
    // The planner sees the building's aggregate (its one meter), not the meter.
    planner
        .until(WAIT, |v| {
            v.values
                .iter()
                .any(|(id, value)| id.starts_with("agg-building-") && *value == (3_000, 5.75))
        })
        .await;
    assert!(!planner.ever_seen.iter().any(|id| id == HOUSE));
    // The public saw neither the house nor any aggregate of fewer than k homes.
    assert!(
        public
            .ever_seen
            .iter()
            .all(|id| id != HOUSE && !id.starts_with("agg-")),
        "{:?}",
        public.ever_seen
    );
    assert!(
        public.values.values().all(|(_, v)| !raw.contains(v)),
        "{:?}",
        public.values
    );

    // History: the house's raw history is the operator's alone.
    let house = *operator
        .ids
        .iter()
        .find(|(_, id)| id.as_str() == HOUSE)
        .expect("house in view")
        .0;
    let request = HistoryRequest {
        request: 1,
        sensor: house,
        from_ms: 0,
        to_ms: 10_000,
        every_ms: 0,
        aggregation: Aggregation::Raw,
    };
    public
        .session
        .send(&ClientToServer::History(request.clone()))
        .await
        .expect("sent");
    let refused = tokio::time::timeout(WAIT, public.step())
        .await
        .expect("answer");
    assert!(
        matches!(&refused, Err(ClientError::Server(e)) if e.code == ErrorCode::InvalidRequest),
        "{refused:?}"
    );
    operator
        .session
        .send(&ClientToServer::History(request))
        .await
        .expect("sent");
    operator.until(WAIT, |v| !v.history.is_empty()).await;
    let values: Vec<f64> = operator.history[0].points.iter().map(|p| p.value).collect();
    assert_eq!(values, raw);

    // Time travel: a planner travelling back gets the public sensors, not the house.
    planner.travel(west(), Some(2_500), 0.0).await;
    planner
        .until(WAIT, |v| v.values.get("air-west") == Some(&(2_000, 11.0)))
        .await;
    assert!(!planner.ever_seen.iter().any(|id| id == HOUSE));

    // The operator's access is in the audit log, with who and what.
    let audit =
        std::fs::read_to_string(server.data_dir.path().join("audit.log")).expect("audit log");
    let entries: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert!(entries.iter().any(|e| {
        e["who"] == "control-room"
            && e["what"] == "subscribe"
            && e["sensors"]
                .as_array()
                .is_some_and(|s| s.iter().any(|id| id == HOUSE))
    }));
    assert!(
        entries
            .iter()
            .any(|e| e["who"] == "control-room" && e["what"] == "history")
    );
    assert!(
        entries.iter().all(|e| e["who"] == "control-room"),
        "only the operator touched raw personal data: {entries:?}"
    );
}
