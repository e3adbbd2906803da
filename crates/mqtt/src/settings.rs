//! A source's settings once resolved: the broker's address, TLS material
//! and password read from their files, the scope its readings are written
//! under, and a decoder per topic filter.

use std::fmt;
use std::sync::Arc;

use crate::decode::Payloads;

/// Default MQTT port over TCP.
pub const DEFAULT_PORT: u16 = 1883;
/// Default MQTT port over TLS.
pub const DEFAULT_TLS_PORT: u16 = 8883;

/// Why a broker URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Neither `mqtt://` nor `mqtts://`.
    #[error("must start with mqtt:// or mqtts://")]
    Scheme,
    /// No host name or address.
    #[error("has no host")]
    Host,
    /// A port that is not a number in 1..=65535.
    #[error("has a port that is not in 1..=65535")]
    Port,
    /// A path, query, user name or password in the URL.
    #[error(
        "must be only scheme://host[:port] (credentials go in `username` and `password_file` or `password_env`)"
    )]
    Extra,
}

/// Where the broker is: `mqtt://host[:port]` or `mqtts://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// TLS (`mqtts`).
    pub tls: bool,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl BrokerUrl {
    /// Parses `mqtt://host[:port]` or `mqtts://host[:port]` (`[v6]:port`
    /// for IPv6 addresses).
    pub fn parse(text: &str) -> Result<BrokerUrl, UrlError> {
        let (tls, rest) = if let Some(rest) = text.strip_prefix("mqtts://") {
            (true, rest)
        } else if let Some(rest) = text.strip_prefix("mqtt://") {
            (false, rest)
        } else {
            return Err(UrlError::Scheme);
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) {
            return Err(UrlError::Extra);
        }
        let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
            let (host, after) = bracketed.split_once(']').ok_or(UrlError::Host)?;
            match after {
                "" => (host, None),
                port => (host, Some(port.strip_prefix(':').ok_or(UrlError::Port)?)),
            }
        } else {
            match rest.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            }
        };
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(UrlError::Host);
        }
        let port = match port {
            None => {
                if tls {
                    DEFAULT_TLS_PORT
                } else {
                    DEFAULT_PORT
                }
            }
            Some(port) => match port.parse::<u16>() {
                Ok(port) if port > 0 => port,
                _ => return Err(UrlError::Port),
            },
        };
        Ok(BrokerUrl {
            tls,
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// The MQTT protocol version a source speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Version {
    /// MQTT 3.1.1: `clean_session = false` keeps the session until the
    /// broker's own expiry (mosquitto: `persistent_client_expiration`).
    V3_1_1,
    /// MQTT 5: `clean_start = false` and a session expiry interval; the
    /// receive maximum bounds the messages the broker sends unacknowledged.
    #[default]
    V5,
}

/// The QoS a source subscribes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Qos {
    /// At most once: nothing to acknowledge, lost while Polis is down.
    AtMostOnce,
    /// At least once: acknowledged once durable, sent again otherwise.
    /// Exactly once (QoS 2) is not offered: history keeps one row per
    /// sensor and device time and the twin the latest by device time, so a
    /// repeat changes nothing, and QoS 2's second round trip per message
    /// would buy nothing.
    #[default]
    AtLeastOnce,
}

/// A secret (a broker password) that never shows in `Debug` output or
/// logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `text`.
    pub fn new(text: String) -> Self {
        Self(text)
    }

    /// The secret itself, for the broker's CONNECT.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// User name and password for the broker.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password.
    pub password: Secret,
}

/// One topic filter of a source and how its messages are read.
#[derive(Clone)]
pub struct Subscription {
    /// The filter (`$share/GROUP/…` allowed).
    pub filter: String,
    /// Turns a message on this filter into readings.
    pub payloads: Arc<dyn Payloads>,
    /// Prepended to every decoded sensor name.
    pub sensor_prefix: String,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("filter", &self.filter)
            .field("sensor_prefix", &self.sensor_prefix)
            .finish_non_exhaustive()
    }
}

/// Everything one source runs with.
#[derive(Debug, Clone)]
pub struct SourceSettings {
    /// Its name, in logs and metrics.
    pub name: String,
    /// The broker.
    pub broker: BrokerUrl,
    /// TLS settings (for `mqtts`), with the CA and client certificate.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// User name and password, if the broker asks for them.
    pub credentials: Option<Credentials>,
    /// The client id, the same on every connection so the broker keeps the
    /// session.
    pub client_id: String,
    /// MQTT version.
    pub version: Version,
    /// QoS of the subscriptions.
    pub qos: Qos,
    /// How long the broker keeps the session (and queues messages) while
    /// Polis is away, seconds (MQTT 5).
    pub session_expiry_secs: u32,
    /// Messages in flight: received but not yet acknowledged, at most.
    pub max_in_flight: u16,
    /// Largest payload decoded; larger ones are refused (`too_large`).
    pub max_payload_bytes: usize,
    /// Keep-alive interval, seconds.
    pub keep_alive_secs: u16,
    /// Sensor-id prefixes the source may write (its gateway token's
    /// scope); `None` for all.
    pub scope: Option<Arc<[String]>>,
    /// Topic filters; a message is read by the first that matches it.
    pub subscriptions: Vec<Subscription>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls_parse_with_default_ports_and_refuse_extras() {
        let url = |text| BrokerUrl::parse(text);
        assert_eq!(
            url("mqtt://localhost"),
            Ok(BrokerUrl {
                tls: false,
                host: "localhost".into(),
                port: 1883
            })
        );
        assert_eq!(
            url("mqtts://broker.city:8884").map(|u| (u.tls, u.port)),
            Ok((true, 8884))
        );
        assert_eq!(url("mqtts://broker.city").map(|u| u.port), Ok(8883));
        assert_eq!(
            url("mqtt://[::1]:1884").map(|u| u.host),
            Ok("::1".to_owned())
        );
        assert_eq!(
            url("mqtt://[::1]:1884").map(|u| u.to_string()),
            Ok("mqtt://[::1]:1884".into())
        );
        assert_eq!(url("mqtt://127.0.0.1:1883/").map(|u| u.port), Ok(1883));
        assert_eq!(url("tcp://localhost:1883"), Err(UrlError::Scheme));
        assert_eq!(url("mqtt://:1883"), Err(UrlError::Host));
        assert_eq!(url("mqtt://host:0"), Err(UrlError::Port));
        assert_eq!(url("mqtt://host:99999"), Err(UrlError::Port));
        assert_eq!(url("mqtt://user:pw@host"), Err(UrlError::Extra));
        assert_eq!(url("mqtt://host/path"), Err(UrlError::Extra));
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let credentials = Credentials {
            username: "polis".into(),
            password: Secret::new("hunter2-very-secret".into()),
        };
        let shown = format!("{credentials:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("polis"));
        assert_eq!(credentials.password.expose(), "hunter2-very-secret");
    }
}
