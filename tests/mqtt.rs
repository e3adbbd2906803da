//! MQTT sources against a real mosquitto: SenML published with rumqttc
//! reaches a viewer exactly; refusals are counted by reason; a broker down
//! at start or restarted mid-stream neither stops the server serving
//! viewers nor loses a reading the broker acknowledged; TLS with a CA file
//! and a password from a file work, and a wrong password is refused.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use polis_e2e::mosquitto::{Mosquitto, Publisher, free_port, senml};
use polis_e2e::*;
use polis_server::{MqttSourceConfig, MqttSubscribeConfig, MqttVersion, PayloadFormat};

const WAIT: Duration = Duration::from_secs(20);

/// A source named `city` reading SenML from `city/#` on the broker at `port`.
fn source(port: u16, version: MqttVersion) -> MqttSourceConfig {
    MqttSourceConfig {
        name: "city".into(),
        url: format!("mqtt://127.0.0.1:{port}"),
        ca_file: None,
        client_cert_file: None,
        client_key_file: None,
        username: None,
        password_file: None,
        password_env: None,
        client_id: Some(format!("polis-test-{port}")),
        version,
        qos: 1,
        session_expiry_secs: 3600,
        token: None,
        max_in_flight: 16,
        max_payload_bytes: 64 * 1024,
        keep_alive_secs: 30,
        subscribe: vec![MqttSubscribeConfig {
            filter: "city/#".into(),
            format: PayloadFormat::Senml,
            topic: None,
            sensor_pointer: None,
            value_pointer: None,
            time_pointer: None,
            time_format: None,
            sensor_prefix: String::new(),
        }],
    }
}

fn mqtt_stats(server: &TestServer) -> Arc<polis_mqtt::SourceStats> {
    let sources = server
        .server
        .observed()
        .mqtt
        .get()
        .expect("the server runs its mqtt sources");
    Arc::clone(&sources[0])
}

/// Waits until the source is connected with every subscription granted.
async fn subscribed(stats: &polis_mqtt::SourceStats, subscriptions: u64) {
    let deadline = Instant::now() + WAIT;
    while !(stats.connected.load(Ordering::Relaxed)
        && stats.subscribed.load(Ordering::Relaxed) >= subscriptions)
    {
        assert!(
            Instant::now() < deadline,
            "source not subscribed within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn senml_through_mosquitto_reaches_a_viewer_exactly_and_refusals_are_counted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = Mosquitto::start(dir.path());
    let server = TestServer::start_configured(tiny(), |config| {
        config.mqtt = vec![source(broker.port, MqttVersion::V5)];
    });
    let stats = mqtt_stats(&server);
    subscribed(&stats, 1).await;
    let mut viewer = server.viewer(west(), vec![]).await;
    viewer.until(WAIT, |v| v.snapshots_complete == 1).await;

    let t0 = now_ms() - 60_000;
    let publisher = Publisher::connect(broker.port, "sensor-gateway-a").await;
    // One pack per sensor group, as devices publish them.
    publisher
        .publish(
            1,
            "city/meters",
            senml(&[
                ("meter-b-west-1", "kW", 3.25, t0),
                ("meter-b-west-2", "kW", 1.5, t0 + 1),
                ("pv-b-west-2", "kW", 0.75, t0 + 2),
            ]),
        )
        .await;
    publisher
        .publish(2, "city/air", senml(&[("air-west", "ug/m3", 12.5, t0 + 3)]))
        .await;
    // W is converted exactly into the sensor's kW.
    publisher
        .publish(
            3,
            "city/stop",
            senml(&[("count-stop-west", "count", 7.0, t0 + 4)]),
        )
        .await;
    publisher
        .publish(
            4,
            "city/meters",
            senml(&[("meter-b-west-2", "W", 2500.0, t0 + 5)]),
        )
        .await;
    // Refused: an unknown sensor, a unit that does not convert, a payload
    // that is not SenML. Each is acknowledged and counted, never retried.
    publisher
        .publish(5, "city/x", senml(&[("no-such-sensor", "kW", 1.0, t0)]))
        .await;
    publisher
        .publish(6, "city/air", senml(&[("air-west", "dB", 99.0, t0 + 6)]))
        .await;
    publisher
        .publish(7, "city/junk", b"{not senml".to_vec())
        .await;
    publisher.wait_acked(1..=7, WAIT).await;

    let want = [
        ("air-west", (t0 + 3, 12.5)),
        ("count-stop-west", (t0 + 4, 7.0)),
        ("meter-b-west-1", (t0, 3.25)),
        ("meter-b-west-2", (t0 + 5, 2.5)),
        ("pv-b-west-2", (t0 + 2, 0.75)),
    ];
    let want: std::collections::BTreeMap<String, (i64, f64)> =
        want.iter().map(|(id, v)| ((*id).to_owned(), *v)).collect();
    viewer.until(WAIT, |v| v.values == want).await;

    // The viewer sees values once applied; the source counts readings once
    // history has committed them.
    let deadline = Instant::now() + WAIT;
    while stats.messages.load(Ordering::Relaxed) < 7
        || stats.refused().len() < 3
        || stats.readings.load(Ordering::Relaxed) < 6
    {
        assert!(
            Instant::now() < deadline,
            "refusals not counted: {:?}",
            stats.refused()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(stats.readings.load(Ordering::Relaxed), 6);
    assert_eq!(stats.refused_for("unknown_sensor"), 1);
    assert_eq!(stats.refused_for("unit_mismatch"), 1);
    let refused: u64 = stats.refused().iter().map(|(_, n)| n).sum();
    assert_eq!(refused, 3, "{:?}", stats.refused());
    let text = polis_server::render_prometheus(server.server.observed());
    assert!(
        text.contains("polis_mqtt_connected{source=\"city\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("polis_mqtt_messages_total{source=\"city\"} 7\n"),
        "{text}"
    );
    assert!(
        text.contains("polis_mqtt_readings_total{source=\"city\"} 6\n"),
        "{text}"
    );
    assert!(
        text.contains("polis_mqtt_refused_total{source=\"city\",reason=\"unit_mismatch\"} 1\n"),
        "{text}"
    );
    // Every QoS 1 message's wait for its PUBACK is in the histogram (the
    // last refused one is released on the source's next turn).
    let deadline = Instant::now() + WAIT;
    loop {
        let text = polis_server::render_prometheus(server.server.observed());
        if text.contains("polis_mqtt_ack_duration_seconds_count{source=\"city\"} 7\n") {
            assert!(
                text.contains(
                    "polis_mqtt_ack_duration_seconds_bucket{le=\"+Inf\",source=\"city\"} 7\n"
                ) || text.contains(
                    "polis_mqtt_ack_duration_seconds_bucket{source=\"city\",le=\"+Inf\"} 7\n"
                ),
                "{text}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "no ack histogram: {text}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_down_at_start_and_restarted_mid_stream_loses_nothing_acknowledged() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    // MQTT 3.1.1 here (the other test speaks 5): the session lives on
    // the broker through its restart either way.
    let server = TestServer::start_configured(tiny(), |config| {
        config.mqtt = vec![source(port, MqttVersion::V3_1_1)];
    });
    let stats = mqtt_stats(&server);

    // No broker yet: viewers are served all the same, and a QUIC gateway's
    // readings reach them.
    let mut viewer = server.viewer(west(), vec![]).await;
    viewer.until(WAIT, |v| v.snapshots_complete == 1).await;
    let t0 = now_ms() - 600_000;
    let mut gateway = server.gateway().await;
    gateway.push(vec![reading("air-west", t0, 1.0)]).await;
    viewer
        .until(WAIT, |v| v.values.get("air-west") == Some(&(t0, 1.0)))
        .await;
    assert!(!stats.connected.load(Ordering::Relaxed));
    let text = polis_server::render_prometheus(server.server.observed());
    assert!(
        text.contains("polis_mqtt_connected{source=\"city\"} 0\n"),
        "{text}"
    );

    // The broker comes up on the configured port: the source connects.
    let mut broker = Mosquitto::start_on(dir.path(), port);
    subscribed(&stats, 1).await;

    // A stream of readings; the broker restarts right after acknowledging
    // the first half, while Polis may still be taking them.
    let per_message = |i: i64| ("meter-b-west-2", "kW", i as f64 + 0.5, t0 + 1 + i);
    let publisher = Publisher::connect(port, "sensor-gateway-c").await;
    for i in 0..100 {
        publisher
            .publish(i as u64, "city/meters", senml(&[per_message(i)]))
            .await;
    }
    publisher.wait_acked(0..100, WAIT).await;
    drop(publisher);
    broker.restart();
    let publisher = Publisher::connect(port, "sensor-gateway-c2").await;
    for i in 100..200 {
        publisher
            .publish(i as u64, "city/meters", senml(&[per_message(i)]))
            .await;
    }
    publisher.wait_acked(100..200, WAIT).await;

    // Everything the broker acknowledged is in history, once, and the
    // viewer holds the last.
    let last = per_message(199);
    viewer
        .until(WAIT, |v| {
            v.values.get("meter-b-west-2") == Some(&(last.3, last.2))
        })
        .await;
    let history = server.data_dir.path().join("history.sqlite");
    let deadline = Instant::now() + WAIT;
    loop {
        let reader = polis_history::HistoryReader::open(&history).expect("history opens");
        let rows = reader
            .readings("meter-b-west-2", t0, t0 + 1_000)
            .expect("readings");
        let times: Vec<i64> = rows.iter().map(|r| r.device_time_ms).collect();
        let want: Vec<i64> = (0..200).map(|i| t0 + 1 + i).collect();
        if times == want {
            for (row, i) in rows.iter().zip(0..) {
                assert_eq!(row.value, i as f64 + 0.5);
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "history holds {} of the 200 acknowledged readings",
            times.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(stats.connected.load(Ordering::Relaxed));
    // The viewer stayed connected through it all.
    gateway.push(vec![reading("air-west", t0 + 5, 2.0)]).await;
    viewer
        .until(WAIT, |v| v.values.get("air-west") == Some(&(t0 + 5, 2.0)))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtts_with_a_ca_file_and_a_password_from_a_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A certificate for localhost, trusted through `ca_file`.
    let identity = polis_net::load_or_create_identity(
        &dir.path().join("broker"),
        &["localhost".to_owned(), "127.0.0.1".to_owned()],
    )
    .expect("certificate");
    let tls_dir = dir.path().join("broker/tls");
    let passwords = dir.path().join("mosquitto.passwd");
    std::fs::write(&passwords, "").expect("password file");
    let status = std::process::Command::new("mosquitto_passwd")
        .args(["-b"])
        .arg(&passwords)
        .args(["polis", "s3cret-broker-password"])
        .status()
        .expect("mosquitto_passwd runs");
    assert!(status.success());
    let tls_port = free_port();
    let broker = Mosquitto::start_with(
        dir.path(),
        free_port(),
        &format!(
            "listener {tls_port} 127.0.0.1\n\
             certfile {cert}\n\
             keyfile {key}\n\
             allow_anonymous false\n\
             password_file {passwords}\n",
            cert = identity.cert_path.display(),
            key = tls_dir.join("key.pem").display(),
            passwords = passwords.display(),
        ),
    );
    let password_file = dir.path().join("polis-broker-password");
    std::fs::write(&password_file, "s3cret-broker-password\n").expect("password");
    let wrong_password_file = dir.path().join("wrong-password");
    std::fs::write(&wrong_password_file, "not-the-password\n").expect("password");
    let server = TestServer::start_configured(tiny(), |config| {
        let mut tls = source(tls_port, MqttVersion::V5);
        tls.url = format!("mqtts://localhost:{tls_port}");
        tls.ca_file = Some(identity.cert_path.clone());
        tls.username = Some("polis".into());
        tls.password_file = Some(password_file.clone());
        // The same source with a wrong password is refused by the broker.
        let mut wrong = tls.clone();
        wrong.name = "wrong-password".into();
        wrong.client_id = Some("polis-test-wrong".into());
        wrong.password_file = Some(wrong_password_file.clone());
        config.mqtt = vec![tls, wrong];
    });
    let stats = mqtt_stats(&server);
    subscribed(&stats, 1).await;

    let mut viewer = server.viewer(west(), vec![]).await;
    viewer.until(WAIT, |v| v.snapshots_complete == 1).await;
    let t0 = now_ms() - 30_000;
    let publisher = Publisher::connect(broker.port, "plain-device").await;
    publisher
        .publish(1, "city/air", senml(&[("air-west", "ug/m3", 4.5, t0)]))
        .await;
    publisher.wait_acked([1], WAIT).await;
    viewer
        .until(WAIT, |v| v.values.get("air-west") == Some(&(t0, 4.5)))
        .await;
    let sources = server.server.observed().mqtt.get().expect("sources");
    assert!(
        !sources[1].connected.load(Ordering::Relaxed),
        "a wrong password is refused"
    );
}

/// A subscription of `format` on `filter`.
fn subscription(filter: &str, format: PayloadFormat) -> MqttSubscribeConfig {
    MqttSubscribeConfig {
        filter: filter.into(),
        format,
        topic: None,
        sensor_pointer: None,
        value_pointer: None,
        time_pointer: None,
        time_format: None,
        sensor_prefix: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn senml_cbor_mapped_json_and_bare_numbers_through_mosquitto_reach_a_viewer() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = Mosquitto::start(dir.path());
    let server = TestServer::start_configured(tiny(), |config| {
        let mut source = source(broker.port, MqttVersion::V5);
        source.subscribe = vec![
            subscription("cbor/#", PayloadFormat::SenmlCbor),
            MqttSubscribeConfig {
                topic: Some("json/{sensor}".into()),
                value_pointer: Some("/reading/value".into()),
                time_pointer: Some("/reading/at".into()),
                time_format: Some(polis_server::TimeFormatName::Rfc3339),
                ..subscription("json/+", PayloadFormat::Json)
            },
            MqttSubscribeConfig {
                topic: Some("num/{sensor}".into()),
                ..subscription("num/+", PayloadFormat::Number)
            },
        ];
        config.mqtt = vec![source];
    });
    let stats = mqtt_stats(&server);
    subscribed(&stats, 3).await;
    let mut viewer = server.viewer(west(), vec![]).await;
    viewer.until(WAIT, |v| v.snapshots_complete == 1).await;

    // SenML CBOR (RFC 8428 §6: integer labels bn = -2, n = 0, u = 1,
    // v = 2, t = 6), a base name and two records, 1.5 kW and 750 W.
    let t0_ms = (now_ms() / 1000 - 60) * 1000;
    let t0_s = t0_ms / 1000;
    use ciborium::Value;
    let int = |i: i64| Value::Integer(i.into());
    let record = |fields: Vec<(i64, Value)>| {
        Value::Map(fields.into_iter().map(|(k, v)| (int(k), v)).collect())
    };
    let pack = Value::Array(vec![
        record(vec![
            (-2, Value::Text("meter-b-west-".into())),
            (0, Value::Text("1".into())),
            (1, Value::Text("kW".into())),
            (2, Value::Float(1.5)),
            (6, int(t0_s)),
        ]),
        record(vec![
            (0, Value::Text("2".into())),
            (1, Value::Text("W".into())),
            (2, Value::Float(750.0)),
            (6, int(t0_s + 1)),
        ]),
    ]);
    let mut cbor = Vec::new();
    ciborium::into_writer(&pack, &mut cbor).expect("CBOR");
    let publisher = Publisher::connect(broker.port, "gateway-formats").await;
    publisher.publish(1, "cbor/west", cbor).await;
    publisher
        .publish(
            2,
            "json/air-west",
            br#"{"reading":{"value":8.25,"at":"2026-12-01T10:00:00Z"}}"#.to_vec(),
        )
        .await;
    // A bare number: its time is when it arrives.
    let before_ms = now_ms();
    publisher
        .publish(3, "num/count-stop-west", b"12".to_vec())
        .await;
    publisher.wait_acked(1..=3, WAIT).await;
    let after_ms = now_ms();

    viewer
        .until(WAIT, |v| {
            v.values.get("meter-b-west-1") == Some(&(t0_ms, 1.5))
                && v.values.get("meter-b-west-2") == Some(&(t0_ms + 1_000, 0.75))
                && v.values.get("air-west") == Some(&(1_796_119_200_000, 8.25))
                && v.values
                    .get("count-stop-west")
                    .is_some_and(|(_, v)| *v == 12.0)
        })
        .await;
    let (arrived_ms, _) = viewer.values["count-stop-west"];
    assert!(
        (before_ms - 1_000..=after_ms + 1_000).contains(&arrived_ms),
        "a bare number is stamped with its arrival: {arrived_ms} not in {before_ms}..{after_ms}"
    );
    assert!(stats.refused().is_empty(), "{:?}", stats.refused());
}
