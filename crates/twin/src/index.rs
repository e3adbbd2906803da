//! The spatial index: which assets and sensors lie in an area.

use bevy::prelude::*;
use rstar::primitives::{GeomWithData, Rectangle};
use rstar::{AABB, RTree};

/// What an index entry points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ItemRef {
    /// An asset handle.
    Asset(u32),
    /// A sensor handle.
    Sensor(u32),
}

/// One entry of the index: the bounds of an item in local east/north metres,
/// stored as `f32` (millimetres within 100 km of the scene's origin; half the
/// memory of `f64` bounds). Rounding is monotonic, so an item that meets a
/// query box in `f64` still meets it.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexedItem(GeomWithData<Rectangle<[f32; 2]>, ItemRef>);

fn f32_point([east_m, north_m]: [f64; 2]) -> [f32; 2] {
    [east_m as f32, north_m as f32]
}

impl IndexedItem {
    /// An asset with bounds `min`..`max` (east, north metres).
    pub fn asset(handle: u32, min: [f64; 2], max: [f64; 2]) -> Self {
        Self(GeomWithData::new(
            Rectangle::from_corners(f32_point(min), f32_point(max)),
            ItemRef::Asset(handle),
        ))
    }

    /// A sensor with bounds `min`..`max` (east, north metres).
    pub fn sensor(handle: u32, min: [f64; 2], max: [f64; 2]) -> Self {
        Self(GeomWithData::new(
            Rectangle::from_corners(f32_point(min), f32_point(max)),
            ItemRef::Sensor(handle),
        ))
    }

    /// What the entry points at.
    pub fn item(&self) -> ItemRef {
        self.0.data
    }
}

impl rstar::RTreeObject for IndexedItem {
    type Envelope = AABB<[f32; 2]>;

    fn envelope(&self) -> Self::Envelope {
        self.0.envelope()
    }
}

/// Node sizes of the index: larger than rstar's default (6), so fewer inner
/// nodes, each with its own allocation, per indexed item. The index is
/// bulk-loaded once and never re-balanced by insertion.
struct IndexParams;

impl rstar::RTreeParams for IndexParams {
    const MIN_SIZE: usize = 8;
    const MAX_SIZE: usize = 16;
    const REINSERTION_COUNT: usize = 4;
    type DefaultInsertionStrategy = rstar::RStarInsertionStrategy;
}

/// An R-tree over the bounds of every asset and sensor.
#[derive(Resource, Debug)]
pub struct SpatialIndex {
    tree: RTree<IndexedItem, IndexParams>,
}

impl SpatialIndex {
    /// Builds the index in one pass (much faster than inserting one by one).
    pub fn bulk_load(items: Vec<IndexedItem>) -> Self {
        Self {
            tree: RTree::bulk_load_with_params(items),
        }
    }

    /// Every item whose bounds intersect the box `min`..`max` (east, north
    /// metres), unsorted.
    pub fn items_in_area_unsorted(
        &self,
        min: [f64; 2],
        max: [f64; 2],
    ) -> impl Iterator<Item = ItemRef> + '_ {
        self.tree
            .locate_in_envelope_intersecting(AABB::from_corners(f32_point(min), f32_point(max)))
            .map(IndexedItem::item)
    }

    /// Number of indexed items.
    pub fn len(&self) -> usize {
        self.tree.size()
    }

    /// True when nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.tree.size() == 0
    }
}
