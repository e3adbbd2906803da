//! The server's configuration file, `polis.toml`: the settings and their
//! defaults here, their sources in `layers`, their valid ranges in `check`.

mod check;
mod layers;
mod mqtt;

pub use layers::{ENV_KEYS, env_var_for};
use layers::{override_value, parse_table, set_dotted, syntax_error, table_to_config};
pub(crate) use mqtt::token_scope;
pub use mqtt::{
    DEFAULT_MQTT_MAX_PAYLOAD_BYTES, MqttSourceConfig, MqttSubscribeConfig, MqttVersion,
    PayloadFormat, TimeFormatName,
};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use polis_protocol::Access;
use serde::{Deserialize, Serialize};

/// Default UDP address: loopback only, so nothing is exposed by accident.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4433";
/// Default data directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "polis-data";
/// Default simulation tick rate, Hz.
pub const DEFAULT_TICK_HZ: f64 = 20.0;

/// Default ceiling of event-driven ticks per second (see
/// [`Config::max_tick_hz`]): 0.1 ms between ticks at the closest. A tick
/// drains every waiting event, so the ceiling only bounds the ticks' fixed
/// cost (tens of µs each) while events trickle in one by one.
pub const DEFAULT_MAX_TICK_HZ: f64 = 10_000.0;
/// Highest accepted ceiling of event-driven ticks per second.
const MAX_MAX_TICK_HZ: f64 = 100_000.0;

/// Default allowance for gateways' clocks running ahead of the server's,
/// seconds: a few minutes, as NTP-less devices drift.
pub const DEFAULT_MAX_CLOCK_SKEW_SECS: f64 = 300.0;

/// Default address of the HTTP endpoint (health, readiness, metrics).
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:9433";

/// One thing wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The setting, as a dotted key (`limits.gateway_window`).
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or mistyped settings.
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// An override from the environment or the command line is not valid.
    #[error("{source_name}: {message}")]
    Override {
        /// The environment variable or flag.
        source_name: String,
        /// What is wrong.
        message: String,
    },
    /// Settings have values outside their range; every problem is listed.
    #[error("{}", problems.iter().map(|p| format!("{}: `{}`: {}", origin.display(), p.key, p.message)).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// The file (or `<defaults>`).
        origin: PathBuf,
        /// Every problem found.
        problems: Vec<ConfigProblem>,
    },
}

/// One access token as written in `polis.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// Who holds it, for logs (e.g. `substation-gateway-3`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What it grants: `gateway`, or a viewer's access: `operator` (raw
    /// personal data, audited), `planner` (building aggregates) or `public`
    /// (aggregates over at least k; `viewer` is an alias).
    pub role: Access,
    /// The token itself (prefer `sha256`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Hex SHA-256 of the token, so the file holds no secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// For gateway tokens: the sensor-id prefixes it may write (all when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scope_prefixes: Vec<String>,
    /// For resident tokens: the ids of the home's sensors, whose raw values
    /// and history the resident sees (required, and only for residents).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sensors: Vec<String>,
}

impl TokenEntry {
    /// A token for `role` given by its secret, with a name for logs and the
    /// audit log (`None`: named after its role and hash), writing every
    /// sensor if a gateway's.
    pub fn with_secret(role: Access, name: Option<&str>, secret: impl Into<String>) -> Self {
        Self {
            name: name.map(str::to_owned),
            role,
            token: Some(secret.into()),
            sha256: None,
            scope_prefixes: Vec::new(),
            sensors: Vec::new(),
        }
    }
}

/// Limits that protect the server from overload.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Most simultaneous connections.
    pub max_connections: usize,
    /// Capacity of the channel from the network into the twin, events.
    pub event_capacity: usize,
    /// Most events the twin takes from the network per tick.
    pub max_events_per_tick: usize,
    /// Most unacknowledged batches per gateway.
    pub gateway_window: usize,
    /// Target size of frames sent to viewers, bytes.
    pub viewer_frame_bytes: usize,
    /// Connections one token may have at once.
    pub max_connections_per_token: u32,
    /// Connections one token may have at once from one source address.
    pub max_connections_per_token_per_address: u32,
    /// Readings one gateway connection may push per second.
    pub max_readings_per_second: f64,
    /// Subscriptions one viewer connection may make per second.
    pub max_subscriptions_per_second: f64,
    /// Picks one viewer connection may make per second; more are answered
    /// `RateLimited` (the connection stays open).
    pub max_picks_per_second: f64,
    /// Largest area a viewer may subscribe to, km².
    pub max_area_km2: f64,
    /// Handshakes in progress above which clients whose address is not yet
    /// validated get a QUIC retry first.
    pub retry_above_handshakes: usize,
    /// Handshakes one source address may have in progress; more are refused.
    pub max_handshakes_per_address: u32,
    /// How far ahead of the server's clock a reading's device time may be,
    /// seconds; later readings are refused (`FutureTime`).
    pub max_clock_skew_secs: f64,
    /// Items (assets and sensors) viewers' subscriptions may make the twin
    /// query, send or withdraw per second, all viewers together.
    pub max_area_items_per_second: f64,
    /// The same for one viewer connection: beyond it, its subscriptions
    /// wait (the latest replacing any queued) until its allowance refills.
    pub max_area_items_per_second_per_connection: f64,
    /// The same per twin tick: large areas are sent in slices of this many
    /// items, with readings applied between two slices.
    pub max_area_items_per_tick: u64,
}

impl Default for Limits {
    fn default() -> Self {
        let session = polis_net::SessionLimits::default();
        Self {
            max_connections: 2_000,
            event_capacity: 4_096,
            max_events_per_tick: 50_000,
            gateway_window: 16,
            viewer_frame_bytes: 256 * 1024,
            max_connections_per_token: session.max_connections_per_token,
            max_connections_per_token_per_address: session.max_connections_per_token_per_address,
            max_readings_per_second: session.max_readings_per_second,
            max_subscriptions_per_second: session.max_subscriptions_per_second,
            max_picks_per_second: session.max_picks_per_second,
            max_area_km2: session.max_area_km2,
            retry_above_handshakes: session.retry_above_handshakes,
            max_handshakes_per_address: session.max_handshakes_per_address,
            max_clock_skew_secs: DEFAULT_MAX_CLOCK_SKEW_SECS,
            max_area_items_per_second: 200_000.0,
            max_area_items_per_second_per_connection: 100_000.0,
            max_area_items_per_tick: 250,
        }
    }
}

impl Limits {
    /// [`Limits::max_clock_skew_secs`] in whole milliseconds.
    pub fn max_clock_skew_ms(&self) -> i64 {
        // In range once checked (at most a week); saturating otherwise.
        (self.max_clock_skew_secs * 1e3) as i64
    }

    /// What subscriptions may cost the twin.
    pub fn interest_budget(&self) -> polis_twin::InterestBudget {
        polis_twin::InterestBudget {
            items_per_tick: self.max_area_items_per_tick,
            items_per_second: self.max_area_items_per_second,
            items_per_second_per_viewer: self.max_area_items_per_second_per_connection,
        }
    }

    /// The per-session limits for the network edge.
    pub fn session(&self) -> polis_net::SessionLimits {
        polis_net::SessionLimits {
            max_connections_per_token: self.max_connections_per_token,
            max_connections_per_token_per_address: self.max_connections_per_token_per_address,
            max_readings_per_second: self.max_readings_per_second,
            max_subscriptions_per_second: self.max_subscriptions_per_second,
            max_picks_per_second: self.max_picks_per_second,
            max_area_km2: self.max_area_km2,
            retry_above_handshakes: self.retry_above_handshakes,
            max_handshakes_per_address: self.max_handshakes_per_address,
        }
    }
}

/// The HTTP endpoint for health checks and Prometheus metrics.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    /// Whether to serve it.
    pub enabled: bool,
    /// TCP address; loopback unless you mean to expose metrics.
    pub listen: SocketAddr,
}

impl Default for Http {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 9433)),
        }
    }
}

/// The NGSI-LD API (ETSI GS CIM 009): the twin's entities over HTTP.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NgsiLdConfig {
    /// Whether to serve it.
    pub enabled: bool,
    /// TCP address; a loopback address (the API is served as plain HTTP,
    /// for local use and a reverse proxy with TLS in front).
    pub listen: SocketAddr,
    /// Most entities in one page of a query (`limit` beyond it is
    /// `TooManyResults`).
    pub max_page: usize,
}

impl Default for NgsiLdConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 1026)),
            max_page: 1_000,
        }
    }
}

/// The durable history of readings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistoryConfig {
    /// Whether to record readings (and acknowledge batches only once durable).
    pub enabled: bool,
    /// SQLite file, relative to the data directory.
    pub file: PathBuf,
    /// `full`: a commit survives a power cut; `normal`: survives a crash of
    /// the process only, faster.
    pub synchronous: SyncMode,
    /// Raw readings of `personal` sensors older than this are deleted, hours
    /// (0 keeps them forever).
    pub personal_raw_max_age_hours: f64,
    /// How often the retention runs, seconds.
    pub retention_every_secs: u64,
}

/// Durability of history commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// fsync on every commit.
    Full,
    /// No fsync on commit.
    Normal,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            file: PathBuf::from("history.sqlite"),
            synchronous: SyncMode::Full,
            personal_raw_max_age_hours: 30.0 * 24.0,
            retention_every_secs: 3600,
        }
    }
}

/// How personal data is shown to viewers who are not operators.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacyConfig {
    /// Fewest personal sensors behind a value shown to the public.
    pub k: usize,
    /// Fewest personal sensors behind a value shown to a planner (2 to `k`).
    pub k_planner: usize,
    /// Side of a block cell for public aggregates, metres.
    pub block_m: f64,
    /// Side of a district cell for public aggregates, metres.
    pub district_m: f64,
    /// Differential privacy for public aggregates: the budget ε each
    /// aggregate (so each household, per quantity) may spend per window;
    /// 0 turns it off (the default).
    pub dp_epsilon: f64,
    /// The window the budget holds over, hours.
    pub dp_window_hours: f64,
    /// Values each public aggregate releases per window, at most (each
    /// spends `dp_epsilon / dp_releases`).
    pub dp_releases: u32,
    /// The range one household's reading counts with, per quantity
    /// (`[lo, hi]` in the sensor's unit): it sets the noise. Public
    /// aggregates of a quantity without a range have no value.
    pub dp_bounds: std::collections::BTreeMap<String, [f64; 2]>,
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        Self {
            k: 5,
            k_planner: 3,
            block_m: 100.0,
            district_m: 500.0,
            dp_epsilon: 0.0,
            dp_window_hours: 1.0,
            dp_releases: 4,
            dp_bounds: [
                ("active_power".to_owned(), [0.0, 10.0]),
                ("pv_power".to_owned(), [0.0, 10.0]),
            ]
            .into(),
        }
    }
}

/// The server's configuration (every field has a default).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// UDP address to listen on.
    pub listen: SocketAddr,
    /// Directory for the TLS identity, generated tokens and later history.
    pub data_dir: PathBuf,
    /// Scene file to serve; the bundled scene when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scene: Option<PathBuf>,
    /// Simulation ticks per second when nothing arrives.
    pub tick_hz: f64,
    /// Ceiling of ticks per second while readings and requests arrive: the
    /// twin ticks as soon as network events wait, at most this often, so a
    /// reading reaches viewers without waiting for the next regular tick.
    /// Set it equal to `tick_hz` for fixed ticks (fewer, fuller frames).
    pub max_tick_hz: f64,
    /// Extra names (host names, IP addresses) for the generated certificate.
    pub tls_names: Vec<String>,
    /// Health and metrics endpoint.
    pub http: Http,
    /// The NGSI-LD API.
    pub ngsi_ld: NgsiLdConfig,
    /// Durable history of readings.
    pub history: HistoryConfig,
    /// Aggregation of personal data.
    pub privacy: PrivacyConfig,
    /// Overload protection.
    pub limits: Limits,
    /// Access tokens; when none is configured, one per role is generated in
    /// the data directory on first start.
    #[serde(rename = "token")]
    pub tokens: Vec<TokenEntry>,
    /// MQTT sources: brokers Polis subscribes to for readings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mqtt: Vec<MqttSourceConfig>,
    /// Tokens added at run time (e.g. for `serve --demo`'s built-in gateway);
    /// never read from or written to a file, and no reason to generate tokens.
    #[serde(skip)]
    pub runtime_tokens: Vec<TokenEntry>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 4433)),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            scene: None,
            tick_hz: DEFAULT_TICK_HZ,
            max_tick_hz: DEFAULT_MAX_TICK_HZ,
            tls_names: Vec::new(),
            http: Http::default(),
            ngsi_ld: NgsiLdConfig::default(),
            history: HistoryConfig::default(),
            privacy: PrivacyConfig::default(),
            limits: Limits::default(),
            tokens: Vec::new(),
            mqtt: Vec::new(),
            runtime_tokens: Vec::new(),
        }
    }
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::layered(Some(path), &[])
    }

    /// Parses and checks configuration text; `path` names it in errors.
    pub fn from_toml_str(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|err| syntax_error(text, path, err))?;
        config.check(path)?;
        Ok(config)
    }

    /// The history store's file (`history.file` in the data directory).
    pub fn history_path(&self) -> PathBuf {
        self.data_dir.join(&self.history.file)
    }

    /// The record of every privacy group formed (`groups.json` in the data
    /// directory).
    pub fn groups_path(&self) -> PathBuf {
        self.data_dir.join("groups.json")
    }

    /// Residents' consent (`consent.json` in the data directory).
    pub fn consent_path(&self) -> PathBuf {
        self.data_dir.join("consent.json")
    }

    /// The audit log (`audit.log` in the data directory).
    pub fn audit_path(&self) -> PathBuf {
        self.data_dir.join("audit.log")
    }

    /// How public aggregates are noised, when `privacy.dp_epsilon` is set,
    /// with the deployment's secret `key`.
    pub fn noise_options(&self, key: [u8; 32]) -> Option<polis_twin::NoiseOptions> {
        (self.privacy.dp_epsilon > 0.0).then(|| polis_twin::NoiseOptions {
            epsilon: self.privacy.dp_epsilon,
            window_ms: (self.privacy.dp_window_hours * 3_600_000.0) as i64,
            releases: self.privacy.dp_releases,
            bounds: self
                .privacy
                .dp_bounds
                .iter()
                .map(|(quantity, [lo, hi])| (quantity.clone(), (*lo, *hi)))
                .collect(),
            key,
        })
    }

    /// How the twin aggregates personal data under this configuration.
    pub fn privacy_options(&self) -> polis_twin::PrivacyOptions {
        polis_twin::PrivacyOptions {
            k: self.privacy.k,
            k_planner: self.privacy.k_planner,
            block_m: self.privacy.block_m,
            district_m: self.privacy.district_m,
        }
    }

    /// The effective configuration: defaults, then the file (if any), then
    /// each override in order (`(source name, dotted key, value text)`, e.g.
    /// environment variables, then command-line flags), then checked.
    pub fn layered(
        file: Option<&Path>,
        overrides: &[(String, &str, String)],
    ) -> Result<Config, ConfigError> {
        let (mut table, origin) = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
                    path: path.to_owned(),
                    source,
                })?;
                // Type errors in the file are reported with their line first.
                toml::from_str::<Config>(&text).map_err(|err| syntax_error(&text, path, err))?;
                (parse_table(&text, path)?, path.to_owned())
            }
            None => (toml::Table::new(), PathBuf::from("<defaults>")),
        };
        for (source_name, key, text) in overrides {
            set_dotted(&mut table, key, override_value(key, text));
            table_to_config(table.clone(), &|err: toml::de::Error| {
                ConfigError::Override {
                    source_name: source_name.clone(),
                    message: format!("`{key}` = `{text}`: {}", err.message()),
                }
            })?;
        }
        let config = table_to_config(table, &|err: toml::de::Error| ConfigError::Override {
            source_name: "configuration".into(),
            message: err.message().to_owned(),
        })?;
        config.check(&origin)?;
        Ok(config)
    }

    /// Every override present in `env` for [`ENV_KEYS`], as
    /// `(variable, key, value)`.
    pub fn env_overrides(
        env: impl Fn(&str) -> Option<String>,
    ) -> Vec<(String, &'static str, String)> {
        ENV_KEYS
            .iter()
            .filter_map(|key| {
                let var = env_var_for(key);
                env(&var).map(|value| (var, *key, value))
            })
            .collect()
    }

    /// The configuration as TOML with every token secret replaced by its
    /// SHA-256 (which authenticates the same and reveals nothing).
    pub fn to_toml_redacted(&self) -> String {
        let mut shown = self.clone();
        let names: Vec<Option<String>> = self.tokens.iter().map(|t| t.name.clone()).collect();
        for token in &mut shown.tokens {
            if let Some(secret) = token.token.take() {
                token.sha256 = Some(crate::tokens::token_sha256(&secret));
            }
        }
        // A source's token given by its secret is shown by its hash, which
        // names the same token.
        for source in &mut shown.mqtt {
            if let Some(token) = &source.token
                && !token.starts_with("sha256:")
                && token != "generated-gateway"
                && !names
                    .iter()
                    .any(|name| name.as_deref() == Some(token.as_str()))
            {
                source.token = Some(format!("sha256:{}", crate::tokens::token_sha256(token)));
            }
        }
        toml::to_string_pretty(&shown).unwrap_or_else(|err| format!("# cannot show: {err}\n"))
    }

    fn check(&self, origin: &Path) -> Result<(), ConfigError> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid {
                origin: origin.to_owned(),
                problems,
            })
        }
    }
}

#[cfg(test)]
mod tests;
