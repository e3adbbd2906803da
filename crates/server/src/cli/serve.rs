//! `polis serve`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use clap::Args;
use tracing::info;

use crate::{Config, Observed, load_scene, start_http, start_with};

/// Arguments of `polis serve`; each overrides the environment (`POLIS_…`),
/// which overrides the config file, which overrides the defaults.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Configuration file (see `polis.example.toml`).
    #[arg(long, env = "POLIS_CONFIG")]
    pub(crate) config: Option<PathBuf>,
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
    /// Also drive the twin with the real-data replay (`polis replay`), so the
    /// city is live at once.
    #[arg(long)]
    demo: bool,
    #[command(flatten)]
    replay: super::replay::ReplayArgs,
}

/// The effective configuration for `args`: defaults, file, environment, flags.
pub(crate) fn effective_config(args: &ServeArgs) -> anyhow::Result<Config> {
    let mut overrides = Config::env_overrides(|var| std::env::var(var).ok());
    let flags = [
        ("--listen", "listen", args.listen.map(|a| a.to_string())),
        (
            "--data-dir",
            "data_dir",
            args.data_dir.as_ref().map(|d| d.display().to_string()),
        ),
        (
            "--scene",
            "scene",
            args.scene.as_ref().map(|s| s.display().to_string()),
        ),
        ("--tick-hz", "tick_hz", args.tick_hz.map(|t| t.to_string())),
    ];
    for (flag, key, value) in flags {
        if let Some(value) = value {
            overrides.push((flag.to_owned(), key, value));
        }
    }
    Ok(Config::layered(args.config.as_deref(), &overrides)?)
}

pub(crate) fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut config = effective_config(&args)?;
    let demo_token = args.demo.then(crate::new_token);
    if let Some(token) = &demo_token {
        // A token for the built-in gateway only; never written anywhere.
        config.runtime_tokens.push(crate::TokenEntry::with_secret(
            polis_protocol::Access::Gateway,
            Some("demo-replay"),
            token.clone(),
        ));
    }
    // Health and readiness answer while the scene loads.
    let observed = Arc::new(Observed::default());
    let http = start_http(&config, &observed)?;
    let scene = load_scene(config.scene.as_deref())?;
    let demo_scene = demo_token.is_some().then(|| scene.clone());
    let server = start_with(&config, scene, observed, http)?;
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
    if let Some(addr) = server.http_addr() {
        println!("health and metrics: http://{addr}/metrics");
    }
    for (role, path) in &started.generated_tokens {
        println!("{} token: {}", role.as_str(), path.display());
    }
    info!(addr = %started.local_addr, fingerprint = %started.fingerprint_sha256, "listening");

    let stop = server.stop_flag();
    spawn_signal_watcher(Arc::clone(&stop))?;
    if let (Some(token), Some(scene)) = (demo_token, demo_scene) {
        let options = super::replay::options(&args.replay, None)?;
        spawn_demo_replay(&started, scene, token, options, Arc::clone(&stop))?;
    }
    server.wait();
    info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Sets `stop` on SIGINT or SIGTERM.
fn spawn_signal_watcher(stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let runtime = super::client_runtime()?;
    std::thread::Builder::new()
        .name("polis-signals".into())
        .spawn(move || {
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

/// Runs the replay against this server on its own thread until `stop`.
fn spawn_demo_replay(
    started: &crate::ServerStarted,
    scene: polis_scene::Scene,
    token: String,
    options: polis_replay::ReplayOptions,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let addr = started.local_addr;
    let server = if addr.ip().is_unspecified() {
        format!("localhost:{}", addr.port())
    } else {
        addr.to_string()
    };
    let client = polis_net::ClientOptions::new(
        server,
        started.cert_path.clone(),
        token,
        polis_protocol::Role::Gateway,
    );
    println!("demo: replaying real feeds at {}× speed", options.speed);
    let runtime = super::client_runtime()?;
    std::thread::Builder::new()
        .name("polis-demo".into())
        .spawn(move || {
            runtime.block_on(async {
                let replay = super::replay::replay(&client, &scene, &options, false);
                let stopped = async {
                    while !stop.load(Ordering::SeqCst) {
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                };
                tokio::select! {
                    result = replay => if let Err(err) = result {
                        tracing::warn!("demo replay ended: {err:#}");
                    },
                    () = stopped => {}
                }
            });
        })
        .context("cannot start the demo thread")?;
    Ok(())
}
