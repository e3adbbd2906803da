//! `[[mqtt]]`: sources that read readings from an MQTT broker, and the
//! checks of their settings (with the other settings' in `check`).

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Config, ConfigProblem};

/// Default limit of a message's payload, bytes.
pub const DEFAULT_MQTT_MAX_PAYLOAD_BYTES: u64 = 256 * 1024;
/// Largest payload limit accepted, bytes.
const MAX_MQTT_MAX_PAYLOAD_BYTES: u64 = 16 * 1024 * 1024;

/// One MQTT source: a broker, how to log in, what to subscribe to, and how
/// its payloads map to sensors.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSourceConfig {
    /// Its name, in logs and metrics (`polis_mqtt_*{source="…"}`).
    pub name: String,
    /// `mqtt://host[:port]` (default port 1883) or `mqtts://host[:port]`
    /// (8883, needs `ca_file`).
    pub url: String,
    /// CA certificate(s) the broker's certificate is checked against (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM), with `client_key_file`, for brokers that
    /// authenticate clients by certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_file: Option<PathBuf>,
    /// User name for the broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// File holding the password (first line); never printed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the password; never printed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// Client id, the same on every connection so the broker keeps the
    /// session (default `polis-NAME`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// MQTT version: 5 or "3.1.1".
    #[serde(default)]
    pub version: MqttVersion,
    /// QoS of the subscriptions: 1 (acknowledged once durable, sent again
    /// by the broker otherwise) or 0 (lost while Polis is down). QoS 2 is
    /// not offered: with history's one row per sensor and device time a
    /// repeat changes nothing, so it would add a round trip for nothing.
    #[serde(default = "default_qos")]
    pub qos: u8,
    /// How long the broker keeps the session, and queues messages, while
    /// Polis is away, seconds (MQTT 5; 4294967295: never expires).
    #[serde(default = "default_session_expiry_secs")]
    pub session_expiry_secs: u64,
    /// The gateway token (its `name`, its secret, or `sha256:HEX`) whose
    /// `scope_prefixes` the source writes under; every sensor when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Messages received and not yet acknowledged, at most (MQTT 5's
    /// receive maximum): a slow twin slows the broker's delivery.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: u64,
    /// Largest payload read, bytes; larger messages are refused
    /// (`too_large`; MQTT 5 brokers are told not to send them at all).
    #[serde(default = "default_max_payload_bytes")]
    pub max_payload_bytes: u64,
    /// Keep-alive interval, seconds.
    #[serde(default = "default_keep_alive_secs")]
    pub keep_alive_secs: u64,
    /// Topic filters and how their payloads are read.
    #[serde(default)]
    pub subscribe: Vec<MqttSubscribeConfig>,
}

/// One topic filter of a source.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSubscribeConfig {
    /// The filter (`+` and `#` wildcards; `$share/GROUP/…` for a shared
    /// subscription).
    pub filter: String,
    /// `senml` (SenML JSON), `senml-cbor`, `json` (with a mapping) or
    /// `number` (the payload is the value; its time is the arrival time).
    pub format: PayloadFormat,
    /// json/number: the sensor id from the topic, e.g. `city/{sensor}/power`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// json: the sensor id from the payload (a JSON pointer, `/id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensor_pointer: Option<String>,
    /// json: the value (a JSON pointer, `/value`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_pointer: Option<String>,
    /// json: the device time (a JSON pointer); the arrival time without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_pointer: Option<String>,
    /// json: how the time is written: `rfc3339`, `epoch_s` or `epoch_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_format: Option<TimeFormatName>,
    /// Prepended to every decoded sensor name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sensor_prefix: String,
}

/// A payload format, as `polis.toml` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PayloadFormat {
    /// SenML JSON (RFC 8428).
    Senml,
    /// SenML CBOR (RFC 8428).
    SenmlCbor,
    /// JSON with a mapping of pointers.
    Json,
    /// A bare number.
    Number,
}

/// How a JSON payload writes its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeFormatName {
    /// RFC 3339 text.
    Rfc3339,
    /// Seconds since the Unix epoch (a number).
    EpochS,
    /// Milliseconds since the Unix epoch (a number).
    EpochMs,
}

/// The MQTT version of a source: `5` or `"3.1.1"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MqttVersion {
    /// MQTT 3.1.1.
    V3_1_1,
    /// MQTT 5.
    #[default]
    V5,
}

impl Serialize for MqttVersion {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            MqttVersion::V3_1_1 => serializer.serialize_str("3.1.1"),
            MqttVersion::V5 => serializer.serialize_u8(5),
        }
    }
}

impl<'de> Deserialize<'de> for MqttVersion {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = MqttVersion;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("5 or \"3.1.1\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<MqttVersion, E> {
                match v {
                    5 => Ok(MqttVersion::V5),
                    _ => Err(E::custom(format!(
                        "MQTT version {v}: expected 5 or \"3.1.1\""
                    ))),
                }
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<MqttVersion, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<MqttVersion, E> {
                match v {
                    "5" | "5.0" => Ok(MqttVersion::V5),
                    "3.1.1" => Ok(MqttVersion::V3_1_1),
                    _ => Err(E::custom(format!(
                        "MQTT version `{v}`: expected 5 or \"3.1.1\""
                    ))),
                }
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

fn default_qos() -> u8 {
    1
}

fn default_session_expiry_secs() -> u64 {
    // A day: a weekend's outage is for the operator to size.
    86_400
}

fn default_max_in_flight() -> u64 {
    64
}

fn default_max_payload_bytes() -> u64 {
    DEFAULT_MQTT_MAX_PAYLOAD_BYTES
}

fn default_keep_alive_secs() -> u64 {
    30
}

impl MqttSourceConfig {
    /// The client id: as configured, else `polis-NAME`.
    pub fn client_id(&self) -> String {
        self.client_id
            .clone()
            .unwrap_or_else(|| format!("polis-{}", self.name))
    }

    /// Numeric settings and their ranges, as `(key, value, min, max)`.
    pub(super) fn ranges(&self, index: usize) -> Vec<(String, u64, u64, u64)> {
        let key = |field: &str| format!("mqtt[{index}].{field}");
        vec![
            (key("qos"), u64::from(self.qos), 0, 1),
            (
                key("session_expiry_secs"),
                self.session_expiry_secs,
                0,
                u64::from(u32::MAX),
            ),
            (key("max_in_flight"), self.max_in_flight, 1, 65_535),
            (
                key("max_payload_bytes"),
                self.max_payload_bytes,
                64,
                MAX_MQTT_MAX_PAYLOAD_BYTES,
            ),
            (key("keep_alive_secs"), self.keep_alive_secs, 5, 65_535),
        ]
    }
}

/// What the server finds for a source's `token`: the gateway token's
/// scope, or why there is none.
pub(crate) fn token_scope(config: &Config, token: &str) -> Result<Vec<String>, String> {
    use polis_protocol::Access;
    if config.tokens.is_empty() {
        return if token == "generated-gateway" {
            Ok(Vec::new())
        } else {
            Err("no [[token]] is configured: name one, or use `generated-gateway` for the generated gateway token".into())
        };
    }
    let wanted_hash = token
        .strip_prefix("sha256:")
        .map(str::to_ascii_lowercase)
        .unwrap_or_else(|| crate::tokens::token_sha256(token));
    let found = config.tokens.iter().find(|entry| {
        entry.name.as_deref() == Some(token)
            || entry
                .token
                .as_deref()
                .is_some_and(|secret| crate::tokens::token_sha256(secret) == wanted_hash)
            || entry
                .sha256
                .as_deref()
                .is_some_and(|hash| hash.eq_ignore_ascii_case(&wanted_hash))
    });
    match found {
        None => Err("names no configured [[token]] (by name, secret or sha256:HEX)".into()),
        Some(entry) if entry.role != Access::Gateway => Err(format!(
            "names a `{}` token; a source writes readings and needs a `gateway` token",
            entry.role.as_str()
        )),
        Some(entry) => Ok(entry.scope_prefixes.clone()),
    }
}

/// Every problem of the `[[mqtt]]` settings besides their ranges.
pub(super) fn problems(config: &Config) -> Vec<ConfigProblem> {
    let mut problems = Vec::new();
    let mut problem = |key: String, message: &str| {
        problems.push(ConfigProblem {
            key,
            message: message.to_owned(),
        });
    };
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut client_ids: HashMap<(String, String), usize> = HashMap::new();
    for (index, source) in config.mqtt.iter().enumerate() {
        let key = |field: &str| format!("mqtt[{index}].{field}");
        if source.name.is_empty()
            || !source
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            problem(key("name"), "must be letters, digits, `-`, `_` or `.`");
        } else if let Some(first) = names.insert(&source.name, index) {
            problem(key("name"), &format!("is also the name of mqtt[{first}]"));
        }
        let url = match polis_mqtt::BrokerUrl::parse(&source.url) {
            Ok(url) => Some(url),
            Err(err) => {
                problem(key("url"), &err.to_string());
                None
            }
        };
        if let Some(url) = &url {
            if url.tls && source.ca_file.is_none() {
                problem(
                    key("ca_file"),
                    "mqtts:// needs the CA certificate the broker's certificate is checked against",
                );
            }
            if !url.tls
                && (source.ca_file.is_some()
                    || source.client_cert_file.is_some()
                    || source.client_key_file.is_some())
            {
                problem(key("url"), "certificates are only used with mqtts://");
            }
            let client_id = source.client_id();
            if let Some(first) = client_ids.insert((url.to_string(), client_id), index) {
                problem(
                    key("client_id"),
                    &format!(
                        "mqtt[{first}] uses the same client id on the same broker; the broker would disconnect one for the other"
                    ),
                );
            }
        }
        if source.client_cert_file.is_some() != source.client_key_file.is_some() {
            problem(
                key("client_cert_file"),
                "give `client_cert_file` and `client_key_file` together",
            );
        }
        match (
            &source.username,
            &source.password_file,
            &source.password_env,
        ) {
            (_, Some(_), Some(_)) => problem(
                key("password_file"),
                "give either `password_file` or `password_env`, not both",
            ),
            (None, Some(_), _) | (None, _, Some(_)) => {
                problem(key("username"), "a password needs a `username`");
            }
            _ => {}
        }
        let client_id = source.client_id();
        if client_id.is_empty() || client_id.len() > 65_535 {
            problem(
                key("client_id"),
                "must not be empty (the broker keeps the session by it)",
            );
        }
        if let Some(token) = &source.token
            && let Err(message) = token_scope(config, token)
        {
            problem(key("token"), &message);
        }
        if source.subscribe.is_empty() {
            problem(key("subscribe"), "needs at least one [[mqtt.subscribe]]");
        }
        for (sub_index, subscribe) in source.subscribe.iter().enumerate() {
            let key = |field: &str| format!("mqtt[{index}].subscribe[{sub_index}].{field}");
            if let Some(message) = polis_mqtt::filter_problem(&subscribe.filter) {
                problem(key("filter"), message);
            }
            for (field, pointer) in [
                ("sensor_pointer", &subscribe.sensor_pointer),
                ("value_pointer", &subscribe.value_pointer),
                ("time_pointer", &subscribe.time_pointer),
            ] {
                if let Some(pointer) = pointer
                    && !polis_payload::is_valid_pointer(pointer)
                {
                    problem(
                        key(field),
                        "must be a JSON pointer: empty or starting with `/`",
                    );
                }
            }
            if let Some(topic) = &subscribe.topic
                && let Err(message) = crate::mqtt::topic_template_problem(topic)
            {
                problem(key("topic"), &message);
            }
            let mapping = [
                ("topic", subscribe.topic.is_some()),
                ("sensor_pointer", subscribe.sensor_pointer.is_some()),
                ("value_pointer", subscribe.value_pointer.is_some()),
                ("time_pointer", subscribe.time_pointer.is_some()),
                ("time_format", subscribe.time_format.is_some()),
            ];
            let allowed: &[&str] = match subscribe.format {
                PayloadFormat::Senml | PayloadFormat::SenmlCbor => &[],
                PayloadFormat::Json => &[
                    "topic",
                    "sensor_pointer",
                    "value_pointer",
                    "time_pointer",
                    "time_format",
                ],
                PayloadFormat::Number => &["topic"],
            };
            for (field, given) in mapping {
                if given && !allowed.contains(&field) {
                    problem(key(field), "is not used by this `format`");
                }
            }
            match subscribe.format {
                PayloadFormat::Json => {
                    if subscribe.value_pointer.is_none() {
                        problem(
                            key("value_pointer"),
                            "`json` needs the value's JSON pointer",
                        );
                    }
                    if subscribe.topic.is_some() == subscribe.sensor_pointer.is_some() {
                        problem(
                            key("topic"),
                            "`json` takes the sensor from `topic` or from `sensor_pointer`: give one",
                        );
                    }
                    if subscribe.time_format.is_some() && subscribe.time_pointer.is_none() {
                        problem(key("time_format"), "is only used with `time_pointer`");
                    }
                }
                PayloadFormat::Number if subscribe.topic.is_none() => {
                    problem(
                        key("topic"),
                        "`number` takes the sensor from the topic: give `topic`",
                    );
                }
                _ => {}
            }
        }
    }
    problems
}
