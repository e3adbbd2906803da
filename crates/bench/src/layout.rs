//! Where the benchmarks' sensors, tiles and viewers are: the tile grid that
//! gives MQTT its topics and Polis viewers their areas, and the order in
//! which sensors change.

use polis_protocol::{GeoBox, Georeference};

use crate::scene::GRID_SPACING_M as SPACING_M;

/// Where sensors, tiles and viewers are.
pub(crate) struct Layout {
    pub(crate) sensors: usize,
    /// Sensors per side of the grid.
    pub(crate) side: usize,
    /// Sensors per side of a tile.
    pub(crate) tile_side: usize,
    /// Tiles per side.
    pub(crate) tiles: usize,
    /// Each viewer's centre tile; it watches the 3 × 3 tiles around it.
    viewer_tiles: Vec<(usize, usize)>,
    /// Viewers watching each tile, row-major.
    tile_watchers: Vec<u32>,
    georeference: Georeference,
}

impl Layout {
    pub(crate) fn new(
        sensors: usize,
        tiles: usize,
        viewers: usize,
        georeference: Georeference,
    ) -> anyhow::Result<Self> {
        let side = (sensors as f64).sqrt().ceil() as usize;
        let tile_side = side.div_ceil(tiles.max(1)).max(1);
        let tiles = side.div_ceil(tile_side);
        anyhow::ensure!(
            tiles >= 3,
            "need at least 3 tiles per side (got {tiles}); use more sensors or --tiles"
        );
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut viewer_tiles = Vec::with_capacity(viewers);
        let mut tile_watchers = vec![0u32; tiles * tiles];
        for _ in 0..viewers {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            // Centre tiles away from the edge, so every area has 3 × 3 tiles.
            let inner = (tiles - 2) as u64;
            let tx = 1 + (seed % inner) as usize;
            let ty = 1 + ((seed >> 32) % inner) as usize;
            viewer_tiles.push((tx, ty));
            for y in ty - 1..=ty + 1 {
                for x in tx - 1..=tx + 1 {
                    tile_watchers[y * tiles + x] += 1;
                }
            }
        }
        Ok(Self {
            sensors,
            side,
            tile_side,
            tiles,
            viewer_tiles,
            tile_watchers,
            georeference,
        })
    }

    fn tile_of(&self, sensor: usize) -> (usize, usize) {
        let (row, col) = (sensor / self.side, sensor % self.side);
        (col / self.tile_side, row / self.tile_side)
    }

    /// Viewers that see `sensor`.
    pub(crate) fn watchers(&self, sensor: usize) -> u64 {
        let (tx, ty) = self.tile_of(sensor);
        u64::from(
            self.tile_watchers
                .get(ty * self.tiles + tx)
                .copied()
                .unwrap_or(0),
        )
    }

    /// The MQTT topic of `sensor`: its tile, then its id.
    pub(crate) fn topic(&self, sensor: usize) -> String {
        let (tx, ty) = self.tile_of(sensor);
        format!("city/{tx}/{ty}/s{sensor}")
    }

    /// The MQTT topic filters of `viewer`: its 3 × 3 tiles.
    pub(crate) fn filters(&self, viewer: usize) -> Vec<String> {
        let (tx, ty) = self.viewer_tiles[viewer];
        let mut filters = Vec::with_capacity(9);
        for y in ty - 1..=ty + 1 {
            for x in tx - 1..=tx + 1 {
                filters.push(format!("city/{x}/{y}/#"));
            }
        }
        filters
    }

    /// The Polis area of `viewer`: the same 3 × 3 tiles, with half a grid
    /// spacing of margin so no sensor lies on its edge.
    pub(crate) fn area(&self, viewer: usize) -> GeoBox {
        let (tx, ty) = self.viewer_tiles[viewer];
        let tile_m = self.tile_side as f64 * SPACING_M;
        let min = [
            (tx - 1) as f64 * tile_m - SPACING_M / 2.0,
            (ty - 1) as f64 * tile_m - SPACING_M / 2.0,
        ];
        let max = [
            (tx + 2) as f64 * tile_m - SPACING_M / 2.0,
            (ty + 2) as f64 * tile_m - SPACING_M / 2.0,
        ];
        GeoBox::from_enu(&self.georeference, min, max)
    }

    /// The whole city, with half a grid spacing of margin.
    pub(crate) fn whole_area(&self) -> GeoBox {
        let side_m = self.side as f64 * SPACING_M;
        GeoBox::from_enu(
            &self.georeference,
            [-SPACING_M / 2.0, -SPACING_M / 2.0],
            [side_m - SPACING_M / 2.0, side_m - SPACING_M / 2.0],
        )
    }

    /// A corner of the city holding one sensor.
    pub(crate) fn corner_area(&self) -> GeoBox {
        GeoBox::from_enu(
            &self.georeference,
            [-SPACING_M / 2.0, -SPACING_M / 2.0],
            [SPACING_M / 2.0, SPACING_M / 2.0],
        )
    }

    /// Mean sensors in a viewer's area.
    pub(crate) fn mean_area_sensors(&self) -> f64 {
        if self.viewer_tiles.is_empty() {
            return 0.0;
        }
        let watched: u64 = (0..self.sensors).map(|s| self.watchers(s)).sum();
        watched as f64 / self.viewer_tiles.len() as f64
    }
}

/// The order in which sensors change: a fixed permutation, so that a sensor
/// changes once per pass (every `sensors / rate` seconds).
pub(crate) fn change_order(sensors: usize) -> Vec<u32> {
    fn gcd(a: usize, b: usize) -> usize {
        if b == 0 { a } else { gcd(b, a % b) }
    }
    let mut stride = 7_919usize;
    while sensors > 1 && gcd(stride, sensors) != 1 {
        stride += 2;
    }
    (0..sensors)
        .map(|k| ((k * stride) % sensors.max(1)) as u32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scene::grid_scene;

    #[test]
    fn layout_watchers_match_filters_and_areas() -> anyhow::Result<()> {
        let georeference = grid_scene(1).georeference;
        let layout = Layout::new(10_000, 10, 20, georeference)?;
        assert_eq!((layout.side, layout.tile_side, layout.tiles), (100, 10, 10));
        // Each viewer's filters cover exactly the sensors counted as watched.
        let watched: u64 = (0..layout.sensors).map(|s| layout.watchers(s)).sum();
        let mut by_filters = 0u64;
        for viewer in 0..20 {
            let filters = layout.filters(viewer);
            for sensor in 0..layout.sensors {
                let topic = layout.topic(sensor);
                if filters
                    .iter()
                    .any(|f| topic.starts_with(f.trim_end_matches('#')))
                {
                    by_filters += 1;
                }
            }
        }
        assert_eq!(watched, by_filters);
        assert_eq!(watched, 20 * 900);
        Ok(())
    }

    #[test]
    fn change_order_is_a_permutation() {
        let mut order = change_order(10_000);
        order.sort_unstable();
        assert!(order.iter().enumerate().all(|(i, &s)| i as u32 == s));
    }
}
