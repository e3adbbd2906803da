//! Plane geometry the scene format's rules are stated in, for the crates
//! that build scenes to apply the same rules.

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
/// cancellation.
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
