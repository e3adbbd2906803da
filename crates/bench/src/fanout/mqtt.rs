//! mosquitto as the fan-out phase's system under test: the broker in its
//! own process, one MQTT connection per viewer subscribed to the topic
//! filters of its 3 × 3 tiles, and one publisher connection sending each
//! change at QoS 0 to its sensor's topic.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::Context as _;
use tokio::task::JoinHandle;

use super::phase::{Pacer, PhaseLoad, System};
use crate::measure::{STALL_TIMEOUT, Window, unix_ms};
use crate::mosquitto::{Broker, measured_latency_us, mqtt_eventloop, mqtt_options, payload};
use crate::procstat::Pid;

/// A mosquitto broker started for the phase.
pub(super) struct Mosquitto {
    broker: Broker,
}

impl Mosquitto {
    /// Starts the broker on `core` (its configuration in `dir`); `Ok(None)`
    /// when mosquitto is not installed.
    pub(super) fn start(
        dir: &Path,
        nodelay: bool,
        core: Option<usize>,
    ) -> anyhow::Result<Option<Mosquitto>> {
        Ok(Broker::start(dir, nodelay, core)?.map(|broker| Mosquitto { broker }))
    }
}

impl System for Mosquitto {
    fn name(&self) -> &'static str {
        "mosquitto"
    }

    fn pid(&self) -> Pid {
        self.broker.pid()
    }

    fn spawn_viewer(&self, viewer: usize, load: &PhaseLoad) -> JoinHandle<()> {
        let port = self.broker.port;
        let filters = load.layout.filters(viewer);
        let load = load.clone();
        tokio::spawn(async move {
            if let Err(error) = mqtt_viewer(port, viewer, filters, &load).await {
                load.counters.fail(&error);
            }
        })
    }

    fn spawn_sender(&self, window: Window, load: &PhaseLoad) -> JoinHandle<anyhow::Result<()>> {
        tokio::spawn(mqtt_publisher(self.broker.port, window, load.clone()))
    }
}

async fn mqtt_viewer(
    port: u16,
    viewer: usize,
    filters: Vec<String>,
    load: &PhaseLoad,
) -> anyhow::Result<()> {
    use rumqttc::{Event, Packet, QoS, SubscribeFilter};
    let mut stop = load.stop.clone();
    let (client, eventloop) =
        rumqttc::AsyncClient::new(mqtt_options(format!("viewer-{viewer}"), port), 16);
    let mut eventloop = mqtt_eventloop(eventloop);
    client
        .subscribe_many(
            filters
                .into_iter()
                .map(|f| SubscribeFilter::new(f, QoS::AtMostOnce)),
        )
        .await?;
    while Instant::now() < load.hard_stop {
        let event = tokio::select! {
            event = eventloop.poll() => event?,
            _ = stop.wait_for(|stop| *stop) => break,
        };
        match event {
            Event::Incoming(Packet::SubAck(_)) => {
                load.counters.ready.fetch_add(1, Ordering::Relaxed);
            }
            Event::Incoming(Packet::Publish(publish)) => {
                if let Some(us) = load
                    .window
                    .get()
                    .and_then(|w| measured_latency_us(w, &publish.payload))
                {
                    load.record(us);
                }
            }
            _ => {}
        }
    }
    let _ = client.try_disconnect();
    Ok(())
}

async fn mqtt_publisher(port: u16, window: Window, load: PhaseLoad) -> anyhow::Result<()> {
    use rumqttc::{Event, Packet, QoS};
    let (client, eventloop) =
        rumqttc::AsyncClient::new(mqtt_options("gateway".into(), port), 4_096);
    let mut eventloop = mqtt_eventloop(eventloop);
    let connected = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicBool::new(false));
    let driver = {
        let connected = Arc::clone(&connected);
        let finished = Arc::clone(&finished);
        let stop_at = window.end;
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    event = eventloop.poll() => event,
                    () = tokio::time::sleep_until(stop_at.into()) => return Ok(()),
                };
                match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        connected.store(true, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    // After the DISCONNECT the broker closes the connection.
                    Err(_) if finished.load(Ordering::Relaxed) => return Ok(()),
                    Err(error) => return Err(anyhow::Error::from(error)),
                }
            }
        })
    };
    let topics: Vec<String> = (0..load.layout.sensors)
        .map(|s| load.layout.topic(s))
        .collect();
    let mut pacer = Pacer::new(window, &load).await;
    while let Some(burst) = pacer.next().await {
        let device_time_ms = unix_ms();
        for (sensor, sent_us) in burst {
            let payload = payload(sent_us, device_time_ms, sent_us as f64);
            let publish = client.publish(topics[sensor].clone(), QoS::AtMostOnce, false, payload);
            tokio::time::timeout(STALL_TIMEOUT, publish)
                .await
                .context("the MQTT client took no readings for 10 s")??;
        }
    }
    if !connected.load(Ordering::Relaxed) {
        tracing::warn!("fanout: the MQTT publisher never saw its CONNACK");
    }
    finished.store(true, Ordering::Relaxed);
    let _ = client.try_disconnect();
    match driver.await {
        Ok(result) => result,
        Err(error) => Err(error.into()),
    }
}
