//! Keeping imported scenes valid: assets the scene format refuses are
//! dropped and counted rather than failing a whole import.

use std::collections::{BTreeMap, HashSet};

use polis_scene::{Asset, Scene, SceneProblem};

use crate::report::ImportReport;

/// Moves `assets` to the end of `scene.assets`, skipping (and counting as
/// `"<kind>: duplicate id"`) those whose id is already used.
pub(crate) fn append_unique(scene: &mut Scene, assets: Vec<Asset>, report: &mut ImportReport) {
    let mut seen: HashSet<String> = scene.assets.iter().map(|a| a.id.clone()).collect();
    for asset in assets {
        if seen.insert(asset.id.clone()) {
            scene.assets.push(asset);
        } else {
            report.skip(format!("{}: duplicate id", asset.kind.as_str()));
        }
    }
}

/// Validates the scene and removes every asset at index `first` or later
/// that breaks a rule, counting it as `"<kind>: invalid: <message>"`.
/// Returns the problems that remain and that no such asset is to blame for
/// (empty when the scene is valid).
pub(crate) fn drop_invalid_assets(
    scene: &mut Scene,
    first: usize,
    report: &mut ImportReport,
) -> Vec<SceneProblem> {
    loop {
        let Err(problems) = scene.validate() else {
            return Vec::new();
        };
        // Asset index → its first problem.
        let mut bad: BTreeMap<usize, String> = BTreeMap::new();
        let mut others = Vec::new();
        for problem in problems {
            match asset_index(&problem.path) {
                Some(index) if index >= first => {
                    bad.entry(index).or_insert(problem.message);
                }
                _ => others.push(problem),
            }
        }
        if bad.is_empty() {
            return others;
        }
        for (&index, message) in bad.iter().rev() {
            if index < scene.assets.len() {
                let asset = scene.assets.remove(index);
                report.skip(format!("{}: invalid: {message}", asset.kind.as_str()));
            }
        }
    }
}

/// `N` from a problem path `assets[N]...`.
fn asset_index(path: &str) -> Option<usize> {
    let rest = path.strip_prefix("assets[")?;
    let end = rest.find(']')?;
    rest.get(..end)?.parse().ok()
}

/// Counts the assets from index `first` on by kind.
pub(crate) fn count_assets(scene: &Scene, first: usize, report: &mut ImportReport) {
    for asset in scene.assets.iter().skip(first) {
        report.add_count(asset.kind.as_str(), 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asset_indices_from_paths() {
        assert_eq!(asset_index("assets[12].footprint_enu_m[3]"), Some(12));
        assert_eq!(asset_index("assets[0].id"), Some(0));
        assert_eq!(asset_index("sensors[1].asset"), None);
        assert_eq!(asset_index("name"), None);
        assert_eq!(asset_index("assets[x]"), None);
    }
}
