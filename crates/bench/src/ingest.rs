//! `polis-bench ingest`: gateways push batched readings as fast as they are
//! acknowledged (with durable history); baselines in the same run: the
//! history store alone writing the same rows, and mosquitto taking the same
//! readings at QoS 1. The server, the store and the broker each run on the
//! server core; the gateways and MQTT clients in this process on the load
//! core.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use polis_net::{ClientOptions, GatewayClient, GatewayOptions};
use polis_protocol::{Reading, Role};
use polis_server::{Config, DEFAULT_MAX_TICK_HZ, HistoryConfig, Http, Limits, TokenEntry};

use crate::child::{TargetProcess, start_polis};
use crate::measure::percentile;
use crate::mosquitto;
use crate::pin::Cores;
use crate::procstat::{Pid, ProcessSample};
use crate::store::{StoreArgs, StoreFigures};

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

/// Runs the scenario: Polis, the store alone, then mosquitto, each on
/// `cores.server`, the load in this process (already pinned) on
/// `cores.load`.
pub(crate) fn run(mut args: IngestArgs, cores: Cores) -> anyhow::Result<ExitCode> {
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
        ngsi_ld: polis_server::NgsiLdConfig {
            enabled: false,
            ..polis_server::NgsiLdConfig::default()
        },
        history: HistoryConfig {
            enabled: !args.no_history,
            ..HistoryConfig::default()
        },
        // The per-connection limits guard a server against a misbehaving
        // gateway; this bench measures what the twin can take, so its two
        // gateways may push as much and keep as many batches in flight as
        // asked.
        max_tick_hz: args.max_tick_hz.unwrap_or(DEFAULT_MAX_TICK_HZ),
        limits: Limits {
            max_readings_per_second: 1e12,
            gateway_window: args.window.max(Limits::default().gateway_window),
            ..Limits::default()
        },
        tokens: vec![TokenEntry::with_secret(
            polis_protocol::Access::Gateway,
            Some("bench"),
            "bench-gateway-token-0123456789",
        )],
        ..Config::default()
    };
    let data_dir = dir.path().join("data");
    std::fs::create_dir_all(&data_dir)?;
    let (server, ready) = start_polis(config, args.sensors, cores.server, &data_dir)?;
    let server_pid = server.pid();
    let client = ClientOptions::new(
        ready.addr.to_string(),
        ready.cert,
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
        let server_before = ProcessSample::take(server_pid);
        let load_before = ProcessSample::take(Pid::current());
        tokio::time::sleep_until(until.into()).await;
        let server_used = server_before.until(&ProcessSample::take(server_pid));
        let load_used = load_before.until(&ProcessSample::take(Pid::current()));
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await??);
        }
        Ok::<_, anyhow::Error>((results, server_used, load_used))
    })?;
    let (results, server_used, load_used) = results;
    let polis_cores = cores.json(Some(server_pid));
    let polis_ran_on = cores.describe(Some(server_pid));
    drop(server);
    let acked: u64 = results.iter().map(|r| r.acked).sum();
    let mut latencies: Vec<f64> = results
        .iter()
        .flat_map(|r| r.latencies_ms.clone())
        .collect();
    latencies.sort_by(f64::total_cmp);
    let secs = measured.as_secs_f64();
    let rate = acked as f64 / secs;
    let (twin, net, history) = (
        server_used.thread("polis-twin"),
        server_used.thread("polis-net"),
        server_used.thread("polis-history"),
    );
    eprintln!("baseline: the history store alone, same rows …");
    let store: StoreFigures = TargetProcess::spawn(
        "history store",
        cores.server,
        &StoreArgs::command_line(dir.path(), args.sensors, args.batch, args.seconds.min(10.0)),
    )?
    .read()?;
    let baseline = store.rows_per_s;
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
        cores,
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
        "max_tick_hz": args.max_tick_hz.unwrap_or(DEFAULT_MAX_TICK_HZ),
        "seconds": secs,
        "history": !args.no_history,
        "acknowledged_readings_per_s": rate.round(),
        "ack_latency_ms_p50": percentile(&latencies, 50.0),
        "ack_latency_ms_p99": percentile(&latencies, 99.0),
        "server_cpu_cores": { "twin": twin, "net": net, "history": history, "total": server_used.cores },
        "server_cpu": server_used.json(),
        "load_cpu": load_used.json(),
        "cores": polis_cores,
        "baseline_store_alone_rows_per_s": baseline.round(),
        "baseline_store_alone_cpu_cores": store.cores,
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
            "| server CPU (cores, its process) | {:.2} (twin {twin:.2}, net {net:.2}, history {history:.2}) | {:.2} | – | {} | {} |",
            server_used.cores,
            store.cores,
            mq(&|m| format!("{:.2}", m.broker.cores)),
            mq(&|m| format!("{:.2}", server_used.cores / m.broker.cores)),
        );
        println!(
            "| load generator CPU (cores, its process) | {:.2} | – | – | {} | – |",
            load_used.cores,
            mq(&|m| format!("{:.2}", m.load.cores)),
        );
        println!(
            "| run-queue wait (s per s, summed over threads): server / load | {:.2} / {:.2} | – | – | {} | – |",
            server_used.wait,
            load_used.wait,
            mq(&|m| format!("{:.2} / {:.2}", m.broker.wait, m.load.wait)),
        );
        println!(
            "| whole machine busy CPU (cores, every process) | {:.2} of {} | – | – | {} | – |",
            server_used.machine_cores,
            crate::procstat::cpus_online(),
            mq(&|m| format!("{:.2}", m.broker.machine_cores)),
        );
        if let Some(m) = &mqtt {
            println!(
                "| mosquitto: publish → consumer latency p50 / p99 | – | – | – | {:.2} / {:.2} ms | – |",
                m.delivery_p50_ms, m.delivery_p99_ms
            );
        }
        println!("\nPolis: {polis_ran_on}");
        if let Some(m) = &mqtt {
            println!("mosquitto: {}", m.ran_on);
        }
    }
    Ok(ExitCode::SUCCESS)
}
