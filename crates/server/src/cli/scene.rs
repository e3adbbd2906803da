//! `polis scene …`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use crate::load_scene;

/// One line of `polis scene inspect --json`.
#[derive(serde::Serialize)]
struct SensorLine<'a> {
    id: &'a str,
    domain: &'a str,
    quantity: &'a str,
    unit: &'a str,
    lon: f64,
    lat: f64,
    asset: Option<&'a str>,
    personal: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum SceneCommand {
    /// Generate the sensor deployment of a scene: a smart meter per building
    /// (personal when residential), PV on a share of suitable roofs, pressure
    /// at every water junction, level in every tank, flow in pumps and large
    /// pipes, and vehicles on every transit route (see the polis-import docs).
    Sensors {
        /// Scene file (written back unless --out is given).
        path: PathBuf,
        /// Scene file to write instead.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Share of suitable roofs that carry PV (0 to 1).
        #[arg(long, default_value_t = 0.3)]
        pv_share: f64,
        /// Smallest roof that counts as suitable for PV, m².
        #[arg(long, default_value_t = 100.0)]
        pv_min_roof_m2: f64,
        /// Vehicles per transit route.
        #[arg(long, default_value_t = 2)]
        vehicles_per_route: u32,
        /// Smallest pipe diameter that gets a flow sensor, mm.
        #[arg(long, default_value_t = 300.0)]
        flow_sensor_min_diameter_mm: f64,
    },
    /// Check a scene and describe it (the bundled scene without PATH).
    Inspect {
        /// Scene file.
        path: Option<PathBuf>,
        /// One JSON object per sensor per line instead of a summary.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn run(command: SceneCommand) -> anyhow::Result<ExitCode> {
    let (path, json) = match command {
        SceneCommand::Inspect { path, json } => (path, json),
        SceneCommand::Sensors {
            path,
            out,
            pv_share,
            pv_min_roof_m2,
            vehicles_per_route,
            flow_sensor_min_diameter_mm,
        } => {
            anyhow::ensure!(
                (0.0..=1.0).contains(&pv_share),
                "--pv-share must be within 0 and 1"
            );
            let options = polis_import::SensorOptions {
                pv_share,
                pv_min_roof_m2,
                vehicles_per_route,
                flow_sensor_min_diameter_mm,
            };
            return super::import::generate(&path, out, options);
        }
    };
    let scene = load_scene(path.as_deref())?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if json {
        for sensor in &scene.sensors {
            let [east_m, north_m, _] = sensor.position_enu_m;
            let [lon, lat] = scene.georeference.lonlat_from_enu(east_m, north_m);
            let line = SensorLine {
                id: &sensor.id,
                domain: sensor.domain.as_str(),
                quantity: &sensor.quantity,
                unit: &sensor.unit,
                lon,
                lat,
                asset: sensor.asset.as_deref(),
                personal: sensor.personal,
            };
            writeln!(out, "{}", serde_json::to_string(&line)?)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(out, "scene `{}`", scene.name)?;
    if let Some(description) = &scene.description {
        writeln!(out, "  {description}")?;
    }
    let origin = scene.georeference;
    writeln!(
        out,
        "origin: lon {:.6}, lat {:.6}",
        origin.origin_lon_deg, origin.origin_lat_deg
    )?;
    let mut kinds = BTreeMap::new();
    for asset in &scene.assets {
        *kinds.entry(asset.kind.as_str()).or_insert(0usize) += 1;
    }
    writeln!(out, "assets: {}", scene.assets.len())?;
    for (kind, count) in kinds {
        writeln!(out, "  {kind}: {count}")?;
    }
    let mut domains = BTreeMap::new();
    for sensor in &scene.sensors {
        let entry = domains
            .entry(sensor.domain.as_str())
            .or_insert((0usize, 0usize));
        entry.0 += 1;
        entry.1 += usize::from(sensor.personal);
    }
    writeln!(out, "sensors: {}", scene.sensors.len())?;
    for (domain, (count, personal)) in domains {
        writeln!(out, "  {domain}: {count} ({personal} personal)")?;
    }
    for line in &scene.attribution {
        writeln!(out, "attribution: {line}")?;
    }
    Ok(ExitCode::SUCCESS)
}
