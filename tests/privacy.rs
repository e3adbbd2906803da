//! Privacy over real QUIC: a public viewer or a planner whose area holds one
//! house never receives that house's raw value or anything it can be
//! recovered from; operators get it raw; the same for history
//! and time travel; operators' access is audited.

use std::time::Duration;

use polis_e2e::*;
use polis_net::ClientError;
use polis_protocol::{
    Aggregation, ClientToServer, Consent, ErrorCode, ExportFormat, HistoryRequest, ResidentAction,
    ResidentOutcome, ResidentRequest,
};

const WAIT: Duration = Duration::from_secs(10);
const HOUSE: &str = "meter-b-west-1"; // the only personal sensor in the west
/// A second home in the west house's building, in one test's scene.
const NEIGHBOUR: &str = "meter-b-west-1-flat-2";

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
    // The planner sees neither the meter nor an aggregate of it: its
    // building has one home, fewer than privacy.k_planner (3), and so has
    // its block and its district.
    assert!(
        planner.ever_seen.iter().all(|id| id != HOUSE),
        "{:?}",
        planner.ever_seen
    );
    assert!(
        planner.values.values().all(|(_, v)| !raw.contains(v)),
        "{:?}",
        planner.values
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resident_sees_its_own_home_raw_and_nobody_elses() {
    let server = TestServer::start();
    let town = area([-400.0, -35.0], [400.0, 50.0]);
    let mut resident = server.viewer_with(RESIDENT_TOKEN, town, vec![]).await;
    let mut gateway = server.gateway().await;
    gateway
        .push(vec![
            reading(HOUSE, 1_000, 3.25),
            reading("meter-b-east-1", 1_000, 7.5),
            reading("air-west", 1_000, 10.0),
        ])
        .await;
    resident
        .until(WAIT, |v| {
            v.values.get(HOUSE) == Some(&(1_000, 3.25))
                && v.values.get("air-west") == Some(&(1_000, 10.0))
        })
        .await;
    // The neighbour's household meter stays hidden, raw or otherwise.
    assert!(
        resident.ever_seen.iter().all(|id| id != "meter-b-east-1"),
        "{:?}",
        resident.ever_seen
    );
    assert!(resident.values.values().all(|(_, v)| *v != 7.5));
    // Its own history, and not the neighbour's.
    let handle_of = |viewer: &Viewer, id: &str| {
        viewer
            .ids
            .iter()
            .find(|(_, i)| i.as_str() == id)
            .map(|(h, _)| *h)
    };
    let own = handle_of(&resident, HOUSE).expect("own meter in view");
    let request = |sensor| HistoryRequest {
        request: 1,
        sensor,
        from_ms: 0,
        to_ms: 10_000,
        every_ms: 0,
        aggregation: Aggregation::Raw,
    };
    resident
        .session
        .send(&ClientToServer::History(request(own)))
        .await
        .expect("sent");
    resident.until(WAIT, |v| !v.history.is_empty()).await;
    let values: Vec<f64> = resident.history[0].points.iter().map(|p| p.value).collect();
    assert_eq!(values, [3.25]);
    // The neighbour's handle, as an operator sees it.
    let operator = server.viewer_with(VIEWER_TOKEN, town, vec![]).await;
    let mut operator = operator;
    operator
        .until(WAIT, |v| v.ids.values().any(|i| i == "meter-b-east-1"))
        .await;
    let neighbour =
        handle_of(&operator, "meter-b-east-1").expect("neighbour in the operator's view");
    resident
        .session
        .send(&ClientToServer::History(request(neighbour)))
        .await
        .expect("sent");
    // Frames may come first; the answer is an error, and the session stays.
    let refused = tokio::time::timeout(WAIT, async {
        loop {
            if let Err(error) = resident.step().await {
                break error;
            }
        }
    })
    .await
    .expect("answer");
    assert!(
        matches!(&refused, ClientError::Server(e) if e.code == ErrorCode::InvalidRequest),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_residents_export_holds_its_data_and_erasure_removes_it_from_every_history_path() {
    use polis_server::resident::{DataFiles, erase, export, home_in_scene};
    let server = TestServer::start();
    let town = area([-400.0, -35.0], [400.0, 50.0]);
    let mut gateway = server.gateway().await;
    gateway
        .push(vec![
            reading(HOUSE, 1_000, 3.25),
            reading(HOUSE, 2_000, 3.5),
            reading("meter-b-east-1", 1_000, 7.5),
        ])
        .await;
    // The operator watches the households raw: audited.
    let mut operator = server.viewer_with(VIEWER_TOKEN, town, vec![]).await;
    operator
        .until(WAIT, |v| v.values.get(HOUSE) == Some(&(2_000, 3.5)))
        .await;

    let history = server.data_dir.path().join("history.sqlite");
    let audit = server.data_dir.path().join("audit.log");
    let consent = server.data_dir.path().join("consent.json");
    let groups = server.data_dir.path().join("groups.json");
    let files = DataFiles {
        history: &history,
        audit: &audit,
        consent: &consent,
        groups: &groups,
    };
    let house = [HOUSE.to_owned()];
    let home = home_in_scene(
        &files,
        &tiny(),
        &polis_twin::PrivacyOptions::default(),
        &house,
    )
    .expect("scene builds");
    let audit_log = polis_server::AuditLog::open(&audit).expect("audit log");
    let exported = export(&files, &audit_log, &home, &house, "resident-west-1").expect("export");
    assert_eq!(exported.sensors.len(), 1);
    let readings: Vec<(i64, f64)> = exported.sensors[0]
        .readings
        .iter()
        .map(|r| (r.device_time_ms, r.value))
        .collect();
    assert_eq!(
        readings,
        [(1_000, 3.25), (2_000, 3.5)],
        "all of it, nothing else"
    );
    assert_eq!(exported.sensors[0].unit.as_deref(), Some("kW"));
    assert!(
        exported
            .derived
            .iter()
            .all(|d| d.households >= 3 && d.from == house),
        "{:?}",
        exported.derived
    );
    assert!(
        exported
            .access
            .iter()
            .any(|e| e["who"] == "control-room" && e["what"] == "subscribe"),
        "who saw it raw: {:?}",
        exported.access
    );
    let csv = exported.to_csv();
    assert!(csv.contains(&format!("reading,{HOUSE},")), "{csv}");
    assert!(csv.contains(&format!("access,{HOUSE},")), "{csv}");

    // Erasure, while the server runs.
    let deleted = erase(&files, &audit_log, &house, None, "resident-west-1").expect("erase");
    assert_eq!(deleted, 2);

    // No history path returns it any more, for any role: the operator's
    // history query and time travel, the resident's own query.
    let handle = *operator
        .ids
        .iter()
        .find(|(_, id)| id.as_str() == HOUSE)
        .map(|(h, _)| h)
        .expect("in view");
    let request = HistoryRequest {
        request: 7,
        sensor: handle,
        from_ms: 0,
        to_ms: 10_000,
        every_ms: 0,
        aggregation: Aggregation::Raw,
    };
    operator
        .session
        .send(&ClientToServer::History(request.clone()))
        .await
        .expect("sent");
    operator.until(WAIT, |v| !v.history.is_empty()).await;
    assert!(
        operator.history[0].points.is_empty(),
        "{:?}",
        operator.history
    );
    let mut resident = server.viewer_with(RESIDENT_TOKEN, town, vec![]).await;
    resident
        .until(WAIT, |v| v.ids.values().any(|id| id == HOUSE))
        .await;
    let own = *resident
        .ids
        .iter()
        .find(|(_, id)| id.as_str() == HOUSE)
        .map(|(h, _)| h)
        .expect("own meter");
    resident
        .session
        .send(&ClientToServer::History(HistoryRequest {
            sensor: own,
            ..request.clone()
        }))
        .await
        .expect("sent");
    resident.until(WAIT, |v| !v.history.is_empty()).await;
    assert!(
        resident.history[0].points.is_empty(),
        "{:?}",
        resident.history
    );
    operator.travel(town, Some(1_500), 0.0).await;
    operator
        .until(WAIT, |v| {
            v.snapshots_complete == 2 && v.values.get("meter-b-east-1") == Some(&(1_000, 7.5))
        })
        .await;
    assert_eq!(operator.values.get(HOUSE), None, "erased from time travel");

    // Both requests are in the audit log.
    let log = std::fs::read_to_string(&audit).expect("audit log");
    let entries: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert!(
        entries
            .iter()
            .any(|e| e["what"] == "export" && e["who"] == "resident-west-1")
    );
    assert!(
        entries
            .iter()
            .any(|e| e["what"] == "erase" && e["count"] == 2 && e["sensors"][0] == HOUSE),
        "{entries:?}"
    );
}

/// Sends a resident's request and waits for its whole answer (an export's
/// every part); the outcomes in order.
async fn ask(viewer: &mut Viewer, request: u32, action: ResidentAction) -> Vec<ResidentOutcome> {
    viewer
        .session
        .send(&ClientToServer::Resident(ResidentRequest {
            request,
            action,
        }))
        .await
        .expect("sent");
    viewer
        .until(WAIT, |v| {
            v.resident.iter().any(|r| {
                r.request == request
                    && !matches!(r.outcome, ResidentOutcome::ExportPart { last: false, .. })
            })
        })
        .await;
    viewer
        .resident
        .iter()
        .filter(|r| r.request == request)
        .map(|r| r.outcome.clone())
        .collect()
}

/// An export's document from its parts.
fn document(parts: Vec<ResidentOutcome>) -> Vec<u8> {
    parts
        .into_iter()
        .flat_map(|part| match part {
            ResidentOutcome::ExportPart { bytes, .. } => bytes,
            other => panic!("not an export part: {other:?}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resident_exports_sets_consent_and_erases_over_the_protocol_with_its_own_token() {
    // A second home in the west house's building: with k = 2 the two make
    // one group for each role, so the west house feeds a planners' and a
    // public aggregate.
    let mut scene: serde_json::Value =
        serde_json::from_str(include_str!("../scenes/tiny.json")).expect("tiny scene");
    let mut neighbour = scene["sensors"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["id"] == HOUSE))
        .expect("the west house's meter")
        .clone();
    neighbour["id"] = serde_json::json!(NEIGHBOUR);
    scene["sensors"]
        .as_array_mut()
        .expect("sensors")
        .push(neighbour);
    let scene = polis_scene::Scene::from_json_str(&scene.to_string(), "tiny.json").expect("scene");
    let server = TestServer::start_configured(scene, |config| {
        config.privacy.k = 2;
        config.privacy.k_planner = 2;
    });
    let town = area([-400.0, -35.0], [400.0, 50.0]);
    let mut gateway = server.gateway().await;
    gateway
        .push(vec![
            reading(HOUSE, 1_000, 3.25),
            reading(NEIGHBOUR, 1_000, 7.5),
            reading("air-west", 1_000, 10.0),
        ])
        .await;
    let aggregate_values = |v: &Viewer| -> Vec<f64> {
        v.values
            .iter()
            .filter(|(id, _)| id.starts_with("agg-"))
            .map(|(_, (_, value))| *value)
            .collect()
    };
    let mut public = server.viewer_with(PUBLIC_TOKEN, town, vec![]).await;
    public.until(WAIT, |v| aggregate_values(v) == [10.75]).await;
    let mut planner = server.viewer_with(PLANNER_TOKEN, town, vec![]).await;
    planner
        .until(WAIT, |v| aggregate_values(v) == [10.75])
        .await;

    // Only a resident's token may ask about a home.
    planner
        .session
        .send(&ClientToServer::Resident(ResidentRequest {
            request: 1,
            action: ResidentAction::GetConsent,
        }))
        .await
        .expect("sent");
    let refused = tokio::time::timeout(WAIT, async {
        loop {
            if let Err(error) = planner.step().await {
                break error;
            }
        }
    })
    .await
    .expect("answer");
    assert!(
        matches!(&refused, ClientError::Server(e) if e.code == ErrorCode::InvalidRequest),
        "{refused:?}"
    );

    // The export: the home's readings, consent and what is derived from it.
    let mut resident = server.viewer_with(RESIDENT_TOKEN, town, vec![]).await;
    let json = document(ask(&mut resident, 1, ResidentAction::Export(ExportFormat::Json)).await);
    let exported: serde_json::Value = serde_json::from_slice(&json).expect("JSON export");
    assert_eq!(exported["sensors"].as_array().map(Vec::len), Some(1));
    assert_eq!(exported["sensors"][0]["id"], HOUSE);
    assert_eq!(exported["sensors"][0]["readings"][0]["value"], 3.25);
    assert_eq!(exported["sensors"][0]["unit"], "kW");
    assert_eq!(
        exported["sensors"][0]["consent"],
        serde_json::json!({"planners": true, "public": true})
    );
    let derived = exported["derived"].as_array().expect("derived");
    assert_eq!(derived.len(), 2, "{derived:?}");
    assert!(
        derived
            .iter()
            .all(|d| d["withdrawn"] == false && d["households"] == 2)
    );
    let csv = document(ask(&mut resident, 2, ResidentAction::Export(ExportFormat::Csv)).await);
    let csv = String::from_utf8(csv).expect("UTF-8");
    assert!(
        csv.starts_with("record,sensor,time,value,quality,detail\r\n"),
        "{csv}"
    );
    assert!(csv.contains(&format!("reading,{HOUSE},")), "{csv}");

    // Consent: the home leaves the public's aggregates. It takes effect
    // before the answer: every aggregate the home feeds is withdrawn.
    let no_public = Consent {
        planners: true,
        public: false,
    };
    let answer = ask(&mut resident, 3, ResidentAction::SetConsent(no_public)).await;
    assert_eq!(answer, [ResidentOutcome::Consent(no_public)]);
    let answer = ask(&mut resident, 4, ResidentAction::GetConsent).await;
    assert_eq!(answer, [ResidentOutcome::Consent(no_public)]);
    gateway
        .push(vec![
            reading(HOUSE, 2_000, 4.0),
            reading(NEIGHBOUR, 2_000, 8.0),
            reading("air-west", 2_000, 11.0),
        ])
        .await;
    let mut newcomer = server.viewer_with(PUBLIC_TOKEN, town, vec![]).await;
    for viewer in [&mut public, &mut planner, &mut newcomer] {
        viewer
            .until(WAIT, |v| v.values.get("air-west") == Some(&(2_000, 11.0)))
            .await;
    }
    // No one was shown a value of the home's groups after the change: the
    // newcomer none, the others still only the value from before.
    assert_eq!(aggregate_values(&newcomer), Vec::<f64>::new());
    assert_eq!(aggregate_values(&public), [10.75]);
    assert_eq!(aggregate_values(&planner), [10.75]);
    // The groups this start formed are on record for the next.
    let groups =
        std::fs::read_to_string(server.data_dir.path().join("groups.json")).expect("groups record");
    let groups: serde_json::Value = serde_json::from_str(&groups).expect("JSON");
    assert_eq!(
        groups["groups"],
        serde_json::json!([
            {"shown_to": "planners", "members": [HOUSE, NEIGHBOUR]},
            {"shown_to": "public", "members": [HOUSE, NEIGHBOUR]},
        ])
    );
    // The consent is on disk, and the export says what changed.
    let recorded =
        std::fs::read_to_string(server.data_dir.path().join("consent.json")).expect("consent file");
    let recorded: serde_json::Value = serde_json::from_str(&recorded).expect("JSON");
    assert_eq!(recorded["sensors"][HOUSE]["public"], false);
    let json = document(ask(&mut resident, 5, ResidentAction::Export(ExportFormat::Json)).await);
    let exported: serde_json::Value = serde_json::from_slice(&json).expect("JSON export");
    assert_eq!(exported["sensors"][0]["consent"]["public"], false);
    assert!(
        exported["derived"]
            .as_array()
            .expect("derived")
            .iter()
            .all(|d| d["withdrawn"] == true)
    );

    // Erasure of the home's recorded readings, with its own token.
    let answer = ask(&mut resident, 6, ResidentAction::Erase { before_ms: None }).await;
    assert_eq!(answer, [ResidentOutcome::Erased { readings: 2 }]);
    let json = document(ask(&mut resident, 7, ResidentAction::Export(ExportFormat::Json)).await);
    let exported: serde_json::Value = serde_json::from_slice(&json).expect("JSON export");
    assert_eq!(exported["sensors"][0]["readings"], serde_json::json!([]));

    // Every request is audited under the resident's name.
    let log = std::fs::read_to_string(server.data_dir.path().join("audit.log")).expect("audit");
    let entries: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    for what in ["export", "consent", "erase"] {
        assert!(
            entries
                .iter()
                .any(|e| e["what"] == what && e["who"] == "west-house" && e["sensors"][0] == HOUSE),
            "{what} not audited: {entries:?}"
        );
    }
    assert!(
        entries
            .iter()
            .any(|e| e["what"] == "consent" && e["consent"]["public"] == false)
    );

    // Requests beyond the burst are refused for a while; the session stays.
    for request in 100..110 {
        resident
            .session
            .send(&ClientToServer::Resident(ResidentRequest {
                request,
                action: ResidentAction::GetConsent,
            }))
            .await
            .expect("sent");
    }
    let limited = tokio::time::timeout(WAIT, async {
        loop {
            if let Err(error) = resident.step().await {
                break error;
            }
        }
    })
    .await
    .expect("answer");
    assert!(
        matches!(&limited, ClientError::Server(e) if e.code == ErrorCode::RateLimited),
        "{limited:?}"
    );
}
