//! The spatial index: which assets and sensors lie in an area.
//!
//! An asset's entry bounds the asset and the sensors that share it (those
//! on or near a footprint or point asset), so a building and its meters
//! cost one entry; a query checks each of them against the area itself.
//! Other sensors and aggregates have entries of their own.

use bevy::prelude::*;
use rstar::{AABB, Envelope, RTree};

use crate::city::{AssetTable, SensorTable};

/// An asset or a sensor, by handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ItemRef {
    /// An asset handle.
    Asset(u32),
    /// A sensor handle.
    Sensor(u32),
}

/// One entry of the index: the bounds of an item in local east/north metres,
/// as `f32` like the tables' coordinates (millimetres within 100 km of the
/// scene's origin; half the memory of `f64` bounds). Query boxes are rounded
/// to `f32` the same way, and rounding is monotonic, so an item that meets a
/// query box in `f64` still meets it. An asset's entry also bounds the
/// sensors that share it and keeps the asset's own bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexedItem {
    envelope: AABB<[f32; 2]>,
    own: AABB<[f32; 2]>,
    item: ItemRef,
}

fn f32_point([east_m, north_m]: [f64; 2]) -> [f32; 2] {
    [east_m as f32, north_m as f32]
}

impl IndexedItem {
    /// An asset with bounds `min`..`max` and the sensors that share it at
    /// `sensors_at` (east, north metres).
    pub fn asset(
        handle: u32,
        min: [f32; 2],
        max: [f32; 2],
        sensors_at: impl IntoIterator<Item = [f32; 2]>,
    ) -> Self {
        let own = AABB::from_corners(min, max);
        let mut envelope = own;
        for point in sensors_at {
            envelope.merge(&AABB::from_point(point));
        }
        Self {
            envelope,
            own,
            item: ItemRef::Asset(handle),
        }
    }

    /// A sensor with an entry of its own (or an aggregate) with bounds
    /// `min`..`max` (east, north metres).
    pub fn sensor(handle: u32, min: [f32; 2], max: [f32; 2]) -> Self {
        let own = AABB::from_corners(min, max);
        Self {
            envelope: own,
            own,
            item: ItemRef::Sensor(handle),
        }
    }

    /// What the entry points at.
    pub fn item(&self) -> ItemRef {
        self.item
    }
}

impl rstar::RTreeObject for IndexedItem {
    type Envelope = AABB<[f32; 2]>;

    fn envelope(&self) -> Self::Envelope {
        self.envelope
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

    /// The entries whose bounds meet the box `min`..`max` (east, north
    /// metres), unsorted. An asset's entry stands for the asset and the
    /// sensors on it, some of which may lie outside the box; see
    /// [`Self::items_in_area`].
    pub fn entries_in_area(
        &self,
        min: [f64; 2],
        max: [f64; 2],
    ) -> impl Iterator<Item = ItemRef> + '_ {
        self.tree
            .locate_in_envelope_intersecting(AABB::from_corners(f32_point(min), f32_point(max)))
            .map(IndexedItem::item)
    }

    /// Every asset whose shape's box and every sensor whose position meets
    /// the box `min`..`max` (east, north metres), unsorted. Entries inside
    /// the box are taken whole; only those across its edge are checked item
    /// by item.
    pub fn items_in_area<'a>(
        &'a self,
        min: [f64; 2],
        max: [f64; 2],
        assets: &'a AssetTable,
        sensors: &'a SensorTable,
    ) -> impl Iterator<Item = ItemRef> + 'a {
        let area = AABB::from_corners(f32_point(min), f32_point(max));
        self.tree
            .locate_in_envelope_intersecting(area)
            .flat_map(move |entry| {
                let whole = area.contains_envelope(&entry.envelope);
                let (own, placed) = match entry.item {
                    ItemRef::Sensor(handle) => (Some(ItemRef::Sensor(handle)), &[][..]),
                    ItemRef::Asset(handle) => (
                        (whole || area.intersects(&entry.own)).then_some(ItemRef::Asset(handle)),
                        assets.sensors_indexed_with(handle),
                    ),
                };
                own.into_iter().chain(
                    placed
                        .iter()
                        .filter(move |&&s| {
                            whole
                                || sensors
                                    .position_enu_m(s)
                                    .is_some_and(|p| area.contains_point(&[p.x, p.y]))
                        })
                        .map(|&s| ItemRef::Sensor(s)),
                )
            })
    }

    /// The entries whose bounds, widened by `reach_m`, the ray from
    /// `origin` along `direction` passes through between `from_m` and
    /// `to_m` along it (east, north metres; `direction` may be shorter than
    /// a unit, as the ground projection of a 3D direction is), unsorted,
    /// each with how far along the ray it is entered.
    pub fn entries_along(
        &self,
        origin: [f32; 2],
        direction: [f32; 2],
        [from_m, to_m]: [f32; 2],
        reach_m: f32,
    ) -> impl Iterator<Item = (f32, ItemRef)> + '_ {
        let segment = Segment {
            origin,
            direction,
            from_m,
            to_m,
            reach_m,
        };
        self.tree
            .locate_with_selection_function(segment)
            .filter_map(move |entry| Some((segment.enters(&entry.envelope)?, entry.item)))
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

/// A stretch of a ray on the ground as an R-tree selection: the nodes and
/// entries whose widened bounds it passes through (the slab test).
#[derive(Debug, Clone, Copy)]
struct Segment {
    origin: [f32; 2],
    direction: [f32; 2],
    from_m: f32,
    to_m: f32,
    reach_m: f32,
}

/// The part of the stretch `[enter, leave]` of a ray (at `from`, moving by
/// `step` per unit along it, on one axis) that lies within `lo..=hi` on
/// that axis, if any: one axis of the slab test.
pub(crate) fn clip_to_slab(
    [enter, leave]: [f32; 2],
    from: f32,
    step: f32,
    [lo, hi]: [f32; 2],
) -> Option<[f32; 2]> {
    if step == 0.0 {
        return (lo <= from && from <= hi && enter <= leave).then_some([enter, leave]);
    }
    let (a, b) = ((lo - from) / step, (hi - from) / step);
    let (enter, leave) = (enter.max(a.min(b)), leave.min(a.max(b)));
    (enter <= leave).then_some([enter, leave])
}

impl Segment {
    /// How far along the ray it enters the widened `envelope`, if it does.
    fn enters(&self, envelope: &AABB<[f32; 2]>) -> Option<f32> {
        let (lower, upper) = (envelope.lower(), envelope.upper());
        let mut stretch = [self.from_m, self.to_m];
        for axis in 0..2 {
            stretch = clip_to_slab(
                stretch,
                self.origin[axis],
                self.direction[axis],
                [lower[axis] - self.reach_m, upper[axis] + self.reach_m],
            )?;
        }
        Some(stretch[0])
    }
}

/// Entries are tested once, where [`SpatialIndex::entries_along`] also
/// learns where the ray enters them; only nodes are tested here.
impl rstar::SelectionFunction<IndexedItem> for Segment {
    fn should_unpack_parent(&self, envelope: &AABB<[f32; 2]>) -> bool {
        self.enters(envelope).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(origin: [f32; 2], direction: [f32; 2], to_m: f32) -> Segment {
        Segment {
            origin,
            direction,
            from_m: 0.0,
            to_m,
            reach_m: 1.0,
        }
    }

    #[test]
    fn a_segment_enters_the_boxes_it_crosses_within_its_length_and_reach() {
        let unit = AABB::from_corners([10.0, 10.0], [20.0, 20.0]);
        // Along east through the box (entering its reach at 9 m), and short of it.
        assert_eq!(
            segment([0.0, 15.0], [1.0, 0.0], 100.0).enters(&unit),
            Some(9.0)
        );
        assert_eq!(segment([0.0, 15.0], [1.0, 0.0], 8.0).enters(&unit), None);
        assert_eq!(
            segment([0.0, 15.0], [1.0, 0.0], 9.5).enters(&unit),
            Some(9.0)
        );
        // A stretch that starts inside the box enters where it starts.
        let mut inside = segment([0.0, 15.0], [1.0, 0.0], 100.0);
        inside.from_m = 12.0;
        assert_eq!(inside.enters(&unit), Some(12.0));
        inside.from_m = 30.0;
        assert_eq!(inside.enters(&unit), None, "starts beyond the box");
        // Pointing away.
        assert_eq!(segment([0.0, 15.0], [-1.0, 0.0], 100.0).enters(&unit), None);
        // Straight down (no ground direction): only above the box or its reach.
        assert_eq!(
            segment([15.0, 15.0], [0.0, 0.0], 100.0).enters(&unit),
            Some(0.0)
        );
        assert!(
            segment([20.5, 15.0], [0.0, 0.0], 100.0)
                .enters(&unit)
                .is_some()
        );
        assert!(
            segment([22.0, 15.0], [0.0, 0.0], 100.0)
                .enters(&unit)
                .is_none()
        );
        // Diagonal past the corner, beyond reach, and through the box.
        assert!(
            segment([0.0, 25.0], [0.6, 0.6], 100.0)
                .enters(&unit)
                .is_none()
        );
        assert!(
            segment([0.0, 5.0], [0.6, 0.6], 100.0)
                .enters(&unit)
                .is_some()
        );
    }
}
