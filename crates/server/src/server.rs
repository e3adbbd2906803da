//! Starting the server: scene, identity, tokens, network edge and the tick loop.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bevy::app::TaskPoolPlugin;
use bevy::prelude::*;
use bevy::time::TimePlugin;
use polis_net::{NetServer, NetServerConfig, ServerInfo, load_or_create_identity};
use polis_protocol::Access;
use polis_scene::Scene;
use polis_twin::{PickPlugin, TwinPlugin};
use tracing::{info, warn};

use crate::bridge::{Durable, NetBridgePlugin, NetLink};
use crate::config::{Config, SyncMode, TokenTable, generated_token};
use crate::http::HttpEndpoint;
use crate::metrics::{Observed, ObservedHandle, SceneFacts, ServerMetrics};
use crate::playback::{HistoryQueries, Playback, SensorKeys};
use polis_history::{History, HistoryOptions, HistoryWriter, Synchronous};
use polis_protocol::Quality;
use polis_twin::{PrivacyOptions, StoredReading};

use crate::audit::AuditLog;

/// The scene served when no other is configured: central Helsinki from
/// OpenStreetMap with the EPANET Net3 water network placed on it and the
/// generated sensor deployment (see `scenes/README.md` for how it is made).
pub const BUNDLED_SCENE: &str = include_str!("../../../scenes/helsinki.json");

/// Longest the idle twin sleeps before looking at the stop flag again.
const STOP_CHECK: Duration = Duration::from_millis(100);

/// The bundled default scene.
pub fn bundled_scene() -> anyhow::Result<Scene> {
    Scene::from_json_str(BUNDLED_SCENE, "<bundled scene>").context("the bundled scene is broken")
}

/// The scene at `path`, or the bundled one.
pub fn load_scene(path: Option<&std::path::Path>) -> anyhow::Result<Scene> {
    match path {
        Some(path) => Ok(Scene::load(path)?),
        None => bundled_scene(),
    }
}

/// What a started server tells its operator.
#[derive(Debug, Clone)]
pub struct ServerStarted {
    /// Bound UDP address.
    pub local_addr: std::net::SocketAddr,
    /// Certificate clients pass with `--cert`.
    pub cert_path: PathBuf,
    /// SHA-256 fingerprint of the certificate.
    pub fingerprint_sha256: String,
    /// Whether the certificate was created on this start.
    pub cert_created: bool,
    /// Tokens generated in the data directory (when none are configured).
    pub generated_tokens: Vec<(Access, PathBuf)>,
    /// Name of the scene served.
    pub scene_name: String,
    /// Assets and sensors in it.
    pub asset_count: usize,
    /// Sensors in the scene.
    pub sensor_count: usize,
}

/// A server running on its own threads; dropping it stops it.
pub struct RunningServer {
    started: ServerStarted,
    observed: Arc<Observed>,
    http: Option<HttpEndpoint>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RunningServer {
    /// What it started with.
    pub fn started(&self) -> &ServerStarted {
        &self.started
    }

    /// Live counters, updated every tick.
    pub fn metrics(&self) -> &ServerMetrics {
        &self.observed.metrics
    }

    /// Readiness and every counter, as the HTTP endpoint shows them.
    pub fn observed(&self) -> &Arc<Observed> {
        &self.observed
    }

    /// Address of the HTTP endpoint, if enabled.
    pub fn http_addr(&self) -> Option<std::net::SocketAddr> {
        self.http.as_ref().map(HttpEndpoint::local_addr)
    }

    /// A flag that stops the server when set (e.g. from a signal handler).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.stop)
    }

    /// Blocks until the server stops (after its stop flag is set).
    pub fn wait(mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    /// Stops the server: closes connections with a reason and joins its threads.
    pub fn stop(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            // The twin may be parked until its next regular tick.
            thread.thread().unpark();
            let _ = thread.join();
        }
        self.observed.ready.store(false, Ordering::SeqCst);
        self.http.take();
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Starts a server for `config` serving `scene`: the HTTP endpoint (if
/// enabled), the network edge, and the twin's tick loop on the `polis-twin`
/// thread.
pub fn start(config: &Config, scene: Scene) -> anyhow::Result<RunningServer> {
    let observed = Arc::new(Observed::default());
    let http = start_http(config, &observed)?;
    start_with(config, scene, observed, http)
}

/// Starts the HTTP endpoint alone, so that `/healthz` and `/readyz` answer
/// while the scene is still loading.
pub fn start_http(
    config: &Config,
    observed: &Arc<Observed>,
) -> anyhow::Result<Option<HttpEndpoint>> {
    if !config.http.enabled {
        return Ok(None);
    }
    HttpEndpoint::start(config.http.listen, Arc::clone(observed)).map(Some)
}

/// Starts the server around an already running HTTP endpoint (see
/// [`start_http`]); `observed` is what that endpoint shows.
pub fn start_with(
    config: &Config,
    scene: Scene,
    observed: Arc<Observed>,
    http: Option<HttpEndpoint>,
) -> anyhow::Result<RunningServer> {
    let _ = observed.scene.set(SceneFacts {
        name: scene.name.clone(),
        assets: scene.assets.len(),
        sensors: scene.sensors.len(),
    });
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            config.data_dir.display()
        )
    })?;
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    names.extend(config.tls_names.iter().cloned());
    let identity = load_or_create_identity(&config.data_dir, &names)?;
    let fingerprint_sha256 = identity.fingerprint_sha256();
    let cert_path = identity.cert_path.clone();
    let cert_created = identity.created;

    let mut generated_tokens = Vec::new();
    let mut entries = config.tokens.clone();
    if config.tokens.is_empty() {
        for role in [Access::Gateway, Access::Operator, Access::Public] {
            let (token, path) = generated_token(&config.data_dir, role)
                .with_context(|| format!("cannot write the {} token", role.as_str()))?;
            entries.push(crate::config::TokenEntry {
                name: Some(format!("generated-{}", role.as_str())),
                role,
                token: Some(token),
                sha256: None,
                scope_prefixes: Vec::new(),
            });
            generated_tokens.push((role, path));
        }
    }
    entries.extend(config.runtime_tokens.iter().cloned());
    let tokens = TokenTable::from_entries(&entries);
    let audit = AuditLog::open(&config.data_dir.join("audit.log"))?;

    let (durable, restored) = if config.history.enabled {
        let (durable, restored) = open_history(config, &scene)?;
        let _ = observed.history.set(Arc::clone(durable.writer_stats()));
        (Some(durable), restored)
    } else {
        (None, Vec::new())
    };
    let (playback, queries) = match &durable {
        Some(durable) => {
            let path = config.data_dir.join(&config.history.file);
            let keys = SensorKeys::new(
                durable.keys_by_handle().to_vec(),
                scene.sensors.iter().map(|s| s.id.clone()).collect(),
                scene.sensors.iter().map(|s| s.personal).collect(),
            );
            let playback = Playback::start(path.clone(), keys.clone())?;
            let queries: Arc<dyn polis_net::HistoryService> =
                Arc::new(HistoryQueries::new(path, keys, audit.clone()));
            (Some(playback), Some(queries))
        }
        None => (None, None),
    };

    let net = NetServer::start(NetServerConfig {
        listen: config.listen,
        identity,
        tokens: Arc::new(tokens),
        info: ServerInfo {
            server: format!("polis/{}", env!("CARGO_PKG_VERSION")),
            scene_name: scene.name.clone(),
            georeference: scene.georeference,
        },
        event_capacity: config.limits.event_capacity,
        max_connections: config.limits.max_connections,
        gateway_window: config.limits.gateway_window,
        viewer_frame_bytes: config.limits.viewer_frame_bytes,
        history: queries,
        limits: config.limits.session(),
    })?;
    let _ = observed.net.set(Arc::clone(net.stats()));
    let started = ServerStarted {
        local_addr: net.local_addr(),
        cert_path,
        fingerprint_sha256,
        cert_created,
        generated_tokens,
        scene_name: scene.name.clone(),
        asset_count: scene.assets.len(),
        sensor_count: scene.sensors.len(),
    };

    let stop = Arc::new(AtomicBool::new(false));
    let tick = Duration::from_secs_f64(1.0 / config.tick_hz);
    let min_tick = Duration::from_secs_f64(1.0 / config.max_tick_hz.max(config.tick_hz));
    let retention = durable
        .as_ref()
        .filter(|_| config.history.personal_raw_max_age_hours > 0.0)
        .map(|durable| {
            spawn_retention(
                durable.writer(),
                Duration::from_secs_f64(config.history.personal_raw_max_age_hours * 3600.0),
                Duration::from_secs(config.history.retention_every_secs),
                Arc::clone(&stop),
            )
        })
        .transpose()?;
    let link = NetLink::new(net, durable, config.limits.max_events_per_tick);
    let thread_stop = Arc::clone(&stop);
    let thread_observed = ObservedHandle(Arc::clone(&observed));
    let thread_audit = audit.clone();
    let privacy = PrivacyOptions {
        k: config.privacy.k,
        block_m: config.privacy.block_m,
        district_m: config.privacy.district_m,
    };
    let thread = std::thread::Builder::new()
        .name("polis-twin".into())
        .spawn(move || {
            run_ticks(
                scene,
                restored,
                link,
                playback,
                privacy,
                thread_audit,
                thread_observed,
                tick,
                min_tick,
                &thread_stop,
            );
            if let Some(retention) = retention {
                let _ = retention.join();
            }
        })
        .context("cannot start the twin thread")?;
    Ok(RunningServer {
        started,
        observed,
        http,
        stop,
        thread: Some(thread),
    })
}

/// Builds the headless app and runs it until `stop` is set: a tick every
/// `tick`, and sooner — but not within `min_tick` of the last — when network
/// events are waiting, so readings reach viewers without waiting a whole tick.
fn run_ticks(
    scene: Scene,
    restored: Vec<(String, StoredReading)>,
    link: NetLink,
    playback: Option<Playback>,
    privacy: PrivacyOptions,
    audit: AuditLog,
    observed: ObservedHandle,
    tick: Duration,
    min_tick: Duration,
    stop: &AtomicBool,
) {
    let mut app = App::new();
    app.add_plugins((TaskPoolPlugin::default(), TimePlugin))
        .add_plugins(
            TwinPlugin::new(scene)
                .with_latest(restored)
                .with_privacy(privacy),
        )
        .add_plugins(PickPlugin)
        .insert_resource(link)
        .insert_resource(observed.clone())
        .insert_resource(audit)
        .add_plugins(NetBridgePlugin);
    if let Some(playback) = playback {
        app.insert_resource(playback);
    }
    app.finish();
    app.cleanup();
    // The scene was spawned and dropped while the plugins were built.
    crate::memory::release_freed_memory();
    info!(tick_ms = tick.as_secs_f64() * 1e3, "twin running");
    let link = app.world().resource::<NetLink>();
    link.server().wake_on_event(std::thread::current());
    link.wake_on_commit(std::thread::current());
    while !stop.load(Ordering::SeqCst) {
        let started = Instant::now();
        app.update();
        observed.0.metrics.observe_tick(started.elapsed());
        observed.0.ready.store(true, Ordering::Relaxed);
        if app.should_exit().is_some() {
            break;
        }
        // Wait for the next tick: as soon as network events wait (the
        // network thread unparks this thread when it queues one), but no
        // sooner than `min_tick` after the last tick; while history is full,
        // until it has committed; without events, until the regular tick.
        loop {
            let since = started.elapsed();
            let Some(rest) = tick.checked_sub(since) else {
                break;
            };
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let link = app.world().resource::<NetLink>();
            if link.held_back() {
                // History is full and the tick takes no events: tick again
                // once the writer has committed (it unparks this thread),
                // not as often as events wait.
                std::thread::park_timeout(rest.min(STOP_CHECK));
                break;
            }
            if link.server().pending_events() > 0 {
                match min_tick.checked_sub(since) {
                    Some(wait) => std::thread::sleep(wait.min(rest)),
                    None => break,
                }
            } else {
                // Bounded so that a stop flag set without an unpark (the
                // signal watcher) is seen within STOP_CHECK.
                std::thread::park_timeout(rest.min(STOP_CHECK));
            }
        }
    }
    observed.0.ready.store(false, Ordering::SeqCst);
    info!("stopping: no new connections or readings; applying what was received");
    // 1. Clients stop being read; what they already sent is still applied.
    if let Some(link) = app.world().get_resource::<NetLink>() {
        link.server().begin_close();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        app.update();
        let drained = app
            .world()
            .get_resource::<NetLink>()
            .is_none_or(NetLink::is_drained);
        if drained || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // 2. Everything applied is committed to history, which acknowledges it.
    let Some(link) = app.world_mut().remove_resource::<NetLink>() else {
        return;
    };
    let (net, durable) = link.into_parts();
    if let Some(durable) = durable {
        durable.flush_and_close();
        info!("history flushed");
    }
    // 3. Connections deliver their last acknowledgements and close with the
    //    reason "server shutting down".
    net.shutdown();
    drop(app);
    info!("stopped cleanly");
}

/// Opens the history store for `scene`'s sensors and reads back every
/// sensor's latest reading.
fn open_history(
    config: &Config,
    scene: &Scene,
) -> anyhow::Result<(Durable, Vec<(String, StoredReading)>)> {
    let path = config.data_dir.join(&config.history.file);
    let sensors: Vec<(&str, bool)> = scene
        .sensors
        .iter()
        .map(|s| (s.id.as_str(), s.personal))
        .collect();
    let options = HistoryOptions {
        synchronous: match config.history.synchronous {
            SyncMode::Full => Synchronous::Full,
            SyncMode::Normal => Synchronous::Normal,
        },
        ..HistoryOptions::default()
    };
    let history = History::open(&path, &sensors, options)?;
    let restored: Vec<(String, StoredReading)> = history
        .reader()?
        .latest_all()?
        .into_iter()
        .map(|(id, value)| {
            let quality = match value.quality {
                Some(0) => Some(Quality::Good),
                Some(1) => Some(Quality::Uncertain),
                Some(2) => Some(Quality::Bad),
                _ => None,
            };
            (
                id,
                StoredReading {
                    device_time_ms: value.device_time_ms,
                    value: value.value,
                    quality,
                },
            )
        })
        .collect();
    info!(
        path = %path.display(),
        sensors_restored = restored.len(),
        "history open"
    );
    let keys_by_handle = scene
        .sensors
        .iter()
        .map(|s| {
            history
                .key(&s.id)
                .context("sensor not registered in history")
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((Durable::new(history, keys_by_handle), restored))
}

/// Deletes raw readings of personal sensors older than `max_age`, every
/// `every`, until `stop` is set.
fn spawn_retention(
    writer: &HistoryWriter,
    max_age: Duration,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let writer = writer.clone();
    std::thread::Builder::new()
        .name("polis-retention".into())
        .spawn(move || {
            let mut next = Instant::now();
            while !stop.load(Ordering::SeqCst) {
                if Instant::now() >= next {
                    next = Instant::now() + every;
                    let now_ms = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as i64);
                    let before_ms = now_ms - max_age.as_millis() as i64;
                    match writer.delete_personal_before(before_ms) {
                        Ok(0) => {}
                        Ok(deleted) => info!(deleted, "retention: deleted old personal readings"),
                        Err(err) => {
                            warn!("retention stopped: {err}");
                            return;
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
        .context("cannot start the retention thread")
}
