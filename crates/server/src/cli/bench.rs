//! `polis bench`: end-to-end benchmarks with a baseline measured in the same
//! run (this machine is noisy; compare ratios, not absolute figures).

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use polis_history::{History, HistoryOptions, Row};
use polis_net::{ClientOptions, GatewayClient, GatewayOptions};
use polis_protocol::{AssetKind, Domain, Reading, Role};
use polis_scene::{Asset, Geometry, Georeference, Scene, Sensor};

use crate::{Config, Http, Limits, TokenEntry};

mod fanout;
mod mosquitto;

#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// Gateways push batched readings as fast as they are acknowledged (with
    /// durable history); baseline: the history store alone writing the same
    /// rows.
    Ingest(IngestArgs),
    /// Resident memory per building (with its meter) for a synthetic city,
    /// and area-query latency; baseline: a linear scan over the same points.
    Scale(ScaleArgs),
    /// Viewers each watching ~1,000 sensors while a tenth of the sensors
    /// change each second: sensor-to-viewer latency, bytes on the wire per
    /// value, server CPU; baseline: mosquitto (started by the bench) doing
    /// the same job with per-sensor topics under spatial tile prefixes.
    Fanout(fanout::FanoutArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ScaleArgs {
    /// A short run for CI smoke tests.
    #[arg(long)]
    quick: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Buildings (each with one meter) in the synthetic city.
    #[arg(long, default_value_t = 1_000_000)]
    buildings: usize,
}

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse::<u64>().ok())
        .unwrap_or(0)
        * 4096
}

/// A square grid of 10 m × 10 m buildings, 15 m apart, each with a meter.
fn building_city(count: usize) -> Scene {
    let side = (count as f64).sqrt().ceil() as usize;
    let mut assets = Vec::with_capacity(count);
    let mut sensors = Vec::with_capacity(count);
    for index in 0..count {
        let (east_m, north_m) = ((index % side) as f64 * 15.0, (index / side) as f64 * 15.0);
        assets.push(Asset {
            id: format!("b{index}"),
            kind: AssetKind::Building,
            geometry: Geometry::Footprint(vec![
                [east_m, north_m],
                [east_m + 10.0, north_m],
                [east_m + 10.0, north_m + 10.0],
                [east_m, north_m + 10.0],
            ]),
            height_m: Some(10.0),
            attributes: Default::default(),
        });
        sensors.push(Sensor {
            id: format!("m{index}"),
            domain: Domain::Energy,
            quantity: "active_power".into(),
            unit: "kW".into(),
            position_enu_m: [east_m + 5.0, north_m + 5.0, 1.5],
            asset: Some(format!("b{index}")),
            personal: false,
        });
    }
    synthetic_scene(format!("buildings-{count}"), None, assets, sensors)
}

/// A scene of generated assets and sensors, placed in central Helsinki.
fn synthetic_scene(
    name: String,
    description: Option<String>,
    assets: Vec<Asset>,
    sensors: Vec<Sensor>,
) -> Scene {
    Scene {
        name,
        description,
        attribution: vec!["synthetic; no third-party data".into()],
        georeference: Georeference {
            origin_lon_deg: 24.94,
            origin_lat_deg: 60.17,
        },
        assets,
        sensors,
    }
}

/// Subscribes the bench's viewer (id 1, see [`connect_viewer`]) to the box
/// `min`..`max` (east, north metres); returns how many sensors it watches.
fn watch(app: &mut bevy::app::App, min: [f64; 2], max: [f64; 2]) -> anyhow::Result<usize> {
    use polis_protocol::{GeoBox, Subscribe};
    use polis_twin::{TwinInfo, ViewerId, ViewerState, ViewerSubscribed};
    let georef = app
        .world()
        .get_resource::<TwinInfo>()
        .context("the twin has its info")?
        .georeference;
    app.world_mut().write_message(ViewerSubscribed {
        viewer: ViewerId(1),
        subscribe: Subscribe {
            subscription: 1,
            area: GeoBox::from_enu(&georef, min, max),
            layers: Vec::new(),
            at_ms: None,
            speed: 1.0,
            publish_interval_ms: 0,
        },
    });
    app.update();
    let world = app.world_mut();
    let mut viewers = world.query::<&ViewerState>();
    let watched = viewers.iter(world).map(|viewer| viewer.sensors.len()).sum();
    anyhow::ensure!(watched > 0, "the bench's viewer watches no sensor");
    Ok(watched)
}

/// A pick ray: origin (east, north, up metres), unit direction, length.
type PickRay = ([f32; 3], [f32; 3], f32);

/// Connects the bench's viewer (id 1, an operator) to the twin.
fn connect_viewer(app: &mut bevy::app::App) {
    use polis_protocol::{Access, SharedMailbox};
    app.world_mut().write_message(polis_twin::ViewerConnected {
        viewer: polis_twin::ViewerId(1),
        access: Access::Operator,
        name: "bench".into(),
        mailbox: SharedMailbox::new(|| {}),
    });
    app.update();
}

/// Picks as the bench's viewer's clicks make them, one ray per area from
/// `ray`.
/// Returns the sorted latencies (one twin update each, µs) and the mean
/// hit count.
fn picks(
    app: &mut bevy::app::App,
    areas: &[([f64; 2], [f64; 2])],
    ray: impl Fn([f64; 2]) -> PickRay,
) -> anyhow::Result<(Vec<f64>, f64)> {
    use polis_protocol::PickRequest;
    use polis_twin::{PickRequested, PickResponder, ViewerId};
    let viewer = ViewerId(1);
    let mut latencies_us = Vec::with_capacity(areas.len());
    let mut hits = 0usize;
    for (request, (min, _)) in (0u32..).zip(areas) {
        let (origin_enu_m, direction_enu, max_distance_m) = ray(*min);
        let (tx, rx) = std::sync::mpsc::channel();
        app.world_mut().write_message(PickRequested {
            viewer,
            request: PickRequest {
                request,
                origin_enu_m,
                direction_enu,
                max_distance_m,
            },
            responder: PickResponder::new(move |reply| {
                let _ = tx.send(reply);
            }),
        });
        let started = Instant::now();
        app.update();
        latencies_us.push(started.elapsed().as_secs_f64() * 1e6);
        hits += rx
            .try_recv()
            .context("the pick is answered in the update")?
            .hits
            .len();
    }
    latencies_us.sort_by(f64::total_cmp);
    Ok((latencies_us, hits as f64 / areas.len().max(1) as f64))
}

fn run_scale(args: ScaleArgs) -> anyhow::Result<ExitCode> {
    let buildings = if args.quick {
        args.buildings.min(50_000)
    } else {
        args.buildings
    };
    eprintln!("scale: {buildings} buildings with a meter each …");
    let before = resident_bytes();
    let scene = building_city(buildings);
    let with_scene = resident_bytes();
    // The twin and picking, as `polis serve` runs them.
    let mut app = bevy::app::App::new();
    app.add_plugins((polis_twin::TwinPlugin::new(scene), polis_twin::PickPlugin));
    app.update();
    // As `polis serve` does once the scene is loaded.
    crate::memory::release_freed_memory();
    let twin = resident_bytes();
    let per_building = twin.saturating_sub(before) as f64 / buildings as f64;

    // Area queries returning ~1,000 items (500 buildings + their meters):
    // a 22 × 22 building window.
    let side = (buildings as f64).sqrt().ceil() as usize;
    let window_m = 22.0 * 15.0 - 5.0;
    let world = app.world();
    let (Some(index), Some(assets), Some(sensors)) = (
        world.get_resource::<polis_twin::SpatialIndex>(),
        world.get_resource::<polis_twin::AssetTable>(),
        world.get_resource::<polis_twin::SensorTable>(),
    ) else {
        anyhow::bail!("the twin has no spatial index or tables");
    };
    let queries = if args.quick { 200 } else { 2_000 };
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut corners = Vec::with_capacity(queries);
    for _ in 0..queries {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let span = (side.saturating_sub(22).max(1) * 15) as f64;
        let x = (seed % 10_000) as f64 / 10_000.0 * span;
        let y = ((seed >> 20) % 10_000) as f64 / 10_000.0 * span;
        corners.push(([x, y], [x + window_m, y + window_m]));
    }
    let mut latencies_us = Vec::with_capacity(queries);
    let mut results = 0usize;
    for (min, max) in &corners {
        let started = Instant::now();
        results += index.items_in_area(*min, *max, assets, sensors).count();
        latencies_us.push(started.elapsed().as_secs_f64() * 1e6);
    }
    latencies_us.sort_by(f64::total_cmp);
    connect_viewer(&mut app);
    // A click from above: from 300 m up, 45° down through the area's middle.
    let (pick_us, picked) = picks(&mut app, &corners, |min| {
        let middle = [min[0] + window_m / 2.0, min[1] + window_m / 2.0];
        let from = [
            (middle[0] - 212.0) as f32,
            (middle[1] - 212.0) as f32,
            300.0,
        ];
        (from, [0.5, 0.5, -std::f32::consts::FRAC_1_SQRT_2], 1_000.0)
    })?;
    // A click at eye level: level, 20 km towards the north-east from 100 m
    // south-west of the area, across the city's streets and blocks.
    let (level_us, level_picked) = picks(&mut app, &corners, |min| {
        let from = [(min[0] - 100.0) as f32, (min[1] - 100.0) as f32, 1.7];
        let diagonal = std::f32::consts::FRAC_1_SQRT_2;
        (from, [diagonal, diagonal, 0.0], 20_000.0)
    })?;
    // What a viewer's interest costs: the bench's viewer subscribes to the
    // city's north-east corner, where the handles are highest, as memory per
    // building (pages the picks freed handed back first, so that the
    // subscription cannot hide in them).
    crate::memory::release_freed_memory();
    let watching = resident_bytes();
    let corner_m = (side * 15) as f64;
    let watched = watch(
        &mut app,
        [corner_m - window_m, corner_m - window_m],
        [corner_m; 2],
    )?;
    let viewer_bytes = resident_bytes().saturating_sub(watching) as f64 / buildings as f64;
    // Baseline: scan every meter position.
    let positions: Vec<[f64; 2]> = (0..buildings)
        .map(|i| {
            [
                (i % side) as f64 * 15.0 + 5.0,
                (i / side) as f64 * 15.0 + 5.0,
            ]
        })
        .collect();
    let mut scan_us = Vec::new();
    for (min, max) in corners.iter().take(50) {
        let started = Instant::now();
        let found = positions
            .iter()
            .filter(|p| p[0] >= min[0] && p[0] <= max[0] && p[1] >= min[1] && p[1] <= max[1])
            .count();
        std::hint::black_box(found);
        scan_us.push(started.elapsed().as_secs_f64() * 1e6);
    }
    scan_us.sort_by(f64::total_cmp);
    let mean_results = results as f64 / queries as f64;
    let report = serde_json::json!({
        "scenario": "scale",
        "buildings": buildings,
        "resident_bytes_per_building": per_building.round(),
        "resident_bytes_scene_file_in_memory_per_building": (with_scene.saturating_sub(before) as f64 / buildings as f64).round(),
        "area_query_results_mean": mean_results.round(),
        "area_query_us_p50": percentile(&latencies_us, 50.0),
        "area_query_us_p99": percentile(&latencies_us, 99.0),
        "pick_us_p50": percentile(&pick_us, 50.0),
        "pick_us_p99": percentile(&pick_us, 99.0),
        "pick_hits_mean": picked,
        "pick_level_us_p50": percentile(&level_us, 50.0),
        "pick_level_us_p99": percentile(&level_us, 99.0),
        "pick_level_hits_mean": level_picked,
        "viewer_watching_sensors": watched,
        "viewer_resident_bytes_per_building": (viewer_bytes * 10.0).round() / 10.0,
        "baseline_linear_scan_us_p50": percentile(&scan_us, 50.0),
        "baseline_linear_scan_us_p99": percentile(&scan_us, 99.0),
    });
    if args.json {
        println!("{report}");
    } else {
        println!("| measure | Polis | baseline: linear scan | ratio |");
        println!("|---|---|---|---|");
        println!(
            "| area query p50 / p99 (~{mean_results:.0} results) | {:.0} / {:.0} µs | {:.0} / {:.0} µs | {:.0}× |",
            percentile(&latencies_us, 50.0),
            percentile(&latencies_us, 99.0),
            percentile(&scan_us, 50.0),
            percentile(&scan_us, 99.0),
            percentile(&scan_us, 99.0) / percentile(&latencies_us, 99.0)
        );
        println!(
            "| pick: a ray 45° down through the middle of the area (p50 / p99, ~{picked:.1} hits) | {:.0} / {:.0} µs | – | – |",
            percentile(&pick_us, 50.0),
            percentile(&pick_us, 99.0),
        );
        println!(
            "| pick: a level ray at eye height, 20 km across the city (p50 / p99, ~{level_picked:.1} hits) | {:.0} / {:.0} µs | – | – |",
            percentile(&level_us, 50.0),
            percentile(&level_us, 99.0),
        );
        println!(
            "| resident memory per building with its meter, picking included | {per_building:.0} B (scene file in memory alone: {:.0} B) | – | – |",
            with_scene.saturating_sub(before) as f64 / buildings as f64
        );
        println!(
            "| added by one viewer watching {watched} sensors at the city's far corner | {viewer_bytes:.1} B per building | – | – |"
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub(crate) struct IngestArgs {
    /// A short run for CI smoke tests (under a minute).
    #[arg(long)]
    quick: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Concurrent gateways.
    #[arg(long, default_value_t = 2)]
    gateways: usize,
    /// Sensors in the synthetic scene.
    #[arg(long, default_value_t = 100_000)]
    sensors: usize,
    /// Readings per batch.
    #[arg(long, default_value_t = 1_000)]
    batch: usize,
    /// Batches each gateway keeps in flight (unacknowledged).
    #[arg(long, default_value_t = 4)]
    window: usize,
    /// The server's ceiling of event-driven ticks, Hz (default: the
    /// server's default, 10,000): a batch is acknowledged at the tick that
    /// applies it.
    #[arg(long)]
    max_tick_hz: Option<f64>,
    /// Apply readings without recording them (history off): the twin's own
    /// ingest rate, acknowledged once applied rather than once durable.
    #[arg(long)]
    no_history: bool,
    /// Measured seconds (after a warm-up of a fifth of it).
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
}

/// A square grid of `count` water junctions, 10 m apart, each with a
/// pressure sensor: the synthetic city of the benchmarks.
pub(crate) fn grid_scene(count: usize) -> Scene {
    let side = (count as f64).sqrt().ceil() as usize;
    let mut assets = Vec::with_capacity(count);
    let mut sensors = Vec::with_capacity(count);
    for index in 0..count {
        let (row, col) = (index / side.max(1), index % side.max(1));
        let position = [col as f64 * 10.0, row as f64 * 10.0, 0.0];
        assets.push(Asset {
            id: format!("j{index}"),
            kind: AssetKind::WaterJunction,
            geometry: Geometry::Point(position),
            height_m: None,
            attributes: Default::default(),
        });
        sensors.push(Sensor {
            id: format!("s{index}"),
            domain: Domain::Water,
            quantity: "pressure".into(),
            unit: "m".into(),
            position_enu_m: position,
            asset: Some(format!("j{index}")),
            personal: false,
        });
    }
    synthetic_scene(
        format!("grid-{count}"),
        Some("synthetic benchmark grid".into()),
        assets,
        sensors,
    )
}

/// `config` if the server would accept it (the rules of
/// [`Config::problems`]), else the problems, for settings the bench derives
/// from its options.
pub(crate) fn checked(config: Config) -> anyhow::Result<Config> {
    let problems = config.problems();
    anyhow::ensure!(
        problems.is_empty(),
        "these bench settings give the server a configuration it refuses: {}",
        problems
            .iter()
            .map(|p| format!("{}: {}", p.key, p.message))
            .collect::<Vec<_>>()
            .join("; ")
    );
    Ok(config)
}

/// CPU seconds used so far by each named thread of this process.
fn cpu_by_thread() -> HashMap<String, f64> {
    let mut cpu = HashMap::new();
    let ticks_per_sec = 100.0; // USER_HZ on Linux
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return cpu;
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_owned();
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let (Some(utime), Some(stime)) = (fields.get(11), fields.get(12)) else {
            continue;
        };
        let ticks = utime.parse::<f64>().unwrap_or(0.0) + stime.parse::<f64>().unwrap_or(0.0);
        *cpu.entry(name).or_insert(0.0) += ticks / ticks_per_sec;
    }
    cpu
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

struct GatewayResult {
    acked: u64,
    latencies_ms: Vec<f64>,
}

async fn run_gateway(
    options: ClientOptions,
    first_sensor: usize,
    sensor_count: usize,
    batch: usize,
    window: usize,
    measure_from: Instant,
    until: Instant,
) -> anyhow::Result<GatewayResult> {
    let mut client = GatewayClient::connect(
        options,
        GatewayOptions {
            window,
            reconnect_for: Duration::from_secs(5),
        },
    )
    .await?;
    let mut sent_at: HashMap<u64, (Instant, usize)> = HashMap::new();
    let mut result = GatewayResult {
        acked: 0,
        latencies_ms: Vec::new(),
    };
    let ids: Vec<String> = (first_sensor..first_sensor + sensor_count)
        .map(|i| format!("s{i}"))
        .collect();
    let mut step: i64 = 0;
    let mut cursor = 0usize;
    let base_ms: i64 = 1_700_000_000_000;
    let account = |acks: Vec<polis_protocol::BatchAck>,
                   sent_at: &mut HashMap<u64, (Instant, usize)>,
                   result: &mut GatewayResult| {
        let now = Instant::now();
        for ack in acks {
            if let Some((at, count)) = sent_at.remove(&ack.seq)
                && at >= measure_from
                && now <= until
            {
                result.acked += count as u64;
                result
                    .latencies_ms
                    .push(now.duration_since(at).as_secs_f64() * 1e3);
            }
        }
    };
    while Instant::now() < until {
        let mut readings = Vec::with_capacity(batch);
        for _ in 0..batch {
            if cursor == ids.len() {
                cursor = 0;
                step += 1;
            }
            readings.push(Reading {
                sensor: ids[cursor].clone(),
                device_time_ms: base_ms + step * 1_000,
                value: step as f64,
                quality: None,
            });
            cursor += 1;
        }
        let count = readings.len();
        let (seq, acks) = client.push(readings).await?;
        // `push` returns right after sending the batch (having waited, while
        // the window was full, for earlier acknowledgements): it left now.
        sent_at.insert(seq, (Instant::now(), count));
        account(acks, &mut sent_at, &mut result);
    }
    let acks = client.flush().await?;
    account(acks, &mut sent_at, &mut result);
    // A reconnection resends batches and resets the server's per-connection
    // state: the figures would not describe one steady session.
    anyhow::ensure!(
        client.reconnects() == 0,
        "gateway {first_sensor}: the connection was lost and re-established {} times \
         (see the warnings above); figures discarded",
        client.reconnects()
    );
    client.close().await;
    Ok(result)
}

/// Rows per second the history store alone commits, for the same rows.
fn storage_baseline(
    dir: &std::path::Path,
    sensors: usize,
    batch: usize,
    seconds: f64,
) -> anyhow::Result<f64> {
    let ids: Vec<String> = (0..sensors).map(|i| format!("s{i}")).collect();
    let registered: Vec<(&str, bool)> = ids.iter().map(|id| (id.as_str(), false)).collect();
    let history = History::open(
        &dir.join("baseline.sqlite"),
        &registered,
        HistoryOptions::default(),
    )?;
    let keys: Vec<i64> = ids
        .iter()
        .map(|id| history.key(id).context("registered"))
        .collect::<anyhow::Result<_>>()?;
    let started = Instant::now();
    let mut rows_written = 0u64;
    let mut step = 0i64;
    let mut cursor = 0usize;
    // Keep the writer's queue full, as the server does, for a fair comparison.
    let (done_tx, done_rx) = std::sync::mpsc::channel::<bool>();
    let mut in_flight = 0usize;
    while started.elapsed().as_secs_f64() < seconds {
        let mut rows = Vec::with_capacity(batch);
        for _ in 0..batch {
            if cursor == keys.len() {
                cursor = 0;
                step += 1;
            }
            rows.push(Row {
                sensor: keys[cursor],
                device_time_ms: 1_700_000_000_000 + step * 1_000,
                value: step as f64,
                quality: None,
            });
            cursor += 1;
        }
        let tx = done_tx.clone();
        let mut pending = Some((
            rows,
            Box::new(move |ok: bool| {
                let _ = tx.send(ok);
            }) as Box<dyn FnOnce(bool) + Send>,
        ));
        while let Some((rows, done)) = pending.take() {
            match history.writer().try_append(rows, done) {
                Ok(()) => in_flight += 1,
                Err(Some(back)) => {
                    if done_rx.recv().unwrap_or(false) {
                        rows_written += batch as u64;
                    }
                    in_flight -= 1;
                    pending = Some(back);
                }
                Err(None) => anyhow::bail!("history writer stopped"),
            }
        }
    }
    while in_flight > 0 {
        if done_rx.recv().unwrap_or(false) {
            rows_written += batch as u64;
        }
        in_flight -= 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    history.close()?;
    Ok(rows_written as f64 / elapsed)
}

pub(crate) fn run(command: BenchCommand) -> anyhow::Result<ExitCode> {
    let mut args = match command {
        BenchCommand::Ingest(args) => args,
        BenchCommand::Scale(args) => return run_scale(args),
        BenchCommand::Fanout(args) => return fanout::run(args),
    };
    if args.quick {
        args.seconds = args.seconds.min(5.0);
        args.sensors = args.sensors.min(20_000);
    }
    anyhow::ensure!(
        args.gateways > 0 && args.sensors >= args.gateways,
        "need sensors >= gateways > 0"
    );
    anyhow::ensure!(
        args.batch > 0 && args.window > 0,
        "need --batch and --window above 0"
    );
    let dir = tempfile::tempdir()?;
    eprintln!(
        "ingest: {} gateways, {} sensors, batches of {} ({} in flight per gateway), {:.0} s measured …",
        args.gateways, args.sensors, args.batch, args.window, args.seconds
    );
    let config = Config {
        listen: "127.0.0.1:0".parse()?,
        data_dir: dir.path().join("data"),
        http: Http {
            enabled: false,
            ..Http::default()
        },
        history: crate::HistoryConfig {
            enabled: !args.no_history,
            ..crate::HistoryConfig::default()
        },
        // The per-connection limits guard a server against a misbehaving
        // gateway; this bench measures what the twin can take, so its two
        // gateways may push as much and keep as many batches in flight as
        // asked.
        max_tick_hz: args.max_tick_hz.unwrap_or(crate::DEFAULT_MAX_TICK_HZ),
        limits: Limits {
            max_readings_per_second: 1e12,
            gateway_window: args.window.max(Limits::default().gateway_window),
            ..Limits::default()
        },
        tokens: vec![TokenEntry {
            name: Some("bench".into()),
            role: polis_protocol::Access::Gateway,
            token: Some("bench-gateway-token-0123456789".into()),
            sha256: None,
            scope_prefixes: Vec::new(),
        }],
        ..Config::default()
    };
    let server = crate::start(&checked(config)?, grid_scene(args.sensors))?;
    let started = server.started().clone();
    let client = ClientOptions::new(
        started.local_addr.to_string(),
        started.cert_path.clone(),
        "bench-gateway-token-0123456789",
        Role::Gateway,
    );
    let warmup = Duration::from_secs_f64(args.seconds / 5.0);
    let measured = Duration::from_secs_f64(args.seconds);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("polis-bench-load")
        .enable_all()
        .build()?;
    let per_gateway = args.sensors / args.gateways;
    let cpu_before = std::cell::Cell::new(HashMap::new());
    let results = runtime.block_on(async {
        let measure_from = Instant::now() + warmup;
        let until = measure_from + measured;
        let mut tasks = Vec::new();
        for g in 0..args.gateways {
            tasks.push(tokio::spawn(run_gateway(
                client.clone(),
                g * per_gateway,
                per_gateway,
                args.batch,
                args.window,
                measure_from,
                until,
            )));
        }
        tokio::time::sleep_until(measure_from.into()).await;
        cpu_before.set(cpu_by_thread());
        tokio::time::sleep_until(until.into()).await;
        let cpu_after = cpu_by_thread();
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await??);
        }
        Ok::<_, anyhow::Error>((results, cpu_after))
    })?;
    let (results, cpu_after) = results;
    let cpu_before = cpu_before.take();
    drop(server);
    let acked: u64 = results.iter().map(|r| r.acked).sum();
    let mut latencies: Vec<f64> = results
        .iter()
        .flat_map(|r| r.latencies_ms.clone())
        .collect();
    latencies.sort_by(f64::total_cmp);
    let secs = measured.as_secs_f64();
    let rate = acked as f64 / secs;
    let cores = |name: &str| {
        (cpu_after.get(name).copied().unwrap_or(0.0) - cpu_before.get(name).copied().unwrap_or(0.0))
            / secs
    };
    let (twin, net, history) = (
        cores("polis-twin"),
        cores("polis-net"),
        cores("polis-history"),
    );
    eprintln!("baseline: the history store alone, same rows …");
    let baseline = storage_baseline(dir.path(), args.sensors, args.batch, args.seconds.min(10.0))?;
    // The same job: as many unacknowledged readings per gateway as Polis
    // had (window × batch), up to MQTT's limit of 65,535 packet ids.
    let inflight = u16::try_from(args.window.saturating_mul(args.batch)).unwrap_or(u16::MAX);
    eprintln!(
        "baseline: mosquitto, {} gateways publishing at QoS 1 with {inflight} in flight each, one consumer of the whole city …",
        args.gateways
    );
    // A failed baseline costs its column, not the Polis figures above.
    let mqtt = match mosquitto::fan_in(
        &runtime,
        dir.path(),
        args.gateways,
        args.sensors,
        inflight,
        args.seconds,
    ) {
        Ok(Some(figures)) => Some(figures),
        Ok(None) => {
            eprintln!("baseline: mosquitto is not installed (apt-get install mosquitto); skipped");
            None
        }
        Err(error) => {
            eprintln!("baseline: the mosquitto run failed, its column stays empty: {error:#}");
            None
        }
    };
    let report = serde_json::json!({
        "scenario": "ingest",
        "gateways": args.gateways,
        "sensors": args.sensors,
        "batch": args.batch,
        "window": args.window,
        "max_tick_hz": args.max_tick_hz.unwrap_or(crate::DEFAULT_MAX_TICK_HZ),
        "seconds": secs,
        "history": !args.no_history,
        "acknowledged_readings_per_s": rate.round(),
        "ack_latency_ms_p50": percentile(&latencies, 50.0),
        "ack_latency_ms_p99": percentile(&latencies, 99.0),
        "server_cpu_cores": { "twin": twin, "net": net, "history": history, "total": twin + net + history },
        "baseline_store_alone_rows_per_s": baseline.round(),
        "ratio_end_to_end_over_store": rate / baseline,
        "mosquitto": mqtt.as_ref().map(mosquitto::FanIn::json),
        "mosquitto_inflight_per_gateway": inflight,
        "ratio_over_mosquitto_acknowledged": mqtt.as_ref().map(|m| rate / m.acknowledged_per_s),
    });
    if args.json {
        println!("{report}");
    } else {
        let dash = || "–".to_owned();
        let mq = |f: &dyn Fn(&mosquitto::FanIn) -> String| mqtt.as_ref().map_or_else(dash, f);
        println!(
            "| measure | Polis end to end | baseline: store alone | ratio | baseline: mosquitto (QoS 1, {inflight} in flight per gateway, not persistent) | Polis / mosquitto |"
        );
        println!("|---|---|---|---|---|---|");
        println!(
            "| readings/s acknowledged ({}) | {:.0} | {:.0} | {:.2} | {} | {} |",
            if args.no_history {
                "Polis: once applied, history off"
            } else {
                "Polis: once durable"
            },
            rate,
            baseline,
            rate / baseline,
            mq(&|m| format!("{:.0}", m.acknowledged_per_s)),
            mq(&|m| format!("{:.2}", rate / m.acknowledged_per_s)),
        );
        println!(
            "| readings/s reaching the twin / mosquitto's consumer | {:.0} | – | – | {} | {} |",
            rate,
            mq(&|m| format!("{:.0}", m.delivered_per_s)),
            mq(&|m| format!("{:.2}", rate / m.delivered_per_s)),
        );
        println!(
            "| ack latency p50 / p99 | {:.1} / {:.1} ms | – | – | {} | – |",
            percentile(&latencies, 50.0),
            percentile(&latencies, 99.0),
            mq(&|m| format!("{:.2} / {:.2} ms", m.ack_p50_ms, m.ack_p99_ms)),
        );
        println!(
            "| server CPU (cores) | twin {twin:.2}, net {net:.2}, history {history:.2} | – | – | {} | {} |",
            mq(&|m| format!("{:.2}", m.broker_cores)),
            mq(&|m| format!("{:.2}", (twin + net + history) / m.broker_cores)),
        );
        if let Some(m) = &mqtt {
            println!(
                "| mosquitto: publish → consumer latency p50 / p99; load CPU | – | – | – | {:.2} / {:.2} ms; {:.2} cores | – |",
                m.delivery_p50_ms, m.delivery_p99_ms, m.load_cores
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
