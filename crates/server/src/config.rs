//! The server's configuration file, `polis.toml`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use polis_protocol::{Role, TokenLookup};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Default UDP address: loopback only, so nothing is exposed by accident.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4433";
/// Default data directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "polis-data";
/// Default simulation tick rate, Hz.
pub const DEFAULT_TICK_HZ: f64 = 20.0;

/// Why a configuration file was refused.
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
    /// A setting has a value outside its range.
    #[error("{path}: `{key}`: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The setting.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// One access token as written in `polis.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// Who holds it, for logs (e.g. `substation-gateway-3`).
    #[serde(default)]
    pub name: Option<String>,
    /// The role it grants.
    pub role: Role,
    /// The token itself (prefer `sha256`).
    #[serde(default)]
    pub token: Option<String>,
    /// Hex SHA-256 of the token, so the file holds no secret.
    #[serde(default)]
    pub sha256: Option<String>,
}

/// Limits that protect the server from overload.
#[derive(Debug, Clone, Deserialize)]
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
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 2_000,
            event_capacity: 4_096,
            max_events_per_tick: 50_000,
            gateway_window: 16,
            viewer_frame_bytes: 256 * 1024,
        }
    }
}

/// The server's configuration (every field has a default).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// UDP address to listen on.
    pub listen: SocketAddr,
    /// Directory for the TLS identity, generated tokens and later history.
    pub data_dir: PathBuf,
    /// Scene file to serve; the bundled scene when absent.
    pub scene: Option<PathBuf>,
    /// Simulation ticks per second.
    pub tick_hz: f64,
    /// Extra names (host names, IP addresses) for the generated certificate.
    pub tls_names: Vec<String>,
    /// Access tokens; when none is configured, one per role is generated in
    /// the data directory on first start.
    #[serde(rename = "token")]
    pub tokens: Vec<TokenEntry>,
    /// Overload protection.
    pub limits: Limits,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN
                .parse()
                .unwrap_or_else(|_| std::net::SocketAddr::from(([127, 0, 0, 1], 4433))),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            scene: None,
            tick_hz: DEFAULT_TICK_HZ,
            tls_names: Vec::new(),
            tokens: Vec::new(),
            limits: Limits::default(),
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

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml_str(&text, path)
    }

    /// Parses and checks configuration text; `path` names it in errors.
    pub fn from_toml_str(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|err| {
            let (line, column) = err
                .span()
                .map_or((1, 1), |span| line_column(text, span.start));
            ConfigError::Syntax {
                path: path.to_owned(),
                line,
                column,
                message: err.message().to_owned(),
            }
        })?;
        config.check(path)?;
        Ok(config)
    }

    fn check(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: &str| ConfigError::Invalid {
            path: path.to_owned(),
            key: key.to_owned(),
            message: message.to_owned(),
        };
        if !(self.tick_hz.is_finite() && self.tick_hz > 0.0 && self.tick_hz <= 1000.0) {
            return Err(invalid("tick_hz", "must be a number in (0, 1000]"));
        }
        for (index, entry) in self.tokens.iter().enumerate() {
            let key = format!("token[{index}]");
            match (&entry.token, &entry.sha256) {
                (Some(_), Some(_)) => {
                    return Err(invalid(&key, "give either `token` or `sha256`, not both"));
                }
                (None, None) => return Err(invalid(&key, "needs `token` or `sha256`")),
                (Some(token), None) if token.len() < 16 => {
                    return Err(invalid(&key, "tokens must be at least 16 characters"));
                }
                (None, Some(hash))
                    if hash.len() != 64 || !hash.chars().all(|c| c.is_ascii_hexdigit()) =>
                {
                    return Err(invalid(&key, "`sha256` must be 64 hex digits"));
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
                return Err(invalid(key, "must be at least 1"));
            }
        }
        if !(4096..=polis_protocol::MAX_FRAME_BYTES).contains(&limits.viewer_frame_bytes) {
            return Err(invalid(
                "limits.viewer_frame_bytes",
                "must be between 4096 and 1048576",
            ));
        }
        Ok(())
    }
}

/// Hex SHA-256 of a token, as stored in `polis.toml`.
pub fn token_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The token table the server checks handshakes against; holds hashes only.
#[derive(Debug, Clone, Default)]
pub struct TokenTable {
    entries: Vec<([u8; 32], Role)>,
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
                Some((hash, entry.role))
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

impl TokenLookup for TokenTable {
    fn role_of(&self, token: &str) -> Option<Role> {
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Compare every entry in full so timing does not reveal near misses.
        let mut found = None;
        for (hash, role) in &self.entries {
            let difference = hash
                .iter()
                .zip(presented.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if difference == 0 {
                found = Some(*role);
            }
        }
        found
    }
}

/// Reads the generated token for `role` from the data directory, creating it
/// on first use. Used when `polis.toml` configures no tokens.
pub fn generated_token(data_dir: &Path, role: Role) -> std::io::Result<(String, PathBuf)> {
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
        assert_eq!(example.scene, defaults.scene);
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
    fn tokens_match_by_hash_and_role() {
        let text = format!(
            "[[token]]\nrole = \"gateway\"\ntoken = \"gateway-secret-123456\"\n\n[[token]]\nrole = \"viewer\"\nsha256 = \"{}\"\n",
            token_sha256("viewer-secret-123456")
        );
        let config = Config::from_toml_str(&text, Path::new("polis.toml")).expect("valid");
        let table = TokenTable::from_entries(&config.tokens);
        assert_eq!(table.role_of("gateway-secret-123456"), Some(Role::Gateway));
        assert_eq!(table.role_of("viewer-secret-123456"), Some(Role::Viewer));
        assert_eq!(table.role_of("viewer-secret-12345"), None);
        let short = "[[token]]\nrole = \"viewer\"\ntoken = \"short\"\n";
        assert!(Config::from_toml_str(short, Path::new("p.toml")).is_err());
    }
}
