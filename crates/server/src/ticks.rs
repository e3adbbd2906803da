//! The twin thread: builds the headless Bevy app from the server's parts,
//! one plugin per concern, and runs its event-driven ticks until stopped,
//! then shuts down in order (apply what was received, commit it, close).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bevy::app::TaskPoolPlugin;
use bevy::prelude::*;
use bevy::time::TimePlugin;
use polis_scene::Scene;
use polis_twin::{DeviceTimeLimit, InterestPending, PickPlugin, TwinClock, TwinPlugin};
use tracing::info;

use crate::audit::AuditPlugin;
use crate::bridge::{NetBridgePlugin, NetLink};
use crate::consent::ConsentPlugin;
use crate::metrics::{MetricsPlugin, ObservedHandle};
use crate::ngsild::NgsiPlugin;
use crate::playback::PlaybackPlugin;
use crate::startup::{Parts, unix_now_ms};

/// Longest the idle twin sleeps before looking at the stop flag again.
const STOP_CHECK: Duration = Duration::from_millis(100);
/// Longest the stopping twin keeps applying what clients already sent.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

/// How often the twin ticks: every `tick` when idle, and as soon as network
/// events wait, but no sooner than `min_tick` after the last tick.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TickPace {
    tick: Duration,
    min_tick: Duration,
}

impl TickPace {
    /// From the `tick_hz` and `max_tick_hz` settings (checked to lie in
    /// their ranges; out-of-range rates are refused here too rather than
    /// panicking).
    pub(crate) fn new(tick_hz: f64, max_tick_hz: f64) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        Ok(Self {
            tick: Duration::try_from_secs_f64(1.0 / tick_hz).context("tick_hz is out of range")?,
            min_tick: Duration::try_from_secs_f64(1.0 / max_tick_hz.max(tick_hz))
                .context("max_tick_hz is out of range")?,
        })
    }
}

/// The headless app with every plugin of the server, on `parts`.
fn build_app(scene: Scene, parts: Parts, observed: ObservedHandle) -> App {
    let Parts {
        link,
        restored,
        playback,
        audit,
        privacy,
        noise,
        max_clock_skew_ms,
        interest_budget,
        consents,
        consent_inbox,
        past_groups: (past_groups, groups_path),
        ngsi,
        ..
    } = parts;
    let mut app = App::new();
    // Each plugin's resource first: the plugins find them when built.
    app.insert_resource(link)
        .insert_resource(audit)
        .insert_resource(observed)
        // Moved on before every tick (the twin reads no clock).
        .insert_resource(DeviceTimeLimit {
            newest_ms: unix_now_ms().saturating_add(max_clock_skew_ms),
        })
        .insert_resource(interest_budget)
        .insert_resource(consent_inbox);
    if let Some(playback) = playback {
        app.insert_resource(playback);
    }
    if let Some(ngsi) = ngsi {
        app.insert_resource(ngsi);
    }
    let mut twin = TwinPlugin::new(scene)
        .with_latest(restored)
        .with_privacy(privacy)
        .with_consents(consents)
        .with_past_groups(past_groups.clone());
    if let Some(noise) = noise {
        twin = twin.with_public_noise(noise, unix_now_ms());
    }
    app.add_plugins((TaskPoolPlugin::default(), TimePlugin))
        .add_plugins(twin)
        .add_plugins((
            PickPlugin,
            NetBridgePlugin,
            PlaybackPlugin,
            AuditPlugin,
            ConsentPlugin,
            NgsiPlugin,
            MetricsPlugin,
        ));
    app.finish();
    app.cleanup();
    // The groups are on record before any of their values is shown.
    let mut sensors = app.world_mut().resource_mut::<polis_twin::SensorTable>();
    if let Err(err) = crate::groups::record(&groups_path, &past_groups, &sensors) {
        let withdrawn = polis_twin::PastGroups::withdraw_all(&mut sensors);
        tracing::error!(
            withdrawn,
            "{err:#}; no aggregate is shown until the groups can be recorded"
        );
    }
    app
}

/// Runs the twin on `parts` until `stop` is set, then shuts down in order
/// and joins the retention thread.
pub(crate) fn run_twin(
    scene: Scene,
    mut parts: Parts,
    observed: ObservedHandle,
    pace: TickPace,
    stop: &AtomicBool,
) {
    let retention = parts.retention.take();
    let consent_watch = parts.consent_watch.take();
    let mqtt = parts.mqtt.take();
    let max_clock_skew_ms = parts.max_clock_skew_ms;
    let mut app = build_app(scene, parts, observed.clone());
    // The scene was spawned and dropped while the plugins were built.
    crate::memory::release_freed_memory();
    info!(tick_ms = pace.tick.as_secs_f64() * 1e3, "twin running");
    let link = app.world().resource::<NetLink>();
    link.server().wake_on_event(std::thread::current());
    link.wake_on_commit(std::thread::current());
    let twin_started = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        let started = Instant::now();
        app.world_mut().resource_mut::<DeviceTimeLimit>().newest_ms =
            unix_now_ms().saturating_add(max_clock_skew_ms);
        app.world_mut().resource_mut::<TwinClock>().since_start = twin_started.elapsed();
        app.update();
        observed.0.metrics.observe_tick(started.elapsed());
        observed.0.ready.store(true, Ordering::Relaxed);
        if app.should_exit().is_some() {
            break;
        }
        wait_for_next_tick(&app, pace, started, stop);
    }
    observed.0.ready.store(false, Ordering::SeqCst);
    // However the loop ended, the threads that watch `stop` end too.
    stop.store(true, Ordering::SeqCst);
    shut_down(app);
    // The sources stopped taking messages when the edge began to close;
    // they acknowledge what history committed, then disconnect.
    if let Some(mqtt) = mqtt {
        mqtt.stop();
    }
    if let Some(consent_watch) = consent_watch {
        let _ = consent_watch.join();
    }
    if let Some(retention) = retention {
        let _ = retention.join();
    }
}

/// Waits for the next tick: as soon as network events wait (the network
/// thread unparks this thread when it queues one), but no sooner than
/// `min_tick` after the last tick; while history is full, until it has
/// committed; without events, until the regular tick.
fn wait_for_next_tick(app: &App, pace: TickPace, started: Instant, stop: &AtomicBool) {
    loop {
        let since = started.elapsed();
        let Some(rest) = pace.tick.checked_sub(since) else {
            break;
        };
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let link = app.world().resource::<NetLink>();
        if link.held_back() {
            // History is full and the tick takes no events: tick again
            // once the writer has committed (it unparks this thread),
            // not as often as events wait.
            std::thread::park_timeout(rest.min(STOP_CHECK));
            break;
        }
        // Subscriptions with work left that may go on now count as waiting
        // events: their next slice comes after `min_tick`, not a whole tick.
        let interest_ready = app.world().resource::<InterestPending>().ready;
        if interest_ready || link.server().pending_events() > 0 {
            match pace.min_tick.checked_sub(since) {
                Some(wait) => std::thread::sleep(wait.min(rest)),
                None => break,
            }
        } else {
            // Bounded so that a stop flag set without an unpark (the
            // signal watcher) is seen within STOP_CHECK.
            std::thread::park_timeout(rest.min(STOP_CHECK));
        }
    }
}

/// Stops in an order that loses nothing acknowledged: clients stop being
/// read, what they sent is applied, history commits it (and so
/// acknowledges it), then connections close with their last acks.
fn shut_down(mut app: App) {
    info!("stopping: no new connections or readings; applying what was received");
    // 1. Clients stop being read; what they already sent is still applied.
    if let Some(link) = app.world().get_resource::<NetLink>() {
        link.server().begin_close();
    }
    let deadline = Instant::now() + DRAIN_DEADLINE;
    loop {
        app.update();
        let drained = app
            .world()
            .get_resource::<NetLink>()
            .is_none_or(NetLink::is_drained);
        if drained || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // 2. Everything applied is committed to history, which acknowledges it.
    let Some(link) = app.world_mut().remove_resource::<NetLink>() else {
        return;
    };
    let (net, durable) = link.into_parts();
    if let Some(durable) = durable {
        durable.flush_and_close();
        info!("history flushed");
    }
    // 3. Connections deliver their last acknowledgements and close with the
    //    reason "server shutting down".
    net.shutdown();
    drop(app);
    info!("stopped cleanly");
}
