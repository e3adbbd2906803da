//! The bundled scene is exactly what the documented commands make from the
//! committed real data (scenes/README.md, "The bundled Helsinki scene").

use std::process::Command;

fn polis(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_polis"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("polis runs");
    assert!(
        out.status.success(),
        "polis {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_bundled_scene_is_reproduced_by_the_documented_commands() {
    let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("helsinki.json");
    let out = out.to_str().expect("utf-8 path");
    polis(
        root,
        &[
            "import",
            "osm",
            "assets/osm/helsinki-centre.osm.pbf",
            "--out",
            out,
            "--name",
            "helsinki",
        ],
    );
    polis(
        root,
        &[
            "import",
            "epanet",
            "assets/water/Net3.inp",
            "--into",
            out,
            "--origin",
            "24.938,60.169",
            "--rotation-deg",
            "15",
            "--metres-per-unit",
            "25",
        ],
    );
    polis(root, &["scene", "sensors", out]);
    let made = std::fs::read_to_string(out).expect("made");
    let committed = std::fs::read_to_string(root.join("scenes/helsinki.json")).expect("committed");
    assert!(
        made == committed,
        "scenes/helsinki.json is out of date: rerun the commands in scenes/README.md"
    );

    let scene = polis_scene::Scene::from_json_str(&committed, "helsinki.json").expect("loads");
    let count =
        |kind: polis_protocol::AssetKind| scene.assets.iter().filter(|a| a.kind == kind).count();
    assert!(count(polis_protocol::AssetKind::Building) >= 450);
    assert_eq!(count(polis_protocol::AssetKind::WaterJunction), 92);
    assert_eq!(count(polis_protocol::AssetKind::WaterPipe), 117);
    assert_eq!(count(polis_protocol::AssetKind::WaterPump), 2);
    assert_eq!(count(polis_protocol::AssetKind::WaterTank), 3);
    assert_eq!(count(polis_protocol::AssetKind::WaterReservoir), 2);
}
