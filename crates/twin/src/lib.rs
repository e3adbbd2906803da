//! The city twin as a Bevy plugin: assets, sensors, latest readings, spatial index and interest management.
//!
//! The twin does no I/O. Transports (see `polis-net` and the server's bridge)
//! write [`IncomingBatch`] and viewer messages before [`TwinSystems::Apply`],
//! read [`BatchApplied`] after it, and drain each viewer's
//! [`polis_protocol::SharedMailbox`] whenever their connection can send.
//!
//! Per sensor the twin keeps the latest reading by *device* time: an older
//! reading never replaces a newer one, an identical one is a no-op, and an
//! unknown sensor id is refused with a reason.
//!
//! The city's assets and sensors are columns indexed by handle
//! ([`AssetTable`], [`SensorTable`]), not entities, so a city of a million
//! buildings costs a few hundred bytes per building; viewers are entities
//! ([`ViewerState`]).

mod apply;
mod budget;
mod city;
mod components;
mod derived;
mod index;
mod interest;
mod messages;
mod noise;
mod pick;
mod privacy;
mod spawn;

use bevy::prelude::*;
use polis_scene::Scene;

pub use apply::{ChangedSensors, DeviceTimeLimit, IngestCounters, classify_reading};
pub use budget::{InterestBudget, TwinClock};
pub use city::{AssetTable, CityTooLarge, SensorTable};
pub use components::{Audience, StoredReading, Travel, ViewerState};
pub use derived::{DerivedAggregate, HomeInTwin, HomeRequested, aggregates_fed_by, describe_home};
pub use index::{IndexedItem, ItemRef, SpatialIndex};
pub use interest::{InterestPending, ViewerBacklog};
pub use messages::{
    BatchApplied, BatchTicket, ConsentChanged, IncomingBatch, PersonalDataShown, PlaybackCommand,
    PlaybackRequested, RecordedReading, ViewerConnected, ViewerDisconnected, ViewerId,
    ViewerSubscribed,
};
pub use noise::{NoiseOptions, laplace};
pub use pick::{
    DEFAULT_PICKS_PER_TICK, PendingPicks, PickBudget, PickPlugin, PickRequested, PickResponder,
    PickShapes, PickSystems, asset_collider,
};
pub use privacy::{Consents, PastGroup, PastGroups, PrivacyOptions};
pub use spawn::TwinInfo;

/// When the twin's systems run within `Update`, in this order.
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TwinSystems {
    /// Readings from [`IncomingBatch`] are applied and [`BatchApplied`]
    /// acknowledgements written. Transports write their messages before it.
    Apply,
    /// Viewers connect, subscribe and disconnect; their interest sets follow.
    Interest,
    /// New latest values go to the mailboxes of the viewers that see them.
    Publish,
}

/// Number of the current server tick, counted from 1 at the first update.
#[derive(Resource, Debug, Default, Clone, Copy)]
pub struct TwinTick(pub u64);

/// The city twin: loads a scene into the world and keeps it current.
pub struct TwinPlugin {
    /// Taken out when the plugin is built: the world holds the city from
    /// then on, and the scene's memory is released rather than kept by the
    /// app's plugin registry.
    scene: std::sync::Mutex<Option<Scene>>,
    restored: std::sync::Mutex<Vec<(String, StoredReading)>>,
    privacy: PrivacyOptions,
    consents: Consents,
    past: PastGroups,
    /// Differential privacy for public aggregates, and the wall-clock time
    /// (ms since the Unix epoch) the twin starts at.
    noise: Option<(NoiseOptions, i64)>,
}

impl TwinPlugin {
    /// A twin of `scene`, spawned when the plugin is added.
    pub fn new(scene: Scene) -> Self {
        Self {
            scene: std::sync::Mutex::new(Some(scene)),
            restored: std::sync::Mutex::new(Vec::new()),
            privacy: PrivacyOptions::default(),
            consents: Consents::default(),
            past: PastGroups::default(),
            noise: None,
        }
    }

    /// Releases public aggregates with Laplace noise per `options` (see
    /// [`NoiseOptions`]), for a twin starting at wall-clock `now_ms` (ms
    /// since the Unix epoch): nothing is released in the slot it starts in.
    pub fn with_public_noise(mut self, options: NoiseOptions, now_ms: i64) -> Self {
        self.noise = Some((options, now_ms));
        self
    }

    /// Aggregates personal data with these options (default k = 5).
    pub fn with_privacy(mut self, privacy: PrivacyOptions) -> Self {
        self.privacy = privacy;
        self
    }

    /// Groups each household only with households of the same consent
    /// (default: everyone consents to every role's aggregates).
    pub fn with_consents(mut self, consents: Consents) -> Self {
        self.consents = consents;
        self
    }

    /// Forms no group that differs from one of these, formed by an earlier
    /// start, by fewer than k households (see the privacy rules).
    pub fn with_past_groups(mut self, past: PastGroups) -> Self {
        self.past = past;
        self
    }

    /// Starts every listed sensor from this latest reading (e.g. restored
    /// from history); ids not in the scene are ignored.
    pub fn with_latest(self, restored: Vec<(String, StoredReading)>) -> Self {
        Self {
            restored: std::sync::Mutex::new(restored),
            ..self
        }
    }
}

impl Plugin for TwinPlugin {
    fn build(&self, app: &mut App) {
        let taken = self
            .scene
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let Some(scene) = taken else {
            // Bevy adds a plugin once; a second build has nothing to spawn.
            tracing::error!("TwinPlugin built twice; ignoring the second build");
            return;
        };
        let city = spawn::build_city(&scene, &self.privacy, &self.consents, &self.past)
            .unwrap_or_else(|error| {
                // Unreachable for scenes a machine can hold in memory (ids
                // beyond 4 GiB, over 65,536 quantity and unit names): the twin
                // serves an empty city and says why.
                tracing::error!(%error, scene = %scene.name, "the scene was not loaded");
                spawn::City::empty(&scene)
            });
        city.insert_into(app.world_mut());
        drop(scene);
        let restored = std::mem::take(
            &mut *self
                .restored
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        spawn::restore_latest(app.world_mut(), &restored);
        if let Some((options, now_ms)) = &self.noise {
            app.insert_resource(noise::PublicNoise::new(options.clone(), *now_ms));
        }
        app.init_resource::<TwinTick>()
            .init_resource::<IngestCounters>()
            .init_resource::<apply::ChangedSensors>()
            .init_resource::<interest::Watchers>()
            .init_resource::<interest::ViewerDirectory>()
            .init_resource::<ViewerBacklog>()
            .init_resource::<InterestBudget>()
            .init_resource::<TwinClock>()
            .init_resource::<interest::InterestQueue>()
            .init_resource::<InterestPending>()
            .add_message::<PersonalDataShown>()
            .add_message::<IncomingBatch>()
            .add_message::<BatchApplied>()
            .add_message::<ViewerConnected>()
            .add_message::<ViewerSubscribed>()
            .add_message::<ViewerDisconnected>()
            .add_message::<PlaybackCommand>()
            .add_message::<ConsentChanged>()
            .add_message::<HomeRequested>()
            .configure_sets(
                Update,
                (
                    TwinSystems::Apply,
                    TwinSystems::Interest,
                    TwinSystems::Publish,
                )
                    .chain(),
            )
            .add_systems(First, advance_tick)
            .add_systems(
                Update,
                (privacy::withdraw_aggregates, apply::apply_readings)
                    .chain()
                    .in_set(TwinSystems::Apply),
            )
            .add_systems(
                Update,
                (
                    interest::connect_viewers,
                    interest::queue_subscriptions,
                    interest::disconnect_viewers,
                    interest::work_on_interest,
                )
                    .chain()
                    .in_set(TwinSystems::Interest),
            )
            .add_systems(
                Update,
                (interest::publish_values, interest::measure_backlog)
                    .chain()
                    .in_set(TwinSystems::Publish),
            )
            .add_systems(
                Update,
                derived::answer_home_requests.after(TwinSystems::Apply),
            );
    }
}

fn advance_tick(mut tick: ResMut<TwinTick>) {
    tick.0 += 1;
}
