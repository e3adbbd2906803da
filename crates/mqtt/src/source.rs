//! One source's connection to its broker, and the `polis-mqtt` thread that
//! runs every source.
//!
//! A message goes: broker → decode → checks against the scene's sensors
//! (unit, unknown, scope) → a [`ReadingBatch`] into the twin's bounded
//! channel (the same [`NetEvent::Batch`] a QUIC gateway sends) → the twin
//! applies it and history commits it → the reply settles the message in
//! the [`AckQueue`] → its PUBACK goes once every message before it has
//! gone. A full queue stops the source from polling the broker, so a slow
//! twin slows delivery rather than queueing without bound.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use polis_net::{IngestPort, LogLimiter, LogText, LogVerdict, NetEvent};
use polis_protocol::{
    BatchAck, MAX_READINGS_PER_BATCH, ProtocolError, Reading, ReadingBatch, ReadingOutcome,
};
use tokio::sync::{oneshot, watch};
use tracing::{debug, error, info, warn};

use crate::backoff::Backoff;
use crate::decode::Sensors;
use crate::queue::AckQueue;
use crate::settings::SourceSettings;
use crate::stats::SourceStats;
use crate::topic::topic_matches;
use crate::transport::{self, AckReason, EventLoop, Publish, Received};

/// First reconnection delay.
const BACKOFF_BASE: Duration = Duration::from_millis(250);
/// Longest reconnection delay.
const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// Longest a stopping source waits for the outcomes of messages it already
/// handed to the twin, to acknowledge them.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);
/// How many times the window a source holds before it drops the connection
/// (see [`Source::overflowing`]).
const OVERFLOW_FACTOR: usize = 8;
/// How often refusals held back by the log limiter are summarised.
const SUMMARY_EVERY: Duration = Duration::from_secs(10);
/// Bytes of a refused payload shown in the log as its example.
const EXAMPLE_BYTES: usize = 120;

type Answer = Result<BatchAck, ProtocolError>;

/// A message awaiting its acknowledgement.
#[derive(Debug)]
struct Entry {
    /// The PUBLISH to acknowledge (`None` for QoS 0).
    publish: Option<Publish>,
    /// When it arrived.
    received: Instant,
    /// What its PUBACK tells the broker (MQTT 5), once settled.
    reason: AckReason,
}

/// What happened to a message handed to the twin, kept until its answer.
#[derive(Debug)]
struct Handed {
    topic: String,
    sensors: Vec<String>,
    answer: oneshot::Receiver<Answer>,
}

/// Why a source's loop ended.
enum End {
    /// Asked to stop, or the server is closing.
    Stopped,
    /// The twin takes no more batches.
    TwinGone,
}

struct Source {
    settings: SourceSettings,
    stats: Arc<SourceStats>,
    port: IngestPort,
    sensors: Arc<Sensors>,
    gateway: u64,
    next_seq: u64,
    queue: AckQueue<Entry>,
    handed: HashMap<u64, Handed>,
    log: LogLimiter<String>,
}

/// Runs one source until `stop` (or the server's closing signal) is set.
pub(crate) async fn run_source(
    settings: SourceSettings,
    stats: Arc<SourceStats>,
    port: IngestPort,
    sensors: Arc<Sensors>,
    stop: watch::Receiver<bool>,
) {
    let gateway = port.connection_id();
    let capacity = usize::from(settings.max_in_flight.max(1));
    let mut source = Source {
        settings,
        stats,
        port,
        sensors,
        gateway,
        next_seq: 0,
        queue: AckQueue::new(capacity),
        handed: HashMap::new(),
        log: LogLimiter::new(Duration::from_secs(60), 1024),
    };
    let mut eventloop = transport::connect(&source.settings);
    let end = source.run(&mut eventloop, stop).await;
    source.stats.set_connected(false);
    let why = match end {
        End::Stopped => "asked to",
        End::TwinGone => "the twin takes no more readings",
    };
    info!(source = %source.settings.name, why, "mqtt source stopped");
}

impl Source {
    async fn run(&mut self, eventloop: &mut EventLoop, mut stop: watch::Receiver<bool>) -> End {
        let mut closing = self.port.closing();
        let mut backoff = Backoff::new(BACKOFF_BASE, BACKOFF_CAP);
        let mut connected = false;
        let mut failing_logged = false;
        let mut stopping: Option<Instant> = None;
        // When the source last dropped the connection for holding too much:
        // reconnections within a minute of it keep backing off.
        let mut overflowed: Option<Instant> = None;
        let mut summaries = tokio::time::interval(SUMMARY_EVERY);
        summaries.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.release(eventloop);
            if stopping.is_none() && (*stop.borrow() || *closing.borrow()) {
                stopping = Some(Instant::now() + DRAIN_DEADLINE);
            }
            if let Some(deadline) = stopping
                && (self.queue.is_empty() || Instant::now() > deadline)
            {
                self.disconnect(eventloop, connected).await;
                return End::Stopped;
            }
            let front = self.queue.first_unsettled();
            let draining = stopping.is_some();
            let outcome = tokio::select! {
                _ = stop.changed(), if !draining => Step::Look,
                _ = closing.changed(), if !draining => Step::Look,
                _ = tokio::time::sleep(DRAIN_DEADLINE), if draining => Step::Look,
                _ = summaries.tick() => Step::Summarise,
                answer = wait_answer(&mut self.handed, front), if front.is_some() => Step::Answer(answer),
                // Full: poll only to write the acknowledgements waiting.
                event = eventloop.poll(), if !self.full() || eventloop.has_unwritten() => Step::Event(event),
            };
            match outcome {
                Step::Look => {}
                Step::Summarise => self.log_held_back(),
                Step::Answer((seq, answer)) => match answer {
                    Some(Ok(ack)) => self.settled(seq, &ack),
                    Some(Err(error)) => {
                        // Storage failed: the message must not be
                        // acknowledged. Drop the connection so the broker
                        // sends it (and what followed) again.
                        error!(source = %self.settings.name, "history could not store a message's readings ({error}); reconnecting so the broker sends it again");
                        self.forget_connection();
                        let _ = eventloop.disconnect();
                    }
                    None => return End::TwinGone,
                },
                Step::Event(Ok(Received::Connected { session_present })) => {
                    if overflowed.is_none_or(|at| at.elapsed() > Duration::from_secs(60)) {
                        backoff.reset();
                    }
                    failing_logged = false;
                    if !connected {
                        connected = true;
                        self.stats.set_connected(true);
                        info!(source = %self.settings.name, broker = %self.settings.broker, session_present, "mqtt source connected");
                    }
                    // Every time: a broker that lost the session (or a first
                    // connection) has none of them.
                    for subscription in &self.settings.subscriptions {
                        if let Err(err) =
                            eventloop.subscribe(&subscription.filter, self.settings.qos)
                        {
                            warn!(source = %self.settings.name, filter = %subscription.filter, "{err}");
                        }
                    }
                }
                Step::Event(Ok(Received::Message(publish))) => {
                    if draining {
                        // Not acknowledged: the broker keeps it for the
                        // next session.
                        continue;
                    }
                    if self.overflowing() {
                        // Not acknowledged either: the broker sends it, and
                        // every unacknowledged message, on the next session,
                        // after a backoff that grows while this repeats.
                        if overflowed.is_none_or(|at| at.elapsed() > Duration::from_secs(60)) {
                            warn!(
                                source = %self.settings.name,
                                held = self.queue.len(),
                                max_in_flight = self.settings.max_in_flight,
                                "the broker sends far more unacknowledged messages than the receive maximum; reconnecting with backoff to bound what Polis holds"
                            );
                        }
                        overflowed = Some(Instant::now());
                        self.forget_connection();
                        let _ = eventloop.disconnect();
                        continue;
                    }
                    if !self.take(publish).await {
                        return End::TwinGone;
                    }
                }
                Step::Event(Ok(Received::Subscribed(Ok(())))) => {
                    self.stats.subscribed.fetch_add(1, Ordering::Relaxed);
                }
                Step::Event(Ok(Received::Subscribed(Err(code)))) => {
                    warn!(source = %self.settings.name, code, "the broker refused a subscription");
                }
                Step::Event(Err(err)) => {
                    if connected {
                        connected = false;
                        self.stats.set_connected(false);
                        warn!(source = %self.settings.name, broker = %self.settings.broker, "mqtt source disconnected: {err}; reconnecting");
                    } else if !failing_logged {
                        failing_logged = true;
                        warn!(source = %self.settings.name, broker = %self.settings.broker, "mqtt source cannot connect: {err}; retrying with backoff");
                    } else {
                        debug!(source = %self.settings.name, "mqtt connection attempt failed: {err}");
                    }
                    self.forget_connection();
                    if draining {
                        return End::Stopped;
                    }
                    let delay = backoff.next_delay(rand::random::<f64>());
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = stop.changed() => {}
                        _ = closing.changed() => {}
                    }
                }
            }
        }
    }

    /// True when a window of messages awaits acknowledgement: take no
    /// more from the broker.
    fn full(&self) -> bool {
        self.queue.is_full()
    }

    /// True when the source holds many times its window: the broker keeps
    /// sending beyond the receive maximum (a 3.1.1 broker has none).
    fn overflowing(&self) -> bool {
        let window = usize::from(self.settings.max_in_flight.max(1));
        self.queue.len() >= window.saturating_mul(OVERFLOW_FACTOR).max(1024)
    }

    /// Acknowledges every message at the front of the queue whose outcome
    /// is known, in order (queued on the connection, written on its next
    /// poll).
    fn release(&mut self, eventloop: &mut EventLoop) {
        while let Some(entry) = self.queue.pop_settled() {
            if let Some(publish) = entry.publish {
                self.stats.ack_latency.record(entry.received.elapsed());
                if let Err(err) = eventloop.ack(&publish, entry.reason) {
                    // Not acknowledged: the broker sends it again.
                    warn!(source = %self.settings.name, "{err}");
                }
            }
        }
    }

    /// The connection is gone: messages not yet acknowledged will come
    /// again, so their acknowledgements must not go on the next connection.
    fn forget_connection(&mut self) {
        let dropped = self.queue.clear();
        self.handed.clear();
        if dropped > 0 {
            debug!(source = %self.settings.name, dropped, "unacknowledged messages left for the broker to send again");
        }
    }

    /// Sends DISCONNECT (the session stays on the broker) and lets the event
    /// loop write it and the last acknowledgements, briefly.
    async fn disconnect(&mut self, eventloop: &mut EventLoop, connected: bool) {
        if !connected || eventloop.disconnect().is_err() {
            return;
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while eventloop.poll().await.is_ok() {}
        })
        .await;
    }

    /// Handles one message: decodes and checks it, and hands its readings
    /// to the twin; false once the twin takes no more.
    async fn take(&mut self, publish: Publish) -> bool {
        self.stats.messages.fetch_add(1, Ordering::Relaxed);
        let received = Instant::now();
        let topic = publish.topic().into_owned();
        let (readings, reason) = self.readings_of(&topic, publish.payload());
        let publish = publish.needs_ack().then_some(publish);
        if readings.is_empty() {
            // Nothing to wait for; it can never succeed, so it is
            // acknowledged (MQTT 5: with the reason) rather than sent again
            // forever.
            self.queue.push(
                Entry {
                    publish,
                    received,
                    reason,
                },
                true,
            );
            return true;
        }
        let sensors: Vec<String> = readings.iter().map(|r| r.sensor.clone()).collect();
        let (reply, answer) = oneshot::channel();
        self.next_seq += 1;
        let event = NetEvent::Batch {
            gateway: self.gateway,
            scope: self.settings.scope.clone(),
            batch: ReadingBatch {
                seq: self.next_seq,
                readings,
            },
            reply,
        };
        if !self.port.send(event).await {
            return false;
        }
        let seq = self.queue.push(
            Entry {
                publish,
                received,
                reason: AckReason::Success,
            },
            false,
        );
        self.handed.insert(
            seq,
            Handed {
                topic,
                sensors,
                answer,
            },
        );
        true
    }

    /// The readings of a message that pass the source's checks, every
    /// refusal counted and logged, and what to tell the broker if none
    /// does.
    fn readings_of(&mut self, topic: &str, payload: &[u8]) -> (Vec<Reading>, AckReason) {
        let Some(subscription) = self
            .settings
            .subscriptions
            .iter()
            .find(|s| topic_matches(&s.filter, topic))
        else {
            self.refuse(topic, "no_subscription", 1, topic);
            return (Vec::new(), AckReason::Refused);
        };
        if payload.len() > self.settings.max_payload_bytes {
            let example = format!("{} bytes", payload.len());
            self.refuse(topic, "too_large", 1, &example);
            return (Vec::new(), AckReason::Refused);
        }
        let decoded = match subscription.payloads.decode(topic, payload, unix_now_ms()) {
            Ok(decoded) => decoded,
            Err(reason) => {
                let shown = &payload[..payload.len().min(EXAMPLE_BYTES)];
                let example = String::from_utf8_lossy(shown).into_owned();
                self.refuse(topic, reason, 1, &example);
                return (Vec::new(), AckReason::PayloadFormatInvalid);
            }
        };
        if decoded.len() > MAX_READINGS_PER_BATCH {
            let example = format!("{} records", decoded.len());
            self.refuse(topic, "too_many_records", decoded.len() as u64, &example);
            return (Vec::new(), AckReason::Refused);
        }
        let prefix = subscription.sensor_prefix.clone();
        let mut readings = Vec::with_capacity(decoded.len());
        let mut reason = AckReason::Refused;
        for reading in decoded {
            let sensor = format!("{prefix}{}", reading.sensor_id);
            let Some(sensor_unit) = self.sensors.unit(&sensor) else {
                self.refuse(topic, "unknown_sensor", 1, &sensor);
                continue;
            };
            if let Some(scope) = &self.settings.scope
                && !scope.iter().any(|p| sensor.starts_with(p.as_str()))
            {
                self.refuse(topic, "out_of_scope", 1, &sensor);
                reason = AckReason::NotAuthorized;
                continue;
            }
            let value = match reading.unit.as_deref() {
                None => Some(reading.value),
                Some(unit) if unit == sensor_unit => Some(reading.value),
                Some(unit) => self.sensors.convert(reading.value, unit, sensor_unit),
            };
            let Some(value) = value else {
                let example = format!(
                    "{sensor}: unit {:?}, the sensor's is {sensor_unit:?}",
                    reading.unit.as_deref().unwrap_or_default()
                );
                self.refuse(topic, "unit_mismatch", 1, &example);
                continue;
            };
            readings.push(Reading {
                sensor,
                device_time_ms: reading.device_time_ms,
                value,
                quality: None,
            });
        }
        (readings, reason)
    }

    /// The twin answered message `seq`: count its readings and refusals,
    /// and let it be acknowledged.
    fn settled(&mut self, seq: u64, ack: &BatchAck) {
        let Some(handed) = self.handed.remove(&seq) else {
            return;
        };
        let mut not_new = 0u64;
        let mut refused = 0usize;
        let mut reason = AckReason::Refused;
        for not in &ack.not_accepted {
            if not.outcome == ReadingOutcome::Duplicate {
                // Sent again by the broker (or twice by the device).
                not_new += 1;
                continue;
            }
            if !not.outcome.is_refusal() {
                continue;
            }
            not_new += 1;
            refused += 1;
            if not.outcome == ReadingOutcome::OutOfScope {
                reason = AckReason::NotAuthorized;
            }
            let example = usize::try_from(not.index)
                .ok()
                .and_then(|i| handed.sensors.get(i))
                .cloned()
                .unwrap_or_default();
            self.refuse(&handed.topic, outcome_reason(not.outcome), 1, &example);
        }
        let recorded = (handed.sensors.len() as u64).saturating_sub(not_new);
        self.stats.readings.fetch_add(recorded, Ordering::Relaxed);
        if refused == handed.sensors.len()
            && let Some(entry) = self.queue.get_mut(seq)
        {
            // Every reading refused: MQTT 5 tells the publisher why.
            entry.reason = reason;
        }
        self.queue.settle(seq);
    }

    /// Logs, once, how many refusals of each topic and reason the log
    /// limiter held back in a minute that has ended (a burst followed by
    /// silence is counted too).
    fn log_held_back(&mut self) {
        for (topic, reason, suppressed) in self.log.take_ended(Instant::now()) {
            warn!(
                source = %self.settings.name,
                topic = %LogText::name(&topic),
                reason,
                suppressed,
                "{suppressed} more mqtt messages refused like this in the last minute"
            );
        }
    }

    /// Counts `count` refusals for `reason` and logs the first of each
    /// topic and reason a minute, with an example.
    fn refuse(&mut self, topic: &str, reason: &'static str, count: u64, example: &str) {
        self.stats.refuse(reason, count);
        if let LogVerdict::Write { suppressed } =
            self.log.check(topic.to_owned(), reason, Instant::now())
        {
            warn!(
                source = %self.settings.name,
                topic = %LogText::name(topic),
                reason,
                example = %LogText::detail(example),
                suppressed,
                "mqtt readings refused"
            );
        }
    }
}

/// One turn of a source's loop.
enum Step {
    /// Look at the stop and closing signals again.
    Look,
    /// Log the refusals the log limiter held back in minutes that ended.
    Summarise,
    /// The twin's answer for a message (`None`: the twin is gone).
    Answer((u64, Option<Answer>)),
    /// The event loop's next event.
    Event(Result<Received, String>),
}

/// The answer for message `front` (present while `front` is `Some`).
async fn wait_answer(
    handed: &mut HashMap<u64, Handed>,
    front: Option<u64>,
) -> (u64, Option<Answer>) {
    let seq = front.unwrap_or_default();
    match handed.get_mut(&seq) {
        Some(handed) => (seq, (&mut handed.answer).await.ok()),
        None => std::future::pending().await,
    }
}

/// The metric label of a refusal by the twin.
fn outcome_reason(outcome: ReadingOutcome) -> &'static str {
    match outcome {
        ReadingOutcome::Stale => "stale",
        ReadingOutcome::Duplicate => "duplicate",
        ReadingOutcome::UnknownSensor => "unknown_sensor",
        ReadingOutcome::NonFiniteValue => "non_finite",
        ReadingOutcome::ConflictingValue => "conflicting_value",
        ReadingOutcome::OutOfScope => "out_of_scope",
        ReadingOutcome::FutureTime => "future_time",
        ReadingOutcome::TimeOutOfRange => "time_out_of_range",
    }
}

/// The wall clock, ms since the Unix epoch (0 before it).
fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Every source of a server, on the `polis-mqtt` thread; dropping it stops
/// them.
pub struct MqttSources {
    stats: Vec<Arc<SourceStats>>,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for MqttSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttSources")
            .field("sources", &self.stats.len())
            .finish_non_exhaustive()
    }
}

impl MqttSources {
    /// Starts every source in `sources` on the `polis-mqtt` thread (a
    /// tokio runtime of its own, so neither the twin nor the QUIC edge ever
    /// waits for a broker), writing into the twin through `port` and
    /// checking readings against `sensors`.
    pub fn start(
        sources: Vec<SourceSettings>,
        port: IngestPort,
        sensors: Arc<Sensors>,
    ) -> std::io::Result<MqttSources> {
        let stats: Vec<Arc<SourceStats>> = sources
            .iter()
            .map(|s| Arc::new(SourceStats::new(&s.name)))
            .collect();
        let (stop, stop_rx) = watch::channel(false);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread_stats = stats.clone();
        let thread = std::thread::Builder::new()
            .name("polis-mqtt".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let mut tasks = tokio::task::JoinSet::new();
                    for (settings, stats) in sources.into_iter().zip(thread_stats) {
                        tasks.spawn(run_source(
                            settings,
                            stats,
                            port.clone(),
                            Arc::clone(&sensors),
                            stop_rx.clone(),
                        ));
                    }
                    while tasks.join_next().await.is_some() {}
                });
            })?;
        Ok(MqttSources {
            stats,
            stop,
            thread: Some(thread),
        })
    }

    /// Each source's counters, in configuration order.
    pub fn stats(&self) -> &[Arc<SourceStats>] {
        &self.stats
    }

    /// Stops every source (acknowledging what is already durable) and
    /// joins the thread.
    pub fn stop(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for MqttSources {
    fn drop(&mut self) {
        self.stop_now();
    }
}
