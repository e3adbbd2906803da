//! What the running server exposes about itself: readiness, counters and the
//! Prometheus text rendering of them (by `prometheus-client`).

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bevy::prelude::*;
use polis_net::NetStats;
use polis_twin::{IngestCounters, TwinTick, ViewerBacklog};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet, prometheus_text};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

use crate::bridge::NetLink;

/// Upper bounds of the tick-duration histogram buckets, seconds.
pub(crate) const TICK_BUCKETS_SECS: [f64; 14] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Counters of the running server, shared with other threads (the HTTP
/// endpoint, tests). The twin updates them once per tick.
#[derive(Debug, Default)]
pub struct ServerMetrics {
    /// Ticks run.
    pub ticks: AtomicU64,
    /// Readings received, whatever their outcome.
    pub readings_received: AtomicU64,
    /// Readings that became their sensor's latest value.
    pub readings_accepted: AtomicU64,
    /// Readings older than the latest.
    pub readings_stale: AtomicU64,
    /// Exact repeats of the latest reading.
    pub readings_duplicate: AtomicU64,
    /// Readings refused.
    pub readings_refused: AtomicU64,
    /// Batches applied.
    pub batches: AtomicU64,
    /// Viewers connected to the twin.
    pub viewers: AtomicU64,
    /// Entries waiting in the fullest viewer mailbox at the last tick.
    pub viewer_backlog_max: AtomicU64,
    /// Highest `viewer_backlog_max` seen since start.
    pub viewer_backlog_peak: AtomicU64,
    /// Events waiting in the network channel at the last tick.
    pub net_events_pending: AtomicU64,
    /// Tick durations: count per bucket of [`TICK_BUCKETS_SECS`] (not cumulative).
    tick_buckets: [AtomicU64; TICK_BUCKETS_SECS.len()],
    /// Ticks longer than the last bucket.
    tick_overflow: AtomicU64,
    /// Sum of tick durations, nanoseconds.
    tick_sum_ns: AtomicU64,
}

impl ServerMetrics {
    /// Records how long one tick took.
    pub fn observe_tick(&self, duration: Duration) {
        let secs = duration.as_secs_f64();
        match TICK_BUCKETS_SECS.iter().position(|&bound| secs <= bound) {
            Some(bucket) => self.tick_buckets[bucket].fetch_add(1, Ordering::Relaxed),
            None => self.tick_overflow.fetch_add(1, Ordering::Relaxed),
        };
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        self.tick_sum_ns.fetch_add(nanos, Ordering::Relaxed);
    }
}

/// Facts about the scene being served.
#[derive(Debug, Clone)]
pub struct SceneFacts {
    /// Scene name.
    pub name: String,
    /// Number of assets.
    pub assets: usize,
    /// Number of sensors.
    pub sensors: usize,
}

/// Everything observable about a server, shared between its threads.
#[derive(Debug, Default)]
pub struct Observed {
    /// Set once the scene is loaded, the endpoint bound and the first tick ran.
    pub ready: AtomicBool,
    /// Twin counters.
    pub metrics: ServerMetrics,
    /// Network counters, once the endpoint is up.
    pub net: OnceLock<Arc<NetStats>>,
    /// The scene, once loaded.
    pub scene: OnceLock<SceneFacts>,
    /// History writer counters, when history is enabled.
    pub history: OnceLock<Arc<polis_history::WriterStats>>,
    /// Each MQTT source's counters, when any is configured.
    pub mqtt: OnceLock<Vec<Arc<polis_mqtt::SourceStats>>>,
}

/// The [`Observed`] state as a world resource.
#[derive(Resource, Debug, Clone, Default)]
pub struct ObservedHandle(pub Arc<Observed>);

/// Reads [`Observed`] at each scrape and describes it to a Prometheus
/// registry: the names, help texts, types and labels of the exposition.
#[derive(Debug)]
struct ObservedCollector(Arc<Observed>);

/// Encodes one unlabelled counter; `name` is without its `_total` suffix,
/// which the encoder adds.
fn counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    let counter = ConstCounter::new(value);
    counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)
}

/// Encodes one unlabelled gauge.
fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    let gauge = ConstGauge::new(value);
    gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
}

impl Collector for ObservedCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let observed = &self.0;
        let m = &observed.metrics;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        gauge(
            &mut encoder,
            "polis_ready",
            "1 once the server serves its scene.",
            u64::from(observed.ready.load(Ordering::Relaxed)),
        )?;
        if let Some(scene) = observed.scene.get() {
            // An info metric: the encoder names it `polis_scene_info`.
            encoder
                .encode_descriptor(
                    "polis_scene",
                    "The scene being served.",
                    None,
                    MetricType::Info,
                )?
                .encode_info(&[("scene", scene.name.as_str())])?;
            gauge(
                &mut encoder,
                "polis_scene_assets",
                "Assets in the scene.",
                scene.assets as u64,
            )?;
            gauge(
                &mut encoder,
                "polis_scene_sensors",
                "Sensors in the scene.",
                scene.sensors as u64,
            )?;
        }
        if let Some(net) = observed.net.get() {
            let mut connections = encoder.encode_descriptor(
                "polis_connections",
                "Connections by role.",
                None,
                MetricType::Gauge,
            )?;
            for (role, count) in [
                ("gateway", &net.gateways_connected),
                ("viewer", &net.viewers_connected),
            ] {
                ConstGauge::new(load(count))
                    .encode(connections.encode_family(&[("role", role)])?)?;
            }
            counter(
                &mut encoder,
                "polis_handshakes_rejected",
                "Handshakes refused (version, token, role).",
                load(&net.handshakes_rejected),
            )?;
            let mut refused = encoder.encode_descriptor(
                "polis_connections_refused",
                "Connections refused before their handshake, by reason.",
                None,
                MetricType::Counter,
            )?;
            for (reason, count) in [
                ("server_full", &net.connections_refused_server_full),
                (
                    "handshakes_per_address",
                    &net.connections_refused_handshakes_per_address,
                ),
            ] {
                ConstCounter::new(load(count))
                    .encode(refused.encode_family(&[("reason", reason)])?)?;
            }
            counter(
                &mut encoder,
                "polis_handshakes_retried",
                "Connections asked to prove their address (QUIC retry) while many handshakes were in progress.",
                load(&net.handshakes_retried),
            )?;
            counter(
                &mut encoder,
                "polis_protocol_errors",
                "Connections closed for a protocol error.",
                load(&net.protocol_errors),
            )?;
            counter(
                &mut encoder,
                "polis_viewer_frames_sent",
                "Frames sent to viewers.",
                load(&net.viewer_frames_sent),
            )?;
            counter(
                &mut encoder,
                "polis_viewer_bytes_sent",
                "Frame bytes sent to viewers.",
                load(&net.viewer_bytes_sent),
            )?;
            counter(
                &mut encoder,
                "polis_viewer_values_sent",
                "Sensor values sent to viewers (in snapshots and updates).",
                load(&net.viewer_values_sent),
            )?;
        }
        if let Some(sources) = observed.mqtt.get() {
            encode_mqtt(&mut encoder, sources)?;
        }
        counter(
            &mut encoder,
            "polis_readings_received",
            "Readings received, whatever their outcome.",
            load(&m.readings_received),
        )?;
        counter(
            &mut encoder,
            "polis_readings_accepted",
            "Readings that became their sensor's latest value.",
            load(&m.readings_accepted),
        )?;
        counter(
            &mut encoder,
            "polis_readings_stale",
            "Readings older than their sensor's latest (kept out).",
            load(&m.readings_stale),
        )?;
        counter(
            &mut encoder,
            "polis_readings_duplicate",
            "Exact repeats of a sensor's latest reading.",
            load(&m.readings_duplicate),
        )?;
        counter(
            &mut encoder,
            "polis_readings_refused",
            "Readings refused (unknown sensor, bad or conflicting value).",
            load(&m.readings_refused),
        )?;
        counter(
            &mut encoder,
            "polis_batches",
            "Reading batches applied and acknowledged.",
            load(&m.batches),
        )?;
        counter(
            &mut encoder,
            "polis_ticks",
            "Simulation ticks run.",
            load(&m.ticks),
        )?;
        gauge(
            &mut encoder,
            "polis_viewers",
            "Viewers subscribed in the twin.",
            load(&m.viewers),
        )?;
        gauge(
            &mut encoder,
            "polis_viewer_queue_depth_max",
            "Entries waiting in the fullest viewer mailbox.",
            load(&m.viewer_backlog_max),
        )?;
        gauge(
            &mut encoder,
            "polis_net_events_pending",
            "Events waiting in the channel from the network into the twin.",
            load(&m.net_events_pending),
        )?;
        // Per-bucket counts; the encoder makes them cumulative and adds `+Inf`.
        let buckets: Vec<(f64, u64)> = TICK_BUCKETS_SECS
            .iter()
            .zip(&m.tick_buckets)
            .map(|(&bound, count)| (bound, load(count)))
            .collect();
        let count = buckets.iter().map(|(_, count)| count).sum::<u64>() + load(&m.tick_overflow);
        encoder
            .encode_descriptor(
                "polis_tick_duration",
                "Time to run one tick.",
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?
            .encode_histogram::<NoLabelSet>(
                load(&m.tick_sum_ns) as f64 / 1e9,
                count,
                &buckets,
                None,
            )
    }
}

/// The MQTT sources' families, one series per source (and reason).
fn encode_mqtt(
    encoder: &mut DescriptorEncoder,
    sources: &[Arc<polis_mqtt::SourceStats>],
) -> fmt::Result {
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let mut connected = encoder.encode_descriptor(
        "polis_mqtt_connected",
        "1 while the MQTT source is connected to its broker.",
        None,
        MetricType::Gauge,
    )?;
    for source in sources {
        ConstGauge::new(u64::from(source.connected.load(Ordering::Relaxed)))
            .encode(connected.encode_family(&[("source", source.name.as_str())])?)?;
    }
    for (name, help, pick) in [
        (
            "polis_mqtt_messages",
            "MQTT messages received by the source.",
            (|s: &polis_mqtt::SourceStats| &s.messages)
                as fn(&polis_mqtt::SourceStats) -> &AtomicU64,
        ),
        (
            "polis_mqtt_readings",
            "Readings from the source's messages recorded anew (applied and durable; repeats not counted).",
            |s: &polis_mqtt::SourceStats| &s.readings,
        ),
    ] {
        let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        for source in sources {
            ConstCounter::new(load(pick(source)))
                .encode(family.encode_family(&[("source", source.name.as_str())])?)?;
        }
    }
    let mut latency = encoder.encode_descriptor(
        "polis_mqtt_ack_duration",
        "Arrival of a QoS 1 message to its PUBACK being queued for the broker (its readings applied and durable, every earlier message acknowledged).",
        Some(&Unit::Seconds),
        MetricType::Histogram,
    )?;
    for source in sources {
        let counts = source.ack_latency.counts();
        // Per-bucket counts without the last (open) one; the encoder makes
        // them cumulative and adds `+Inf` with the total.
        let bounded = polis_mqtt::ACK_LATENCY_BUCKETS - 1;
        let buckets: Vec<(f64, u64)> = (0..bounded)
            .map(|i| (polis_mqtt::AckLatency::bound_secs(i), counts[i]))
            .collect();
        latency
            .encode_family(&[("source", source.name.as_str())])?
            .encode_histogram::<NoLabelSet>(
                source.ack_latency.sum_secs(),
                counts.iter().sum(),
                &buckets,
                None,
            )?;
    }
    let mut refused = encoder.encode_descriptor(
        "polis_mqtt_refused",
        "Readings (or whole messages) of the source refused, by reason.",
        None,
        MetricType::Counter,
    )?;
    for source in sources {
        for (reason, count) in source.refused() {
            ConstCounter::new(count).encode(
                refused.encode_family(&[("source", source.name.as_str()), ("reason", reason)])?,
            )?;
        }
    }
    Ok(())
}

/// The Prometheus text exposition (format 0.0.4) of `observed`.
pub fn render_prometheus(observed: &Arc<Observed>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(ObservedCollector(Arc::clone(observed))));
    let mut out = String::with_capacity(4096);
    // Writing into a `String` cannot fail, nor can any of the encoders above.
    let _ = prometheus_text::encode(&mut out, &registry);
    out
}

/// Copies the twin's counters into the [`ObservedHandle`] resource
/// (inserted by the caller) at the end of every tick, for the HTTP
/// endpoint.
pub(crate) struct MetricsPlugin;

impl Plugin for MetricsPlugin {
    fn build(&self, app: &mut App) {
        app.add_systems(Last, export_metrics);
    }
}

fn export_metrics(
    observed: Res<ObservedHandle>,
    tick: Res<TwinTick>,
    counters: Res<IngestCounters>,
    backlog: Res<ViewerBacklog>,
    link: Res<NetLink>,
) {
    let m = &observed.0.metrics;
    m.ticks.store(tick.0, Ordering::Relaxed);
    m.readings_received
        .store(counters.received, Ordering::Relaxed);
    m.readings_accepted
        .store(counters.accepted, Ordering::Relaxed);
    m.readings_stale.store(counters.stale, Ordering::Relaxed);
    m.readings_duplicate
        .store(counters.duplicate, Ordering::Relaxed);
    m.readings_refused
        .store(counters.refused, Ordering::Relaxed);
    m.batches.store(counters.batches, Ordering::Relaxed);
    m.viewers.store(backlog.viewers as u64, Ordering::Relaxed);
    m.viewer_backlog_max
        .store(backlog.max_entries as u64, Ordering::Relaxed);
    m.viewer_backlog_peak
        .fetch_max(backlog.max_entries as u64, Ordering::Relaxed);
    m.net_events_pending
        .store(link.server().pending_events() as u64, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_and_counts_every_tick() {
        let observed = Arc::new(Observed::default());
        for micros in [30, 80, 900, 3_000, 70_000, 2_000_000] {
            observed.metrics.observe_tick(Duration::from_micros(micros));
        }
        let text = render_prometheus(&observed);
        for (bound, count) in [
            // Bounds are written as Go clients write them: 0.00005 as 5e-05.
            ("5e-05", 1),
            ("0.0001", 2),
            ("0.0005", 2),
            ("0.001", 3),
            ("0.1", 5),
            ("1", 5),
            ("+Inf", 6),
        ] {
            assert!(
                text.contains(&format!(
                    "polis_tick_duration_seconds_bucket{{le=\"{bound}\"}} {count}\n"
                )),
                "{bound}: {text}"
            );
        }
        assert!(
            text.contains("polis_tick_duration_seconds_count 6\n"),
            "{text}"
        );
        // Summed in nanoseconds: microsecond ticks are not truncated away.
        assert!(
            text.contains("polis_tick_duration_seconds_sum 2.07401\n"),
            "{text}"
        );
        assert!(text.contains("polis_ready 0\n"), "{text}");
    }

    #[test]
    fn exposition_keeps_names_help_types_and_labels() {
        let observed = Arc::new(Observed::default());
        let _ = observed.scene.set(SceneFacts {
            name: "tiny \"city\"".into(),
            assets: 8,
            sensors: 12,
        });
        let net = Arc::new(NetStats::default());
        net.gateways_connected.store(2, Ordering::Relaxed);
        let _ = observed.net.set(net);
        observed
            .metrics
            .readings_received
            .store(7, Ordering::Relaxed);
        let text = render_prometheus(&observed);
        for expected in [
            "# HELP polis_ready 1 once the server serves its scene.\n# TYPE polis_ready gauge\npolis_ready 0\n",
            "# HELP polis_scene_info The scene being served.\n# TYPE polis_scene_info gauge\npolis_scene_info{scene=\"tiny \\\"city\\\"\"} 1\n",
            "# TYPE polis_scene_sensors gauge\npolis_scene_sensors 12\n",
            "# HELP polis_connections Connections by role.\n# TYPE polis_connections gauge\npolis_connections{role=\"gateway\"} 2\npolis_connections{role=\"viewer\"} 0\n",
            "# HELP polis_readings_received_total Readings received, whatever their outcome.\n# TYPE polis_readings_received_total counter\npolis_readings_received_total 7\n",
            "# TYPE polis_handshakes_rejected_total counter\npolis_handshakes_rejected_total 0\n",
            "# HELP polis_connections_refused_total Connections refused before their handshake, by reason.\n# TYPE polis_connections_refused_total counter\npolis_connections_refused_total{reason=\"server_full\"} 0\npolis_connections_refused_total{reason=\"handshakes_per_address\"} 0\n",
            "# HELP polis_tick_duration_seconds Time to run one tick.\n# TYPE polis_tick_duration_seconds histogram\npolis_tick_duration_seconds_bucket{le=\"5e-05\"} 0\n",
        ] {
            assert!(text.contains(expected), "{expected}\nmissing in:\n{text}");
        }
        assert_eq!(text.matches("# TYPE ").count(), 23, "{text}");
    }
}
