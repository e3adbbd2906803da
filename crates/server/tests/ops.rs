//! What an operator relies on: metrics that count exactly, readiness that
//! means the scene is served, a config checker, and a valid systemd unit.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use polis_net::{ClientOptions, Session};
use polis_protocol::{ClientToServer, Reading, ReadingBatch, Role, ServerToGateway};
use polis_server::{Config, Http, TokenEntry};

const GATEWAY_TOKEN: &str = "gateway-token-for-ops-tests";

/// `GET path` over plain HTTP/1.1; returns (status code, body).
fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: polis\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_owned();
    Ok((status, body))
}

/// The value of an unlabelled metric line `name value`.
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("metric {name} missing in:\n{text}"))
}

fn reading(sensor: &str, device_time_ms: i64, value: f64) -> Reading {
    Reading {
        sensor: sensor.into(),
        device_time_ms,
        value,
        quality: None,
    }
}

#[test]
fn metrics_count_exactly_what_was_pushed() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let config = Config {
        listen: "127.0.0.1:0".parse().expect("address"),
        data_dir: data_dir.path().to_owned(),
        http: Http {
            enabled: true,
            listen: "127.0.0.1:0".parse().expect("address"),
        },
        ngsi_ld: polis_server::NgsiLdConfig {
            enabled: false,
            ..polis_server::NgsiLdConfig::default()
        },
        tokens: vec![TokenEntry::with_secret(
            polis_protocol::Access::Gateway,
            None,
            GATEWAY_TOKEN,
        )],
        ..Config::default()
    };
    let tiny =
        polis_scene::Scene::from_json_str(include_str!("../../../scenes/tiny.json"), "tiny.json")
            .expect("tiny scene");
    let server = polis_server::start(&config, tiny).expect("starts");
    let http = server.http_addr().expect("http enabled");
    let started = server.started().clone();

    let deadline = Instant::now() + Duration::from_secs(10);
    while http_get(http, "/readyz").expect("readyz").0 != 200 {
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, before) = http_get(http, "/metrics").expect("metrics");
    assert_eq!(status, 200);
    assert_eq!(metric(&before, "polis_readings_received_total"), 0);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let options = ClientOptions::new(
        started.local_addr.to_string(),
        started.cert_path.clone(),
        GATEWAY_TOKEN,
        Role::Gateway,
    );
    runtime.block_on(async {
        let mut session = Session::connect(&options).await.expect("connects");
        let batches = [
            vec![
                reading("meter-b-west-1", 2_000, 1.0),
                reading("meter-b-west-1", 1_000, 2.0), // stale
                reading("air-west", 2_000, 3.0),
            ],
            vec![
                reading("air-west", 2_000, 3.0),       // duplicate
                reading("unknown-sensor", 2_000, 4.0), // refused
                reading("flow-pipe-1", 5_000, 5.0),
            ],
        ];
        for (seq, readings) in (1u64..).zip(batches) {
            session
                .send(&ClientToServer::Batch(ReadingBatch { seq, readings }))
                .await
                .expect("sent");
            let reply = session.recv::<ServerToGateway>().await.expect("ack");
            assert!(matches!(reply, ServerToGateway::Ack(_)), "{reply:?}");
        }

        // Counters are exported once per tick: wait for them, then check exactly.
        let deadline = Instant::now() + Duration::from_secs(10);
        let after = loop {
            let (_, text) = http_get(http, "/metrics").expect("metrics");
            if metric(&text, "polis_batches_total") == 2 {
                break text;
            }
            assert!(Instant::now() < deadline, "batches never counted:\n{text}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(metric(&after, "polis_readings_received_total"), 6);
        assert_eq!(metric(&after, "polis_readings_accepted_total"), 3);
        assert_eq!(metric(&after, "polis_readings_stale_total"), 1);
        assert_eq!(metric(&after, "polis_readings_duplicate_total"), 1);
        assert_eq!(metric(&after, "polis_readings_refused_total"), 1);
        assert!(
            after.contains("polis_connections{role=\"gateway\"} 1\n"),
            "{after}"
        );
        assert!(
            after.contains("polis_connections{role=\"viewer\"} 0\n"),
            "{after}"
        );
        assert!(metric(&after, "polis_tick_duration_seconds_count") > 0);
        assert_eq!(metric(&after, "polis_ready"), 1);
        session.close().await;
    });
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[test]
fn readyz_is_not_ready_until_the_scene_is_loaded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fifo = dir.path().join("scene.json");
    let made = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    let http: SocketAddr = format!("127.0.0.1:{}", free_port())
        .parse()
        .expect("address");
    let mut child = Command::new(env!("CARGO_BIN_EXE_polis"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--scene")
        .arg(&fifo)
        .env("POLIS_HTTP_LISTEN", http.to_string())
        .env("POLIS_NGSI_LD_ENABLED", "false")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve starts");

    // The server blocks reading the scene from the FIFO: alive, not ready.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (status, body) = loop {
        if let Ok(answer) = http_get(http, "/readyz") {
            break answer;
        }
        assert!(Instant::now() < deadline, "HTTP endpoint never came up");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!((status, body.as_str()), (503, "loading scene\n"));
    assert_eq!(http_get(http, "/healthz").expect("healthz").0, 200);

    std::fs::write(&fifo, include_str!("../../../scenes/tiny.json")).expect("scene written");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = http_get(http, "/readyz").expect("readyz");
        if status == 200 {
            assert_eq!(body, "ready\n");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never became ready: {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().expect("exits");
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
}

#[test]
fn config_check_explains_every_error_and_show_redacts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broken = dir.path().join("polis.toml");
    std::fs::write(&broken, "tick_hz = 20\n\n[limits]\ngateway_windw = 3\n").expect("written");
    let out = config_check(&broken);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("polis.toml:4:1:"), "{stderr}");
    assert!(stderr.contains("unknown field `gateway_windw`"), "{stderr}");

    std::fs::write(
        &broken,
        "tick_hz = 0\n[limits]\nviewer_frame_bytes = 10\n[[token]]\nrole = \"viewer\"\ntoken = \"short\"\n",
    )
    .expect("written");
    let out = config_check(&broken);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in ["`tick_hz`", "`token[0]`", "`limits.viewer_frame_bytes`"] {
        assert!(stderr.contains(expected), "{expected} missing in: {stderr}");
    }

    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "tick_hz = 10\n[[token]]\nrole = \"gateway\"\ntoken = \"a-very-secret-gateway-token\"\n",
    )
    .expect("written");
    let out = config_check(&good);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let shown = succeeded(
        Command::new(env!("CARGO_BIN_EXE_polis"))
            .args(["config", "show", "--config"])
            .arg(&good)
            .args(["--tick-hz", "25"])
            .env("POLIS_TICK_HZ", "15")
            .env("POLIS_DATA_DIR", "/srv/polis")
            .output(),
    );
    assert!(
        shown.contains("tick_hz = 25.0"),
        "flag beats environment: {shown}"
    );
    assert!(
        shown.contains("data_dir = \"/srv/polis\""),
        "environment beats default: {shown}"
    );
    assert!(!shown.contains("a-very-secret-gateway-token"), "{shown}");
    assert!(shown.contains("sha256 = "), "{shown}");
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let unit = include_str!("../../../deploy/polis.service");
    assert!(unit.contains("DynamicUser=yes") && unit.contains("ProtectSystem=strict"));
    // Verify the shipped unit as is, with only the binary path pointing at
    // the binary under test (verify checks that ExecStart is executable).
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("polis.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/polis", env!("CARGO_BIN_EXE_polis")),
    )
    .expect("written");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze is installed (Debian package systemd; .ci/run installs it)");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(Path::new(env!("CARGO_BIN_EXE_polis")).exists());
}

#[test]
fn token_new_prints_a_token_and_a_config_entry_that_grants_it() {
    let out = Command::new(env!("CARGO_BIN_EXE_polis"))
        .args([
            "token",
            "new",
            "--role",
            "gateway",
            "--scope",
            "meter-,pv-",
            "--name",
            "gw-1",
        ])
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let token = stdout
        .lines()
        .find_map(|l| l.strip_prefix("token: "))
        .expect("token line")
        .to_owned();
    assert!(
        !stdout.contains(&format!("= \"{token}\"")),
        "the entry holds no secret"
    );
    let entry: String = stdout
        .lines()
        .skip_while(|l| !l.starts_with("[[token]]"))
        .collect::<Vec<_>>()
        .join("\n");
    let config =
        Config::from_toml_str(&entry, std::path::Path::new("entry.toml")).expect("valid entry");
    let table = polis_server::TokenTable::from_entries(&config.tokens);
    let grant = polis_net::TokenDirectory::grant(&table, &token).expect("the token is granted");
    assert_eq!(grant.access, polis_protocol::Access::Gateway);
    assert_eq!(grant.name, "gw-1");
    assert_eq!(
        grant.scope.as_deref(),
        Some(&["meter-".to_owned(), "pv-".to_owned()][..])
    );
}

/// `polis config check FILE`.
fn config_check(file: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_polis"))
        .args(["config", "check"])
        .arg(file)
        .output()
        .expect("runs")
}

/// The standard output of a `polis` run that must succeed.
fn succeeded(output: std::io::Result<std::process::Output>) -> String {
    let out = output.expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn audit_reads_the_log_filtered_and_reports_torn_lines() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = [
        r#"{"time":"2026-12-03T10:00:00Z","who":"control-room","what":"subscribe","sensors":["meter-1","meter-2"]}"#,
        r#"{"time":"2026-12-03T11:00:00Z","who":"night-shift","what":"history","sensors":["meter-2"],"from":"2026-12-01T00:00:00Z","to":"2026-12-02T00:00:00Z"}"#,
        r#"{"time":"2026-12-03T12:00:00Z","who":"control-room","what":"time_travel","sensors":["meter-3"],"at":"2026-11-30T08:00:00Z"}"#,
    ];
    std::fs::write(dir.path().join("audit.log"), log.join("\n") + "\n").expect("log written");
    let audit = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_polis"))
            .arg("audit")
            .arg("--data-dir")
            .arg(dir.path())
            .args(args)
            .output()
            .expect("polis runs")
    };
    // Who saw meter-2: both entries naming it, as written.
    let out = audit(&["--sensor", "meter-2", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<&str> = std::str::from_utf8(&out.stdout)
        .expect("UTF-8")
        .lines()
        .collect();
    assert_eq!(lines, [log[0], log[1]]);
    // By who and time (half-open), as a table.
    let out = audit(&[
        "--who",
        "control-room",
        "--since",
        "2026-12-03T10:30:00Z",
        "--until",
        "2026-12-03T12:00:01Z",
    ]);
    assert!(out.status.success(), "{out:?}");
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(table.lines().count(), 2, "{table}");
    assert!(
        table.contains("time_travel") && table.contains("at 2026-11-30T08:00:00Z"),
        "{table}"
    );
    // A torn last line (a crash mid-write) is reported, the rest still read.
    let mut torn = log.join("\n") + "\n";
    torn.push_str(r#"{"time":"2026-12-03T13:00:00Z","who":"contr"#);
    std::fs::write(dir.path().join("audit.log"), torn).expect("log written");
    let out = audit(&["--json"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 4"), "{stderr}");
    // No log at all: a clear error.
    let empty = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_polis"))
        .args(["audit", "--data-dir"])
        .arg(empty.path())
        .output()
        .expect("polis runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the audit log"));
}

#[test]
fn resident_export_and_erase_answer_for_the_token_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let history_path = data.join("history.sqlite");
    {
        let history = polis_history::History::open(
            &history_path,
            &[("meter-b-west-1", true), ("meter-b-east-1", true)],
            polis_history::HistoryOptions::default(),
        )
        .expect("history opens");
        let key = |id: &str| history.key(id).expect("registered");
        let row = |sensor, device_time_ms, value| polis_history::Row {
            sensor,
            device_time_ms,
            value,
            quality: None,
        };
        history
            .writer()
            .append_blocking(vec![
                row(key("meter-b-west-1"), 1_700_000_000_000, 3.25),
                row(key("meter-b-west-1"), 1_700_000_060_000, 3.5),
                row(key("meter-b-east-1"), 1_700_000_000_000, 7.5),
            ])
            .expect("rows written");
        history.close().expect("closed");
    }
    let scene = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenes/tiny.json");
    let config = dir.path().join("polis.toml");
    std::fs::write(
        &config,
        format!(
            "scene = {:?}\ndata_dir = {:?}\n\n[[token]]\nname = \"home-west-1\"\nrole = \"resident\"\nsha256 = \"{}\"\nsensors = [\"meter-b-west-1\"]\n",
            scene.display().to_string(),
            data.display().to_string(),
            "ab".repeat(32)
        ),
    )
    .expect("config written");
    let polis = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_polis"))
            .arg("resident")
            .args(args)
            .arg("--config")
            .arg(&config)
            .output()
            .expect("polis runs")
    };

    let out = polis(&["export", "--resident", "home-west-1"]);
    assert!(out.status.success(), "{out:?}");
    let exported: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let sensors = exported["sensors"].as_array().expect("sensors");
    assert_eq!(sensors.len(), 1, "only the home's: {exported}");
    assert_eq!(sensors[0]["id"], "meter-b-west-1");
    let values: Vec<f64> = sensors[0]["readings"]
        .as_array()
        .expect("readings")
        .iter()
        .map(|r| r["value"].as_f64().expect("value"))
        .collect();
    assert_eq!(values, [3.25, 3.5]);
    assert_eq!(sensors[0]["readings"][0]["time"], "2023-11-14T22:13:20Z");

    let out = polis(&["export", "--resident", "home-west-1", "--csv"]);
    assert!(out.status.success(), "{out:?}");
    let csv = String::from_utf8_lossy(&out.stdout);
    assert!(
        csv.starts_with("record,sensor,time,value,quality,detail\r\n"),
        "{csv}"
    );
    assert!(
        csv.contains("reading,meter-b-west-1,2023-11-14T22:13:20Z,3.25,,kW\r\n"),
        "{csv}"
    );
    assert!(
        csv.contains("access,meter-b-west-1,"),
        "the first export is audited: {csv}"
    );

    // Erase what came before the second reading, then the rest.
    let out = polis(&[
        "erase",
        "--resident",
        "home-west-1",
        "--before",
        "2023-11-14T22:14:00Z",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("erased 1 recorded readings"),
        "{out:?}"
    );
    let out = polis(&["erase", "--resident", "home-west-1"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("erased 1 recorded readings"),
        "{out:?}"
    );
    let reader = polis_history::HistoryReader::open(&history_path).expect("reader");
    assert_eq!(reader.count("meter-b-west-1").expect("count"), 0);
    assert_eq!(
        reader.count("meter-b-east-1").expect("count"),
        1,
        "the neighbour's stays"
    );

    // A name that is no resident's is refused.
    let out = polis(&["erase", "--resident", "nobody"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no token named `nobody`"));
    let log = std::fs::read_to_string(data.join("audit.log")).expect("audit log");
    assert_eq!(log.matches("\"what\":\"export\"").count(), 2, "{log}");
    assert_eq!(log.matches("\"what\":\"erase\"").count(), 2, "{log}");
}
