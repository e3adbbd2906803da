//! `polis replay`: drive a twin with feeds built from the bundled real data.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use polis_net::ClientOptions;
use polis_protocol::Role;
use polis_replay::{FeedData, ReplayOptions, ReplayStats, plan_feeds, run_replay};
use tracing::info;

use super::progress::ProgressLine;
use super::{ServerArgs, client_runtime, format_time_ms, parse_time_ms};
use crate::load_scene;

/// Options shared by `polis replay` and `polis serve --demo`.
#[derive(Debug, Clone, Args)]
pub(crate) struct ReplayArgs {
    /// Simulated seconds per second (60 = an hour a minute).
    #[arg(long, default_value_t = 60.0)]
    pub(crate) speed: f64,
    /// Simulated start time, RFC 3339 (default: now).
    #[arg(long)]
    pub(crate) start: Option<String>,
    /// Wall-clock seconds between rounds of readings.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) interval: f64,
}

/// Arguments of `polis replay`.
#[derive(Debug, Args)]
pub(crate) struct ReplayCommand {
    #[command(flatten)]
    server: ServerArgs,
    /// Scene whose sensors to feed (the bundled one by default); must be the
    /// scene the server serves.
    #[arg(long)]
    scene: Option<PathBuf>,
    #[command(flatten)]
    replay: ReplayArgs,
    /// Stop after this many wall-clock seconds (runs until interrupted otherwise).
    #[arg(long = "for")]
    for_secs: Option<f64>,
}

/// Replay options from the command line.
pub(crate) fn options(args: &ReplayArgs, for_secs: Option<f64>) -> anyhow::Result<ReplayOptions> {
    let start_ms = match &args.start {
        Some(text) => parse_time_ms("--start", text)?,
        None => crate::startup::unix_now_ms(),
    };
    anyhow::ensure!(
        args.interval.is_finite() && args.interval > 0.0,
        "--interval must be a positive number of seconds"
    );
    let duration = for_secs
        .map(|secs| {
            anyhow::ensure!(
                secs.is_finite() && secs >= 0.0,
                "--for must be a non-negative number of seconds"
            );
            Ok(Duration::from_secs_f64(secs))
        })
        .transpose()?;
    let options = ReplayOptions {
        speed: args.speed,
        interval: Duration::from_secs_f64(args.interval),
        duration,
        ..ReplayOptions::new(start_ms)
    };
    options.validate()?;
    Ok(options)
}

/// Runs a replay of `scene`'s feeds against `client` until done.
pub(crate) async fn replay(
    client: &ClientOptions,
    scene: &polis_scene::Scene,
    options: &ReplayOptions,
    show_progress: bool,
) -> anyhow::Result<ReplayStats> {
    let data = FeedData::bundled()?;
    let plan = plan_feeds(scene);
    info!(
        fed = plan.feeds.len(),
        skipped = plan.skipped_total(),
        speed = options.speed,
        "replaying real feeds"
    );
    for (reason, count) in &plan.skipped {
        info!(count, "not fed: {reason}");
    }
    let mut progress = ProgressLine::new();
    let stats = run_replay(client, &plan, &data, options, &mut |stats| {
        if show_progress {
            progress.update(
                &format!("replay at {}", format_time_ms(stats.sim_time_ms)),
                stats.accepted,
                None,
            );
        }
    })
    .await;
    progress.finish();
    Ok(stats?)
}

pub(crate) fn run(args: ReplayCommand) -> anyhow::Result<ExitCode> {
    let scene = load_scene(args.scene.as_deref())?;
    let options = options(&args.replay, args.for_secs)?;
    let client = args.server.client_options(Role::Gateway);
    let runtime = client_runtime()?;
    let stats = runtime.block_on(async {
        tokio::select! {
            stats = replay(&client, &scene, &options, true) => stats.map(Some),
            _ = tokio::signal::ctrl_c() => Ok(None),
        }
    })?;
    if let Some(stats) = stats {
        println!(
            "rounds {}, sent {}, accepted {}, stale {}, duplicate {}, refused {}",
            stats.rounds, stats.sent, stats.accepted, stats.stale, stats.duplicate, stats.refused
        );
        if stats.refused > 0 {
            return Ok(ExitCode::from(1));
        }
    }
    Ok(ExitCode::SUCCESS)
}
