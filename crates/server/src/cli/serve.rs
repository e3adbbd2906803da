//! `polis serve`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use clap::Args;
use tracing::info;

use crate::{Config, load_scene, start};

/// Arguments of `polis serve`; each overrides the config file.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Configuration file (see `polis.example.toml`).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Scene file to serve instead of the bundled one.
    #[arg(long)]
    scene: Option<PathBuf>,
    /// UDP address to listen on [default: 127.0.0.1:4433].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Data directory (TLS identity, generated tokens) [default: ./polis-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Simulation ticks per second [default: 20].
    #[arg(long)]
    tick_hz: Option<f64>,
}

pub(crate) fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(scene) = args.scene {
        config.scene = Some(scene);
    }
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(data_dir) = args.data_dir {
        config.data_dir = data_dir;
    }
    if let Some(tick_hz) = args.tick_hz {
        anyhow::ensure!(
            tick_hz.is_finite() && tick_hz > 0.0 && tick_hz <= 1000.0,
            "--tick-hz must be in (0, 1000]"
        );
        config.tick_hz = tick_hz;
    }
    let scene = load_scene(config.scene.as_deref())?;
    let server = start(&config, scene)?;
    let started = server.started().clone();
    println!(
        "polis serving scene `{}` ({} assets, {} sensors) on {}",
        started.scene_name, started.asset_count, started.sensor_count, started.local_addr
    );
    println!(
        "certificate: {}{}",
        started.cert_path.display(),
        if started.cert_created {
            " (created)"
        } else {
            ""
        }
    );
    println!("certificate SHA-256: {}", started.fingerprint_sha256);
    for (role, path) in &started.generated_tokens {
        println!("{} token: {}", role.as_str(), path.display());
    }
    info!(addr = %started.local_addr, fingerprint = %started.fingerprint_sha256, "listening");

    let stop = server.stop_flag();
    spawn_signal_watcher(Arc::clone(&stop))?;
    server.wait();
    info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Sets `stop` on SIGINT or SIGTERM.
fn spawn_signal_watcher(stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    std::thread::Builder::new()
        .name("polis-signals".into())
        .spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                #[cfg(unix)]
                {
                    use tokio::signal::unix::{SignalKind, signal};
                    let Ok(mut term) = signal(SignalKind::terminate()) else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => info!("SIGINT received"),
                        _ = term.recv() => info!("SIGTERM received"),
                    }
                }
                #[cfg(not(unix))]
                {
                    let _ = tokio::signal::ctrl_c().await;
                }
            });
            stop.store(true, Ordering::SeqCst);
        })
        .context("cannot start the signal thread")?;
    Ok(())
}
