//! The sensor deployment on Helsinki with Net3: OSM import, EPANET placement
//! and sensor generation together.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use polis_import::{
    EpanetPlacement, ImportReport, OsmOptions, SensorOptions, add_epanet, generate_sensors,
    import_osm, parse_epanet,
};
use polis_scene::{Asset, AssetKind, Domain, Geometry, Scene};

const HELSINKI: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../assets/osm/helsinki-centre.osm.pbf"
);
const NET3: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../assets/water/Net3.inp");

/// Helsinki with Net3 laid over its centre.
fn city() -> Scene {
    let (mut scene, _) = import_osm(Path::new(HELSINKI), &OsmOptions::default(), &mut |_| {})
        .expect("Helsinki imports");
    let network = parse_epanet(Path::new(NET3)).expect("Net3 parses");
    let geo = scene.georeference;
    let placement = EpanetPlacement {
        origin_lon_deg: geo.origin_lon_deg,
        origin_lat_deg: geo.origin_lat_deg,
        rotation_deg: 15.0,
        metres_per_unit: 25.0,
    };
    add_epanet(&mut scene, &network, &placement).expect("Net3 places");
    scene
}

fn with_sensors() -> (Scene, ImportReport) {
    let mut scene = city();
    let report = generate_sensors(&mut scene, &SensorOptions::default());
    (scene, report)
}

fn of_kind(scene: &Scene, kind: AssetKind) -> Vec<&Asset> {
    scene.assets.iter().filter(|a| a.kind == kind).collect()
}

fn footprint_area_m2(asset: &Asset) -> f64 {
    let Geometry::Footprint(ring) = &asset.geometry else {
        return 0.0;
    };
    let twice: f64 = ring
        .iter()
        .zip(ring.iter().cycle().skip(1))
        .map(|(a, b)| a[0] * b[1] - b[0] * a[1])
        .sum();
    twice.abs() / 2.0
}

#[test]
fn the_deployment_validates_and_follows_the_rules() {
    let (scene, report) = with_sensors();
    println!("{report}");
    assert!(scene.validate().is_ok());
    assert!(report.skipped.is_empty(), "{report}");

    let ids: HashSet<&str> = scene.sensors.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids.len(), scene.sensors.len(), "sensor ids are unique");

    let buildings = of_kind(&scene, AssetKind::Building);
    let by_rule = |prefix: &str| {
        scene
            .sensors
            .iter()
            .filter(|s| s.id.starts_with(&format!("{prefix}-")))
            .collect::<Vec<_>>()
    };

    // One meter per building, personal unless the building holds no homes.
    let meters = by_rule("meter");
    assert_eq!(meters.len(), buildings.len());
    assert_eq!(report.count("meter"), buildings.len() as u64);
    for meter in &meters {
        let building = scene
            .asset(meter.asset.as_deref().unwrap_or_default())
            .expect("a meter's building");
        let usage = building.attributes["usage"].as_str();
        let non_residential =
            ["retail", "office", "commercial", "public", "industrial"].contains(&usage);
        assert_eq!(meter.personal, !non_residential, "{}", meter.id);
        assert_eq!(
            (meter.domain, meter.quantity.as_str()),
            (Domain::Energy, "active_power")
        );
        assert_eq!(meter.unit, "kW");
        assert_eq!(meter.position_enu_m[2], 1.5);
        assert_eq!(meter.id, format!("meter-{}", building.id));
    }
    assert!(meters.iter().any(|m| m.personal));
    assert!(meters.iter().any(|m| !m.personal));

    // PV on about 30 % of the roofs of 100 m² or more.
    let suitable = buildings
        .iter()
        .filter(|b| footprint_area_m2(b) >= 100.0)
        .count() as f64;
    let pv = by_rule("pv");
    let expected = 0.3 * suitable;
    let sigma = (suitable * 0.3 * 0.7).sqrt();
    println!("pv: {} of {suitable} suitable roofs", pv.len());
    assert!(
        (pv.len() as f64 - expected).abs() <= 4.0 * sigma,
        "{} PV for {suitable} suitable roofs",
        pv.len()
    );
    for panel in &pv {
        let building = scene
            .asset(panel.asset.as_deref().unwrap_or_default())
            .expect("a panel's building");
        assert!(footprint_area_m2(building) >= 100.0 - 1e-6, "{}", panel.id);
        assert_eq!(Some(panel.position_enu_m[2]), building.height_m);
        assert!(!panel.personal);
        assert_eq!(
            (panel.quantity.as_str(), panel.unit.as_str()),
            ("pv_power", "kW")
        );
    }

    // Water: pressure per junction, level per tank, flow per pump and big pipe.
    assert_eq!(by_rule("pressure").len(), 92);
    assert_eq!(by_rule("level").len(), 3);
    let big_pipes = of_kind(&scene, AssetKind::WaterPipe)
        .iter()
        .filter(|p| {
            p.attributes["diameter_mm"]
                .parse::<f64>()
                .is_ok_and(|d| d >= 300.0)
        })
        .count();
    assert_eq!(by_rule("flow").len(), 2 + big_pipes);
    assert!(
        by_rule("flow")
            .iter()
            .all(|s| s.unit == "l/s" && s.domain == Domain::Water)
    );

    // Two vehicles per route, at its start.
    let routes = of_kind(&scene, AssetKind::TransitRoute);
    let vehicles = by_rule("vehicle");
    assert_eq!(vehicles.len(), 2 * routes.len());
    for route in &routes {
        let Geometry::Line(line) = &route.geometry else {
            panic!("{} has no line", route.id);
        };
        for n in 1..=2 {
            let vehicle = scene
                .sensor(&format!("vehicle-{}-{n}", route.id))
                .expect("a vehicle per route");
            assert_eq!(vehicle.asset.as_deref(), Some(route.id.as_str()));
            assert_eq!(vehicle.quantity, "distance_along_route");
            let start = line.first().expect("a route line has points");
            assert_eq!(
                [vehicle.position_enu_m[0], vehicle.position_enu_m[1]],
                *start
            );
        }
    }

    // The scene survives being written and read back.
    let json = scene.to_json_string_pretty();
    let again = Scene::from_json_str(&json, "city.json").expect("reads back");
    assert_eq!(again, scene);
}

#[test]
fn generation_is_deterministic_and_not_repeated() {
    let (first, _) = with_sensors();
    let (mut second, _) = with_sensors();
    assert_eq!(first.sensors, second.sensors);

    let before = second.sensors.len();
    let report = generate_sensors(&mut second, &SensorOptions::default());
    assert_eq!(second.sensors.len(), before, "nothing added twice");
    assert!(report.counts.is_empty(), "{report}");
    let skipped: u64 = report.skipped.values().sum();
    assert_eq!(skipped as usize, before);
}

#[test]
fn options_change_the_deployment() {
    let mut scene = city();
    let options = SensorOptions {
        pv_share: 1.0,
        pv_min_roof_m2: 0.0,
        vehicles_per_route: 0,
        flow_sensor_min_diameter_mm: f64::INFINITY,
    };
    let report = generate_sensors(&mut scene, &options);
    let counts: BTreeMap<&str, u64> = report
        .counts
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(counts.get("pv"), counts.get("meter"), "every roof has PV");
    assert_eq!(counts.get("vehicle"), None);
    assert_eq!(counts.get("flow"), Some(&2), "only the pumps");
}
