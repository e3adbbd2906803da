//! Tests of loading and saving scenes; the validation rules are tested in
//! `validation`.

use std::collections::BTreeMap;

use crate::{
    Asset, AssetKind, Domain, Geometry, Georeference, MAX_ASSET_WIRE_BYTES,
    MAX_ATTRIBUTE_KEY_BYTES, MAX_ATTRIBUTE_VALUE_BYTES, MAX_ATTRIBUTES, MAX_ID_BYTES,
    MAX_LINE_VERTICES, SCENE_VERSION, Scene, SceneError, SceneProblem, Sensor,
};

const TINY: &str = include_str!("../../../../scenes/tiny.json");

fn tiny() -> Scene {
    match Scene::from_json_str(TINY, "tiny.json") {
        Ok(scene) => scene,
        Err(e) => panic!("tiny.json must load:\n{e}"),
    }
}

/// The problems of a scene that must be invalid.
fn problems_of(scene: &Scene) -> Vec<SceneProblem> {
    match scene.validate() {
        Ok(()) => panic!("scene should be invalid"),
        Err(problems) => problems,
    }
}

/// Asserts one problem at exactly `path` whose message contains `needle`.
fn assert_problem(problems: &[SceneProblem], path: &str, needle: &str) {
    assert!(
        problems
            .iter()
            .any(|p| p.path == path && p.message.contains(needle)),
        "no problem at {path} mentioning {needle:?}; got {problems:#?}"
    );
}

fn index_of_asset(scene: &Scene, id: &str) -> usize {
    scene
        .assets
        .iter()
        .position(|a| a.id == id)
        .expect("asset exists")
}

fn index_of_sensor(scene: &Scene, id: &str) -> usize {
    scene
        .sensors
        .iter()
        .position(|s| s.id == id)
        .expect("sensor exists")
}

/// A minimal valid scene text with one building, for syntax tests; line
/// numbers below refer to it.
const SMALL: &str = r#"{
  "format": "polis-scene",
  "version": 1,
  "name": "small",
  "georeference": {"origin_lon_deg": 24.9, "origin_lat_deg": 60.1},
  "assets": [
    {
      "id": "b-1",
      "kind": "building",
      "footprint_enu_m": [[0, 0], [20, 0], [20, 15], [0, 15]],
      "height_m": 18.5
    }
  ]
}
"#;

// ---------------------------------------------------------------- tiny.json

#[test]
fn tiny_loads_with_expected_contents() {
    let scene = tiny();
    assert_eq!(scene.name, "tiny");
    assert_eq!(
        scene.georeference,
        Georeference {
            origin_lon_deg: 24.9310,
            origin_lat_deg: 60.1690
        }
    );
    assert!(!scene.attribution.is_empty());
    assert_eq!(scene.assets.len(), 8);
    assert_eq!(scene.sensors.len(), 12);

    let count = |kind| scene.assets.iter().filter(|a| a.kind == kind).count();
    assert_eq!(count(AssetKind::Building), 4);
    assert_eq!(count(AssetKind::Road), 1);
    assert_eq!(count(AssetKind::WaterPipe), 1);
    assert_eq!(count(AssetKind::WaterJunction), 1);
    assert_eq!(count(AssetKind::TransitStop), 1);

    let domain = |d| scene.sensors.iter().filter(|s| s.domain == d).count();
    assert_eq!(domain(Domain::Energy), 6);
    assert_eq!(domain(Domain::Water), 2);
    assert_eq!(domain(Domain::Transport), 1);
    assert_eq!(domain(Domain::Environment), 3);

    for (id, usage) in [
        ("b-west-1", "residential"),
        ("b-west-2", "commercial"),
        ("b-east-1", "residential"),
        ("b-east-2", "office"),
    ] {
        let building = scene.asset(id).expect("building exists");
        assert_eq!(
            building.attributes.get("usage").map(String::as_str),
            Some(usage)
        );
        let height_m = building.height_m.expect("buildings have a height");
        assert!((10.0..=30.0).contains(&height_m));
        let meter = scene
            .sensor(&format!("meter-{id}"))
            .expect("every building has a meter");
        assert_eq!(meter.asset.as_deref(), Some(id));
        assert_eq!(meter.personal, usage == "residential", "{id}");
    }
    let personal: Vec<_> = scene
        .sensors
        .iter()
        .filter(|s| s.personal)
        .map(|s| s.id.as_str())
        .collect();
    assert_eq!(personal, ["meter-b-west-1", "meter-b-east-1"]);
}

#[test]
fn tiny_has_two_separate_clusters() {
    let scene = tiny();
    // Nothing but the road and its noise sensor between east_m -100 and 100.
    for asset in &scene.assets {
        let (min, max) = asset.geometry.bounds_enu_m();
        let clear = max[0] < -100.0 || min[0] > 100.0;
        assert_eq!(!clear, asset.id == "road-main", "{}", asset.id);
    }
    for sensor in &scene.sensors {
        let east_m = sensor.position_enu_m[0];
        let clear = !(-100.0..=100.0).contains(&east_m);
        assert_eq!(!clear, sensor.id == "noise-road", "{}", sensor.id);
    }
    // Sensors on a building lie within its footprint.
    for sensor in &scene.sensors {
        let Some(asset) = sensor.asset.as_deref().and_then(|id| scene.asset(id)) else {
            continue;
        };
        let (min, max) = asset.geometry.bounds_enu_m();
        let [e, n, _] = sensor.position_enu_m;
        let margin = if asset.kind == AssetKind::Building {
            0.0
        } else {
            3.0
        };
        assert!(
            e >= min[0] - margin
                && e <= max[0] + margin
                && n >= min[1] - margin
                && n <= max[1] + margin,
            "{} is not on {}",
            sensor.id,
            asset.id
        );
    }
    let (min, max) = scene.bounds_enu_m().expect("scene is not empty");
    assert_eq!(min, [-400.0, -30.0]);
    assert_eq!(max, [400.0, 30.0]);
}

// ---------------------------------------------------------------- round trip

#[test]
fn save_then_load_gives_an_equal_scene() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("tiny-copy.json");
    let scene = tiny();
    scene.save(&path).expect("save");
    let back = Scene::load(&path).expect("load");
    assert_eq!(back, scene);
}

#[test]
fn round_trip_keeps_awkward_values() {
    let mut scene = tiny();
    scene.description = None;
    scene.attribution = vec!["quote \" backslash \\ newline \n tab \t bell \u{7} ä 🚋".to_owned()];
    scene.georeference.origin_lon_deg = -179.999_999_9;
    scene.assets[0].height_m = Some(0.1 + 0.2);
    scene.assets[0].attributes = BTreeMap::new();
    scene.assets[1].geometry = Geometry::Footprint(
        (0..40)
            .map(|i| {
                let a = f64::from(i) * std::f64::consts::TAU / 40.0;
                [-280.0 + 7.3 * a.cos(), 12.5 + 7.3 * a.sin()]
            })
            .collect(),
    );
    scene.assets[4].height_m = Some(1e-7);
    scene.sensors[0].position_enu_m = [1e20, -0.0, 123_456.789];
    scene.sensors[0].asset = None;
    scene.validate().expect("still valid");

    let text = scene.to_json_string_pretty();
    let back = Scene::from_json_str(&text, "<memory>").expect("reads back");
    assert_eq!(back, scene);
    // Long point lists are wrapped, short ones stay on one line.
    assert!(text.contains(r#""footprint_enu_m": [[-330, 5], [-310, 5], [-310, 20], [-330, 20]]"#));
    assert!(text.lines().all(|l| l.len() < 200));
}

#[test]
fn written_text_starts_with_format_and_version() {
    let text = tiny().to_json_string_pretty();
    assert!(text.starts_with("{\n  \"format\": \"polis-scene\",\n  \"version\": 1,\n"));
}

#[test]
fn sensor_serde_matches_the_file_format() {
    let scene = tiny();
    let sensor = scene.sensor("air-west").expect("exists");
    let json = serde_json::to_string(sensor).expect("serializes");
    assert!(!json.contains("\"asset\""));
    let back: Sensor = serde_json::from_str(&json).expect("deserializes");
    assert_eq!(&back, sensor);
}

// ---------------------------------------------------------------- syntax

#[test]
fn syntax_error_reports_line_and_column() {
    // Drop the comma after the footprint: the parser stops at line 11.
    let text = SMALL.replace("15]],\n", "15]]\n");
    let err = Scene::from_json_str(&text, "small.json").expect_err("must fail");
    let SceneError::Syntax {
        origin,
        line,
        column,
        message,
    } = &err
    else {
        panic!("expected a syntax error, got {err:?}");
    };
    assert_eq!(origin, "small.json");
    assert_eq!((*line, *column), (11, 7));
    assert_eq!(message, "expected `,` or `}`");
    assert_eq!(err.to_string(), "small.json:11:7: expected `,` or `}`");
}

#[test]
fn small_scene_is_valid() {
    let scene = Scene::from_json_str(SMALL, "small.json").expect("valid");
    assert_eq!(scene.assets.len(), 1);
    assert!(scene.sensors.is_empty());
    assert_eq!(
        scene.assets[0].geometry.bounds_enu_m(),
        ([0.0, 0.0], [20.0, 15.0])
    );
}

#[test]
fn unknown_field_is_rejected_with_its_line() {
    let text = SMALL.replace("\"height_m\"", "\"heigth_m\"");
    let err = Scene::from_json_str(&text, "small.json").expect_err("must fail");
    match err {
        SceneError::Syntax { line, message, .. } => {
            assert_eq!(line, 11);
            assert!(message.contains("unknown field `heigth_m`"), "{message}");
        }
        other => panic!("expected a syntax error, got {other:?}"),
    }
    // Also at the top level and in the georeference.
    for (from, to, line) in [
        ("\"name\"", "\"nmae\"", 4),
        ("\"origin_lat_deg\"", "\"origin_lat\"", 5),
    ] {
        let text = SMALL.replace(from, to);
        match Scene::from_json_str(&text, "small.json") {
            Err(SceneError::Syntax { line: l, .. }) => assert_eq!(l, line, "{to}"),
            other => panic!("expected a syntax error for {to}, got {other:?}"),
        }
    }
}

#[test]
fn wrong_types_and_kinds_keep_their_position() {
    let text = SMALL.replace("\"building\"", "\"bulding\"");
    match Scene::from_json_str(&text, "small.json") {
        Err(SceneError::Syntax { line, message, .. }) => {
            assert_eq!(line, 9);
            assert!(message.contains("unknown variant `bulding`"), "{message}");
        }
        other => panic!("expected a syntax error, got {other:?}"),
    }
    let text = SMALL.replace("18.5", "\"tall\"");
    match Scene::from_json_str(&text, "small.json") {
        Err(SceneError::Syntax { line, .. }) => assert_eq!(line, 11),
        other => panic!("expected a syntax error, got {other:?}"),
    }
}

// ---------------------------------------------------------------- header

#[test]
fn wrong_version_is_refused() {
    let text = SMALL.replace("\"version\": 1", "\"version\": 2");
    match Scene::from_json_str(&text, "small.json") {
        Err(
            err @ SceneError::Version {
                found: 2,
                supported: SCENE_VERSION,
                ..
            },
        ) => assert!(err.to_string().starts_with("small.json: "), "{err}"),
        other => panic!("expected a version error, got {other:?}"),
    }
    // Checked before the rest of the document: unknown fields of a newer
    // version do not hide the real reason.
    let text = SMALL
        .replace("\"version\": 1", "\"version\": 7")
        .replace("\"name\"", "\"title\"");
    assert!(matches!(
        Scene::from_json_str(&text, "small.json"),
        Err(SceneError::Version { found: 7, .. })
    ));
    let text = SMALL.replace("\"version\": 1", "\"version\": \"1\"");
    match Scene::from_json_str(&text, "small.json") {
        Err(SceneError::Invalid { problems, .. }) => assert_problem(&problems, "version", "whole"),
        other => panic!("expected an invalid version, got {other:?}"),
    }
    let text = SMALL.replace("\"version\": 1,", "");
    match Scene::from_json_str(&text, "small.json") {
        Err(SceneError::Invalid { problems, .. }) => {
            assert_problem(&problems, "version", "missing");
        }
        other => panic!("expected a missing version, got {other:?}"),
    }
}

#[test]
fn wrong_format_is_refused() {
    let text = SMALL.replace("\"polis-scene\"", "\"geojson\"");
    match Scene::from_json_str(&text, "small.json") {
        Err(err @ SceneError::Format { .. }) => {
            let SceneError::Format { found, .. } = &err else {
                unreachable!()
            };
            assert_eq!(found, "\"geojson\"");
            assert_eq!(
                err.to_string(),
                "small.json: not a Polis scene: \"format\" is \"geojson\", expected \"polis-scene\""
            );
        }
        other => panic!("expected a format error, got {other:?}"),
    }
    let text = SMALL.replace("\"format\": \"polis-scene\",", "");
    assert!(matches!(
        Scene::from_json_str(&text, "small.json"),
        Err(SceneError::Format { found, .. }) if found == "missing"
    ));
    assert!(matches!(
        Scene::from_json_str(
            r#"{"type": "FeatureCollection", "features": []}"#,
            "x.geojson"
        ),
        Err(SceneError::Format { .. })
    ));
    match Scene::from_json_str("\n  \"polis-scene\"", "x.json") {
        Err(SceneError::Syntax {
            line: 2, message, ..
        }) => assert!(message.contains("a JSON object"), "{message}"),
        other => panic!("expected a syntax error, got {other:?}"),
    }
}

#[test]
fn missing_file_is_an_io_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("nope.json");
    match Scene::load(&path) {
        Err(err @ SceneError::Io { .. }) => {
            assert!(err.to_string().contains("nope.json"), "{err}");
        }
        other => panic!("expected an I/O error, got {other:?}"),
    }
}

// ---------------------------------------------------------------- geometry

#[test]
fn bounds_cover_every_geometry() {
    let footprint = Geometry::Footprint(vec![[3.0, -1.0], [7.0, 2.0], [-4.0, 5.0]]);
    assert_eq!(footprint.bounds_enu_m(), ([-4.0, -1.0], [7.0, 5.0]));
    let line = Geometry::Line(vec![[1.0, 1.0], [-2.0, 8.0]]);
    assert_eq!(line.bounds_enu_m(), ([-2.0, 1.0], [1.0, 8.0]));
    let point = Geometry::Point([5.0, 6.0, 7.0]);
    assert_eq!(point.bounds_enu_m(), ([5.0, 6.0], [5.0, 6.0]));
    let (min, max) = Geometry::Line(vec![]).bounds_enu_m();
    assert!(min[0] > max[0] && min[1] > max[1]);

    let empty = Scene {
        name: "empty".to_owned(),
        description: None,
        attribution: vec![],
        georeference: Georeference {
            origin_lon_deg: 0.0,
            origin_lat_deg: 0.0,
        },
        assets: vec![Asset {
            id: "x".to_owned(),
            kind: AssetKind::Road,
            geometry: Geometry::Line(vec![]),
            height_m: None,
            attributes: BTreeMap::new(),
        }],
        sensors: vec![],
    };
    assert_eq!(empty.bounds_enu_m(), None);
}

mod validation;
