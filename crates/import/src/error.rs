//! Why an import failed.

use std::path::PathBuf;

use polis_scene::SceneProblem;
use thiserror::Error;

/// Why an import could not be done. Every variant names the input it is
/// about; problems in single elements of otherwise good data are not errors
/// but counted in [`ImportReport::skipped`](crate::ImportReport::skipped).
#[derive(Debug, Error)]
pub enum ImportError {
    /// The file could not be opened or read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a readable OpenStreetMap PBF file (truncated,
    /// corrupt, empty or of another format).
    #[error("{}: not a readable OpenStreetMap PBF file: {message}", path.display())]
    Osm {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The EPANET input is malformed at a given line.
    #[error("{}:{line}: {message}", path.display())]
    Epanet {
        /// The file (or the origin name given to
        /// [`parse_epanet_str`](crate::parse_epanet_str)).
        path: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The options of an import are unusable (a storey height or scale
    /// that is not a positive number, say).
    #[error("invalid import options: {message}")]
    InvalidOptions {
        /// What is wrong.
        message: String,
    },
    /// An imported asset would reuse the id of an asset already in the scene
    /// (the same network added twice, say). The scene is left unchanged.
    #[error("asset id {id:?} is already used in the scene")]
    DuplicateAsset {
        /// The id in conflict.
        id: String,
    },
    /// The imported scene breaks rules that no single asset is to blame for
    /// (an empty scene name, say).
    #[error("the imported scene is invalid: {}", display_problems(problems))]
    InvalidScene {
        /// Every problem found.
        problems: Vec<SceneProblem>,
    },
}

/// The problems joined with `; `.
fn display_problems(problems: &[SceneProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
