//! The in-memory scene: what a scene file describes.

use std::collections::BTreeMap;
use std::path::Path;

use polis_protocol::{AssetKind, Domain, GeometryClass, Georeference};

use crate::error::{SceneError, SceneProblem};
use crate::{load, write};

/// The value of the `"format"` field of every scene file.
pub const SCENE_FORMAT: &str = "polis-scene";

/// The scene format version this build reads and writes. It is bumped on
/// every incompatible change; files with another version are refused.
pub const SCENE_VERSION: u32 = 1;

/// A georeferenced city: its assets and the sensors placed on them.
///
/// All positions are local east/north/up metres around
/// [`Scene::georeference`]. `format` and `version` are not stored: they are
/// checked on load and written on save.
#[derive(Debug, Clone, PartialEq)]
pub struct Scene {
    /// Short name of the scene (`"tiny"`, `"kamppi"`).
    pub name: String,
    /// Free text about the scene.
    pub description: Option<String>,
    /// Data sources and their licences, one entry each.
    pub attribution: Vec<String>,
    /// WGS84 origin of the local east/north/up frame.
    pub georeference: Georeference,
    /// The physical assets, in file order.
    pub assets: Vec<Asset>,
    /// The sensors, in file order.
    pub sensors: Vec<Sensor>,
}

/// One physical asset: a building, road, pipe, stop, ...
#[derive(Debug, Clone, PartialEq)]
pub struct Asset {
    /// Identifier, unique among the scene's assets.
    pub id: String,
    /// What the asset is; decides which [`Geometry`] it must have.
    pub kind: AssetKind,
    /// Where the asset is, in local east/north(/up) metres.
    pub geometry: Geometry,
    /// Height above ground, metres; required for buildings.
    pub height_m: Option<f64>,
    /// Free-form descriptive attributes (`name`, `usage`, `levels`, `class`).
    pub attributes: BTreeMap<String, String>,
}

/// The shape of an asset, in local metres around the scene origin.
#[derive(Debug, Clone, PartialEq)]
pub enum Geometry {
    /// A closed polygon of east/north points (`footprint_enu_m`); the ring
    /// closes implicitly, repeating the first point is allowed.
    Footprint(Vec<[f64; 2]>),
    /// An open polyline of east/north points (`line_enu_m`).
    Line(Vec<[f64; 2]>),
    /// A single east/north/up point (`position_enu_m`).
    Point([f64; 3]),
}

impl Geometry {
    /// The class of this geometry, to compare with
    /// [`AssetKind::geometry_class`].
    pub fn class(&self) -> GeometryClass {
        match self {
            Geometry::Footprint(_) => GeometryClass::Footprint,
            Geometry::Line(_) => GeometryClass::Line,
            Geometry::Point(_) => GeometryClass::Point,
        }
    }

    /// The JSON field this geometry is written as: `footprint_enu_m`,
    /// `line_enu_m` or `position_enu_m`.
    pub fn field_name(&self) -> &'static str {
        field_name(self.class())
    }

    /// Bounding box in the east/north plane: `(min, max)`, each
    /// `[east_m, north_m]`. An empty point list gives the empty box
    /// `([+inf, +inf], [-inf, -inf])`.
    pub fn bounds_enu_m(&self) -> ([f64; 2], [f64; 2]) {
        let mut min = [f64::INFINITY; 2];
        let mut max = [f64::NEG_INFINITY; 2];
        let mut add = |p: [f64; 2]| {
            for axis in 0..2 {
                min[axis] = min[axis].min(p[axis]);
                max[axis] = max[axis].max(p[axis]);
            }
        };
        match self {
            Geometry::Footprint(points) | Geometry::Line(points) => {
                points.iter().for_each(|p| add(*p));
            }
            Geometry::Point([east_m, north_m, _]) => add([*east_m, *north_m]),
        }
        (min, max)
    }
}

/// The JSON field name for a geometry class.
pub(crate) fn field_name(class: GeometryClass) -> &'static str {
    match class {
        GeometryClass::Footprint => "footprint_enu_m",
        GeometryClass::Line => "line_enu_m",
        GeometryClass::Point => "position_enu_m",
    }
}

/// A sensor: one measured quantity at one place, optionally attached to an
/// asset.
///
/// Serializes to and from the same JSON object as in a scene file.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sensor {
    /// Identifier, unique among the scene's sensors.
    pub id: String,
    /// The layer the sensor belongs to.
    pub domain: Domain,
    /// What is measured, `snake_case` (`active_power`, `flow`, `pm2_5`).
    pub quantity: String,
    /// Unit of the readings as written (`kW`, `l/s`, `ug/m3`, `dB(A)`).
    pub unit: String,
    /// Where the sensor is: local east/north/up metres.
    pub position_enu_m: [f64; 3],
    /// Id of the asset the sensor measures, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asset: Option<String>,
    /// True when readings are about a household or a person: they are never
    /// shown raw to anyone not entitled to them.
    #[serde(default)]
    pub personal: bool,
}

impl Scene {
    /// Parses and validates a scene from JSON text. `origin` names the text
    /// in error messages: a file name, or `<embedded>` and the like.
    ///
    /// The `"format"` and `"version"` fields are checked first; then the
    /// whole document is read (syntax and shape errors carry line and
    /// column), then [`Scene::validate`] runs and every problem is reported.
    pub fn from_json_str(text: &str, origin: &str) -> Result<Scene, SceneError> {
        load::from_json_str(text, origin)
    }

    /// Reads and validates a scene file; messages name the file by `path`.
    pub fn load(path: &Path) -> Result<Scene, SceneError> {
        let text = std::fs::read_to_string(path).map_err(|source| SceneError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Scene::from_json_str(&text, &path.display().to_string())
    }

    /// The scene as pretty JSON in the scene format, with `"format"` and
    /// `"version"` first; [`Scene::from_json_str`] reads it back to an equal
    /// scene when the scene is valid (non-finite numbers are written as
    /// `null`, which the loader refuses).
    pub fn to_json_string_pretty(&self) -> String {
        write::to_json_string_pretty(self)
    }

    /// Validates the scene, then writes it to `path` as
    /// [`Scene::to_json_string_pretty`]. An invalid scene is not written.
    pub fn save(&self, path: &Path) -> Result<(), SceneError> {
        let origin = path.display().to_string();
        self.validate()
            .map_err(|problems| SceneError::Invalid { origin, problems })?;
        std::fs::write(path, self.to_json_string_pretty()).map_err(|source| SceneError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Checks every rule of the format and returns all problems found, in
    /// document order, each located by a JSON path. See `scenes/README.md`
    /// for the rules.
    pub fn validate(&self) -> Result<(), Vec<SceneProblem>> {
        let problems = crate::validate::problems(self, &[]);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// The asset with this id, if any.
    pub fn asset(&self, id: &str) -> Option<&Asset> {
        self.assets.iter().find(|a| a.id == id)
    }

    /// The sensor with this id, if any.
    pub fn sensor(&self, id: &str) -> Option<&Sensor> {
        self.sensors.iter().find(|s| s.id == id)
    }

    /// Bounding box of all assets and sensors in the east/north plane,
    /// `(min, max)`; `None` for a scene with neither.
    pub fn bounds_enu_m(&self) -> Option<([f64; 2], [f64; 2])> {
        let boxes =
            self.assets
                .iter()
                .map(|a| a.geometry.bounds_enu_m())
                .chain(self.sensors.iter().map(|s| {
                    let p = [s.position_enu_m[0], s.position_enu_m[1]];
                    (p, p)
                }));
        let mut out: Option<([f64; 2], [f64; 2])> = None;
        for (lo, hi) in boxes {
            if lo[0] > hi[0] || lo[1] > hi[1] {
                continue; // empty geometry
            }
            out = Some(match out {
                None => (lo, hi),
                Some((min, max)) => (
                    [min[0].min(lo[0]), min[1].min(lo[1])],
                    [max[0].max(hi[0]), max[1].max(hi[1])],
                ),
            });
        }
        out
    }
}
