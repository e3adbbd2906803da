//! The `polis` binary with an MQTT source against a real mosquitto: killed
//! with SIGKILL again and again while a device publishes at QoS 1, it
//! loses no reading the broker acknowledged and stores none twice; and the
//! README's "Connecting real sensors" section, followed literally with
//! `mosquitto_pub`, shows the value in `polis watch`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[allow(dead_code, unreachable_pub)]
#[path = "../../../tests/mosquitto.rs"]
mod mosquitto;

use mosquitto::{Mosquitto, Publisher, free_port, senml};

const POLIS: &str = env!("CARGO_BIN_EXE_polis");

/// A `polis serve` child process.
struct Polis {
    child: Child,
}

impl Polis {
    /// Starts `polis serve --config CONFIG` in `cwd` and waits until it
    /// says it serves.
    fn serve(cwd: &Path, config: &Path) -> Polis {
        let mut child = Command::new(POLIS)
            .args(["serve", "--config"])
            .arg(config)
            .current_dir(cwd)
            .env("RUST_LOG", "warn,polis_mqtt=info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("polis starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("polis serving") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(60))
            .expect("polis serves within 60 s");
        Polis { child }
    }

    /// SIGKILL: no chance to flush or acknowledge anything.
    fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    /// SIGTERM, and the clean exit it leads to.
    fn stop(mut self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "polis exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "polis did not stop within 30 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Polis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Every (time, value) history holds for `sensor`, sorted by time.
fn history_of(data_dir: &Path, sensor: &str) -> Vec<(i64, f64)> {
    let Ok(reader) = polis_history::HistoryReader::open(&data_dir.join("history.sqlite")) else {
        return Vec::new();
    };
    reader
        .readings(sensor, i64::MIN, i64::MAX)
        .map(|rows| rows.iter().map(|r| (r.device_time_ms, r.value)).collect())
        .unwrap_or_default()
}

/// Sensors of the tiny scene measured in kW.
const SENSORS: [&str; 4] = [
    "meter-b-west-1",
    "meter-b-west-2",
    "pv-b-west-2",
    "meter-b-east-2",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_again_and_again_polis_keeps_every_acknowledged_reading_exactly_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = Mosquitto::start(dir.path());
    let data_dir = dir.path().join("data");
    let config = dir.path().join("polis.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{udp}\"\n\
             data_dir = \"{data}\"\n\
             scene = \"{scene}\"\n\
             [http]\nenabled = false\n\
             [ngsi_ld]\nenabled = false\n\
             [[mqtt]]\nname = \"city\"\nurl = \"{url}\"\nversion = 5\nmax_in_flight = 16\n\
             [[mqtt.subscribe]]\nfilter = \"city/#\"\nformat = \"senml\"\n",
            udp = free_port(),
            data = data_dir.display(),
            scene = repo().join("scenes/tiny.json").display(),
            url = broker.url(),
        ),
    )
    .expect("config written");
    let mut polis = Polis::serve(dir.path(), &config);

    // The first start creates the session: until Polis has subscribed the
    // broker keeps nothing for it, so a probe goes again until it is stored.
    let probe_ms = now_ms() - 3_600_000;
    let publisher = Publisher::connect(broker.port, "device-b").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    'probe: loop {
        publisher
            .publish(
                0,
                "city/probe",
                senml(&[("air-west", "ug/m3", 1.0, probe_ms)]),
            )
            .await;
        for _ in 0..20 {
            if !history_of(&data_dir, "air-west").is_empty() {
                break 'probe;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(Instant::now() < deadline, "the probe never reached history");
    }

    // A device publishes its readings (its own ids and device times) while
    // Polis is killed four times, each at a different point of the stream.
    const MESSAGES: u64 = 800;
    let t0 = probe_ms + 1_000;
    let reading_of = move |id: u64| {
        let sensor = SENSORS[(id % 4) as usize];
        (sensor, "kW", id as f64 * 0.25, t0 + id as i64)
    };
    let publishing = tokio::spawn(async move {
        for id in 1..=MESSAGES {
            let (sensor, unit, value, time) = reading_of(id);
            publisher
                .publish(id, "city/meters", senml(&[(sensor, unit, value, time)]))
                .await;
            // About 1.5 s of stream, so the kills below land inside it.
            if id % 4 == 0 {
                tokio::time::sleep(Duration::from_millis(7)).await;
            }
        }
        publisher
            .wait_acked(1..=MESSAGES, Duration::from_secs(60))
            .await;
        publisher
    });
    for pause_ms in [150, 400, 250, 600] {
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        polis.kill();
        polis = Polis::serve(dir.path(), &config);
    }
    let publisher = publishing.await.expect("publisher");
    let acked = publisher.acked();
    assert!(
        acked.len() as u64 >= MESSAGES,
        "the broker acknowledged every publish"
    );

    // After recovery every acknowledged reading is in history, once.
    let mut want: BTreeMap<&str, Vec<(i64, f64)>> = BTreeMap::new();
    for id in acked.iter().copied().filter(|id| *id > 0) {
        let (sensor, _, value, time) = reading_of(id);
        want.entry(sensor).or_default().push((time, value));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let complete = want
            .iter()
            .all(|(sensor, readings)| history_of(&data_dir, sensor).len() >= readings.len());
        if complete {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "history misses acknowledged readings: {:?}",
            want.iter()
                .map(|(s, r)| (*s, history_of(&data_dir, s).len(), r.len()))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    polis.stop();
    for (sensor, readings) in &want {
        assert_eq!(
            &history_of(&data_dir, sensor),
            readings,
            "{sensor}: exactly the acknowledged readings, each once"
        );
    }
}

/// The fenced block of `language` that follows `marker` in `text`.
fn block_after<'a>(text: &'a str, marker: &str, language: &str) -> &'a str {
    let start = text.find(marker).expect("README has the section");
    let fence = format!("```{language}\n");
    let from = start + text[start..].find(&fence).expect("block") + fence.len();
    let to = from + text[from..].find("```").expect("block end");
    &text[from..to]
}

#[test]
fn the_readme_section_on_real_sensors_works_as_written() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README");
    let section = "## Connecting real sensors";
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = Mosquitto::start(dir.path());
    let port = broker.port.to_string();
    // The README's broker listens on 1883 and Polis on 4433; here both are
    // on free ports (given to `polis watch` with `--server`), so nothing
    // else running on this machine is disturbed.
    let toml = block_after(&readme, section, "toml").replace("1883", &port);
    let polis_port = free_port();
    std::fs::write(
        dir.path().join("polis.toml"),
        format!(
            "listen = \"127.0.0.1:{polis_port}\"\n[http]\nlisten = \"127.0.0.1:{}\"\n\
             [ngsi_ld]\nenabled = false\n\n{toml}",
            free_port()
        ),
    )
    .expect("polis.toml");
    let commands: Vec<String> = block_after(&readme, section, "sh")
        .lines()
        .map(|line| {
            line.replace("1883", &port).replace(
                "polis watch ",
                &format!("polis watch --server 127.0.0.1:{polis_port} "),
            )
        })
        .collect();
    let [serve, publish, watch] = &commands[..] else {
        panic!("the section's commands changed: {commands:?}");
    };
    assert!(
        serve.starts_with("polis serve --config polis.toml"),
        "{serve}"
    );
    assert!(publish.starts_with("mosquitto_pub "), "{publish}");
    assert!(watch.starts_with("polis watch "), "{watch}");

    let _polis = Polis::serve(dir.path(), Path::new("polis.toml"));
    let path = format!(
        "{}:{}",
        Path::new(POLIS).parent().expect("bin dir").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let sh = |command: &str| {
        Command::new("sh")
            .arg("-c")
            .arg(command)
            .current_dir(dir.path())
            .env("PATH", &path)
            .stderr(Stdio::inherit())
            .output()
            .expect("sh runs")
    };
    let published = sh(publish);
    assert!(published.status.success(), "{publish}: {published:?}");
    let watched = sh(watch);
    assert!(watched.status.success(), "{watch}: {watched:?}");
    let shown = String::from_utf8_lossy(&watched.stdout);
    assert!(
        shown
            .lines()
            .any(|line| line.contains("meter-osm-way-8035238") && line.contains(" 2.75 kW")),
        "`polis watch` did not show the published value:\n{shown}"
    );
}

#[test]
fn polis_replay_drives_the_demo_through_a_broker() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = Mosquitto::start(dir.path());
    let data_dir = dir.path().join("data");
    let config = dir.path().join("polis.toml");
    let scene = repo().join("scenes/tiny.json");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{udp}\"\n\
             data_dir = \"{data}\"\n\
             scene = \"{scene}\"\n\
             [http]\nenabled = false\n\
             [ngsi_ld]\nenabled = false\n\
             [[mqtt]]\nname = \"demo\"\nurl = \"{url}\"\n\
             [[mqtt.subscribe]]\nfilter = \"polis/#\"\nformat = \"json\"\n\
             sensor_pointer = \"/sensor\"\nvalue_pointer = \"/value\"\n\
             time_pointer = \"/time\"\ntime_format = \"rfc3339\"\n",
            udp = free_port(),
            data = data_dir.display(),
            scene = scene.display(),
            url = broker.url(),
        ),
    )
    .expect("config written");
    let polis = Polis::serve(dir.path(), &config);
    // Rounds every 0.2 s for 3 s: those after Polis subscribed are read.
    let replay = Command::new(POLIS)
        .args([
            "replay",
            "--mqtt",
            &broker.url(),
            "--format",
            "json",
            "--scene",
        ])
        .arg(&scene)
        .args(["--for", "3", "--interval", "0.2", "--speed", "60"])
        .output()
        .expect("polis replay runs");
    let printed = String::from_utf8_lossy(&replay.stdout);
    assert!(replay.status.success(), "{replay:?}");
    let totals = printed.lines().last().unwrap_or_default();
    let numbers: Vec<u64> = totals
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    let [rounds, published, acknowledged] = numbers[..] else {
        panic!("unexpected summary: {printed}");
    };
    assert!(rounds >= 5 && published > 0, "{printed}");
    assert_eq!(published, acknowledged, "{printed}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while history_of(&data_dir, "meter-b-west-2").len() < 3 {
        assert!(
            Instant::now() < deadline,
            "the replayed readings did not reach Polis' history"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    polis.stop();
}
