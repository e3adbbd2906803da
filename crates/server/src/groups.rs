//! The record of every privacy group a twin of this data directory has
//! formed (`<data dir>/groups.json`): read at start so that no group is
//! formed that differs from an earlier one by fewer than k households
//! (`polis_twin`'s privacy rules), and written, with the new start's
//! groups added, before the twin shows any value.

use std::collections::BTreeSet;
use std::path::Path;

use polis_twin::{PastGroup, PastGroups, SensorTable};

/// Version of the file's format.
const FORMAT_VERSION: u32 = 1;

#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupsFile {
    version: u32,
    /// Each group once: who it is shown to and its members' sensor ids.
    groups: Vec<StoredGroup>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredGroup {
    /// `planners` or `public`.
    shown_to: String,
    members: Vec<String>,
}

/// The groups recorded in `path` (none if it does not exist yet).
pub(crate) fn load(path: &Path) -> anyhow::Result<PastGroups> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Ok(PastGroups::default());
        }
        Err(err) => return Err(anyhow::anyhow!("cannot read {}: {err}", path.display())),
    };
    let file: GroupsFile = serde_json::from_str(&text)
        .map_err(|err| anyhow::anyhow!("{} is not a groups record: {err}", path.display()))?;
    if file.version != FORMAT_VERSION {
        anyhow::bail!(
            "{} has version {} (this Polis reads version {FORMAT_VERSION})",
            path.display(),
            file.version
        );
    }
    Ok(PastGroups::new(
        file.groups
            .into_iter()
            .map(|g| PastGroup {
                public: g.shown_to == "public",
                members: g.members,
            })
            .collect(),
    ))
}

/// Adds the groups of `sensors` to the record in `path` (each group once),
/// durably.
pub(crate) fn record(path: &Path, past: &PastGroups, sensors: &SensorTable) -> anyhow::Result<()> {
    let stored = |group: &PastGroup| StoredGroup {
        shown_to: if group.public { "public" } else { "planners" }.to_owned(),
        members: group.members.clone(),
    };
    let mut all: BTreeSet<StoredGroup> = past.groups().iter().map(stored).collect();
    let before = all.len();
    all.extend(PastGroups::formed_in(sensors).iter().map(stored));
    if all.len() == before && path.exists() {
        return Ok(());
    }
    let file = GroupsFile {
        version: FORMAT_VERSION,
        groups: all.into_iter().collect(),
    };
    let mut text = serde_json::to_string(&file)?;
    text.push('\n');
    crate::consent::write_atomically(path, text.as_bytes())
        .map_err(|err| anyhow::anyhow!("cannot write {}: {err}", path.display()))
}
