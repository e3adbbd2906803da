//! `polis watch`: a text viewer of an area's live values.

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use polis_net::{ClientError, ClientOptions, Session};
use polis_protocol::{
    ClientToServer, Domain, GeoBox, Georeference, Role, SensorInfo, ServerToViewer, Subscribe,
    ValueUpdate,
};

use super::{ServerArgs, client_runtime, format_time_ms, parse_time_ms};

/// Arguments of `polis watch`.
#[derive(Debug, Args)]
pub(crate) struct WatchArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Area to watch: LON_MIN,LAT_MIN,LON_MAX,LAT_MAX (WGS84 degrees).
    #[arg(long, allow_hyphen_values = true)]
    bbox: String,
    /// Layers to watch, comma-separated (energy, transport, water, environment); all by default.
    #[arg(long, value_delimiter = ',')]
    layers: Vec<String>,
    /// Stop after this many seconds (runs until interrupted otherwise).
    #[arg(long = "for")]
    for_secs: Option<f64>,
    /// One JSON object per value: {"sensor","time","value","lon","lat"}.
    #[arg(long)]
    json: bool,
    /// Travel to this past device time (RFC 3339): the area's state then,
    /// followed by the recorded changes.
    #[arg(long)]
    at: Option<String>,
    /// Playback speed when travelling (simulated seconds per second; 0 holds).
    #[arg(long, default_value_t = 1.0, requires = "at")]
    speed: f32,
    /// Receive value updates at most this often, ms (the server coalesces
    /// in between: one latest value per sensor); 0 sends each change at once.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(..=i64::from(polis_protocol::MAX_PUBLISH_INTERVAL_MS)))]
    publish_interval_ms: u32,
}

fn parse_bbox(text: &str) -> anyhow::Result<GeoBox> {
    let parts: Vec<f64> = text
        .split(',')
        .map(|p| p.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("--bbox `{text}`: expected four numbers"))?;
    let [lon_min_deg, lat_min_deg, lon_max_deg, lat_max_deg] = parts[..] else {
        bail!("--bbox `{text}`: expected LON_MIN,LAT_MIN,LON_MAX,LAT_MAX");
    };
    let area = GeoBox {
        lon_min_deg,
        lat_min_deg,
        lon_max_deg,
        lat_max_deg,
    };
    if !area.is_valid() {
        bail!("--bbox `{text}`: not a WGS84 box (min <= max, lon within ±180, lat within ±90)");
    }
    Ok(area)
}

fn parse_layers(names: &[String]) -> anyhow::Result<Vec<Domain>> {
    names
        .iter()
        .filter(|n| !n.is_empty())
        .map(|name| {
            Domain::from_name(name).with_context(|| {
                format!("unknown layer `{name}` (energy, transport, water, environment)")
            })
        })
        .collect()
}

pub(crate) fn run(args: WatchArgs) -> anyhow::Result<ExitCode> {
    let area = parse_bbox(&args.bbox)?;
    let layers = parse_layers(&args.layers)?;
    let options = args.server.client_options(Role::Viewer);
    let runtime = client_runtime()?;
    let duration = args
        .for_secs
        .map(|secs| {
            if secs.is_finite() && secs >= 0.0 {
                Ok(Duration::from_secs_f64(secs))
            } else {
                bail!("--for must be a non-negative number of seconds")
            }
        })
        .transpose()?;
    let at_ms = args
        .at
        .as_deref()
        .map(|text| parse_time_ms("--at", text))
        .transpose()?;
    if !(args.speed.is_finite() && args.speed >= 0.0) {
        bail!("--speed must be a number >= 0");
    }
    let subscribe = Subscribe {
        subscription: 1,
        area,
        layers,
        at_ms,
        speed: args.speed,
        publish_interval_ms: args.publish_interval_ms,
    };
    runtime.block_on(watch(&options, subscribe, args.json, duration))?;
    Ok(ExitCode::SUCCESS)
}

/// What `watch` knows of each sensor it has been told about.
struct Known {
    id: String,
    unit: String,
    lon: f64,
    lat: f64,
}

/// One line of `polis watch --json`.
#[derive(serde::Serialize)]
struct ValueLine<'a> {
    sensor: &'a str,
    time: &'a str,
    value: f64,
    lon: f64,
    lat: f64,
}

struct Printer {
    georeference: Georeference,
    sensors: HashMap<u32, Known>,
    json: bool,
}

impl Printer {
    fn learn(&mut self, sensor: &SensorInfo) {
        let [east_m, north_m, _] = sensor.position_enu_m;
        let [lon, lat] = self
            .georeference
            .lonlat_from_enu(f64::from(east_m), f64::from(north_m));
        self.sensors.insert(
            sensor.handle,
            Known {
                id: sensor.id.clone(),
                unit: sensor.unit.clone(),
                lon,
                lat,
            },
        );
    }

    fn print(&self, out: &mut impl Write, value: &ValueUpdate) -> std::io::Result<()> {
        let Some(known) = self.sensors.get(&value.sensor) else {
            return Ok(());
        };
        let time = format_time_ms(value.device_time_ms);
        if self.json {
            let line = ValueLine {
                sensor: &known.id,
                time: &time,
                value: value.value,
                lon: known.lon,
                lat: known.lat,
            };
            writeln!(out, "{}", serde_json::to_string(&line)?)
        } else {
            writeln!(
                out,
                "{time}  {:<32} {} {}",
                known.id, value.value, known.unit
            )
        }
    }
}

async fn watch(
    options: &ClientOptions,
    subscribe: Subscribe,
    json: bool,
    duration: Option<Duration>,
) -> anyhow::Result<()> {
    // Far enough to never come when no duration is given.
    let deadline = tokio::time::Instant::now() + duration.unwrap_or(Duration::from_secs(1 << 40));
    let mut session = Session::connect(options)
        .await
        .with_context(|| format!("cannot watch {}", options.server))?;
    let mut printer = Printer {
        georeference: session.welcome().georeference,
        sensors: HashMap::new(),
        json,
    };
    session.send(&ClientToServer::Subscribe(subscribe)).await?;
    let stdout = std::io::stdout();
    loop {
        let frame = tokio::select! {
            frame = session.recv::<ServerToViewer>() => frame?,
            () = tokio::time::sleep_until(deadline) => break,
            _ = tokio::signal::ctrl_c() => break,
        };
        let mut out = stdout.lock();
        match frame {
            ServerToViewer::Snapshot(snapshot) => {
                if snapshot.part == 0 {
                    printer.sensors.clear();
                }
                for sensor in &snapshot.sensors {
                    printer.learn(sensor);
                }
                for sensor in &snapshot.sensors {
                    if let Some(value) = &sensor.latest {
                        printer.print(&mut out, value)?;
                    }
                }
            }
            ServerToViewer::Update(update) => {
                for handle in &update.left_sensors {
                    printer.sensors.remove(handle);
                }
                for sensor in &update.entered_sensors {
                    printer.learn(sensor);
                    if let Some(value) = &sensor.latest {
                        printer.print(&mut out, value)?;
                    }
                }
                for value in &update.values {
                    printer.print(&mut out, value)?;
                }
            }
            ServerToViewer::Error(error) => return Err(ClientError::Server(error).into()),
            ServerToViewer::History(_) | ServerToViewer::Pick(_) | ServerToViewer::Resident(_) => {}
        }
        out.flush()?;
    }
    session.close().await;
    Ok(())
}
