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
    let SceneCommand::Inspect { path, json } = command;
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
