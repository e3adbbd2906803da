//! What the running server exposes about itself: readiness, counters and the
//! Prometheus text rendering of them.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bevy::prelude::*;
use polis_net::NetStats;

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
}

/// The [`Observed`] state as a world resource.
#[derive(Resource, Debug, Clone, Default)]
pub struct ObservedHandle(pub Arc<Observed>);

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
    );
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

/// The Prometheus text exposition (format 0.0.4) of `observed`.
pub fn render_prometheus(observed: &Observed) -> String {
    let m = &observed.metrics;
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let mut out = String::with_capacity(4096);
    gauge(
        &mut out,
        "polis_ready",
        "1 once the server serves its scene.",
        u64::from(observed.ready.load(Ordering::Relaxed)),
    );
    if let Some(scene) = observed.scene.get() {
        let _ = writeln!(
            out,
            "# HELP polis_scene_info The scene being served.\n# TYPE polis_scene_info gauge\npolis_scene_info{{scene=\"{}\"}} 1",
            scene.name.replace(['"', '\\', '\n'], "_")
        );
        gauge(
            &mut out,
            "polis_scene_assets",
            "Assets in the scene.",
            scene.assets as u64,
        );
        gauge(
            &mut out,
            "polis_scene_sensors",
            "Sensors in the scene.",
            scene.sensors as u64,
        );
    }
    if let Some(net) = observed.net.get() {
        let _ = writeln!(
            out,
            "# HELP polis_connections Connections by role.\n# TYPE polis_connections gauge\npolis_connections{{role=\"gateway\"}} {}\npolis_connections{{role=\"viewer\"}} {}",
            load(&net.gateways_connected),
            load(&net.viewers_connected)
        );
        counter(
            &mut out,
            "polis_handshakes_rejected_total",
            "Handshakes refused (version, token, role).",
            load(&net.handshakes_rejected),
        );
        let _ = writeln!(
            out,
            "# HELP polis_connections_refused_total Connections refused before their handshake, by reason.\n# TYPE polis_connections_refused_total counter\npolis_connections_refused_total{{reason=\"server_full\"}} {}\npolis_connections_refused_total{{reason=\"handshakes_per_address\"}} {}",
            load(&net.connections_refused_server_full),
            load(&net.connections_refused_handshakes_per_address)
        );
        counter(
            &mut out,
            "polis_handshakes_retried_total",
            "Connections asked to prove their address (QUIC retry) while many handshakes were in progress.",
            load(&net.handshakes_retried),
        );
        counter(
            &mut out,
            "polis_protocol_errors_total",
            "Connections closed for a protocol error.",
            load(&net.protocol_errors),
        );
        counter(
            &mut out,
            "polis_viewer_frames_sent_total",
            "Frames sent to viewers.",
            load(&net.viewer_frames_sent),
        );
        counter(
            &mut out,
            "polis_viewer_bytes_sent_total",
            "Frame bytes sent to viewers.",
            load(&net.viewer_bytes_sent),
        );
        counter(
            &mut out,
            "polis_viewer_values_sent_total",
            "Sensor values sent to viewers (in snapshots and updates).",
            load(&net.viewer_values_sent),
        );
    }
    counter(
        &mut out,
        "polis_readings_received_total",
        "Readings received, whatever their outcome.",
        load(&m.readings_received),
    );
    counter(
        &mut out,
        "polis_readings_accepted_total",
        "Readings that became their sensor's latest value.",
        load(&m.readings_accepted),
    );
    counter(
        &mut out,
        "polis_readings_stale_total",
        "Readings older than their sensor's latest (kept out).",
        load(&m.readings_stale),
    );
    counter(
        &mut out,
        "polis_readings_duplicate_total",
        "Exact repeats of a sensor's latest reading.",
        load(&m.readings_duplicate),
    );
    counter(
        &mut out,
        "polis_readings_refused_total",
        "Readings refused (unknown sensor, bad or conflicting value).",
        load(&m.readings_refused),
    );
    counter(
        &mut out,
        "polis_batches_total",
        "Reading batches applied and acknowledged.",
        load(&m.batches),
    );
    counter(
        &mut out,
        "polis_ticks_total",
        "Simulation ticks run.",
        load(&m.ticks),
    );
    gauge(
        &mut out,
        "polis_viewers",
        "Viewers subscribed in the twin.",
        load(&m.viewers),
    );
    gauge(
        &mut out,
        "polis_viewer_queue_depth_max",
        "Entries waiting in the fullest viewer mailbox.",
        load(&m.viewer_backlog_max),
    );
    gauge(
        &mut out,
        "polis_net_events_pending",
        "Events waiting in the channel from the network into the twin.",
        load(&m.net_events_pending),
    );
    let _ = writeln!(
        out,
        "# HELP polis_tick_duration_seconds Time to run one tick.\n# TYPE polis_tick_duration_seconds histogram"
    );
    let mut cumulative = 0;
    for (bound, bucket) in TICK_BUCKETS_SECS.iter().zip(&m.tick_buckets) {
        cumulative += load(bucket);
        let _ = writeln!(
            out,
            "polis_tick_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
        );
    }
    cumulative += load(&m.tick_overflow);
    let _ = writeln!(
        out,
        "polis_tick_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
    );
    let _ = writeln!(
        out,
        "polis_tick_duration_seconds_sum {}\npolis_tick_duration_seconds_count {cumulative}",
        load(&m.tick_sum_ns) as f64 / 1e9
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_and_counts_every_tick() {
        let observed = Observed::default();
        for micros in [30, 80, 900, 3_000, 70_000, 2_000_000] {
            observed.metrics.observe_tick(Duration::from_micros(micros));
        }
        let text = render_prometheus(&observed);
        for (bound, count) in [
            ("0.00005", 1),
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
}
