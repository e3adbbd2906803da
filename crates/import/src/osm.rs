//! Importing an OpenStreetMap extract (`.osm.pbf`) as a scene: buildings,
//! roads, transit routes and stops.

mod building;
mod chain;
mod frame;
mod read;
mod rings;
mod road;
mod tags;
mod transit;

use std::path::Path;

use polis_protocol::Georeference;
use polis_scene::Scene;

use self::building::HeightRules;
use self::frame::Frame;
use self::read::{OsmData, read_osm};
use crate::error::ImportError;
use crate::report::{ImportReport, Progress};
use crate::validity::{append_unique, count_assets, drop_invalid_assets};

/// The attribution every OSM-derived scene carries.
pub const OSM_ATTRIBUTION: &str =
    "Map data © OpenStreetMap contributors, ODbL 1.0 (https://www.openstreetmap.org/copyright)";

/// How an OpenStreetMap extract is imported.
#[derive(Debug, Clone, PartialEq)]
pub struct OsmOptions {
    /// Origin of the scene's local frame; `None` puts it at the centre of
    /// the bounding box of all nodes, rounded to 1e-4 degrees.
    pub origin: Option<Georeference>,
    /// Height of one storey, metres, for buildings tagged with
    /// `building:levels` but no `height`. Default 3.2.
    pub storey_height_m: f64,
    /// Height of buildings with neither tag, metres. Default 9.0.
    pub default_height_m: f64,
    /// Name of the scene. Default `"osm"`.
    pub name: String,
}

impl Default for OsmOptions {
    fn default() -> OsmOptions {
        OsmOptions {
            origin: None,
            storey_height_m: 3.2,
            default_height_m: 9.0,
            name: "osm".to_owned(),
        }
    }
}

/// Imports an OpenStreetMap PBF extract as a scene of buildings, roads,
/// transit routes and transit stops (the rules are in the crate
/// documentation). `progress` is called after every few thousand elements.
///
/// Elements that cannot be imported (members outside the extract,
/// degenerate polygons, ...) are left out and counted in the report's
/// `skipped`; the scene returned always passes [`Scene::validate`].
///
/// # Errors
///
/// [`ImportError::Io`] when the file cannot be read,
/// [`ImportError::Osm`] when it is not a complete PBF file (truncated,
/// corrupt, empty), [`ImportError::InvalidOptions`] for heights that are
/// not positive, [`ImportError::InvalidScene`] for an empty name or an
/// origin outside WGS84 bounds.
pub fn import_osm(
    path: &Path,
    options: &OsmOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<(Scene, ImportReport), ImportError> {
    for (name, value) in [
        ("storey_height_m", options.storey_height_m),
        ("default_height_m", options.default_height_m),
    ] {
        if !(value.is_finite() && value > 0.0) {
            return Err(ImportError::InvalidOptions {
                message: format!("{name} must be a positive number of metres, found {value}"),
            });
        }
    }

    let mut data = read_osm(path, progress)?;
    let mut report = ImportReport::new();
    let before = data.nodes.len();
    data.nodes
        .retain(|_, [lon, lat]| (-180.0..=180.0).contains(lon) && (-90.0..=90.0).contains(lat));
    report.skip_n(
        "node: coordinates outside WGS84 bounds",
        (before - data.nodes.len()) as u64,
    );
    tracing::debug!(
        elements = data.element_count(),
        ways = data.ways.len(),
        relations = data.relations.len(),
        "read {}",
        path.display()
    );

    let georeference = match options.origin {
        Some(origin) => origin,
        None => bbox_centre(&data).ok_or_else(|| ImportError::Osm {
            path: path.to_path_buf(),
            message: "no node has usable coordinates".to_owned(),
        })?,
    };
    let frame = Frame::new(georeference, &data.nodes);
    let rules = HeightRules {
        storey_height_m: options.storey_height_m,
        default_height_m: options.default_height_m,
    };

    let buildings = building::buildings(&data, &frame, rules, &mut report, progress);
    let stage = |stage, done| Progress {
        stage,
        done,
        total: Some(1),
    };
    progress(stage("roads", 0));
    let roads = road::roads(&data, &frame, &mut report);
    progress(stage("roads", 1));
    progress(stage("transit", 0));
    let transit = transit::transit(&data, &frame, &mut report);
    progress(stage("transit", 1));

    let file_name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let mut scene = Scene {
        name: options.name.clone(),
        description: Some(format!("Imported from OpenStreetMap extract {file_name}")),
        attribution: vec![OSM_ATTRIBUTION.to_owned()],
        georeference,
        assets: Vec::new(),
        sensors: Vec::new(),
    };
    for assets in [buildings, roads, transit.stops, transit.routes] {
        append_unique(&mut scene, assets, &mut report);
    }

    progress(stage("validating", 0));
    let problems = drop_invalid_assets(&mut scene, 0, &mut report);
    if !problems.is_empty() {
        return Err(ImportError::InvalidScene { problems });
    }
    progress(stage("validating", 1));
    count_assets(&scene, 0, &mut report);
    tracing::info!(assets = scene.assets.len(), "imported {}", path.display());
    Ok((scene, report))
}

/// The centre of the bounding box of all nodes, rounded to 1e-4 degrees.
fn bbox_centre(data: &OsmData) -> Option<Georeference> {
    let mut min = [f64::INFINITY; 2];
    let mut max = [f64::NEG_INFINITY; 2];
    for lonlat in data.nodes.values() {
        for axis in 0..2 {
            min[axis] = min[axis].min(lonlat[axis]);
            max[axis] = max[axis].max(lonlat[axis]);
        }
    }
    if min[0] > max[0] || min[1] > max[1] {
        return None;
    }
    let round = |v: f64| (v * 1e4).round() / 1e4;
    Some(Georeference {
        origin_lon_deg: round((min[0] + max[0]) / 2.0),
        origin_lat_deg: round((min[1] + max[1]) / 2.0),
    })
}
