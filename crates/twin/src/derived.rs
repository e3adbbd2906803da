//! What Polis derives from a household's sensors and who is shown it: the
//! aggregates each personal sensor feeds, for a resident's export — from a
//! running twin ([`HomeRequested`]) or from a scene ([`describe_home`]).

use std::collections::BTreeMap;
use std::sync::mpsc::Sender;

use bevy::prelude::*;
use polis_scene::Scene;

use crate::city::{CityTooLarge, SensorTable};
use crate::components::Audience;
use crate::privacy::{AggregatesOf, Consents, PastGroups, PrivacyOptions};
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
    /// Withdrawn after a member's change of consent: shown to no one (and
    /// not formed again at the next start unless consent allows it).
    pub withdrawn: bool,
}

/// What the twin holds about a home's sensors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HomeInTwin {
    /// Quantity and unit of each asked sensor, in the order asked (`None`
    /// for ids the twin does not have).
    pub sensors: Vec<Option<(String, String)>>,
    /// The aggregates they feed, sorted by id.
    pub derived: Vec<DerivedAggregate>,
}

/// Asks a running twin what it holds about a home's sensors; answered on
/// `reply` in the next tick.
#[derive(Message, Debug)]
pub struct HomeRequested {
    /// The home's sensor ids.
    pub sensors: Vec<String>,
    /// Where the answer goes.
    pub reply: Sender<HomeInTwin>,
}

/// What the twin's tables hold about `ids`.
fn describe(sensors: &SensorTable, aggregates_of: &AggregatesOf, ids: &[String]) -> HomeInTwin {
    let mut found: BTreeMap<String, DerivedAggregate> = BTreeMap::new();
    let mut described = Vec::with_capacity(ids.len());
    for sensor in ids {
        let Some(handle) = sensors.by_id(sensor) else {
            described.push(None);
            continue;
        };
        described.push(Some((
            sensors.quantity(handle).unwrap_or_default().to_owned(),
            sensors.unit(handle).unwrap_or_default().to_owned(),
        )));
        for &aggregate in aggregates_of.of(handle) {
            let Some(id) = sensors.id(aggregate) else {
                continue;
            };
            let shown_to = match sensors.audience(aggregate) {
                Some(audience) if audience == Audience::PLANNERS => "planners",
                _ => "public",
            };
            let households = sensors.aggregate_members(aggregate).map_or(0, <[u32]>::len);
            let withdrawn = sensors.is_withdrawn(aggregate);
            found
                .entry(id.to_owned())
                .or_insert_with(|| DerivedAggregate {
                    id: id.to_owned(),
                    shown_to,
                    households,
                    from: Vec::new(),
                    withdrawn,
                })
                .from
                .push(sensor.clone());
        }
    }
    HomeInTwin {
        sensors: described,
        derived: found.into_values().collect(),
    }
}

/// What a twin of `scene` with `privacy`, `consents` and the groups
/// formed before (`past`) holds about `sensors` (ids) when it starts: for
/// answering a resident without a running server.
pub fn describe_home(
    scene: &Scene,
    privacy: &PrivacyOptions,
    consents: &Consents,
    past: &PastGroups,
    sensors: &[String],
) -> Result<HomeInTwin, CityTooLarge> {
    let city = build_city(scene, privacy, consents, past)?;
    Ok(describe(&city.sensors, &city.aggregates_of, sensors))
}

/// The aggregates that `sensors` (ids; unknown ones are skipped) feed in a
/// twin of `scene` with `privacy` and `consents` forms at its first start,
/// sorted by id.
pub fn aggregates_fed_by(
    scene: &Scene,
    privacy: &PrivacyOptions,
    consents: &Consents,
    sensors: &[String],
) -> Result<Vec<DerivedAggregate>, CityTooLarge> {
    Ok(describe_home(scene, privacy, consents, &PastGroups::default(), sensors)?.derived)
}

/// Answers every [`HomeRequested`] from the twin's current tables.
pub(crate) fn answer_home_requests(
    mut requests: MessageReader<HomeRequested>,
    sensors: Res<SensorTable>,
    aggregates_of: Res<AggregatesOf>,
) {
    for request in requests.read() {
        // The requester may have given up waiting; nothing to do then.
        let _ = request
            .reply
            .send(describe(&sensors, &aggregates_of, &request.sensors));
    }
}
