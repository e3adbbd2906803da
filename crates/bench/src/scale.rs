//! `polis-bench scale`: resident memory per building (with its meter) of a
//! synthetic city, area-query and pick latency; baseline: a linear scan over
//! the same points. The twin runs in this process (its memory is what is
//! measured), pinned to the server core.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use clap::Args;

use crate::measure::percentile;
use crate::pin::Cores;
use crate::procstat::Pid;
use crate::scene::building_city;

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
        own_sensors: Vec::new(),
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

/// Runs the scenario in this process, pinned by `main` to `cores.server`
/// (`cores` as [`Cores::in_process`] gives them).
pub(crate) fn run(args: ScaleArgs, cores: Cores) -> anyhow::Result<ExitCode> {
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
    polis_server::release_freed_memory();
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
    polis_server::release_freed_memory();
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
        "cores": cores.json(Some(Pid::current())),
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
        println!("| measure | Polis | baseline: linear scan | scan / Polis (p99) |");
        println!("|---|---|---|---|");
        println!(
            "| area query p50 / p99 (~{mean_results:.0} results) | {:.0} / {:.0} µs | {:.0} / {:.0} µs | {:.2}× |",
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
        println!("\n{}", cores.describe(Some(Pid::current())));
    }
    Ok(ExitCode::SUCCESS)
}
