//! `polis bench fanout`: viewers each watching ~1,000 sensors of a synthetic
//! city while a gateway changes a tenth of the sensors per second; sensor to
//! viewer latency, bytes on the wire per delivered value and server CPU.
//! Baseline in the same run: mosquitto doing the same job the MQTT way (one
//! topic per sensor under a spatial tile prefix, each viewer subscribed to
//! the 3 × 3 tiles around it).
//!
//! Everything runs in this process and on loopback, so the send time stamped
//! into each reading and the arrival time come from the same clock.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use polis_net::{ClientOptions, GatewayClient, GatewayOptions, Session};
use polis_protocol::{
    Access, ClientToServer, GeoBox, Georeference, Reading, Role, ServerToViewer, Subscribe,
};

use super::mosquitto::{Broker, measured_latency_us, mqtt_eventloop, mqtt_options};
use super::{checked, cpu_by_thread, grid_scene};
use crate::{Config, Http, Limits, TokenEntry};

/// Readings are emitted in small bursts this often (both systems).
const SEND_PERIOD: Duration = Duration::from_millis(2);
/// Viewers connecting at once (all from one address: at most the 16
/// handshakes in progress the server allows one address).
const CONNECT_CONCURRENCY: usize = 16;
/// Longest wait for one group of viewers to connect and get its snapshot.
const CONNECT_GROUP_TIMEOUT: Duration = Duration::from_secs(60);
/// After the last reading, viewers keep receiving this long.
const DRAIN: Duration = Duration::from_secs(2);
/// A sender gives up when its client takes no readings for this long.
pub(super) const STALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Grid spacing of [`grid_scene`], metres.
const SPACING_M: f64 = 10.0;
/// The readings' payload in the MQTT baseline: send time (µs since the run
/// started), device time (ms since the epoch), value.
pub(super) const MQTT_PAYLOAD_BYTES: usize = 24;

const GATEWAY_TOKEN: &str = "bench-fanout-gateway-token-0123456789";
const VIEWER_TOKEN: &str = "bench-fanout-viewer-token-0123456789";

#[derive(Debug, Args)]
pub(crate) struct FanoutArgs {
    /// A short run for CI smoke tests (under a minute): 50 viewers, 10,000
    /// sensors, 5 s.
    #[arg(long)]
    quick: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Viewers (each on the 3 × 3 tiles around a tile of the city).
    #[arg(long, default_value_t = 1_000)]
    viewers: usize,
    /// Sensors in the synthetic city.
    #[arg(long, default_value_t = 100_000)]
    sensors: usize,
    /// Tiles per side of the square tile grid (areas and MQTT topics).
    #[arg(long, default_value_t = 32)]
    tiles: usize,
    /// Sensor changes per second (default: a tenth of the sensors).
    #[arg(long)]
    changes_per_second: Option<f64>,
    /// Measured seconds (after a warm-up of a fifth of it, at least 1 s).
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// Worker threads of the load generator's tokio runtime.
    #[arg(long, default_value_t = 1)]
    load_threads: usize,
    /// The server's tick rate, Hz (default: the server's default, 20).
    #[arg(long)]
    tick_hz: Option<f64>,
    /// The server's ceiling of event-driven ticks, Hz (default: the server's
    /// default, 10,000); equal to --tick-hz for fixed ticks.
    #[arg(long)]
    max_tick_hz: Option<f64>,
    /// Each Polis viewer's publishing interval, ms (`Subscribe::
    /// publish_interval_ms`): value updates reach it at most this often,
    /// coalesced in between; 0 sends each change at once.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(..=i64::from(polis_protocol::MAX_PUBLISH_INTERVAL_MS)))]
    publish_interval_ms: u32,
    /// Start mosquitto with `set_tcp_nodelay true` (Nagle's algorithm off on
    /// the broker's sockets; mosquitto's default leaves it on).
    #[arg(long)]
    mosquitto_nodelay: bool,
    /// Skip the mosquitto baseline.
    #[arg(long)]
    no_baseline: bool,
}

/// Microseconds since the start of the run: the one clock of senders and
/// viewers.
#[derive(Debug, Clone, Copy)]
pub(super) struct Clock(Instant);

impl Clock {
    pub(super) fn now_us(self) -> u64 {
        u64::try_from(self.0.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn us_at(self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.0).as_micros()).unwrap_or(u64::MAX)
    }
}

/// Latencies in log-linear buckets: 1 µs wide below 1,024 µs, then 64
/// buckets per power of two (≤ 1.6 % error); fixed size, shared by all
/// viewers.
pub(super) struct LatencyHistogram {
    buckets: Vec<AtomicU64>,
}

const LINEAR_US: u64 = 1_024;
const SUB_BUCKETS: u64 = 64;
const MAX_EXPONENT: u32 = 40;

impl LatencyHistogram {
    pub(super) fn new() -> Self {
        let count = LINEAR_US + u64::from(MAX_EXPONENT - 9) * SUB_BUCKETS;
        Self {
            buckets: (0..count).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn index(us: u64) -> usize {
        let us = us.min((1 << MAX_EXPONENT) - 1);
        if us < LINEAR_US {
            return us as usize;
        }
        let exponent = 63 - us.leading_zeros(); // >= 10
        let sub = (us >> (exponent - 6)) & (SUB_BUCKETS - 1);
        (LINEAR_US + u64::from(exponent - 10) * SUB_BUCKETS + sub) as usize
    }

    /// Middle of bucket `index`, µs.
    fn value_us(index: usize) -> f64 {
        let index = index as u64;
        if index < LINEAR_US {
            return index as f64 + 0.5;
        }
        let exponent = (index - LINEAR_US) / SUB_BUCKETS + 10;
        let sub = (index - LINEAR_US) % SUB_BUCKETS;
        let width = 1u64 << (exponent - 6);
        ((1u64 << exponent) + sub * width) as f64 + width as f64 / 2.0
    }

    pub(super) fn record(&self, us: u64) {
        if let Some(bucket) = self.buckets.get(Self::index(us)) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(super) fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// The `p`-th percentile in milliseconds (NaN when empty).
    pub(super) fn percentile_ms(&self, p: f64) -> f64 {
        let total = self.count();
        if total == 0 {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (index, bucket) in self.buckets.iter().enumerate() {
            seen += bucket.load(Ordering::Relaxed);
            if seen >= rank {
                return Self::value_us(index) / 1e3;
            }
        }
        f64::NAN
    }
}

/// Where sensors, tiles and viewers are.
pub(super) struct Layout {
    sensors: usize,
    /// Sensors per side of the grid.
    side: usize,
    /// Sensors per side of a tile.
    tile_side: usize,
    /// Tiles per side.
    tiles: usize,
    /// Each viewer's centre tile; it watches the 3 × 3 tiles around it.
    viewer_tiles: Vec<(usize, usize)>,
    /// Viewers watching each tile, row-major.
    tile_watchers: Vec<u32>,
    georeference: Georeference,
}

impl Layout {
    pub(super) fn new(
        sensors: usize,
        tiles: usize,
        viewers: usize,
        georeference: Georeference,
    ) -> anyhow::Result<Self> {
        let side = (sensors as f64).sqrt().ceil() as usize;
        let tile_side = side.div_ceil(tiles.max(1)).max(1);
        let tiles = side.div_ceil(tile_side);
        anyhow::ensure!(
            tiles >= 3,
            "need at least 3 tiles per side (got {tiles}); use more sensors or --tiles"
        );
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut viewer_tiles = Vec::with_capacity(viewers);
        let mut tile_watchers = vec![0u32; tiles * tiles];
        for _ in 0..viewers {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            // Centre tiles away from the edge, so every area has 3 × 3 tiles.
            let inner = (tiles - 2) as u64;
            let tx = 1 + (seed % inner) as usize;
            let ty = 1 + ((seed >> 32) % inner) as usize;
            viewer_tiles.push((tx, ty));
            for y in ty - 1..=ty + 1 {
                for x in tx - 1..=tx + 1 {
                    tile_watchers[y * tiles + x] += 1;
                }
            }
        }
        Ok(Self {
            sensors,
            side,
            tile_side,
            tiles,
            viewer_tiles,
            tile_watchers,
            georeference,
        })
    }

    fn tile_of(&self, sensor: usize) -> (usize, usize) {
        let (row, col) = (sensor / self.side, sensor % self.side);
        (col / self.tile_side, row / self.tile_side)
    }

    /// Viewers that see `sensor`.
    fn watchers(&self, sensor: usize) -> u64 {
        let (tx, ty) = self.tile_of(sensor);
        u64::from(
            self.tile_watchers
                .get(ty * self.tiles + tx)
                .copied()
                .unwrap_or(0),
        )
    }

    /// The MQTT topic of `sensor`: its tile, then its id.
    pub(super) fn topic(&self, sensor: usize) -> String {
        let (tx, ty) = self.tile_of(sensor);
        format!("city/{tx}/{ty}/s{sensor}")
    }

    /// The MQTT topic filters of `viewer`: its 3 × 3 tiles.
    fn filters(&self, viewer: usize) -> Vec<String> {
        let (tx, ty) = self.viewer_tiles[viewer];
        let mut filters = Vec::with_capacity(9);
        for y in ty - 1..=ty + 1 {
            for x in tx - 1..=tx + 1 {
                filters.push(format!("city/{x}/{y}/#"));
            }
        }
        filters
    }

    /// The Polis area of `viewer`: the same 3 × 3 tiles, with half a grid
    /// spacing of margin so no sensor lies on its edge.
    fn area(&self, viewer: usize) -> GeoBox {
        let (tx, ty) = self.viewer_tiles[viewer];
        let tile_m = self.tile_side as f64 * SPACING_M;
        let min = [
            (tx - 1) as f64 * tile_m - SPACING_M / 2.0,
            (ty - 1) as f64 * tile_m - SPACING_M / 2.0,
        ];
        let max = [
            (tx + 2) as f64 * tile_m - SPACING_M / 2.0,
            (ty + 2) as f64 * tile_m - SPACING_M / 2.0,
        ];
        GeoBox::from_enu(&self.georeference, min, max)
    }

    /// Mean sensors in a viewer's area.
    fn mean_area_sensors(&self) -> f64 {
        if self.viewer_tiles.is_empty() {
            return 0.0;
        }
        let watched: u64 = (0..self.sensors).map(|s| self.watchers(s)).sum();
        watched as f64 / self.viewer_tiles.len() as f64
    }
}

/// The order in which sensors change: a fixed permutation, so that a sensor
/// changes once per pass (every `sensors / rate` seconds).
fn change_order(sensors: usize) -> Vec<u32> {
    fn gcd(a: usize, b: usize) -> usize {
        if b == 0 { a } else { gcd(b, a % b) }
    }
    let mut stride = 7_919usize;
    while sensors > 1 && gcd(stride, sensors) != 1 {
        stride += 2;
    }
    (0..sensors)
        .map(|k| ((k * stride) % sensors.max(1)) as u32)
        .collect()
}

/// When the sender runs and which readings are measured.
#[derive(Debug, Clone, Copy)]
pub(super) struct Window {
    pub(super) clock: Clock,
    /// Sending starts.
    start: Instant,
    /// Readings sent from here on are measured.
    pub(super) measure_from: Instant,
    /// Sending stops.
    pub(super) until: Instant,
    /// Receivers stop receiving.
    pub(super) end: Instant,
}

impl Window {
    pub(super) fn measured(&self, sent_us: u64) -> bool {
        sent_us >= self.clock.us_at(self.measure_from) && sent_us < self.clock.us_at(self.until)
    }
}

/// What a sender did in the measured window.
#[derive(Debug, Default)]
struct SendTally {
    /// Readings sent.
    sent: AtomicU64,
    /// Deliveries expected (viewers per sensor, summed).
    expected: AtomicU64,
}

/// Paces readings at `rate` per second from `window.start` to
/// `window.until`, in bursts every [`SEND_PERIOD`], and tallies the measured
/// ones.
struct Pacer<'a> {
    rate: f64,
    window: Window,
    order: &'a [u32],
    layout: &'a Layout,
    tally: &'a SendTally,
    ticker: tokio::time::Interval,
    emitted: u64,
    cursor: usize,
    /// At most a second's worth per burst, however late the sender runs.
    max_burst: u64,
}

impl<'a> Pacer<'a> {
    async fn new(
        rate: f64,
        window: Window,
        order: &'a [u32],
        layout: &'a Layout,
        tally: &'a SendTally,
    ) -> Pacer<'a> {
        tokio::time::sleep_until(window.start.into()).await;
        let mut ticker = tokio::time::interval(SEND_PERIOD);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        Pacer {
            rate,
            window,
            order,
            layout,
            tally,
            ticker,
            emitted: 0,
            cursor: 0,
            max_burst: rate.ceil().max(1.0) as u64,
        }
    }

    /// The next burst: each sensor with its send time (µs on the run's
    /// clock); `None` once sending time is over.
    async fn next(&mut self) -> Option<Vec<(usize, u64)>> {
        loop {
            self.ticker.tick().await;
            let now = Instant::now();
            if now >= self.window.until || self.order.is_empty() {
                return None;
            }
            let due = (now.duration_since(self.window.start).as_secs_f64() * self.rate) as u64;
            let burst = due.saturating_sub(self.emitted).min(self.max_burst);
            if burst == 0 {
                continue;
            }
            let sent_us = self.window.clock.now_us();
            let measured = self.window.measured(sent_us);
            let mut readings = Vec::with_capacity(burst as usize);
            for _ in 0..burst {
                let sensor = self.order[self.cursor] as usize;
                self.cursor = (self.cursor + 1) % self.order.len();
                if measured {
                    self.tally.sent.fetch_add(1, Ordering::Relaxed);
                    self.tally
                        .expected
                        .fetch_add(self.layout.watchers(sensor), Ordering::Relaxed);
                }
                readings.push((sensor, sent_us));
            }
            self.emitted += burst;
            return Some(readings);
        }
    }
}

pub(super) fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Bytes and packets sent on the loopback interface so far (all protocols,
/// all headers), from `/proc/net/dev`.
fn loopback_tx() -> Option<(u64, u64)> {
    let dev = std::fs::read_to_string("/proc/net/dev").ok()?;
    let line = dev.lines().find(|l| l.trim_start().starts_with("lo:"))?;
    let (_, counters) = line.split_once(':')?;
    let fields: Vec<u64> = counters
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    Some((*fields.get(8)?, *fields.get(9)?))
}

/// CPU seconds used so far by the whole machine (all processes, all cores,
/// not idle), from `/proc/stat`.
fn machine_busy_s() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return f64::NAN;
    };
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return f64::NAN;
    };
    let ticks: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    // user nice system idle iowait irq softirq steal …
    let busy: f64 = ticks.iter().take(8).sum::<f64>()
        - ticks.get(3).copied().unwrap_or(0.0)
        - ticks.get(4).copied().unwrap_or(0.0);
    busy / 100.0 // USER_HZ
}

/// Seconds spent runnable but waiting for a CPU so far, by thread name
/// (`/proc/self/task/*/schedstat`, second field, ns).
fn run_queue_wait_by_thread() -> std::collections::HashMap<String, f64> {
    let mut waits = std::collections::HashMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return waits;
    };
    for task in tasks.flatten() {
        let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let wait_ns = std::fs::read_to_string(task.path().join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse::<f64>().ok())
            .unwrap_or(0.0);
        *waits.entry(name.trim().to_owned()).or_insert(0.0) += wait_ns / 1e9;
    }
    waits
}

/// Seconds process `pid`'s main thread spent waiting for a CPU so far.
fn process_run_queue_wait_s(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(f64::NAN, |ns| ns / 1e9)
}

/// Run-queue wait of the server threads and of the load threads, seconds.
fn polis_waits() -> (f64, f64) {
    let waits = run_queue_wait_by_thread();
    let server = ["polis-twin", "polis-net", "polis-history"]
        .iter()
        .map(|n| waits.get(*n).copied().unwrap_or(0.0))
        .sum();
    let load = waits
        .iter()
        .filter(|(n, _)| n.starts_with("polis-bench"))
        .map(|(_, s)| s)
        .sum();
    (server, load)
}

/// CPU seconds used so far by process `pid`.
pub(super) fn process_cpu_s(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    let Some(close) = stat.rfind(')') else {
        return f64::NAN;
    };
    let fields: Vec<&str> = stat
        .get(close + 2..)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(utime), Some(stime)) => (utime + stime) / 100.0, // USER_HZ
        _ => f64::NAN,
    }
}

/// Viewers' progress, shared with the tasks that run them.
#[derive(Default)]
struct ViewerCounters {
    /// Viewers subscribed (snapshot or SUBACK received).
    ready: AtomicUsize,
    /// Viewers that failed.
    failed: AtomicUsize,
    /// Values received for measured readings.
    delivered: AtomicU64,
    /// The first failure, for the report.
    first_error: std::sync::Mutex<Option<String>>,
}

impl ViewerCounters {
    fn fail(&self, error: &anyhow::Error) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut first) = self.first_error.lock()
            && first.is_none()
        {
            *first = Some(format!("{error:#}"));
        }
    }
}

/// Spawns `count` viewers with `spawn(index)`, at most
/// [`CONNECT_CONCURRENCY`] connecting at once; waits until each group is
/// subscribed (or failed).
async fn connect_viewers<F>(
    count: usize,
    counters: &ViewerCounters,
    mut spawn: F,
) -> Vec<tokio::task::JoinHandle<()>>
where
    F: FnMut(usize) -> tokio::task::JoinHandle<()>,
{
    let mut tasks = Vec::with_capacity(count);
    for group in (0..count).collect::<Vec<_>>().chunks(CONNECT_CONCURRENCY) {
        for &viewer in group {
            tasks.push(spawn(viewer));
        }
        let deadline = Instant::now() + CONNECT_GROUP_TIMEOUT;
        while counters.ready.load(Ordering::Relaxed) + counters.failed.load(Ordering::Relaxed)
            < tasks.len()
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    tasks
}

/// One phase's results.
#[derive(Debug, Clone, Default)]
struct Phase {
    viewers_ready: usize,
    viewers_failed: usize,
    first_error: Option<String>,
    seconds: f64,
    readings_sent: u64,
    deliveries_expected: u64,
    deliveries: u64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
    loopback_bytes: u64,
    loopback_packets: u64,
    /// Polis only: frame bytes written to viewer streams (no QUIC/UDP/IP).
    stream_bytes: Option<u64>,
    /// Server CPU, cores, by part.
    server_cpu: Vec<(String, f64)>,
    /// Load generator CPU (this process's bench threads), cores.
    load_cpu: f64,
    /// The whole machine's busy CPU (every process), cores: shows other
    /// work competing with the benchmark.
    machine_cpu: f64,
    /// Time the server's threads were runnable but waiting for a CPU,
    /// seconds per second (summed over threads).
    server_wait: f64,
    /// The same for the load generator's threads.
    load_wait: f64,
    /// Polis only: twin ticks per second achieved in the window.
    ticks_per_s: Option<f64>,
    /// Polis only: most entries waiting in one viewer's mailbox, sampled
    /// at every tick of the window.
    backlog_max: Option<u64>,
}

impl Phase {
    /// The loopback traffic between two readings of [`loopback_tx`].
    fn set_loopback(&mut self, before: Option<(u64, u64)>, after: Option<(u64, u64)>) {
        if let (Some((bytes0, packets0)), Some((bytes1, packets1))) = (before, after) {
            self.loopback_bytes = bytes1.saturating_sub(bytes0);
            self.loopback_packets = packets1.saturating_sub(packets0);
        }
    }

    fn delivered_per_s(&self) -> f64 {
        self.deliveries as f64 / self.seconds
    }

    fn bytes_per_value(&self) -> f64 {
        self.loopback_bytes as f64 / self.deliveries.max(1) as f64
    }

    fn server_cores(&self) -> f64 {
        self.server_cpu.iter().map(|(_, c)| c).sum()
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "viewers_ready": self.viewers_ready,
            "viewers_failed": self.viewers_failed,
            "first_error": self.first_error,
            "seconds": self.seconds,
            "readings_sent": self.readings_sent,
            "deliveries_expected": self.deliveries_expected,
            "deliveries": self.deliveries,
            "delivered_values_per_s": self.delivered_per_s().round(),
            "latency_ms_p50": self.p50_ms,
            "latency_ms_p99": self.p99_ms,
            "latency_ms_p99_9": self.p999_ms,
            "latency_ms_max": self.max_ms,
            "loopback_bytes": self.loopback_bytes,
            "loopback_packets": self.loopback_packets,
            "loopback_bytes_per_delivered_value": self.bytes_per_value(),
            "stream_bytes_per_delivered_value": self.stream_bytes.map(|b| b as f64 / self.deliveries.max(1) as f64),
            "server_cpu_cores": self.server_cpu.iter().map(|(n, c)| (n.clone(), serde_json::json!(c))).collect::<serde_json::Map<_, _>>(),
            "load_cpu_cores": self.load_cpu,
            "machine_busy_cpu_cores": self.machine_cpu,
            "server_run_queue_wait_s_per_s": self.server_wait,
            "load_run_queue_wait_s_per_s": self.load_wait,
            "ticks_per_s": self.ticks_per_s,
            "viewer_mailbox_backlog_max": self.backlog_max,
        })
    }
}

fn cores_available() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

pub(super) fn load_cpu_s() -> f64 {
    cpu_by_thread()
        .iter()
        .filter(|(name, _)| name.starts_with("polis-bench"))
        .map(|(_, s)| s)
        .sum()
}

/// What both phases (Polis, mosquitto) share: the figures their viewers and
/// sender fill in, the window the sender publishes once viewers are ready,
/// the stop signal, a last-resort deadline and the order sensors change in.
struct PhaseLoad {
    histogram: Arc<LatencyHistogram>,
    counters: Arc<ViewerCounters>,
    tally: Arc<SendTally>,
    window_cell: Arc<std::sync::OnceLock<Window>>,
    stop_tx: tokio::sync::watch::Sender<bool>,
    stop_rx: tokio::sync::watch::Receiver<bool>,
    hard_stop: Instant,
    order: Arc<Vec<u32>>,
}

impl PhaseLoad {
    fn new(args: &FanoutArgs) -> PhaseLoad {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        PhaseLoad {
            histogram: Arc::new(LatencyHistogram::new()),
            counters: Arc::new(ViewerCounters::default()),
            tally: Arc::new(SendTally::default()),
            window_cell: Arc::new(std::sync::OnceLock::new()),
            stop_tx,
            stop_rx,
            hard_stop: Instant::now() + Duration::from_secs_f64(args.seconds * 2.0 + 600.0),
            order: Arc::new(change_order(args.sensors)),
        }
    }
}

/// Waits for a phase's sender and viewers to end; a failed sender is logged
/// (the phase's figures then show what it delivered).
async fn join_load(
    sender: tokio::task::JoinHandle<anyhow::Result<()>>,
    viewers: Vec<tokio::task::JoinHandle<()>>,
    what: &str,
) {
    let sent = sender.await;
    for viewer in viewers {
        let _ = viewer.await;
    }
    match sent {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "fanout: {what} failed"),
        Err(error) => tracing::warn!(%error, "fanout: {what} task failed"),
    }
}

/// Turns the measured window's figures into a [`Phase`].
fn finish_phase(
    histogram: &LatencyHistogram,
    counters: &ViewerCounters,
    tally: &SendTally,
    seconds: f64,
) -> Phase {
    let max_ms = histogram
        .buckets
        .iter()
        .rposition(|b| b.load(Ordering::Relaxed) > 0)
        .map_or(f64::NAN, |i| LatencyHistogram::value_us(i) / 1e3);
    Phase {
        viewers_ready: counters.ready.load(Ordering::Relaxed),
        viewers_failed: counters.failed.load(Ordering::Relaxed),
        first_error: counters.first_error.lock().ok().and_then(|e| e.clone()),
        seconds,
        readings_sent: tally.sent.load(Ordering::Relaxed),
        deliveries_expected: tally.expected.load(Ordering::Relaxed),
        deliveries: counters.delivered.load(Ordering::Relaxed),
        p50_ms: histogram.percentile_ms(50.0),
        p99_ms: histogram.percentile_ms(99.0),
        p999_ms: histogram.percentile_ms(99.9),
        max_ms,
        ..Phase::default()
    }
}

// ---------------------------------------------------------------- Polis ---

async fn polis_viewer(
    options: ClientOptions,
    area: GeoBox,
    publish_interval_ms: u32,
    window: Arc<std::sync::OnceLock<Window>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    histogram: Arc<LatencyHistogram>,
    counters: Arc<ViewerCounters>,
    hard_stop: Instant,
) {
    let result = async {
        let mut session = Session::connect(&options).await?;
        session
            .send(&ClientToServer::Subscribe(Subscribe {
                subscription: 1,
                area,
                layers: Vec::new(),
                at_ms: None,
                speed: 1.0,
                publish_interval_ms,
            }))
            .await?;
        let mut subscribed = false;
        while Instant::now() < hard_stop {
            let message = tokio::select! {
                message = session.recv::<ServerToViewer>() => message?,
                _ = stop.wait_for(|stop| *stop) => break,
            };
            match message {
                ServerToViewer::Snapshot(snapshot) if snapshot.complete && !subscribed => {
                    subscribed = true;
                    counters.ready.fetch_add(1, Ordering::Relaxed);
                }
                ServerToViewer::Update(update) => {
                    let Some(window) = window.get() else { continue };
                    let now_us = window.clock.now_us();
                    for value in update.values {
                        let sent_us = value.value as u64;
                        if window.measured(sent_us) {
                            histogram.record(now_us.saturating_sub(sent_us));
                            counters.delivered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                ServerToViewer::Error(error) => anyhow::bail!("server error: {error}"),
                _ => {}
            }
        }
        tokio::time::timeout(Duration::from_secs(2), session.close())
            .await
            .ok();
        Ok::<_, anyhow::Error>(())
    }
    .await;
    if let Err(error) = result {
        counters.fail(&error);
    }
}

async fn polis_gateway(
    options: ClientOptions,
    rate: f64,
    window: Window,
    layout: Arc<Layout>,
    order: Arc<Vec<u32>>,
    tally: Arc<SendTally>,
) -> anyhow::Result<()> {
    let mut client = GatewayClient::connect(
        options,
        GatewayOptions {
            window: 64,
            reconnect_for: Duration::from_secs(5),
        },
    )
    .await?;
    let ids: Vec<String> = (0..layout.sensors).map(|i| format!("s{i}")).collect();
    let mut pacer = Pacer::new(rate, window, &order, &layout, &tally).await;
    while let Some(burst) = pacer.next().await {
        let device_time_ms = unix_ms();
        let readings: Vec<Reading> = burst
            .into_iter()
            .map(|(sensor, sent_us)| Reading {
                sensor: ids[sensor].clone(),
                device_time_ms,
                value: sent_us as f64,
                quality: None,
            })
            .collect();
        tokio::time::timeout(STALL_TIMEOUT, client.push(readings))
            .await
            .context("the server took no readings for 10 s")??;
    }
    tokio::time::timeout(Duration::from_secs(10), client.flush())
        .await
        .context("the server did not acknowledge the last batches within 10 s")??;
    client.close().await;
    Ok(())
}

fn run_polis(
    runtime: &tokio::runtime::Runtime,
    args: &FanoutArgs,
    rate: f64,
    layout: &Arc<Layout>,
    data_dir: &Path,
) -> anyhow::Result<Phase> {
    let mut limits = Limits::default();
    limits.max_connections = limits.max_connections.max(args.viewers + 16);
    limits.max_connections_per_token = u32::try_from(args.viewers + 16).unwrap_or(u32::MAX);
    limits.max_connections_per_token_per_address = limits.max_connections_per_token;
    limits.gateway_window = 64;
    let config = Config {
        listen: "127.0.0.1:0".parse()?,
        data_dir: data_dir.to_path_buf(),
        http: Http {
            enabled: false,
            ..Http::default()
        },
        limits,
        tick_hz: args.tick_hz.unwrap_or(crate::DEFAULT_TICK_HZ),
        max_tick_hz: args
            .max_tick_hz
            .unwrap_or(crate::DEFAULT_MAX_TICK_HZ)
            .max(args.tick_hz.unwrap_or(crate::DEFAULT_TICK_HZ)),
        tokens: vec![
            TokenEntry {
                name: Some("bench-gateway".into()),
                role: Access::Gateway,
                token: Some(GATEWAY_TOKEN.into()),
                sha256: None,
                scope_prefixes: Vec::new(),
            },
            TokenEntry {
                name: Some("bench-viewers".into()),
                role: Access::Public,
                token: Some(VIEWER_TOKEN.into()),
                sha256: None,
                scope_prefixes: Vec::new(),
            },
        ],
        ..Config::default()
    };
    let server = crate::start(&checked(config)?, grid_scene(args.sensors))?;
    let started = server.started().clone();
    let net_stats = server.observed().net.get().cloned();
    let metrics = &server.metrics();
    let options = |token: &str, role: Role| {
        let mut options = ClientOptions::new(
            started.local_addr.to_string(),
            started.cert_path.clone(),
            token,
            role,
        );
        options.client_name = "polis-bench-fanout".into();
        options
    };
    let PhaseLoad {
        histogram,
        counters,
        tally,
        window_cell,
        stop_tx,
        stop_rx,
        hard_stop,
        order,
    } = PhaseLoad::new(args);
    eprintln!("fanout/polis: connecting {} viewers …", args.viewers);
    let connect_started = Instant::now();
    let phase = runtime.block_on(async {
        let tasks = connect_viewers(args.viewers, &counters, |viewer| {
            tokio::spawn(polis_viewer(
                options(VIEWER_TOKEN, Role::Viewer),
                layout.area(viewer),
                args.publish_interval_ms,
                Arc::clone(&window_cell),
                stop_rx.clone(),
                Arc::clone(&histogram),
                Arc::clone(&counters),
                hard_stop,
            ))
        })
        .await;
        eprintln!(
            "fanout/polis: {} viewers subscribed, {} failed, in {:.1} s; sending {rate:.0} changes/s …",
            counters.ready.load(Ordering::Relaxed),
            counters.failed.load(Ordering::Relaxed),
            connect_started.elapsed().as_secs_f64()
        );
        let window = new_window(args.seconds);
        let _ = window_cell.set(window);
        let gateway = tokio::spawn(polis_gateway(
            options(GATEWAY_TOKEN, Role::Gateway),
            rate,
            window,
            Arc::clone(layout),
            Arc::clone(&order),
            Arc::clone(&tally),
        ));
        tokio::time::sleep_until(window.measure_from.into()).await;
        let cpu_before = cpu_by_thread();
        let waits_before = polis_waits();
        let machine_before = machine_busy_s();
        let load_before = load_cpu_s();
        let lo_before = loopback_tx();
        let stream_before = net_stats
            .as_ref()
            .map(|s| s.viewer_bytes_sent.load(Ordering::Relaxed));
        let ticks_before = metrics.ticks.load(Ordering::Relaxed);
        let mut backlog_max = 0u64;
        // Sample the fullest mailbox (the twin updates it every tick).
        while Instant::now() < window.until {
            backlog_max = backlog_max.max(metrics.viewer_backlog_max.load(Ordering::Relaxed));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let ticks_after = metrics.ticks.load(Ordering::Relaxed);
        let cpu_after = cpu_by_thread();
        let waits_after = polis_waits();
        let machine_after = machine_busy_s();
        let load_after = load_cpu_s();
        tokio::time::sleep_until(window.end.into()).await;
        let _ = stop_tx.send(true);
        let lo_after = loopback_tx();
        let stream_after = net_stats
            .as_ref()
            .map(|s| s.viewer_bytes_sent.load(Ordering::Relaxed));
        join_load(gateway, tasks, "the gateway").await;
        let seconds = window.until.duration_since(window.measure_from).as_secs_f64();
        let mut phase = finish_phase(&histogram, &counters, &tally, args.seconds);
        phase.set_loopback(lo_before, lo_after);
        phase.server_wait = (waits_after.0 - waits_before.0) / seconds;
        phase.load_wait = (waits_after.1 - waits_before.1) / seconds;
        phase.ticks_per_s = Some(ticks_after.saturating_sub(ticks_before) as f64 / seconds);
        phase.backlog_max = Some(backlog_max);
        phase.stream_bytes = stream_before
            .zip(stream_after)
            .map(|(before, after)| after.saturating_sub(before));
        let cores = |name: &str| {
            (cpu_after.get(name).copied().unwrap_or(0.0)
                - cpu_before.get(name).copied().unwrap_or(0.0))
                / seconds
        };
        phase.server_cpu = ["polis-twin", "polis-net", "polis-history"]
            .iter()
            .map(|name| (name.trim_start_matches("polis-").to_owned(), cores(name)))
            .collect();
        phase.load_cpu = (load_after - load_before) / seconds;
        phase.machine_cpu = (machine_after - machine_before) / seconds;
        phase
    });
    drop(server);
    Ok(phase)
}

/// The measurement window starting now: a warm-up of a fifth of the
/// measured time (at least 1 s), the measured time, then [`DRAIN`].
pub(super) fn new_window(seconds: f64) -> Window {
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64((seconds / 5.0).max(1.0));
    let until = measure_from + Duration::from_secs_f64(seconds);
    Window {
        clock: Clock(CLOCK_ORIGIN.get().copied().unwrap_or(start)),
        start,
        measure_from,
        until,
        end: until + DRAIN,
    }
}

/// The run's clock origin (set once at the start of the bench).
pub(super) static CLOCK_ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

// ------------------------------------------------------------ mosquitto ---

async fn mqtt_viewer(
    port: u16,
    viewer: usize,
    filters: Vec<String>,
    window: Arc<std::sync::OnceLock<Window>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    histogram: Arc<LatencyHistogram>,
    counters: Arc<ViewerCounters>,
    hard_stop: Instant,
) {
    use rumqttc::{Event, Packet, QoS, SubscribeFilter};
    let result = async {
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
        while Instant::now() < hard_stop {
            let event = tokio::select! {
                event = eventloop.poll() => event?,
                _ = stop.wait_for(|stop| *stop) => break,
            };
            match event {
                Event::Incoming(Packet::SubAck(_)) => {
                    counters.ready.fetch_add(1, Ordering::Relaxed);
                }
                Event::Incoming(Packet::Publish(publish)) => {
                    if let Some(us) = window
                        .get()
                        .and_then(|w| measured_latency_us(w, &publish.payload))
                    {
                        histogram.record(us);
                        counters.delivered.fetch_add(1, Ordering::Relaxed);
                    }
                }
                _ => {}
            }
        }
        let _ = client.try_disconnect();
        Ok::<_, anyhow::Error>(())
    }
    .await;
    if let Err(error) = result {
        counters.fail(&error);
    }
}

async fn mqtt_publisher(
    port: u16,
    rate: f64,
    window: Window,
    layout: Arc<Layout>,
    order: Arc<Vec<u32>>,
    tally: Arc<SendTally>,
) -> anyhow::Result<()> {
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
    let topics: Vec<String> = (0..layout.sensors).map(|s| layout.topic(s)).collect();
    let mut pacer = Pacer::new(rate, window, &order, &layout, &tally).await;
    while let Some(burst) = pacer.next().await {
        let device_time_ms = unix_ms();
        for (sensor, sent_us) in burst {
            let mut payload = Vec::with_capacity(MQTT_PAYLOAD_BYTES);
            payload.extend_from_slice(&sent_us.to_le_bytes());
            payload.extend_from_slice(&device_time_ms.to_le_bytes());
            payload.extend_from_slice(&(sent_us as f64).to_le_bytes());
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

fn run_mosquitto(
    runtime: &tokio::runtime::Runtime,
    args: &FanoutArgs,
    rate: f64,
    layout: &Arc<Layout>,
    dir: &Path,
) -> anyhow::Result<Option<Phase>> {
    let Some(broker) = Broker::start(dir, args.mosquitto_nodelay)? else {
        return Ok(None);
    };
    let port = broker.port;
    let PhaseLoad {
        histogram,
        counters,
        tally,
        window_cell,
        stop_tx,
        stop_rx,
        hard_stop,
        order,
    } = PhaseLoad::new(args);
    eprintln!(
        "fanout/mosquitto: broker pid {} on 127.0.0.1:{port}; connecting {} viewers …",
        broker.child.id(),
        args.viewers
    );
    let connect_started = Instant::now();
    let phase = runtime.block_on(async {
        let tasks = connect_viewers(args.viewers, &counters, |viewer| {
            tokio::spawn(mqtt_viewer(
                port,
                viewer,
                layout.filters(viewer),
                Arc::clone(&window_cell),
                stop_rx.clone(),
                Arc::clone(&histogram),
                Arc::clone(&counters),
                hard_stop,
            ))
        })
        .await;
        eprintln!(
            "fanout/mosquitto: {} viewers subscribed, {} failed, in {:.1} s; publishing {rate:.0} readings/s …",
            counters.ready.load(Ordering::Relaxed),
            counters.failed.load(Ordering::Relaxed),
            connect_started.elapsed().as_secs_f64()
        );
        let window = new_window(args.seconds);
        let _ = window_cell.set(window);
        let publisher = tokio::spawn(mqtt_publisher(
            port,
            rate,
            window,
            Arc::clone(layout),
            Arc::clone(&order),
            Arc::clone(&tally),
        ));
        tokio::time::sleep_until(window.measure_from.into()).await;
        let broker_before = broker.cpu_s();
        let broker_wait_before = process_run_queue_wait_s(broker.child.id());
        let load_wait_before = polis_waits().1;
        let machine_before = machine_busy_s();
        let load_before = load_cpu_s();
        let lo_before = loopback_tx();
        tokio::time::sleep_until(window.until.into()).await;
        let broker_after = broker.cpu_s();
        let broker_wait_after = process_run_queue_wait_s(broker.child.id());
        let load_wait_after = polis_waits().1;
        let machine_after = machine_busy_s();
        let load_after = load_cpu_s();
        tokio::time::sleep_until(window.end.into()).await;
        let _ = stop_tx.send(true);
        let lo_after = loopback_tx();
        join_load(publisher, tasks, "the MQTT publisher").await;
        let seconds = window.until.duration_since(window.measure_from).as_secs_f64();
        let mut phase = finish_phase(&histogram, &counters, &tally, args.seconds);
        phase.set_loopback(lo_before, lo_after);
        phase.server_cpu = vec![("mosquitto".into(), (broker_after - broker_before) / seconds)];
        phase.server_wait = (broker_wait_after - broker_wait_before) / seconds;
        phase.load_wait = (load_wait_after - load_wait_before) / seconds;
        phase.load_cpu = (load_after - load_before) / seconds;
        phase.machine_cpu = (machine_after - machine_before) / seconds;
        phase
    });
    drop(broker);
    Ok(Some(phase))
}

// ----------------------------------------------------------------- run ---

pub(crate) fn run(mut args: FanoutArgs) -> anyhow::Result<ExitCode> {
    if args.quick {
        args.viewers = args.viewers.min(50);
        args.sensors = args.sensors.min(10_000);
        args.tiles = args.tiles.min(10);
        args.seconds = args.seconds.min(5.0);
    }
    anyhow::ensure!(
        (1..=10_000_000).contains(&args.sensors),
        "--sensors must be in [1, 10,000,000]"
    );
    anyhow::ensure!(
        (1..=10_000).contains(&args.viewers),
        "--viewers must be in [1, 10,000]"
    );
    anyhow::ensure!(
        args.seconds.is_finite() && args.seconds > 0.0 && args.seconds <= 3_600.0,
        "--seconds must be in (0, 3600]"
    );
    let rate = args
        .changes_per_second
        .unwrap_or(args.sensors as f64 / 10.0);
    anyhow::ensure!(
        rate.is_finite() && rate > 0.0 && rate <= 1_000_000.0,
        "--changes-per-second must be in (0, 1,000,000]"
    );
    if let Some(tick_hz) = args.tick_hz {
        anyhow::ensure!(
            tick_hz.is_finite() && (1.0..=1_000.0).contains(&tick_hz),
            "--tick-hz must be in [1, 1000]"
        );
    }
    let _ = CLOCK_ORIGIN.set(Instant::now());
    let scene = grid_scene(1);
    let layout = Arc::new(Layout::new(
        args.sensors,
        args.tiles,
        args.viewers,
        scene.georeference,
    )?);
    let area_sensors = layout.mean_area_sensors();
    eprintln!(
        "fanout: {} viewers, {} sensors ({}×{} tiles of {}×{} sensors; ~{area_sensors:.0} sensors per viewer), {rate:.0} changes/s, server tick {} Hz (event-driven up to {} Hz), Polis viewers' publishing interval {} ms, {:.0} s measured",
        args.viewers,
        args.sensors,
        layout.tiles,
        layout.tiles,
        layout.tile_side,
        layout.tile_side,
        args.tick_hz.unwrap_or(crate::DEFAULT_TICK_HZ),
        args.max_tick_hz.unwrap_or(crate::DEFAULT_MAX_TICK_HZ),
        args.publish_interval_ms,
        args.seconds
    );
    let dir = tempfile::tempdir()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.load_threads.clamp(1, 16))
        .thread_name("polis-bench-load")
        .enable_all()
        .build()?;
    let polis = run_polis(&runtime, &args, rate, &layout, &dir.path().join("data"))?;
    let mosquitto = if args.no_baseline {
        None
    } else {
        match run_mosquitto(&runtime, &args, rate, &layout, dir.path()) {
            Ok(Some(phase)) => Some(phase),
            Ok(None) => {
                eprintln!(
                    "fanout: mosquitto not found (looked in PATH and /usr/sbin); install the Debian package `mosquitto` (apt-get install mosquitto) for the baseline column — skipping it"
                );
                None
            }
            Err(error) => {
                eprintln!("fanout: the mosquitto baseline failed: {error:#} — skipping it");
                None
            }
        }
    };
    runtime.shutdown_timeout(Duration::from_secs(2));
    report(&args, rate, area_sensors, &polis, mosquitto.as_ref());
    Ok(ExitCode::SUCCESS)
}

fn report(
    args: &FanoutArgs,
    rate: f64,
    area_sensors: f64,
    polis: &Phase,
    mosquitto: Option<&Phase>,
) {
    let ratio = |f: fn(&Phase) -> f64| mosquitto.map(|m| f(polis) / f(m));
    if args.json {
        let report = serde_json::json!({
            "scenario": "fanout",
            "viewers": args.viewers,
            "sensors": args.sensors,
            "mean_sensors_per_viewer": area_sensors.round(),
            "changes_per_second": rate,
            "tick_hz": args.tick_hz.unwrap_or(crate::DEFAULT_TICK_HZ),
            "max_tick_hz": args.max_tick_hz.unwrap_or(crate::DEFAULT_MAX_TICK_HZ),
            "publish_interval_ms": args.publish_interval_ms,
            "seconds": args.seconds,
            "polis": polis.json(),
            "mosquitto": mosquitto.map(Phase::json),
            "ratio_polis_over_mosquitto": {
                "delivered_values_per_s": ratio(Phase::delivered_per_s),
                "latency_p50": ratio(|p| p.p50_ms),
                "latency_p99": ratio(|p| p.p99_ms),
                "latency_p99_9": ratio(|p| p.p999_ms),
                "loopback_bytes_per_delivered_value": ratio(Phase::bytes_per_value),
            },
        });
        println!("{report}");
        return;
    }
    let cell = |f: &dyn Fn(&Phase) -> String| mosquitto.map_or_else(|| "–".to_owned(), f);
    let ratio_cell = |r: Option<f64>| r.map_or_else(|| "–".to_owned(), |r| format!("{r:.2}"));
    println!("| measure | Polis | baseline: mosquitto | Polis / mosquitto |");
    println!("|---|---|---|---|");
    let viewers = |p: &Phase| {
        format!(
            "{} subscribed, {} failed",
            p.viewers_ready, p.viewers_failed
        )
    };
    println!("| viewers | {} | {} | – |", viewers(polis), cell(&viewers));
    let delivered = |p: &Phase| {
        format!(
            "{:.0} ({:.1} % of {} expected)",
            p.delivered_per_s(),
            100.0 * p.deliveries as f64 / p.deliveries_expected.max(1) as f64,
            p.deliveries_expected
        )
    };
    println!(
        "| values delivered/s | {} | {} | {} |",
        delivered(polis),
        cell(&delivered),
        ratio_cell(ratio(Phase::delivered_per_s))
    );
    let latency = |p: &Phase| {
        format!(
            "{:.2} / {:.2} / {:.2} ms (max {:.0})",
            p.p50_ms, p.p99_ms, p.p999_ms, p.max_ms
        )
    };
    println!(
        "| sensor→viewer latency p50 / p99 / p99.9 | {} | {} | {} / {} / {} |",
        latency(polis),
        cell(&latency),
        ratio_cell(ratio(|p| p.p50_ms)),
        ratio_cell(ratio(|p| p.p99_ms)),
        ratio_cell(ratio(|p| p.p999_ms))
    );
    let bytes = |p: &Phase| {
        format!(
            "{:.1} B ({:.2} packets)",
            p.bytes_per_value(),
            p.loopback_packets as f64 / p.deliveries.max(1) as f64
        )
    };
    println!(
        "| loopback bytes per delivered value (all traffic, all headers) | {} | {} | {} |",
        bytes(polis),
        cell(&bytes),
        ratio_cell(ratio(Phase::bytes_per_value))
    );
    if let Some(stream) = polis.stream_bytes {
        println!(
            "| of which viewer frame payload (no QUIC/UDP/IP) | {:.1} B | – | – |",
            stream as f64 / polis.deliveries.max(1) as f64
        );
    }
    let cpu = |p: &Phase| {
        let parts: Vec<String> = p
            .server_cpu
            .iter()
            .map(|(name, cores)| format!("{name} {cores:.2}"))
            .collect();
        format!("{:.2} ({})", p.server_cores(), parts.join(", "))
    };
    println!(
        "| server CPU (cores) | {} | {} | {} |",
        cpu(polis),
        cell(&cpu),
        ratio_cell(ratio(Phase::server_cores))
    );
    if let (Some(ticks), Some(backlog)) = (polis.ticks_per_s, polis.backlog_max) {
        println!(
            "| twin ticks/s achieved; fullest viewer mailbox (entries) | {ticks:.1}; {backlog} | – | – |"
        );
    }
    let load = |p: &Phase| format!("{:.2}", p.load_cpu);
    println!(
        "| load generator CPU (cores, same process) | {} | {} | – |",
        load(polis),
        cell(&load)
    );
    let waits = |p: &Phase| format!("{:.2} / {:.2}", p.server_wait, p.load_wait);
    println!(
        "| run-queue wait (s per s, summed over threads): server / load | {} | {} | – |",
        waits(polis),
        cell(&waits)
    );
    let machine = |p: &Phase| format!("{:.2} of {}", p.machine_cpu, cores_available());
    println!(
        "| whole machine busy CPU (cores, every process) | {} | {} | – |",
        machine(polis),
        cell(&machine)
    );
    for (name, phase) in [("Polis", Some(polis)), ("mosquitto", mosquitto)] {
        if let Some(error) = phase.and_then(|p| p.first_error.as_deref()) {
            println!("\n{name}: first viewer error: {error}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_round_trip_within_two_percent() {
        for us in [
            0u64,
            1,
            999,
            1_023,
            1_024,
            1_500,
            65_432,
            3_000_000,
            1 << 39,
        ] {
            let value = LatencyHistogram::value_us(LatencyHistogram::index(us));
            let error = (value - us as f64).abs() / (us as f64).max(1.0);
            assert!(
                error <= 0.02 || (value - us as f64).abs() <= 0.5,
                "{us} → {value}"
            );
        }
    }

    #[test]
    fn histogram_percentiles() {
        let histogram = LatencyHistogram::new();
        for us in 1..=1_000u64 {
            histogram.record(us);
        }
        assert_eq!(histogram.count(), 1_000);
        assert!((histogram.percentile_ms(50.0) - 0.5005).abs() < 0.001);
        assert!((histogram.percentile_ms(99.0) - 0.9905).abs() < 0.001);
    }

    #[test]
    fn layout_watchers_match_filters_and_areas() -> anyhow::Result<()> {
        let georeference = grid_scene(1).georeference;
        let layout = Layout::new(10_000, 10, 20, georeference)?;
        assert_eq!((layout.side, layout.tile_side, layout.tiles), (100, 10, 10));
        // Each viewer's filters cover exactly the sensors counted as watched.
        let watched: u64 = (0..layout.sensors).map(|s| layout.watchers(s)).sum();
        let mut by_filters = 0u64;
        for viewer in 0..20 {
            let filters = layout.filters(viewer);
            for sensor in 0..layout.sensors {
                let topic = layout.topic(sensor);
                if filters
                    .iter()
                    .any(|f| topic.starts_with(f.trim_end_matches('#')))
                {
                    by_filters += 1;
                }
            }
        }
        assert_eq!(watched, by_filters);
        assert_eq!(watched, 20 * 900);
        Ok(())
    }

    #[test]
    fn change_order_is_a_permutation() {
        let mut order = change_order(10_000);
        order.sort_unstable();
        assert!(order.iter().enumerate().all(|(i, &s)| i as u32 == s));
    }
}
