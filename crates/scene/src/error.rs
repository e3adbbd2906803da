//! Errors from reading and writing scene files.

use std::fmt;
use std::path::PathBuf;

use thiserror::Error;

/// One semantic problem in a scene, located by a JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SceneProblem {
    /// Where the problem is, as a JSON path: `assets[3].footprint_enu_m`,
    /// `sensors[0].asset`, `georeference.origin_lat_deg`.
    pub path: String,
    /// What is wrong, in words.
    pub message: String,
}

impl SceneProblem {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> SceneProblem {
        SceneProblem {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for SceneProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Why a scene could not be read or written.
#[derive(Debug, Error)]
pub enum SceneError {
    /// The file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The text is not well-formed JSON, or does not have the shape of a
    /// scene (unknown field, missing field, wrong type, unknown kind).
    #[error("{origin}:{line}:{column}: {message}")]
    Syntax {
        /// The file name (or `<embedded>` and the like) used in messages.
        origin: String,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What the parser expected or found.
        message: String,
    },
    /// The `"format"` field is missing or is not `"polis-scene"`.
    #[error("{origin}: not a Polis scene: \"format\" is {found}, expected \"polis-scene\"")]
    Format {
        /// The file name used in messages.
        origin: String,
        /// The `"format"` value found, as JSON text (`"geojson"`, `3`), or
        /// `missing`.
        found: String,
    },
    /// The `"version"` is not one this loader reads.
    #[error(
        "{origin}: scene format version {found} is not supported (this build reads version {supported})"
    )]
    Version {
        /// The file name used in messages.
        origin: String,
        /// The version found in the file.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// The scene parsed but breaks one or more rules; every problem found is
    /// listed.
    #[error("{}", display_problems(origin, problems))]
    Invalid {
        /// The file name used in messages.
        origin: String,
        /// Every problem found, in document order.
        problems: Vec<SceneProblem>,
    },
}

/// One `origin: path: message` line per problem.
fn display_problems(origin: &str, problems: &[SceneProblem]) -> String {
    problems
        .iter()
        .map(|p| format!("{origin}: {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl SceneError {
    /// A syntax error from a `serde_json` error, without the `at line L
    /// column C` suffix that serde_json appends (it is in the fields instead).
    pub(crate) fn from_json(origin: &str, err: &serde_json::Error) -> SceneError {
        let (line, column) = (err.line(), err.column());
        let full = err.to_string();
        let suffix = format!(" at line {line} column {column}");
        let message = full.strip_suffix(&suffix).unwrap_or(&full).to_owned();
        SceneError::Syntax {
            origin: origin.to_owned(),
            line,
            column,
            message,
        }
    }
}
