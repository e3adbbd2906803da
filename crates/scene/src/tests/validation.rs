//! Tests of the scene format's validation rules: every problem is reported
//! with its path, all at once.

use super::*;

#[test]
fn tiny_is_valid() {
    assert_eq!(tiny().validate(), Ok(()));
}

/// What a hostile scene held: a 1 MiB id, a 2-million-point footprint, and
/// oversized attributes. Each is refused at load with its path, so no item
/// can exceed a frame at run time.
#[test]
fn items_larger_than_their_bounds_are_problems() {
    let mut scene = tiny();
    let building = index_of_asset(&scene, "b-west-1");
    scene.assets[building].id = "x".repeat(1 << 20);
    let other = index_of_asset(&scene, "b-west-2");
    scene.assets[other].geometry = Geometry::Footprint(
        (0..2_000_000)
            .map(|i| {
                let angle = f64::from(i) * std::f64::consts::TAU / 2e6;
                [100.0 * angle.cos(), 100.0 * angle.sin()]
            })
            .collect(),
    );
    let third = index_of_asset(&scene, "b-east-1");
    scene.assets[third].attributes = (0..65).map(|i| (format!("k{i}"), "v".into())).collect();
    scene.assets[third]
        .attributes
        .insert("k0".into(), "v".repeat(MAX_ATTRIBUTE_VALUE_BYTES + 1));
    scene.sensors[0].unit = "u".repeat(65);
    let problems = problems_of(&scene);
    assert_problem(
        &problems,
        &format!("assets[{building}].id"),
        "is 1048576 bytes, at most 256",
    );
    assert_problem(
        &problems,
        &format!("assets[{other}].footprint_enu_m"),
        "has 2000000 points, at most 4096",
    );
    assert_problem(
        &problems,
        &format!("assets[{third}].attributes"),
        "has 65 attributes, at most 64",
    );
    assert_problem(
        &problems,
        &format!("assets[{third}].attributes.k0"),
        "is 1025 bytes, at most 1024",
    );
    assert_problem(&problems, "sensors[0].unit", "is 65 bytes, at most 64");
    assert!(
        problems.len() < 10,
        "one problem per bound, not per point: {problems:#?}"
    );
}

/// The largest asset the bounds allow still fits in a frame on the wire.
#[test]
fn the_largest_asset_allowed_fits_in_one_frame() {
    let asset = polis_protocol::AssetInfo {
        handle: u32::MAX,
        id: "i".repeat(MAX_ID_BYTES),
        kind: AssetKind::Road,
        geometry: polis_protocol::Geometry::Line(
            (0..MAX_LINE_VERTICES)
                .map(|i| [i as f32 * 0.5, -(i as f32)])
                .collect(),
        ),
        height_m: Some(f32::MAX),
        attributes: (0..MAX_ATTRIBUTES)
            .map(|i| {
                (
                    format!("{i:0>width$}", width = MAX_ATTRIBUTE_KEY_BYTES),
                    "v".repeat(MAX_ATTRIBUTE_VALUE_BYTES),
                )
            })
            .collect(),
    };
    let mut frame = Vec::new();
    let bytes = polis_protocol::encode_frame(&asset, &mut frame).expect("fits in a frame");
    assert!(
        bytes <= MAX_ASSET_WIRE_BYTES,
        "{bytes} > {MAX_ASSET_WIRE_BYTES}"
    );
}

#[test]
fn empty_and_duplicate_ids_are_problems() {
    let mut scene = tiny();
    scene.assets[2].id = String::new();
    scene.assets[5].id = scene.assets[1].id.clone();
    scene.sensors[3].id = "  ".to_owned();
    scene.sensors[7].id = scene.sensors[0].id.clone();
    let problems = problems_of(&scene);
    assert_problem(&problems, "assets[2].id", "empty");
    assert_problem(
        &problems,
        "assets[5].id",
        "duplicate id \"b-west-2\" (first used by assets[1])",
    );
    assert_problem(&problems, "sensors[3].id", "empty");
    assert_problem(
        &problems,
        "sensors[7].id",
        "duplicate id \"meter-b-west-1\"",
    );
    // An asset and a sensor may share an id: they are different namespaces.
    let mut scene = tiny();
    scene.sensors[0].id = "b-west-1".to_owned();
    assert_eq!(scene.validate(), Ok(()));
}

#[test]
fn geometry_must_match_the_kind() {
    let mut scene = tiny();
    let road = index_of_asset(&scene, "road-main");
    let stop = index_of_asset(&scene, "stop-west");
    let building = index_of_asset(&scene, "b-east-1");
    scene.assets[road].geometry = Geometry::Point([0.0, -30.0, 0.0]);
    scene.assets[stop].geometry = Geometry::Line(vec![[0.0, 0.0], [1.0, 1.0]]);
    scene.assets[building].geometry = Geometry::Line(vec![[270.0, 5.0], [290.0, 5.0]]);
    let problems = problems_of(&scene);
    assert_problem(
        &problems,
        &format!("assets[{road}].position_enu_m"),
        "a road needs line_enu_m",
    );
    assert_problem(
        &problems,
        &format!("assets[{stop}].line_enu_m"),
        "a transit_stop needs position_enu_m",
    );
    assert_problem(
        &problems,
        &format!("assets[{building}].line_enu_m"),
        "a building needs footprint_enu_m",
    );
    assert_eq!(problems.len(), 3, "{problems:#?}");
}

#[test]
fn exactly_one_geometry_field_is_required() {
    let none = SMALL.replace(
        "\"footprint_enu_m\": [[0, 0], [20, 0], [20, 15], [0, 15]],\n",
        "",
    );
    match Scene::from_json_str(&none, "small.json") {
        Err(SceneError::Invalid { problems, .. }) => {
            assert_problem(
                &problems,
                "assets[0]",
                "no geometry: a building needs footprint_enu_m",
            );
            assert_eq!(problems.len(), 1, "{problems:#?}");
        }
        other => panic!("expected invalid, got {other:?}"),
    }
    let several = SMALL.replace(
        "\"height_m\": 18.5",
        "\"height_m\": 18.5, \"position_enu_m\": [1, 2, 3]",
    );
    match Scene::from_json_str(&several, "small.json") {
        Err(SceneError::Invalid { problems, .. }) => {
            assert_problem(
                &problems,
                "assets[0]",
                "several geometries (footprint_enu_m, position_enu_m)",
            );
            assert_eq!(problems.len(), 1, "{problems:#?}");
        }
        other => panic!("expected invalid, got {other:?}"),
    }
}

#[test]
fn degenerate_shapes_are_problems() {
    let mut scene = tiny();
    scene.assets[0].geometry = Geometry::Footprint(vec![[0.0, 0.0], [10.0, 0.0], [0.0, 0.0]]);
    scene.assets[1].geometry =
        Geometry::Footprint(vec![[0.0, 0.0], [10.0, 0.0], [20.0, 0.0], [5.0, 0.0]]);
    let road = index_of_asset(&scene, "road-main");
    scene.assets[road].geometry = Geometry::Line(vec![[1.0, 1.0], [1.0, 1.0]]);
    let pipe = index_of_asset(&scene, "pipe-1");
    scene.assets[pipe].geometry = Geometry::Line(vec![]);
    let problems = problems_of(&scene);
    assert_problem(
        &problems,
        "assets[0].footprint_enu_m",
        "needs at least 3 distinct points, found 2",
    );
    assert_problem(&problems, "assets[1].footprint_enu_m", "zero area");
    assert_problem(
        &problems,
        &format!("assets[{road}].line_enu_m"),
        "needs at least 2 distinct points, found 1",
    );
    assert_problem(&problems, &format!("assets[{pipe}].line_enu_m"), "found 0");
    assert_eq!(problems.len(), 4, "{problems:#?}");

    // A closed ring (first point repeated) is fine.
    let mut scene = tiny();
    scene.assets[0].geometry = Geometry::Footprint(vec![
        [-330.0, 5.0],
        [-310.0, 5.0],
        [-310.0, 20.0],
        [-330.0, 5.0],
    ]);
    assert_eq!(scene.validate(), Ok(()));
}

#[test]
fn coordinates_must_be_finite() {
    let mut scene = tiny();
    scene.assets[0].geometry = Geometry::Footprint(vec![
        [-330.0, 5.0],
        [f64::NAN, 5.0],
        [-310.0, 20.0],
        [-330.0, f64::INFINITY],
    ]);
    let junction = index_of_asset(&scene, "junction-1");
    scene.assets[junction].geometry = Geometry::Point([330.0, f64::NEG_INFINITY, 0.0]);
    scene.sensors[2].position_enu_m = [f64::NAN, 0.0, 0.0];
    let problems = problems_of(&scene);
    assert_problem(&problems, "assets[0].footprint_enu_m[1]", "finite");
    assert_problem(&problems, "assets[0].footprint_enu_m[3]", "finite");
    assert_problem(
        &problems,
        &format!("assets[{junction}].position_enu_m"),
        "finite",
    );
    assert_problem(&problems, "sensors[2].position_enu_m", "finite");
    assert_eq!(problems.len(), 4, "{problems:#?}");
}

#[test]
fn heights_are_checked_and_required_for_buildings() {
    let mut scene = tiny();
    scene.assets[0].height_m = Some(0.0);
    scene.assets[1].height_m = Some(-3.0);
    scene.assets[2].height_m = Some(f64::NAN);
    scene.assets[3].height_m = None;
    let problems = problems_of(&scene);
    assert_problem(&problems, "assets[0].height_m", "greater than 0, found 0");
    assert_problem(&problems, "assets[1].height_m", "found -3");
    assert_problem(&problems, "assets[2].height_m", "finite");
    assert_problem(&problems, "assets[3].height_m", "required for a building");
    assert_eq!(problems.len(), 4, "{problems:#?}");

    // Optional elsewhere, but checked when given.
    let mut scene = tiny();
    let road = index_of_asset(&scene, "road-main");
    scene.assets[road].height_m = Some(-1.0);
    assert_problem(
        &problems_of(&scene),
        &format!("assets[{road}].height_m"),
        "greater than 0",
    );
}

#[test]
fn sensor_fields_are_checked() {
    let mut scene = tiny();
    let noise = index_of_sensor(&scene, "noise-road");
    scene.sensors[noise].asset = Some("road-nowhere".to_owned());
    scene.sensors[1].quantity = String::new();
    scene.sensors[4].unit = " ".to_owned();
    let problems = problems_of(&scene);
    assert_problem(
        &problems,
        &format!("sensors[{noise}].asset"),
        "unknown asset \"road-nowhere\"",
    );
    assert_problem(&problems, "sensors[1].quantity", "empty");
    assert_problem(&problems, "sensors[4].unit", "empty");
    assert_eq!(problems.len(), 3, "{problems:#?}");
}

#[test]
fn georeference_must_be_on_earth() {
    let mut scene = tiny();
    scene.georeference.origin_lon_deg = 180.5;
    scene.georeference.origin_lat_deg = -91.0;
    let problems = problems_of(&scene);
    assert_problem(&problems, "georeference.origin_lon_deg", "[-180, 180]");
    assert_problem(&problems, "georeference.origin_lat_deg", "[-90, 90]");
    scene.georeference.origin_lon_deg = f64::NAN;
    scene.georeference.origin_lat_deg = 90.0;
    let problems = problems_of(&scene);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_problem(&problems, "georeference.origin_lon_deg", "NaN");
}

#[test]
fn name_must_not_be_empty() {
    let mut scene = tiny();
    scene.name = String::new();
    assert_problem(&problems_of(&scene), "name", "empty");
}

#[test]
fn every_problem_is_reported_with_origin_and_path() {
    let mut scene = tiny();
    scene.georeference.origin_lat_deg = 123.0;
    scene.assets[0].height_m = None;
    let copy = scene.assets[6].clone();
    scene.assets.push(copy);
    scene.sensors[5].quantity = String::new();
    scene.sensors[11].asset = Some("ghost".to_owned());
    let text = scene.to_json_string_pretty();
    let err = Scene::from_json_str(&text, "broken.json").expect_err("must fail");
    let SceneError::Invalid { origin, problems } = &err else {
        panic!("expected invalid, got {err:?}");
    };
    assert_eq!(origin, "broken.json");
    let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "georeference.origin_lat_deg",
            "assets[0].height_m",
            "assets[8].id",
            "sensors[5].quantity",
            "sensors[11].asset",
        ]
    );
    let shown = err.to_string();
    let lines: Vec<_> = shown.lines().collect();
    assert_eq!(lines.len(), 5, "{shown}");
    assert_eq!(
        lines[1],
        "broken.json: assets[0].height_m: required for a building"
    );
    assert!(lines.iter().all(|l| l.starts_with("broken.json: ")));
}

#[test]
fn geometry_and_other_problems_are_reported_together_in_order() {
    let text = SMALL
        .replace(
            "\"footprint_enu_m\": [[0, 0], [20, 0], [20, 15], [0, 15]],\n",
            "",
        )
        .replace("\"height_m\": 18.5", "\"height_m\": -1")
        .replace("\"origin_lon_deg\": 24.9", "\"origin_lon_deg\": 200");
    match Scene::from_json_str(&text, "small.json") {
        Err(SceneError::Invalid { problems, .. }) => {
            let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
            assert_eq!(
                paths,
                [
                    "georeference.origin_lon_deg",
                    "assets[0]",
                    "assets[0].height_m"
                ]
            );
        }
        other => panic!("expected invalid, got {other:?}"),
    }
}

#[test]
fn save_refuses_an_invalid_scene() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bad.json");
    let mut scene = tiny();
    scene.assets[0].height_m = None;
    match scene.save(&path) {
        Err(SceneError::Invalid { problems, .. }) => {
            assert_problem(&problems, "assets[0].height_m", "required");
        }
        other => panic!("expected invalid, got {other:?}"),
    }
    assert!(!path.exists());
}
