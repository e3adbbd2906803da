//! Plane geometry on local east/north metres: areas, centroids, lengths.

/// Coordinates are rounded to this step, metres (1 cm): finer digits only
/// bloat scene files.
const ROUNDING_M: f64 = 0.01;

/// Smallest footprint area kept, square metres: the scene format's own.
pub(crate) use polis_scene::geometry::MIN_FOOTPRINT_AREA_M2 as MIN_AREA_M2;
/// The scene format's definitions, so imports keep exactly what it accepts.
pub(crate) use polis_scene::geometry::{distinct_points, signed_area_m2};

/// `value_m` rounded to the centimetre.
pub(crate) fn round_m(value_m: f64) -> f64 {
    (value_m / ROUNDING_M).round() * ROUNDING_M
}

/// A point rounded to the centimetre.
pub(crate) fn round_point(point: [f64; 2]) -> [f64; 2] {
    [round_m(point[0]), round_m(point[1])]
}

/// Area of the ring, square metres.
pub(crate) fn area_m2(ring: &[[f64; 2]]) -> f64 {
    signed_area_m2(ring).abs()
}

/// True when the ring is a usable footprint: at least 3 distinct points
/// and a non-zero area.
pub(crate) fn is_valid_ring(ring: &[[f64; 2]]) -> bool {
    distinct_points(ring, 3) >= 3 && area_m2(ring) >= MIN_AREA_M2
}

/// True when the polyline has at least 2 distinct points.
pub(crate) fn is_valid_line(line: &[[f64; 2]]) -> bool {
    distinct_points(line, 2) >= 2
}

/// Area centroid of the ring; the mean of its points when the area is
/// (nearly) zero; `None` for an empty ring.
pub(crate) fn centroid(ring: &[[f64; 2]]) -> Option<[f64; 2]> {
    let first = *ring.first()?;
    let mut twice_area = 0.0;
    let (mut cx, mut cy) = (0.0, 0.0);
    for (a, b) in ring.iter().zip(ring.iter().cycle().skip(1)) {
        let (ax, ay) = (a[0] - first[0], a[1] - first[1]);
        let (bx, by) = (b[0] - first[0], b[1] - first[1]);
        let cross = ax * by - bx * ay;
        twice_area += cross;
        cx += (ax + bx) * cross;
        cy += (ay + by) * cross;
    }
    if twice_area.abs() < 2.0 * MIN_AREA_M2 {
        let n = ring.len() as f64;
        let sx: f64 = ring.iter().map(|p| p[0]).sum();
        let sy: f64 = ring.iter().map(|p| p[1]).sum();
        return Some([sx / n, sy / n]);
    }
    let scale = 1.0 / (3.0 * twice_area);
    Some([first[0] + cx * scale, first[1] + cy * scale])
}

/// Length of the polyline, metres.
pub(crate) fn length_m(line: &[[f64; 2]]) -> f64 {
    line.windows(2).map(|w| distance_m(w[0], w[1])).sum()
}

/// Distance between two points, metres.
pub(crate) fn distance_m(a: [f64; 2], b: [f64; 2]) -> f64 {
    (a[0] - b[0]).hypot(a[1] - b[1])
}

/// The point `along_m` metres along the polyline from its start, clamped
/// to its ends; `None` for an empty line.
pub(crate) fn point_along(line: &[[f64; 2]], along_m: f64) -> Option<[f64; 2]> {
    let mut remaining = along_m.max(0.0);
    for w in line.windows(2) {
        let step = distance_m(w[0], w[1]);
        if step > 0.0 && remaining <= step {
            let t = remaining / step;
            return Some([
                w[0][0] + (w[1][0] - w[0][0]) * t,
                w[0][1] + (w[1][1] - w[0][1]) * t,
            ]);
        }
        remaining -= step;
    }
    line.last().copied()
}

/// The point halfway along the polyline.
pub(crate) fn midpoint(line: &[[f64; 2]]) -> Option<[f64; 2]> {
    point_along(line, length_m(line) / 2.0)
}

/// True when `point` lies inside the implicitly closed ring (even-odd
/// rule).
pub(crate) fn ring_contains(ring: &[[f64; 2]], point: [f64; 2]) -> bool {
    let mut inside = false;
    for (a, b) in ring.iter().zip(ring.iter().cycle().skip(1)) {
        if (a[1] > point[1]) != (b[1] > point[1]) {
            let x = a[0] + (point[1] - a[1]) / (b[1] - a[1]) * (b[0] - a[0]);
            if point[0] < x {
                inside = !inside;
            }
        }
    }
    inside
}

#[cfg(test)]
mod tests {
    use super::*;

    const SQUARE: [[f64; 2]; 4] = [[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0]];

    #[test]
    fn area_and_centroid_of_a_square() {
        assert_eq!(signed_area_m2(&SQUARE), 100.0);
        let mut reversed = SQUARE.to_vec();
        reversed.reverse();
        assert_eq!(signed_area_m2(&reversed), -100.0);
        assert_eq!(centroid(&SQUARE), Some([5.0, 5.0]));
        assert_eq!(centroid(&reversed), Some([5.0, 5.0]));
    }

    #[test]
    fn degenerate_rings_are_refused() {
        assert!(is_valid_ring(&SQUARE));
        assert!(!is_valid_ring(&[[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]));
        assert!(!is_valid_ring(&[[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]]));
        assert!(!is_valid_ring(&[]));
        assert_eq!(centroid(&[]), None);
    }

    #[test]
    fn lengths_and_points_along() {
        let line = [[0.0, 0.0], [3.0, 4.0], [3.0, 10.0]];
        assert_eq!(length_m(&line), 11.0);
        assert_eq!(midpoint(&line), Some([3.0, 4.5]));
        assert_eq!(point_along(&line, -1.0), Some([0.0, 0.0]));
        assert_eq!(point_along(&line, 100.0), Some([3.0, 10.0]));
        assert_eq!(point_along(&[], 1.0), None);
    }

    #[test]
    fn containment() {
        assert!(ring_contains(&SQUARE, [5.0, 5.0]));
        assert!(!ring_contains(&SQUARE, [15.0, 5.0]));
    }
}
