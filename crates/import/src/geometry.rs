//! Import's own geometry step, rounding to the centimetre; everything else
//! is the scene format's geometry (`polis_scene::geometry`), so imports keep
//! exactly what the format accepts.

pub(crate) use polis_scene::geometry::{
    area_m2, centroid, is_valid_line, is_valid_ring, midpoint, polyline_length_m as length_m,
    ring_contains,
};

/// Coordinates are rounded to this step, metres (1 cm): finer digits only
/// bloat scene files.
const ROUNDING_M: f64 = 0.01;

/// `value_m` rounded to the centimetre.
pub(crate) fn round_m(value_m: f64) -> f64 {
    (value_m / ROUNDING_M).round() * ROUNDING_M
}

/// A point rounded to the centimetre.
pub(crate) fn round_point(point: [f64; 2]) -> [f64; 2] {
    [round_m(point[0]), round_m(point[1])]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_to_the_centimetre() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(close(round_m(1.234_9), 1.23));
        let [east, north] = round_point([-0.005_1, 2.006]);
        assert!(close(east, -0.01) && close(north, 2.01));
    }
}
