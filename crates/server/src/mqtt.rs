//! The server's MQTT sources: each `[[mqtt]]` of `polis.toml` resolved
//! (TLS material and password read, token scope looked up, a decoder per
//! topic filter on `polis-payload`) and started on the `polis-mqtt` thread
//! ([`polis_mqtt::MqttSources`]), writing through the network edge's
//! [`IngestPort`] like a QUIC gateway.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use polis_mqtt::{
    BrokerUrl, Credentials, DecodedReading, MqttSources, Payloads, Qos, Secret, Sensors,
    SourceSettings, Subscription, Version,
};
use polis_net::IngestPort;
use polis_payload::{DecodeLimits, Format, JsonMapping, SensorFrom, TimeFormat, TopicTemplate};
use polis_scene::Scene;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{
    Config, MqttSourceConfig, MqttSubscribeConfig, MqttVersion, PayloadFormat, TimeFormatName,
};

/// What is wrong with a topic template (`city/{sensor}/power`), if anything.
pub(crate) fn topic_template_problem(topic: &str) -> Result<(), String> {
    TopicTemplate::parse(topic)
        .map(|_| ())
        .map_err(|err| err.to_string())
}

/// A topic filter's payload format on `polis-payload`.
struct PayloadDecoder {
    format: Format,
    limits: DecodeLimits,
}

impl Payloads for PayloadDecoder {
    fn decode(
        &self,
        topic: &str,
        payload: &[u8],
        arrival_ms: i64,
    ) -> Result<Vec<DecodedReading>, &'static str> {
        polis_payload::decode(&self.format, topic, payload, arrival_ms, &self.limits)
            .map(|decoded| {
                decoded
                    .into_iter()
                    .map(|d| DecodedReading {
                        sensor_id: d.sensor_id,
                        device_time_ms: d.device_time_ms,
                        value: d.value,
                        unit: d.unit,
                    })
                    .collect()
            })
            .map_err(|err| err.reason())
    }
}

/// Exact conversions only (`polis_payload::convert_value`).
fn convert_value(value: f64, senml_unit: &str, sensor_unit: &str) -> Option<f64> {
    polis_payload::convert_value(value, senml_unit, sensor_unit).ok()
}

/// Starts every configured source, writing through `port`; `None` when
/// none is configured.
pub(crate) fn open_mqtt(
    config: &Config,
    scene: &Scene,
    port: IngestPort,
) -> anyhow::Result<Option<MqttSources>> {
    if config.mqtt.is_empty() {
        return Ok(None);
    }
    let settings = config
        .mqtt
        .iter()
        .enumerate()
        .map(|(index, source)| {
            source_settings(config, source)
                .with_context(|| format!("mqtt[{index}] (`{}`)", source.name))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let sensors = Sensors::new(
        scene.sensors.iter().map(|s| (s.id.clone(), s.unit.clone())),
        convert_value,
    );
    let sources = MqttSources::start(settings, port, Arc::new(sensors))
        .context("cannot start the mqtt thread")?;
    Ok(Some(sources))
}

/// The runtime settings of `source` (already checked by `Config::problems`).
fn source_settings(config: &Config, source: &MqttSourceConfig) -> anyhow::Result<SourceSettings> {
    let broker = BrokerUrl::parse(&source.url).context("url")?;
    let tls = broker
        .tls
        .then(|| tls_config(source))
        .transpose()?
        .map(Arc::new);
    let scope = match &source.token {
        None => None,
        Some(token) => {
            let prefixes = crate::config::token_scope(config, token)
                .map_err(|message| anyhow::anyhow!("token: {message}"))?;
            (!prefixes.is_empty()).then(|| Arc::from(prefixes.into_boxed_slice()))
        }
    };
    let limits = DecodeLimits {
        max_payload_bytes: usize::try_from(source.max_payload_bytes).unwrap_or(usize::MAX),
        max_records: polis_payload_max_records(),
    };
    let subscriptions = source
        .subscribe
        .iter()
        .enumerate()
        .map(|(index, subscribe)| {
            let format =
                payload_format(subscribe).with_context(|| format!("subscribe[{index}]"))?;
            Ok(Subscription {
                filter: subscribe.filter.clone(),
                payloads: Arc::new(PayloadDecoder { format, limits }),
                sensor_prefix: subscribe.sensor_prefix.clone(),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(SourceSettings {
        name: source.name.clone(),
        broker,
        tls,
        credentials: credentials(source)?,
        client_id: source.client_id(),
        version: match source.version {
            MqttVersion::V3_1_1 => Version::V3_1_1,
            MqttVersion::V5 => Version::V5,
        },
        qos: if source.qos == 0 {
            Qos::AtMostOnce
        } else {
            Qos::AtLeastOnce
        },
        session_expiry_secs: u32::try_from(source.session_expiry_secs).unwrap_or(u32::MAX),
        max_in_flight: u16::try_from(source.max_in_flight).unwrap_or(u16::MAX),
        max_payload_bytes: limits.max_payload_bytes,
        keep_alive_secs: u16::try_from(source.keep_alive_secs).unwrap_or(u16::MAX),
        scope,
        subscriptions,
    })
}

/// Most readings one message may carry: what one batch into the twin holds.
fn polis_payload_max_records() -> usize {
    polis_protocol::MAX_READINGS_PER_BATCH.min(DecodeLimits::default().max_records)
}

/// The `polis-payload` format of a topic filter.
fn payload_format(subscribe: &MqttSubscribeConfig) -> anyhow::Result<Format> {
    let template = |topic: &str| {
        TopicTemplate::parse(topic).map_err(|err| anyhow::anyhow!("topic `{topic}`: {err}"))
    };
    Ok(match subscribe.format {
        PayloadFormat::Senml => Format::SenmlJson,
        PayloadFormat::SenmlCbor => Format::SenmlCbor,
        PayloadFormat::Number => match &subscribe.topic {
            Some(topic) => Format::Number(template(topic)?),
            None => bail!("`number` needs `topic`"),
        },
        PayloadFormat::Json => {
            let sensor = match (&subscribe.topic, &subscribe.sensor_pointer) {
                (Some(topic), None) => SensorFrom::Topic(template(topic)?),
                (None, Some(pointer)) => SensorFrom::Pointer(pointer.clone()),
                _ => bail!("`json` needs one of `topic` and `sensor_pointer`"),
            };
            let mapping = JsonMapping {
                sensor,
                value_pointer: subscribe
                    .value_pointer
                    .clone()
                    .context("`json` needs `value_pointer`")?,
                time_pointer: subscribe.time_pointer.clone(),
                time_format: match subscribe.time_format.unwrap_or(TimeFormatName::Rfc3339) {
                    TimeFormatName::Rfc3339 => TimeFormat::Rfc3339,
                    TimeFormatName::EpochS => TimeFormat::EpochSeconds,
                    TimeFormatName::EpochMs => TimeFormat::EpochMillis,
                },
            };
            if let Err(bad) = mapping.check() {
                bail!("`{bad}` is not a JSON pointer");
            }
            Format::Json(mapping)
        }
    })
}

/// User name and password, the password read from its file or variable.
fn credentials(source: &MqttSourceConfig) -> anyhow::Result<Option<Credentials>> {
    let Some(username) = &source.username else {
        return Ok(None);
    };
    let password = match (&source.password_file, &source.password_env) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("password_file {}", path.display()))?;
            text.lines().next().unwrap_or_default().to_owned()
        }
        (None, Some(var)) => std::env::var(var)
            .with_context(|| format!("password_env: the variable {var} is not set"))?,
        (None, None) => String::new(),
    };
    Ok(Some(Credentials {
        username: username.clone(),
        password: Secret::new(password),
    }))
}

/// TLS for `mqtts`: the broker's certificate checked against `ca_file`,
/// and the client certificate if given; rustls with ring.
fn tls_config(source: &MqttSourceConfig) -> anyhow::Result<rustls::ClientConfig> {
    let ca_file = source
        .ca_file
        .as_deref()
        .context("mqtts:// needs `ca_file`")?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(ca_file, "ca_file")? {
        roots
            .add(cert)
            .with_context(|| format!("ca_file {}", ca_file.display()))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS versions")?
    .with_root_certificates(roots);
    Ok(match (&source.client_cert_file, &source.client_key_file) {
        (Some(cert_file), Some(key_file)) => {
            let chain = certificates(cert_file, "client_cert_file")?;
            let key = PrivateKeyDer::from_pem_file(key_file)
                .map_err(|err| anyhow::anyhow!("client_key_file {}: {err}", key_file.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .context("client certificate and key")?
        }
        _ => builder.with_no_client_auth(),
    })
}

/// The certificates of a PEM file (at least one), for setting `key`.
fn certificates(path: &Path, key: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    polis_net::load_certificates(path).with_context(|| key.to_owned())
}
