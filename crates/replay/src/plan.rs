//! Planning: which feed drives each sensor of a scene, and which sensors are
//! left alone and why.

use std::collections::{BTreeMap, HashMap};

use polis_protocol::{AssetKind, Reading};
use polis_scene::{Asset, Geometry, Scene, Sensor};

use crate::data::FeedData;
use crate::feed::{
    BuildingUsage, DEFAULT_PIPE_DIAMETER_MM, DemandPattern, Feed, nominal_flow_l_s, pv_peak_kw,
    pv_profile,
};
use crate::route::RouteMotion;
use polis_scene::geometry::area_m2;

/// Quantity of building electricity meters, kW.
pub const QUANTITY_ACTIVE_POWER: &str = "active_power";
/// Quantity of rooftop photovoltaics, kW.
pub const QUANTITY_PV_POWER: &str = "pv_power";
/// Quantity of pipe and pump flow meters, l/s.
pub const QUANTITY_FLOW: &str = "flow";
/// Quantity of junction pressure sensors, m of head.
pub const QUANTITY_PRESSURE: &str = "pressure";
/// Quantity of tank level sensors, m.
pub const QUANTITY_LEVEL: &str = "level";
/// Quantity of transit vehicles' positions, m along their route.
pub use polis_protocol::QUANTITY_DISTANCE_ALONG_ROUTE;

/// The quantities replay knows how to feed.
pub const FED_QUANTITIES: [&str; 6] = [
    QUANTITY_ACTIVE_POWER,
    QUANTITY_PV_POWER,
    QUANTITY_FLOW,
    QUANTITY_PRESSURE,
    QUANTITY_LEVEL,
    QUANTITY_DISTANCE_ALONG_ROUTE,
];

/// Which sensors replay feeds, and how; and which it skips.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FeedPlan {
    /// `(sensor id, feed)`, in scene order.
    pub feeds: Vec<(String, Feed)>,
    /// Skipped sensors: reason → how many.
    pub skipped: BTreeMap<String, u64>,
}

impl FeedPlan {
    /// Number of sensors skipped, all reasons together.
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }

    /// One reading per fed sensor at a simulated instant, each stamped with
    /// that instant as its device time, in plan order.
    pub fn readings_at(&self, data: &FeedData, sim_time_ms: i64) -> Vec<Reading> {
        self.feeds
            .iter()
            .map(|(sensor, feed)| Reading {
                sensor: sensor.clone(),
                device_time_ms: sim_time_ms,
                value: feed.sample(data, sim_time_ms),
                quality: None,
            })
            .collect()
    }
}

/// Decides the feed of every sensor of `scene` (see the crate
/// documentation for the rules). Never fails: sensors that cannot be fed
/// are counted in [`FeedPlan::skipped`] under their reason.
pub fn plan_feeds(scene: &Scene) -> FeedPlan {
    let assets: HashMap<&str, &Asset> = scene.assets.iter().map(|a| (a.id.as_str(), a)).collect();
    let mut vehicles_per_route: HashMap<&str, u64> = HashMap::new();
    for sensor in &scene.sensors {
        if sensor.quantity == QUANTITY_DISTANCE_ALONG_ROUTE
            && let Some(route) = &sensor.asset
        {
            *vehicles_per_route.entry(route.as_str()).or_default() += 1;
        }
    }
    let mut plan = FeedPlan::default();
    for sensor in &scene.sensors {
        match feed_for(sensor, &assets, &vehicles_per_route) {
            Ok(feed) => plan.feeds.push((sensor.id.clone(), feed)),
            Err(reason) => *plan.skipped.entry(reason).or_default() += 1,
        }
    }
    plan
}

/// The feed of one sensor, or why it has none.
fn feed_for(
    sensor: &Sensor,
    assets: &HashMap<&str, &Asset>,
    vehicles_per_route: &HashMap<&str, u64>,
) -> Result<Feed, String> {
    let quantity = sensor.quantity.as_str();
    let wanted: &[AssetKind] = match quantity {
        QUANTITY_ACTIVE_POWER | QUANTITY_PV_POWER => &[AssetKind::Building],
        QUANTITY_FLOW => &[
            AssetKind::WaterPipe,
            AssetKind::WaterPump,
            AssetKind::WaterValve,
        ],
        QUANTITY_PRESSURE => &[AssetKind::WaterJunction],
        QUANTITY_LEVEL => &[AssetKind::WaterTank],
        QUANTITY_DISTANCE_ALONG_ROUTE => &[AssetKind::TransitRoute],
        other => return Err(format!("no feed for quantity {other}")),
    };
    let needs = || {
        wanted
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(" or ")
    };
    let Some(asset_id) = &sensor.asset else {
        return Err(format!(
            "{quantity} sensor without an asset (needs {})",
            needs()
        ));
    };
    let Some(asset) = assets.get(asset_id.as_str()).copied() else {
        return Err(format!(
            "{quantity} sensor on an asset missing from the scene"
        ));
    };
    if !wanted.contains(&asset.kind) {
        return Err(format!(
            "{quantity} sensor on a {} (needs {})",
            asset.kind.as_str(),
            needs()
        ));
    }
    match quantity {
        QUANTITY_ACTIVE_POWER => load_feed(sensor, asset),
        QUANTITY_PV_POWER => pv_feed(sensor, asset),
        QUANTITY_FLOW => Ok(Feed::Flow {
            nominal_l_s: nominal_flow_l_s(
                positive_attribute(asset, "diameter_mm").unwrap_or(DEFAULT_PIPE_DIAMETER_MM),
            ),
        }),
        QUANTITY_PRESSURE => DemandPattern::from_attributes(
            attribute(asset, "demand_pattern"),
            attribute(asset, "pattern_step_s"),
        )
        .map(|pattern| Feed::Pressure { pattern })
        .ok_or_else(|| {
            "pressure sensor on a water_junction with an invalid demand_pattern or pattern_step_s"
                .to_owned()
        }),
        QUANTITY_LEVEL => tank_feed(asset),
        _ => vehicle_feed(sensor, asset, assets, vehicles_per_route),
    }
}

fn attribute<'a>(asset: &'a Asset, key: &str) -> Option<&'a str> {
    asset.attributes.get(key).map(String::as_str)
}

/// A finite number attribute.
fn number_attribute(asset: &Asset, key: &str) -> Option<f64> {
    attribute(asset, key)?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
}

/// A finite, strictly positive number attribute.
fn positive_attribute(asset: &Asset, key: &str) -> Option<f64> {
    number_attribute(asset, key).filter(|v| *v > 0.0)
}

fn footprint_of(quantity: &str, asset: &Asset) -> Result<f64, String> {
    match &asset.geometry {
        Geometry::Footprint(points) => Ok(area_m2(points)),
        _ => Err(format!(
            "{quantity} sensor on a building without a footprint"
        )),
    }
}

/// Floor area of a building, m²: `floor_area_m2` if it is a positive
/// number, else footprint area × max(`levels`, 1) (`levels` defaulting to 1).
fn floor_area_m2(asset: &Asset, footprint_m2: f64) -> f64 {
    positive_attribute(asset, "floor_area_m2").unwrap_or_else(|| {
        let levels = number_attribute(asset, "levels").unwrap_or(1.0).max(1.0);
        footprint_m2 * levels
    })
}

fn load_feed(sensor: &Sensor, asset: &Asset) -> Result<Feed, String> {
    let footprint_m2 = footprint_of(QUANTITY_ACTIVE_POWER, asset)?;
    let usage = BuildingUsage::from_attribute(attribute(asset, "usage"));
    Ok(Feed::Load {
        profile: usage.load_profile(&sensor.id),
        rated_kw: floor_area_m2(asset, footprint_m2) * usage.rated_kw_per_m2(),
    })
}

fn pv_feed(sensor: &Sensor, asset: &Asset) -> Result<Feed, String> {
    let footprint_m2 = footprint_of(QUANTITY_PV_POWER, asset)?;
    Ok(Feed::Pv {
        profile: pv_profile(&sensor.id),
        peak_kw: pv_peak_kw(footprint_m2),
    })
}

fn tank_feed(asset: &Asset) -> Result<Feed, String> {
    let (Some(min_m), Some(max_m)) = (
        number_attribute(asset, "min_level_m"),
        number_attribute(asset, "max_level_m"),
    ) else {
        return Err("level sensor on a water_tank without min_level_m and max_level_m".to_owned());
    };
    if min_m > max_m {
        return Err("level sensor on a water_tank with min_level_m above max_level_m".to_owned());
    }
    let init_m = number_attribute(asset, "init_level_m")
        .unwrap_or((min_m + max_m) / 2.0)
        .clamp(min_m, max_m);
    Ok(Feed::TankLevel {
        init_m,
        min_m,
        max_m,
    })
}

/// The vehicle number from an id ending in `-<n>`; 0 otherwise.
pub(crate) fn vehicle_number(sensor_id: &str) -> u64 {
    sensor_id
        .rsplit_once('-')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(0)
}

fn vehicle_feed(
    sensor: &Sensor,
    asset: &Asset,
    assets: &HashMap<&str, &Asset>,
    vehicles_per_route: &HashMap<&str, u64>,
) -> Result<Feed, String> {
    let Geometry::Line(line) = &asset.geometry else {
        return Err(format!(
            "{QUANTITY_DISTANCE_ALONG_ROUTE} sensor on a transit_route without a line"
        ));
    };
    // Stops that are not point assets of the scene are ignored.
    let stops: Vec<[f64; 2]> = attribute(asset, "stops")
        .unwrap_or("")
        .split(',')
        .filter_map(|id| match assets.get(id.trim()).map(|a| &a.geometry) {
            Some(Geometry::Point([east_m, north_m, _])) => Some([*east_m, *north_m]),
            _ => None,
        })
        .collect();
    let vehicles = vehicles_per_route
        .get(asset.id.as_str())
        .copied()
        .unwrap_or(1)
        .max(1);
    let offset_fraction = (vehicle_number(&sensor.id) % vehicles) as f64 / vehicles as f64;
    RouteMotion::new(line, &stops, offset_fraction)
        .map(|route| Feed::Vehicle { route })
        .ok_or_else(|| {
            format!("{QUANTITY_DISTANCE_ALONG_ROUTE} sensor on a transit_route of zero length")
        })
}
