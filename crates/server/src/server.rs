//! The server as its operator and embedders see it: the scene it serves,
//! [`start`] and the [`RunningServer`] handle. The parts it opens are in
//! `startup`, the twin thread in `ticks`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use polis_protocol::Access;
use polis_scene::Scene;

use crate::config::{Config, ConfigError};
use crate::http::HttpEndpoint;
use crate::metrics::{Observed, ObservedHandle, SceneFacts, ServerMetrics};
use crate::startup::open_parts;
use crate::ticks::{TickPace, run_twin};

/// The scene served when no other is configured: central Helsinki from
/// OpenStreetMap with the EPANET Net3 water network placed on it and the
/// generated sensor deployment (see `scenes/README.md` for how it is made).
pub const BUNDLED_SCENE: &str = include_str!("../../../scenes/helsinki.json");

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
    ngsi: Option<HttpEndpoint>,
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

    /// Address of the NGSI-LD API, if enabled.
    pub fn ngsi_addr(&self) -> Option<std::net::SocketAddr> {
        self.ngsi.as_ref().map(HttpEndpoint::local_addr)
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
        self.ngsi.take();
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
    // A configuration built in code has not been through `Config::load`.
    let problems = config.problems();
    if !problems.is_empty() {
        return Err(ConfigError::Invalid {
            origin: "<configuration>".into(),
            problems,
        }
        .into());
    }
    let pace = TickPace::new(config.tick_hz, config.max_tick_hz)?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut parts = open_parts(config, &scene, &observed, &stop)?;
    let started = parts.started.clone();
    let ngsi = if config.ngsi_ld.enabled {
        let shared = crate::ngsild::NgsiShared::default();
        let endpoint = crate::ngsild::start(
            config.ngsi_ld.listen,
            config.ngsi_ld.max_page,
            &shared,
            Arc::clone(&parts.tokens),
            parts.audit.clone(),
        )?;
        parts.ngsi = Some(shared);
        Some(endpoint)
    } else {
        None
    };
    let thread_stop = Arc::clone(&stop);
    let thread_observed = ObservedHandle(Arc::clone(&observed));
    let thread = std::thread::Builder::new()
        .name("polis-twin".into())
        .spawn(move || run_twin(scene, parts, thread_observed, pace, &thread_stop))
        .context("cannot start the twin thread")?;
    Ok(RunningServer {
        started,
        observed,
        http,
        ngsi,
        stop,
        thread: Some(thread),
    })
}
