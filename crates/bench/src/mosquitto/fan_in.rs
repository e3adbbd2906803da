//! The ingest scenario's mosquitto baseline: gateways publishing at QoS 1
//! as fast as they are acknowledged, one consumer subscribed to the whole
//! city.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::{Broker, measured_latency_us, mqtt_eventloop, mqtt_options, payload};
use crate::layout::Layout;
use crate::measure::{LatencyHistogram, STALL_TIMEOUT, Window, start_clock, unix_ms};
use crate::pin::Cores;
use crate::procstat::{Pid, ProcessSample, ProcessUse};
use crate::scene::grid_scene;

/// Publish requests a baseline gateway's client queues ahead of its
/// connection (at ~90,000 publishes/s: under 0.2 ms of queue).
const FAN_IN_REQUEST_QUEUE: usize = 16;
/// Tiles per side of the topic grid, as in the fan-out scenario.
const FAN_IN_TILES: usize = 32;

/// What mosquitto did as the ingest baseline, over the measured window.
#[derive(Debug)]
pub(crate) struct FanIn {
    /// Publishes acknowledged (PUBACK) per second.
    pub(crate) acknowledged_per_s: f64,
    /// Readings per second that reached the consumer subscribed to the city.
    pub(crate) delivered_per_s: f64,
    /// Publish to PUBACK, ms.
    pub(crate) ack_p50_ms: f64,
    pub(crate) ack_p99_ms: f64,
    /// Publish to arrival at the consumer, ms.
    pub(crate) delivery_p50_ms: f64,
    pub(crate) delivery_p99_ms: f64,
    /// The broker process.
    pub(crate) broker: ProcessUse,
    /// The load generator's process (publishers and consumer).
    pub(crate) load: ProcessUse,
    /// Where each side ran.
    pub(crate) cores: serde_json::Value,
    /// The same, in words.
    pub(crate) ran_on: String,
}

impl FanIn {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "acknowledged_readings_per_s": self.acknowledged_per_s.round(),
            "delivered_to_consumer_per_s": self.delivered_per_s.round(),
            "ack_latency_ms_p50": self.ack_p50_ms,
            "ack_latency_ms_p99": self.ack_p99_ms,
            "delivery_latency_ms_p50": self.delivery_p50_ms,
            "delivery_latency_ms_p99": self.delivery_p99_ms,
            "broker_cpu_cores": self.broker.cores,
            "broker_run_queue_wait_s_per_s": self.broker.wait,
            "load_cpu_cores": self.load.cores,
            "load_run_queue_wait_s_per_s": self.load.wait,
            "cores": self.cores,
        })
    }
}

/// Figures the baseline's tasks fill in.
struct FanInTally {
    acknowledged: AtomicU64,
    ack_latency: LatencyHistogram,
    delivered: AtomicU64,
    delivery_latency: LatencyHistogram,
}

/// The ingest job done the MQTT way, on `runtime`: `gateways` connections
/// publish readings of `sensors` sensors (each to `city/TX/TY/sID`, 24-byte
/// payload) at QoS 1 as fast as mosquitto acknowledges them, and one
/// consumer — what would feed a twin in an MQTT deployment — subscribes to
/// `city/#`. `Ok(None)` when mosquitto is not installed.
pub(crate) fn fan_in(
    runtime: &tokio::runtime::Runtime,
    dir: &Path,
    gateways: usize,
    sensors: usize,
    inflight: u16,
    seconds: f64,
    cores: Cores,
) -> anyhow::Result<Option<FanIn>> {
    let Some(broker) = Broker::start(dir, false, cores.server)? else {
        return Ok(None);
    };
    let port = broker.port;
    start_clock();
    let layout = Layout::new(sensors, FAN_IN_TILES, 0, grid_scene(1).georeference)?;
    let topics: Arc<Vec<String>> = Arc::new((0..sensors).map(|s| layout.topic(s)).collect());
    let tally = Arc::new(FanInTally {
        acknowledged: AtomicU64::new(0),
        ack_latency: LatencyHistogram::new(),
        delivered: AtomicU64::new(0),
        delivery_latency: LatencyHistogram::new(),
    });
    let figures = runtime.block_on(async {
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let window_cell = Arc::new(std::sync::OnceLock::<Window>::new());
        let consumer = tokio::spawn(fan_in_consumer(
            port,
            Arc::clone(&window_cell),
            Arc::clone(&tally),
            ready_tx,
        ));
        tokio::time::timeout(Duration::from_secs(10), ready_rx)
            .await
            .context("the MQTT consumer was not subscribed within 10 s")?
            .context("the MQTT consumer stopped before subscribing")?;
        let window = Window::starting_now(seconds);
        let _ = window_cell.set(window);
        let per_gateway = sensors / gateways;
        let publishers: Vec<_> = (0..gateways)
            .map(|gateway| {
                tokio::spawn(fan_in_publisher(
                    port,
                    gateway,
                    gateway * per_gateway..(gateway + 1) * per_gateway,
                    Arc::clone(&topics),
                    inflight,
                    window,
                    Arc::clone(&tally),
                ))
            })
            .collect();
        tokio::time::sleep_until(window.measure_from.into()).await;
        let (broker_before, load_before) = (
            ProcessSample::take(broker.pid()),
            ProcessSample::take(Pid::current()),
        );
        tokio::time::sleep_until(window.until.into()).await;
        let (broker_after, load_after) = (
            ProcessSample::take(broker.pid()),
            ProcessSample::take(Pid::current()),
        );
        for publisher in publishers {
            publisher
                .await
                .context("an MQTT publisher panicked")?
                .context("an MQTT publisher failed")?;
        }
        consumer
            .await
            .context("the MQTT consumer panicked")?
            .context("the MQTT consumer failed")?;
        let measured = window
            .until
            .duration_since(window.measure_from)
            .as_secs_f64();
        Ok::<_, anyhow::Error>(FanIn {
            acknowledged_per_s: tally.acknowledged.load(Ordering::Relaxed) as f64 / measured,
            delivered_per_s: tally.delivered.load(Ordering::Relaxed) as f64 / measured,
            ack_p50_ms: tally.ack_latency.percentile_ms(50.0),
            ack_p99_ms: tally.ack_latency.percentile_ms(99.0),
            delivery_p50_ms: tally.delivery_latency.percentile_ms(50.0),
            delivery_p99_ms: tally.delivery_latency.percentile_ms(99.0),
            broker: broker_before.until(&broker_after),
            load: load_before.until(&load_after),
            cores: cores.json(Some(broker.pid())),
            ran_on: cores.describe(Some(broker.pid())),
        })
    })?;
    drop(broker);
    Ok(Some(figures))
}

/// One baseline gateway: publishes its sensors' readings in turn at QoS 1,
/// as fast as the client takes them, from the window's start to its end of
/// sending; counts PUBACKs of publishes made in the measured window.
async fn fan_in_publisher(
    port: u16,
    gateway: usize,
    sensors: std::ops::Range<usize>,
    topics: Arc<Vec<String>>,
    inflight: u16,
    window: Window,
    tally: Arc<FanInTally>,
) -> anyhow::Result<()> {
    use rumqttc::{Event, Outgoing, Packet, QoS};
    let mut options = mqtt_options(format!("gateway-{gateway}"), port);
    options.set_inflight(inflight.max(1));
    // A short request queue: a reading's send time is stamped before
    // `publish` waits for room, so a long queue would count time spent in the
    // client as the broker's.
    let (client, eventloop) = rumqttc::AsyncClient::new(options, FAN_IN_REQUEST_QUEUE);
    let mut eventloop = mqtt_eventloop(eventloop);
    let finished = Arc::new(AtomicBool::new(false));
    let driver = {
        let finished = Arc::clone(&finished);
        let tally = Arc::clone(&tally);
        tokio::spawn(async move {
            // When each packet id was handed to the connection.
            let mut sent_at: Vec<Option<Instant>> = vec![None; usize::from(u16::MAX) + 1];
            loop {
                let event = tokio::select! {
                    event = eventloop.poll() => event,
                    () = tokio::time::sleep_until(window.end.into()) => return Ok(()),
                };
                match event {
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                        sent_at[usize::from(pkid)] = Some(Instant::now());
                    }
                    Ok(Event::Incoming(Packet::PubAck(ack))) => {
                        let now = Instant::now();
                        if let Some(at) = sent_at[usize::from(ack.pkid)].take()
                            && at >= window.measure_from
                            && now < window.until
                        {
                            tally.acknowledged.fetch_add(1, Ordering::Relaxed);
                            let us = now.duration_since(at).as_micros();
                            tally
                                .ack_latency
                                .record(u64::try_from(us).unwrap_or(u64::MAX));
                        }
                    }
                    Ok(_) => {}
                    // After the DISCONNECT the broker closes the connection.
                    Err(_) if finished.load(Ordering::Relaxed) => return Ok(()),
                    Err(error) => return Err(anyhow::Error::from(error)),
                }
            }
        })
    };
    let mut step = 0u64;
    'send: loop {
        for sensor in sensors.clone() {
            if Instant::now() >= window.until {
                break 'send;
            }
            let payload = payload(window.clock.now_us(), unix_ms(), step as f64);
            let publish = client.publish(topics[sensor].clone(), QoS::AtLeastOnce, false, payload);
            tokio::time::timeout(STALL_TIMEOUT, publish)
                .await
                .context("the MQTT client took no readings for 10 s")??;
        }
        step += 1;
    }
    // Let the last publishes be acknowledged before disconnecting.
    tokio::time::sleep_until(window.end.into()).await;
    finished.store(true, Ordering::Relaxed);
    let _ = client.try_disconnect();
    match driver.await {
        Ok(result) => result,
        Err(error) => Err(error.into()),
    }
}

/// The baseline's consumer: one connection subscribed to `city/#`, counting
/// the readings published in the measured window and their latency.
async fn fan_in_consumer(
    port: u16,
    window: Arc<std::sync::OnceLock<Window>>,
    tally: Arc<FanInTally>,
    ready: tokio::sync::oneshot::Sender<()>,
) -> anyhow::Result<()> {
    use rumqttc::{Event, Packet, QoS};
    let (client, eventloop) = rumqttc::AsyncClient::new(mqtt_options("consumer".into(), port), 16);
    let mut eventloop = mqtt_eventloop(eventloop);
    client.subscribe("city/#", QoS::AtMostOnce).await?;
    let mut ready = Some(ready);
    loop {
        let end = window.get().map(|w| w.end);
        let event = tokio::select! {
            event = eventloop.poll() => event?,
            () = async {
                match end {
                    Some(end) => tokio::time::sleep_until(end.into()).await,
                    None => std::future::pending().await,
                }
            } => break,
        };
        match event {
            Event::Incoming(Packet::SubAck(_)) => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(());
                }
            }
            Event::Incoming(Packet::Publish(publish)) => {
                if let Some(us) = window
                    .get()
                    .and_then(|w| measured_latency_us(w, &publish.payload))
                {
                    tally.delivery_latency.record(us);
                    tally.delivered.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ => {}
        }
    }
    let _ = client.try_disconnect();
    Ok(())
}
