//! Parsing EPANET networks (Net3) and placing them in a scene.

use std::collections::BTreeMap;
use std::path::Path;

use polis_import::{
    EpanetNetwork, EpanetPlacement, FlowUnits, ImportError, add_epanet, parse_epanet,
    parse_epanet_str,
};
use polis_scene::{Asset, AssetKind, Geometry, Georeference, Scene};

const NET3: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../assets/water/Net3.inp");

/// Near Rautatientori, Helsinki.
const ORIGIN: Georeference = Georeference {
    origin_lon_deg: 24.9443,
    origin_lat_deg: 60.1716,
};

fn net3() -> EpanetNetwork {
    match parse_epanet(Path::new(NET3)) {
        Ok(network) => network,
        Err(e) => panic!("Net3 must parse: {e}"),
    }
}

fn empty_scene() -> Scene {
    Scene {
        name: "water".to_owned(),
        description: None,
        attribution: Vec::new(),
        georeference: ORIGIN,
        assets: Vec::new(),
        sensors: Vec::new(),
    }
}

fn placement(rotation_deg: f64) -> EpanetPlacement {
    EpanetPlacement {
        origin_lon_deg: 24.95,
        origin_lat_deg: 60.17,
        rotation_deg,
        metres_per_unit: 25.0,
    }
}

fn point(asset: &Asset) -> [f64; 3] {
    match asset.geometry {
        Geometry::Point(p) => p,
        _ => panic!("{} is not a point", asset.id),
    }
}

fn placed(rotation_deg: f64) -> Scene {
    let mut scene = empty_scene();
    add_epanet(&mut scene, &net3(), &placement(rotation_deg)).expect("Net3 places");
    scene
}

#[test]
fn net3_has_the_elements_of_the_file() {
    let net = net3();
    assert_eq!(net.junctions.len(), 92);
    assert_eq!(net.reservoirs.len(), 2);
    assert_eq!(net.tanks.len(), 3);
    assert_eq!(net.pipes.len(), 117);
    assert_eq!(net.pumps.len(), 2);
    assert_eq!(net.valves.len(), 0);
    assert_eq!(net.coordinates.len(), 97, "every node has coordinates");
    assert!(net.vertices.is_empty());
    assert_eq!(net.flow_units, FlowUnits::Gpm);
    assert_eq!(net.pattern_timestep_s, 3600);
    assert_eq!(net.default_pattern.as_deref(), Some("1"));
    assert!(
        net.title.starts_with("EPANET Example Network 3"),
        "{}",
        net.title
    );
    assert_eq!(net.source, "Net3.inp");

    // Five patterns of 24 hourly multipliers, spread over several lines.
    assert_eq!(
        net.patterns.keys().map(String::as_str).collect::<Vec<_>>(),
        ["1", "2", "3", "4", "5"]
    );
    for (id, multipliers) in &net.patterns {
        assert_eq!(multipliers.len(), 24, "pattern {id}");
    }
    assert_eq!(net.patterns["1"].first(), Some(&1.34));
    assert_eq!(net.patterns["1"].last(), Some(&1.67));

    let j15 = &net.junctions[1];
    assert_eq!(
        (j15.id.as_str(), j15.elevation, j15.base_demand),
        ("15", 32.0, 1.0)
    );
    assert_eq!(j15.pattern.as_deref(), Some("3"));
    let tank1 = &net.tanks[0];
    assert_eq!(
        (
            tank1.elevation,
            tank1.init_level,
            tank1.min_level,
            tank1.max_level,
            tank1.diameter
        ),
        (131.9, 13.1, 0.1, 32.1, 85.0)
    );
    let pipe330 = net.pipes.iter().find(|p| p.id == "330").expect("pipe 330");
    assert_eq!(pipe330.status, "Closed");
    let pump335 = net.pumps.iter().find(|p| p.id == "335").expect("pump 335");
    assert_eq!(
        (pump335.node1.as_str(), pump335.node2.as_str()),
        ("60", "61")
    );
    assert_eq!(
        pump335.parameters,
        vec![("HEAD".to_owned(), "2".to_owned())]
    );
}

#[test]
fn net3_placed_validates_with_converted_units() {
    let mut scene = empty_scene();
    let report = add_epanet(&mut scene, &net3(), &placement(0.0)).expect("Net3 places");
    println!("{report}");
    assert!(scene.validate().is_ok());
    assert!(report.skipped.is_empty(), "{report}");
    let expected: BTreeMap<String, u64> = [
        ("water_junction", 92),
        ("water_reservoir", 2),
        ("water_tank", 3),
        ("water_pipe", 117),
        ("water_pump", 2),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(report.counts, expected);
    assert!(scene.attribution.iter().any(|a| a.contains("Net3.inp")));

    // GPM: feet and inches become metres and millimetres.
    let j10 = scene.asset("epanet-junction-10").expect("junction 10");
    assert_eq!(j10.attributes["elevation_m"], "44.806"); // 147 ft
    assert_eq!(point(j10)[2], 44.81);
    assert_eq!(j10.attributes["demand_unit"], "GPM");
    // No own pattern: the default pattern 1.
    assert_eq!(j10.attributes["pattern"], "1");
    assert_eq!(j10.attributes["demand_pattern"].split(',').count(), 24);
    assert_eq!(j10.attributes["pattern_step_s"], "3600");
    let j15 = scene.asset("epanet-junction-15").expect("junction 15");
    assert_eq!(j15.attributes["pattern"], "3");
    assert!(j15.attributes["demand_pattern"].starts_with("620,620,620"));
    assert_eq!(j15.attributes["base_demand_l_s"], "0.0631");

    let pipe60 = scene.asset("epanet-pipe-60").expect("pipe 60");
    assert_eq!(pipe60.attributes["diameter_mm"], "609.6"); // 24 in
    assert_eq!(pipe60.attributes["length_m"], "375.21"); // 1231 ft
    assert_eq!(pipe60.attributes["from"], "epanet-reservoir-River");
    assert_eq!(pipe60.attributes["to"], "epanet-junction-60");
    let Geometry::Line(line) = &pipe60.geometry else {
        panic!("pipe 60 is not a line");
    };
    let river = point(scene.asset("epanet-reservoir-River").expect("River"));
    assert_eq!(line.first(), Some(&[river[0], river[1]]));
    assert_eq!(
        scene
            .asset("epanet-reservoir-River")
            .expect("River")
            .attributes["head_m"],
        "67.056"
    );
    let tank3 = scene.asset("epanet-tank-3").expect("tank 3");
    assert_eq!(tank3.attributes["diameter_m"], "49.987"); // 164 ft
    let pump10 = scene.asset("epanet-pump-10").expect("pump 10");
    assert_eq!(pump10.kind, AssetKind::WaterPump);
    assert_eq!(pump10.attributes["head_curve"], "1");
}

#[test]
fn net3_is_centred_on_the_placement_point() {
    let scene = placed(0.0);
    let target = ORIGIN.enu_from_lonlat(24.95, 60.17);
    let bounds = scene.bounds_enu_m().expect("non-empty");
    let centre = [
        (bounds.0[0] + bounds.1[0]) / 2.0,
        (bounds.0[1] + bounds.1[1]) / 2.0,
    ];
    assert!(
        (centre[0] - target[0]).abs() < 1.0,
        "{centre:?} vs {target:?}"
    );
    assert!(
        (centre[1] - target[1]).abs() < 1.0,
        "{centre:?} vs {target:?}"
    );
    // 25 m per unit over Net3's ~40 x 34 units of drawing.
    let width_m = bounds.1[0] - bounds.0[0];
    assert!((900.0..1100.0).contains(&width_m), "{width_m}");
}

#[test]
fn rotation_turns_the_network_counter_clockwise() {
    let straight = placed(0.0);
    let turned = placed(90.0);
    let target = ORIGIN.enu_from_lonlat(24.95, 60.17);
    for asset in straight
        .assets
        .iter()
        .filter(|a| a.kind == AssetKind::WaterJunction)
    {
        let a = point(asset);
        let b = point(turned.asset(&asset.id).expect("same asset"));
        let (dx, dy) = (a[0] - target[0], a[1] - target[1]);
        // (dx, dy) turned by +90° is (-dy, dx).
        assert!((b[0] - target[0] + dy).abs() < 0.05, "{}", asset.id);
        assert!((b[1] - target[1] - dx).abs() < 0.05, "{}", asset.id);
        assert_eq!(a[2], b[2]);
    }
}

#[test]
fn adding_twice_is_refused_and_leaves_the_scene_unchanged() {
    let mut scene = placed(0.0);
    let before = scene.clone();
    let err = add_epanet(&mut scene, &net3(), &placement(0.0)).expect_err("twice");
    assert!(matches!(err, ImportError::DuplicateAsset { .. }), "{err}");
    assert_eq!(scene, before);
}

#[test]
fn bad_placements_are_refused() {
    let mut scene = empty_scene();
    for bad in [
        EpanetPlacement {
            metres_per_unit: 0.0,
            ..placement(0.0)
        },
        EpanetPlacement {
            rotation_deg: f64::NAN,
            ..placement(0.0)
        },
        EpanetPlacement {
            origin_lat_deg: 91.0,
            ..placement(0.0)
        },
    ] {
        let err = add_epanet(&mut scene, &net3(), &bad).expect_err("bad placement");
        assert!(matches!(err, ImportError::InvalidOptions { .. }), "{err}");
    }
    assert!(scene.assets.is_empty());
}

const SMALL: &str = "\
[TITLE]
Small test network

[JUNCTIONS]
;ID  Elev  Demand  Pattern
 J1  10    2.5     P1
 J2  12    0
 J3  11    1       ; no coordinates

[RESERVOIRS]
 R1  50

[PIPES]
 P1  R1  J1  100  150  100
 P2  J1  J2  80   300  100  0  CV
 P3  J2  J3  50   200  100

[VALVES]
 V1  J1  J2  200  PRV  30

[PATTERNS]
 P1  0.5  1.5
 P1  1.0

[OPTIONS]
 Units  LPS

[TIMES]
 Pattern Timestep  0:30

[COORDINATES]
 J1  0    0
 J2  100  0
 R1  -50  0

[VERTICES]
 P2  50  20
";

#[test]
fn si_units_vertices_and_missing_coordinates() {
    let net = parse_epanet_str(SMALL, "small.inp").expect("small network");
    assert_eq!(net.flow_units, FlowUnits::Lps);
    assert_eq!(net.pattern_timestep_s, 1800);
    assert_eq!(net.patterns["P1"], vec![0.5, 1.5, 1.0]);
    assert_eq!(net.pipes[1].status, "CV");
    assert_eq!(net.title, "Small test network");

    let mut scene = empty_scene();
    let place = EpanetPlacement {
        origin_lon_deg: ORIGIN.origin_lon_deg,
        origin_lat_deg: ORIGIN.origin_lat_deg,
        rotation_deg: 0.0,
        metres_per_unit: 1.0,
    };
    let report = add_epanet(&mut scene, &net, &place).expect("places");
    println!("{report}");
    assert!(scene.validate().is_ok());
    assert_eq!(report.count("water_junction"), 2);
    assert_eq!(report.skipped("water_junction: no coordinates"), 1);
    assert_eq!(report.skipped("water_pipe: end node not placed"), 1);
    assert_eq!(report.count("water_pipe"), 2);
    assert_eq!(report.count("water_valve"), 1);

    // SI values are kept as they are.
    let j1 = scene.asset("epanet-junction-J1").expect("J1");
    assert_eq!(j1.attributes["elevation_m"], "10");
    assert_eq!(j1.attributes["demand_pattern"], "0.5,1.5,1");
    assert_eq!(j1.attributes["pattern_step_s"], "1800");
    assert_eq!(j1.attributes["base_demand_l_s"], "2.5");
    // J2 has no pattern and there is no pattern "1": none.
    let j2 = scene.asset("epanet-junction-J2").expect("J2");
    assert!(!j2.attributes.contains_key("pattern"));
    let p2 = scene.asset("epanet-pipe-P2").expect("P2");
    assert_eq!(p2.attributes["diameter_mm"], "300");
    // Centre of the box x -50..100, y 0..20 is (25, 10).
    assert_eq!(
        p2.geometry,
        Geometry::Line(vec![[-25.0, -10.0], [25.0, 10.0], [75.0, -10.0]])
    );
    let v1 = scene.asset("epanet-valve-V1").expect("V1");
    assert_eq!(v1.attributes["valve_type"], "PRV");
    assert_eq!(v1.attributes["setting"], "30");
}

/// Parses `text`; must fail at `line` with a message containing `needle`.
fn assert_epanet_error(text: &str, line: usize, needle: &str) {
    let err = parse_epanet_str(text, "broken.inp").expect_err("broken input");
    let ImportError::Epanet {
        line: found,
        message,
        ..
    } = &err
    else {
        panic!("not an EPANET error: {err:?}");
    };
    assert_eq!(*found, line, "{err}");
    assert!(message.contains(needle), "{err}");
    let shown = err.to_string();
    assert!(
        shown.starts_with(&format!("broken.inp:{line}: ")),
        "{shown}"
    );
}

#[test]
fn broken_input_names_the_line() {
    // A bad number.
    let bad_number = SMALL.replace(" J2  12    0", " J2  1x2   0");
    assert_epanet_error(&bad_number, 7, "elevation \"1x2\" is not a number");
    // A link to an unknown node.
    let unknown_node = SMALL.replace(" P3  J2  J3", " P3  J2  J9");
    assert_epanet_error(&unknown_node, 16, "unknown node \"J9\"");
    // A missing field.
    assert_epanet_error(&SMALL.replace(" R1  50", " R1"), 11, "missing head");
    // An unknown pattern.
    assert_epanet_error(
        &SMALL.replace("2.5     P1", "2.5     P7"),
        6,
        "unknown pattern \"P7\"",
    );
    // Duplicate ids.
    assert_epanet_error(
        &SMALL.replace(" J3  11", " J1  11"),
        8,
        "duplicate node id \"J1\"",
    );
    // Unknown units.
    assert_epanet_error(
        &SMALL.replace("Units  LPS", "Units  FPS"),
        26,
        "unknown flow units",
    );
    // Coordinates of an unknown node.
    assert_epanet_error(
        &SMALL.replace(" R1  -50  0", " R9  -50  0"),
        34,
        "unknown node \"R9\"",
    );
    // Non-finite numbers are not numbers.
    assert_epanet_error(
        &SMALL.replace("100  150  100", "100  NaN  100"),
        14,
        "diameter",
    );
    // Data before any section.
    assert_epanet_error("J1 10\n[JUNCTIONS]\n", 1, "before any section");
}

#[test]
fn net3_with_a_broken_line_names_it() {
    let text = std::fs::read_to_string(NET3).expect("read Net3");
    let broken = text.replacen(" 105             \t101 ", " 105             \tnowhere ", 1);
    assert_ne!(broken, text, "the pipe line to break is in the file");
    let err = parse_epanet_str(&broken, "Net3.inp").expect_err("broken Net3");
    println!("{err}");
    let line = text
        .lines()
        .position(|l| l.starts_with(" 105             \t101 "))
        .map(|i| i + 1);
    assert!(
        matches!(err, ImportError::Epanet { line: l, .. } if Some(l) == line),
        "{err}"
    );
}

#[test]
fn a_missing_file_is_an_io_error() {
    let err = parse_epanet(Path::new("/nonexistent/Net9.inp")).expect_err("missing");
    assert!(matches!(err, ImportError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("Net9.inp"), "{err}");
}
