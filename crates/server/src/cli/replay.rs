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
use super::replay_mqtt::{MqttFormat, replay_to_broker};
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
    /// Server address, HOST:PORT.
    #[arg(long, default_value = crate::DEFAULT_LISTEN, conflicts_with = "mqtt")]
    server: String,
    /// The server's certificate (PEM), e.g. `polis-data/tls/cert.pem`.
    #[arg(long, required_unless_present = "mqtt")]
    cert: Option<PathBuf>,
    /// Gateway token (or set POLIS_TOKEN).
    #[arg(
        long,
        env = "POLIS_TOKEN",
        hide_env_values = true,
        required_unless_present = "mqtt"
    )]
    token: Option<String>,
    /// Publish the readings to this MQTT broker (`mqtt://HOST:PORT`, QoS 1,
    /// one message per reading on TOPIC_PREFIX{sensor}) instead of pushing
    /// them to a server: a Polis `[[mqtt]]` source subscribed there reads them.
    #[arg(long, value_name = "URL")]
    mqtt: Option<String>,
    /// Payload of each MQTT message.
    #[arg(long, value_enum, default_value_t = MqttFormat::Senml, requires = "mqtt")]
    format: MqttFormat,
    /// Topic of each MQTT message: this prefix, then the sensor id.
    #[arg(long, default_value = "polis/", requires = "mqtt")]
    topic_prefix: String,
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
    let runtime = client_runtime()?;
    if let Some(url) = &args.mqtt {
        let stats = runtime.block_on(async {
            tokio::select! {
                stats = replay_to_broker(url, args.format, &args.topic_prefix, &scene, &options) => stats.map(Some),
                _ = tokio::signal::ctrl_c() => Ok(None),
            }
        })?;
        if let Some(stats) = stats {
            println!(
                "rounds {}, published {}, acknowledged by the broker {}",
                stats.rounds, stats.published, stats.acknowledged
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let (Some(cert), Some(token)) = (args.cert, args.token) else {
        anyhow::bail!("--cert and --token are needed to push to a server (or give --mqtt URL)");
    };
    let server = ServerArgs {
        server: args.server,
        cert,
        token,
    };
    let client = server.client_options(Role::Gateway);
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
