//! Feeds arbitrary text to the scene loader. It must return `Ok(scene)` or a
//! `SceneError` (whose message renders) and never panic; a scene it accepts
//! must survive a write/read round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use polis_scene::Scene;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match Scene::from_json_str(&text, "fuzz.json") {
        Ok(scene) => {
            let written = scene.to_json_string_pretty();
            let reread = Scene::from_json_str(&written, "rewritten.json")
                .unwrap_or_else(|err| panic!("accepted scene does not reload: {err}\n{written}"));
            assert_eq!(
                reread, scene,
                "scene changed across a write/read round trip"
            );
        }
        Err(err) => {
            let _ = err.to_string();
        }
    }
});
