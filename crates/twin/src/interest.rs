//! Interest management: which viewer sees which assets and sensors, and
//! publishing changed values to exactly those viewers.

use std::collections::{HashMap, HashSet, VecDeque};

use bevy::prelude::*;
use polis_protocol::{Domain, ValueUpdate, ViewerMailbox};
use tracing::{debug, warn};

use crate::TwinTick;
use crate::budget::{Allowance, InterestBudget, TwinClock};
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
    budget: Res<InterestBudget>,
    clock: Res<TwinClock>,
    sensors: Res<SensorTable>,
    mut commands: Commands,
) {
    for ViewerConnected {
        viewer,
        access,
        name,
        own_sensors,
        mailbox,
    } in connected.read()
    {
        // Only scene sensors can be a home's; unknown ids grant nothing.
        let own_sensors = own_sensors
            .iter()
            .filter_map(|id| sensors.by_id(id))
            .filter(|&h| sensors.aggregate_members(h).is_none())
            .collect();
        let entity = commands
            .spawn(ViewerState {
                id: *viewer,
                access: *access,
                own_sensors,
                name: name.clone(),
                mailbox: mailbox.clone(),
                area_enu_m: None,
                sensors: HashSet::new(),
                assets: HashSet::new(),
                travel: None,
                pending: None,
                job: None,
                allowance: Allowance::full(budget.items_per_second_per_viewer, clock.since_start),
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

/// Viewers with interest work (a subscription to start or a job to
/// continue), served round robin.
#[derive(Resource, Debug, Default)]
pub(crate) struct InterestQueue {
    viewers: VecDeque<Entity>,
    /// The allowance shared by all viewers.
    total: Option<Allowance>,
}

/// Whether subscriptions still have work left after this tick: whoever runs
/// the twin ticks again soon rather than at the next regular tick.
#[derive(Resource, Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct InterestPending {
    /// Viewers with work left.
    pub viewers: usize,
    /// Whether any of them may work now (not all waiting for allowance).
    pub ready: bool,
}

/// What is left of a subscription: items to leave and to enter, and what
/// to do once they all have.
#[derive(Debug)]
pub(crate) struct InterestJob {
    subscription: u32,
    /// A snapshot is being sent (filled in parts).
    fresh: bool,
    travel: Option<Travel>,
    leave_assets: Vec<u32>,
    leave_sensors: Vec<u32>,
    enter_assets: Vec<u32>,
    enter_sensors: Vec<u32>,
}

impl InterestJob {
    fn remaining(&self) -> usize {
        self.leave_assets.len()
            + self.leave_sensors.len()
            + self.enter_assets.len()
            + self.enter_sensors.len()
    }
}

/// Takes each subscription into its viewer's state (the latest replaces
/// any not yet started) and queues the viewer for [`work_on_interest`].
pub(crate) fn queue_subscriptions(
    mut subscribed: MessageReader<ViewerSubscribed>,
    directory: Res<ViewerDirectory>,
    mut viewers: Query<&mut ViewerState>,
    mut queue: ResMut<InterestQueue>,
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
        // A viewer is in the queue exactly while it has work (a pending
        // subscription or a job): only an idle one joins it.
        let idle = state.pending.is_none() && state.job.is_none();
        state.pending = Some(subscribe.clone());
        if idle {
            queue.viewers.push_back(entity);
        }
    }
}

/// Works through the queued viewers' subscriptions within the tick's and
/// each viewer's budget (see [`crate::budget`]).
pub(crate) fn work_on_interest(
    mut queue: ResMut<InterestQueue>,
    mut viewers: Query<&mut ViewerState>,
    mut city: InterestCity,
    mut watchers: ResMut<Watchers>,
    tick: Res<TwinTick>,
    budget: Res<InterestBudget>,
    clock: Res<TwinClock>,
    mut pending: ResMut<InterestPending>,
    mut playback: MessageWriter<PlaybackCommand>,
    mut shown: MessageWriter<PersonalDataShown>,
) {
    let now = clock.since_start;
    let queue = &mut *queue;
    let total = queue
        .total
        .get_or_insert_with(|| Allowance::full(budget.items_per_second, now));
    total.refill(budget.items_per_second, now);
    let mut tick_items = budget.items_per_tick.min(total.available());
    let mut ready = false;
    for _ in 0..queue.viewers.len() {
        let Some(entity) = queue.viewers.pop_front() else {
            break;
        };
        let Ok(mut state) = viewers.get_mut(entity) else {
            // Gone.
            continue;
        };
        let state = &mut *state;
        state
            .allowance
            .refill(budget.items_per_second_per_viewer, now);
        if tick_items > 0 && !state.allowance.in_debt() {
            if let Some(subscribe) = state.pending.take() {
                let queried = start_job(
                    entity,
                    state,
                    &subscribe,
                    &city,
                    &mut watchers,
                    &mut playback,
                );
                state.allowance.spend(queried);
                total.spend(queried);
                tick_items = tick_items.saturating_sub(queried);
            }
            let items = tick_items.min(state.allowance.available());
            if items > 0 {
                let done = work_slice(entity, state, items, &city, &mut watchers, tick.0);
                state.allowance.spend(done);
                total.spend(done);
                tick_items = tick_items.saturating_sub(done);
            }
            if state.job.as_ref().is_some_and(|job| job.remaining() == 0) {
                finish_job(state, &mut city, &mut playback, &mut shown);
            }
        }
        if state.pending.is_some() || state.job.is_some() {
            ready |= !state.allowance.in_debt();
            queue.viewers.push_back(entity);
        }
    }
    tick_items = tick_items.min(total.available());
    *pending = InterestPending {
        viewers: queue.viewers.len(),
        ready: ready && tick_items < budget.items_per_tick && total.available() > 0,
    };
}

/// What interest work reads of the city.
#[derive(bevy::ecs::system::SystemParam)]
pub(crate) struct InterestCity<'w> {
    index: Res<'w, SpatialIndex>,
    info: Res<'w, TwinInfo>,
    sensors: Res<'w, SensorTable>,
    assets: Res<'w, AssetTable>,
}

/// Starts `subscribe` for a viewer: queries its area and sets up what must
/// enter and leave (everything, as a snapshot, for a first subscription, a
/// change of time, or one replacing a snapshot still being sent). Returns
/// the items the query found, its cost.
fn start_job(
    entity: Entity,
    state: &mut ViewerState,
    subscribe: &polis_protocol::Subscribe,
    city: &InterestCity,
    watchers: &mut Watchers,
    playback: &mut MessageWriter<PlaybackCommand>,
) -> u64 {
    let area = subscribe.area;
    let georef = city.info.georeference;
    let [west_m, south_m] = georef.enu_from_lonlat(area.lon_min_deg, area.lat_min_deg);
    let [east_m, north_m] = georef.enu_from_lonlat(area.lon_max_deg, area.lat_max_deg);
    let (min, max) = ([west_m, south_m], [east_m, north_m]);
    let layers = LayerMask::from_layers(&subscribe.layers);

    let mut new_sensors = HashSet::new();
    let mut new_assets = HashSet::new();
    let (sensors, assets) = (&*city.sensors, &*city.assets);
    for item in city.index.items_in_area(min, max, assets, sensors) {
        match item {
            ItemRef::Sensor(handle) => {
                let visible = sensors.domain(handle).is_some_and(|d| layers.contains(d))
                    && state.may_see(sensors, handle);
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
    let queried = (new_sensors.len() + new_assets.len()) as u64;

    let travel = subscribe.at_ms.map(|at_ms| Travel {
        at_ms,
        speed: subscribe.speed.max(0.0),
    });
    // A first subscription, any change of time (to a past time, to another
    // one, or back to live), and one replacing a snapshot not yet complete
    // start from a fresh snapshot.
    let fresh = state.area_enu_m.is_none()
        || travel.is_some()
        || state.travel.is_some()
        || state.job.as_ref().is_some_and(|job| job.fresh);
    if state.travel.is_some() {
        // The old trip's values must not reach the new area.
        playback.write(PlaybackCommand::Stop(state.id));
    }
    if fresh {
        watchers.forget(entity, state);
        state.sensors.clear();
        state.assets.clear();
        state
            .mailbox
            .update(|mailbox| mailbox.begin_snapshot_in_parts(subscribe.subscription));
    }
    let sorted = |set: Vec<u32>| {
        let mut set = set;
        // Worked from the back: lowest handles first.
        set.sort_unstable_by(|a, b| b.cmp(a));
        set
    };
    let job = InterestJob {
        subscription: subscribe.subscription,
        fresh,
        travel,
        leave_assets: sorted(state.assets.difference(&new_assets).copied().collect()),
        leave_sensors: sorted(state.sensors.difference(&new_sensors).copied().collect()),
        enter_assets: sorted(new_assets.difference(&state.assets).copied().collect()),
        enter_sensors: sorted(new_sensors.difference(&state.sensors).copied().collect()),
    };
    state.job = Some(job);
    state.travel = travel;
    state.area_enu_m = Some((min, max));
    queried
}

/// Does up to `items` of the viewer's job: departures first, then arrivals.
/// Returns the items done.
fn work_slice(
    entity: Entity,
    state: &mut ViewerState,
    items: u64,
    city: &InterestCity,
    watchers: &mut Watchers,
    tick: u64,
) -> u64 {
    let Some(job) = state.job.as_mut() else {
        return 0;
    };
    let (sensors, assets) = (&*city.sensors, &*city.assets);
    let live = job.travel.is_none();
    let mut done = 0;
    state.mailbox.update(|mailbox| {
        mailbox.set_tick(tick);
        while done < items {
            if let Some(handle) = job.leave_assets.pop() {
                mailbox.leave_asset(handle);
                state.assets.remove(&handle);
            } else if let Some(handle) = job.leave_sensors.pop() {
                mailbox.leave_sensor(handle);
                watchers.remove(handle, entity);
                state.sensors.remove(&handle);
            } else if let Some(handle) = job.enter_assets.pop() {
                if let Some(info) = assets.info(handle) {
                    mailbox.enter_asset(info);
                }
                state.assets.insert(handle);
            } else if let Some(handle) = job.enter_sensors.pop() {
                // A traveller's values come from history, not from the
                // live state.
                if let Some(info) = sensors.info(handle, live) {
                    mailbox.enter_sensor(info);
                    if live {
                        watchers.add(handle, entity);
                    }
                }
                state.sensors.insert(handle);
            } else {
                break;
            }
            done += 1;
        }
    });
    done
}

/// Completes a viewer's job: closes its snapshot, starts its trip in time,
/// and records what an operator was shown.
fn finish_job(
    state: &mut ViewerState,
    city: &mut InterestCity,
    playback: &mut MessageWriter<PlaybackCommand>,
    shown: &mut MessageWriter<PersonalDataShown>,
) {
    let Some(job) = state.job.take() else {
        return;
    };
    let sensors = &*city.sensors;
    if job.fresh {
        state.mailbox.update(ViewerMailbox::end_snapshot);
    }
    if let Some(trip) = job.travel {
        // History holds raw readings only: a traveller gets raw values of
        // the sensors everyone may see, and of personal ones only if an
        // operator; aggregates are live-only.
        let mut handles: Vec<u32> = state
            .sensors
            .iter()
            .copied()
            .filter(|&h| {
                sensors.audience(h) == Some(Audience::EVERYONE)
                    || (sensors.personal(h) == Some(true) && state.access == Access::Operator)
                    || state.own_sensors.contains(&h)
            })
            .collect();
        handles.sort_unstable();
        playback.write(PlaybackCommand::Start(PlaybackRequested {
            viewer: state.id,
            mailbox: state.mailbox.clone(),
            sensors: handles,
            at_ms: trip.at_ms,
            speed: trip.speed,
        }));
    }
    if state.access == Access::Operator {
        let mut personal: Vec<String> = state
            .sensors
            .iter()
            .filter(|&&h| sensors.personal(h) == Some(true))
            .filter_map(|&h| sensors.id(h).map(str::to_owned))
            .collect();
        if !personal.is_empty() {
            personal.sort();
            shown.write(PersonalDataShown {
                viewer: state.id,
                name: state.name.clone(),
                sensors: personal,
                at_ms: job.travel.map(|trip| trip.at_ms),
            });
        }
    }
    debug!(
        viewer = state.id.0,
        subscription = job.subscription,
        sensors = state.sensors.len(),
        assets = state.assets.len(),
        "viewer subscribed"
    );
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
