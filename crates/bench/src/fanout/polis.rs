//! Polis as the fan-out phase's system under test: a server in a target
//! process (default configuration, durable history on), a `GatewayClient`
//! sender and one `polis_net::Session` per viewer, subscribed to the box of
//! its 3 × 3 tiles.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use polis_net::{ClientOptions, GatewayClient, GatewayOptions, Session};
use polis_protocol::{Access, ClientToServer, GeoBox, Reading, Role, ServerToViewer, Subscribe};
use polis_server::{Config, DEFAULT_MAX_TICK_HZ, DEFAULT_TICK_HZ, Http, Limits, TokenEntry};
use tokio::task::JoinHandle;

use super::FanoutArgs;
use super::phase::{Pacer, PhaseLoad, System};
use crate::child::{TargetProcess, start_polis};
use crate::measure::{STALL_TIMEOUT, Window, unix_ms};
use crate::procstat::Pid;
use crate::target::PolisCounters;

const GATEWAY_TOKEN: &str = "bench-fanout-gateway-token-0123456789";
const VIEWER_TOKEN: &str = "bench-fanout-viewer-token-0123456789";
/// Batches the gateway keeps in flight.
const GATEWAY_WINDOW: usize = 64;

/// A Polis server in its own process, and how to reach it.
pub(super) struct Polis {
    server: TargetProcess,
    addr: String,
    cert: std::path::PathBuf,
    publish_interval_ms: u32,
}

impl Polis {
    /// Starts the server for `args` on `core`, its data in `data_dir`.
    pub(super) fn start(
        args: &FanoutArgs,
        core: Option<usize>,
        data_dir: &Path,
    ) -> anyhow::Result<Polis> {
        let mut limits = Limits::default();
        // Room for a churn run's second phase while the first one's viewers close.
        let connections = 2 * (args.viewers + args.churners) + 16;
        limits.max_connections = limits.max_connections.max(connections);
        limits.max_connections_per_token = u32::try_from(connections).unwrap_or(u32::MAX);
        limits.max_connections_per_token_per_address = limits.max_connections_per_token;
        limits.gateway_window = GATEWAY_WINDOW;
        if let Some(items) = args.max_area_items_per_second {
            limits.max_area_items_per_second = items;
        }
        if let Some(items) = args.max_area_items_per_second_per_connection {
            limits.max_area_items_per_second_per_connection = items;
        }
        if let Some(items) = args.max_area_items_per_tick {
            limits.max_area_items_per_tick = items;
        }
        let tick_hz = args.tick_hz.unwrap_or(DEFAULT_TICK_HZ);
        let config = Config {
            listen: "127.0.0.1:0".parse()?,
            data_dir: data_dir.to_path_buf(),
            http: Http {
                enabled: false,
                ..Http::default()
            },
            ngsi_ld: polis_server::NgsiLdConfig {
                enabled: false,
                ..polis_server::NgsiLdConfig::default()
            },
            limits,
            tick_hz,
            max_tick_hz: args.max_tick_hz.unwrap_or(DEFAULT_MAX_TICK_HZ).max(tick_hz),
            tokens: vec![
                token("bench-gateway", Access::Gateway, GATEWAY_TOKEN),
                token("bench-viewers", Access::Public, VIEWER_TOKEN),
            ],
            ..Config::default()
        };
        std::fs::create_dir_all(data_dir)?;
        let (server, ready) = start_polis(config, args.sensors, core, data_dir)?;
        Ok(Polis {
            server,
            addr: ready.addr.to_string(),
            cert: ready.cert,
            publish_interval_ms: args.publish_interval_ms,
        })
    }

    fn options(&self, token: &str, role: Role) -> ClientOptions {
        let mut options = ClientOptions::new(self.addr.clone(), self.cert.clone(), token, role);
        options.client_name = "polis-bench-fanout".into();
        options
    }
}

fn token(name: &str, role: Access, token: &str) -> TokenEntry {
    TokenEntry::with_secret(role, Some(name), token)
}

impl System for Polis {
    fn name(&self) -> &'static str {
        "polis"
    }

    fn pid(&self) -> Pid {
        self.server.pid()
    }

    fn spawn_viewer(&self, viewer: usize, load: &PhaseLoad) -> JoinHandle<()> {
        let options = self.options(VIEWER_TOKEN, Role::Viewer);
        let area = load.layout.area(viewer);
        let publish_interval_ms = self.publish_interval_ms;
        let counters = Arc::clone(&load.counters);
        let load = load.clone();
        tokio::spawn(async move {
            if let Err(error) = polis_viewer(options, area, publish_interval_ms, load).await {
                counters.fail(&error);
            }
        })
    }

    fn spawn_churner(&self, churner: usize, load: &PhaseLoad) -> Option<JoinHandle<()>> {
        let options = self.options(VIEWER_TOKEN, Role::Viewer);
        let counters = Arc::clone(&load.counters);
        let load = load.clone();
        Some(tokio::spawn(async move {
            if let Err(error) = polis_churner(options, churner, load).await {
                counters.fail(&error);
            }
        }))
    }

    fn spawn_sender(&self, window: Window, load: &PhaseLoad) -> JoinHandle<anyhow::Result<()>> {
        let options = self.options(GATEWAY_TOKEN, Role::Gateway);
        let load = load.clone();
        tokio::spawn(async move { polis_gateway(options, window, load).await })
    }

    fn counters(&mut self) -> anyhow::Result<Option<PolisCounters>> {
        self.server.request("counters").map(Some)
    }
}

async fn polis_viewer(
    options: ClientOptions,
    area: GeoBox,
    publish_interval_ms: u32,
    load: PhaseLoad,
) -> anyhow::Result<()> {
    let mut stop = load.stop.clone();
    let mut session = Session::connect(&options).await?;
    session
        .send(&ClientToServer::Subscribe(Subscribe {
            subscription: 1,
            area,
            layers: Vec::new(),
            at_ms: None,
            speed: 1.0,
            publish_interval_ms,
        }))
        .await?;
    let mut subscribed = false;
    while Instant::now() < load.hard_stop {
        let message = tokio::select! {
            message = session.recv::<ServerToViewer>() => message?,
            _ = stop.wait_for(|stop| *stop) => break,
        };
        match message {
            ServerToViewer::Snapshot(snapshot) if snapshot.complete && !subscribed => {
                subscribed = true;
                load.counters.ready.fetch_add(1, Ordering::Relaxed);
            }
            ServerToViewer::Update(update) => {
                let Some(window) = load.window.get() else {
                    continue;
                };
                let now_us = window.clock.now_us();
                for value in update.values {
                    load.received(window, value.value as u64, now_us);
                }
            }
            ServerToViewer::Error(error) => anyhow::bail!("server error: {error}"),
            _ => {}
        }
    }
    tokio::time::timeout(Duration::from_secs(2), session.close())
        .await
        .ok();
    Ok(())
}

/// A viewer that switches between the whole city and one corner
/// `load.churn_hz` times a second, reading (and dropping) what it is sent.
async fn polis_churner(
    options: ClientOptions,
    churner: usize,
    load: PhaseLoad,
) -> anyhow::Result<()> {
    let mut stop = load.stop.clone();
    // Staggered: one address may have only 16 handshakes in progress.
    tokio::time::sleep(Duration::from_millis(20) * u32::try_from(churner).unwrap_or(0)).await;
    let mut session = Session::connect(&options).await?;
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / load.churn_hz));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut subscription = 0u32;
    while Instant::now() < load.hard_stop {
        let switch = tokio::select! {
            message = session.recv::<ServerToViewer>() => {
                if let ServerToViewer::Error(error) = message? {
                    anyhow::bail!("server error to a churning viewer: {error}");
                }
                false
            }
            _ = ticker.tick() => true,
            _ = stop.wait_for(|stop| *stop) => break,
        };
        if !switch {
            continue;
        }
        subscription += 1;
        let area = if subscription % 2 == 1 {
            load.layout.whole_area()
        } else {
            load.layout.corner_area()
        };
        session
            .send(&ClientToServer::Subscribe(Subscribe {
                subscription,
                area,
                layers: Vec::new(),
                at_ms: None,
                speed: 1.0,
                publish_interval_ms: 0,
            }))
            .await?;
        load.counters.churned.fetch_add(1, Ordering::Relaxed);
    }
    tokio::time::timeout(Duration::from_secs(2), session.close())
        .await
        .ok();
    Ok(())
}

async fn polis_gateway(
    options: ClientOptions,
    window: Window,
    load: PhaseLoad,
) -> anyhow::Result<()> {
    let mut client = GatewayClient::connect(
        options,
        GatewayOptions {
            window: GATEWAY_WINDOW,
            reconnect_for: Duration::from_secs(5),
        },
    )
    .await?;
    let ids: Vec<String> = (0..load.layout.sensors).map(|i| format!("s{i}")).collect();
    let mut pacer = Pacer::new(window, &load).await;
    while let Some(burst) = pacer.next().await {
        let device_time_ms = unix_ms();
        let readings: Vec<Reading> = burst
            .into_iter()
            .map(|(sensor, sent_us)| Reading {
                sensor: ids[sensor].clone(),
                device_time_ms,
                value: sent_us as f64,
                quality: None,
            })
            .collect();
        tokio::time::timeout(STALL_TIMEOUT, client.push(readings))
            .await
            .context("the server took no readings for 10 s")??;
    }
    tokio::time::timeout(Duration::from_secs(10), client.flush())
        .await
        .context("the server did not acknowledge the last batches within 10 s")??;
    client.close().await;
    Ok(())
}
