//! Starting a server in parts: each `open_*` step opens one thing the
//! server runs on (data directory, TLS identity, tokens, audit log,
//! history, playback, network edge, MQTT sources, retention) and says in its error which
//! one failed. [`open_parts`] runs them in order and hands the parts to the
//! twin thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use polis_history::{History, HistoryOptions, HistoryWriter, Synchronous};
use polis_net::{
    HistoryService, NetServer, NetServerConfig, ServerIdentity, ServerInfo, load_or_create_identity,
};
use polis_protocol::Quality;
use polis_scene::Scene;
use polis_twin::{PrivacyOptions, StoredReading};
use tracing::{info, warn};

use crate::audit::AuditLog;
use crate::bridge::{Durable, NetLink};
use crate::config::{Config, SyncMode};
use crate::consent::{TwinInbox, TwinLink};
use crate::metrics::Observed;
use crate::playback::{HistoryQueries, Playback, SensorKeys};
use crate::resident::Residents;
use crate::server::ServerStarted;
use crate::tokens::{ServerTokens, TokenTable, server_tokens};

/// Names the self-signed certificate is made for besides the configured
/// `tls_names`.
const LOCAL_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// What the twin thread runs with, opened by [`open_parts`].
pub(crate) struct Parts {
    /// What the operator is told.
    pub(crate) started: ServerStarted,
    /// The network edge and history, as the bridge uses them.
    pub(crate) link: NetLink,
    /// Every sensor's latest reading from history.
    pub(crate) restored: Vec<(String, StoredReading)>,
    /// The time-travel worker, when history is on.
    pub(crate) playback: Option<Playback>,
    /// Where accesses to raw personal data are recorded.
    pub(crate) audit: AuditLog,
    /// What each token grants (the network edge and the NGSI-LD API).
    pub(crate) tokens: Arc<dyn polis_net::TokenDirectory>,
    /// The NGSI-LD API's view of the twin, when the API is on.
    pub(crate) ngsi: Option<crate::ngsild::NgsiShared>,
    /// The privacy rules the twin's aggregates follow.
    pub(crate) privacy: PrivacyOptions,
    /// Differential privacy for public aggregates, if on.
    pub(crate) noise: Option<polis_twin::NoiseOptions>,
    /// The retention thread, when personal readings expire.
    pub(crate) retention: Option<std::thread::JoinHandle<()>>,
    /// Residents' consent as the twin starts with it.
    pub(crate) consents: polis_twin::Consents,
    /// Every privacy group formed before, and where they are recorded.
    pub(crate) past_groups: (polis_twin::PastGroups, std::path::PathBuf),
    /// Where consent changes reach the twin.
    pub(crate) consent_inbox: TwinInbox,
    /// The thread that notices consent changes made by other processes.
    pub(crate) consent_watch: Option<std::thread::JoinHandle<()>>,
    /// How far ahead of the clock device times may be, ms.
    pub(crate) max_clock_skew_ms: i64,
    /// The MQTT sources, when any is configured.
    pub(crate) mqtt: Option<polis_mqtt::MqttSources>,
    /// What subscriptions may cost the twin.
    pub(crate) interest_budget: polis_twin::InterestBudget,
}

/// History as the server uses it once opened.
struct OpenHistory {
    durable: Durable,
    restored: Vec<(String, StoredReading)>,
}

/// Opens every part of a server for `config` serving `scene`; `stop` ends
/// the background threads started here (retention).
pub(crate) fn open_parts(
    config: &Config,
    scene: &Scene,
    observed: &Observed,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<Parts> {
    open_data_dir(config)?;
    let identity = open_identity(config)?;
    let ServerTokens { table, generated } = server_tokens(config)?;
    let audit = AuditLog::open(&config.audit_path())?;
    let consent_path = config.consent_path();
    let known = crate::consent::load(&consent_path)?;
    if !known.is_empty() {
        info!(
            sensors = known.len(),
            "residents' consent read from {}",
            consent_path.display()
        );
    }
    let consents = polis_twin::Consents::new(known.clone());
    let past_groups = (
        crate::groups::load(&config.groups_path())?,
        config.groups_path(),
    );
    let (consent, consent_inbox) = TwinLink::new(consent_path.clone(), known);
    let residents: Arc<dyn polis_net::ResidentService> = Arc::new(Residents {
        history: config.history_path(),
        audit_path: config.audit_path(),
        audit: audit.clone(),
        consent: consent.clone(),
        consent_path,
        groups_path: config.groups_path(),
    });

    let history = config
        .history
        .enabled
        .then(|| open_history(config, scene))
        .transpose()?;
    if let Some(history) = &history {
        let _ = observed
            .history
            .set(Arc::clone(history.durable.writer_stats()));
    }
    let (playback, queries) = match &history {
        Some(history) => open_playback(config, scene, &history.durable, &audit)?,
        None => (None, None),
    };
    let (cert_path, fingerprint_sha256, cert_created) = (
        identity.cert_path.clone(),
        identity.fingerprint_sha256(),
        identity.created,
    );
    let tokens: Arc<TokenTable> = Arc::new(table);
    let net = open_net(
        config,
        scene,
        identity,
        Arc::clone(&tokens) as _,
        queries,
        residents,
    )?;
    let _ = observed.net.set(Arc::clone(net.stats()));
    let mqtt = crate::mqtt::open_mqtt(config, scene, net.ingest_port())?;
    if let Some(mqtt) = &mqtt {
        let _ = observed.mqtt.set(mqtt.stats().to_vec());
    }
    let started = ServerStarted {
        local_addr: net.local_addr(),
        cert_path,
        fingerprint_sha256,
        cert_created,
        generated_tokens: generated,
        scene_name: scene.name.clone(),
        asset_count: scene.assets.len(),
        sensor_count: scene.sensors.len(),
    };
    let (durable, restored) = match history {
        Some(OpenHistory { durable, restored }) => (Some(durable), restored),
        None => (None, Vec::new()),
    };
    let retention = durable
        .as_ref()
        .map(|durable| open_retention(config, durable.writer(), stop))
        .transpose()?
        .flatten();
    // Last, so that a part that fails to open leaves no thread behind.
    let consent_watch = Some(
        crate::consent::watch(consent, Arc::clone(stop))
            .context("cannot start the consent thread")?,
    );
    Ok(Parts {
        started,
        link: NetLink::new(net, durable, config.limits.max_events_per_tick),
        restored,
        playback,
        audit,
        tokens,
        ngsi: None,
        privacy: config.privacy_options(),
        noise: open_noise(config)?,
        retention,
        consents,
        past_groups,
        consent_inbox,
        consent_watch,
        max_clock_skew_ms: config.limits.max_clock_skew_ms(),
        mqtt,
        interest_budget: config.limits.interest_budget(),
    })
}

/// The noise settings when differential privacy is on, with the secret
/// key from `<data dir>/dp.key` (32 random bytes, created on first use and
/// kept: the same release must get the same noise after a restart).
fn open_noise(config: &Config) -> anyhow::Result<Option<polis_twin::NoiseOptions>> {
    if config.privacy.dp_epsilon <= 0.0 {
        return Ok(None);
    }
    let path = config.data_dir.join("dp.key");
    let key = crate::tokens::secret_key(&path)
        .with_context(|| format!("cannot read or create {}", path.display()))?;
    tracing::info!(
        epsilon = config.privacy.dp_epsilon,
        window_hours = config.privacy.dp_window_hours,
        releases = config.privacy.dp_releases,
        "public aggregates are released with differential privacy (Laplace noise, key {})",
        path.display()
    );
    Ok(config.noise_options(key))
}

/// Creates the data directory if it is missing.
fn open_data_dir(config: &Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            config.data_dir.display()
        )
    })
}

/// The server's TLS identity from the data directory, created on first start.
fn open_identity(config: &Config) -> anyhow::Result<ServerIdentity> {
    let mut names: Vec<String> = LOCAL_NAMES.iter().map(|&name| name.to_owned()).collect();
    names.extend(config.tls_names.iter().cloned());
    Ok(load_or_create_identity(&config.data_dir, &names)?)
}

/// Opens the history store for `scene`'s sensors and reads back every
/// sensor's latest reading.
fn open_history(config: &Config, scene: &Scene) -> anyhow::Result<OpenHistory> {
    let path = config.history_path();
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
        forget_after_ms: Some(unix_now_ms().saturating_add(config.limits.max_clock_skew_ms())),
        ..HistoryOptions::default()
    };
    let history = History::open(&path, &sensors, options)?;
    if history.forgotten_future_rows() > 0 {
        warn!(
            deleted = history.forgotten_future_rows(),
            "history held readings from the future (beyond limits.max_clock_skew_secs); \
             deleted them so their sensors take real readings again"
        );
    }
    let restored: Vec<(String, StoredReading)> = history
        .reader()?
        .latest_all()?
        .into_iter()
        .map(|(id, value)| {
            (
                id,
                StoredReading {
                    device_time_ms: value.device_time_ms,
                    value: value.value,
                    quality: value.quality.and_then(Quality::from_code),
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
    Ok(OpenHistory {
        durable: Durable::new(history, keys_by_handle),
        restored,
    })
}

/// The time-travel worker and the history queries viewers may ask, both
/// reading the history file through connections of their own.
fn open_playback(
    config: &Config,
    scene: &Scene,
    durable: &Durable,
    audit: &AuditLog,
) -> anyhow::Result<(Option<Playback>, Option<Arc<dyn HistoryService>>)> {
    let path = config.history_path();
    let keys = SensorKeys::new(
        durable.keys_by_handle().to_vec(),
        scene.sensors.iter().map(|s| s.id.clone()).collect(),
        scene.sensors.iter().map(|s| s.personal).collect(),
    );
    let playback = Playback::start(path.clone(), keys.clone())?;
    let queries: Arc<dyn HistoryService> = Arc::new(HistoryQueries::new(path, keys, audit.clone()));
    Ok((Some(playback), Some(queries)))
}

/// Binds the QUIC edge and starts the network thread.
fn open_net(
    config: &Config,
    scene: &Scene,
    identity: ServerIdentity,
    tokens: Arc<dyn polis_net::TokenDirectory>,
    history: Option<Arc<dyn HistoryService>>,
    residents: Arc<dyn polis_net::ResidentService>,
) -> anyhow::Result<NetServer> {
    Ok(NetServer::start(NetServerConfig {
        listen: config.listen,
        identity,
        tokens,
        info: ServerInfo {
            server: format!("polis/{}", env!("CARGO_PKG_VERSION")),
            scene_name: scene.name.clone(),
            georeference: scene.georeference,
        },
        event_capacity: config.limits.event_capacity,
        max_connections: config.limits.max_connections,
        gateway_window: config.limits.gateway_window,
        viewer_frame_bytes: config.limits.viewer_frame_bytes,
        history,
        residents: Some(residents),
        limits: config.limits.session(),
    })?)
}

/// The retention thread, when raw personal readings expire
/// (`history.personal_raw_max_age_hours` > 0).
fn open_retention(
    config: &Config,
    writer: &HistoryWriter,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<Option<std::thread::JoinHandle<()>>> {
    let max_age_hours = config.history.personal_raw_max_age_hours;
    if max_age_hours <= 0.0 {
        return Ok(None);
    }
    let max_age = Duration::try_from_secs_f64(max_age_hours * 3600.0)
        .context("history.personal_raw_max_age_hours is out of range")?;
    spawn_retention(
        writer,
        max_age,
        Duration::from_secs(config.history.retention_every_secs),
        Arc::clone(stop),
    )
    .map(Some)
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
                    let now_ms = unix_now_ms();
                    // Saturating: an age beyond the clock's range deletes
                    // nothing rather than wrapping into the future.
                    let age_ms = i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
                    let before_ms = now_ms.saturating_sub(age_ms);
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

/// The wall clock, ms since the Unix epoch (0 before it).
pub(crate) fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
