//! Where settings come from, in order: defaults, `polis.toml`, environment
//! variables, command-line flags; and how TOML errors name their line.

use std::path::Path;

use serde::Deserialize as _;

use super::{Config, ConfigError};

/// Settings that may come from the environment, as dotted keys; the variable
/// is `POLIS_` followed by the key in upper case with `.` as `_`
/// (`limits.gateway_window` → `POLIS_LIMITS_GATEWAY_WINDOW`).
pub const ENV_KEYS: [&str; 20] = [
    "listen",
    "data_dir",
    "scene",
    "tick_hz",
    "max_tick_hz",
    "http.enabled",
    "http.listen",
    "ngsi_ld.enabled",
    "ngsi_ld.listen",
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
pub(super) fn override_value(key: &str, text: &str) -> toml::Value {
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

pub(super) fn set_dotted(table: &mut toml::Table, key: &str, value: toml::Value) {
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

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, column)
}

pub(super) fn parse_table(text: &str, path: &Path) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>()
        .map_err(|err| syntax_error(text, path, err))
}

pub(super) fn syntax_error(text: &str, path: &Path, err: toml::de::Error) -> ConfigError {
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

pub(super) fn table_to_config(
    table: toml::Table,
    error: &dyn Fn(toml::de::Error) -> ConfigError,
) -> Result<Config, ConfigError> {
    Config::deserialize(toml::Value::Table(table)).map_err(error)
}
