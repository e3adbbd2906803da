//! Geometry both ends derive from an asset's shape: footprint triangulation,
//! extruded building solids and positions along a polyline. The server builds
//! its pick colliders from these and the viewer its meshes, so a ray that
//! hits a drawn building hits the same building on the server.
//!
//! Coordinates are the scene's local east/north/up metres.

/// Height drawn and picked for a building whose scene gives none, metres.
pub const DEFAULT_BUILDING_HEIGHT_M: f32 = 10.0;

/// A building's height: its own when positive and finite, else
/// [`DEFAULT_BUILDING_HEIGHT_M`]. Server colliders and viewer meshes use the
/// same rule, so a ray hits what is drawn.
pub fn building_height_m(height_m: Option<f32>) -> f32 {
    height_m
        .filter(|h| h.is_finite() && *h > 0.0)
        .unwrap_or(DEFAULT_BUILDING_HEIGHT_M)
}

/// Signed area of a polygon (positive when counter-clockwise), m².
pub fn signed_area_m2(points: &[[f32; 2]]) -> f32 {
    let n = points.len();
    let mut twice = 0.0f64;
    for i in 0..n {
        let [x0, y0] = points[i];
        let [x1, y1] = points[(i + 1) % n];
        twice += f64::from(x0) * f64::from(y1) - f64::from(x1) * f64::from(y0);
    }
    (twice / 2.0) as f32
}

/// The polygon's ring without a repeated closing point or consecutive
/// duplicates.
pub fn open_ring(points: &[[f32; 2]]) -> Vec<[f32; 2]> {
    let mut ring: Vec<[f32; 2]> = Vec::with_capacity(points.len());
    for &p in points {
        if ring.last() != Some(&p) {
            ring.push(p);
        }
    }
    while ring.len() > 1 && ring.first() == ring.last() {
        ring.pop();
    }
    ring
}

fn cross(o: [f32; 2], a: [f32; 2], b: [f32; 2]) -> f32 {
    (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])
}

/// Triangles covering a simple polygon, as indices into `ring`, each
/// counter-clockwise seen from above. `ring` is an open ring (see
/// [`open_ring`]) in either orientation. Mapbox's earcut algorithm (the
/// `earcut` crate): ear clipping sped up by a z-order curve, so thousands of
/// vertices take microseconds to milliseconds rather than growing with the
/// cube of the count. A degenerate or self-intersecting ring still yields
/// triangles (a fan) rather than none.
pub fn triangulate(ring: &[[f32; 2]]) -> Vec<[u32; 3]> {
    let n = ring.len();
    if n < 3 {
        return Vec::new();
    }
    let mut indices: Vec<u32> = Vec::with_capacity(3 * (n - 2));
    earcut::Earcut::<f32>::new().earcut_slice(ring, &[] as &[u32], &mut indices);
    let mut triangles: Vec<[u32; 3]> = indices
        .chunks_exact(3)
        .map(|t| {
            let (a, b, c) = (t[0], t[1], t[2]);
            let corner = |i: u32| ring.get(i as usize).copied().unwrap_or([0.0, 0.0]);
            if cross(corner(a), corner(b), corner(c)) < 0.0 {
                [a, c, b]
            } else {
                [a, b, c]
            }
        })
        .collect();
    if triangles.is_empty() {
        // Nothing earcut could cut (collinear or self-crossing): a fan.
        let count = u32::try_from(n).unwrap_or(u32::MAX);
        triangles.extend((1..count.saturating_sub(1)).map(|k| [0, k, k + 1]));
    }
    triangles
}

/// A building as a closed solid: footprint extruded from the ground to
/// `height_m`. Returns vertices (east, north, up) and counter-clockwise
/// triangles seen from outside. Vertices are shared between faces; the
/// viewer, which needs flat normals, builds its own from the same ring.
pub fn extrude(ring: &[[f32; 2]], height_m: f32) -> (Vec<[f32; 3]>, Vec<[u32; 3]>) {
    let ring = open_ring(ring);
    let n = ring.len();
    if n < 3 {
        return (Vec::new(), Vec::new());
    }
    let ccw = signed_area_m2(&ring) >= 0.0;
    let mut vertices = Vec::with_capacity(2 * n);
    vertices.extend(ring.iter().map(|&[e, n]| [e, n, 0.0]));
    vertices.extend(ring.iter().map(|&[e, n]| [e, n, height_m]));
    let roof = triangulate(&ring);
    let mut triangles = Vec::with_capacity(2 * roof.len() + 2 * n);
    let top = n as u32;
    for &[a, b, c] in &roof {
        triangles.push([a + top, b + top, c + top]);
        triangles.push([c, b, a]);
    }
    for i in 0..n as u32 {
        let j = (i + 1) % n as u32;
        // Outward walls: for a counter-clockwise ring the outside is on the
        // right of each edge.
        if ccw {
            triangles.push([i, j, j + top]);
            triangles.push([i, j + top, i + top]);
        } else {
            triangles.push([j, i, i + top]);
            triangles.push([j, i + top, j + top]);
        }
    }
    (vertices, triangles)
}

/// Length of a polyline, metres.
pub fn polyline_length_m(points: &[[f32; 2]]) -> f32 {
    points
        .windows(2)
        .map(|w| (w[1][0] - w[0][0]).hypot(w[1][1] - w[0][1]))
        .sum()
}

/// The point `distance_m` along a polyline and the direction of travel there
/// (unit east/north; `[1, 0]` on a degenerate line). Distances beyond either
/// end clamp to it; `None` for an empty line or a non-finite distance.
pub fn point_along(points: &[[f32; 2]], distance_m: f64) -> Option<([f32; 2], [f32; 2])> {
    let first = *points.first()?;
    if !distance_m.is_finite() {
        return None;
    }
    let mut left = distance_m.max(0.0);
    let mut heading = [1.0, 0.0];
    for w in points.windows(2) {
        let (d_east, d_north) = (w[1][0] - w[0][0], w[1][1] - w[0][1]);
        let length = f64::from(d_east.hypot(d_north));
        if length <= 0.0 {
            continue;
        }
        heading = [d_east / length as f32, d_north / length as f32];
        if left <= length {
            let t = (left / length) as f32;
            return Some(([w[0][0] + t * d_east, w[0][1] + t * d_north], heading));
        }
        left -= length;
    }
    Some((*points.last().unwrap_or(&first), heading))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn area_of(ring: &[[f32; 2]], triangles: &[[u32; 3]]) -> f32 {
        triangles
            .iter()
            .map(|&[a, b, c]| {
                let tri = [ring[a as usize], ring[b as usize], ring[c as usize]];
                signed_area_m2(&tri)
            })
            .sum()
    }

    #[test]
    fn an_l_shaped_footprint_is_covered_exactly_once() {
        // An L: the concave corner must not be bridged.
        let l = [
            [0.0, 0.0],
            [20.0, 0.0],
            [20.0, 10.0],
            [10.0, 10.0],
            [10.0, 20.0],
            [0.0, 20.0],
        ];
        for ring in [l.to_vec(), l.iter().rev().copied().collect::<Vec<_>>()] {
            let triangles = triangulate(&ring);
            assert_eq!(triangles.len(), 4);
            // Every triangle counter-clockwise, and together exactly the L's area.
            for &[a, b, c] in &triangles {
                let tri = [ring[a as usize], ring[b as usize], ring[c as usize]];
                assert!(signed_area_m2(&tri) > 0.0, "{tri:?} is clockwise");
            }
            assert!((area_of(&ring, &triangles) - 300.0).abs() < 1e-3);
        }
    }

    #[test]
    fn a_large_concave_comb_is_covered_exactly_once() {
        // 1,024 teeth of 1 m width and 10 m depth on a 1 m spine: 4,096
        // vertices, the most a scene allows in a footprint.
        let teeth = 1_024;
        let mut ring = vec![[0.0f32, 0.0], [teeth as f32 * 2.0, 0.0]];
        for tooth in (0..teeth).rev() {
            let x = tooth as f32 * 2.0;
            ring.extend([[x + 2.0, 1.0], [x + 1.0, 1.0], [x + 1.0, 11.0], [x, 11.0]]);
        }
        ring.truncate(4_096);
        let area = signed_area_m2(&ring);
        let triangles = triangulate(&ring);
        assert_eq!(triangles.len(), ring.len() - 2);
        for &[a, b, c] in &triangles {
            let tri = [ring[a as usize], ring[b as usize], ring[c as usize]];
            assert!(signed_area_m2(&tri) >= 0.0, "{tri:?} is clockwise");
        }
        assert!(
            (area_of(&ring, &triangles) - area).abs() < area * 1e-4,
            "{} vs {area}",
            area_of(&ring, &triangles)
        );
    }

    #[test]
    fn a_collinear_ring_still_gets_triangles() {
        let line = [[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0]];
        assert_eq!(triangulate(&line).len(), 2);
    }

    #[test]
    fn an_extruded_box_is_a_closed_solid_facing_outwards() {
        let square = [
            [0.0, 0.0],
            [10.0, 0.0],
            [10.0, 10.0],
            [0.0, 10.0],
            [0.0, 0.0],
        ];
        let (vertices, triangles) = extrude(&square, 5.0);
        assert_eq!(vertices.len(), 8);
        assert_eq!(triangles.len(), 12);
        // Outward faces: the normal of every triangle points away from the centre.
        let centre = [5.0, 5.0, 2.5];
        for &[a, b, c] in &triangles {
            let [p, q, r] = [
                vertices[a as usize],
                vertices[b as usize],
                vertices[c as usize],
            ];
            let u = [q[0] - p[0], q[1] - p[1], q[2] - p[2]];
            let v = [r[0] - p[0], r[1] - p[1], r[2] - p[2]];
            let normal = [
                u[1] * v[2] - u[2] * v[1],
                u[2] * v[0] - u[0] * v[2],
                u[0] * v[1] - u[1] * v[0],
            ];
            let mid = [
                (p[0] + q[0] + r[0]) / 3.0,
                (p[1] + q[1] + r[1]) / 3.0,
                (p[2] + q[2] + r[2]) / 3.0,
            ];
            let out = [mid[0] - centre[0], mid[1] - centre[1], mid[2] - centre[2]];
            let dot: f32 = (0..3).map(|k| normal[k] * out[k]).sum();
            assert!(dot > 0.0, "triangle {a},{b},{c} faces inwards");
        }
    }

    #[test]
    fn positions_along_a_route_clamp_to_its_ends() {
        let line = [[0.0, 0.0], [100.0, 0.0], [100.0, 50.0]];
        assert_eq!(polyline_length_m(&line), 150.0);
        assert_eq!(point_along(&line, 50.0), Some(([50.0, 0.0], [1.0, 0.0])));
        assert_eq!(point_along(&line, 125.0), Some(([100.0, 25.0], [0.0, 1.0])));
        assert_eq!(point_along(&line, -5.0), Some(([0.0, 0.0], [1.0, 0.0])));
        assert_eq!(point_along(&line, 1e9).map(|p| p.0), Some([100.0, 50.0]));
        assert_eq!(point_along(&line, f64::NAN), None);
        assert_eq!(point_along(&[], 1.0), None);
    }
}
