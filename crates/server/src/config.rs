//! The server's configuration file, `polis.toml`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use polis_net::{Grant, TokenDirectory};
use polis_protocol::Access;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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
    /// Largest area a viewer may subscribe to, km².
    pub max_area_km2: f64,
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
            max_area_km2: session.max_area_km2,
        }
    }
}

impl Limits {
    /// The per-session limits for the network edge.
    pub fn session(&self) -> polis_net::SessionLimits {
        polis_net::SessionLimits {
            max_connections_per_token: self.max_connections_per_token,
            max_connections_per_token_per_address: self.max_connections_per_token_per_address,
            max_readings_per_second: self.max_readings_per_second,
            max_subscriptions_per_second: self.max_subscriptions_per_second,
            max_area_km2: self.max_area_km2,
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
    /// Side of a block cell for public aggregates, metres.
    pub block_m: f64,
    /// Side of a district cell for public aggregates, metres.
    pub district_m: f64,
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        Self {
            k: 5,
            block_m: 100.0,
            district_m: 500.0,
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
            history: HistoryConfig::default(),
            privacy: PrivacyConfig::default(),
            limits: Limits::default(),
            tokens: Vec::new(),
            runtime_tokens: Vec::new(),
        }
    }
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, column)
}

/// Settings that may come from the environment, as dotted keys; the variable
/// is `POLIS_` followed by the key in upper case with `.` as `_`
/// (`limits.gateway_window` → `POLIS_LIMITS_GATEWAY_WINDOW`).
pub const ENV_KEYS: [&str; 18] = [
    "listen",
    "data_dir",
    "scene",
    "tick_hz",
    "max_tick_hz",
    "http.enabled",
    "http.listen",
    "limits.max_connections",
    "limits.event_capacity",
    "limits.max_events_per_tick",
    "limits.gateway_window",
    "limits.viewer_frame_bytes",
    "tls_names",
    "history.enabled",
    "history.synchronous",
    "history.personal_raw_max_age_hours",
    "history.retention_every_secs",
    "privacy.k",
];

/// The environment variable for a dotted key.
pub fn env_var_for(key: &str) -> String {
    format!("POLIS_{}", key.to_uppercase().replace('.', "_"))
}

/// A value given as text (environment, flag) as TOML: numbers and booleans
/// as such, comma-separated lists for list settings, anything else a string.
fn override_value(key: &str, text: &str) -> toml::Value {
    if key == "tls_names" {
        return toml::Value::Array(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_owned()))
                .collect(),
        );
    }
    if let Ok(value) = text.parse::<i64>() {
        return toml::Value::Integer(value);
    }
    if let Ok(value) = text.parse::<f64>() {
        return toml::Value::Float(value);
    }
    if let Ok(value) = text.parse::<bool>() {
        return toml::Value::Boolean(value);
    }
    toml::Value::String(text.to_owned())
}

fn set_dotted(table: &mut toml::Table, key: &str, value: toml::Value) {
    match key.split_once('.') {
        Some((head, rest)) => {
            let entry = table
                .entry(head.to_owned())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !entry.is_table() {
                *entry = toml::Value::Table(toml::Table::new());
            }
            if let toml::Value::Table(inner) = entry {
                set_dotted(inner, rest, value);
            }
        }
        None => {
            table.insert(key.to_owned(), value);
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
        for token in &mut shown.tokens {
            if let Some(secret) = token.token.take() {
                token.sha256 = Some(token_sha256(&secret));
            }
        }
        toml::to_string_pretty(&shown).unwrap_or_else(|err| format!("# cannot show: {err}\n"))
    }

    /// Every problem with the values, all at once.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        let mut problem = |key: &str, message: &str| {
            problems.push(ConfigProblem {
                key: key.to_owned(),
                message: message.to_owned(),
            });
        };
        if !(self.tick_hz.is_finite() && self.tick_hz > 0.0 && self.tick_hz <= 1000.0) {
            problem("tick_hz", "must be a number in (0, 1000]");
        }
        if !(self.max_tick_hz.is_finite()
            && self.max_tick_hz >= self.tick_hz
            && self.max_tick_hz <= MAX_MAX_TICK_HZ)
        {
            problem("max_tick_hz", "must be a number in [tick_hz, 100000]");
        }
        for (index, entry) in self.tokens.iter().enumerate() {
            let key = format!("token[{index}]");
            match (&entry.token, &entry.sha256) {
                (Some(_), Some(_)) => problem(&key, "give either `token` or `sha256`, not both"),
                (None, None) => problem(&key, "needs `token` or `sha256`"),
                (Some(token), None) if token.len() < 16 => {
                    problem(&key, "tokens must be at least 16 characters");
                }
                (None, Some(hash))
                    if hash.len() != 64 || !hash.chars().all(|c| c.is_ascii_hexdigit()) =>
                {
                    problem(&key, "`sha256` must be 64 hex digits");
                }
                _ => {}
            }
        }
        let limits = &self.limits;
        for (key, value) in [
            ("limits.max_connections", limits.max_connections),
            ("limits.event_capacity", limits.event_capacity),
            ("limits.max_events_per_tick", limits.max_events_per_tick),
            ("limits.gateway_window", limits.gateway_window),
        ] {
            if value == 0 {
                problem(key, "must be at least 1");
            }
        }
        for (key, value) in [
            (
                "limits.max_readings_per_second",
                limits.max_readings_per_second,
            ),
            (
                "limits.max_subscriptions_per_second",
                limits.max_subscriptions_per_second,
            ),
            ("limits.max_area_km2", limits.max_area_km2),
        ] {
            if !(value.is_finite() && value > 0.0) {
                problem(key, "must be a positive number");
            }
        }
        if limits.max_connections_per_token == 0 {
            problem("limits.max_connections_per_token", "must be at least 1");
        }
        if limits.max_connections_per_token_per_address == 0 {
            problem(
                "limits.max_connections_per_token_per_address",
                "must be at least 1",
            );
        }
        if !(4096..=polis_protocol::MAX_FRAME_BYTES).contains(&limits.viewer_frame_bytes) {
            problem(
                "limits.viewer_frame_bytes",
                "must be between 4096 and 1048576",
            );
        }
        let age = self.history.personal_raw_max_age_hours;
        if !(age.is_finite() && age >= 0.0) {
            problem(
                "history.personal_raw_max_age_hours",
                "must be a non-negative number of hours (0 keeps readings forever)",
            );
        }
        if self.privacy.k < 2 {
            problem(
                "privacy.k",
                "must be at least 2 (1 would show single households)",
            );
        }
        if !(self.privacy.block_m > 0.0 && self.privacy.district_m >= self.privacy.block_m) {
            problem("privacy", "needs 0 < block_m <= district_m");
        }
        if self.history.retention_every_secs == 0 {
            problem("history.retention_every_secs", "must be at least 1");
        }
        if self.http.enabled
            && self.http.listen.port() == self.listen.port()
            && self.http.listen.ip() == self.listen.ip()
        {
            // Different protocols (TCP vs UDP) could share it, but it is
            // almost always a typo.
            problem("http.listen", "uses the same address as `listen`");
        }
        problems
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

fn parse_table(text: &str, path: &Path) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>()
        .map_err(|err| syntax_error(text, path, err))
}

fn syntax_error(text: &str, path: &Path, err: toml::de::Error) -> ConfigError {
    let (line, column) = err
        .span()
        .map_or((1, 1), |span| line_column(text, span.start));
    ConfigError::Syntax {
        path: path.to_owned(),
        line,
        column,
        message: err.message().to_owned(),
    }
}

fn table_to_config(
    table: toml::Table,
    error: &dyn Fn(toml::de::Error) -> ConfigError,
) -> Result<Config, ConfigError> {
    Config::deserialize(toml::Value::Table(table)).map_err(error)
}

/// Hex SHA-256 of a token, as stored in `polis.toml`.
pub fn token_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The token table the server checks handshakes against; holds hashes only.
#[derive(Debug, Clone, Default)]
pub struct TokenTable {
    entries: Vec<([u8; 32], Grant)>,
}

impl TokenTable {
    /// Builds the table from configured entries (already checked).
    pub fn from_entries(entries: &[TokenEntry]) -> Self {
        let entries = entries
            .iter()
            .filter_map(|entry| {
                let hash = match (&entry.token, &entry.sha256) {
                    (Some(token), _) => Sha256::digest(token.as_bytes()).into(),
                    (None, Some(hash)) => {
                        let bytes = hex::decode(hash).ok()?;
                        <[u8; 32]>::try_from(bytes.as_slice()).ok()?
                    }
                    (None, None) => return None,
                };
                let scope = (entry.role == Access::Gateway && !entry.scope_prefixes.is_empty())
                    .then(|| Arc::from(entry.scope_prefixes.clone().into_boxed_slice()));
                let name = entry.name.clone().unwrap_or_else(|| {
                    format!("{}-{}", entry.role.as_str(), &hex::encode(hash)[..8])
                });
                Some((
                    hash,
                    Grant {
                        access: entry.role,
                        name,
                        scope,
                    },
                ))
            })
            .collect();
        Self { entries }
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no token is configured.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl TokenDirectory for TokenTable {
    fn grant(&self, token: &str) -> Option<Grant> {
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Compare every entry in full so timing does not reveal near misses.
        let mut found = None;
        for (hash, grant) in &self.entries {
            let difference = hash
                .iter()
                .zip(presented.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if difference == 0 {
                found = Some(grant.clone());
            }
        }
        found
    }
}

/// Reads the generated token for `role` from the data directory, creating it
/// on first use. Used when `polis.toml` configures no tokens.
pub fn generated_token(data_dir: &Path, role: Access) -> std::io::Result<(String, PathBuf)> {
    let path = data_dir.join(format!("{}.token", role.as_str()));
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let token = existing.trim().to_owned();
        if token.len() >= 16 {
            return Ok((token, path));
        }
    }
    std::fs::create_dir_all(data_dir)?;
    let bytes: [u8; 24] = rand::random();
    let token = hex::encode(bytes);
    write_private(&path, format!("{token}\n").as_bytes())?;
    Ok((token, path))
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_is_valid_and_states_the_defaults() {
        let text = include_str!("../../../polis.example.toml");
        let example = Config::from_toml_str(text, Path::new("polis.example.toml"))
            .expect("the example parses");
        let defaults = Config::default();
        assert_eq!(example.listen, defaults.listen);
        assert_eq!(example.data_dir, defaults.data_dir);
        assert_eq!(example.tick_hz, defaults.tick_hz);
        assert_eq!(example.max_tick_hz, defaults.max_tick_hz);
        assert_eq!(example.scene, defaults.scene);
        assert_eq!(example.http.listen, defaults.http.listen);
        assert_eq!(example.http.enabled, defaults.http.enabled);
        assert!(example.tokens.is_empty());
        let (e, d) = (&example.limits, &defaults.limits);
        assert_eq!(
            (
                e.max_connections,
                e.event_capacity,
                e.max_events_per_tick,
                e.gateway_window,
                e.viewer_frame_bytes
            ),
            (
                d.max_connections,
                d.event_capacity,
                d.max_events_per_tick,
                d.gateway_window,
                d.viewer_frame_bytes
            )
        );
        // The commented token examples are valid once uncommented.
        let uncommented: String = text
            .lines()
            .map(|l| {
                l.strip_prefix("# ")
                    .filter(|r| r.starts_with('[') || r.contains(" = "))
                    .unwrap_or(l)
            })
            .filter(|l| !l.starts_with("scene"))
            .collect::<Vec<_>>()
            .join("\n");
        let with_tokens = Config::from_toml_str(&uncommented, Path::new("uncommented.toml"))
            .expect("the token examples parse");
        assert_eq!(with_tokens.tokens.len(), 2);
    }

    #[test]
    fn defaults_when_empty() {
        let config = Config::from_toml_str("", Path::new("polis.toml")).expect("empty is valid");
        assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(config.tick_hz, DEFAULT_TICK_HZ);
    }

    #[test]
    fn errors_name_file_line_and_reason() {
        let text = "tick_hz = 20\nlisten = 12\n";
        let err = Config::from_toml_str(text, Path::new("polis.toml")).expect_err("bad type");
        let shown = err.to_string();
        assert!(shown.starts_with("polis.toml:2:10:"), "{shown}");
        let err =
            Config::from_toml_str("tick_hzz = 1\n", Path::new("p.toml")).expect_err("unknown");
        assert!(err.to_string().contains("p.toml:1:1"), "{err}");
        assert!(err.to_string().contains("tick_hzz"), "{err}");
        let err = Config::from_toml_str("tick_hz = 0\n", Path::new("p.toml")).expect_err("range");
        assert_eq!(
            err.to_string(),
            "p.toml: `tick_hz`: must be a number in (0, 1000]"
        );
    }

    #[test]
    fn command_line_beats_environment_beats_file_beats_defaults() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("polis.toml");
        std::fs::write(
            &path,
            "tick_hz = 10\ndata_dir = \"from-file\"\n[limits]\ngateway_window = 3\n",
        )
        .expect("written");
        let env = |var: &str| match var {
            "POLIS_TICK_HZ" => Some("30".to_owned()),
            "POLIS_LIMITS_GATEWAY_WINDOW" => Some("7".to_owned()),
            "POLIS_TLS_NAMES" => Some("twin.example.org, 10.0.0.5".to_owned()),
            _ => None,
        };
        let mut overrides = Config::env_overrides(env);
        overrides.push(("--tick-hz".into(), "tick_hz", "40".into()));
        let config = Config::layered(Some(&path), &overrides).expect("valid");
        assert_eq!(config.tick_hz, 40.0, "flag wins");
        assert_eq!(config.limits.gateway_window, 7, "environment beats file");
        assert_eq!(
            config.data_dir,
            PathBuf::from("from-file"),
            "file beats default"
        );
        assert_eq!(
            config.limits.event_capacity,
            Limits::default().event_capacity
        );
        assert_eq!(config.tls_names, ["twin.example.org", "10.0.0.5"]);

        let bad = [("POLIS_TICK_HZ".to_owned(), "tick_hz", "fast".to_owned())];
        let err = Config::layered(Some(&path), &bad).expect_err("not a number");
        assert!(
            err.to_string()
                .starts_with("POLIS_TICK_HZ: `tick_hz` = `fast`"),
            "{err}"
        );
    }

    #[test]
    fn shown_configuration_hides_secrets_and_reads_back() {
        let text = "[[token]]\nrole = \"gateway\"\ntoken = \"gateway-secret-123456\"\n";
        let config = Config::from_toml_str(text, Path::new("p.toml")).expect("valid");
        let shown = config.to_toml_redacted();
        assert!(!shown.contains("gateway-secret-123456"), "{shown}");
        assert!(
            shown.contains(&token_sha256("gateway-secret-123456")),
            "{shown}"
        );
        let again = Config::from_toml_str(&shown, Path::new("shown.toml")).expect("reads back");
        assert_eq!(again.listen, config.listen);
        assert_eq!(again.limits.gateway_window, config.limits.gateway_window);
    }

    #[test]
    fn tokens_match_by_hash_and_role() {
        let text = format!(
            "[[token]]\nrole = \"gateway\"\ntoken = \"gateway-secret-123456\"\n\n[[token]]\nrole = \"viewer\"\nsha256 = \"{}\"\n",
            token_sha256("viewer-secret-123456")
        );
        let config = Config::from_toml_str(&text, Path::new("polis.toml")).expect("valid");
        let table = TokenTable::from_entries(&config.tokens);
        let access = |t: &str| table.grant(t).map(|g| g.access);
        assert_eq!(access("gateway-secret-123456"), Some(Access::Gateway));
        assert_eq!(
            access("viewer-secret-123456"),
            Some(Access::Public),
            "viewer means public"
        );
        assert_eq!(access("viewer-secret-12345"), None);
        let short = "[[token]]\nrole = \"viewer\"\ntoken = \"short\"\n";
        assert!(Config::from_toml_str(short, Path::new("p.toml")).is_err());
    }
}
