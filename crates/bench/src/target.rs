//! The hidden `polis-bench target` subcommand: the system under test in a
//! process of its own, pinned to the server core by `main` before it starts
//! any thread. The parent ([`crate::child::TargetProcess`]) reads JSON
//! lines from its stdout and sends requests on its stdin; when its stdin
//! closes, it stops.

use std::io::BufRead as _;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};

use crate::scene::grid_scene;

/// Which system to run.
#[derive(Debug, Subcommand)]
pub(crate) enum TargetCommand {
    /// A Polis server (`polis_server::start`) on a grid city; prints a
    /// [`PolisReady`] line, then answers `counters` with [`PolisCounters`].
    Polis(PolisArgs),
    /// The history store alone writing rows as fast as it commits them;
    /// prints one [`crate::store::StoreFigures`] line when done.
    Store(crate::store::StoreArgs),
    /// A mosquitto broker, killed when stdin closes; prints its process id
    /// once it listens.
    Mosquitto(crate::mosquitto::BrokerArgs),
}

/// `polis-bench target polis`.
#[derive(Debug, Args)]
pub(crate) struct PolisArgs {
    /// The server's configuration (TOML, as `polis serve --config` reads it).
    #[arg(long)]
    config: PathBuf,
    /// Sensors of the synthetic grid city it serves.
    #[arg(long)]
    grid_sensors: usize,
}

/// The first line of a Polis target: where to reach it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct PolisReady {
    /// The QUIC edge's address.
    pub(crate) addr: std::net::SocketAddr,
    /// Its certificate.
    pub(crate) cert: PathBuf,
}

/// The server's own counters, answered to each `counters` request.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct PolisCounters {
    /// Twin ticks so far.
    pub(crate) ticks: u64,
    /// Frame bytes written to viewer streams so far (no QUIC/UDP/IP).
    pub(crate) viewer_bytes_sent: Option<u64>,
    /// Most entries waiting in one viewer's mailbox, sampled every 10 ms
    /// since the previous request.
    pub(crate) backlog_max: u64,
    /// Readings its MQTT sources recorded so far.
    #[serde(default)]
    pub(crate) mqtt_readings: u64,
    /// Its MQTT sources' arrival-to-acknowledgement counts per bucket of
    /// [`polis_mqtt::AckLatency`], summed over sources.
    #[serde(default)]
    pub(crate) mqtt_ack_latency: Vec<u64>,
}

/// Runs the target until the parent closes its stdin.
pub(crate) fn run(command: TargetCommand) -> anyhow::Result<()> {
    match command {
        TargetCommand::Polis(args) => run_polis(&args),
        TargetCommand::Store(args) => crate::store::run(&args),
        TargetCommand::Mosquitto(args) => crate::mosquitto::supervise(&args),
    }
}

/// Prints one JSON line on stdout (line-buffered: the parent sees it at
/// once).
pub(crate) fn answer(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}

fn run_polis(args: &PolisArgs) -> anyhow::Result<()> {
    let config = polis_server::Config::load(&args.config)?;
    let server = polis_server::start(&config, grid_scene(args.grid_sensors))?;
    let started = server.started();
    answer(&PolisReady {
        addr: started.local_addr,
        cert: started.cert_path.clone(),
    })?;
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    std::thread::Builder::new()
        .name("bench-target-in".into())
        .spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        })
        .context("cannot start the target's stdin thread")?;
    let metrics = server.metrics();
    let net = server.observed().net.get().cloned();
    let mqtt = server.observed().mqtt.get().cloned().unwrap_or_default();
    let mut backlog_max = 0u64;
    loop {
        match lines_rx.recv_timeout(Duration::from_millis(10)) {
            Ok(line) if line.trim() == "counters" => {
                answer(&PolisCounters {
                    ticks: metrics.ticks.load(Ordering::Relaxed),
                    viewer_bytes_sent: net
                        .as_ref()
                        .map(|n| n.viewer_bytes_sent.load(Ordering::Relaxed)),
                    backlog_max: backlog_max
                        .max(metrics.viewer_backlog_max.load(Ordering::Relaxed)),
                    mqtt_readings: mqtt
                        .iter()
                        .map(|s| s.readings.load(Ordering::Relaxed))
                        .sum(),
                    mqtt_ack_latency: (0..polis_mqtt::ACK_LATENCY_BUCKETS)
                        .map(|i| mqtt.iter().map(|s| s.ack_latency.counts()[i]).sum())
                        .collect(),
                })?;
                backlog_max = 0;
            }
            Ok(line) => anyhow::bail!("unknown request `{line}`"),
            // Sample the fullest mailbox (the twin updates it every tick).
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                backlog_max = backlog_max.max(metrics.viewer_backlog_max.load(Ordering::Relaxed));
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    server.stop();
    Ok(())
}
