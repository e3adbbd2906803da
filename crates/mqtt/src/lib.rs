//! MQTT sources of Polis: a client of the city's broker that turns its messages into reading batches through the same bounded, durable path as a QUIC gateway, acknowledging each message only once its readings are committed.
//!
//! Polis subscribes to the broker the city already runs (mosquitto, EMQX,
//! HiveMQ, …) with a persistent session and manual acknowledgements: a
//! QoS 1 message's PUBACK goes only once its readings are applied by the
//! twin and committed to history, in the order the messages arrived, so a
//! crash of Polis makes the broker send again whatever was not yet durable.
//!
//! The rules are plain types with no I/O, tested without a socket: the
//! order of acknowledgements ([`AckQueue`]), the reconnection schedule
//! ([`Backoff`]), topic filters ([`topic_matches`]) and broker URLs
//! ([`BrokerUrl`]), and the packets of a connection (`transport::Codec`, on
//! rumqttc's MQTT 3.1.1 and MQTT 5 codecs). `source` drives them on the
//! `polis-mqtt` thread ([`MqttSources`]), with a connection loop of its own
//! that writes every acknowledgement due before it reads more. This crate does not parse payloads: a
//! [`Payloads`] implementation (the server's, on `polis-payload`) does.

mod backoff;
mod decode;
mod queue;
mod settings;
mod source;
mod stats;
mod topic;
mod transport;

pub use backoff::Backoff;
pub use decode::{DecodedReading, Payloads, Sensors, UnitConversion};
pub use queue::AckQueue;
pub use settings::{
    BrokerUrl, Credentials, DEFAULT_PORT, DEFAULT_TLS_PORT, Qos, Secret, SourceSettings,
    Subscription, UrlError, Version,
};
pub use source::MqttSources;
pub use stats::{ACK_LATENCY_BUCKETS, AckLatency, SourceStats};
pub use topic::{filter_problem, topic_matches, without_share};
