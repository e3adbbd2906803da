//! The semantic rules of the scene format.

use std::collections::HashMap;

use polis_protocol::AssetKind;

use crate::error::SceneProblem;
use crate::geometry::{MIN_FOOTPRINT_AREA_M2, distinct_points, signed_area_m2};
use crate::limits::{
    MAX_ATTRIBUTE_KEY_BYTES, MAX_ATTRIBUTE_VALUE_BYTES, MAX_ATTRIBUTES, MAX_FOOTPRINT_VERTICES,
    MAX_ID_BYTES, MAX_LINE_VERTICES, MAX_NAME_BYTES,
};
use crate::model::{Asset, Geometry, Scene, field_name};

/// Every problem in `scene`, in document order. Assets whose index is in
/// `geometry_reported` already had their geometry reported (none or several
/// given) and are not checked for geometry again.
pub(crate) fn problems(scene: &Scene, geometry_reported: &[usize]) -> Vec<SceneProblem> {
    let mut out = Vec::new();

    if scene.name.trim().is_empty() {
        out.push(SceneProblem::new("name", "must not be empty"));
    }

    let geo = &scene.georeference;
    if !(-180.0..=180.0).contains(&geo.origin_lon_deg) {
        out.push(SceneProblem::new(
            "georeference.origin_lon_deg",
            format!(
                "must be within [-180, 180] degrees, found {}",
                geo.origin_lon_deg
            ),
        ));
    }
    if !(-90.0..=90.0).contains(&geo.origin_lat_deg) {
        out.push(SceneProblem::new(
            "georeference.origin_lat_deg",
            format!(
                "must be within [-90, 90] degrees, found {}",
                geo.origin_lat_deg
            ),
        ));
    }

    let mut asset_ids: HashMap<&str, usize> = HashMap::new();
    for (index, asset) in scene.assets.iter().enumerate() {
        let path = format!("assets[{index}]");
        check_id(&asset.id, &path, "assets", index, &mut asset_ids, &mut out);
        if !geometry_reported.contains(&index) && check_vertex_count(asset, &path, &mut out) {
            check_geometry(asset, &path, &mut out);
        }
        check_attributes(asset, &path, &mut out);
        check_height(asset, &path, &mut out);
    }

    let mut sensor_ids: HashMap<&str, usize> = HashMap::new();
    for (index, sensor) in scene.sensors.iter().enumerate() {
        let path = format!("sensors[{index}]");
        check_id(
            &sensor.id,
            &path,
            "sensors",
            index,
            &mut sensor_ids,
            &mut out,
        );
        for (field, text) in [("quantity", &sensor.quantity), ("unit", &sensor.unit)] {
            if text.len() > MAX_NAME_BYTES {
                out.push(SceneProblem::new(
                    format!("{path}.{field}"),
                    format!("is {} bytes, at most {MAX_NAME_BYTES}", text.len()),
                ));
            }
        }
        if sensor.quantity.trim().is_empty() {
            out.push(SceneProblem::new(
                format!("{path}.quantity"),
                "must not be empty",
            ));
        }
        if sensor.unit.trim().is_empty() {
            out.push(SceneProblem::new(
                format!("{path}.unit"),
                "must not be empty",
            ));
        }
        if !all_finite(&sensor.position_enu_m) {
            out.push(SceneProblem::new(
                format!("{path}.position_enu_m"),
                "coordinates must be finite numbers",
            ));
        }
        if let Some(asset) = &sensor.asset
            && !asset_ids.contains_key(asset.as_str())
        {
            out.push(SceneProblem::new(
                format!("{path}.asset"),
                format!("unknown asset {asset:?}"),
            ));
        }
    }

    out
}

/// Non-empty and unique within its list (`section` is `assets` or `sensors`).
fn check_id<'a>(
    id: &'a str,
    path: &str,
    section: &str,
    index: usize,
    seen: &mut HashMap<&'a str, usize>,
    out: &mut Vec<SceneProblem>,
) {
    if id.trim().is_empty() {
        out.push(SceneProblem::new(format!("{path}.id"), "must not be empty"));
    } else if id.len() > MAX_ID_BYTES {
        out.push(SceneProblem::new(
            format!("{path}.id"),
            format!("is {} bytes, at most {MAX_ID_BYTES}", id.len()),
        ));
    } else if let Some(first) = seen.get(id) {
        out.push(SceneProblem::new(
            format!("{path}.id"),
            format!("duplicate id {id:?} (first used by {section}[{first}])"),
        ));
    } else {
        seen.insert(id, index);
    }
}

/// At most [`MAX_FOOTPRINT_VERTICES`] or [`MAX_LINE_VERTICES`] points, so
/// the asset fits in one frame and its shape is cheap to prepare; false
/// (reported) when there are more, and the shape is not checked further.
fn check_vertex_count(asset: &Asset, path: &str, out: &mut Vec<SceneProblem>) -> bool {
    let (count, max) = match &asset.geometry {
        Geometry::Footprint(points) => (points.len(), MAX_FOOTPRINT_VERTICES),
        Geometry::Line(points) => (points.len(), MAX_LINE_VERTICES),
        Geometry::Point(_) => return true,
    };
    if count <= max {
        return true;
    }
    out.push(SceneProblem::new(
        format!("{path}.{}", asset.geometry.field_name()),
        format!("has {count} points, at most {max}; split or simplify it"),
    ));
    false
}

/// At most [`MAX_ATTRIBUTES`] attributes, each key and value within its
/// length.
fn check_attributes(asset: &Asset, path: &str, out: &mut Vec<SceneProblem>) {
    if asset.attributes.len() > MAX_ATTRIBUTES {
        out.push(SceneProblem::new(
            format!("{path}.attributes"),
            format!(
                "has {} attributes, at most {MAX_ATTRIBUTES}",
                asset.attributes.len()
            ),
        ));
    }
    for (key, value) in &asset.attributes {
        if key.len() > MAX_ATTRIBUTE_KEY_BYTES {
            out.push(SceneProblem::new(
                format!("{path}.attributes"),
                format!(
                    "a key is {} bytes, at most {MAX_ATTRIBUTE_KEY_BYTES}",
                    key.len()
                ),
            ));
        }
        if value.len() > MAX_ATTRIBUTE_VALUE_BYTES {
            out.push(SceneProblem::new(
                format!("{path}.attributes.{key}"),
                format!(
                    "is {} bytes, at most {MAX_ATTRIBUTE_VALUE_BYTES}",
                    value.len()
                ),
            ));
        }
    }
}

/// The geometry matches the kind, its coordinates are finite and its shape
/// is not degenerate.
fn check_geometry(asset: &Asset, path: &str, out: &mut Vec<SceneProblem>) {
    let field = asset.geometry.field_name();
    let path = format!("{path}.{field}");
    let expected = asset.kind.geometry_class();
    if asset.geometry.class() != expected {
        out.push(SceneProblem::new(
            path.clone(),
            format!(
                "a {} needs {}, not {field}",
                asset.kind.as_str(),
                field_name(expected)
            ),
        ));
    }
    match &asset.geometry {
        Geometry::Point(point) => {
            if !all_finite(point) {
                out.push(SceneProblem::new(
                    path,
                    "coordinates must be finite numbers",
                ));
            }
        }
        Geometry::Footprint(points) | Geometry::Line(points) => {
            let mut finite = true;
            for (k, point) in points.iter().enumerate() {
                if !all_finite(point) {
                    finite = false;
                    out.push(SceneProblem::new(
                        format!("{path}[{k}]"),
                        "coordinates must be finite numbers",
                    ));
                }
            }
            if !finite {
                return;
            }
            let needed = match asset.geometry {
                Geometry::Footprint(_) => 3,
                _ => 2,
            };
            let distinct = distinct_points(points, needed);
            if distinct < needed {
                out.push(SceneProblem::new(
                    path,
                    format!("needs at least {needed} distinct points, found {distinct}"),
                ));
            } else if matches!(asset.geometry, Geometry::Footprint(_))
                && signed_area_m2(points).abs() < MIN_FOOTPRINT_AREA_M2
            {
                out.push(SceneProblem::new(
                    path,
                    "has zero area (all points on one line)",
                ));
            }
        }
    }
}

/// Finite and positive when given; required for buildings.
fn check_height(asset: &Asset, path: &str, out: &mut Vec<SceneProblem>) {
    match asset.height_m {
        Some(h) if !(h.is_finite() && h > 0.0) => out.push(SceneProblem::new(
            format!("{path}.height_m"),
            format!("must be a finite number greater than 0, found {h}"),
        )),
        None if asset.kind == AssetKind::Building => out.push(SceneProblem::new(
            format!("{path}.height_m"),
            "required for a building",
        )),
        _ => {}
    }
}

fn all_finite(values: &[f64]) -> bool {
    values.iter().all(|v| v.is_finite())
}
