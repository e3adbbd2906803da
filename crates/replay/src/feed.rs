//! The feed models: what each fed sensor reads at a simulated instant. Pure
//! functions of their parameters, the bundled data and the time.

use std::f64::consts::PI;

use crate::calendar::hour_of_day_utc;
use crate::data::{FeedData, ProfileColumn};
use crate::route::RouteMotion;

/// Rooftop PV peak power per m² of panel, kWp/m².
pub const PV_PEAK_KW_PER_M2: f64 = 0.15;
/// Share of a roof (the footprint) covered by panels.
pub const PV_USABLE_ROOF_SHARE: f64 = 0.5;
/// Design flow velocity in water pipes, m/s.
pub const PIPE_VELOCITY_M_S: f64 = 0.8;
/// Pipe diameter when `diameter_mm` is missing or not a positive number, mm.
pub const DEFAULT_PIPE_DIAMETER_MM: f64 = 150.0;
/// Junction pressure head at a demand multiplier of 1, m.
pub const PRESSURE_BASE_HEAD_M: f64 = 45.0;
/// Pressure head lost per unit of demand multiplier above 1, m.
pub const PRESSURE_HEAD_PER_MULTIPLIER_M: f64 = 6.0;
/// Pattern step when `pattern_step_s` is missing, s (EPANET's default).
pub const DEFAULT_PATTERN_STEP_S: f64 = 3600.0;
/// Hour of the day (UTC) at which tanks are fullest in the daily cycle;
/// they are emptiest twelve hours later.
pub const TANK_FULLEST_HOUR_UTC: f64 = 4.0;
/// Weight of the daily cycle in the tank's position between init and
/// min/max (1 would reach min and max every day).
pub const TANK_DAILY_SWING: f64 = 0.8;
/// Weight of the water-flow anomaly (shape − 1) in the tank's position,
/// with opposite sign: more flow drains the tank, less flow fills it.
pub const TANK_FLOW_GAIN: f64 = 4.0;

/// What a building is used for, from its `usage` attribute; decides its
/// load profile and its specific rated power.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BuildingUsage {
    /// `residential`: flats and houses.
    Residential,
    /// `retail`: shops.
    Retail,
    /// `office`.
    Office,
    /// `commercial`: mixed or unspecified commerce.
    Commercial,
    /// `public`: schools, libraries, administration.
    Public,
    /// `industrial`.
    Industrial,
    /// `other`, a missing attribute, or any unknown value.
    Other,
}

impl BuildingUsage {
    /// Reads a `usage` attribute; anything unknown (or nothing) is
    /// [`BuildingUsage::Other`].
    pub fn from_attribute(usage: Option<&str>) -> BuildingUsage {
        match usage.map(str::trim) {
            Some("residential") => BuildingUsage::Residential,
            Some("retail") => BuildingUsage::Retail,
            Some("office") => BuildingUsage::Office,
            Some("commercial") => BuildingUsage::Commercial,
            Some("public") => BuildingUsage::Public,
            Some("industrial") => BuildingUsage::Industrial,
            _ => BuildingUsage::Other,
        }
    }

    /// Rated (peak) electric power per m² of floor area, kW/m². The load
    /// profiles peak at 1, so this is the peak of the meter; the yearly
    /// energy is this × the profile's mean factor × 8,784 h.
    ///
    /// | usage | kW/m² | profile mean | ≈ kWh/m²·a |
    /// |---|---|---|---|
    /// | residential | 0.025 | 0.09–0.14 (H0) | 20–30 |
    /// | retail | 0.045 | 0.32 (G4) | 125 |
    /// | office | 0.040 | 0.17 (G1) | 60 |
    /// | commercial | 0.040 | 0.35 (G0) | 120 |
    /// | public | 0.020 | 0.35 (G0) | 60 |
    /// | industrial | 0.060 | 0.35 (G0) | 180 |
    /// | other | 0.020 | 0.35 (G0) | 60 |
    pub fn rated_kw_per_m2(self) -> f64 {
        match self {
            BuildingUsage::Residential => 0.025,
            BuildingUsage::Retail => 0.045,
            BuildingUsage::Office | BuildingUsage::Commercial => 0.040,
            BuildingUsage::Industrial => 0.060,
            BuildingUsage::Public | BuildingUsage::Other => 0.020,
        }
    }

    /// The load profile of a meter on a building of this usage: residential
    /// meters get one of `H0-A`, `H0-B`, `H0-C` by [`fnv1a_64`] of the
    /// sensor id modulo 3, so neighbours differ but a meter always gets the
    /// same one; retail `G4-A`; office `G1-A`; everything else `G0-A`.
    pub fn load_profile(self, sensor_id: &str) -> ProfileColumn {
        match self {
            BuildingUsage::Residential => pick(
                &[ProfileColumn::H0a, ProfileColumn::H0b, ProfileColumn::H0c],
                sensor_id,
            ),
            BuildingUsage::Retail => ProfileColumn::G4a,
            BuildingUsage::Office => ProfileColumn::G1a,
            BuildingUsage::Commercial
            | BuildingUsage::Public
            | BuildingUsage::Industrial
            | BuildingUsage::Other => ProfileColumn::G0a,
        }
    }
}

/// The PV profile of a PV sensor: one of `PV1`, `PV3`, `PV5` by
/// [`fnv1a_64`] of the sensor id modulo 3.
pub fn pv_profile(sensor_id: &str) -> ProfileColumn {
    pick(
        &[ProfileColumn::Pv1, ProfileColumn::Pv3, ProfileColumn::Pv5],
        sensor_id,
    )
}

fn pick(choices: &[ProfileColumn; 3], sensor_id: &str) -> ProfileColumn {
    let index = (fnv1a_64(sensor_id.as_bytes()) % 3) as usize;
    choices.get(index).copied().unwrap_or(choices[0])
}

/// 64-bit FNV-1a hash: stable across builds and platforms, unlike std's.
pub fn fnv1a_64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

/// Peak power of rooftop PV on a footprint, kWp:
/// area × [`PV_USABLE_ROOF_SHARE`] × [`PV_PEAK_KW_PER_M2`].
pub fn pv_peak_kw(footprint_area_m2: f64) -> f64 {
    footprint_area_m2 * PV_USABLE_ROOF_SHARE * PV_PEAK_KW_PER_M2
}

/// Nominal flow of a full pipe at [`PIPE_VELOCITY_M_S`], l/s:
/// 0.8 m/s × π (d/2)² × 1000 l/m³.
pub fn nominal_flow_l_s(diameter_mm: f64) -> f64 {
    let radius_m = diameter_mm / 1000.0 / 2.0;
    PIPE_VELOCITY_M_S * PI * radius_m * radius_m * 1000.0
}

/// Modelled pressure head at a junction for a demand multiplier, m:
/// `45 − 6 × (multiplier − 1)`, with the multiplier relative to its pattern's
/// mean (see [`DemandPattern::relative_multiplier`]), so 33 to 51 m.
pub fn pressure_head_m(multiplier: f64) -> f64 {
    PRESSURE_BASE_HEAD_M - PRESSURE_HEAD_PER_MULTIPLIER_M * (multiplier - 1.0)
}

/// A junction's demand pattern: multipliers applied in turn, each for one
/// step, cycling forever from the Unix epoch (so a 24-entry hourly pattern
/// lines up with UTC hours).
#[derive(Debug, Clone, PartialEq)]
pub struct DemandPattern {
    multipliers: Vec<f64>,
    step_ms: i64,
}

impl DemandPattern {
    /// The constant pattern `[1]`.
    pub fn constant() -> DemandPattern {
        DemandPattern {
            multipliers: vec![1.0],
            step_ms: (DEFAULT_PATTERN_STEP_S * 1000.0) as i64,
        }
    }

    /// Reads the `demand_pattern` (comma-separated multipliers) and
    /// `pattern_step_s` attributes. A missing or blank pattern is
    /// [`DemandPattern::constant`]; a missing step is
    /// [`DEFAULT_PATTERN_STEP_S`]. `None` when either is present but not
    /// finite numbers (steps must also be at least 1 ms).
    pub fn from_attributes(pattern: Option<&str>, step_s: Option<&str>) -> Option<DemandPattern> {
        let step_s = match step_s {
            None => DEFAULT_PATTERN_STEP_S,
            Some(text) => text.trim().parse::<f64>().ok()?,
        };
        let step_ms = (step_s * 1000.0).round();
        if !(step_ms.is_finite() && step_ms >= 1.0) {
            return None;
        }
        let multipliers = match pattern.map(str::trim) {
            None | Some("") => vec![1.0],
            Some(text) => text
                .split(',')
                .map(|m| m.trim().parse::<f64>().ok().filter(|m| m.is_finite()))
                .collect::<Option<Vec<f64>>>()?,
        };
        Some(DemandPattern {
            multipliers,
            // Saturating cast; huge steps simply never advance.
            step_ms: step_ms as i64,
        })
    }

    /// The multiplier in force at a simulated instant.
    pub fn multiplier(&self, sim_time_ms: i64) -> f64 {
        let len = self.multipliers.len() as i64;
        if len == 0 || self.step_ms <= 0 {
            return 1.0;
        }
        let index = sim_time_ms.div_euclid(self.step_ms).rem_euclid(len);
        self.multipliers.get(index as usize).copied().unwrap_or(1.0)
    }

    /// The multiplier in force relative to the pattern's mean, clamped to
    /// `[0, 3]`: EPANET patterns are often in the units of a base demand
    /// (Net3's industrial patterns reach the thousands), so only their shape
    /// is comparable across junctions. A pattern with a mean of zero or less
    /// is flat (1).
    pub fn relative_multiplier(&self, sim_time_ms: i64) -> f64 {
        let len = self.multipliers.len();
        let mean = self.multipliers.iter().sum::<f64>() / len.max(1) as f64;
        if !(mean.is_finite() && mean > 0.0) {
            return 1.0;
        }
        (self.multiplier(sim_time_ms) / mean).clamp(0.0, 3.0)
    }

    /// The multipliers, in order.
    pub fn multipliers(&self) -> &[f64] {
        &self.multipliers
    }

    /// Duration of one multiplier, ms.
    pub fn step_ms(&self) -> i64 {
        self.step_ms
    }
}

/// Modelled tank level, m, from the daily cycle and the water-flow shape:
/// `x = TANK_DAILY_SWING × cos(2π (hour − TANK_FULLEST_HOUR_UTC) / 24) −
/// TANK_FLOW_GAIN × (shape − 1)`, clamped to `[-1, 1]`; the level is
/// `init + x × (max − init)` for `x ≥ 0` and `init + x × (init − min)`
/// below, so it never leaves `[min, max]`.
pub fn tank_level_m(
    init_m: f64,
    min_m: f64,
    max_m: f64,
    hour_of_day_utc: f64,
    flow_shape: f64,
) -> f64 {
    let daily = (2.0 * PI * (hour_of_day_utc - TANK_FULLEST_HOUR_UTC) / 24.0).cos();
    let x = (TANK_DAILY_SWING * daily - TANK_FLOW_GAIN * (flow_shape - 1.0)).clamp(-1.0, 1.0);
    let x = if x.is_nan() { 0.0 } else { x };
    let level_m = if x >= 0.0 {
        init_m + x * (max_m - init_m)
    } else {
        init_m + x * (init_m - min_m)
    };
    level_m.clamp(min_m, max_m)
}

/// How one sensor is fed.
#[derive(Debug, Clone, PartialEq)]
pub enum Feed {
    /// A building's electricity meter, kW: `profile(t) × rated_kw`.
    Load {
        /// SimBench load profile.
        profile: ProfileColumn,
        /// Rated (peak) power, kW.
        rated_kw: f64,
    },
    /// Rooftop photovoltaics, kW: `profile(t) × peak_kw`.
    Pv {
        /// SimBench PV profile.
        profile: ProfileColumn,
        /// Installed peak power, kWp.
        peak_kw: f64,
    },
    /// Flow in a pipe or pump, l/s: `nominal_l_s × flow_shape(t)`.
    Flow {
        /// Nominal flow, l/s.
        nominal_l_s: f64,
    },
    /// Pressure head at a junction, m: [`pressure_head_m`] of the pattern's
    /// multiplier.
    Pressure {
        /// The junction's demand pattern.
        pattern: DemandPattern,
    },
    /// Water level in a tank, m: [`tank_level_m`].
    TankLevel {
        /// Level around which the tank oscillates, m.
        init_m: f64,
        /// Lowest level, m.
        min_m: f64,
        /// Highest level, m.
        max_m: f64,
    },
    /// A transit vehicle's distance along its route, m.
    Vehicle {
        /// The vehicle's motion.
        route: RouteMotion,
    },
}

impl Feed {
    /// The sensor's value at a simulated instant, in the sensor's unit.
    /// Finite for finite parameters.
    pub fn sample(&self, data: &FeedData, sim_time_ms: i64) -> f64 {
        match self {
            Feed::Load { profile, rated_kw } => data.profile(*profile, sim_time_ms) * rated_kw,
            Feed::Pv { profile, peak_kw } => data.profile(*profile, sim_time_ms) * peak_kw,
            Feed::Flow { nominal_l_s } => nominal_l_s * data.flow_shape(sim_time_ms),
            Feed::Pressure { pattern } => pressure_head_m(pattern.relative_multiplier(sim_time_ms)),
            Feed::TankLevel {
                init_m,
                min_m,
                max_m,
            } => tank_level_m(
                *init_m,
                *min_m,
                *max_m,
                hour_of_day_utc(sim_time_ms),
                data.flow_shape(sim_time_ms),
            ),
            Feed::Vehicle { route } => route.distance_m(sim_time_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::MS_PER_HOUR;

    fn data() -> FeedData {
        FeedData::bundled().expect("bundled data parses")
    }

    /// 2025-01-15T00:00Z.
    const JAN_15_2025_MS: i64 = 1_736_899_200_000;
    /// 2025-06-21T11:00Z.
    const JUNE_21_2025_11H_MS: i64 = 1_750_503_600_000;

    #[test]
    fn fnv1a_matches_reference_vectors() {
        assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a_64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn residential_meter_of_a_1000_m2_block_is_plausible() {
        let data = data();
        for id in ["meter-a", "meter-b", "meter-c", "meter-d"] {
            let usage = BuildingUsage::Residential;
            let feed = Feed::Load {
                profile: usage.load_profile(id),
                rated_kw: 1000.0 * usage.rated_kw_per_m2(),
            };
            let values: Vec<f64> = (0..96)
                .map(|q| feed.sample(&data, JAN_15_2025_MS + q * MS_PER_HOUR / 4))
                .collect();
            for v in &values {
                assert!((0.0..=100.0).contains(v), "{id}: {v} kW");
            }
            let mean = values.iter().sum::<f64>() / 96.0;
            assert!(mean > 0.5 && mean < 25.0, "{id}: daily mean {mean} kW");
        }
    }

    #[test]
    fn residential_profiles_depend_on_the_id_only() {
        let usage = BuildingUsage::Residential;
        let chosen: std::collections::BTreeSet<ProfileColumn> = (0..30)
            .map(|i| usage.load_profile(&format!("meter-{i}")))
            .collect();
        assert_eq!(chosen.len(), 3);
        assert_eq!(usage.load_profile("m-1"), usage.load_profile("m-1"));
        assert_eq!(
            BuildingUsage::from_attribute(Some("retail")).load_profile("x"),
            ProfileColumn::G4a
        );
        assert_eq!(
            BuildingUsage::from_attribute(Some("office")).load_profile("x"),
            ProfileColumn::G1a
        );
        assert_eq!(
            BuildingUsage::from_attribute(Some("castle")),
            BuildingUsage::Other
        );
        assert_eq!(BuildingUsage::from_attribute(None), BuildingUsage::Other);
    }

    #[test]
    fn pv_is_dark_at_night_in_january_and_bright_in_june() {
        let data = data();
        for profile in [ProfileColumn::Pv1, ProfileColumn::Pv3, ProfileColumn::Pv5] {
            let feed = Feed::Pv {
                profile,
                peak_kw: pv_peak_kw(300.0),
            };
            assert_eq!(feed.sample(&data, JAN_15_2025_MS), 0.0, "{profile:?}");
            let noon = feed.sample(&data, JUNE_21_2025_11H_MS);
            assert!(noon > 0.0 && noon <= 22.5, "{profile:?}: {noon} kW");
        }
        assert_eq!(pv_peak_kw(300.0), 22.5);
    }

    #[test]
    fn flow_averages_the_nominal_flow() {
        let data = data();
        let nominal = nominal_flow_l_s(150.0);
        assert!((nominal - 14.137).abs() < 0.001, "{nominal}");
        let feed = Feed::Flow {
            nominal_l_s: nominal,
        };
        let start = data.flow_start_ms();
        // Every half hour over one period of the series.
        let samples = 2 * data.flow_rows() as i64;
        let values: Vec<f64> = (0..samples)
            .map(|i| feed.sample(&data, start + i * MS_PER_HOUR / 2))
            .collect();
        assert!(values.iter().all(|v| *v > 0.0));
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        assert!((mean / nominal - 1.0).abs() < 0.02, "mean {mean} l/s");
        // The anomalies are kept: somewhere the flow drops below half.
        assert!(values.iter().any(|v| *v < nominal / 2.0));
    }

    #[test]
    fn pressure_follows_the_pattern() {
        let data = data();
        let pattern =
            DemandPattern::from_attributes(Some("1, 1.5,0.5"), Some("600")).expect("valid");
        let feed = Feed::Pressure { pattern };
        let day_start = JAN_15_2025_MS; // a multiple of 1800 s since the epoch
        let expected = [45.0, 42.0, 48.0, 45.0, 42.0];
        for (i, want) in expected.iter().enumerate() {
            let t = day_start + i as i64 * 600_000 + 599_999;
            assert_eq!(feed.sample(&data, t), *want, "step {i}");
        }
        let constant = Feed::Pressure {
            pattern: DemandPattern::from_attributes(None, None).expect("defaults"),
        };
        assert_eq!(constant.sample(&data, 123), PRESSURE_BASE_HEAD_M);
        assert!(DemandPattern::from_attributes(Some("1,x"), None).is_none());
        assert!(DemandPattern::from_attributes(Some("1,NaN"), None).is_none());
        assert!(DemandPattern::from_attributes(Some("1"), Some("0")).is_none());
        assert!(DemandPattern::from_attributes(Some("1"), Some("-5")).is_none());
        assert_eq!(
            DemandPattern::from_attributes(Some("  "), None),
            Some(DemandPattern::constant())
        );
    }

    #[test]
    fn tank_level_stays_within_bounds_and_swings_daily() {
        let data = data();
        let feed = Feed::TankLevel {
            init_m: 3.0,
            min_m: 1.0,
            max_m: 7.0,
        };
        let start = data.flow_start_ms();
        let values: Vec<f64> = (0..(data.flow_rows() as i64 * 4))
            .map(|i| feed.sample(&data, start + i * MS_PER_HOUR / 4))
            .collect();
        for v in &values {
            assert!((1.0..=7.0).contains(v), "{v} m");
        }
        let low = values.iter().copied().fold(f64::INFINITY, f64::min);
        let high = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        assert!(low < 2.0 && high > 6.0, "range {low}..{high}");
        // Fuller at 04:00 UTC than at 16:00 UTC on an ordinary day.
        let day = JAN_15_2025_MS;
        let morning = feed.sample(&data, day + 4 * MS_PER_HOUR);
        let afternoon = feed.sample(&data, day + 16 * MS_PER_HOUR);
        assert!(morning > afternoon, "{morning} vs {afternoon}");
    }

    #[test]
    fn tank_level_model_is_total() {
        assert_eq!(tank_level_m(3.0, 1.0, 7.0, 4.0, 1.0), 3.0 + 0.8 * 4.0);
        assert_eq!(tank_level_m(3.0, 1.0, 7.0, 16.0, 1.0), 3.0 - 0.8 * 2.0);
        // A collapse of the flow fills the tank, a surge drains it.
        assert_eq!(tank_level_m(3.0, 1.0, 7.0, 16.0, 0.25), 7.0);
        assert_eq!(tank_level_m(3.0, 1.0, 7.0, 4.0, 2.0), 1.0);
        assert_eq!(tank_level_m(3.0, 1.0, 7.0, 4.0, f64::NAN), 3.0);
    }
}
