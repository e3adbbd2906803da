//! Transit vehicles shuttling along a route's polyline with dwells at stops.

use polis_scene::geometry::{polyline_length_m, project_onto_polyline_m};

/// Cruising speed of transit vehicles between stops, m/s (about 25 km/h).
pub const VEHICLE_SPEED_M_S: f64 = 7.0;
/// Time a vehicle stands at each stop, s.
pub const STOP_DWELL_S: f64 = 20.0;
/// Routes shorter than this are not driven, m.
pub const MIN_ROUTE_LENGTH_M: f64 = 0.001;

/// Where one vehicle is along its route at any time: it runs from the
/// route's first point to its last and back, at [`VEHICLE_SPEED_M_S`],
/// standing [`STOP_DWELL_S`] at every stop in each direction, forever.
///
/// The cycle starts at the Unix epoch at distance 0 (outbound), shifted by
/// the vehicle's offset so that the vehicles of a route are spread over it.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteMotion {
    /// `(time into the cycle s, distance along the route m)`, non-decreasing
    /// in time, first at 0 s and last at `cycle_s`; linear in between.
    knots: Vec<(f64, f64)>,
    /// Stop positions along the route, m, ascending.
    stops_m: Vec<f64>,
    /// Length of the polyline, m.
    length_m: f64,
    /// Duration of a round trip, s.
    cycle_s: f64,
    /// How far into the cycle this vehicle is at the Unix epoch, s.
    offset_s: f64,
}

impl RouteMotion {
    /// The motion along the polyline `line_enu_m` serving the stops at
    /// `stops_enu_m` (each placed at its projection onto the polyline),
    /// shifted by `offset_fraction` of a cycle (vehicle `n` of `k` uses
    /// `n / k`). `None` when the polyline is shorter than
    /// [`MIN_ROUTE_LENGTH_M`] or not finite.
    pub fn new(
        line_enu_m: &[[f64; 2]],
        stops_enu_m: &[[f64; 2]],
        offset_fraction: f64,
    ) -> Option<RouteMotion> {
        let length_m = polyline_length_m(line_enu_m);
        if !(length_m.is_finite() && length_m >= MIN_ROUTE_LENGTH_M) {
            return None;
        }
        let mut stops_m: Vec<f64> = stops_enu_m
            .iter()
            .filter(|p| p[0].is_finite() && p[1].is_finite())
            .map(|p| project_onto_polyline_m(line_enu_m, *p).clamp(0.0, length_m))
            .collect();
        stops_m.sort_by(f64::total_cmp);

        let mut knots = vec![(0.0, 0.0)];
        let drive_to = |knots: &mut Vec<(f64, f64)>, to_m: f64, dwell: bool| {
            let (t, at_m) = knots.last().copied().unwrap_or((0.0, 0.0));
            let t = t + (to_m - at_m).abs() / VEHICLE_SPEED_M_S;
            knots.push((t, to_m));
            if dwell {
                knots.push((t + STOP_DWELL_S, to_m));
            }
        };
        for &stop_m in &stops_m {
            drive_to(&mut knots, stop_m, true);
        }
        drive_to(&mut knots, length_m, false);
        for &stop_m in stops_m.iter().rev() {
            drive_to(&mut knots, stop_m, true);
        }
        drive_to(&mut knots, 0.0, false);
        let cycle_s = knots.last().map_or(0.0, |k| k.0);
        let offset_fraction = if offset_fraction.is_finite() {
            offset_fraction.rem_euclid(1.0)
        } else {
            0.0
        };
        Some(RouteMotion {
            knots,
            stops_m,
            length_m,
            cycle_s,
            offset_s: offset_fraction * cycle_s,
        })
    }

    /// Length of the route, m.
    pub fn length_m(&self) -> f64 {
        self.length_m
    }

    /// Duration of a round trip including the dwells, s:
    /// `2 × length / speed + 2 × stops × dwell`.
    pub fn cycle_s(&self) -> f64 {
        self.cycle_s
    }

    /// Stop positions along the route, m, ascending.
    pub fn stops_m(&self) -> &[f64] {
        &self.stops_m
    }

    /// This vehicle's offset into the cycle, s.
    pub fn offset_s(&self) -> f64 {
        self.offset_s
    }

    /// Distance along the route at a simulated instant, m, within
    /// `[0, length]`.
    pub fn distance_m(&self, sim_time_ms: i64) -> f64 {
        if self.cycle_s <= 0.0 {
            return 0.0;
        }
        let t = (sim_time_ms as f64 / 1000.0 + self.offset_s).rem_euclid(self.cycle_s);
        // First knot strictly after `t`; the one before it is at or before.
        let next = self.knots.partition_point(|k| k.0 <= t);
        let distance_m = match (self.knots.get(next.wrapping_sub(1)), self.knots.get(next)) {
            (Some(a), Some(b)) => a.1 + (b.1 - a.1) * ((t - a.0) / (b.0 - a.0)),
            (Some(a), None) => a.1,
            (None, Some(b)) => b.1,
            (None, None) => 0.0,
        };
        distance_m.clamp(0.0, self.length_m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An L-shaped 600 m route with stops at 100 m and 450 m (off the line).
    fn route(offset_fraction: f64) -> RouteMotion {
        let line = [[0.0, 0.0], [400.0, 0.0], [400.0, 200.0]];
        let stops = [[400.0 + 3.0, 50.0], [100.0, -4.0]];
        RouteMotion::new(&line, &stops, offset_fraction).expect("a real route")
    }

    #[test]
    fn shape_of_the_cycle() {
        let motion = route(0.0);
        assert_eq!(motion.length_m(), 600.0);
        assert_eq!(motion.stops_m(), &[100.0, 450.0]);
        let expected = 2.0 * 600.0 / VEHICLE_SPEED_M_S + 4.0 * STOP_DWELL_S;
        assert!((motion.cycle_s() - expected).abs() < 1e-9);
        assert_eq!(motion.distance_m(0), 0.0);
        // Half way: at the far end.
        let half_ms = (motion.cycle_s() * 500.0).round() as i64;
        assert!((motion.distance_m(half_ms) - 600.0).abs() < 0.01);
    }

    #[test]
    fn stays_on_the_route_and_within_speed() {
        for fraction in [0.0, 0.25, 2.0 / 3.0] {
            let motion = route(fraction);
            let step_ms = 700;
            let mut previous = motion.distance_m(-50_000);
            for i in 1..2_000 {
                let t = -50_000 + i * step_ms;
                let d = motion.distance_m(t);
                assert!((0.0..=600.0).contains(&d), "{d} at {t}");
                let moved = (d - previous).abs();
                assert!(
                    moved <= VEHICLE_SPEED_M_S * step_ms as f64 / 1000.0 + 1e-6,
                    "moved {moved} m in {step_ms} ms at {t}"
                );
                previous = d;
            }
        }
    }

    #[test]
    fn stands_at_each_stop_for_the_dwell() {
        let motion = route(0.0);
        // Outbound arrival at the stop at 100 m.
        let arrival_ms = 100.0 / VEHICLE_SPEED_M_S * 1000.0;
        let first = arrival_ms.ceil() as i64;
        let last = (arrival_ms + STOP_DWELL_S * 1000.0).floor() as i64;
        for t in (first..=last).step_by(250) {
            assert!((motion.distance_m(t) - 100.0).abs() < 1e-9, "at {t}");
        }
        assert!((motion.distance_m(last) - 100.0).abs() < 1e-9);
        // Moving before and after.
        assert!(motion.distance_m(first - 1_000) < 100.0 - 1.0);
        assert!(motion.distance_m(last + 1_000) > 100.0 + 1.0);
    }

    #[test]
    fn vehicles_are_spread_by_their_offset() {
        let a = route(0.0);
        let b = route(0.5);
        assert!((b.offset_s() - a.cycle_s() / 2.0).abs() < 1e-9);
        assert!((b.distance_m(0) - 600.0).abs() < 0.01);
        assert_eq!(route(1.25).offset_s(), route(0.25).offset_s());
    }

    #[test]
    fn degenerate_routes() {
        assert!(RouteMotion::new(&[[1.0, 1.0], [1.0, 1.0]], &[], 0.0).is_none());
        assert!(RouteMotion::new(&[], &[], 0.0).is_none());
        let plain =
            RouteMotion::new(&[[0.0, 0.0], [70.0, 0.0]], &[], f64::NAN).expect("a real route");
        assert_eq!(plain.cycle_s(), 20.0);
        assert_eq!(plain.distance_m(5_000), 35.0);
        assert_eq!(plain.distance_m(15_000), 35.0);
    }
}
