//! Plane geometry on local east/north metres: footprint areas, polyline
//! lengths and projections.

/// Area of a footprint polygon, m² (shoelace formula; the ring closes
/// implicitly, a repeated first point is harmless; orientation does not
/// matter). Fewer than three points give 0.
pub fn footprint_area_m2(points: &[[f64; 2]]) -> f64 {
    if points.len() < 3 {
        return 0.0;
    }
    let twice: f64 = points
        .iter()
        .zip(points.iter().cycle().skip(1))
        .map(|(a, b)| a[0] * b[1] - b[0] * a[1])
        .sum();
    let area = (twice / 2.0).abs();
    if area.is_finite() { area } else { 0.0 }
}

/// Length of each segment of a polyline, m.
fn segment_lengths_m(points: &[[f64; 2]]) -> impl Iterator<Item = f64> + '_ {
    points.windows(2).map(|pair| match pair {
        [a, b] => (b[0] - a[0]).hypot(b[1] - a[1]),
        _ => 0.0,
    })
}

/// Length of a polyline, m.
pub fn polyline_length_m(points: &[[f64; 2]]) -> f64 {
    segment_lengths_m(points).sum()
}

/// Distance along a polyline, m from its first point, of the polyline point
/// nearest to `point`. An empty or one-point polyline gives 0.
pub fn project_onto_polyline_m(points: &[[f64; 2]], point: [f64; 2]) -> f64 {
    let mut best_distance_m = f64::INFINITY;
    let mut best_along_m = 0.0;
    let mut start_m = 0.0;
    for (pair, length_m) in points.windows(2).zip(segment_lengths_m(points)) {
        let [a, b] = [pair[0], pair[1]];
        let d = [b[0] - a[0], b[1] - a[1]];
        let fraction = if length_m > 0.0 {
            (((point[0] - a[0]) * d[0] + (point[1] - a[1]) * d[1]) / (length_m * length_m))
                .clamp(0.0, 1.0)
        } else {
            0.0
        };
        let nearest = [a[0] + d[0] * fraction, a[1] + d[1] * fraction];
        let distance_m = (point[0] - nearest[0]).hypot(point[1] - nearest[1]);
        if distance_m < best_distance_m {
            best_distance_m = distance_m;
            best_along_m = start_m + fraction * length_m;
        }
        start_m += length_m;
    }
    best_along_m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn areas() {
        let square = [[0.0, 0.0], [20.0, 0.0], [20.0, 15.0], [0.0, 15.0]];
        assert_eq!(footprint_area_m2(&square), 300.0);
        let closed_clockwise = [
            [0.0, 0.0],
            [0.0, 15.0],
            [20.0, 15.0],
            [20.0, 0.0],
            [0.0, 0.0],
        ];
        assert_eq!(footprint_area_m2(&closed_clockwise), 300.0);
        assert_eq!(footprint_area_m2(&[[0.0, 0.0], [1.0, 1.0]]), 0.0);
        assert_eq!(
            footprint_area_m2(&[[0.0, 0.0], [f64::INFINITY, 1.0], [1.0, 0.0]]),
            0.0
        );
    }

    #[test]
    fn lengths_and_projections() {
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
}
