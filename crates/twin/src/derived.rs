//! What Polis derives from a household's sensors and who is shown it: the
//! aggregates each personal sensor feeds, for a resident's export.

use std::collections::BTreeMap;

use polis_scene::Scene;

use crate::city::CityTooLarge;
use crate::components::Audience;
use crate::privacy::PrivacyOptions;
use crate::spawn::build_city;

/// An aggregate that includes some of the given sensors.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DerivedAggregate {
    /// The aggregate sensor's id (e.g. `agg-block-…-active_power`).
    pub id: String,
    /// Who is shown it: `planners` or `public`.
    pub shown_to: &'static str,
    /// How many personal sensors (households) it combines.
    pub households: usize,
    /// Which of the given sensors it includes.
    pub from: Vec<String>,
}

/// The aggregates that `sensors` (ids; unknown ones are skipped) feed in a
/// twin of `scene` with `privacy`, sorted by id.
pub fn aggregates_fed_by(
    scene: &Scene,
    privacy: &PrivacyOptions,
    sensors: &[String],
) -> Result<Vec<DerivedAggregate>, CityTooLarge> {
    let city = build_city(scene, privacy)?;
    let mut found: BTreeMap<String, DerivedAggregate> = BTreeMap::new();
    for sensor in sensors {
        let Some(handle) = city.sensors.by_id(sensor) else {
            continue;
        };
        for &aggregate in city.aggregates_of.of(handle) {
            let Some(id) = city.sensors.id(aggregate) else {
                continue;
            };
            let shown_to = match city.sensors.audience(aggregate) {
                Some(audience) if audience == Audience::PLANNERS => "planners",
                _ => "public",
            };
            let households = city
                .sensors
                .aggregate_members(aggregate)
                .map_or(0, <[u32]>::len);
            found
                .entry(id.to_owned())
                .or_insert_with(|| DerivedAggregate {
                    id: id.to_owned(),
                    shown_to,
                    households,
                    from: Vec::new(),
                })
                .from
                .push(sensor.clone());
        }
    }
    Ok(found.into_values().collect())
}
