//! Plane geometry on local east/north metres, the one place the scene
//! format's rules are stated in: areas, centroids, lengths, points along
//! and projections onto polylines. The crates that build or drive scenes
//! (`polis-import`, `polis-replay`) use these, so they keep exactly what the
//! format accepts. (Shapes on the wire are `f32` and have their own
//! triangulation in `polis_protocol::shape`, which the viewer and the
//! twin's picking share.)

/// Smallest footprint area accepted, square metres: anything smaller is a
/// degenerate (collinear) polygon, not a building.
pub const MIN_FOOTPRINT_AREA_M2: f64 = 1e-6;

/// Number of distinct points, counting no further than `cap`.
pub fn distinct_points(points: &[[f64; 2]], cap: usize) -> usize {
    let mut distinct: Vec<[f64; 2]> = Vec::with_capacity(cap);
    for point in points {
        if !distinct.contains(point) {
            distinct.push(*point);
            if distinct.len() >= cap {
                break;
            }
        }
    }
    distinct.len()
}

/// Signed area of the implicitly closed ring (shoelace formula, positive
/// counter-clockwise), square metres; relative to the first point to limit
/// cancellation. A repeated closing point is harmless.
pub fn signed_area_m2(ring: &[[f64; 2]]) -> f64 {
    let Some(first) = ring.first() else {
        return 0.0;
    };
    let twice: f64 = ring
        .iter()
        .zip(ring.iter().cycle().skip(1))
        .map(|(a, b)| {
            let (ax, ay) = (a[0] - first[0], a[1] - first[1]);
            let (bx, by) = (b[0] - first[0], b[1] - first[1]);
            ax * by - bx * ay
        })
        .sum();
    twice / 2.0
}

/// Area of the ring whatever its orientation, square metres; 0 for fewer
/// than three points or non-finite coordinates.
pub fn area_m2(ring: &[[f64; 2]]) -> f64 {
    if ring.len() < 3 {
        return 0.0;
    }
    let area = signed_area_m2(ring).abs();
    if area.is_finite() { area } else { 0.0 }
}

/// True when the ring is a usable footprint: at least 3 distinct points
/// and an area of at least [`MIN_FOOTPRINT_AREA_M2`].
pub fn is_valid_ring(ring: &[[f64; 2]]) -> bool {
    distinct_points(ring, 3) >= 3 && area_m2(ring) >= MIN_FOOTPRINT_AREA_M2
}

/// True when the polyline has at least 2 distinct points.
pub fn is_valid_line(line: &[[f64; 2]]) -> bool {
    distinct_points(line, 2) >= 2
}

/// Area centroid of the ring; the mean of its points when the area is
/// (nearly) zero; `None` for an empty ring.
pub fn centroid(ring: &[[f64; 2]]) -> Option<[f64; 2]> {
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
    if twice_area.abs() < 2.0 * MIN_FOOTPRINT_AREA_M2 {
        let n = ring.len() as f64;
        let sx: f64 = ring.iter().map(|p| p[0]).sum();
        let sy: f64 = ring.iter().map(|p| p[1]).sum();
        return Some([sx / n, sy / n]);
    }
    let scale = 1.0 / (3.0 * twice_area);
    Some([first[0] + cx * scale, first[1] + cy * scale])
}

/// Distance between two points, metres.
pub fn distance_m(a: [f64; 2], b: [f64; 2]) -> f64 {
    (a[0] - b[0]).hypot(a[1] - b[1])
}

/// Length of each segment of a polyline, metres.
fn segment_lengths_m(line: &[[f64; 2]]) -> impl Iterator<Item = f64> + '_ {
    line.windows(2).map(|pair| match pair {
        [a, b] => distance_m(*a, *b),
        _ => 0.0,
    })
}

/// Length of the polyline, metres.
pub fn polyline_length_m(line: &[[f64; 2]]) -> f64 {
    segment_lengths_m(line).sum()
}

/// The point `along_m` metres along the polyline from its start, clamped
/// to its ends; `None` for an empty line.
pub fn point_along(line: &[[f64; 2]], along_m: f64) -> Option<[f64; 2]> {
    let mut remaining = along_m.max(0.0);
    for (pair, step) in line.windows(2).zip(segment_lengths_m(line)) {
        if step > 0.0 && remaining <= step {
            let t = remaining / step;
            return Some([
                pair[0][0] + (pair[1][0] - pair[0][0]) * t,
                pair[0][1] + (pair[1][1] - pair[0][1]) * t,
            ]);
        }
        remaining -= step;
    }
    line.last().copied()
}

/// The point halfway along the polyline.
pub fn midpoint(line: &[[f64; 2]]) -> Option<[f64; 2]> {
    point_along(line, polyline_length_m(line) / 2.0)
}

/// Distance along a polyline, metres from its first point, of the polyline
/// point nearest to `point`. An empty or one-point polyline gives 0.
pub fn project_onto_polyline_m(line: &[[f64; 2]], point: [f64; 2]) -> f64 {
    let mut best_distance_m = f64::INFINITY;
    let mut best_along_m = 0.0;
    let mut start_m = 0.0;
    for (pair, length_m) in line.windows(2).zip(segment_lengths_m(line)) {
        let [a, b] = [pair[0], pair[1]];
        let d = [b[0] - a[0], b[1] - a[1]];
        let fraction = if length_m > 0.0 {
            (((point[0] - a[0]) * d[0] + (point[1] - a[1]) * d[1]) / (length_m * length_m))
                .clamp(0.0, 1.0)
        } else {
            0.0
        };
        let nearest = [a[0] + d[0] * fraction, a[1] + d[1] * fraction];
        let distance_m = distance_m(point, nearest);
        if distance_m < best_distance_m {
            best_distance_m = distance_m;
            best_along_m = start_m + fraction * length_m;
        }
        start_m += length_m;
    }
    best_along_m
}

/// True when `point` lies inside the implicitly closed ring (even-odd
/// rule).
pub fn ring_contains(ring: &[[f64; 2]], point: [f64; 2]) -> bool {
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
        assert_eq!(area_m2(&reversed), 100.0);
        assert_eq!(centroid(&SQUARE), Some([5.0, 5.0]));
        assert_eq!(centroid(&reversed), Some([5.0, 5.0]));
    }

    #[test]
    fn areas_of_closed_degenerate_and_broken_rings() {
        let closed_clockwise = [
            [0.0, 0.0],
            [0.0, 15.0],
            [20.0, 15.0],
            [20.0, 0.0],
            [0.0, 0.0],
        ];
        assert_eq!(area_m2(&closed_clockwise), 300.0);
        assert_eq!(area_m2(&[[0.0, 0.0], [1.0, 1.0]]), 0.0);
        assert_eq!(
            area_m2(&[[0.0, 0.0], [f64::INFINITY, 1.0], [1.0, 0.0]]),
            0.0
        );
    }

    #[test]
    fn degenerate_rings_and_lines_are_refused() {
        assert!(is_valid_ring(&SQUARE));
        assert!(!is_valid_ring(&[[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]));
        assert!(!is_valid_ring(&[[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]]));
        assert!(!is_valid_ring(&[]));
        assert_eq!(centroid(&[]), None);
        assert!(is_valid_line(&[[0.0, 0.0], [1.0, 0.0]]));
        assert!(!is_valid_line(&[[1.0, 0.0], [1.0, 0.0]]));
    }

    #[test]
    fn lengths_and_points_along() {
        let line = [[0.0, 0.0], [3.0, 4.0], [3.0, 10.0]];
        assert_eq!(polyline_length_m(&line), 11.0);
        assert_eq!(midpoint(&line), Some([3.0, 4.5]));
        assert_eq!(point_along(&line, -1.0), Some([0.0, 0.0]));
        assert_eq!(point_along(&line, 100.0), Some([3.0, 10.0]));
        assert_eq!(point_along(&[], 1.0), None);
    }

    #[test]
    fn projections_onto_a_polyline() {
        let line = [[0.0, 0.0], [100.0, 0.0], [100.0, 50.0]];
        assert_eq!(polyline_length_m(&line), 150.0);
        assert_eq!(project_onto_polyline_m(&line, [30.0, 5.0]), 30.0);
        assert_eq!(project_onto_polyline_m(&line, [110.0, 20.0]), 120.0);
        assert_eq!(project_onto_polyline_m(&line, [-10.0, -10.0]), 0.0);
        assert_eq!(project_onto_polyline_m(&line, [200.0, 90.0]), 150.0);
        assert_eq!(project_onto_polyline_m(&[[1.0, 1.0]], [0.0, 0.0]), 0.0);
        // A degenerate segment does not divide by zero.
        let repeated = [[0.0, 0.0], [0.0, 0.0], [10.0, 0.0]];
        assert_eq!(project_onto_polyline_m(&repeated, [4.0, 3.0]), 4.0);
    }

    #[test]
    fn containment() {
        assert!(ring_contains(&SQUARE, [5.0, 5.0]));
        assert!(!ring_contains(&SQUARE, [15.0, 5.0]));
    }
}
