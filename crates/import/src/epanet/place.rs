//! Placing an EPANET network in a scene's local frame.

use std::collections::{BTreeMap, HashMap};

use polis_protocol::AssetKind;
use polis_scene::{Asset, Geometry, Scene};

use super::network::EpanetNetwork;
use crate::error::ImportError;
use crate::geometry::{is_valid_line, round_m, round_point};
use crate::report::ImportReport;
use crate::validity::{count_assets, drop_invalid_assets};

/// Where an EPANET network goes: its drawing coordinates are centred,
/// rotated, scaled and moved so that the centre of their bounding box lands
/// on a WGS84 point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpanetPlacement {
    /// Longitude of the point the network's centre is placed on, degrees.
    pub origin_lon_deg: f64,
    /// Latitude of that point, degrees.
    pub origin_lat_deg: f64,
    /// Rotation, degrees counter-clockwise, around the network's centre.
    pub rotation_deg: f64,
    /// Metres per drawing unit of the `[COORDINATES]`; must be positive.
    pub metres_per_unit: f64,
}

/// The transform from drawing units to local east/north metres.
struct Transform {
    centre: [f64; 2],
    cos: f64,
    sin: f64,
    metres_per_unit: f64,
    offset_enu_m: [f64; 2],
}

impl Transform {
    fn apply(&self, [x, y]: [f64; 2]) -> [f64; 2] {
        let (dx, dy) = (x - self.centre[0], y - self.centre[1]);
        let east = (dx * self.cos - dy * self.sin) * self.metres_per_unit;
        let north = (dx * self.sin + dy * self.cos) * self.metres_per_unit;
        round_point([east + self.offset_enu_m[0], north + self.offset_enu_m[1]])
    }
}

/// Adds the network's nodes and links to `scene` as water assets, placed
/// in the scene's frame by `placement` (see the crate documentation for the
/// assets and their attributes). Nodes without coordinates are skipped with
/// their links, and counted; the scene stays valid.
///
/// # Errors
///
/// [`ImportError::InvalidOptions`] for a placement with non-finite numbers,
/// a scale that is not positive or a point outside WGS84 bounds;
/// [`ImportError::DuplicateAsset`] when an asset id is already in the scene
/// (the network added twice). The scene is unchanged on error.
pub fn add_epanet(
    scene: &mut Scene,
    network: &EpanetNetwork,
    placement: &EpanetPlacement,
) -> Result<ImportReport, ImportError> {
    check_placement(placement)?;
    let transform = transform(scene, network, placement);
    let mut report = ImportReport::new();
    let assets = assets(network, &transform, &mut report);
    if let Some(clash) = assets.iter().find(|a| scene.asset(&a.id).is_some()) {
        return Err(ImportError::DuplicateAsset {
            id: clash.id.clone(),
        });
    }

    let first = scene.assets.len();
    scene.assets.extend(assets);
    let others = drop_invalid_assets(scene, first, &mut report);
    if !others.is_empty() {
        tracing::warn!(
            problems = others.len(),
            "the scene had problems before the water network was added"
        );
    }
    count_assets(scene, first, &mut report);
    let attribution = attribution(network);
    if !scene.attribution.contains(&attribution) {
        scene.attribution.push(attribution);
    }
    Ok(report)
}

fn check_placement(p: &EpanetPlacement) -> Result<(), ImportError> {
    let invalid = |message: String| Err(ImportError::InvalidOptions { message });
    if !(p.metres_per_unit.is_finite() && p.metres_per_unit > 0.0) {
        return invalid(format!(
            "metres_per_unit must be a positive number, found {}",
            p.metres_per_unit
        ));
    }
    if !p.rotation_deg.is_finite() {
        return invalid(format!(
            "rotation_deg must be finite, found {}",
            p.rotation_deg
        ));
    }
    if !(-180.0..=180.0).contains(&p.origin_lon_deg) || !(-90.0..=90.0).contains(&p.origin_lat_deg)
    {
        return invalid(format!(
            "origin ({}, {}) is outside WGS84 longitude/latitude bounds",
            p.origin_lon_deg, p.origin_lat_deg
        ));
    }
    Ok(())
}

/// The transform putting the centre of the bounding box of the network's
/// coordinates and vertices on the placement point.
fn transform(scene: &Scene, network: &EpanetNetwork, p: &EpanetPlacement) -> Transform {
    let mut min = [f64::INFINITY; 2];
    let mut max = [f64::NEG_INFINITY; 2];
    let points = network
        .coordinates
        .values()
        .chain(network.vertices.values().flatten());
    for point in points {
        min = [min[0].min(point[0]), min[1].min(point[1])];
        max = [max[0].max(point[0]), max[1].max(point[1])];
    }
    let centre = if min[0] <= max[0] && min[1] <= max[1] {
        [(min[0] + max[0]) / 2.0, (min[1] + max[1]) / 2.0]
    } else {
        [0.0, 0.0]
    };
    let (sin, cos) = p.rotation_deg.to_radians().sin_cos();
    Transform {
        centre,
        cos,
        sin,
        metres_per_unit: p.metres_per_unit,
        offset_enu_m: scene
            .georeference
            .enu_from_lonlat(p.origin_lon_deg, p.origin_lat_deg),
    }
}

/// `Water network: <source> (<first title line>), EPANET input`.
fn attribution(network: &EpanetNetwork) -> String {
    match network.title.lines().next().filter(|l| !l.is_empty()) {
        Some(title) => format!("Water network: {} ({title}), EPANET input", network.source),
        None => format!("Water network: {}, EPANET input", network.source),
    }
}

/// A number with at most `decimals` decimals, without trailing zeros.
fn decimal(value: f64, decimals: usize) -> String {
    let text = format!("{value:.decimals$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        &text
    };
    if text == "-0" {
        "0".to_owned()
    } else {
        text.to_owned()
    }
}

/// Multipliers joined with commas.
fn join(values: &[f64]) -> String {
    values
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Collects the assets of a network in the scene's frame.
struct Builder<'a> {
    network: &'a EpanetNetwork,
    transform: &'a Transform,
    report: &'a mut ImportReport,
    /// Node id → (asset id, east/north metres) of the nodes placed so far.
    placed: HashMap<String, (String, [f64; 2])>,
    assets: Vec<Asset>,
}

impl Builder<'_> {
    /// A node asset at its coordinates, `up_m` up; skipped and counted
    /// without coordinates.
    fn node(&mut self, kind: AssetKind, id: &str, up_m: f64, mut attributes: Attributes) {
        let Some(&xy) = self.network.coordinates.get(id) else {
            self.report
                .skip(format!("{}: no coordinates", kind.as_str()));
            return;
        };
        let asset_id = format!("epanet-{}-{id}", kind_suffix(kind));
        let [east_m, north_m] = self.transform.apply(xy);
        self.placed
            .insert(id.to_owned(), (asset_id.clone(), [east_m, north_m]));
        attributes.insert("epanet_id".to_owned(), id.to_owned());
        self.assets.push(Asset {
            id: asset_id,
            kind,
            geometry: Geometry::Point([east_m, north_m, round_m(up_m)]),
            height_m: None,
            attributes,
        });
    }

    /// A link asset from node to node through its vertices; skipped and
    /// counted when an end was not placed or the line has no length.
    fn link(&mut self, kind: AssetKind, id: &str, ends: [&str; 2], mut attributes: Attributes) {
        let (Some((from, start)), Some((to, end))) =
            (self.placed.get(ends[0]), self.placed.get(ends[1]))
        else {
            self.report
                .skip(format!("{}: end node not placed", kind.as_str()));
            return;
        };
        let mut line = vec![*start];
        if let Some(vertices) = self.network.vertices.get(id) {
            line.extend(vertices.iter().map(|v| self.transform.apply(*v)));
        }
        line.push(*end);
        line.dedup();
        if !is_valid_line(&line) {
            self.report
                .skip(format!("{}: both ends at the same place", kind.as_str()));
            return;
        }
        attributes.insert("epanet_id".to_owned(), id.to_owned());
        attributes.insert("from".to_owned(), from.clone());
        attributes.insert("to".to_owned(), to.clone());
        self.assets.push(Asset {
            id: format!("epanet-{}-{id}", kind_suffix(kind)),
            kind,
            geometry: Geometry::Line(line),
            height_m: None,
            attributes,
        });
    }
}

/// Asset attributes.
type Attributes = BTreeMap<String, String>;

/// The assets of the network, nodes first (junctions, reservoirs, tanks),
/// then links (pipes, pumps, valves).
fn assets(network: &EpanetNetwork, transform: &Transform, report: &mut ImportReport) -> Vec<Asset> {
    let units = network.flow_units;
    let m = units.metres_per_length_unit();
    let mm = units.millimetres_per_diameter_unit();
    let mut b = Builder {
        network,
        transform,
        report,
        placed: HashMap::new(),
        assets: Vec::new(),
    };

    for j in &network.junctions {
        let mut a = Attributes::new();
        let elevation_m = j.elevation * m;
        a.insert("elevation_m".to_owned(), decimal(elevation_m, 3));
        a.insert("base_demand".to_owned(), j.base_demand.to_string());
        a.insert("demand_unit".to_owned(), units.as_str().to_owned());
        a.insert(
            "base_demand_l_s".to_owned(),
            decimal(j.base_demand * units.litres_per_second(), 4),
        );
        if let Some(pattern) = network.junction_pattern(j)
            && let Some(multipliers) = network.patterns.get(pattern)
        {
            a.insert("pattern".to_owned(), pattern.to_owned());
            a.insert("demand_pattern".to_owned(), join(multipliers));
            a.insert(
                "pattern_step_s".to_owned(),
                network.pattern_timestep_s.to_string(),
            );
        }
        b.node(AssetKind::WaterJunction, &j.id, elevation_m, a);
    }
    for r in &network.reservoirs {
        let mut a = Attributes::new();
        let head_m = r.head * m;
        a.insert("head_m".to_owned(), decimal(head_m, 3));
        if let Some(pattern) = &r.pattern
            && let Some(multipliers) = network.patterns.get(pattern)
        {
            a.insert("pattern".to_owned(), pattern.clone());
            a.insert("head_pattern".to_owned(), join(multipliers));
            a.insert(
                "pattern_step_s".to_owned(),
                network.pattern_timestep_s.to_string(),
            );
        }
        b.node(AssetKind::WaterReservoir, &r.id, head_m, a);
    }
    for t in &network.tanks {
        let mut a = Attributes::new();
        let elevation_m = t.elevation * m;
        a.insert("elevation_m".to_owned(), decimal(elevation_m, 3));
        a.insert("init_level_m".to_owned(), decimal(t.init_level * m, 3));
        a.insert("min_level_m".to_owned(), decimal(t.min_level * m, 3));
        a.insert("max_level_m".to_owned(), decimal(t.max_level * m, 3));
        a.insert("diameter_m".to_owned(), decimal(t.diameter * m, 3));
        a.insert(
            "min_volume_m3".to_owned(),
            decimal(t.min_volume * m * m * m, 3),
        );
        if let Some(curve) = &t.volume_curve {
            a.insert("volume_curve".to_owned(), curve.clone());
        }
        b.node(AssetKind::WaterTank, &t.id, elevation_m, a);
    }

    for p in &network.pipes {
        let mut a = Attributes::new();
        a.insert("length_m".to_owned(), decimal(p.length * m, 2));
        a.insert("diameter_mm".to_owned(), decimal(p.diameter * mm, 1));
        a.insert("roughness".to_owned(), p.roughness.to_string());
        a.insert("minor_loss".to_owned(), p.minor_loss.to_string());
        a.insert("status".to_owned(), p.status.clone());
        b.link(AssetKind::WaterPipe, &p.id, [&p.node1, &p.node2], a);
    }
    for p in &network.pumps {
        let mut a = Attributes::new();
        let raw: Vec<String> = p
            .parameters
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        a.insert("parameters".to_owned(), raw.join(" "));
        for (keyword, value) in &p.parameters {
            let (key, value) = match keyword.as_str() {
                "HEAD" => ("head_curve", value.clone()),
                "POWER" => (
                    "power_kw",
                    value.parse::<f64>().map_or_else(
                        |_| value.clone(),
                        |v| decimal(v * units.kilowatts_per_power_unit(), 3),
                    ),
                ),
                "SPEED" => ("speed", value.clone()),
                _ => ("pattern", value.clone()),
            };
            a.insert(key.to_owned(), value);
        }
        b.link(AssetKind::WaterPump, &p.id, [&p.node1, &p.node2], a);
    }
    for v in &network.valves {
        let mut a = Attributes::new();
        a.insert("valve_type".to_owned(), v.valve_type.clone());
        a.insert("setting".to_owned(), v.setting.clone());
        a.insert("diameter_mm".to_owned(), decimal(v.diameter * mm, 1));
        a.insert("minor_loss".to_owned(), v.minor_loss.to_string());
        b.link(AssetKind::WaterValve, &v.id, [&v.node1, &v.node2], a);
    }
    b.assets
}

/// The word in asset ids: `epanet-<word>-<id>`.
fn kind_suffix(kind: AssetKind) -> &'static str {
    match kind {
        AssetKind::WaterJunction => "junction",
        AssetKind::WaterReservoir => "reservoir",
        AssetKind::WaterTank => "tank",
        AssetKind::WaterPipe => "pipe",
        AssetKind::WaterPump => "pump",
        AssetKind::WaterValve => "valve",
        other => other.as_str(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_trimmed() {
        assert_eq!(decimal(44.805_600_000_000_006, 3), "44.806");
        assert_eq!(decimal(2.0, 3), "2");
        assert_eq!(decimal(609.6, 1), "609.6");
        assert_eq!(decimal(-0.0001, 2), "0");
        assert_eq!(decimal(120.0, 0), "120");
    }
}
