//! Roads and paths from ways tagged `highway`.

use std::collections::BTreeMap;

use polis_protocol::AssetKind;
use polis_scene::{Asset, Geometry};

use super::frame::{Frame, ShapeProblem};
use super::read::OsmData;
use crate::report::ImportReport;

/// `highway` values imported as roads: the road network proper, its links,
/// and the ways people walk and cycle on.
pub(crate) const ROAD_CLASSES: [&str; 24] = [
    "motorway",
    "trunk",
    "primary",
    "secondary",
    "tertiary",
    "unclassified",
    "residential",
    "motorway_link",
    "trunk_link",
    "primary_link",
    "secondary_link",
    "tertiary_link",
    "service",
    "living_street",
    "pedestrian",
    "track",
    "bus_guideway",
    "busway",
    "road",
    "footway",
    "cycleway",
    "path",
    "steps",
    "bridleway",
];

/// Every road of the extract, in file order. Ways that are also buildings
/// are left to the buildings.
pub(crate) fn roads(data: &OsmData, frame: &Frame<'_>, report: &mut ImportReport) -> Vec<Asset> {
    let mut out = Vec::new();
    for way in &data.ways {
        let Some(class) = way.tags.get("highway") else {
            continue;
        };
        if !ROAD_CLASSES.contains(&class.as_str()) {
            continue;
        }
        if way.tags.get("building").is_some_and(|b| b != "no") {
            report.skip("road: way is also a building");
            continue;
        }
        let (line, missing) = match frame.points(&way.refs).into_line() {
            Ok(shape) => shape,
            Err(ShapeProblem::MissingNodes) => {
                report.skip("road: too few nodes in the extract");
                continue;
            }
            Err(ShapeProblem::Degenerate) => {
                report.skip("road: degenerate line");
                continue;
            }
        };
        if missing > 0 {
            report.skip("road: clipped to the nodes in the extract");
        }
        let mut attributes = BTreeMap::new();
        attributes.insert("class".to_owned(), class.clone());
        for key in ["name", "ref"] {
            if let Some(value) = way.tags.get(key) {
                attributes.insert(key.to_owned(), value.clone());
            }
        }
        out.push(Asset {
            id: format!("osm-way-{}", way.id),
            kind: AssetKind::Road,
            geometry: Geometry::Line(line),
            height_m: None,
            attributes,
        });
    }
    out
}
