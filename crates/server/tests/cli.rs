//! The `polis` binary as a newcomer uses it: `polis serve` with no arguments,
//! then `polis push` and `polis watch` exactly as the README shows.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn polis() -> Command {
    Command::new(env!("CARGO_BIN_EXE_polis"))
}

fn run(command: &mut Command) -> Output {
    command.output().expect("polis runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A `polis serve` child process, interrupted when dropped.
struct Serve {
    child: Child,
}

impl Serve {
    /// Starts `polis serve ARGS` in `dir` and waits for its banner.
    fn start(dir: &Path, args: &[&str]) -> (Serve, Vec<String>) {
        let mut child = polis()
            .arg("serve")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("serve starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("banner line");
            let done = line.starts_with("public token");
            lines.push(line);
            if done {
                break;
            }
        }
        (Serve { child }, lines)
    }

    /// Sends SIGINT and waits for the exit status.
    fn interrupt(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "polis serve did not stop on SIGINT"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn token(dir: &Path, role: &str) -> String {
    std::fs::read_to_string(dir.join("polis-data").join(format!("{role}.token")))
        .expect("token file")
        .trim()
        .to_owned()
}

/// Sensors of the bundled scene as `polis scene inspect --json` lists them.
fn bundled_sensors() -> Vec<serde_json::Value> {
    let out = run(polis().args(["scene", "inspect", "--json"]));
    assert!(out.status.success());
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

fn position(sensor: &serde_json::Value) -> (f64, f64) {
    (
        sensor["lon"].as_f64().expect("lon"),
        sensor["lat"].as_f64().expect("lat"),
    )
}

#[test]
fn serve_with_no_arguments_then_push_and_watch_as_documented() {
    // Two sensors of the bundled scene far enough apart to watch one alone.
    let sensors = bundled_sensors();
    let find = |id: &str| {
        sensors
            .iter()
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("{id} in the bundled scene"))
    };
    let near = find("meter-osm-way-8035238");
    let far = find("pressure-epanet-junction-10");
    let (lon, lat) = position(near);
    let (far_lon, far_lat) = position(far);
    let bbox = [lon - 0.0003, lat - 0.0002, lon + 0.0003, lat + 0.0002];
    assert!(
        !(bbox[0]..=bbox[2]).contains(&far_lon) || !(bbox[1]..=bbox[3]).contains(&far_lat),
        "the far sensor must lie outside the watched box"
    );
    let in_box: Vec<String> = sensors
        .iter()
        .filter(|s| {
            let (x, y) = position(s);
            (bbox[0]..=bbox[2]).contains(&x) && (bbox[1]..=bbox[3]).contains(&y)
        })
        .map(|s| s["id"].as_str().expect("id").to_owned())
        .collect();

    let dir = tempfile::tempdir().expect("temp dir");
    let (serve, banner) = Serve::start(dir.path(), &[]);
    assert!(
        banner[0].starts_with("polis serving scene `helsinki`")
            && banner[0].ends_with("127.0.0.1:4433"),
        "{banner:?}"
    );
    let fingerprint = banner
        .iter()
        .find_map(|l| l.strip_prefix("certificate SHA-256: "))
        .expect("fingerprint line");
    assert_eq!(fingerprint.len(), 32 * 3 - 1, "32 hex pairs: {fingerprint}");

    let csv = dir.path().join("readings.csv");
    std::fs::write(
        &csv,
        "sensor,time,value\n\
         meter-osm-way-8035238,2026-11-01T08:00:00Z,2.5\n\
         meter-osm-way-8035238,2026-11-01T08:15:00Z,3.1\n\
         meter-osm-way-8035238,2026-11-01T08:05:00Z,9.9\n\
         pressure-epanet-junction-10,2026-11-01T08:00:00Z,41.5\n",
    )
    .expect("csv written");
    let gateway_token = token(dir.path(), "gateway");
    let pushed = push_as(dir.path(), &gateway_token, &csv);
    assert!(pushed.status.success(), "{}", text(&pushed.stderr));
    assert_eq!(
        text(&pushed.stdout).trim(),
        "accepted 3, stale 1, duplicate 0, refused 0"
    );

    // Every acknowledged reading is in history, the stale one too (it is a
    // real measurement, only not the latest).
    let history = run(polis().current_dir(dir.path()).args([
        "history",
        "--sensor",
        "meter-osm-way-8035238",
        "--csv",
    ]));
    assert!(history.status.success(), "{}", text(&history.stderr));
    assert_eq!(
        text(&history.stdout),
        "time,value\n2026-11-01T08:00:00Z,2.5\n2026-11-01T08:05:00Z,9.9\n2026-11-01T08:15:00Z,3.1\n"
    );
    let buckets = run(polis().current_dir(dir.path()).args([
        "history",
        "--sensor",
        "meter-osm-way-8035238",
        "--from",
        "2026-11-01T00:00:00Z",
        "--every",
        "15m",
        "--agg",
        "max",
        "--json",
    ]));
    assert!(buckets.status.success(), "{}", text(&buckets.stderr));
    assert_eq!(
        text(&buckets.stdout),
        "{\"sensor\":\"meter-osm-way-8035238\",\"start\":\"2026-11-01T08:00:00Z\",\"value\":9.9,\"count\":2}\n\
         {\"sensor\":\"meter-osm-way-8035238\",\"start\":\"2026-11-01T08:15:00Z\",\"value\":3.1,\"count\":1}\n"
    );

    let viewer_token = token(dir.path(), "operator");
    let bbox_arg = format!("{},{},{},{}", bbox[0], bbox[1], bbox[2], bbox[3]);
    let watched = run(polis().current_dir(dir.path()).args([
        "watch",
        "--cert",
        "polis-data/tls/cert.pem",
        "--token",
        &viewer_token,
        "--bbox",
        &bbox_arg,
        "--for",
        "1",
        "--json",
    ]));
    assert!(watched.status.success(), "{}", text(&watched.stderr));
    let lines: Vec<serde_json::Value> = text(&watched.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let seen: Vec<(String, String, f64)> = lines
        .iter()
        .map(|l| {
            (
                l["sensor"].as_str().expect("sensor").to_owned(),
                l["time"].as_str().expect("time").to_owned(),
                l["value"].as_f64().expect("value"),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [(
            "meter-osm-way-8035238".to_owned(),
            "2026-11-01T08:15:00Z".to_owned(),
            3.1
        )],
        "only the box's latest value (box holds {in_box:?})"
    );
    for line in &lines {
        let (x, y) = position(line);
        assert!((bbox[0]..=bbox[2]).contains(&x) && (bbox[1]..=bbox[3]).contains(&y));
    }

    // Refused readings make push fail, with the line and the reason.
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "sensor,time,value\nno-such-sensor,2026-03-01T08:00:00Z,1\n",
    )
    .expect("csv written");
    let refused = push_as(dir.path(), &gateway_token, &bad);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused.stderr).contains("line 2: sensor `no-such-sensor`: unknown sensor id"),
        "{}",
        text(&refused.stderr)
    );

    // A wrong token is refused with the reason.
    let wrong = run(polis()
        .current_dir(dir.path())
        .args([
            "push",
            "--cert",
            "polis-data/tls/cert.pem",
            "--token",
            "wrong-token-wrong-token",
        ])
        .arg(&csv));
    assert_eq!(wrong.status.code(), Some(2));
    assert!(
        text(&wrong.stderr).contains("unknown token"),
        "{}",
        text(&wrong.stderr)
    );

    let status = serve.interrupt();
    assert!(status.success(), "clean exit on SIGINT: {status:?}");
}

#[test]
fn scene_inspect_json_lists_every_sensor() {
    let tiny = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scenes/tiny.json");
    let out = run(polis().args(["scene", "inspect", "--json", tiny]));
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 12);
    let meter = lines
        .iter()
        .find(|l| l["id"] == "meter-b-west-1")
        .expect("meter listed");
    assert_eq!(meter["domain"], "energy");
    assert_eq!(meter["quantity"], "active_power");
    assert_eq!(meter["unit"], "kW");
    assert_eq!(meter["asset"], "b-west-1");
    assert!(meter["lon"].as_f64().is_some() && meter["lat"].as_f64().is_some());
    // The bundled scene lists all of its sensors too.
    assert_eq!(bundled_sensors().len(), 1_230);
}

#[test]
fn broken_inputs_are_refused_with_file_position_and_reason() {
    let dir = tempfile::tempdir().expect("temp dir");
    let scene = dir.path().join("broken.json");
    std::fs::write(
        &scene,
        "{\n  \"format\": \"polis-scene\",\n  \"version\": 1,\n  \"name\": \"x\",,\n}\n",
    )
    .expect("written");
    refused_with(
        polis().args(["scene", "inspect"]).arg(&scene),
        "broken.json:4:",
    );

    let config = dir.path().join("polis.toml");
    std::fs::write(&config, "tick_hz = 20\nlisten = \"not an address\"\n").expect("written");
    refused_with(
        polis().args(["serve", "--config"]).arg(&config),
        "polis.toml:2:",
    );

    let csv = dir.path().join("r.csv");
    std::fs::write(&csv, "sensor,time,value\na,yesterday,1\n").expect("written");
    refused_with(
        polis()
            .args(["push", "--cert", "none.pem", "--token", "x"])
            .arg(&csv),
        "r.csv:2: time `yesterday` is not RFC 3339",
    );

    // An endless line (`/dev/zero`) and a 10 MB line are refused with their
    // line number, without holding them in memory or connecting anywhere.
    refused_with(
        polis().args(["push", "--cert", "none.pem", "--token", "x", "/dev/zero"]),
        "/dev/zero:1: line is longer than 8192 bytes",
    );
    let mut long = String::from("sensor,time,value\na,2026-01-01T00:00:00Z,1\n");
    long.push_str(&"a".repeat(10 * 1024 * 1024));
    long.push_str(",2026-01-01T00:00:00Z,1\n");
    std::fs::write(&csv, long).expect("written");
    refused_with(
        polis()
            .args(["push", "--cert", "none.pem", "--token", "x"])
            .arg(&csv),
        "r.csv:3: line is longer than 8192 bytes",
    );
}

#[test]
fn every_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["scene", "--help"],
        vec!["scene", "inspect", "--help"],
        vec!["push", "--help"],
        vec!["watch", "--help"],
        vec!["history", "--help"],
        vec!["replay", "--help"],
        vec!["import", "osm", "--help"],
        vec!["import", "epanet", "--help"],
        vec!["scene", "sensors", "--help"],
        vec!["config", "check", "--help"],
        vec!["config", "show", "--help"],
    ] {
        let out = run(polis().args(&args));
        assert!(out.status.success(), "polis {args:?} --help");
        assert!(text(&out.stdout).contains("Usage: polis"), "{args:?}");
    }
}

/// Runs `command`, which must fail to run (exit code 2) saying `reason`.
fn refused_with(command: &mut Command, reason: &str) {
    let out = run(command);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains(reason), "{}", text(&out.stderr));
}

/// `polis push` of `csv`, run in `dir` as the README shows it.
fn push_as(dir: &Path, gateway_token: &str, csv: &Path) -> Output {
    run(polis()
        .current_dir(dir)
        .args([
            "push",
            "--cert",
            "polis-data/tls/cert.pem",
            "--token",
            gateway_token,
        ])
        .arg(csv))
}
