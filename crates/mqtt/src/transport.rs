//! rumqttc's two clients (MQTT 3.1.1 and MQTT 5) behind one face: what a
//! source configures, the events it handles, and the packets it sends.

use std::time::Duration;

use rumqttc::v5::mqttbytes::v5 as v5_bytes;

use crate::settings::{Qos, SourceSettings, Version};

/// Longest a TCP (and TLS) connection attempt may take, seconds.
const CONNECTION_TIMEOUT_SECS: u64 = 5;

/// Bytes a packet may hold besides its payload (topic, properties).
const PACKET_OVERHEAD_BYTES: usize = 64 * 1024;

/// A received PUBLISH, kept to acknowledge it.
#[derive(Debug)]
pub(crate) enum Publish {
    V3(rumqttc::Publish),
    V5(v5_bytes::Publish),
}

impl Publish {
    /// The topic (MQTT 5 topics are UTF-8 by the specification; anything
    /// else is shown replaced).
    pub(crate) fn topic(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Publish::V3(publish) => std::borrow::Cow::Borrowed(publish.topic.as_str()),
            Publish::V5(publish) => String::from_utf8_lossy(&publish.topic),
        }
    }

    pub(crate) fn payload(&self) -> &[u8] {
        match self {
            Publish::V3(publish) => &publish.payload,
            Publish::V5(publish) => &publish.payload,
        }
    }

    /// True for QoS 1 and 2: the broker waits for an acknowledgement.
    pub(crate) fn needs_ack(&self) -> bool {
        match self {
            Publish::V3(publish) => publish.qos != rumqttc::QoS::AtMostOnce,
            Publish::V5(publish) => publish.qos != rumqttc::v5::mqttbytes::QoS::AtMostOnce,
        }
    }
}

/// What the event loop reported.
#[derive(Debug)]
pub(crate) enum Received {
    /// Connected; whether the broker still had the session.
    Connected { session_present: bool },
    /// A message.
    Message(Publish),
    /// The broker answered a SUBSCRIBE (one filter each): granted, or
    /// refused with its reason code.
    Subscribed(Result<(), String>),
    /// Anything else (pings, acknowledgements of our packets).
    Other,
}

/// The client half: sends subscriptions, acknowledgements, the disconnect.
#[derive(Clone)]
pub(crate) enum Client {
    V3(rumqttc::AsyncClient),
    V5(rumqttc::v5::AsyncClient),
}

/// The connection half, polled for events.
pub(crate) enum EventLoop {
    V3(Box<rumqttc::EventLoop>),
    V5(Box<rumqttc::v5::EventLoop>),
}

/// A client and its event loop for `settings`: persistent session (clean
/// session / clean start off), manual acknowledgements, at most
/// `max_in_flight` unacknowledged messages from the broker (MQTT 5's
/// receive maximum; a 3.1.1 broker has its own, e.g. mosquitto's
/// `max_inflight_messages`), packets up to the payload limit plus room for
/// the topic.
pub(crate) fn connect(settings: &SourceSettings) -> (Client, EventLoop) {
    let max_packet = settings
        .max_payload_bytes
        .saturating_add(PACKET_OVERHEAD_BYTES);
    // Room for every acknowledgement a full window may queue between two
    // polls, and the subscriptions.
    let requests = 2 * usize::from(settings.max_in_flight) + settings.subscriptions.len() + 16;
    let keep_alive = Duration::from_secs(u64::from(settings.keep_alive_secs.max(5)));
    let transport = match &settings.tls {
        Some(config) => rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(
            std::sync::Arc::clone(config),
        )),
        None => rumqttc::Transport::tcp(),
    };
    let (host, port) = (settings.broker.host.clone(), settings.broker.port);
    match settings.version {
        Version::V3_1_1 => {
            let mut options = rumqttc::MqttOptions::new(settings.client_id.clone(), host, port);
            options
                .set_keep_alive(keep_alive)
                // Persistent session; only an empty client id (refused by
                // the configuration check) could not have one, and
                // rumqttc would panic on it.
                .set_clean_session(settings.client_id.is_empty())
                .set_manual_acks(true)
                .set_max_packet_size(max_packet, PACKET_OVERHEAD_BYTES)
                .set_request_channel_capacity(requests)
                .set_transport(transport);
            if let Some(credentials) = &settings.credentials {
                options.set_credentials(
                    credentials.username.clone(),
                    credentials.password.expose().to_owned(),
                );
            }
            let (client, eventloop) = rumqttc::AsyncClient::new(options, requests);
            (
                Client::V3(client),
                EventLoop::V3(Box::new(nodelay_v3(eventloop))),
            )
        }
        Version::V5 => {
            let mut options = rumqttc::v5::MqttOptions::new(settings.client_id.clone(), host, port);
            options
                .set_keep_alive(keep_alive)
                .set_clean_start(false)
                .set_manual_acks(true)
                .set_session_expiry_interval(Some(settings.session_expiry_secs))
                .set_receive_maximum(Some(settings.max_in_flight.max(1)))
                .set_max_packet_size(Some(u32::try_from(max_packet).unwrap_or(u32::MAX)))
                .set_request_channel_capacity(requests)
                .set_transport(transport);
            if let Some(credentials) = &settings.credentials {
                options.set_credentials(
                    credentials.username.clone(),
                    credentials.password.expose().to_owned(),
                );
            }
            let mut network = options.network_options();
            network.set_tcp_nodelay(true);
            network.set_connection_timeout(CONNECTION_TIMEOUT_SECS);
            options.set_network_options(network);
            let (client, eventloop) = rumqttc::v5::AsyncClient::new(options, requests);
            (Client::V5(client), EventLoop::V5(Box::new(eventloop)))
        }
    }
}

fn nodelay_v3(mut eventloop: rumqttc::EventLoop) -> rumqttc::EventLoop {
    let mut network = eventloop.network_options();
    network.set_tcp_nodelay(true);
    network.set_connection_timeout(CONNECTION_TIMEOUT_SECS);
    eventloop.set_network_options(network);
    eventloop
}

impl EventLoop {
    /// The next event, or why the connection failed (the next call
    /// reconnects).
    pub(crate) async fn poll(&mut self) -> Result<Received, String> {
        match self {
            EventLoop::V3(eventloop) => match eventloop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(ack))) => {
                    Ok(Received::Connected {
                        session_present: ack.session_present,
                    })
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(publish))) => {
                    Ok(Received::Message(Publish::V3(publish)))
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(ack))) => {
                    match ack
                        .return_codes
                        .iter()
                        .find(|code| matches!(code, rumqttc::SubscribeReasonCode::Failure))
                    {
                        Some(code) => Ok(Received::Subscribed(Err(format!("{code:?}")))),
                        None => Ok(Received::Subscribed(Ok(()))),
                    }
                }
                Ok(_) => Ok(Received::Other),
                Err(err) => Err(err.to_string()),
            },
            EventLoop::V5(eventloop) => match eventloop.poll().await {
                Ok(rumqttc::v5::Event::Incoming(v5_bytes::Packet::ConnAck(ack))) => {
                    Ok(Received::Connected {
                        session_present: ack.session_present,
                    })
                }
                Ok(rumqttc::v5::Event::Incoming(v5_bytes::Packet::Publish(publish))) => {
                    Ok(Received::Message(Publish::V5(publish)))
                }
                Ok(rumqttc::v5::Event::Incoming(v5_bytes::Packet::SubAck(ack))) => {
                    match ack
                        .return_codes
                        .iter()
                        .find(|code| !matches!(code, v5_bytes::SubscribeReasonCode::Success(_)))
                    {
                        Some(code) => Ok(Received::Subscribed(Err(format!("{code:?}")))),
                        None => Ok(Received::Subscribed(Ok(()))),
                    }
                }
                Ok(_) => Ok(Received::Other),
                Err(err) => Err(err.to_string()),
            },
        }
    }
}

/// Why a packet could not be queued for the broker.
#[derive(Debug, thiserror::Error)]
#[error("cannot queue a packet for the broker: {0}")]
pub(crate) struct SendError(String);

impl Client {
    /// Subscribes to `filter` at `qos` (queued; sent by the event loop).
    pub(crate) fn subscribe(&self, filter: &str, qos: Qos) -> Result<(), SendError> {
        match self {
            Client::V3(client) => {
                let qos = match qos {
                    Qos::AtMostOnce => rumqttc::QoS::AtMostOnce,
                    Qos::AtLeastOnce => rumqttc::QoS::AtLeastOnce,
                };
                client
                    .try_subscribe(filter, qos)
                    .map_err(|err| SendError(err.to_string()))
            }
            Client::V5(client) => {
                let qos = match qos {
                    Qos::AtMostOnce => rumqttc::v5::mqttbytes::QoS::AtMostOnce,
                    Qos::AtLeastOnce => rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                };
                client
                    .try_subscribe(filter, qos)
                    .map_err(|err| SendError(err.to_string()))
            }
        }
    }

    /// Acknowledges `publish` (queued; sent by the event loop).
    pub(crate) fn ack(&self, publish: &Publish) -> Result<(), SendError> {
        match (self, publish) {
            (Client::V3(client), Publish::V3(publish)) => client
                .try_ack(publish)
                .map_err(|err| SendError(err.to_string())),
            (Client::V5(client), Publish::V5(publish)) => client
                .try_ack(publish)
                .map_err(|err| SendError(err.to_string())),
            _ => Err(SendError("a message of the other MQTT version".into())),
        }
    }

    /// Asks to disconnect (queued; sent by the event loop).
    pub(crate) fn disconnect(&self) -> Result<(), SendError> {
        match self {
            Client::V3(client) => client
                .try_disconnect()
                .map_err(|err| SendError(err.to_string())),
            Client::V5(client) => client
                .try_disconnect()
                .map_err(|err| SendError(err.to_string())),
        }
    }
}
