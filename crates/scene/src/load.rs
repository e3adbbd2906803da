//! Reading a scene: header check, typed parse, geometry conversion, validation.

use std::collections::BTreeMap;

use polis_protocol::{AssetKind, Georeference};
use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::error::{SceneError, SceneProblem};
use crate::model::{Asset, Geometry, SCENE_FORMAT, SCENE_VERSION, Scene, Sensor, field_name};
use crate::validate;

/// Just the tag fields, read before anything else so that a file of another
/// format or version gets a clear refusal rather than a confusing shape error.
/// Other fields are skipped (but still parsed, so syntax errors surface here
/// with their position).
#[derive(Deserialize)]
#[serde(expecting = "a JSON object (a Polis scene)")]
struct Header {
    #[serde(default, deserialize_with = "present")]
    format: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    version: Option<Value>,
}

/// Distinguishes a field given as `null` (`Some(Null)`) from a missing one.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// The file as written; unknown fields anywhere are errors.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a Polis scene object")]
struct RawScene {
    #[serde(rename = "format")]
    _format: IgnoredAny,
    #[serde(rename = "version")]
    _version: IgnoredAny,
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    attribution: Vec<String>,
    georeference: RawGeoreference,
    #[serde(default)]
    assets: Vec<RawAsset>,
    #[serde(default)]
    sensors: Vec<Sensor>,
}

/// [`Georeference`] with unknown fields refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a georeference object")]
struct RawGeoreference {
    origin_lon_deg: f64,
    origin_lat_deg: f64,
}

/// An asset as written: the geometry is one of three optional fields.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "an asset object")]
struct RawAsset {
    id: String,
    kind: AssetKind,
    footprint_enu_m: Option<Vec<[f64; 2]>>,
    line_enu_m: Option<Vec<[f64; 2]>>,
    position_enu_m: Option<[f64; 3]>,
    height_m: Option<f64>,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
}

pub(crate) fn from_json_str(text: &str, origin: &str) -> Result<Scene, SceneError> {
    let header: Header =
        serde_json::from_str(text).map_err(|e| SceneError::from_json(origin, &e))?;
    check_header(&header, origin)?;

    let raw: RawScene =
        serde_json::from_str(text).map_err(|e| SceneError::from_json(origin, &e))?;

    let mut problems = Vec::new();
    let mut geometry_reported = Vec::new();
    let assets = raw
        .assets
        .into_iter()
        .enumerate()
        .map(|(index, raw_asset)| {
            let (asset, problem) = convert_asset(index, raw_asset);
            if let Some(problem) = problem {
                problems.push(problem);
                geometry_reported.push(index);
            }
            asset
        })
        .collect();
    let scene = Scene {
        name: raw.name,
        description: raw.description,
        attribution: raw.attribution,
        georeference: Georeference {
            origin_lon_deg: raw.georeference.origin_lon_deg,
            origin_lat_deg: raw.georeference.origin_lat_deg,
        },
        assets,
        sensors: raw.sensors,
    };

    problems.extend(validate::problems(&scene, &geometry_reported));
    if problems.is_empty() {
        Ok(scene)
    } else {
        sort_by_document_order(&mut problems);
        Err(SceneError::Invalid {
            origin: origin.to_owned(),
            problems,
        })
    }
}

/// Refuses other formats and versions.
fn check_header(header: &Header, origin: &str) -> Result<(), SceneError> {
    match &header.format {
        Some(Value::String(s)) if s == SCENE_FORMAT => {}
        other => {
            return Err(SceneError::Format {
                origin: origin.to_owned(),
                found: other
                    .as_ref()
                    .map_or_else(|| "missing".to_owned(), Value::to_string),
            });
        }
    }
    let number = match &header.version {
        Some(Value::Number(n)) => n.as_u64(),
        _ => None,
    };
    let Some(found) = number else {
        let found = header
            .version
            .as_ref()
            .map_or_else(|| "missing".to_owned(), |v| format!("found {v}"));
        return Err(SceneError::Invalid {
            origin: origin.to_owned(),
            problems: vec![SceneProblem::new(
                "version",
                format!("must be a whole number ({SCENE_VERSION} for this build), {found}"),
            )],
        });
    };
    if found == u64::from(SCENE_VERSION) {
        Ok(())
    } else {
        Err(SceneError::Version {
            origin: origin.to_owned(),
            found: u32::try_from(found).unwrap_or(u32::MAX),
            supported: SCENE_VERSION,
        })
    }
}

/// Picks the asset's geometry from its three optional fields; a problem when
/// there is not exactly one. The returned asset then carries a placeholder
/// geometry, which validation skips.
fn convert_asset(index: usize, raw: RawAsset) -> (Asset, Option<SceneProblem>) {
    let mut given = Vec::new();
    if let Some(points) = raw.footprint_enu_m {
        given.push(Geometry::Footprint(points));
    }
    if let Some(points) = raw.line_enu_m {
        given.push(Geometry::Line(points));
    }
    if let Some(point) = raw.position_enu_m {
        given.push(Geometry::Point(point));
    }
    let expected = field_name(raw.kind.geometry_class());
    let kind = raw.kind.as_str();
    let (geometry, problem) = if given.len() == 1 {
        (given.remove(0), None)
    } else {
        let message = if given.is_empty() {
            format!("no geometry: a {kind} needs {expected}")
        } else {
            let names: Vec<_> = given.iter().map(Geometry::field_name).collect();
            format!(
                "several geometries ({}); give exactly one: a {kind} needs {expected}",
                names.join(", ")
            )
        };
        (
            Geometry::Point([0.0; 3]),
            Some(SceneProblem::new(format!("assets[{index}]"), message)),
        )
    };
    let asset = Asset {
        id: raw.id,
        kind: raw.kind,
        geometry,
        height_m: raw.height_m,
        attributes: raw.attributes,
    };
    (asset, problem)
}

/// Orders problems as they appear in the file: `georeference`, then assets by
/// index, then sensors by index (stable within one element).
fn sort_by_document_order(problems: &mut [SceneProblem]) {
    fn key(path: &str) -> (u8, usize) {
        let section = if path.starts_with("version") {
            0
        } else if path.starts_with("name") {
            1
        } else if path.starts_with("georeference") {
            2
        } else if path.starts_with("assets") {
            3
        } else if path.starts_with("sensors") {
            4
        } else {
            5
        };
        let index = path
            .split_once('[')
            .and_then(|(_, rest)| rest.split_once(']'))
            .and_then(|(n, _)| n.parse().ok())
            .unwrap_or(0);
        (section, index)
    }
    problems.sort_by_key(|p| key(&p.path));
}
