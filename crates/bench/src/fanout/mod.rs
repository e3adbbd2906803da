//! `polis-bench fanout`: viewers each watching ~1,000 sensors of a
//! synthetic city while a gateway changes a tenth of the sensors per second;
//! sensor to viewer latency, bytes on the wire per delivered value, and the
//! server's and the load generator's CPU. Baseline in the same run:
//! mosquitto doing the same job the MQTT way (one topic per sensor under a
//! spatial tile prefix, each viewer subscribed to the 3 × 3 tiles around
//! it).
//!
//! Each system's server runs in a process of its own on the server core;
//! the viewers and the sender run in this process on the load core, so the
//! send time stamped into each reading and the arrival time come from the
//! same clock.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use polis_server::{DEFAULT_MAX_TICK_HZ, DEFAULT_TICK_HZ};

use crate::layout::Layout;
use crate::measure::start_clock;
use crate::pin::Cores;
use crate::scene::grid_scene;

mod mqtt;
mod phase;
mod polis;

use phase::{Phase, run_phase};

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
    /// Subscription churn: this many extra Polis viewers (public token)
    /// switch between the whole city and one corner `--churn-hz` times a
    /// second while the others are measured. The run then compares two
    /// Polis phases, without and with them (no mosquitto).
    #[arg(long, default_value_t = 0)]
    churners: usize,
    /// Area switches per second of each churning viewer (under the
    /// server's default 10 subscriptions per second per connection).
    #[arg(long, default_value_t = 9.0)]
    churn_hz: f64,
    /// The server's `limits.max_area_items_per_second` (default: its default).
    #[arg(long)]
    max_area_items_per_second: Option<f64>,
    /// The server's `limits.max_area_items_per_second_per_connection`.
    #[arg(long)]
    max_area_items_per_second_per_connection: Option<f64>,
    /// The server's `limits.max_area_items_per_tick`.
    #[arg(long)]
    max_area_items_per_tick: Option<u64>,
}

/// Runs the scenario: Polis, then mosquitto, each server on `cores.server`
/// and this process (already pinned) on `cores.load`.
pub(crate) fn run(mut args: FanoutArgs, cores: Cores) -> anyhow::Result<ExitCode> {
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
    start_clock();
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
        args.tick_hz.unwrap_or(DEFAULT_TICK_HZ),
        args.max_tick_hz.unwrap_or(DEFAULT_MAX_TICK_HZ),
        args.publish_interval_ms,
        args.seconds
    );
    let dir = tempfile::tempdir()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.load_threads.clamp(1, 16))
        .thread_name("polis-bench-load")
        .enable_all()
        .build()?;
    anyhow::ensure!(args.churners <= 1_000, "--churners must be at most 1,000");
    anyhow::ensure!(
        args.churn_hz.is_finite() && args.churn_hz > 0.0 && args.churn_hz <= 100.0,
        "--churn-hz must be in (0, 100]"
    );
    if args.churners > 0 {
        let mut server = polis::Polis::start(&args, cores.server, &dir.path().join("data"))?;
        let idle = run_phase(&runtime, &mut server, &args, rate, &layout, cores, 0)?;
        let churn = run_phase(
            &runtime,
            &mut server,
            &args,
            rate,
            &layout,
            cores,
            args.churners,
        )?;
        runtime.shutdown_timeout(Duration::from_secs(2));
        report_churn(&args, &idle, &churn);
        return Ok(ExitCode::SUCCESS);
    }
    let polis = {
        let mut server = polis::Polis::start(&args, cores.server, &dir.path().join("data"))?;
        run_phase(&runtime, &mut server, &args, rate, &layout, cores, 0)?
    };
    let mosquitto = if args.no_baseline {
        None
    } else {
        let phase = mqtt::Mosquitto::start(dir.path(), args.mosquitto_nodelay, cores.server)
            .and_then(|broker| {
                broker
                    .map(|mut broker| {
                        run_phase(&runtime, &mut broker, &args, rate, &layout, cores, 0)
                    })
                    .transpose()
            });
        match phase {
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

/// The churn comparison: the same viewers and changes without and with
/// churning viewers, on the same server.
fn report_churn(args: &FanoutArgs, idle: &Phase, churn: &Phase) {
    let ratio = |f: fn(&Phase) -> f64| f(churn) / f(idle).max(1e-9);
    if args.json {
        let report = serde_json::json!({
            "scenario": "fanout-churn",
            "viewers": args.viewers,
            "sensors": args.sensors,
            "churners": args.churners,
            "churn_hz": args.churn_hz,
            "seconds": args.seconds,
            "idle": idle.json(),
            "churn": churn.json(),
            "churn_subscriptions_per_s": churn.churn_per_s(),
            "ratio_churn_over_idle": {
                "latency_p50": ratio(|p| p.p50_ms),
                "latency_p99": ratio(|p| p.p99_ms),
                "delivered_values_per_s": ratio(Phase::delivered_per_s),
            },
        });
        println!("{report}");
        return;
    }
    println!(
        "| measure | Polis, idle | Polis, {} viewers churning at {} Hz | churn / idle |",
        args.churners, args.churn_hz
    );
    println!("|---|---|---|---|");
    println!(
        "| measured viewers | {} subscribed, {} failed | {} subscribed, {} failed | – |",
        idle.viewers_ready, idle.viewers_failed, churn.viewers_ready, churn.viewers_failed
    );
    println!(
        "| churning subscriptions/s (each whole city or one corner) | – | {:.1} | – |",
        churn.churn_per_s()
    );
    println!(
        "| values delivered/s | {:.0} | {:.0} | {:.2} |",
        idle.delivered_per_s(),
        churn.delivered_per_s(),
        ratio(Phase::delivered_per_s)
    );
    println!(
        "| sensor→viewer latency p50 / p99 / p99.9 | {:.2} / {:.2} / {:.2} ms | {:.2} / {:.2} / {:.2} ms | {:.2} / {:.2} / {:.2} |",
        idle.p50_ms,
        idle.p99_ms,
        idle.p999_ms,
        churn.p50_ms,
        churn.p99_ms,
        churn.p999_ms,
        ratio(|p| p.p50_ms),
        ratio(|p| p.p99_ms),
        ratio(|p| p.p999_ms)
    );
    println!(
        "| server CPU (cores) | {:.2} | {:.2} | – |",
        idle.server_cores(),
        churn.server_cores()
    );
    for (name, phase) in [("idle", idle), ("churn", churn)] {
        if let Some(error) = phase.first_error.as_deref() {
            println!("\n{name}: first viewer error: {error}");
        }
    }
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
            "tick_hz": args.tick_hz.unwrap_or(DEFAULT_TICK_HZ),
            "max_tick_hz": args.max_tick_hz.unwrap_or(DEFAULT_MAX_TICK_HZ),
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
    let cpu = |p: &Phase| format!("{:.2} ({})", p.server_cores(), p.server.busy_threads());
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
    let load = |p: &Phase| format!("{:.2}", p.load.cores);
    println!(
        "| load generator CPU (cores, its own process) | {} | {} | – |",
        load(polis),
        cell(&load)
    );
    let waits = |p: &Phase| format!("{:.2} / {:.2}", p.server.wait, p.load.wait);
    println!(
        "| run-queue wait (s per s, summed over threads): server / load | {} | {} | – |",
        waits(polis),
        cell(&waits)
    );
    let ran_on = |p: &Phase| p.cores_line.clone();
    println!(
        "| where each side ran | {} | {} | – |",
        ran_on(polis),
        cell(&ran_on)
    );
    let machine = |p: &Phase| format!("{:.2} of {}", p.machine_cpu, crate::procstat::cpus_online());
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
