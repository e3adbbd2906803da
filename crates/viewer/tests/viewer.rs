//! The viewer as a planner runs it, under Xvfb with Mesa's software
//! renderer: against a live `polis serve --demo` it draws the city (checked
//! by pixels), colours change as values change, and it survives a server
//! restart, a wrong address and a refused token without panicking.
//!
//! Needs `xvfb-run` (Debian package xvfb) and a Vulkan or GL driver (Mesa:
//! mesa-vulkan-drivers, libgl1-mesa-dri), which `.ci/run` installs, and the
//! `polis` binary next to `polis-viewer` (built by the README's test command
//! before this crate's tests).

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use image::RgbImage;

/// A directory of its own under the system's temporary directory, removed
/// when dropped. (No dev-dependencies here: one can change the features
/// Cargo resolves for Bevy's dependencies and rebuild the render stack for
/// the tests alone.)
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "polis-viewer-{name}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path).expect("temp dir");
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One rendering viewer at a time: two cores share one software renderer.
static SERIAL: Mutex<()> = Mutex::new(());

fn polis_binary() -> PathBuf {
    let viewer = PathBuf::from(env!("CARGO_BIN_EXE_polis-viewer"));
    let polis = viewer.with_file_name("polis");
    assert!(
        polis.exists(),
        "{} is missing: build the server first (`cargo build -p polis-server`)",
        polis.display()
    );
    polis
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A `polis serve` child, killed when dropped.
struct Server {
    child: Child,
}

impl Server {
    fn start(data_dir: &Path, port: u16) -> Server {
        let child = Command::new(polis_binary())
            .args(["serve", "--demo", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(data_dir)
            .env("POLIS_HTTP_ENABLED", "false")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("polis serve starts");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !(data_dir.join("operator.token").exists() && data_dir.join("tls/cert.pem").exists())
        {
            assert!(
                Instant::now() < deadline,
                "polis serve wrote no token and certificate"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // The banner files exist before the endpoint listens; give it a moment.
        std::thread::sleep(Duration::from_millis(500));
        Server { child }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A viewer under Xvfb whose output lines are collected.
struct Viewer {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Viewer {
    fn start(args: &[String]) -> Viewer {
        let mut child = Command::new("xvfb-run")
            .args(["-a", "-s", "-screen 0 1280x720x24"])
            .arg(env!("CARGO_BIN_EXE_polis-viewer"))
            .args(args)
            .env("RUST_LOG", "info,wgpu=error,naga=warn")
            .env_remove("POLIS_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("xvfb-run starts (install the Debian package xvfb)");
        let lines = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let lines = Arc::clone(&lines);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    eprintln!("viewer| {line}");
                    lines.lock().expect("lines").push(line);
                }
            });
        }
        Viewer { child, lines }
    }

    fn count(&self, needle: &str) -> usize {
        let lines = self.lines.lock().expect("lines");
        lines.iter().filter(|l| l.contains(needle)).count()
    }

    fn wait_for(&self, needle: &str, times: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.count(needle) < times {
            assert!(
                Instant::now() < deadline,
                "viewer did not print `{needle}` {times}× within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_exit(mut self, timeout: Duration) -> (std::process::ExitStatus, Vec<String>) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                // Let the reader threads drain.
                std::thread::sleep(Duration::from_millis(200));
                let lines = self.lines.lock().expect("lines").clone();
                return (status, lines);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("viewer still running after {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn args(port: u16, data_dir: &Path, token: &str, shots: &[(&Path, u32)]) -> Vec<String> {
    let mut args = vec![
        "--server".to_owned(),
        format!("127.0.0.1:{port}"),
        "--cert".to_owned(),
        data_dir.join("tls/cert.pem").display().to_string(),
        "--token".to_owned(),
        token.to_owned(),
    ];
    for (path, after) in shots {
        args.push("--screenshot".into());
        args.push(path.display().to_string());
        args.push("--after".into());
        args.push(after.to_string());
    }
    args
}

fn token(data_dir: &Path, role: &str) -> String {
    std::fs::read_to_string(data_dir.join(format!("{role}.token")))
        .expect("token file")
        .trim()
        .to_owned()
}

fn load(path: &Path) -> RgbImage {
    image::open(path)
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
        .to_rgb8()
}

/// The 3D view without the overlay: the help line and legend at the top,
/// the status line at the bottom, the panel at the left.
fn scene_pixels(image: &RgbImage) -> impl Iterator<Item = (u32, u32, [u8; 3])> + '_ {
    let (w, h) = image.dimensions();
    image
        .enumerate_pixels()
        .filter(move |(x, y, _)| *y > 110 && *y < h - 60 && *x > 400 && *x < w - 20)
        .map(|(x, y, p)| (x, y, p.0))
}

fn distance(a: [u8; 3], b: [u8; 3]) -> u32 {
    (0..3).map(|k| u32::from(a[k].abs_diff(b[k]))).sum()
}

/// The viewer's clear colour (its ground), sRGB 8 bit.
const GROUND: [u8; 3] = [38, 43, 43];

/// Fraction of the view that is neither sky nor bare ground.
fn city_fraction(image: &RgbImage) -> f64 {
    let sky = GROUND;
    let (mut city, mut all) = (0usize, 0usize);
    // The ground's shade: the most common colour of the bottom rows.
    let mut counts = std::collections::HashMap::new();
    for (_, _, p) in scene_pixels(image) {
        *counts.entry(p).or_insert(0usize) += 1;
    }
    let ground = counts
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(p, _)| *p)
        .unwrap_or(sky);
    for (_, _, p) in scene_pixels(image) {
        all += 1;
        if distance(p, sky) > 30 && distance(p, ground) > 30 {
            city += 1;
        }
    }
    city as f64 / all.max(1) as f64
}

/// Distinct strongly coloured (saturated) shades in the view: assets drawn in
/// the palette's colours rather than greys.
fn saturated_fraction(image: &RgbImage) -> f64 {
    let (mut coloured, mut all) = (0usize, 0usize);
    for (_, _, [r, g, b]) in scene_pixels(image) {
        all += 1;
        let (max, min) = (r.max(g).max(b), r.min(g).min(b));
        if max - min > 50 {
            coloured += 1;
        }
    }
    coloured as f64 / all.max(1) as f64
}

#[test]
fn the_viewer_shows_the_live_city_and_survives_a_server_restart() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = TempDir::new("restart");
    let data_dir = dir.path().join("polis-data");
    let port = free_udp_port();
    let server = Server::start(&data_dir, port);
    let (first, second, third) = (
        dir.path().join("first.png"),
        dir.path().join("second.png"),
        dir.path().join("third.png"),
    );
    let viewer = Viewer::start(&args(
        port,
        &data_dir,
        &token(&data_dir, "operator"),
        &[(&first, 30), (&second, 42), (&third, 75)],
    ));
    viewer.wait_for("connected", 1, Duration::from_secs(60));
    viewer.wait_for("screenshot written", 2, Duration::from_secs(120));

    // The server goes away and comes back on the same address.
    drop(server);
    std::thread::sleep(Duration::from_secs(2));
    let _server = Server::start(&data_dir, port);
    viewer.wait_for("connected", 2, Duration::from_secs(30));
    let (status, lines) = viewer.wait_exit(Duration::from_secs(120));
    assert!(status.success(), "viewer exit: {status}");
    assert!(
        lines.iter().any(|l| l.contains("lost")),
        "the lost connection is reported"
    );
    assert!(!lines.iter().any(|l| l.contains("panicked")), "no panic");

    let (a, b, c) = (load(&first), load(&second), load(&third));
    for (name, image) in [("first", &a), ("second", &b), ("third", &c)] {
        let city = city_fraction(image);
        let coloured = saturated_fraction(image);
        eprintln!(
            "{name}: city covers {:.1} % of the view, coloured {:.1} %",
            city * 100.0,
            coloured * 100.0
        );
        assert!(city > 0.30, "{name} screenshot shows no city ({:.3})", city);
        assert!(
            coloured > 0.10,
            "{name} screenshot has no coloured assets ({:.3})",
            coloured
        );
    }
    // Between the first two screenshots only values changed (the camera
    // stayed): the differences are on the city, not on the ground or sky.
    let (mut changed, mut changed_on_city) = (0usize, 0usize);
    let sky = GROUND;
    for ((_, _, p), (_, _, q)) in scene_pixels(&a).zip(scene_pixels(&b)) {
        if distance(p, q) > 24 {
            changed += 1;
            if distance(p, sky) > 30 || distance(q, sky) > 30 {
                changed_on_city += 1;
            }
        }
    }
    eprintln!(
        "changed pixels between the first two screenshots: {changed} ({changed_on_city} on the city)"
    );
    assert!(
        changed > 2_000,
        "colours did not change as values changed ({changed} pixels)"
    );
    assert!(
        changed_on_city * 10 >= changed * 9,
        "changes are where the assets are"
    );
}

#[test]
fn a_wrong_address_and_a_refused_token_are_explained_and_survived() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = TempDir::new("refusals");
    let data_dir = dir.path().join("polis-data");
    let port = free_udp_port();
    let _server = Server::start(&data_dir, port);
    let shot = dir.path().join("nowhere.png");
    // Nothing listens on this port.
    let nowhere = Viewer::start(&args(free_udp_port(), &data_dir, "x", &[(&shot, 12)]));
    let (status, lines) = nowhere.wait_exit(Duration::from_secs(120));
    assert!(status.success(), "viewer exit: {status}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("cannot reach a Polis server")),
        "a wrong address is explained"
    );
    assert!(!lines.iter().any(|l| l.contains("panicked")));
    assert!(shot.exists(), "the viewer kept running and drew its window");

    let refused_shot = dir.path().join("refused.png");
    let refused = Viewer::start(&args(port, &data_dir, "not-a-token", &[(&refused_shot, 6)]));
    let (status, lines) = refused.wait_exit(Duration::from_secs(120));
    assert!(status.success(), "viewer exit: {status}");
    assert!(
        lines.iter().any(|l| l.contains("does not know this token")),
        "a refused token is explained"
    );
    assert!(!lines.iter().any(|l| l.contains("panicked")));
}
