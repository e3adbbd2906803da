//! Writing a scene as pretty JSON.
//!
//! Written by hand rather than through `serde_json`'s pretty printer so that
//! the field order is the documented one and coordinate pairs stay on one
//! line (`[20, 15]`), which keeps files short and diffs readable.

use crate::model::{Asset, Geometry, SCENE_FORMAT, SCENE_VERSION, Scene, Sensor};

/// Point lists longer than this (rendered) are written one point per line.
const INLINE_WIDTH: usize = 72;

pub(crate) fn to_json_string_pretty(scene: &Scene) -> String {
    let geo = &scene.georeference;
    let mut entries = vec![
        ("format", string(SCENE_FORMAT)),
        ("version", SCENE_VERSION.to_string()),
        ("name", string(&scene.name)),
    ];
    if let Some(description) = &scene.description {
        entries.push(("description", string(description)));
    }
    entries.push((
        "attribution",
        array(2, scene.attribution.iter().map(|a| string(a)).collect()),
    ));
    entries.push((
        "georeference",
        object(
            2,
            vec![
                ("origin_lon_deg", number(geo.origin_lon_deg)),
                ("origin_lat_deg", number(geo.origin_lat_deg)),
            ],
        ),
    ));
    entries.push((
        "assets",
        array(2, scene.assets.iter().map(|a| asset(4, a)).collect()),
    ));
    entries.push((
        "sensors",
        array(2, scene.sensors.iter().map(|s| sensor(4, s)).collect()),
    ));
    let mut out = object(0, entries);
    out.push('\n');
    out
}

fn asset(indent: usize, asset: &Asset) -> String {
    let mut entries = vec![
        ("id", string(&asset.id)),
        ("kind", string(asset.kind.as_str())),
    ];
    let geometry = match &asset.geometry {
        Geometry::Footprint(points) | Geometry::Line(points) => point_list(indent + 2, points),
        Geometry::Point(point) => numbers(point),
    };
    entries.push((asset.geometry.field_name(), geometry));
    if let Some(height_m) = asset.height_m {
        entries.push(("height_m", number(height_m)));
    }
    let attributes = asset
        .attributes
        .iter()
        .map(|(k, v)| (k.as_str(), string(v)))
        .collect();
    entries.push(("attributes", object(indent + 2, attributes)));
    object(indent, entries)
}

fn sensor(indent: usize, sensor: &Sensor) -> String {
    let mut entries = vec![
        ("id", string(&sensor.id)),
        ("domain", string(sensor.domain.as_str())),
        ("quantity", string(&sensor.quantity)),
        ("unit", string(&sensor.unit)),
        ("position_enu_m", numbers(&sensor.position_enu_m)),
    ];
    if let Some(asset) = &sensor.asset {
        entries.push(("asset", string(asset)));
    }
    entries.push(("personal", sensor.personal.to_string()));
    object(indent, entries)
}

/// `{ "key": value, ... }` with one entry per line; values are already
/// rendered for nesting at `indent + 2`.
fn object(indent: usize, entries: Vec<(&str, String)>) -> String {
    if entries.is_empty() {
        return "{}".to_owned();
    }
    let inner = " ".repeat(indent + 2);
    let body: Vec<String> = entries
        .into_iter()
        .map(|(key, value)| format!("{inner}{}: {value}", string(key)))
        .collect();
    format!("{{\n{}\n{}}}", body.join(",\n"), " ".repeat(indent))
}

/// `[ item, ... ]` with one item per line; items are already rendered for
/// nesting at `indent + 2`.
fn array(indent: usize, items: Vec<String>) -> String {
    if items.is_empty() {
        return "[]".to_owned();
    }
    let inner = " ".repeat(indent + 2);
    let body: Vec<String> = items.iter().map(|item| format!("{inner}{item}")).collect();
    format!("[\n{}\n{}]", body.join(",\n"), " ".repeat(indent))
}

/// A list of east/north points: on one line when short, else one per line.
fn point_list(indent: usize, points: &[[f64; 2]]) -> String {
    let rendered: Vec<String> = points.iter().map(|p| numbers(p)).collect();
    let inline = format!("[{}]", rendered.join(", "));
    if inline.len() <= INLINE_WIDTH {
        inline
    } else {
        array(indent, rendered)
    }
}

/// `[1, 2.5, 3]` on one line.
fn numbers(values: &[f64]) -> String {
    let parts: Vec<String> = values.iter().map(|v| number(*v)).collect();
    format!("[{}]", parts.join(", "))
}

/// A JSON number that reads back to the same `f64`: whole numbers without a
/// fraction (`20`), others in shortest round-trip form; `null` when not
/// finite (which the loader refuses).
fn number(value: f64) -> String {
    if value.is_finite() && value.fract() == 0.0 && value.abs() < 1e15 {
        // Exact: whole and well within i64 and f64's integer range.
        let whole = value as i64;
        whole.to_string()
    } else {
        serde_json::Number::from_f64(value).map_or_else(|| "null".to_owned(), |n| n.to_string())
    }
}

/// A JSON string literal with the required escapes.
fn string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
