//! `polis-bench mqtt-ingest`: devices publish readings (one SenML record per
//! message, QoS 1, as fast as the broker acknowledges) to mosquitto; Polis,
//! an `[[mqtt]]` source on its own core, reads them and acknowledges each
//! once it is applied and committed to history; in the same run mosquitto
//! delivers the same messages to a bare rumqttc subscriber. The figures:
//! readings/s Polis made durable, messages/s the bare subscriber received,
//! their ratio, and Polis' arrival-to-PUBACK latency. Polis runs on the
//! server core; mosquitto, the publishers and the bare subscriber on the
//! load core.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use polis_mqtt::{ACK_LATENCY_BUCKETS, AckLatency};
use polis_server::{
    Config, HistoryConfig, Http, MqttSourceConfig, MqttSubscribeConfig, MqttVersion, PayloadFormat,
};

use crate::child::{TargetProcess, start_polis};
use crate::mosquitto::{Broker, mqtt_eventloop, mqtt_options};
use crate::pin::Cores;
use crate::procstat::{Pid, ProcessSample};
use crate::target::PolisCounters;

/// Device time of the first reading of each sensor, s since the epoch.
const BASE_TIME_S: i64 = 1_700_000_000;

#[derive(Debug, Args)]
pub(crate) struct MqttIngestArgs {
    /// A short run for CI smoke tests (under a minute).
    #[arg(long)]
    quick: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Publishing devices (MQTT connections).
    #[arg(long, default_value_t = 2)]
    publishers: usize,
    /// Sensors in the synthetic scene (the publishers share them).
    #[arg(long, default_value_t = 10_000)]
    sensors: usize,
    /// Messages each publisher keeps unacknowledged by the broker.
    #[arg(long, default_value_t = 100)]
    publisher_in_flight: u16,
    /// Polis' `max_in_flight`: messages it holds unacknowledged.
    #[arg(long, default_value_t = 256)]
    max_in_flight: u64,
    /// Measured seconds (after a warm-up of a fifth of it, at least 1 s).
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
}

/// Polis' counters at one instant, with when they were read.
struct Reading {
    at: Instant,
    counters: PolisCounters,
    bare: u64,
}

fn read(server: &mut TargetProcess, bare: &AtomicU64) -> anyhow::Result<Reading> {
    let counters: PolisCounters = server.request("counters")?;
    Ok(Reading {
        at: Instant::now(),
        counters,
        bare: bare.load(Ordering::Relaxed),
    })
}

/// A SenML JSON pack of one record, as a device writes it.
fn payload(sensor: usize, step: i64) -> Vec<u8> {
    format!(
        r#"[{{"n":"s{sensor}","v":{step},"t":{}}}]"#,
        BASE_TIME_S + step
    )
    .into_bytes()
}

/// The bare subscriber: counts every message on `bench/#` (QoS 1,
/// acknowledged by rumqttc at once).
async fn bare_subscriber(port: u16, received: Arc<AtomicU64>, subscribed: Arc<AtomicBool>) {
    let options = mqtt_options("bench-bare-subscriber".into(), port);
    let (client, eventloop) = rumqttc::AsyncClient::new(options, 64);
    let mut eventloop = mqtt_eventloop(eventloop);
    loop {
        match eventloop.poll().await {
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                let _ = client.try_subscribe("bench/#", rumqttc::QoS::AtLeastOnce);
            }
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                subscribed.store(true, Ordering::Relaxed);
            }
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(_))) => {
                received.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {}
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// One device: publishes its sensors' readings round after round at QoS 1
/// until `stop`.
async fn publisher(
    port: u16,
    index: usize,
    sensors: std::ops::Range<usize>,
    in_flight: u16,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let mut options = mqtt_options(format!("bench-device-{index}"), port);
    options.set_inflight(in_flight.max(1));
    let (client, eventloop) = rumqttc::AsyncClient::new(options, usize::from(in_flight));
    let mut eventloop = mqtt_eventloop(eventloop);
    let connection = tokio::spawn(async move {
        while !matches!(
            eventloop.poll().await,
            Ok(rumqttc::Event::Outgoing(rumqttc::Outgoing::Disconnect))
        ) {}
    });
    let mut step = 0i64;
    'rounds: loop {
        for sensor in sensors.clone() {
            if stop.load(Ordering::Relaxed) {
                break 'rounds;
            }
            client
                .publish(
                    format!("bench/s{sensor}"),
                    rumqttc::QoS::AtLeastOnce,
                    false,
                    payload(sensor, step),
                )
                .await?;
        }
        step += 1;
    }
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), connection).await;
    Ok(())
}

/// Runs the scenario.
pub(crate) fn run(mut args: MqttIngestArgs, cores: Cores) -> anyhow::Result<ExitCode> {
    if args.quick {
        args.seconds = args.seconds.min(5.0);
        args.sensors = args.sensors.min(2_000);
    }
    anyhow::ensure!(
        args.publishers > 0 && args.sensors >= args.publishers,
        "need sensors >= publishers > 0"
    );
    let dir = tempfile::tempdir()?;
    // Polis' receive maximum (MQTT 5) sets how many messages mosquitto may
    // send it unacknowledged, not mosquitto's default cap of 20.
    let Some(broker) =
        Broker::start_with(dir.path(), true, cores.load, "max_inflight_messages 0\n")?
    else {
        anyhow::bail!("mqtt-ingest needs mosquitto (apt-get install mosquitto)");
    };
    let data_dir = dir.path().join("data");
    std::fs::create_dir_all(&data_dir)?;
    let config = Config {
        listen: "127.0.0.1:0".parse()?,
        data_dir: data_dir.clone(),
        http: Http {
            enabled: false,
            ..Http::default()
        },
        ngsi_ld: polis_server::NgsiLdConfig {
            enabled: false,
            ..polis_server::NgsiLdConfig::default()
        },
        history: HistoryConfig::default(),
        mqtt: vec![MqttSourceConfig {
            name: "bench".into(),
            url: format!("mqtt://127.0.0.1:{}", broker.port),
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            username: None,
            password_file: None,
            password_env: None,
            client_id: Some("polis-bench".into()),
            version: MqttVersion::V5,
            qos: 1,
            session_expiry_secs: 3600,
            token: None,
            max_in_flight: args.max_in_flight,
            max_payload_bytes: 4096,
            keep_alive_secs: 30,
            subscribe: vec![MqttSubscribeConfig {
                filter: "bench/#".into(),
                format: PayloadFormat::Senml,
                topic: None,
                sensor_pointer: None,
                value_pointer: None,
                time_pointer: None,
                time_format: None,
                sensor_prefix: String::new(),
            }],
        }],
        ..Config::default()
    };
    eprintln!(
        "mqtt-ingest: {} publishers at QoS 1 ({} in flight each), {} sensors, Polis max_in_flight {}, {:.0} s measured …",
        args.publishers, args.publisher_in_flight, args.sensors, args.max_in_flight, args.seconds
    );
    let (mut server, _ready) = start_polis(config, args.sensors, cores.server, &data_dir)?;
    let server_pid = server.pid();
    let broker_pid = broker.pid();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("polis-bench-load")
        .enable_all()
        .build()?;
    let warmup = Duration::from_secs_f64((args.seconds / 5.0).max(1.0));
    let measured = Duration::from_secs_f64(args.seconds);
    let port = broker.port;
    let (first, last, used) = runtime.block_on(async {
        let bare = Arc::new(AtomicU64::new(0));
        let subscribed = Arc::new(AtomicBool::new(false));
        let subscriber = tokio::spawn(bare_subscriber(
            port,
            Arc::clone(&bare),
            Arc::clone(&subscribed),
        ));
        // Both consumers subscribed (Polis' first recorded reading says
        // so) before the stream starts, so both see all of it.
        let deadline = Instant::now() + Duration::from_secs(30);
        let probe = rumqttc::AsyncClient::new(mqtt_options("bench-probe".into(), port), 8);
        let (probe_client, mut probe_loop) = probe;
        let probe_task = tokio::spawn(async move { while probe_loop.poll().await.is_ok() {} });
        loop {
            let counters: PolisCounters = server.request("counters")?;
            if counters.mqtt_readings > 0 && subscribed.load(Ordering::Relaxed) {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "Polis did not read the broker within 30 s"
            );
            probe_client
                .publish("bench/s0", rumqttc::QoS::AtLeastOnce, false, payload(0, -1))
                .await?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        probe_task.abort();
        let stop = Arc::new(AtomicBool::new(false));
        let per = args.sensors / args.publishers;
        let publishers: Vec<_> = (0..args.publishers)
            .map(|i| {
                tokio::spawn(publisher(
                    port,
                    i,
                    i * per..(i + 1) * per,
                    args.publisher_in_flight,
                    Arc::clone(&stop),
                ))
            })
            .collect();
        tokio::time::sleep(warmup).await;
        let first = read(&mut server, &bare)?;
        let server_before = ProcessSample::take(server_pid);
        let broker_before = ProcessSample::take(broker_pid);
        let load_before = ProcessSample::take(Pid::current());
        tokio::time::sleep(measured).await;
        let last = read(&mut server, &bare)?;
        let used = (
            server_before.until(&ProcessSample::take(server_pid)),
            broker_before.until(&ProcessSample::take(broker_pid)),
            load_before.until(&ProcessSample::take(Pid::current())),
        );
        stop.store(true, Ordering::Relaxed);
        for task in publishers {
            task.await??;
        }
        subscriber.abort();
        Ok::<_, anyhow::Error>((first, last, used))
    })?;
    let (server_used, broker_used, load_used) = used;
    let polis_ran_on = cores.describe(Some(server_pid));
    let polis_cores = cores.json(Some(server_pid));
    drop(server);
    drop(broker);
    let secs = last.at.duration_since(first.at).as_secs_f64().max(1e-9);
    let polis_rate = last
        .counters
        .mqtt_readings
        .saturating_sub(first.counters.mqtt_readings) as f64
        / secs;
    let bare_rate = last.bare.saturating_sub(first.bare) as f64 / secs;
    let mut latency = [0u64; ACK_LATENCY_BUCKETS];
    for (i, bucket) in latency.iter_mut().enumerate() {
        let after = last.counters.mqtt_ack_latency.get(i).copied().unwrap_or(0);
        let before = first.counters.mqtt_ack_latency.get(i).copied().unwrap_or(0);
        *bucket = after.saturating_sub(before);
    }
    let p50_ms = AckLatency::percentile_secs(&latency, 50.0).map(|s| s * 1e3);
    let p99_ms = AckLatency::percentile_secs(&latency, 99.0).map(|s| s * 1e3);
    let ratio = if bare_rate > 0.0 {
        polis_rate / bare_rate
    } else {
        0.0
    };
    let report = serde_json::json!({
        "scenario": "mqtt-ingest",
        "publishers": args.publishers,
        "sensors": args.sensors,
        "publisher_in_flight": args.publisher_in_flight,
        "polis_max_in_flight": args.max_in_flight,
        "seconds": secs,
        "polis_durable_readings_per_s": polis_rate.round(),
        "bare_subscriber_messages_per_s": bare_rate.round(),
        "ratio_polis_over_bare_subscriber": ratio,
        "polis_ack_latency_ms_p50_at_most": p50_ms,
        "polis_ack_latency_ms_p99_at_most": p99_ms,
        "server_cpu_cores": server_used.cores,
        "server_cpu": server_used.json(),
        "broker_cpu_cores": broker_used.cores,
        "load_cpu_cores": load_used.cores,
        "cores": polis_cores,
    });
    if args.json {
        println!("{report}");
    } else {
        let ms = |v: Option<f64>| v.map_or_else(|| "–".to_owned(), |v| format!("≤ {v:.1} ms"));
        println!(
            "| measure | Polis (durable, PUBACK once committed) | bare rumqttc subscriber | ratio |"
        );
        println!("|---|---|---|---|");
        println!(
            "| readings/s from mosquitto, same messages, same run | {polis_rate:.0} | {bare_rate:.0} | {ratio:.2} |"
        );
        println!(
            "| arrival → PUBACK latency p50 / p99 (bucket bound, ≤ 25 % above) | {} / {} | – (auto-ack) | – |",
            ms(p50_ms),
            ms(p99_ms)
        );
        println!(
            "| CPU (cores): Polis process / mosquitto / publishers + bare subscriber | {:.2} (twin {:.2}, mqtt {:.2}, history {:.2}) | {:.2} / {:.2} | – |",
            server_used.cores,
            server_used.thread("polis-twin"),
            server_used.thread("polis-mqtt"),
            server_used.thread("polis-history"),
            broker_used.cores,
            load_used.cores,
        );
        println!(
            "\nPolis: {polis_ran_on}; mosquitto, publishers and the bare subscriber on the load core"
        );
    }
    Ok(ExitCode::SUCCESS)
}
