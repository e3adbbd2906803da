//! The synthetic cities of the benchmarks: a grid of water-pressure
//! sensors (ingest, fan-out) and a grid of buildings with a meter each
//! (scale).

use polis_protocol::{AssetKind, Domain};
use polis_scene::{Asset, Geometry, Georeference, Scene, Sensor};

/// Grid spacing of [`grid_scene`], metres.
pub(crate) const GRID_SPACING_M: f64 = 10.0;

/// A square grid of `count` water junctions, 10 m apart, each with a
/// pressure sensor: the synthetic city of the benchmarks.
pub(crate) fn grid_scene(count: usize) -> Scene {
    let side = (count as f64).sqrt().ceil() as usize;
    let mut assets = Vec::with_capacity(count);
    let mut sensors = Vec::with_capacity(count);
    for index in 0..count {
        let (row, col) = (index / side.max(1), index % side.max(1));
        let position = [
            col as f64 * GRID_SPACING_M,
            row as f64 * GRID_SPACING_M,
            0.0,
        ];
        assets.push(Asset {
            id: format!("j{index}"),
            kind: AssetKind::WaterJunction,
            geometry: Geometry::Point(position),
            height_m: None,
            attributes: Default::default(),
        });
        sensors.push(Sensor {
            id: format!("s{index}"),
            domain: Domain::Water,
            quantity: "pressure".into(),
            unit: "m".into(),
            position_enu_m: position,
            asset: Some(format!("j{index}")),
            personal: false,
        });
    }
    synthetic_scene(
        format!("grid-{count}"),
        Some("synthetic benchmark grid".into()),
        assets,
        sensors,
    )
}

/// A square grid of 10 m × 10 m buildings, 15 m apart, each with a meter.
pub(crate) fn building_city(count: usize) -> Scene {
    let side = (count as f64).sqrt().ceil() as usize;
    let mut assets = Vec::with_capacity(count);
    let mut sensors = Vec::with_capacity(count);
    for index in 0..count {
        let (east_m, north_m) = ((index % side) as f64 * 15.0, (index / side) as f64 * 15.0);
        assets.push(Asset {
            id: format!("b{index}"),
            kind: AssetKind::Building,
            geometry: Geometry::Footprint(vec![
                [east_m, north_m],
                [east_m + 10.0, north_m],
                [east_m + 10.0, north_m + 10.0],
                [east_m, north_m + 10.0],
            ]),
            height_m: Some(10.0),
            attributes: Default::default(),
        });
        sensors.push(Sensor {
            id: format!("m{index}"),
            domain: Domain::Energy,
            quantity: "active_power".into(),
            unit: "kW".into(),
            position_enu_m: [east_m + 5.0, north_m + 5.0, 1.5],
            asset: Some(format!("b{index}")),
            personal: false,
        });
    }
    synthetic_scene(format!("buildings-{count}"), None, assets, sensors)
}

/// A scene of generated assets and sensors, placed in central Helsinki.
fn synthetic_scene(
    name: String,
    description: Option<String>,
    assets: Vec<Asset>,
    sensors: Vec<Sensor>,
) -> Scene {
    Scene {
        name,
        description,
        attribution: vec!["synthetic; no third-party data".into()],
        georeference: Georeference {
            origin_lon_deg: 24.94,
            origin_lat_deg: 60.17,
        },
        assets,
        sensors,
    }
}
