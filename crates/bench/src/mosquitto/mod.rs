//! The mosquitto baseline: the broker the benchmarks start (pinned to the
//! server core) and stop ([`Broker`]), and the MQTT client settings and
//! payload both scenarios use; [`fan_in()`] is the ingest scenario's
//! baseline.

use std::time::Duration;

use crate::measure::Window;

mod broker;
mod fan_in;

pub(crate) use broker::{Broker, BrokerArgs, supervise};
pub(crate) use fan_in::{FanIn, fan_in};

/// The readings' payload in the MQTT baseline: send time (µs on the run's
/// clock), device time (ms since the epoch), value.
pub(crate) const MQTT_PAYLOAD_BYTES: usize = 24;

/// A reading's MQTT payload (see [`MQTT_PAYLOAD_BYTES`]).
pub(crate) fn payload(sent_us: u64, device_time_ms: i64, value: f64) -> Vec<u8> {
    let mut payload = Vec::with_capacity(MQTT_PAYLOAD_BYTES);
    payload.extend_from_slice(&sent_us.to_le_bytes());
    payload.extend_from_slice(&device_time_ms.to_le_bytes());
    payload.extend_from_slice(&value.to_le_bytes());
    payload
}

/// Microseconds from the send time stamped at the start of an MQTT
/// baseline `payload` to now, if that send time lies in `window`'s measured
/// part.
pub(crate) fn measured_latency_us(window: &Window, payload: &[u8]) -> Option<u64> {
    let now_us = window.clock.now_us();
    let stamp: [u8; 8] = payload.get(..8)?.try_into().ok()?;
    let sent_us = u64::from_le_bytes(stamp);
    window
        .measured(sent_us)
        .then(|| now_us.saturating_sub(sent_us))
}

pub(crate) fn mqtt_options(client_id: String, port: u16) -> rumqttc::MqttOptions {
    let mut options = rumqttc::MqttOptions::new(client_id, "127.0.0.1", port);
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_clean_session(true)
        .set_max_packet_size(64 * 1024, 64 * 1024);
    options
}

pub(crate) fn mqtt_eventloop(mut eventloop: rumqttc::EventLoop) -> rumqttc::EventLoop {
    let mut network = eventloop.network_options();
    network.set_tcp_nodelay(true);
    eventloop.set_network_options(network);
    eventloop
}
