//! `polis import …` and `polis scene sensors`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use polis_import::{
    EpanetPlacement, OsmOptions, SensorOptions, add_epanet, generate_sensors, import_osm,
    parse_epanet,
};
use polis_protocol::Georeference;
use polis_scene::Scene;

use super::progress::ProgressLine;

#[derive(Debug, Subcommand)]
pub(crate) enum ImportCommand {
    /// Build a scene from an OpenStreetMap extract (.osm.pbf): buildings,
    /// roads, public-transport routes and stops. Every skipped element is
    /// counted in the report.
    Osm {
        /// The extract.
        file: PathBuf,
        /// Scene file to write.
        #[arg(long)]
        out: PathBuf,
        /// Scene name.
        #[arg(long, default_value = "osm")]
        name: String,
        /// Origin of the local frame, LON,LAT (default: centre of the data).
        #[arg(long, allow_hyphen_values = true)]
        origin: Option<String>,
        /// Storey height for buildings with `building:levels` but no `height`, metres.
        #[arg(long, default_value_t = 3.2)]
        storey_height_m: f64,
        /// Height of buildings with neither, metres.
        #[arg(long, default_value_t = 9.0)]
        default_height_m: f64,
    },
    /// Add an EPANET network (.inp) to a scene, placed by an origin, a
    /// rotation and a scale: junctions, reservoirs, tanks, pipes, pumps and
    /// valves with their attributes and demand patterns.
    Epanet {
        /// The network.
        file: PathBuf,
        /// Scene to add it to (written back unless --out is given).
        #[arg(long)]
        into: PathBuf,
        /// Scene file to write instead of --into.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Where the network's centre goes, LON,LAT.
        #[arg(long, allow_hyphen_values = true)]
        origin: String,
        /// Rotation, degrees counter-clockwise.
        #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
        rotation_deg: f64,
        /// Metres per map unit of the file's coordinates.
        #[arg(long)]
        metres_per_unit: f64,
    },
}

fn parse_lon_lat(text: &str) -> anyhow::Result<[f64; 2]> {
    let parts: Vec<f64> = text
        .split(',')
        .map(|p| p.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("`{text}`: expected LON,LAT"))?;
    let [lon, lat] = parts[..] else {
        bail!("`{text}`: expected LON,LAT");
    };
    if !((-180.0..=180.0).contains(&lon) && (-90.0..=90.0).contains(&lat)) {
        bail!("`{text}`: longitude must be within ±180 and latitude within ±90");
    }
    Ok([lon, lat])
}

pub(crate) fn run(command: ImportCommand) -> anyhow::Result<ExitCode> {
    match command {
        ImportCommand::Osm {
            file,
            out,
            name,
            origin,
            storey_height_m,
            default_height_m,
        } => {
            let origin = origin
                .map(|o| parse_lon_lat(&o))
                .transpose()?
                .map(|[lon, lat]| Georeference {
                    origin_lon_deg: lon,
                    origin_lat_deg: lat,
                });
            let options = OsmOptions {
                origin,
                storey_height_m,
                default_height_m,
                name,
            };
            let mut progress = ProgressLine::new();
            let (scene, report) = import_osm(&file, &options, &mut |p| {
                progress.update(p.stage, p.done, p.total);
            })?;
            progress.finish();
            scene.save(&out)?;
            eprintln!("{report}");
            println!("wrote {} ({} assets)", out.display(), scene.assets.len());
            Ok(ExitCode::SUCCESS)
        }
        ImportCommand::Epanet {
            file,
            into,
            out,
            origin,
            rotation_deg,
            metres_per_unit,
        } => {
            let [origin_lon_deg, origin_lat_deg] = parse_lon_lat(&origin)?;
            let mut scene = Scene::load(&into)?;
            let network = parse_epanet(&file)?;
            let placement = EpanetPlacement {
                origin_lon_deg,
                origin_lat_deg,
                rotation_deg,
                metres_per_unit,
            };
            let report = add_epanet(&mut scene, &network, &placement)?;
            let out = out.unwrap_or(into);
            scene.save(&out)?;
            eprintln!("{report}");
            println!("wrote {} ({} assets)", out.display(), scene.assets.len());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `polis scene sensors`: the generated sensor deployment.
pub(crate) fn generate(
    scene_path: &std::path::Path,
    out: Option<PathBuf>,
    options: SensorOptions,
) -> anyhow::Result<ExitCode> {
    let mut scene = Scene::load(scene_path)?;
    let report = generate_sensors(&mut scene, &options);
    let out = out.unwrap_or_else(|| scene_path.to_owned());
    scene.save(&out)?;
    eprintln!("{report}");
    println!("wrote {} ({} sensors)", out.display(), scene.sensors.len());
    Ok(ExitCode::SUCCESS)
}
