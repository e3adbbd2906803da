//! Durability: a server killed with SIGKILL while a gateway pushes loses
//! nothing it acknowledged; the gateway resumes by itself; nothing is stored
//! twice; the twin restarts from history.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use polis_history::HistoryReader;
use polis_scene::Scene;

fn polis() -> Command {
    Command::new(env!("CARGO_BIN_EXE_polis"))
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Starts `polis serve` and waits until it listens.
fn serve(data: &Path, port: u16) -> Child {
    let mut child = polis()
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--tick-hz",
            "50",
            "--data-dir",
        ])
        .arg(data)
        .args([
            "--scene",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../scenes/tiny.json"),
        ])
        .env("POLIS_HTTP_ENABLED", "false")
        .env("POLIS_NGSI_LD_ENABLED", "false")
        // The readings are from January; keep personal ones past 30 days.
        .env("POLIS_HISTORY_PERSONAL_RAW_MAX_AGE_HOURS", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let banner = lines.next().expect("banner").expect("banner line");
    assert!(banner.starts_with("polis serving"), "{banner}");
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    child
}

fn kill(child: &mut Child, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status();
    let _ = child.wait();
}

struct Readings {
    csv: PathBuf,
    ids: Vec<String>,
    per_sensor: i64,
    first_ms: i64,
}

/// value of sensor `s` at step `i`: distinct per reading, so a wrong or
/// doubled row would show.
fn value_of(sensor: usize, step: i64) -> f64 {
    sensor as f64 * 1_000_000.0 + step as f64
}

fn write_readings(dir: &Path, per_sensor: i64) -> Readings {
    let scene = Scene::from_json_str(include_str!("../../../scenes/tiny.json"), "tiny.json")
        .expect("tiny loads");
    let ids: Vec<String> = scene.sensors.iter().map(|s| s.id.clone()).collect();
    let first_ms = 1_767_225_600_000; // 2026-01-01T00:00:00Z
    let csv = dir.join("readings.csv");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&csv).expect("csv"));
    writeln!(out, "sensor,time,value").expect("write");
    for step in 0..per_sensor {
        let time = time::OffsetDateTime::from_unix_timestamp_nanos(
            i128::from(first_ms + step * 1_000) * 1_000_000,
        )
        .expect("time")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format");
        for (sensor, id) in ids.iter().enumerate() {
            writeln!(out, "{id},{time},{}", value_of(sensor, step)).expect("write");
        }
    }
    out.flush().expect("flush");
    Readings {
        csv,
        ids,
        per_sensor,
        first_ms,
    }
}

#[test]
fn acknowledged_readings_survive_sigkill_and_the_gateway_resumes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let port = free_udp_port();
    let readings = write_readings(dir.path(), 60_000);
    let total = readings.per_sensor * readings.ids.len() as i64;

    let mut server = serve(&data, port);
    let token = std::fs::read_to_string(data.join("gateway.token")).expect("token");
    let push = polis()
        .args([
            "push",
            "--server",
            &format!("127.0.0.1:{port}"),
            "--batch",
            "2000",
            "--reconnect-for",
            "60",
            "--cert",
        ])
        .arg(data.join("tls/cert.pem"))
        .args(["--token", token.trim()])
        .arg(&readings.csv)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("push starts");
    let mut push = push;

    let kills = 3;
    for round in 0..kills {
        std::thread::sleep(Duration::from_millis(300 + 100 * round));
        assert!(
            push.try_wait().expect("push status").is_none(),
            "push finished before kill {round}: make the test's CSV larger"
        );
        kill(&mut server, "-KILL");
        std::thread::sleep(Duration::from_millis(200));
        server = serve(&data, port);
    }

    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(status) = push.try_wait().expect("push status") {
            break status;
        }
        assert!(Instant::now() < deadline, "push did not finish");
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = push.wait_with_output().expect("push output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(status.success(), "push failed: {stdout}\n{stderr}");
    assert!(
        stderr.contains("reconnected"),
        "the gateway resumed by itself: {stderr}"
    );
    let counts: Vec<i64> = stdout
        .trim()
        .split(", ")
        .map(|part| {
            part.rsplit(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .expect("count")
        })
        .collect();
    let [accepted, stale, duplicate, refused] = counts[..] else {
        panic!("unexpected summary: {stdout}");
    };
    assert_eq!(refused, 0, "{stdout}");
    assert_eq!(
        accepted + stale + duplicate,
        total,
        "every reading acknowledged once: {stdout}"
    );
    assert!(duplicate > 0 || accepted == total, "{stdout}");

    // Stop cleanly, then read history as an analyst would.
    kill(&mut server, "-TERM");
    let reader = HistoryReader::open(&data.join("history.sqlite")).expect("history opens");
    for (sensor, id) in readings.ids.iter().enumerate() {
        let stored = reader.readings(id, i64::MIN, i64::MAX).expect("readings");
        assert_eq!(
            stored.len() as i64,
            readings.per_sensor,
            "{id}: every acknowledged reading is stored, exactly once"
        );
        for (step, row) in (0..).zip(&stored) {
            assert_eq!(row.device_time_ms, readings.first_ms + step * 1_000);
            assert_eq!(row.value, value_of(sensor, step));
        }
    }

    // After a restart the twin starts from history: a viewer's snapshot holds
    // each sensor's last value.
    let mut server = serve(&data, port);
    let viewer_token = std::fs::read_to_string(data.join("operator.token")).expect("token");
    let watched = polis()
        .args([
            "watch",
            "--server",
            &format!("127.0.0.1:{port}"),
            "--bbox",
            "24.9,60.16,24.96,60.18",
            "--for",
            "1",
            "--json",
            "--cert",
        ])
        .arg(data.join("tls/cert.pem"))
        .args(["--token", viewer_token.trim()])
        .output()
        .expect("watch runs");
    kill(&mut server, "-TERM");
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&watched.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(lines.len(), readings.ids.len(), "{lines:?}");
    let last_step = readings.per_sensor - 1;
    for line in &lines {
        let id = line["sensor"].as_str().expect("sensor");
        let sensor = readings
            .ids
            .iter()
            .position(|s| s == id)
            .expect("known sensor");
        assert_eq!(
            line["value"].as_f64(),
            Some(value_of(sensor, last_step)),
            "{line}"
        );
    }
}

#[test]
fn the_replay_gateway_resumes_after_a_server_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let port = free_udp_port();
    let mut server = serve(&data, port);
    let token = std::fs::read_to_string(data.join("gateway.token")).expect("token");
    let tiny = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scenes/tiny.json");
    let replay = polis()
        .args([
            "replay",
            "--server",
            &format!("127.0.0.1:{port}"),
            "--scene",
            tiny,
        ])
        .args([
            "--speed",
            "600",
            "--interval",
            "0.1",
            "--for",
            "12",
            "--start",
            "2026-01-01T00:00:00Z",
        ])
        .arg("--cert")
        .arg(data.join("tls/cert.pem"))
        .args(["--token", token.trim()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("replay starts");
    std::thread::sleep(Duration::from_millis(1_500));
    kill(&mut server, "-KILL");
    std::thread::sleep(Duration::from_millis(300));
    let mut server = serve(&data, port);
    let output = replay.wait_with_output().expect("replay ends");
    kill(&mut server, "-TERM");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "replay failed: {stderr}");
    assert!(stderr.contains("reconnecting"), "{stderr}");
    // Readings from after the restart were recorded: simulated time runs
    // 600× from the start, so the last ones are over 30 simulated minutes in.
    let reader = HistoryReader::open(&data.join("history.sqlite")).expect("history");
    let last = reader
        .readings("flow-pipe-1", i64::MIN, i64::MAX)
        .expect("readings")
        .last()
        .map(|r| r.device_time_ms)
        .expect("flow recorded");
    let start_ms = 1_767_225_600_000;
    assert!(
        last - start_ms > 30 * 60_000,
        "last reading {} s in; replay said: {stderr}",
        (last - start_ms) / 1_000
    );
}
