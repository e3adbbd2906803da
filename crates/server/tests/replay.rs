//! `polis serve --demo` (server + real-data replay) watched over Kamppi: the
//! values a planner sees behave like the real thing.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use polis_scene::{Geometry, Scene};

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn polyline_length_m(points: &[[f64; 2]]) -> f64 {
    points
        .windows(2)
        .map(|w| ((w[1][0] - w[0][0]).powi(2) + (w[1][1] - w[0][1]).powi(2)).sqrt())
        .sum()
}

/// (UTC hour of day, value) samples of one sensor.
type Series = Vec<(u8, f64)>;

#[test]
fn a_replayed_day_over_kamppi_looks_like_a_real_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_udp_port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_polis"))
        .current_dir(dir.path())
        .args(["serve", "--demo", "--listen", &format!("127.0.0.1:{port}")])
        // Six simulated hours per second, a round every 0.1 s: a day in 4 s.
        .args([
            "--speed",
            "21600",
            "--interval",
            "0.1",
            "--start",
            "2026-06-21T00:00:00Z",
        ])
        .env("POLIS_HTTP_ENABLED", "false")
        .env("POLIS_NGSI_LD_ENABLED", "false")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve starts");
    let stdout = server.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        if line.expect("banner").starts_with("demo:") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});

    let token =
        std::fs::read_to_string(dir.path().join("polis-data/operator.token")).expect("token");
    let watched = Command::new(env!("CARGO_BIN_EXE_polis"))
        .current_dir(dir.path())
        .args([
            "watch",
            "--server",
            &format!("127.0.0.1:{port}"),
            "--cert",
            "polis-data/tls/cert.pem",
        ])
        .args([
            "--token",
            token.trim(),
            "--bbox",
            "24.930,60.166,24.940,60.172",
            "--for",
            "6",
            "--json",
        ])
        .output()
        .expect("watch runs");
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let _ = server.wait();
    assert!(
        watched.status.success(),
        "{}",
        String::from_utf8_lossy(&watched.stderr)
    );

    let mut series: HashMap<String, Series> = HashMap::new();
    for line in String::from_utf8_lossy(&watched.stdout).lines() {
        let value: serde_json::Value = serde_json::from_str(line).expect("JSON line");
        let time = time::OffsetDateTime::parse(
            value["time"].as_str().expect("time"),
            &time::format_description::well_known::Rfc3339,
        )
        .expect("RFC 3339");
        series
            .entry(value["sensor"].as_str().expect("sensor").to_owned())
            .or_default()
            .push((time.hour(), value["value"].as_f64().expect("value")));
    }
    let scene = Scene::from_json_str(
        include_str!("../../../scenes/helsinki.json"),
        "helsinki.json",
    )
    .expect("bundled scene");
    let of = |quantity: &str| -> Vec<(&str, &Series)> {
        series
            .iter()
            .filter(|(id, _)| scene.sensor(id).is_some_and(|s| s.quantity == quantity))
            .map(|(id, s)| (id.as_str(), s))
            .collect()
    };

    // Meters: a household's night minimum is below its evening peak.
    let meters = of("active_power");
    assert!(meters.len() >= 20, "meters seen: {}", meters.len());
    let mut households = 0;
    for (id, samples) in &meters {
        assert!(
            samples.iter().all(|(_, kw)| (0.0..2_000.0).contains(kw)),
            "{id}: {samples:?}"
        );
        let sensor = scene.sensor(id).expect("sensor");
        let building = scene
            .asset(sensor.asset.as_deref().unwrap_or_default())
            .expect("building");
        if building.attributes.get("usage").map(String::as_str) != Some("residential") {
            continue;
        }
        let night = samples
            .iter()
            .filter(|(h, _)| (1..=4).contains(h))
            .map(|s| s.1);
        let evening = samples
            .iter()
            .filter(|(h, _)| (17..=20).contains(h))
            .map(|s| s.1);
        let (Some(night_min), Some(evening_max)) =
            (night.reduce(f64::min), evening.reduce(f64::max))
        else {
            continue;
        };
        assert!(
            night_min < evening_max,
            "{id}: night {night_min} kW vs evening {evening_max} kW"
        );
        households += 1;
    }
    assert!(
        households >= 1,
        "no residential meter with a whole day seen"
    );

    // PV: zero at night, producing at midday.
    let pv = of("pv_power");
    assert!(!pv.is_empty());
    for (id, samples) in &pv {
        for (hour, kw) in samples.iter().filter(|(h, _)| *h == 23 || *h <= 1) {
            assert_eq!(*kw, 0.0, "{id} at {hour}:00 UTC");
        }
        let midday = samples
            .iter()
            .filter(|(h, _)| (10..=13).contains(h))
            .map(|s| s.1);
        assert!(
            midday.reduce(f64::max).is_some_and(|kw| kw > 0.0),
            "{id}: {samples:?}"
        );
    }

    // Water: flows at pipe velocities (Net3's 99-inch dummy links carry
    // thousands of l/s), pressures of a city network.
    let flows = of("flow");
    let pressures = of("pressure");
    assert!(!flows.is_empty() && !pressures.is_empty());
    for (id, samples) in &flows {
        let sensor = scene.sensor(id).expect("sensor");
        let pipe = scene
            .asset(sensor.asset.as_deref().unwrap_or_default())
            .expect("pipe");
        let diameter_m = pipe
            .attributes
            .get("diameter_mm")
            .and_then(|d| d.parse::<f64>().ok())
            .map_or(0.15, |mm| mm / 1_000.0);
        // At most 3 m/s through the pipe's cross-section.
        let max_l_s = 3.0 * std::f64::consts::PI * (diameter_m / 2.0).powi(2) * 1_000.0;
        assert!(
            samples.iter().all(|(_, v)| (0.0..=max_l_s).contains(v)),
            "{id}: {samples:?}"
        );
    }
    for (id, samples) in &pressures {
        assert!(
            samples.iter().all(|(_, v)| (20.0..70.0).contains(v)),
            "{id}: {samples:?}"
        );
    }

    // Vehicles: every position lies on its route, and they move.
    let vehicles = of("distance_along_route");
    assert!(!vehicles.is_empty());
    let mut moved = 0;
    for (id, samples) in &vehicles {
        let sensor = scene.sensor(id).expect("sensor");
        let route = scene
            .asset(sensor.asset.as_deref().unwrap_or_default())
            .expect("route");
        let Geometry::Line(points) = &route.geometry else {
            panic!("{id}: route without a line");
        };
        let length_m = polyline_length_m(points);
        for (_, distance_m) in samples.iter() {
            assert!(
                (0.0..=length_m + 1e-6).contains(distance_m),
                "{id}: {distance_m} m is off its {length_m} m route"
            );
        }
        if samples.windows(2).any(|w| w[0].1 != w[1].1) {
            moved += 1;
        }
    }
    assert!(moved > 0, "no vehicle moved");
}
