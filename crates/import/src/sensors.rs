//! The sensor deployment generated on an imported scene.

use std::collections::HashSet;

use polis_protocol::{AssetKind, Domain};
use polis_scene::{Asset, Geometry, Scene, Sensor};

use crate::geometry::{area_m2, centroid, midpoint};
use crate::report::ImportReport;

/// Height of a building's smart meter above ground, metres.
pub const METER_HEIGHT_M: f64 = 1.5;

/// Which sensors [`generate_sensors`] places.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SensorOptions {
    /// Share (0–1) of suitable roofs that get photovoltaics. Default 0.3.
    pub pv_share: f64,
    /// Smallest footprint area of a roof suitable for photovoltaics, square
    /// metres. Default 100.
    pub pv_min_roof_m2: f64,
    /// Vehicles placed on each transit route. Default 2.
    pub vehicles_per_route: u32,
    /// Smallest pipe diameter that gets a flow sensor, millimetres. Default
    /// 300.
    pub flow_sensor_min_diameter_mm: f64,
}

impl Default for SensorOptions {
    fn default() -> SensorOptions {
        SensorOptions {
            pv_share: 0.3,
            pv_min_roof_m2: 100.0,
            vehicles_per_route: 2,
            flow_sensor_min_diameter_mm: 300.0,
        }
    }
}

/// Appends the generated sensors to `scene` (the rules are in the crate
/// documentation) and reports how many of each were made: `meter`, `pv`,
/// `pressure`, `level`, `flow`, `vehicle`.
///
/// Deterministic: the same scene and options give the same sensors. A
/// sensor whose id is already in the scene is skipped and counted, so
/// running it twice adds nothing the second time.
pub fn generate_sensors(scene: &mut Scene, options: &SensorOptions) -> ImportReport {
    let mut report = ImportReport::new();
    let mut ids: HashSet<String> = scene.sensors.iter().map(|s| s.id.clone()).collect();
    let mut new = Vec::new();
    let mut add = |rule: &str, sensor: Sensor, report: &mut ImportReport| {
        if !sensor.position_enu_m.iter().all(|v| v.is_finite()) {
            report.skip(format!("{rule}: asset position not finite"));
        } else if ids.insert(sensor.id.clone()) {
            report.add_count(rule, 1);
            new.push(sensor);
        } else {
            report.skip(format!("{rule}: id already present"));
        }
    };

    for asset in &scene.assets {
        match (asset.kind, &asset.geometry) {
            (AssetKind::Building, Geometry::Footprint(ring)) => {
                let Some([east_m, north_m]) = centroid(ring) else {
                    report.skip("meter: empty footprint");
                    continue;
                };
                // Privacy by default: a meter is personal unless the building
                // is known to hold no homes.
                let residential =
                    meter_is_personal(asset.attributes.get("usage").map(String::as_str));
                let meter = sensor(asset, "meter", Domain::Energy, "active_power", "kW");
                add(
                    "meter",
                    Sensor {
                        position_enu_m: [east_m, north_m, METER_HEIGHT_M],
                        personal: residential,
                        ..meter
                    },
                    &mut report,
                );
                if area_m2(ring) >= options.pv_min_roof_m2 && gets_pv(&asset.id, options.pv_share) {
                    let roof_m = asset.height_m.unwrap_or(0.0);
                    let pv = sensor(asset, "pv", Domain::Energy, "pv_power", "kW");
                    add(
                        "pv",
                        Sensor {
                            position_enu_m: [east_m, north_m, roof_m],
                            ..pv
                        },
                        &mut report,
                    );
                }
            }
            (AssetKind::WaterJunction, Geometry::Point(position)) => {
                let s = sensor(asset, "pressure", Domain::Water, "pressure", "m");
                let s = Sensor {
                    position_enu_m: *position,
                    ..s
                };
                add("pressure", s, &mut report);
            }
            (AssetKind::WaterTank, Geometry::Point(position)) => {
                let s = sensor(asset, "level", Domain::Water, "level", "m");
                let s = Sensor {
                    position_enu_m: *position,
                    ..s
                };
                add("level", s, &mut report);
            }
            (AssetKind::WaterPump | AssetKind::WaterPipe, Geometry::Line(line)) => {
                if asset.kind == AssetKind::WaterPipe {
                    let diameter_mm = asset
                        .attributes
                        .get("diameter_mm")
                        .and_then(|d| d.parse::<f64>().ok());
                    match diameter_mm {
                        Some(d) if d >= options.flow_sensor_min_diameter_mm => {}
                        Some(_) => continue,
                        None => {
                            report.skip("flow: pipe without a diameter_mm attribute");
                            continue;
                        }
                    }
                }
                let Some([east_m, north_m]) = midpoint(line) else {
                    report.skip("flow: empty line");
                    continue;
                };
                let s = sensor(asset, "flow", Domain::Water, "flow", "l/s");
                let s = Sensor {
                    position_enu_m: [east_m, north_m, 0.0],
                    ..s
                };
                add("flow", s, &mut report);
            }
            (AssetKind::TransitRoute, Geometry::Line(line)) => {
                let Some(&[east_m, north_m]) = line.first() else {
                    report.skip("vehicle: empty route");
                    continue;
                };
                for n in 1..=options.vehicles_per_route {
                    let s = Sensor {
                        id: format!("vehicle-{}-{n}", asset.id),
                        domain: Domain::Transport,
                        quantity: polis_protocol::QUANTITY_DISTANCE_ALONG_ROUTE.to_owned(),
                        unit: "m".to_owned(),
                        position_enu_m: [east_m, north_m, 0.0],
                        asset: Some(asset.id.clone()),
                        personal: false,
                    };
                    add("vehicle", s, &mut report);
                }
            }
            _ => {}
        }
    }
    scene.sensors.extend(new);
    report
}

/// A sensor `<prefix>-<asset id>` on the asset, at the origin, not personal.
fn sensor(asset: &Asset, prefix: &str, domain: Domain, quantity: &str, unit: &str) -> Sensor {
    Sensor {
        id: format!("{prefix}-{}", asset.id),
        domain,
        quantity: quantity.to_owned(),
        unit: unit.to_owned(),
        position_enu_m: [0.0; 3],
        asset: Some(asset.id.clone()),
        personal: false,
    }
}

/// True when the building with this id is among the `share` of suitable
/// roofs that get photovoltaics: its [`unit_hash`] is below `share`.
pub(crate) fn gets_pv(asset_id: &str, share: f64) -> bool {
    unit_hash(asset_id) < share
}

/// The 64-bit FNV-1a hash of the text, mixed by the MurmurHash3 64-bit
/// finalizer (FNV-1a alone spreads ids that differ only in their last
/// digits unevenly), scaled to [0, 1).
fn unit_hash(text: &str) -> f64 {
    (mix(fnv1a(text)) >> 11) as f64 / (1u64 << 53) as f64
}

/// 64-bit FNV-1a.
fn fnv1a(text: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    text.bytes()
        .fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

/// The MurmurHash3 `fmix64` finalizer.
fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Usages of buildings known to hold no homes; a meter of any other building
/// (residential, or of unknown use such as OpenStreetMap's `building=yes`)
/// measures households and is `personal`.
pub const NON_RESIDENTIAL_USAGES: [&str; 5] =
    ["retail", "office", "commercial", "public", "industrial"];

/// Whether the meter of a building with this `usage` is personal data.
pub fn meter_is_personal(usage: Option<&str>) -> bool {
    !usage.is_some_and(|u| NON_RESIDENTIAL_USAGES.contains(&u))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_reference_values() {
        // From the reference implementation's test vectors.
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a("foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(mix(0), 0);
    }

    #[test]
    fn pv_choice_is_stable_and_follows_the_share() {
        let ids: Vec<String> = (0..10_000).map(|i| format!("osm-way-{i}")).collect();
        // Binomial: 3000 expected, standard deviation 46.
        let chosen = ids.iter().filter(|id| gets_pv(id, 0.3)).count();
        assert!((2_820..=3_180).contains(&chosen), "{chosen}");
        assert!(ids.iter().all(|id| !gets_pv(id, 0.0)));
        assert!(ids.iter().all(|id| gets_pv(id, 1.0)));
        assert_eq!(gets_pv("osm-way-42", 0.3), gets_pv("osm-way-42", 0.3));
    }
}
