//! `polis replay --mqtt URL`: the same real-data feeds, published to an MQTT
//! broker (one message per reading on `TOPIC_PREFIX{sensor}`, QoS 1, SenML
//! or mapped JSON) instead of pushed over QUIC, so the demo runs through a
//! real broker and a Polis `[[mqtt]]` source.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::ValueEnum;
use polis_payload::{SenmlRecord, encode_json, encode_senml_json};
use polis_replay::{FeedData, ReplayOptions, plan_feeds, sim_time_ms};
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{info, warn};

/// Messages published but not yet acknowledged by the broker, at most.
const IN_FLIGHT: u16 = 100;
/// Longest wait for the broker to acknowledge a round.
const ROUND_TIMEOUT: Duration = Duration::from_secs(60);

/// How each reading is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum MqttFormat {
    /// A SenML JSON pack of one record: `[{"n":…,"v":…,"t":…}]` (a Polis
    /// subscription with `format = "senml"`).
    Senml,
    /// `{"sensor":…,"time":"RFC 3339","value":…}` (a subscription with
    /// `format = "json"`, `sensor_pointer = "/sensor"`, `value_pointer =
    /// "/value"`, `time_pointer = "/time"`).
    Json,
}

/// Totals of an MQTT replay.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct MqttReplayStats {
    /// Rounds whose every message the broker acknowledged.
    pub(crate) rounds: u64,
    /// Messages published.
    pub(crate) published: u64,
    /// Messages the broker acknowledged (PUBACK).
    pub(crate) acknowledged: u64,
}

/// Publishes `scene`'s feeds to the broker at `url` until `options.duration`
/// has passed (forever without one), one round per interval, each round
/// acknowledged by the broker before the next.
pub(crate) async fn replay_to_broker(
    url: &str,
    format: MqttFormat,
    topic_prefix: &str,
    scene: &polis_scene::Scene,
    options: &ReplayOptions,
) -> anyhow::Result<MqttReplayStats> {
    let broker = polis_mqtt::BrokerUrl::parse(url).with_context(|| format!("--mqtt {url}"))?;
    if broker.tls {
        bail!("--mqtt: replay publishes over plain TCP (mqtt://); use a local broker");
    }
    let data = FeedData::bundled()?;
    let plan = plan_feeds(scene);
    info!(fed = plan.feeds.len(), broker = %broker, "replaying real feeds to an MQTT broker");
    let client_id = format!("polis-replay-{}", std::process::id());
    let mut mqtt = rumqttc::MqttOptions::new(client_id, broker.host.clone(), broker.port);
    mqtt.set_keep_alive(Duration::from_secs(30))
        .set_inflight(IN_FLIGHT)
        .set_clean_session(true);
    let (client, mut eventloop) = rumqttc::AsyncClient::new(mqtt, usize::from(IN_FLIGHT));
    let acknowledged = Arc::new(AtomicU64::new(0));
    let ack_signal = Arc::new(Notify::new());
    let (acked, signal) = (Arc::clone(&acknowledged), Arc::clone(&ack_signal));
    let mut connection = tokio::spawn(async move {
        let mut failing = false;
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => {
                    acked.fetch_add(1, Ordering::Relaxed);
                    signal.notify_one();
                }
                Ok(rumqttc::Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => failing = false,
                Ok(_) => {}
                Err(err) => {
                    if !failing {
                        warn!("broker connection: {err}; retrying");
                        failing = true;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    });
    let mut rounds = polis_replay::Rounds::new(options.interval, options.duration);
    let mut stats = MqttReplayStats::default();
    let result = async {
        while rounds.next().await {
            let sim_ms = sim_time_ms(options.start_ms, options.speed, rounds.elapsed());
            // Never ahead of the wall clock: servers refuse future times.
            let stamp_ms = sim_ms.min(crate::startup::unix_now_ms());
            for reading in plan.readings_at(&data, sim_ms) {
                let payload = match format {
                    MqttFormat::Senml => encode_senml_json(
                        "",
                        &[SenmlRecord {
                            name: &reading.sensor,
                            time_ms: stamp_ms,
                            value: reading.value,
                            unit: None,
                        }],
                    ),
                    MqttFormat::Json => encode_json(&reading.sensor, stamp_ms, reading.value),
                };
                let payload = match payload {
                    Ok(payload) => payload,
                    Err(err) => {
                        warn!(sensor = %reading.sensor, "not published: {err}");
                        continue;
                    }
                };
                client
                    .publish(
                        format!("{topic_prefix}{}", reading.sensor),
                        rumqttc::QoS::AtLeastOnce,
                        false,
                        payload,
                    )
                    .await
                    .context("the MQTT client stopped")?;
                stats.published += 1;
            }
            let round_deadline = Instant::now() + ROUND_TIMEOUT;
            while acknowledged.load(Ordering::Relaxed) < stats.published {
                if tokio::time::timeout_at(round_deadline, ack_signal.notified())
                    .await
                    .is_err()
                {
                    bail!("the broker did not acknowledge a round within {ROUND_TIMEOUT:?}");
                }
            }
            stats.rounds += 1;
            stats.acknowledged = acknowledged.load(Ordering::Relaxed);
        }
        Ok(())
    }
    .await;
    // The event loop ends once it has written the DISCONNECT.
    if client.disconnect().await.is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(1), &mut connection).await;
    }
    connection.abort();
    result.map(|()| stats)
}
