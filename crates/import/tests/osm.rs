//! Importing the Helsinki OpenStreetMap extract, and refusing broken files.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

use polis_import::{ImportError, ImportReport, OsmOptions, Progress, import_osm};
use polis_scene::{Asset, AssetKind, Geometry, Georeference, Scene};

const HELSINKI: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../assets/osm/helsinki-centre.osm.pbf"
);

fn helsinki() -> (Scene, ImportReport) {
    match import_osm(Path::new(HELSINKI), &OsmOptions::default(), &mut |_| {}) {
        Ok(imported) => imported,
        Err(e) => panic!("the Helsinki extract must import: {e}"),
    }
}

fn of_kind(scene: &Scene, kind: AssetKind) -> Vec<&Asset> {
    scene.assets.iter().filter(|a| a.kind == kind).collect()
}

fn line_length_m(line: &[[f64; 2]]) -> f64 {
    line.windows(2)
        .map(|w| (w[1][0] - w[0][0]).hypot(w[1][1] - w[0][1]))
        .sum()
}

#[test]
fn helsinki_imports_buildings_roads_and_routes() {
    let (scene, report) = helsinki();
    println!("{report}");
    assert!(scene.validate().is_ok());

    let buildings = of_kind(&scene, AssetKind::Building);
    let roads = of_kind(&scene, AssetKind::Road);
    assert!(buildings.len() >= 450, "{} buildings", buildings.len());
    assert!(roads.len() > 1000, "{} roads", roads.len());
    assert_eq!(report.count("building"), buildings.len() as u64);
    assert_eq!(report.count("road"), roads.len() as u64);

    // The origin is the centre of the extract, rounded to 1e-4 degrees.
    let geo = scene.georeference;
    assert!((24.935..=24.953).contains(&geo.origin_lon_deg), "{geo:?}");
    assert!((60.164..=60.179).contains(&geo.origin_lat_deg), "{geo:?}");
    assert_eq!((geo.origin_lon_deg * 1e4).round() / 1e4, geo.origin_lon_deg);

    for building in &buildings {
        let height_m = building.height_m.unwrap_or(0.0);
        assert!(height_m > 0.0, "{} has height {height_m}", building.id);
        let Geometry::Footprint(ring) = &building.geometry else {
            panic!("{} has no footprint", building.id);
        };
        assert!(ring.len() >= 3, "{}", building.id);
        assert_ne!(
            ring.first(),
            ring.last(),
            "{}: closing point kept",
            building.id
        );
        for key in ["usage", "height_source", "floor_area_m2", "building"] {
            assert!(
                building.attributes.contains_key(key),
                "{} lacks {key}",
                building.id
            );
        }
    }
    // Every asset lies within 3 km of the origin.
    for asset in &scene.assets {
        let (min, max) = asset.geometry.bounds_enu_m();
        for v in min.iter().chain(&max) {
            assert!(v.abs() <= 3000.0, "{} reaches {v} m", asset.id);
        }
    }
    // Heights come from all three sources in central Helsinki.
    for source in ["height", "levels", "default"] {
        assert!(
            buildings.iter().any(|b| b
                .attributes
                .get("height_source")
                .is_some_and(|s| s == source)),
            "no building with height_source {source}"
        );
    }
    // The cathedral area has named, addressed buildings.
    assert!(
        buildings
            .iter()
            .any(|b| b.attributes.contains_key("address"))
    );
    assert!(roads.iter().all(|r| r.attributes.contains_key("class")));

    let ids: HashSet<&str> = scene.assets.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids.len(), scene.assets.len(), "asset ids are unique");
}

#[test]
fn helsinki_tram_routes_have_stops_and_length() {
    let (scene, report) = helsinki();
    let stops: HashSet<&str> = of_kind(&scene, AssetKind::TransitStop)
        .iter()
        .map(|s| s.id.as_str())
        .collect();
    let routes = of_kind(&scene, AssetKind::TransitRoute);
    assert_eq!(report.count("transit_route"), routes.len() as u64);

    let mut good_trams = Vec::new();
    for route in &routes {
        let stop_ids: Vec<&str> = route.attributes["stops"]
            .split(',')
            .filter(|s| !s.is_empty())
            .collect();
        for stop in &stop_ids {
            assert!(stops.contains(stop), "{}: unknown stop {stop}", route.id);
        }
        let Geometry::Line(line) = &route.geometry else {
            panic!("{} has no line", route.id);
        };
        let length_m = line_length_m(line);
        if route.attributes.get("route").is_some_and(|m| m == "tram")
            && stop_ids.len() >= 5
            && length_m > 1000.0
        {
            good_trams.push((
                route.attributes.get("name").cloned(),
                stop_ids.len(),
                length_m,
            ));
        }
    }
    println!("tram routes with >= 5 stops and > 1 km: {good_trams:#?}");
    assert!(good_trams.len() >= 4, "{good_trams:?}");

    // A stop served by several routes is one asset that lists them.
    assert!(
        of_kind(&scene, AssetKind::TransitStop)
            .iter()
            .any(|s| s.attributes.get("routes").is_some_and(|r| r.contains(','))),
        "no stop is shared by routes"
    );
    // Extract edges cut routes: that is reported, not hidden.
    assert!(report.skipped("transit_route: member ways missing from the extract") > 0);
}

#[test]
fn progress_is_reported_while_reading() {
    let mut seen: Vec<Progress> = Vec::new();
    let result = import_osm(Path::new(HELSINKI), &OsmOptions::default(), &mut |p| {
        seen.push(p);
    });
    assert!(result.is_ok());
    let reading: Vec<u64> = seen
        .iter()
        .filter(|p| p.stage == "reading")
        .map(|p| p.done)
        .collect();
    assert!(reading.len() >= 3, "{reading:?}");
    assert!(reading.windows(2).all(|w| w[0] < w[1]), "{reading:?}");
    assert!(seen.iter().any(|p| p.stage == "buildings"));
    assert_eq!(seen.last().map(|p| p.stage), Some("validating"));
}

#[test]
fn a_given_origin_and_name_are_used() {
    let origin = Georeference {
        origin_lon_deg: 24.94,
        origin_lat_deg: 60.17,
    };
    let options = OsmOptions {
        origin: Some(origin),
        name: "helsinki-centre".to_owned(),
        ..OsmOptions::default()
    };
    let (scene, _) =
        import_osm(Path::new(HELSINKI), &options, &mut |_| {}).expect("import with an origin");
    assert_eq!(scene.georeference, origin);
    assert_eq!(scene.name, "helsinki-centre");
    assert!(
        scene
            .attribution
            .iter()
            .any(|a| a.contains("OpenStreetMap"))
    );
}

#[test]
fn bad_options_are_refused() {
    let options = OsmOptions {
        storey_height_m: 0.0,
        ..OsmOptions::default()
    };
    let err = import_osm(Path::new(HELSINKI), &options, &mut |_| {}).expect_err("zero storey");
    assert!(matches!(err, ImportError::InvalidOptions { .. }), "{err}");

    let options = OsmOptions {
        name: " ".to_owned(),
        ..OsmOptions::default()
    };
    let err = import_osm(Path::new(HELSINKI), &options, &mut |_| {}).expect_err("empty name");
    assert!(matches!(err, ImportError::InvalidScene { .. }), "{err}");
}

/// Imports `bytes` written to a temporary file; must fail with an OSM error
/// naming the file.
fn assert_refused(bytes: &[u8]) -> String {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(bytes).expect("write temp file");
    let err = import_osm(file.path(), &OsmOptions::default(), &mut |_| {})
        .expect_err("broken input must be refused");
    assert!(matches!(err, ImportError::Osm { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains(&file.path().display().to_string()),
        "{message}"
    );
    message
}

#[test]
fn a_truncated_file_is_an_error() {
    let bytes = std::fs::read(HELSINKI).expect("read the extract");
    let message = assert_refused(bytes.get(..bytes.len() / 2).unwrap_or_default());
    println!("truncated: {message}");
    // Cut just after the header block, and in the middle of a block.
    for cut in [40, 200, bytes.len() - 10] {
        assert_refused(bytes.get(..cut).unwrap_or_default());
    }
}

#[test]
fn empty_and_garbage_files_are_errors() {
    println!("empty: {}", assert_refused(b""));
    println!(
        "text: {}",
        assert_refused(b"this is not an OpenStreetMap file\n")
    );
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    println!("noise: {}", assert_refused(&noise));
    // A plausible blob header length followed by garbage.
    let mut framed = vec![0, 0, 0, 13];
    framed.extend_from_slice(&noise);
    println!("framed noise: {}", assert_refused(&framed));
}

#[test]
fn a_missing_file_is_an_io_error() {
    let err = import_osm(
        Path::new("/nonexistent/nowhere.osm.pbf"),
        &OsmOptions::default(),
        &mut |_| {},
    )
    .expect_err("missing file");
    assert!(matches!(err, ImportError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("nowhere.osm.pbf"), "{err}");
}
