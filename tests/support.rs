//! Shared harness of the end-to-end tests: a real server on loopback with
//! the tiny scene, and clients that keep track of what they were told.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use polis_net::{ClientError, ClientOptions, Session};
use polis_protocol::{
    Access, BatchAck, ClientToServer, Domain, GeoBox, Georeference, Reading, ReadingBatch, Role,
    ServerToGateway, ServerToViewer, Subscribe,
};
use polis_scene::Scene;
use polis_server::{Config, RunningServer, TokenEntry};

pub mod mosquitto;

/// Token granting the gateway role in test servers.
pub const GATEWAY_TOKEN: &str = "gateway-token-for-tests";
/// Token granting the operator (raw personal data) viewer role in test servers.
pub const VIEWER_TOKEN: &str = "viewer-token-for-tests";
/// Token granting the planner viewer role in test servers.
pub const PLANNER_TOKEN: &str = "planner-token-for-tests";
/// Token granting the public viewer role in test servers.
pub const PUBLIC_TOKEN: &str = "public-token-for-tests";
/// Token of the household of `meter-b-west-1` (role resident) in test servers.
pub const RESIDENT_TOKEN: &str = "resident-token-for-tests";

/// The tiny scene's sensors in its western cluster, sorted by id.
pub const WEST: [&str; 5] = [
    "air-west",
    "count-stop-west",
    "meter-b-west-1",
    "meter-b-west-2",
    "pv-b-west-2",
];

/// The tiny test scene.
pub fn tiny() -> Scene {
    Scene::from_json_str(include_str!("../scenes/tiny.json"), "tiny.json").expect("tiny loads")
}

/// A server on an ephemeral loopback port with its own data directory.
pub struct TestServer {
    /// The running server.
    pub server: RunningServer,
    /// Its address, `127.0.0.1:PORT`.
    pub addr: String,
    /// Its certificate.
    pub cert: PathBuf,
    /// Its data directory.
    pub data_dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts a server on the tiny scene ticking at 50 Hz.
    pub fn start() -> TestServer {
        TestServer::start_with(tiny())
    }

    /// Starts a server on `scene` ticking at 50 Hz.
    pub fn start_with(scene: Scene) -> TestServer {
        TestServer::start_configured(scene, |_| {})
    }

    /// Starts a server on `scene` with the test configuration changed by `adjust`.
    pub fn start_configured(scene: Scene, adjust: impl FnOnce(&mut Config)) -> TestServer {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let config = Config {
            listen: "127.0.0.1:0".parse().expect("address"),
            data_dir: data_dir.path().to_owned(),
            tick_hz: 50.0,
            http: polis_server::Http {
                enabled: true,
                listen: "127.0.0.1:0".parse().expect("address"),
            },
            ngsi_ld: polis_server::NgsiLdConfig {
                enabled: true,
                listen: "127.0.0.1:0".parse().expect("address"),
                max_page: 100,
            },
            tokens: vec![
                TokenEntry::with_secret(Access::Gateway, None, GATEWAY_TOKEN),
                TokenEntry::with_secret(Access::Planner, Some("planning-office"), PLANNER_TOKEN),
                TokenEntry::with_secret(Access::Public, Some("open-data-portal"), PUBLIC_TOKEN),
                TokenEntry::with_secret(Access::Operator, Some("control-room"), VIEWER_TOKEN),
                TokenEntry {
                    sensors: vec!["meter-b-west-1".into()],
                    ..TokenEntry::with_secret(Access::Resident, Some("west-house"), RESIDENT_TOKEN)
                },
            ],
            ..Config::default()
        };
        let mut config = config;
        adjust(&mut config);
        let server = polis_server::start(&config, scene).expect("server starts");
        let started = server.started().clone();
        TestServer {
            server,
            addr: started.local_addr.to_string(),
            cert: started.cert_path,
            data_dir,
        }
    }

    /// Client options for `role` with `token`.
    pub fn options(&self, role: Role, token: &str) -> ClientOptions {
        ClientOptions::new(self.addr.clone(), self.cert.clone(), token, role)
    }

    /// A connected gateway.
    pub async fn gateway(&self) -> Gateway {
        let session = Session::connect(&self.options(Role::Gateway, GATEWAY_TOKEN))
            .await
            .expect("gateway connects");
        Gateway { session, seq: 0 }
    }

    /// A connected operator viewer subscribed to `area`.
    pub async fn viewer(&self, area: GeoBox, layers: Vec<Domain>) -> Viewer {
        self.viewer_with(VIEWER_TOKEN, area, layers).await
    }

    /// A connected viewer with `token` subscribed to `area`.
    pub async fn viewer_with(&self, token: &str, area: GeoBox, layers: Vec<Domain>) -> Viewer {
        let session = Session::connect(&self.options(Role::Viewer, token))
            .await
            .expect("viewer connects");
        let georeference = session.welcome().georeference;
        let mut viewer = Viewer {
            session,
            georeference,
            ids: HashMap::new(),
            values: BTreeMap::new(),
            ever_seen: Vec::new(),
            snapshots_complete: 0,
            history: Vec::new(),
            picks: Vec::new(),
            resident: Vec::new(),
            value_frames: Vec::new(),
            publish_interval_ms: 0,
            subscription: 0,
        };
        viewer.subscribe(area, layers).await;
        viewer
    }
}

/// A gateway session.
pub struct Gateway {
    /// The session.
    pub session: Session,
    seq: u64,
}

/// A reading at `device_time_ms` with `value`.
pub fn reading(sensor: &str, device_time_ms: i64, value: f64) -> Reading {
    Reading {
        sensor: sensor.into(),
        device_time_ms,
        value,
        quality: None,
    }
}

impl Gateway {
    /// Pushes batches with up to `window` in flight; returns their acks in order.
    pub async fn push_pipelined(
        &mut self,
        batches: Vec<Vec<Reading>>,
        window: usize,
    ) -> Vec<BatchAck> {
        let mut acks = Vec::with_capacity(batches.len());
        let mut in_flight = std::collections::VecDeque::new();
        let mut batches = batches.into_iter();
        loop {
            if in_flight.len() < window
                && let Some(readings) = batches.next()
            {
                self.seq += 1;
                self.session
                    .send(&ClientToServer::Batch(ReadingBatch {
                        seq: self.seq,
                        readings,
                    }))
                    .await
                    .expect("batch sent");
                in_flight.push_back(self.seq);
                continue;
            }
            let Some(expected) = in_flight.pop_front() else {
                break;
            };
            acks.push(self.next_ack(expected).await);
        }
        acks
    }

    /// The next acknowledgement, which must be batch `seq`'s.
    async fn next_ack(&mut self, seq: u64) -> BatchAck {
        let reply = tokio::time::timeout(
            Duration::from_secs(10),
            self.session.recv::<ServerToGateway>(),
        )
        .await
        .expect("ack within 10 s")
        .expect("ack received");
        match reply {
            ServerToGateway::Ack(ack) => {
                assert_eq!(ack.seq, seq, "acks come in order");
                ack
            }
            ServerToGateway::Error(error) => panic!("server error: {error}"),
        }
    }

    /// Pushes one batch and waits for its acknowledgement.
    pub async fn push(&mut self, readings: Vec<Reading>) -> BatchAck {
        self.seq += 1;
        let seq = self.seq;
        self.session
            .send(&ClientToServer::Batch(ReadingBatch { seq, readings }))
            .await
            .expect("batch sent");
        self.next_ack(seq).await
    }
}

/// A viewer that applies what it receives to its own copy of its area.
pub struct Viewer {
    /// The session.
    pub session: Session,
    /// The scene's georeference.
    pub georeference: Georeference,
    /// Sensor ids by handle, for the sensors in the area.
    pub ids: HashMap<u32, String>,
    /// Latest (device time, value) by sensor id, for the sensors in the area.
    pub values: BTreeMap<String, (i64, f64)>,
    /// Every sensor id ever received, in or out of the area.
    pub ever_seen: Vec<String>,
    /// Complete snapshots received.
    pub snapshots_complete: u32,
    /// History replies received.
    pub history: Vec<polis_protocol::HistoryReply>,
    /// Pick replies received.
    pub picks: Vec<polis_protocol::PickReply>,
    /// Every answer to a resident's request, in order.
    pub resident: Vec<polis_protocol::ResidentReply>,
    /// When each update frame carrying values arrived.
    pub value_frames: Vec<tokio::time::Instant>,
    /// The publishing interval the next [`Viewer::subscribe`] asks for, ms.
    pub publish_interval_ms: u32,
    subscription: u32,
}

impl Viewer {
    /// Travels to device time `at_ms` (or back to live with `None`).
    pub async fn travel(&mut self, area: GeoBox, at_ms: Option<i64>, speed: f32) {
        self.subscription += 1;
        self.session
            .send(&ClientToServer::Subscribe(Subscribe {
                subscription: self.subscription,
                at_ms,
                speed,
                publish_interval_ms: self.publish_interval_ms,
                ..live(area)
            }))
            .await
            .expect("subscribe sent");
    }

    /// Sets a new area.
    pub async fn subscribe(&mut self, area: GeoBox, layers: Vec<Domain>) {
        self.subscription += 1;
        self.session
            .send(&ClientToServer::Subscribe(Subscribe {
                subscription: self.subscription,
                layers,
                publish_interval_ms: self.publish_interval_ms,
                ..live(area)
            }))
            .await
            .expect("subscribe sent");
    }

    /// Waits until the server has read everything sent on this session so
    /// far (a pick is answered only after the frames before it were
    /// handled), applying frames meanwhile.
    pub async fn barrier(&mut self, timeout: Duration) {
        let answered = self.picks.len();
        self.session
            .send(&ClientToServer::Pick(polis_protocol::PickRequest {
                request: u32::MAX,
                origin_enu_m: [0.0, 0.0, 1_000.0],
                direction_enu: [0.0, 0.0, 1.0],
                max_distance_m: 1.0,
            }))
            .await
            .expect("pick sent");
        self.until(timeout, |v| v.picks.len() > answered).await;
    }

    fn learn(&mut self, sensor: &polis_protocol::SensorInfo) {
        self.ids.insert(sensor.handle, sensor.id.clone());
        self.ever_seen.push(sensor.id.clone());
        if let Some(latest) = sensor.latest {
            self.values
                .insert(sensor.id.clone(), (latest.device_time_ms, latest.value));
        }
    }

    /// Receives and applies one frame.
    pub async fn step(&mut self) -> Result<(), ClientError> {
        match self.session.recv::<ServerToViewer>().await? {
            ServerToViewer::Snapshot(snapshot) => {
                if snapshot.part == 0 {
                    self.ids.clear();
                    self.values.clear();
                }
                for sensor in &snapshot.sensors {
                    self.learn(sensor);
                }
                if snapshot.complete {
                    self.snapshots_complete += 1;
                }
            }
            ServerToViewer::Update(update) => {
                for handle in &update.left_sensors {
                    if let Some(id) = self.ids.remove(handle) {
                        self.values.remove(&id);
                    }
                }
                for sensor in &update.entered_sensors {
                    self.learn(sensor);
                }
                if !update.values.is_empty() {
                    self.value_frames.push(tokio::time::Instant::now());
                }
                for value in &update.values {
                    let id = self
                        .ids
                        .get(&value.sensor)
                        .unwrap_or_else(|| panic!("value for unknown handle {}", value.sensor))
                        .clone();
                    self.values.insert(id, (value.device_time_ms, value.value));
                }
            }
            ServerToViewer::History(reply) => self.history.push(reply),
            ServerToViewer::Pick(reply) => self.picks.push(reply),
            ServerToViewer::Resident(reply) => self.resident.push(reply),
            ServerToViewer::Error(error) => return Err(ClientError::Server(error)),
        }
        Ok(())
    }

    /// Applies frames until `done` holds; panics after `timeout`.
    pub async fn until(&mut self, timeout: Duration, mut done: impl FnMut(&Viewer) -> bool) {
        let deadline = tokio::time::Instant::now() + timeout;
        while !done(self) {
            match tokio::time::timeout_at(deadline, self.step()).await {
                Ok(result) => result.expect("viewer frame"),
                Err(_) => panic!(
                    "condition not reached within {timeout:?}; viewer holds {:?}",
                    self.values
                ),
            }
        }
    }

    /// The ids of the sensors currently in the area, sorted.
    pub fn sensor_ids(&self) -> Vec<String> {
        let mut ids: Vec<_> = self.ids.values().cloned().collect();
        ids.sort();
        ids
    }
}

/// Subscription 1: live, to `area`, all layers, every change at once.
pub fn live(area: GeoBox) -> Subscribe {
    Subscribe {
        subscription: 1,
        area,
        layers: vec![],
        at_ms: None,
        speed: 1.0,
        publish_interval_ms: 0,
    }
}

/// A lon/lat box covering local east/north metres `min`..`max` of the tiny scene.
pub fn area(min: [f64; 2], max: [f64; 2]) -> GeoBox {
    GeoBox::from_enu(&tiny().georeference, min, max)
}

/// The tiny scene's west cluster.
pub fn west() -> GeoBox {
    area([-400.0, -35.0], [-200.0, 50.0])
}

/// The tiny scene's east cluster.
pub fn east() -> GeoBox {
    area([200.0, -35.0], [400.0, 50.0])
}

/// Resident memory of this process, bytes (Linux).
pub fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm
        .split_whitespace()
        .nth(1)
        .and_then(|pages| pages.parse::<u64>().ok())
        .unwrap_or(0)
        * 4096
}
