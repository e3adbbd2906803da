//! `polis-bench dp`: what differential privacy costs the public in accuracy,
//! on the bundled city driven by the replay's real load profiles.
//!
//! Two twins of the bundled scene with the same privacy groups take the
//! same readings (the replay's SimBench household profiles, one reading per
//! meter every release slot over simulated days): one exact, one with
//! Laplace noise on public aggregates. After each step every public
//! aggregate's noisy value is compared with the exact one (unclamped: the
//! error includes what clamping to the bounds costs).

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::Context as _;
use bevy::prelude::*;
use clap::Args;
use polis_protocol::ReadingBatch;
use polis_twin::{
    Audience, BatchTicket, IncomingBatch, NoiseOptions, PrivacyOptions, SensorTable, TwinPlugin,
};

/// Arguments of `polis-bench dp`.
#[derive(Debug, Args)]
pub(crate) struct DpArgs {
    /// Budget per public aggregate (so per household) per window.
    #[arg(long, default_value_t = 1.0)]
    epsilon: f64,
    /// The window, hours.
    #[arg(long, default_value_t = 1.0)]
    window_hours: f64,
    /// Releases per window.
    #[arg(long, default_value_t = 4)]
    releases: u32,
    /// The range a household's power counts with, kW (`lo,hi`).
    #[arg(long, value_delimiter = ',', default_values_t = [0.0, 10.0])]
    bounds_kw: Vec<f64>,
    /// Simulated days.
    #[arg(long, default_value_t = 7)]
    days: u32,
    /// Results as JSON.
    #[arg(long)]
    json: bool,
}

/// Errors of one group size band.
#[derive(Debug, Default)]
struct Band {
    relative: Vec<f64>,
    absolute_kw: Vec<f64>,
    exact_kw: Vec<f64>,
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * values.len() as f64).ceil().max(1.0) as usize;
    values[rank.min(values.len()) - 1]
}

fn twin(scene: polis_scene::Scene, noise: Option<NoiseOptions>) -> App {
    let mut plugin = TwinPlugin::new(scene).with_privacy(PrivacyOptions::default());
    if let Some(noise) = noise {
        // Started before any data: the first slot with data releases.
        plugin = plugin.with_public_noise(noise, i64::MIN / 2);
    }
    let mut app = App::new();
    app.add_plugins(plugin);
    app.update();
    app
}

/// `(id, members, value)` of every public aggregate with a value.
fn public_values(app: &App) -> Vec<(String, usize, f64)> {
    let sensors = app.world().resource::<SensorTable>();
    (0..sensors.len() as u32)
        .filter(|&h| sensors.audience(h) == Some(Audience::PUBLIC))
        .filter_map(|h| {
            let members = sensors.aggregate_members(h)?.len();
            let value = sensors.latest(h)?.value;
            Some((sensors.id(h)?.to_owned(), members, value))
        })
        .collect()
}

pub(crate) fn run(args: DpArgs) -> anyhow::Result<ExitCode> {
    let scene = polis_server::bundled_scene()?;
    let data = polis_replay::FeedData::bundled().context("the replay's data")?;
    let plan = polis_replay::plan_feeds(&scene);
    let [lo, hi] = <[f64; 2]>::try_from(args.bounds_kw.as_slice())
        .ok()
        .filter(|[lo, hi]| lo < hi)
        .context("--bounds-kw takes two numbers, lo,hi with lo < hi")?;
    let noise = NoiseOptions {
        epsilon: args.epsilon,
        window_ms: (args.window_hours * 3_600_000.0) as i64,
        releases: args.releases,
        bounds: [("active_power".to_owned(), (lo, hi))].into(),
        key: rand::random(),
    };
    let slot_ms = noise.slot_ms();
    let mut exact = twin(scene.clone(), None);
    let mut noisy = twin(scene, Some(noise.clone()));
    let meters: Vec<&str> = {
        let sensors = exact.world().resource::<SensorTable>();
        plan.feeds
            .iter()
            .map(|(id, _)| id.as_str())
            .filter(|id| {
                sensors
                    .by_id(id)
                    .is_some_and(|h| sensors.personal(h) == Some(true))
            })
            .collect()
    };
    // 2025-01-06, a Monday, 00:00 UTC.
    let start_ms = 1_736_121_600_000_i64;
    let steps = i64::from(args.days) * 86_400_000 / slot_ms;
    let mut bands: BTreeMap<&'static str, Band> = BTreeMap::new();
    let mut groups = BTreeMap::new();
    for step in 0..steps {
        let t = start_ms + step * slot_ms;
        let readings: Vec<_> = plan
            .readings_at(&data, t)
            .into_iter()
            .filter(|r| meters.contains(&r.sensor.as_str()))
            .collect();
        for app in [&mut exact, &mut noisy] {
            app.world_mut().write_message(IncomingBatch {
                ticket: BatchTicket(step as u64),
                scope: None,
                batch: ReadingBatch {
                    seq: step as u64,
                    readings: readings.clone(),
                },
            });
            app.update();
        }
        let truth: BTreeMap<String, (usize, f64)> = public_values(&exact)
            .into_iter()
            .map(|(id, n, v)| (id, (n, v)))
            .collect();
        for (id, members, value) in public_values(&noisy) {
            let Some(&(_, exact_kw)) = truth.get(&id) else {
                continue;
            };
            groups.insert(id, members);
            let band = match members {
                0..=9 => "5–9 households",
                10..=19 => "10–19 households",
                _ => "20+ households",
            };
            let error = (value - exact_kw).abs();
            let entry = bands.entry(band).or_default();
            entry.absolute_kw.push(error);
            entry.exact_kw.push(exact_kw);
            if exact_kw.abs() > 1e-9 {
                entry.relative.push(error / exact_kw.abs());
            }
        }
    }
    let per_day = args.epsilon * 24.0 / args.window_hours;
    let scale = noise
        .scale("active_power", true, 1)
        .context("a range for active_power")?;
    let mut rows = Vec::new();
    for (band, mut values) in bands {
        let count = groups
            .values()
            .filter(|&&n| match band {
                "5–9 households" => n < 10,
                "10–19 households" => (10..20).contains(&n),
                _ => n >= 20,
            })
            .count();
        rows.push(serde_json::json!({
            "band": band,
            "aggregates": count,
            "values": values.absolute_kw.len(),
            "exact_kw_median": percentile(&mut values.exact_kw, 50.0),
            "abs_error_kw_median": percentile(&mut values.absolute_kw.clone(), 50.0),
            "abs_error_kw_p90": percentile(&mut values.absolute_kw, 90.0),
            "rel_error_median": percentile(&mut values.relative.clone(), 50.0),
            "rel_error_p90": percentile(&mut values.relative, 90.0),
        }));
    }
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "epsilon_per_window": args.epsilon,
                "window_hours": args.window_hours,
                "releases_per_window": args.releases,
                "epsilon_per_day": per_day,
                "bounds_kw": [lo, hi],
                "laplace_scale_kw": scale,
                "days": args.days,
                "bands": rows,
            })
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "dp: ε {} per {} h in {} releases (ε {} per release, {per_day} per day), household power clamped to [{lo}, {hi}] kW → Laplace scale {scale:.1} kW; {} simulated days of the bundled city",
        args.epsilon,
        args.window_hours,
        args.releases,
        noise.epsilon_per_release(),
        args.days
    );
    println!(
        "| public aggregates | count | values compared | exact median kW | |error| median / p90 kW | relative error median / p90 |"
    );
    println!("|---|---|---|---|---|---|");
    for row in rows {
        println!(
            "| {} | {} | {} | {:.1} | {:.1} / {:.1} | {:.0} % / {:.0} % |",
            row["band"].as_str().unwrap_or_default(),
            row["aggregates"],
            row["values"],
            row["exact_kw_median"].as_f64().unwrap_or(f64::NAN),
            row["abs_error_kw_median"].as_f64().unwrap_or(f64::NAN),
            row["abs_error_kw_p90"].as_f64().unwrap_or(f64::NAN),
            100.0 * row["rel_error_median"].as_f64().unwrap_or(f64::NAN),
            100.0 * row["rel_error_p90"].as_f64().unwrap_or(f64::NAN),
        );
    }
    Ok(ExitCode::SUCCESS)
}
