//! Interest management: which viewer sees which assets and sensors, and
//! publishing changed values to exactly those viewers.

use std::collections::{HashMap, HashSet};

use bevy::prelude::*;
use polis_protocol::{Domain, ValueUpdate};
use tracing::{debug, warn};

use crate::TwinTick;
use crate::city::{AssetTable, SensorTable};
use crate::components::{Audience, Travel, ViewerState};
use crate::index::{ItemRef, SpatialIndex};
use crate::messages::{
    PersonalDataShown, PlaybackCommand, PlaybackRequested, ViewerConnected, ViewerDisconnected,
    ViewerId, ViewerSubscribed,
};
use crate::spawn::TwinInfo;
use polis_protocol::Access;

/// For each sensor handle, the viewers that see it: 4 bytes per sensor up
/// to the highest watched handle, and a list only for sensors someone
/// watches (a list slot per sensor took 24 bytes each in a large city).
#[derive(Resource, Debug, Default)]
pub(crate) struct Watchers {
    /// Index into `lists` per sensor handle, or [`Watchers::NONE`].
    slots: Vec<u32>,
    lists: Vec<Vec<Entity>>,
    /// Lists no sensor uses, for reuse.
    free: Vec<u32>,
}

impl Watchers {
    const NONE: u32 = u32::MAX;

    fn add(&mut self, handle: u32, viewer: Entity) {
        let index = handle as usize;
        if self.slots.len() <= index {
            self.slots.resize(index + 1, Self::NONE);
        }
        let Some(slot) = self.slots.get_mut(index) else {
            return;
        };
        if *slot == Self::NONE {
            *slot = match self.free.pop() {
                Some(free) => free,
                None => {
                    let next = match u32::try_from(self.lists.len()) {
                        Ok(next) if next != Self::NONE => next,
                        _ => return,
                    };
                    self.lists.push(Vec::new());
                    next
                }
            };
        }
        if let Some(list) = self.lists.get_mut(*slot as usize) {
            list.push(viewer);
        }
    }

    fn remove(&mut self, handle: u32, viewer: Entity) {
        let Some(slot) = self.slots.get_mut(handle as usize) else {
            return;
        };
        let Some(list) = self.lists.get_mut(*slot as usize) else {
            return;
        };
        list.retain(|&e| e != viewer);
        if list.is_empty() {
            self.free.push(*slot);
            *slot = Self::NONE;
        }
    }

    /// Removes `viewer` from the lists of every sensor it sees.
    fn forget(&mut self, viewer: Entity, state: &ViewerState) {
        for &handle in &state.sensors {
            self.remove(handle, viewer);
        }
    }

    fn of(&self, handle: u32) -> &[Entity] {
        self.slots
            .get(handle as usize)
            .and_then(|&slot| self.lists.get(slot as usize))
            .map_or(&[], Vec::as_slice)
    }
}

/// Viewer entities by connection.
#[derive(Resource, Debug, Default)]
pub(crate) struct ViewerDirectory(HashMap<ViewerId, Entity>);

impl ViewerDirectory {
    /// The entity of a connected viewer.
    pub(crate) fn get(&self, viewer: ViewerId) -> Option<Entity> {
        self.0.get(&viewer).copied()
    }
}

/// A set of domains as bits; all set when a subscription names none.
#[derive(Debug, Clone, Copy)]
struct LayerMask(u8);

impl LayerMask {
    fn from_layers(layers: &[Domain]) -> Self {
        if layers.is_empty() {
            return LayerMask(u8::MAX);
        }
        LayerMask(layers.iter().fold(0, |bits, d| bits | (1 << *d as u8)))
    }

    fn contains(self, domain: Domain) -> bool {
        self.0 & (1 << domain as u8) != 0
    }
}

pub(crate) fn connect_viewers(
    mut connected: MessageReader<ViewerConnected>,
    mut directory: ResMut<ViewerDirectory>,
    viewers: Query<&ViewerState>,
    mut watchers: ResMut<Watchers>,
    mut commands: Commands,
) {
    for ViewerConnected {
        viewer,
        access,
        name,
        mailbox,
    } in connected.read()
    {
        let entity = commands
            .spawn(ViewerState {
                id: *viewer,
                access: *access,
                name: name.clone(),
                mailbox: mailbox.clone(),
                area_enu_m: None,
                sensors: HashSet::new(),
                assets: HashSet::new(),
                travel: None,
            })
            .id();
        if let Some(old) = directory.0.insert(*viewer, entity) {
            warn!(
                viewer = viewer.0,
                "viewer id connected twice; replacing the old one"
            );
            if let Ok(state) = viewers.get(old) {
                watchers.forget(old, state);
            }
            commands.entity(old).despawn();
        }
    }
}

pub(crate) fn update_interest(
    mut subscribed: MessageReader<ViewerSubscribed>,
    directory: Res<ViewerDirectory>,
    mut viewers: Query<&mut ViewerState>,
    index: Res<SpatialIndex>,
    info: Res<TwinInfo>,
    sensors: Res<SensorTable>,
    assets: Res<AssetTable>,
    mut watchers: ResMut<Watchers>,
    tick: Res<TwinTick>,
    mut playback: MessageWriter<PlaybackCommand>,
    mut shown: MessageWriter<PersonalDataShown>,
) {
    for ViewerSubscribed { viewer, subscribe } in subscribed.read() {
        let Some(entity) = directory.0.get(viewer).copied() else {
            debug!(
                viewer = viewer.0,
                "subscription from a viewer that already left"
            );
            continue;
        };
        let Ok(mut state) = viewers.get_mut(entity) else {
            continue;
        };
        let area = subscribe.area;
        let georef = info.georeference;
        let [west_m, south_m] = georef.enu_from_lonlat(area.lon_min_deg, area.lat_min_deg);
        let [east_m, north_m] = georef.enu_from_lonlat(area.lon_max_deg, area.lat_max_deg);
        let (min, max) = ([west_m, south_m], [east_m, north_m]);
        let layers = LayerMask::from_layers(&subscribe.layers);

        let mut new_sensors = HashSet::new();
        let mut new_assets = HashSet::new();
        for item in index.items_in_area(min, max, &assets, &sensors) {
            match item {
                ItemRef::Sensor(handle) => {
                    let visible = sensors.domain(handle).is_some_and(|d| layers.contains(d))
                        && sensors
                            .audience(handle)
                            .is_some_and(|a| a.admits(state.access));
                    if visible {
                        new_sensors.insert(handle);
                    }
                }
                ItemRef::Asset(handle) => {
                    let visible = assets
                        .kind(handle)
                        .is_some_and(|kind| kind.domain().is_none_or(|d| layers.contains(d)));
                    if visible {
                        new_assets.insert(handle);
                    }
                }
            }
        }

        let travel = subscribe.at_ms.map(|at_ms| Travel {
            at_ms,
            speed: subscribe.speed.max(0.0),
        });
        // A first subscription, and any change of time (to a past time, to
        // another one, or back to live), starts from a fresh snapshot.
        let fresh = state.area_enu_m.is_none() || travel.is_some() || state.travel.is_some();
        let state = &mut *state;
        if fresh {
            watchers.forget(entity, state);
            state.sensors.clear();
            state.assets.clear();
        }
        let was_travelling = state.travel.is_some();
        state.mailbox.update(|mailbox| {
            if fresh {
                mailbox.begin_snapshot(subscribe.subscription);
            }
            mailbox.set_tick(tick.0);
            for &handle in state.assets.difference(&new_assets) {
                mailbox.leave_asset(handle);
            }
            for &handle in new_assets.difference(&state.assets) {
                if let Some(info) = assets.info(handle) {
                    mailbox.enter_asset(info);
                }
            }
            for &handle in state.sensors.difference(&new_sensors) {
                mailbox.leave_sensor(handle);
                watchers.remove(handle, entity);
            }
            for &handle in new_sensors.difference(&state.sensors) {
                // A traveller's values come from history, not from the
                // live state.
                if let Some(info) = sensors.info(handle, travel.is_none()) {
                    mailbox.enter_sensor(info);
                    if travel.is_none() {
                        watchers.add(handle, entity);
                    }
                }
            }
        });
        match travel {
            Some(trip) => {
                // History holds raw readings only: a traveller gets raw values
                // of the sensors everyone may see, and of personal ones only
                // if an operator; aggregates are live-only.
                let mut handles: Vec<u32> = new_sensors
                    .iter()
                    .copied()
                    .filter(|&h| {
                        sensors.audience(h) == Some(Audience::EVERYONE)
                            || (sensors.personal(h) == Some(true)
                                && state.access == Access::Operator)
                    })
                    .collect();
                handles.sort_unstable();
                playback.write(PlaybackCommand::Start(PlaybackRequested {
                    viewer: *viewer,
                    mailbox: state.mailbox.clone(),
                    sensors: handles,
                    at_ms: trip.at_ms,
                    speed: trip.speed,
                }));
            }
            None if was_travelling => {
                playback.write(PlaybackCommand::Stop(*viewer));
            }
            None => {}
        }
        state.travel = travel;
        if state.access == Access::Operator {
            let mut personal: Vec<String> = new_sensors
                .iter()
                .filter(|&&h| sensors.personal(h) == Some(true))
                .filter_map(|&h| sensors.id(h).map(str::to_owned))
                .collect();
            if !personal.is_empty() {
                personal.sort();
                shown.write(PersonalDataShown {
                    viewer: *viewer,
                    name: state.name.clone(),
                    sensors: personal,
                    at_ms: subscribe.at_ms,
                });
            }
        }
        debug!(
            viewer = viewer.0,
            sensors = new_sensors.len(),
            assets = new_assets.len(),
            "viewer subscribed"
        );
        state.area_enu_m = Some((min, max));
        state.sensors = new_sensors;
        state.assets = new_assets;
    }
}

pub(crate) fn disconnect_viewers(
    mut disconnected: MessageReader<ViewerDisconnected>,
    mut directory: ResMut<ViewerDirectory>,
    viewers: Query<&ViewerState>,
    mut watchers: ResMut<Watchers>,
    mut playback: MessageWriter<PlaybackCommand>,
    mut commands: Commands,
) {
    for ViewerDisconnected { viewer } in disconnected.read() {
        let Some(entity) = directory.0.remove(viewer) else {
            continue;
        };
        if let Ok(state) = viewers.get(entity) {
            if state.travel.is_some() {
                playback.write(PlaybackCommand::Stop(*viewer));
            }
            watchers.forget(entity, state);
        }
        commands.entity(entity).despawn();
    }
}

pub(crate) fn publish_values(
    mut changed: ResMut<crate::apply::ChangedSensors>,
    watchers: Res<Watchers>,
    sensors: Res<SensorTable>,
    viewers: Query<&ViewerState>,
    tick: Res<TwinTick>,
    mut per_viewer: Local<HashMap<Entity, Vec<ValueUpdate>>>,
) {
    if changed.0.is_empty() {
        return;
    }
    changed.0.sort_unstable();
    changed.0.dedup();
    for handle in changed.0.drain(..) {
        let viewers_of = watchers.of(handle);
        if viewers_of.is_empty() {
            continue;
        }
        let Some(update) = sensors.value_update(handle) else {
            continue;
        };
        for viewer in viewers_of {
            per_viewer.entry(*viewer).or_default().push(update);
        }
    }
    for (viewer, values) in per_viewer.iter_mut() {
        if values.is_empty() {
            continue;
        }
        if let Ok(state) = viewers.get(*viewer) {
            state.mailbox.update(|mailbox| {
                mailbox.set_tick(tick.0);
                for value in values.drain(..) {
                    mailbox.value(value);
                }
            });
        }
        values.clear();
    }
    // Forget viewers that are gone, keep the buffers of the others.
    per_viewer.retain(|viewer, _| viewers.contains(*viewer));
}

/// How much is waiting in viewer mailboxes, measured after publishing, at
/// most once a millisecond.
#[derive(Resource, Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ViewerBacklog {
    /// Connected viewers.
    pub viewers: usize,
    /// Entries waiting in the fullest mailbox (bounded by its area's size).
    pub max_entries: usize,
    /// Entries waiting in all mailboxes together.
    pub total_entries: usize,
}

/// Least time between two backlog measurements: each locks every viewer's
/// mailbox, and ticks may come 0.1 ms apart.
const BACKLOG_EVERY: std::time::Duration = std::time::Duration::from_millis(1);

pub(crate) fn measure_backlog(
    viewers: Query<&ViewerState>,
    mut backlog: ResMut<ViewerBacklog>,
    mut last: Local<Option<std::time::Instant>>,
) {
    let now = std::time::Instant::now();
    if last.is_some_and(|at| now.duration_since(at) < BACKLOG_EVERY) {
        return;
    }
    *last = Some(now);
    let mut measured = ViewerBacklog::default();
    for viewer in &viewers {
        let entries = viewer.mailbox.pending_entries();
        measured.viewers += 1;
        measured.max_entries = measured.max_entries.max(entries);
        measured.total_entries += entries;
    }
    *backlog = measured;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watcher_lists_follow_adds_and_removes_and_are_reused() {
        let (a, b) = (Entity::from_raw_u32(1), Entity::from_raw_u32(2));
        let (Some(a), Some(b)) = (a, b) else {
            panic!("entities from raw indices");
        };
        let mut watchers = Watchers::default();
        watchers.add(7, a);
        watchers.add(7, b);
        watchers.add(2, a);
        assert_eq!(watchers.of(7), [a, b]);
        assert_eq!(watchers.of(2), [a]);
        assert_eq!(watchers.of(3), [] as [Entity; 0]);
        assert_eq!(watchers.of(1_000), [] as [Entity; 0]);
        watchers.remove(7, a);
        watchers.remove(7, b);
        assert_eq!(watchers.of(7), [] as [Entity; 0]);
        // The emptied list serves the next sensor watched.
        watchers.add(5, b);
        assert_eq!(watchers.of(5), [b]);
        assert_eq!(watchers.lists.len(), 2);
        watchers.remove(9, a);
        watchers.remove(2, b);
        assert_eq!(watchers.of(2), [a], "removing a viewer that is not there");
    }
}
