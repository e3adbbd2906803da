//! Placing OSM nodes in the scene's local frame.

use std::collections::HashMap;

use polis_protocol::Georeference;

use crate::geometry::{is_valid_line, is_valid_ring, round_point};

/// Node positions in local east/north metres around the scene origin.
pub(crate) struct Frame<'a> {
    georeference: Georeference,
    nodes: &'a HashMap<i64, [f64; 2]>,
}

/// Points of a node sequence that are in the extract, and how many were
/// not.
pub(crate) struct Projected {
    /// East/north points, rounded to the centimetre, without consecutive
    /// repeats.
    pub(crate) points: Vec<[f64; 2]>,
    /// Number of node references not found in the extract.
    pub(crate) missing: usize,
}

impl<'a> Frame<'a> {
    /// A frame around `georeference` for the nodes read.
    pub(crate) fn new(georeference: Georeference, nodes: &'a HashMap<i64, [f64; 2]>) -> Frame<'a> {
        Frame {
            georeference,
            nodes,
        }
    }

    /// The local position of a node, `None` when it is not in the extract.
    pub(crate) fn point(&self, id: i64) -> Option<[f64; 2]> {
        let [lon_deg, lat_deg] = *self.nodes.get(&id)?;
        Some(round_point(
            self.georeference.enu_from_lonlat(lon_deg, lat_deg),
        ))
    }

    /// The positions of the nodes that are in the extract, in order.
    pub(crate) fn points(&self, ids: &[i64]) -> Projected {
        let mut points = Vec::with_capacity(ids.len());
        let mut missing = 0;
        for &id in ids {
            match self.point(id) {
                Some(p) => points.push(p),
                None => missing += 1,
            }
        }
        points.dedup();
        Projected { points, missing }
    }
}

/// Why a shape was not usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ShapeProblem {
    /// Too few nodes remained after dropping those missing from the extract.
    MissingNodes,
    /// The shape is degenerate even with all its nodes.
    Degenerate,
}

impl Projected {
    /// A footprint ring from a closed node sequence: the closing repeat is
    /// dropped; at least 3 distinct points and a non-zero area are needed.
    pub(crate) fn into_ring(mut self) -> Result<(Vec<[f64; 2]>, usize), ShapeProblem> {
        if self.points.len() > 1 && self.points.first() == self.points.last() {
            self.points.pop();
        }
        if is_valid_ring(&self.points) {
            Ok((self.points, self.missing))
        } else {
            Err(self.problem())
        }
    }

    /// A polyline: at least 2 distinct points are needed.
    pub(crate) fn into_line(self) -> Result<(Vec<[f64; 2]>, usize), ShapeProblem> {
        if is_valid_line(&self.points) {
            Ok((self.points, self.missing))
        } else {
            Err(self.problem())
        }
    }

    fn problem(&self) -> ShapeProblem {
        if self.missing > 0 {
            ShapeProblem::MissingNodes
        } else {
            ShapeProblem::Degenerate
        }
    }
}
