//! A source's connection to its broker: MQTT 3.1.1 or MQTT 5 packets
//! (rumqttc's codecs) over TCP or TLS, driven by a loop of our own.
//!
//! rumqttc's event loop writes at most one queued request per turn and
//! reads up to ten packets per turn, so a stream of incoming messages
//! starves the acknowledgements a source queues, and a broker that does not
//! hold to the receive maximum keeps sending (measured: thousands of
//! unacknowledged messages held; BENCHMARKS.md). Here the source encodes
//! its packets (PUBACKs, SUBSCRIBE, DISCONNECT) straight into the
//! connection's write buffer between polls, and every poll first writes
//! that buffer (all PUBACKs due, in one write) and only then reads; reading
//! takes whatever the socket holds and decodes every complete packet in it.
//!
//! [`Codec`] is the packet half with no I/O (tested on bytes);
//! [`EventLoop`] owns the socket.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes::v5;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::settings::{Qos, SourceSettings, Version};

/// Longest a TCP (and TLS) connection and the CONNECT/CONNACK exchange may
/// take.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// Bytes a packet may hold besides its payload (topic, properties).
const PACKET_OVERHEAD_BYTES: usize = 64 * 1024;

/// Bytes asked of the socket per read, at least.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// A received PUBLISH, kept to acknowledge it.
#[derive(Debug)]
pub(crate) enum Publish {
    V3(v4::Publish),
    V5(v5::Publish),
}

impl Publish {
    /// The topic (MQTT topics are UTF-8 by the specification; anything
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

    /// True for QoS 1: the broker waits for a PUBACK.
    pub(crate) fn needs_ack(&self) -> bool {
        match self {
            Publish::V3(publish) => publish.qos != rumqttc::QoS::AtMostOnce,
            Publish::V5(publish) => publish.qos != rumqttc::v5::mqttbytes::QoS::AtMostOnce,
        }
    }

    fn pkid(&self) -> u16 {
        match self {
            Publish::V3(publish) => publish.pkid,
            Publish::V5(publish) => publish.pkid,
        }
    }
}

/// What a PUBACK tells the broker about a message (MQTT 5 §3.4.2.1; an
/// MQTT 3.1.1 PUBACK carries no reason). Every one of them settles the
/// message: a refused message would be refused again if sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckReason {
    /// 0x00: its readings are durable (or were already).
    Success,
    /// 0x83: well-formed, but the twin refused every reading (unknown
    /// sensor, unit mismatch, stale time, …).
    Refused,
    /// 0x87: every reading was outside the source's gateway scope.
    NotAuthorized,
    /// 0x99: the payload could not be read as the configured format.
    PayloadFormatInvalid,
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
}

/// A packet from the broker, as a source sees it.
#[derive(Debug)]
enum Incoming {
    ConnAck {
        session_present: bool,
        refused: Option<String>,
    },
    Publish(Publish),
    SubAck(Result<(), String>),
    PingResp,
    /// The broker ends the connection (MQTT 5), with its reason.
    Disconnect(String),
    /// Anything a subscriber does not expect from a broker.
    Unexpected(&'static str),
}

/// The packet half of a connection, with no I/O: encodes what a source
/// sends and decodes what the broker sends, for one MQTT version.
#[derive(Debug, Clone)]
pub(crate) struct Codec {
    version: Version,
    /// Largest packet accepted from the broker, bytes.
    max_incoming_bytes: usize,
}

/// A packet that could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct CodecError(String);

impl Codec {
    pub(crate) fn new(version: Version, max_incoming_bytes: usize) -> Self {
        Self {
            version,
            max_incoming_bytes,
        }
    }

    /// CONNECT: a persistent session (MQTT 3.1.1 clean session off; MQTT 5
    /// clean start off with a session expiry), the receive maximum and
    /// largest packet Polis takes (MQTT 5), credentials if any.
    pub(crate) fn connect(
        &self,
        settings: &SourceSettings,
        buf: &mut BytesMut,
    ) -> Result<(), CodecError> {
        let keep_alive = settings.keep_alive_secs.max(5);
        let login = settings
            .credentials
            .as_ref()
            .map(|c| (c.username.clone(), c.password.expose().to_owned()));
        match self.version {
            Version::V3_1_1 => {
                let mut connect = v4::Connect::new(settings.client_id.clone());
                connect.keep_alive = keep_alive;
                connect.clean_session = settings.client_id.is_empty();
                connect.login = login.map(|(user, password)| v4::Login::new(user, password));
                write_v4(&v4::Packet::Connect(connect), buf)
            }
            Version::V5 => {
                let mut properties = v5::ConnectProperties::new();
                properties.session_expiry_interval = Some(settings.session_expiry_secs);
                properties.receive_maximum = Some(settings.max_in_flight.max(1));
                properties.max_packet_size =
                    Some(u32::try_from(self.max_incoming_bytes).unwrap_or(u32::MAX));
                let connect = v5::Connect {
                    keep_alive,
                    client_id: settings.client_id.clone(),
                    clean_start: false,
                    properties: Some(properties),
                };
                let login = login.map(|(user, password)| v5::Login::new(user, password));
                write_v5(&v5::Packet::Connect(connect, None, login), buf)
            }
        }
    }

    /// SUBSCRIBE to one filter.
    pub(crate) fn subscribe(
        &self,
        pkid: u16,
        filter: &str,
        qos: Qos,
        buf: &mut BytesMut,
    ) -> Result<(), CodecError> {
        match self.version {
            Version::V3_1_1 => {
                let qos = match qos {
                    Qos::AtMostOnce => rumqttc::QoS::AtMostOnce,
                    Qos::AtLeastOnce => rumqttc::QoS::AtLeastOnce,
                };
                let mut subscribe = v4::Subscribe::new(filter, qos);
                subscribe.pkid = pkid;
                write_v4(&v4::Packet::Subscribe(subscribe), buf)
            }
            Version::V5 => {
                let qos = match qos {
                    Qos::AtMostOnce => rumqttc::v5::mqttbytes::QoS::AtMostOnce,
                    Qos::AtLeastOnce => rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                };
                let mut subscribe = v5::Subscribe::new(v5::Filter::new(filter, qos), None);
                subscribe.pkid = pkid;
                write_v5(&v5::Packet::Subscribe(subscribe), buf)
            }
        }
    }

    /// PUBACK for message `pkid` (MQTT 5: with `reason`).
    pub(crate) fn ack(
        &self,
        pkid: u16,
        reason: AckReason,
        buf: &mut BytesMut,
    ) -> Result<(), CodecError> {
        match self.version {
            Version::V3_1_1 => write_v4(&v4::Packet::PubAck(v4::PubAck::new(pkid)), buf),
            Version::V5 => {
                let mut ack = v5::PubAck::new(pkid, None);
                ack.reason = match reason {
                    AckReason::Success => v5::PubAckReason::Success,
                    AckReason::Refused => v5::PubAckReason::ImplementationSpecificError,
                    AckReason::NotAuthorized => v5::PubAckReason::NotAuthorized,
                    AckReason::PayloadFormatInvalid => v5::PubAckReason::PayloadFormatInvalid,
                };
                write_v5(&v5::Packet::PubAck(ack), buf)
            }
        }
    }

    /// PINGREQ.
    pub(crate) fn ping(&self, buf: &mut BytesMut) -> Result<(), CodecError> {
        match self.version {
            Version::V3_1_1 => write_v4(&v4::Packet::PingReq, buf),
            Version::V5 => write_v5(&v5::Packet::PingReq(v5::PingReq), buf),
        }
    }

    /// DISCONNECT, normal (MQTT 5: the session stays, as its expiry says).
    pub(crate) fn disconnect(&self, buf: &mut BytesMut) -> Result<(), CodecError> {
        match self.version {
            Version::V3_1_1 => write_v4(&v4::Packet::Disconnect, buf),
            Version::V5 => write_v5(
                &v5::Packet::Disconnect(v5::Disconnect {
                    reason_code: v5::DisconnectReasonCode::NormalDisconnection,
                    properties: None,
                }),
                buf,
            ),
        }
    }

    /// The next complete packet at the front of `buf` (taken from it), or
    /// `None` while it holds only part of one.
    fn decode(&self, buf: &mut BytesMut) -> Result<Option<Incoming>, CodecError> {
        match self.version {
            Version::V3_1_1 => match v4::Packet::read(buf, self.max_incoming_bytes) {
                Ok(packet) => Ok(Some(incoming_v4(packet))),
                Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => Ok(None),
                Err(err) => Err(CodecError(format!("a packet from the broker: {err}"))),
            },
            Version::V5 => {
                let max = u32::try_from(self.max_incoming_bytes).unwrap_or(u32::MAX);
                match v5::Packet::read(buf, Some(max)) {
                    Ok(packet) => Ok(Some(incoming_v5(packet))),
                    Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) => Ok(None),
                    Err(err) => Err(CodecError(format!("a packet from the broker: {err}"))),
                }
            }
        }
    }
}

fn write_v4(packet: &v4::Packet, buf: &mut BytesMut) -> Result<(), CodecError> {
    packet
        .write(buf, usize::MAX)
        .map(drop)
        .map_err(|err| CodecError(format!("cannot encode a packet: {err}")))
}

fn write_v5(packet: &v5::Packet, buf: &mut BytesMut) -> Result<(), CodecError> {
    packet
        .write(buf, None)
        .map(drop)
        .map_err(|err| CodecError(format!("cannot encode a packet: {err}")))
}

fn incoming_v4(packet: v4::Packet) -> Incoming {
    match packet {
        v4::Packet::ConnAck(ack) => Incoming::ConnAck {
            session_present: ack.session_present,
            refused: (ack.code != v4::ConnectReturnCode::Success)
                .then(|| format!("{:?}", ack.code)),
        },
        v4::Packet::Publish(publish) if publish.qos == rumqttc::QoS::ExactlyOnce => {
            Incoming::Unexpected("a QoS 2 message (Polis subscribes at QoS 1 at most)")
        }
        v4::Packet::Publish(publish) => Incoming::Publish(Publish::V3(publish)),
        v4::Packet::SubAck(ack) => Incoming::SubAck(
            match ack
                .return_codes
                .iter()
                .find(|code| matches!(code, v4::SubscribeReasonCode::Failure))
            {
                Some(code) => Err(format!("{code:?}")),
                None => Ok(()),
            },
        ),
        v4::Packet::PingResp => Incoming::PingResp,
        _ => Incoming::Unexpected("a packet a broker does not send to a subscriber"),
    }
}

fn incoming_v5(packet: v5::Packet) -> Incoming {
    match packet {
        v5::Packet::ConnAck(ack) => Incoming::ConnAck {
            session_present: ack.session_present,
            refused: (ack.code != v5::ConnectReturnCode::Success)
                .then(|| format!("{:?}", ack.code)),
        },
        v5::Packet::Publish(publish) if publish.qos == rumqttc::v5::mqttbytes::QoS::ExactlyOnce => {
            Incoming::Unexpected("a QoS 2 message (Polis subscribes at QoS 1 at most)")
        }
        v5::Packet::Publish(publish) => Incoming::Publish(Publish::V5(publish)),
        v5::Packet::SubAck(ack) => Incoming::SubAck(
            match ack
                .return_codes
                .iter()
                .find(|code| !matches!(code, v5::SubscribeReasonCode::Success(_)))
            {
                Some(code) => Err(format!("{code:?}")),
                None => Ok(()),
            },
        ),
        v5::Packet::PingResp(_) => Incoming::PingResp,
        v5::Packet::Disconnect(disconnect) => {
            Incoming::Disconnect(format!("{:?}", disconnect.reason_code))
        }
        _ => Incoming::Unexpected("a packet a broker does not send to a subscriber"),
    }
}

/// A byte stream to the broker: TCP or TLS over TCP.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One open connection.
struct Connection {
    stream: Box<dyn Io>,
    read: BytesMut,
    write: BytesMut,
    events: VecDeque<Received>,
    /// When the next PINGREQ is due.
    next_ping: Instant,
    /// A PINGREQ went and its PINGRESP has not come.
    ping_outstanding: bool,
    /// A DISCONNECT is queued: the connection ends once it is written.
    closing: bool,
    /// The last packet identifier used for a SUBSCRIBE.
    last_pkid: u16,
}

impl Connection {
    /// Writes everything queued (cancel-safe: what was written is taken
    /// from the buffer, the rest stays for the next call).
    async fn flush(&mut self) -> std::io::Result<()> {
        while !self.write.is_empty() {
            self.stream.write_buf(&mut self.write).await?;
        }
        self.stream.flush().await
    }
}

/// The connection half, polled for events; it connects (again) on the
/// first poll after a failure.
pub(crate) struct EventLoop {
    settings: SourceSettings,
    codec: Codec,
    connection: Option<Connection>,
    keep_alive: Duration,
}

/// The event loop of a source with `settings`; it connects on its first
/// poll.
pub(crate) fn connect(settings: &SourceSettings) -> EventLoop {
    let max_incoming_bytes = settings
        .max_payload_bytes
        .saturating_add(PACKET_OVERHEAD_BYTES);
    EventLoop {
        settings: settings.clone(),
        codec: Codec::new(settings.version, max_incoming_bytes),
        connection: None,
        keep_alive: Duration::from_secs(u64::from(settings.keep_alive_secs.max(5))),
    }
}

impl EventLoop {
    /// The next event, or why the connection failed (the next call
    /// connects again).
    pub(crate) async fn poll(&mut self) -> Result<Received, String> {
        let result = self.step().await;
        if result.is_err() {
            self.connection = None;
        }
        result
    }

    async fn step(&mut self) -> Result<Received, String> {
        if self.connection.is_none() {
            let (connection, session_present) = tokio::time::timeout(
                CONNECTION_TIMEOUT,
                open(&self.settings, &self.codec, self.keep_alive),
            )
            .await
            .map_err(|_| format!("no CONNACK within {CONNECTION_TIMEOUT:?}"))??;
            self.connection = Some(connection);
            return Ok(Received::Connected { session_present });
        }
        loop {
            let Some(connection) = self.connection.as_mut() else {
                return Err("not connected".into());
            };
            // Everything the source queued goes before anything more is read.
            connection
                .flush()
                .await
                .map_err(|err| format!("writing to the broker: {err}"))?;
            if connection.closing {
                let _ = connection.stream.shutdown().await;
                return Err("disconnected as asked".into());
            }
            if let Some(event) = connection.events.pop_front() {
                return Ok(event);
            }
            connection.read.reserve(READ_CHUNK_BYTES);
            tokio::select! {
                read = connection.stream.read_buf(&mut connection.read) => {
                    match read {
                        Ok(0) => return Err("the broker closed the connection".into()),
                        Ok(_) => self.decode_all()?,
                        Err(err) => return Err(format!("reading from the broker: {err}")),
                    }
                }
                () = tokio::time::sleep_until(connection.next_ping) => {
                    if connection.ping_outstanding {
                        return Err(format!("no PINGRESP within {:?}", self.keep_alive));
                    }
                    self.codec.ping(&mut connection.write).map_err(|e| e.to_string())?;
                    connection.ping_outstanding = true;
                    connection.next_ping = Instant::now() + self.keep_alive;
                }
            }
        }
    }

    /// True while packets the source queued are not yet written.
    pub(crate) fn has_unwritten(&self) -> bool {
        self.connection
            .as_ref()
            .is_some_and(|c| !c.write.is_empty())
    }

    /// Queues a SUBSCRIBE to `filter` at `qos` (written on the next poll;
    /// nothing without a connection).
    pub(crate) fn subscribe(&mut self, filter: &str, qos: Qos) -> Result<(), CodecError> {
        let Some(connection) = self.connection.as_mut() else {
            return Ok(());
        };
        // Packet identifiers are 1..=65535 (0 is not one).
        connection.last_pkid = connection.last_pkid.checked_add(1).unwrap_or(1);
        self.codec
            .subscribe(connection.last_pkid, filter, qos, &mut connection.write)
    }

    /// Queues the PUBACK of `publish` with `reason` (written on the next
    /// poll). Without a connection nothing is queued: a message from a
    /// connection that is gone comes again on the next one.
    pub(crate) fn ack(&mut self, publish: &Publish, reason: AckReason) -> Result<(), CodecError> {
        let Some(connection) = self.connection.as_mut() else {
            return Ok(());
        };
        self.codec
            .ack(publish.pkid(), reason, &mut connection.write)
    }

    /// Queues a DISCONNECT (the session stays on the broker); the next poll
    /// writes it and ends the connection.
    pub(crate) fn disconnect(&mut self) -> Result<(), CodecError> {
        let Some(connection) = self.connection.as_mut() else {
            return Ok(());
        };
        connection.closing = true;
        self.codec.disconnect(&mut connection.write)
    }

    /// Decodes every complete packet read so far into events.
    fn decode_all(&mut self) -> Result<(), String> {
        let Some(connection) = self.connection.as_mut() else {
            return Ok(());
        };
        while let Some(packet) = self
            .codec
            .decode(&mut connection.read)
            .map_err(|err| err.to_string())?
        {
            match packet {
                Incoming::Publish(publish) => {
                    connection.events.push_back(Received::Message(publish));
                }
                Incoming::SubAck(result) => {
                    connection.events.push_back(Received::Subscribed(result));
                }
                Incoming::PingResp => connection.ping_outstanding = false,
                Incoming::Disconnect(reason) => {
                    return Err(format!("the broker disconnected: {reason}"));
                }
                Incoming::ConnAck { .. } => {
                    return Err("a second CONNACK from the broker".into());
                }
                Incoming::Unexpected(what) => {
                    return Err(format!("the broker sent {what}"));
                }
            }
        }
        Ok(())
    }
}

/// Opens TCP (and TLS) to the broker of `settings`, sends CONNECT and waits
/// for its CONNACK.
async fn open(
    settings: &SourceSettings,
    codec: &Codec,
    keep_alive: Duration,
) -> Result<(Connection, bool), String> {
    let broker = &settings.broker;
    let tcp = tokio::net::TcpStream::connect((broker.host.as_str(), broker.port))
        .await
        .map_err(|err| format!("cannot connect to {broker}: {err}"))?;
    tcp.set_nodelay(true)
        .map_err(|err| format!("TCP_NODELAY: {err}"))?;
    let stream: Box<dyn Io> = match &settings.tls {
        Some(config) => {
            let name = rustls_pki_types::ServerName::try_from(broker.host.clone())
                .map_err(|err| format!("{}: not a TLS server name: {err}", broker.host))?;
            let tls = rumqttc::tokio_rustls::TlsConnector::from(Arc::clone(config))
                .connect(name, tcp)
                .await
                .map_err(|err| format!("TLS with {broker}: {err}"))?;
            Box::new(tls)
        }
        None => Box::new(tcp),
    };
    let mut connection = Connection {
        stream,
        read: BytesMut::with_capacity(READ_CHUNK_BYTES),
        write: BytesMut::new(),
        events: VecDeque::new(),
        next_ping: Instant::now() + keep_alive,
        ping_outstanding: false,
        closing: false,
        last_pkid: 0,
    };
    codec
        .connect(settings, &mut connection.write)
        .map_err(|err| err.to_string())?;
    connection
        .flush()
        .await
        .map_err(|err| format!("writing CONNECT: {err}"))?;
    loop {
        if let Some(packet) = codec
            .decode(&mut connection.read)
            .map_err(|err| err.to_string())?
        {
            return match packet {
                Incoming::ConnAck {
                    refused: Some(code),
                    ..
                } => Err(format!("the broker refused the connection: {code}")),
                Incoming::ConnAck {
                    session_present, ..
                } => Ok((connection, session_present)),
                other => Err(format!("expected CONNACK, the broker sent {other:?}")),
            };
        }
        connection.read.reserve(READ_CHUNK_BYTES);
        let read = connection
            .stream
            .read_buf(&mut connection.read)
            .await
            .map_err(|err| format!("reading CONNACK: {err}"))?;
        if read == 0 {
            return Err("the broker closed the connection before its CONNACK".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::BrokerUrl;

    fn settings(version: Version) -> SourceSettings {
        SourceSettings {
            name: "test".into(),
            broker: BrokerUrl::parse("mqtt://localhost").expect("url"),
            tls: None,
            credentials: None,
            client_id: "polis-1".into(),
            version,
            qos: Qos::AtLeastOnce,
            session_expiry_secs: 3600,
            max_in_flight: 256,
            max_payload_bytes: 1024,
            keep_alive_secs: 30,
            scope: None,
            subscriptions: Vec::new(),
        }
    }

    #[test]
    fn mqtt5_connect_asks_for_a_persistent_session_and_the_receive_maximum() {
        let codec = Codec::new(Version::V5, 4096);
        let mut buf = BytesMut::new();
        codec
            .connect(&settings(Version::V5), &mut buf)
            .expect("encode");
        match v5::Packet::read(&mut buf, None).expect("decode") {
            v5::Packet::Connect(connect, None, None) => {
                assert!(!connect.clean_start);
                assert_eq!(connect.client_id, "polis-1");
                assert_eq!(connect.keep_alive, 30);
                let properties = connect.properties.expect("properties");
                assert_eq!(properties.session_expiry_interval, Some(3600));
                assert_eq!(properties.receive_maximum, Some(256));
                assert_eq!(properties.max_packet_size, Some(4096));
            }
            other => panic!("not a CONNECT: {other:?}"),
        }
    }

    #[test]
    fn mqtt311_connect_keeps_the_session() {
        let codec = Codec::new(Version::V3_1_1, 4096);
        let mut buf = BytesMut::new();
        codec
            .connect(&settings(Version::V3_1_1), &mut buf)
            .expect("encode");
        // Protocol name "MQTT", level 4, flags: clean session off.
        assert_eq!(&buf[2..10], &[0, 4, b'M', b'Q', b'T', b'T', 4, 0]);
    }

    #[test]
    fn mqtt5_pubacks_carry_the_reason_code_on_the_wire() {
        let codec = Codec::new(Version::V5, 4096);
        let mut buf = BytesMut::new();
        codec.ack(7, AckReason::Success, &mut buf).expect("encode");
        assert_eq!(&buf[..], &[0x40, 2, 0, 7], "success: reason omitted");
        for (reason, code) in [
            (AckReason::Refused, 0x83),
            (AckReason::NotAuthorized, 0x87),
            (AckReason::PayloadFormatInvalid, 0x99),
        ] {
            buf.clear();
            codec.ack(0x0102, reason, &mut buf).expect("encode");
            assert_eq!(buf[0], 0x40, "PUBACK");
            assert_eq!(&buf[2..5], &[1, 2, code], "{reason:?}");
        }
        // MQTT 3.1.1 has no reason code.
        buf.clear();
        Codec::new(Version::V3_1_1, 4096)
            .ack(7, AckReason::PayloadFormatInvalid, &mut buf)
            .expect("encode");
        assert_eq!(&buf[..], &[0x40, 2, 0, 7]);
    }

    #[test]
    fn packets_split_across_reads_decode_once_whole() {
        let codec = Codec::new(Version::V5, 4096);
        let mut wire = BytesMut::new();
        let publish = v5::Publish::new(
            "city/s1",
            rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
            "21.5",
            None,
        );
        let mut with_id = publish.clone();
        with_id.pkid = 9;
        write_v5(&v5::Packet::Publish(with_id), &mut wire).expect("encode");
        write_v5(&v5::Packet::PingResp(v5::PingResp), &mut wire).expect("encode");
        let mut read = BytesMut::new();
        let mut seen = Vec::new();
        for byte in wire {
            read.extend_from_slice(&[byte]);
            while let Some(packet) = codec.decode(&mut read).expect("valid") {
                seen.push(packet);
            }
        }
        assert_eq!(seen.len(), 2);
        match &seen[0] {
            Incoming::Publish(publish) => {
                assert_eq!(publish.topic(), "city/s1");
                assert_eq!(publish.payload(), b"21.5");
                assert_eq!(publish.pkid(), 9);
                assert!(publish.needs_ack());
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(seen[1], Incoming::PingResp));
    }

    #[test]
    fn oversized_and_qos2_packets_are_errors_not_messages() {
        let codec = Codec::new(Version::V5, 64);
        let mut wire = BytesMut::new();
        let big = v5::Publish::new(
            "city/s1",
            rumqttc::v5::mqttbytes::QoS::AtMostOnce,
            vec![b'1'; 200],
            None,
        );
        write_v5(&v5::Packet::Publish(big), &mut wire).expect("encode");
        assert!(codec.decode(&mut wire).is_err(), "larger than announced");

        let codec = Codec::new(Version::V3_1_1, 4096);
        let mut wire = BytesMut::new();
        let mut qos2 = v4::Publish::new("city/s1", rumqttc::QoS::ExactlyOnce, "1");
        qos2.pkid = 3;
        write_v4(&v4::Packet::Publish(qos2), &mut wire).expect("encode");
        assert!(matches!(
            codec.decode(&mut wire).expect("well-formed"),
            Some(Incoming::Unexpected(_))
        ));
    }
}
