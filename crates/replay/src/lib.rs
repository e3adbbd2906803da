//! A gateway that drives a Polis twin with feeds built from real data
//! (SimBench load and PV profiles, a real water-flow series, transit along
//! real routes) in simulated time.
//!
//! # How it runs
//!
//! [`plan_feeds`] decides, once, how each sensor of a [`polis_scene::Scene`]
//! is fed (a [`Feed`]) or why it is skipped. [`run_replay`] then connects as
//! a gateway and, every [`ReplayOptions::interval`] of wall time (default
//! [`DEFAULT_INTERVAL`], 1 s; late rounds are delayed, never bunched),
//! samples every feed at the current **simulated time**
//!
//! ```text
//! sim_time = start + wall_elapsed × speed
//! ```
//!
//! ([`sim_time_ms`]) and pushes one reading per fed sensor, all stamped with
//! that simulated time as device time, in batches of at most
//! [`DEFAULT_BATCH_SIZE`] (5,000) readings with at most [`DEFAULT_WINDOW`]
//! (8) batches in flight. It counts accepted, stale, duplicate and refused
//! readings from the acknowledgements ([`ReplayStats`]). Feeds are pure
//! functions of time, so a repeated instant gives a duplicate, never a
//! conflict. A lost connection ends the replay with an error, and so does a
//! server that leaves a batch unacknowledged for
//! [`ReplayOptions::ack_timeout`] (default [`DEFAULT_ACK_TIMEOUT`], 30 s) or
//! answers one with a protocol error.
//!
//! # Data
//!
//! Both files are embedded in the binary and parsed once by
//! [`FeedData::bundled`]; a parse error is a [`ReplayError::Data`], never a
//! panic.
//!
//! * `assets/energy/simbench-profiles-2016.csv`: SimBench profiles (ODbL),
//!   35,136 rows, one per quarter hour of 2016, each column a scaling factor
//!   of a rated power peaking at 1 ([`ProfileColumn`]: `H0-A/B/C`
//!   households, `G0-A` commercial general, `G1-A` weekday business hours,
//!   `G4-A` shops, `L0-A` agriculture, `PV1/3/5` photovoltaics, which peak at
//!   about 0.6).
//! * `assets/water/water-flow.csv`: a real water-flow meter, 1,268 hourly
//!   rows from 2022-03-20 to 2022-05-16, about 100 l/s with real anomalies
//!   (drops to about 24 l/s).
//!
//! **Profile time.** A simulated instant maps to the same calendar date
//! (month and day) and UTC time of day in 2016, interpolated linearly
//! between quarter hours; 31 December 23:45 interpolates towards 1 January
//! 00:00. 2016 is a leap year, so every date exists in it (29 February
//! needs no clamping; other years skip those rows). The file's time column
//! is local wall-clock time (CET/CEST: four labels skipped in March, four
//! repeated in October) while its rows are consecutive quarter hours, so
//! replay goes by row index: row i is 2016-01-01 00:00 + i × 15 min on the
//! profile's clock, read as UTC (the labels are only checked for
//! consistency when parsing).
//!
//! **Water-flow time.** The *flow shape* is the series divided by its mean
//! (so it averages 1 and keeps its anomalies), taken at the hours elapsed
//! since the series' first row (2022-03-20T10:00Z) modulo the series' length
//! of 1,268 h, interpolated linearly (the last row towards the first). Rows
//! are taken as consecutive hours: the meter's ten gaps are closed up
//! rather than bridged by long straight lines.
//!
//! # Feeds by sensor quantity
//!
//! A sensor is fed according to its `quantity` and the asset it is attached
//! to. Any other quantity (`pm2_5`, `noise_level`, `passengers_waiting`,
//! ...) is skipped with the reason `no feed for quantity X`; a fed quantity
//! on a missing or wrong asset is skipped with a reason naming what it
//! needs. Personal sensors are fed like any other.
//!
//! | quantity | asset | value |
//! |---|---|---|
//! | `active_power` (kW) | `building` | `profile(t) × rated_kw` |
//! | `pv_power` (kW) | `building` | `profile(t) × peak_kw` |
//! | `flow` (l/s) | `water_pipe`, `water_pump`, `water_valve` | `nominal × shape(t)` |
//! | `pressure` (m) | `water_junction` | `45 − 6 × (relative multiplier(t) − 1)`, the junction's pattern multiplier divided by the pattern's mean and clamped to [0, 3] (33–51 m) |
//! | `level` (m) | `water_tank` | daily swing against the flow shape |
//! | `distance_along_route` (m) | `transit_route` | shuttle with dwells |
//!
//! **Building meters** (`active_power`). Floor area = the `floor_area_m2`
//! attribute if it is a positive number, else footprint area (shoelace) ×
//! max(`levels`, 1), `levels` defaulting to 1. The `usage` attribute picks
//! the profile and the specific rated power ([`BuildingUsage`]); rated kW =
//! floor area × specific rated power. Residential meters get one of `H0-A`,
//! `H0-B`, `H0-C` by the 64-bit FNV-1a hash of the sensor id modulo 3
//! ([`fnv1a_64`]). The yearly energy is rated power × profile mean ×
//! 8,784 h:
//!
//! | `usage` | profile | kW/m² | ≈ kWh/m²·a | 1,000 m² peak |
//! |---|---|---|---|---|
//! | `residential` | `H0-A/B/C` by hash | 0.025 | 20–30 | 25 kW |
//! | `retail` | `G4-A` | 0.045 | 125 | 45 kW |
//! | `office` | `G1-A` | 0.040 | 60 | 40 kW |
//! | `commercial` | `G0-A` | 0.040 | 120 | 40 kW |
//! | `public` | `G0-A` | 0.020 | 60 | 20 kW |
//! | `industrial` | `G0-A` | 0.060 | 180 | 60 kW |
//! | `other`, missing, unknown | `G0-A` | 0.020 | 60 | 20 kW |
//!
//! **Rooftop PV** (`pv_power`). Peak kWp = footprint area ×
//! [`PV_USABLE_ROOF_SHARE`] (0.5) × [`PV_PEAK_KW_PER_M2`] (0.15 kWp/m²);
//! profile `PV1`, `PV3` or `PV5` by FNV-1a of the sensor id modulo 3.
//!
//! **Pipe flow** (`flow`). Nominal flow = [`PIPE_VELOCITY_M_S`] (0.8 m/s) ×
//! π (d/2)² in l/s, with d from `diameter_mm` (default
//! [`DEFAULT_PIPE_DIAMETER_MM`], 150 mm, also when not a positive number:
//! 14.14 l/s). Value = nominal × flow shape, so it averages the nominal flow
//! and shows the real meter's anomalies.
//!
//! **Junction pressure** (`pressure`). A modelled stand-in for a hydraulic
//! solution (no EPANET is run): head = [`PRESSURE_BASE_HEAD_M`] (45 m) −
//! [`PRESSURE_HEAD_PER_MULTIPLIER_M`] (6 m) × (multiplier − 1), the
//! multiplier from the junction's `demand_pattern` (comma-separated
//! multipliers; missing or blank means the constant 1), each held for
//! `pattern_step_s` (default [`DEFAULT_PATTERN_STEP_S`], 3,600 s), cycling
//! from the Unix epoch so that a 24-step hourly pattern lines up with UTC
//! hours ([`DemandPattern`]). Higher demand, lower pressure. A pattern or
//! step that is not made of finite numbers (or a step under 1 ms) skips the
//! sensor.
//!
//! **Tank level** (`level`). Also a modelled stand-in. With `min_level_m`
//! and `max_level_m` required (else skipped) and `init_level_m` defaulting
//! to their midpoint (clamped between them):
//! `x = 0.8 × cos(2π (hour_utc − 4) / 24) − 4 × (shape − 1)`, clamped to
//! [−1, 1]; level = init + x × (max − init) when x ≥ 0, init + x × (init −
//! min) below ([`tank_level_m`]). The tank swings daily around init, fullest
//! at [`TANK_FULLEST_HOUR_UTC`] (04:00 UTC, after the night's low demand)
//! and emptiest at 16:00 UTC, reaching 80 % ([`TANK_DAILY_SWING`]) of the
//! way to max and min; on top, it follows the inverse of the water-flow
//! shape with gain [`TANK_FLOW_GAIN`] (4): flow above its mean drains it,
//! a flow collapse fills it to max. The level never leaves [min, max].
//!
//! **Transit vehicles** (`distance_along_route`). The sensor's asset is a
//! `transit_route` with a line geometry and a `stops` attribute
//! (comma-separated ids of point assets; ids that are not point assets of
//! the scene are ignored). Each stop sits at its projection onto the
//! polyline; stops are sorted along it. A vehicle runs from the first point
//! to the last and back at [`VEHICLE_SPEED_M_S`] (7 m/s), standing
//! [`STOP_DWELL_S`] (20 s) at each stop in each direction (no stops, no
//! dwelling), so a round trip takes 2 × length / 7 m/s + 2 × stops × 20 s.
//! The cycle starts at the Unix epoch; vehicle n of the k
//! `distance_along_route` sensors on a route is offset by (n mod k) / k of
//! the cycle, n parsed from an id suffix `-<n>` (0 without one). Value =
//! distance along the polyline, m, within [0, length] ([`RouteMotion`]).
//! Routes shorter than 1 mm are skipped.

mod calendar;
mod data;
mod error;
mod feed;
mod plan;
mod route;
mod run;

#[cfg(test)]
mod tests;

pub use calendar::{Rounds, sim_time_ms};
pub use data::{FLOW_STEP_MS, FeedData, PROFILE_ROWS, PROFILE_STEP_MS, ProfileColumn};
pub use error::ReplayError;
pub use feed::{
    BuildingUsage, DEFAULT_PATTERN_STEP_S, DEFAULT_PIPE_DIAMETER_MM, DemandPattern, Feed,
    PIPE_VELOCITY_M_S, PRESSURE_BASE_HEAD_M, PRESSURE_HEAD_PER_MULTIPLIER_M, PV_PEAK_KW_PER_M2,
    PV_USABLE_ROOF_SHARE, TANK_DAILY_SWING, TANK_FLOW_GAIN, TANK_FULLEST_HOUR_UTC, fnv1a_64,
    nominal_flow_l_s, pressure_head_m, pv_peak_kw, pv_profile, tank_level_m,
};
pub use plan::{
    FED_QUANTITIES, FeedPlan, QUANTITY_ACTIVE_POWER, QUANTITY_DISTANCE_ALONG_ROUTE, QUANTITY_FLOW,
    QUANTITY_LEVEL, QUANTITY_PRESSURE, QUANTITY_PV_POWER, plan_feeds,
};
pub use route::{MIN_ROUTE_LENGTH_M, RouteMotion, STOP_DWELL_S, VEHICLE_SPEED_M_S};
pub use run::{
    DEFAULT_ACK_TIMEOUT, DEFAULT_BATCH_SIZE, DEFAULT_INTERVAL, DEFAULT_WINDOW, ReplayOptions,
    ReplayStats, run_replay,
};
