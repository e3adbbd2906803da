//! One fan-out phase, the same for every system under test: connect the
//! viewers, publish the changes at a steady rate through a measurement
//! window, and collect what arrived, with the server's and the load
//! generator's use of the machine. A [`System`] supplies what differs
//! (how a viewer subscribes, how the sender publishes, which server
//! counters there are).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::FanoutArgs;
use crate::layout::{Layout, change_order};
use crate::measure::{LatencyHistogram, Window};
use crate::pin::Cores;
use crate::procstat::{Pid, ProcessSample, ProcessUse, loopback_tx, machine_busy_s};
use crate::target::PolisCounters;

/// Readings are emitted in small bursts this often (both systems).
const SEND_PERIOD: Duration = Duration::from_millis(2);
/// Viewers connecting at once (all from one address: at most the 16
/// handshakes in progress the server allows one address).
const CONNECT_CONCURRENCY: usize = 16;
/// Longest wait for one group of viewers to connect and get its snapshot.
const CONNECT_GROUP_TIMEOUT: Duration = Duration::from_secs(60);

/// The system under test of a fan-out phase: its server runs in a process
/// of its own; its viewers and its sender are tasks of the load generator.
pub(super) trait System {
    /// Name in progress lines.
    fn name(&self) -> &'static str;
    /// The server's process.
    fn pid(&self) -> Pid;
    /// Starts viewer `viewer`: it subscribes to its area, counts itself in
    /// [`ViewerCounters::ready`] once subscribed, and records each measured
    /// value it receives until [`PhaseLoad::stop`] says so.
    fn spawn_viewer(&self, viewer: usize, load: &PhaseLoad) -> JoinHandle<()>;
    /// Starts the sender: it publishes what [`Pacer`] hands it through
    /// `window`.
    fn spawn_sender(&self, window: Window, load: &PhaseLoad) -> JoinHandle<anyhow::Result<()>>;
    /// Starts churning viewer `churner`: it switches between the whole
    /// city and one corner at the phase's churn rate, counting each switch
    /// in [`ViewerCounters::churned`], until [`PhaseLoad::stop`]. `None`
    /// where the system has no areas to churn.
    fn spawn_churner(&self, _churner: usize, _load: &PhaseLoad) -> Option<JoinHandle<()>> {
        None
    }
    /// The server's own counters, if it has any the bench reads (blocking).
    fn counters(&mut self) -> anyhow::Result<Option<PolisCounters>> {
        Ok(None)
    }
}

/// What a phase's viewers and sender share: the figures they fill in, the
/// window the sender publishes in once viewers are ready, the stop signal,
/// a last-resort deadline and the order sensors change in; cheap to clone
/// into each task.
#[derive(Clone)]
pub(super) struct PhaseLoad {
    /// Sensor changes per second.
    pub(super) rate: f64,
    pub(super) layout: Arc<Layout>,
    pub(super) order: Arc<Vec<u32>>,
    pub(super) histogram: Arc<LatencyHistogram>,
    pub(super) counters: Arc<ViewerCounters>,
    pub(super) tally: Arc<SendTally>,
    /// Set when the sender starts.
    pub(super) window: Arc<std::sync::OnceLock<Window>>,
    /// Becomes `true` when viewers should stop.
    pub(super) stop: tokio::sync::watch::Receiver<bool>,
    pub(super) hard_stop: Instant,
    /// Area switches per second of each churning viewer.
    pub(super) churn_hz: f64,
}

impl PhaseLoad {
    fn new(
        args: &FanoutArgs,
        rate: f64,
        layout: &Arc<Layout>,
    ) -> (PhaseLoad, tokio::sync::watch::Sender<bool>) {
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let load = PhaseLoad {
            rate,
            layout: Arc::clone(layout),
            order: Arc::new(change_order(args.sensors)),
            histogram: Arc::new(LatencyHistogram::new()),
            counters: Arc::new(ViewerCounters::default()),
            tally: Arc::new(SendTally::default()),
            window: Arc::new(std::sync::OnceLock::new()),
            stop,
            hard_stop: Instant::now() + Duration::from_secs_f64(args.seconds * 2.0 + 600.0),
            churn_hz: args.churn_hz,
        };
        (load, stop_tx)
    }

    /// A viewer received a value sent at `sent_us` (on the window's clock)
    /// at `now_us`: recorded if it was sent in the measured window.
    pub(super) fn received(&self, window: &Window, sent_us: u64, now_us: u64) {
        if window.measured(sent_us) {
            self.record(now_us.saturating_sub(sent_us));
        }
    }

    /// A viewer received a measured value `us` microseconds after it was
    /// sent.
    pub(super) fn record(&self, us: u64) {
        self.histogram.record(us);
        self.counters.delivered.fetch_add(1, Ordering::Relaxed);
    }
}

/// What a sender did in the measured window.
#[derive(Debug, Default)]
pub(super) struct SendTally {
    /// Readings sent.
    sent: AtomicU64,
    /// Deliveries expected (viewers per sensor, summed).
    expected: AtomicU64,
}

/// Paces readings at `rate` per second from `window.start` to
/// `window.until`, in bursts every [`SEND_PERIOD`], and tallies the measured
/// ones.
pub(super) struct Pacer<'a> {
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
    /// Waits for the window's start, then paces `load`'s changes.
    pub(super) async fn new(window: Window, load: &'a PhaseLoad) -> Pacer<'a> {
        tokio::time::sleep_until(window.start.into()).await;
        let mut ticker = tokio::time::interval(SEND_PERIOD);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        Pacer {
            rate: load.rate,
            window,
            order: &load.order,
            layout: &load.layout,
            tally: &load.tally,
            ticker,
            emitted: 0,
            cursor: 0,
            max_burst: load.rate.ceil().max(1.0) as u64,
        }
    }

    /// The next burst: each sensor with its send time (µs on the run's
    /// clock); `None` once sending time is over.
    pub(super) async fn next(&mut self) -> Option<Vec<(usize, u64)>> {
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

/// Viewers' progress, shared with the tasks that run them.
#[derive(Default)]
pub(super) struct ViewerCounters {
    /// Viewers subscribed (snapshot or SUBACK received).
    pub(super) ready: AtomicUsize,
    /// Viewers that failed.
    failed: AtomicUsize,
    /// Values received for measured readings.
    delivered: AtomicU64,
    /// Churning viewers' area switches in the measured window.
    pub(super) churned: AtomicU64,
    /// The first failure, for the report.
    first_error: std::sync::Mutex<Option<String>>,
}

impl ViewerCounters {
    pub(super) fn fail(&self, error: &anyhow::Error) {
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
) -> Vec<JoinHandle<()>>
where
    F: FnMut(usize) -> JoinHandle<()>,
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

/// Waits for a phase's sender and viewers to end; a failed sender is logged
/// (the phase's figures then show what it delivered).
async fn join_load(
    sender: JoinHandle<anyhow::Result<()>>,
    viewers: Vec<JoinHandle<()>>,
    what: &str,
) {
    let sent = sender.await;
    for viewer in viewers {
        let _ = viewer.await;
    }
    match sent {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "fanout: the {what} sender failed"),
        Err(error) => tracing::warn!(%error, "fanout: the {what} sender's task failed"),
    }
}

/// Runs one phase against `system` on `runtime` (the load generator's),
/// with `churners` churning viewers besides the measured ones.
pub(super) fn run_phase(
    runtime: &tokio::runtime::Runtime,
    system: &mut impl System,
    args: &FanoutArgs,
    rate: f64,
    layout: &Arc<Layout>,
    cores: Cores,
    churners: usize,
) -> anyhow::Result<Phase> {
    let name = system.name();
    let (load, stop_tx) = PhaseLoad::new(args, rate, layout);
    eprintln!(
        "fanout/{name}: server pid {} on CPUs {}; connecting {} viewers …",
        system.pid().0,
        crate::procstat::allowed_cpus(system.pid()),
        args.viewers
    );
    let connect_started = Instant::now();
    runtime.block_on(async {
        let viewers = connect_viewers(args.viewers, &load.counters, |viewer| {
            system.spawn_viewer(viewer, &load)
        })
        .await;
        eprintln!(
            "fanout/{name}: {} viewers subscribed, {} failed, in {:.1} s; sending {rate:.0} changes/s …",
            load.counters.ready.load(Ordering::Relaxed),
            load.counters.failed.load(Ordering::Relaxed),
            connect_started.elapsed().as_secs_f64()
        );
        let mut viewers = viewers;
        viewers.extend((0..churners).filter_map(|churner| system.spawn_churner(churner, &load)));
        let window = Window::starting_now(args.seconds);
        let _ = load.window.set(window);
        let sender = system.spawn_sender(window, &load);
        tokio::time::sleep_until(window.measure_from.into()).await;
        let churned_before = load.counters.churned.load(Ordering::Relaxed);
        let counters_before = tokio::task::block_in_place(|| system.counters())?;
        let server_before = ProcessSample::take(system.pid());
        let load_before = ProcessSample::take(Pid::current());
        let machine_before = machine_busy_s();
        let lo_before = loopback_tx();
        tokio::time::sleep_until(window.until.into()).await;
        let server_after = ProcessSample::take(system.pid());
        let load_after = ProcessSample::take(Pid::current());
        let machine_after = machine_busy_s();
        let counters_until = tokio::task::block_in_place(|| system.counters())?;
        let churned = load.counters.churned.load(Ordering::Relaxed) - churned_before;
        let cores_line = cores.describe(Some(system.pid()));
        let cores = cores.json(Some(system.pid()));
        tokio::time::sleep_until(window.end.into()).await;
        let _ = stop_tx.send(true);
        let lo_after = loopback_tx();
        let counters_end = tokio::task::block_in_place(|| system.counters())?;
        join_load(sender, viewers, name).await;
        let seconds = window.measured_s();
        let counters = &load.counters;
        let histogram = &load.histogram;
        let mut phase = Phase {
            viewers_ready: counters.ready.load(Ordering::Relaxed),
            viewers_failed: counters.failed.load(Ordering::Relaxed),
            first_error: counters.first_error.lock().ok().and_then(|e| e.clone()),
            seconds,
            readings_sent: load.tally.sent.load(Ordering::Relaxed),
            deliveries_expected: load.tally.expected.load(Ordering::Relaxed),
            deliveries: counters.delivered.load(Ordering::Relaxed),
            p50_ms: histogram.percentile_ms(50.0),
            p99_ms: histogram.percentile_ms(99.0),
            p999_ms: histogram.percentile_ms(99.9),
            max_ms: histogram.max_ms(),
            server: server_before.until(&server_after),
            load: load_before.until(&load_after),
            machine_cpu: (machine_after - machine_before) / seconds,
            cores,
            cores_line,
            churned,
            ..Phase::default()
        };
        if let (Some((bytes0, packets0)), Some((bytes1, packets1))) = (lo_before, lo_after) {
            phase.loopback_bytes = bytes1.saturating_sub(bytes0);
            phase.loopback_packets = packets1.saturating_sub(packets0);
        }
        if let (Some(before), Some(until), Some(end)) = (counters_before, counters_until, counters_end)
        {
            phase.ticks_per_s = Some(until.ticks.saturating_sub(before.ticks) as f64 / seconds);
            phase.backlog_max = Some(until.backlog_max);
            phase.stream_bytes = before
                .viewer_bytes_sent
                .zip(end.viewer_bytes_sent)
                .map(|(before, after)| after.saturating_sub(before));
        }
        Ok(phase)
    })
}

/// One phase's results.
#[derive(Debug, Clone, Default)]
pub(super) struct Phase {
    pub(super) viewers_ready: usize,
    pub(super) viewers_failed: usize,
    pub(super) first_error: Option<String>,
    pub(super) seconds: f64,
    readings_sent: u64,
    pub(super) deliveries_expected: u64,
    pub(super) deliveries: u64,
    pub(super) p50_ms: f64,
    pub(super) p99_ms: f64,
    pub(super) p999_ms: f64,
    pub(super) max_ms: f64,
    loopback_bytes: u64,
    pub(super) loopback_packets: u64,
    /// Polis only: frame bytes written to viewer streams (no QUIC/UDP/IP).
    pub(super) stream_bytes: Option<u64>,
    /// The server's process.
    pub(super) server: ProcessUse,
    /// The load generator's process (viewers and sender).
    pub(super) load: ProcessUse,
    /// The whole machine's busy CPU (every process), cores: shows other
    /// work competing with the benchmark.
    pub(super) machine_cpu: f64,
    /// Polis only: twin ticks per second achieved in the window.
    pub(super) ticks_per_s: Option<f64>,
    /// Polis only: most entries waiting in one viewer's mailbox, sampled
    /// every 10 ms of the window.
    pub(super) backlog_max: Option<u64>,
    /// Where each side ran ([`Cores::json`]).
    cores: serde_json::Value,
    /// The same, in words.
    pub(super) cores_line: String,
    /// Churning viewers' area switches in the window.
    churned: u64,
}

impl Phase {
    pub(super) fn delivered_per_s(&self) -> f64 {
        self.deliveries as f64 / self.seconds
    }

    pub(super) fn churn_per_s(&self) -> f64 {
        self.churned as f64 / self.seconds
    }

    pub(super) fn bytes_per_value(&self) -> f64 {
        self.loopback_bytes as f64 / self.deliveries.max(1) as f64
    }

    pub(super) fn server_cores(&self) -> f64 {
        self.server.cores
    }

    pub(super) fn json(&self) -> serde_json::Value {
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
            "server_cpu": self.server.json(),
            "load_cpu": self.load.json(),
            "machine_busy_cpu_cores": self.machine_cpu,
            "ticks_per_s": self.ticks_per_s,
            "viewer_mailbox_backlog_max": self.backlog_max,
            "cores": self.cores,
        })
    }
}
