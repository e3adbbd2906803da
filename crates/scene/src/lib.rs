//! Polis scene format: a georeferenced city (buildings, networks, sensors) as versioned JSON.
//!
//! A scene file is one JSON object with a `"format": "polis-scene"` tag and a
//! `"version"`, a [`Georeference`] (the WGS84 origin of a local
//! east/north/up frame in metres), a list of [`Asset`]s (buildings, roads,
//! pipes, stops, ...) and a list of [`Sensor`]s placed on or near them.
//! `scenes/README.md` in the repository documents every field.
//!
//! * [`Scene::load`] / [`Scene::from_json_str`] read and validate a scene;
//!   problems come back as a [`SceneError`] that names the file and either a
//!   line and column (malformed JSON, unknown fields, wrong types) or a JSON
//!   path such as `assets[3].footprint_enu_m` (semantic problems, all of them
//!   at once).
//! * [`Scene::save`] / [`Scene::to_json_string_pretty`] write the same format
//!   back, readable by humans and by the loader.
//!
//! The vocabulary ([`Domain`], [`AssetKind`], [`Georeference`]) is shared with
//! the wire protocol and re-exported from `polis_protocol`.

mod error;
pub mod geometry;
mod limits;
mod load;
mod model;
mod validate;
mod write;

#[cfg(test)]
mod tests;

pub use error::{SceneError, SceneProblem};
pub use limits::{
    MAX_ASSET_WIRE_BYTES, MAX_ATTRIBUTE_KEY_BYTES, MAX_ATTRIBUTE_VALUE_BYTES, MAX_ATTRIBUTES,
    MAX_FOOTPRINT_VERTICES, MAX_ID_BYTES, MAX_LINE_VERTICES, MAX_NAME_BYTES,
};
pub use model::{Asset, Geometry, SCENE_FORMAT, SCENE_VERSION, Scene, Sensor};

// Re-exported for convenience: the types a scene is made of.
pub use polis_protocol::{AssetKind, Domain, GeometryClass, Georeference};
