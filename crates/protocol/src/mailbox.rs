//! Per-viewer coalescing of outgoing changes.
//!
//! The twin writes changes into a viewer's [`ViewerMailbox`] as they happen;
//! the viewer's connection drains it into frames whenever the connection can
//! send (and, under a publishing interval, values only once the interval
//! has passed). Between two drains the latest value of a sensor replaces the previous
//! one, and an asset that enters and leaves again cancels out, so a mailbox
//! never holds more than one entry per asset and sensor of the viewer's area:
//! a slow or stalled viewer costs bounded memory and never delays anyone else.
//!
//! A snapshot may be filled over several ticks
//! ([`ViewerMailbox::begin_snapshot_in_parts`], then
//! [`ViewerMailbox::end_snapshot`]) and drained over several passes
//! ([`ViewerMailbox::drain_frames_up_to`]): its parts go out as they are
//! ready, only the last one says `complete`, and value updates and
//! departures of items already sent wait until it is complete.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use crate::messages::{AssetInfo, SensorInfo, ServerToViewer, Snapshot, Update, ValueUpdate};

/// Upper bound of the encoded size of a [`ValueUpdate`], bytes (one compact
/// record).
const VALUE_UPDATE_MAX_BYTES: usize = crate::compact::MAX_RECORD_BYTES;
/// Upper bound of the fixed part of a frame (variant, tick, counts), bytes.
const FRAME_OVERHEAD_BYTES: usize = 64;
/// Encoded size of a departure (a handle), bytes, at most.
const LEAVE_MAX_BYTES: usize = 5;

/// Changes waiting to be sent to one viewer.
#[derive(Debug, Default)]
pub struct ViewerMailbox {
    /// Set while the next frames must be a snapshot answering this subscription.
    snapshot: Option<u32>,
    /// The twin is still adding to the snapshot: it is not complete yet.
    filling: bool,
    /// Parts of the current snapshot already drained.
    parts_sent: u32,
    entered_assets: BTreeMap<u32, AssetInfo>,
    entered_sensors: BTreeMap<u32, SensorInfo>,
    left_assets: BTreeSet<u32>,
    left_sensors: BTreeSet<u32>,
    values: BTreeMap<u32, ValueUpdate>,
    tick: u64,
}

impl ViewerMailbox {
    /// Discards everything pending: the next frames are a snapshot answering
    /// `subscription`, made of whatever enters after this call; it is
    /// complete at the next drain that takes everything.
    pub fn begin_snapshot(&mut self, subscription: u32) {
        *self = ViewerMailbox {
            snapshot: Some(subscription),
            tick: self.tick,
            ..ViewerMailbox::default()
        };
    }

    /// Like [`ViewerMailbox::begin_snapshot`], for a snapshot filled over
    /// several changes: its parts are sent as they come, and it is complete
    /// only after [`ViewerMailbox::end_snapshot`].
    pub fn begin_snapshot_in_parts(&mut self, subscription: u32) {
        self.begin_snapshot(subscription);
        self.filling = true;
    }

    /// Everything of the snapshot begun with
    /// [`ViewerMailbox::begin_snapshot_in_parts`] has entered.
    pub fn end_snapshot(&mut self) {
        self.filling = false;
    }

    /// Records the server tick of the newest change.
    pub fn set_tick(&mut self, tick: u64) {
        self.tick = tick;
    }

    /// An asset entered the area.
    pub fn enter_asset(&mut self, asset: AssetInfo) {
        self.left_assets.remove(&asset.handle);
        self.entered_assets.insert(asset.handle, asset);
    }

    /// An asset left the area.
    pub fn leave_asset(&mut self, handle: u32) {
        self.entered_assets.remove(&handle);
        if self.reports_departures() {
            self.left_assets.insert(handle);
        }
    }

    /// A sensor entered the area (with its latest value, if any).
    pub fn enter_sensor(&mut self, sensor: SensorInfo) {
        self.left_sensors.remove(&sensor.handle);
        self.values.remove(&sensor.handle);
        self.entered_sensors.insert(sensor.handle, sensor);
    }

    /// A sensor left the area.
    pub fn leave_sensor(&mut self, handle: u32) {
        self.entered_sensors.remove(&handle);
        self.values.remove(&handle);
        if self.reports_departures() {
            self.left_sensors.insert(handle);
        }
    }

    /// Whether a departure must be sent: always outside a snapshot, and
    /// within one once some of it went out (the item may be among it).
    fn reports_departures(&self) -> bool {
        self.snapshot.is_none() || self.parts_sent > 0
    }

    /// A sensor in the area has a new latest value; replaces any pending one.
    pub fn value(&mut self, update: ValueUpdate) {
        match self.entered_sensors.get_mut(&update.sensor) {
            Some(sensor) => sensor.latest = Some(update),
            None => {
                self.values.insert(update.sensor, update);
            }
        }
    }

    /// True when nothing can be sent now. While a snapshot is being filled
    /// only its entered items can; values and departures wait for its end.
    pub fn is_empty(&self) -> bool {
        if self.snapshot.is_some() && self.filling {
            return self.entered_assets.is_empty() && self.entered_sensors.is_empty();
        }
        self.area_unchanged() && self.values.is_empty()
    }

    /// True when value updates are waiting and nothing else: no snapshot,
    /// nothing entering or leaving the area. Only such a mailbox may be held
    /// back to a viewer's publishing interval.
    pub fn holds_only_values(&self) -> bool {
        self.area_unchanged() && !self.values.is_empty()
    }

    /// No snapshot is due and nothing enters or leaves the area.
    fn area_unchanged(&self) -> bool {
        self.snapshot.is_none()
            && self.entered_assets.is_empty()
            && self.entered_sensors.is_empty()
            && self.left_assets.is_empty()
            && self.left_sensors.is_empty()
    }

    /// How many entries are waiting (assets, sensors, departures and values).
    pub fn pending_entries(&self) -> usize {
        self.entered_assets.len()
            + self.entered_sensors.len()
            + self.left_assets.len()
            + self.left_sensors.len()
            + self.values.len()
    }

    /// Takes everything that can be sent as frames, each encoding to at
    /// most about `frame_budget_bytes`; see
    /// [`ViewerMailbox::drain_frames_up_to`].
    pub fn drain_frames(&mut self, frame_budget_bytes: usize) -> Vec<ServerToViewer> {
        self.drain_frames_up_to(frame_budget_bytes, usize::MAX)
    }

    /// Takes what can be sent as frames, each encoding to at most about
    /// `frame_budget_bytes`, and about `drain_budget_bytes` in all (at
    /// least one item): the rest waits for the next drain, so one pass over
    /// a huge area costs a bounded amount of work. Empty when nothing can
    /// be sent. A snapshot comes out as [`Snapshot`] parts, the last one
    /// `complete` once everything of it went out (an empty area gets one
    /// empty complete part); everything else as [`Update`]s.
    pub fn drain_frames_up_to(
        &mut self,
        frame_budget_bytes: usize,
        drain_budget_bytes: usize,
    ) -> Vec<ServerToViewer> {
        let mut frames = Vec::new();
        let mut budget = DrainBudget::new(drain_budget_bytes);
        if let Some(subscription) = self.snapshot {
            let mut chunker = Chunker::new(
                frame_budget_bytes,
                Some(subscription),
                self.tick,
                self.parts_sent,
            );
            self.drain_entered(&mut chunker, &mut frames, &mut budget);
            let done =
                !self.filling && self.entered_assets.is_empty() && self.entered_sensors.is_empty();
            if !chunker.is_empty() || (done && frames.is_empty()) {
                frames.push(chunker.frame());
            }
            self.parts_sent = chunker.parts;
            if !done {
                return frames;
            }
            if let Some(ServerToViewer::Snapshot(last)) = frames.last_mut() {
                last.complete = true;
            }
            self.snapshot = None;
            self.parts_sent = 0;
        }
        let mut chunker = Chunker::new(frame_budget_bytes, None, self.tick, 0);
        self.drain_entered(&mut chunker, &mut frames, &mut budget);
        while budget.left() {
            let Some(handle) = self.left_assets.pop_first() else {
                break;
            };
            chunker.push(
                LEAVE_MAX_BYTES,
                handle,
                |c| &mut c.left_assets,
                &mut frames,
                &mut budget,
            );
        }
        while budget.left() {
            let Some(handle) = self.left_sensors.pop_first() else {
                break;
            };
            chunker.push(
                LEAVE_MAX_BYTES,
                handle,
                |c| &mut c.left_sensors,
                &mut frames,
                &mut budget,
            );
        }
        while budget.left() {
            let Some((_, value)) = self.values.pop_first() else {
                break;
            };
            chunker.push(
                VALUE_UPDATE_MAX_BYTES,
                value,
                |c| &mut c.values,
                &mut frames,
                &mut budget,
            );
        }
        if !chunker.is_empty() {
            frames.push(chunker.frame());
        }
        frames
    }

    /// Moves entered assets, then sensors, into `chunker` while `budget` lasts.
    fn drain_entered(
        &mut self,
        chunker: &mut Chunker,
        frames: &mut Vec<ServerToViewer>,
        budget: &mut DrainBudget,
    ) {
        while budget.left() {
            let Some((_, asset)) = self.entered_assets.pop_first() else {
                break;
            };
            chunker.push(
                estimate_size(&asset),
                asset,
                |c| &mut c.assets,
                frames,
                budget,
            );
        }
        while budget.left() {
            let Some((_, sensor)) = self.entered_sensors.pop_first() else {
                break;
            };
            chunker.push(
                estimate_size(&sensor),
                sensor,
                |c| &mut c.sensors,
                frames,
                budget,
            );
        }
    }
}

/// Bytes one drain may still take; the first item always fits.
struct DrainBudget {
    remaining_bytes: usize,
    taken_any: bool,
}

impl DrainBudget {
    fn new(bytes: usize) -> Self {
        Self {
            remaining_bytes: bytes,
            taken_any: false,
        }
    }

    /// Whether another item may be taken.
    fn left(&self) -> bool {
        !self.taken_any || self.remaining_bytes > 0
    }

    fn spend(&mut self, bytes: usize) {
        self.taken_any = true;
        self.remaining_bytes = self.remaining_bytes.saturating_sub(bytes);
    }
}

/// Accumulates one frame's worth of items.
struct Chunker {
    budget_bytes: usize,
    used_bytes: usize,
    snapshot: Option<u32>,
    tick: u64,
    parts: u32,
    assets: Vec<AssetInfo>,
    sensors: Vec<SensorInfo>,
    left_assets: Vec<u32>,
    left_sensors: Vec<u32>,
    values: Vec<ValueUpdate>,
}

impl Chunker {
    fn new(budget_bytes: usize, snapshot: Option<u32>, tick: u64, parts: u32) -> Self {
        Self {
            budget_bytes,
            used_bytes: FRAME_OVERHEAD_BYTES,
            snapshot,
            tick,
            parts,
            assets: Vec::new(),
            sensors: Vec::new(),
            left_assets: Vec::new(),
            left_sensors: Vec::new(),
            values: Vec::new(),
        }
    }

    /// Closes the current frame.
    fn frame(&mut self) -> ServerToViewer {
        let assets = std::mem::take(&mut self.assets);
        let sensors = std::mem::take(&mut self.sensors);
        let left_assets = std::mem::take(&mut self.left_assets);
        let left_sensors = std::mem::take(&mut self.left_sensors);
        let values = std::mem::take(&mut self.values);
        match self.snapshot {
            Some(subscription) => {
                let part = self.parts;
                self.parts += 1;
                ServerToViewer::Snapshot(Snapshot {
                    subscription,
                    part,
                    complete: false,
                    assets,
                    sensors,
                })
            }
            None => ServerToViewer::Update(Update {
                tick: self.tick,
                entered_assets: assets,
                entered_sensors: sensors,
                left_assets,
                left_sensors,
                values,
            }),
        }
    }

    /// Accounts for an item of `bytes`, closing the current frame first
    /// when the item would not fit (a frame is never closed while empty).
    fn make_room(
        &mut self,
        bytes: usize,
        frames: &mut Vec<ServerToViewer>,
        budget: &mut DrainBudget,
    ) {
        if !self.is_empty() && self.used_bytes + bytes > self.budget_bytes {
            frames.push(self.frame());
            self.used_bytes = FRAME_OVERHEAD_BYTES;
        }
        self.used_bytes += bytes;
        budget.spend(bytes);
    }

    /// Adds `item` of about `bytes` to the list `list` picks, closing the
    /// current frame first if it would not fit.
    fn push<T>(
        &mut self,
        bytes: usize,
        item: T,
        list: fn(&mut Self) -> &mut Vec<T>,
        frames: &mut Vec<ServerToViewer>,
        budget: &mut DrainBudget,
    ) {
        self.make_room(bytes, frames, budget);
        list(self).push(item);
    }

    fn is_empty(&self) -> bool {
        self.assets.is_empty()
            && self.sensors.is_empty()
            && self.left_assets.is_empty()
            && self.left_sensors.is_empty()
            && self.values.is_empty()
    }
}

fn estimate_size<T: serde::Serialize>(item: &T) -> usize {
    postcard::experimental::serialized_size(item).unwrap_or(usize::MAX / 4)
}

/// A [`ViewerMailbox`] shared between the twin (which fills it) and a
/// connection (which drains it), with a wake-up for the connection.
#[derive(Clone)]
pub struct SharedMailbox {
    inner: Arc<SharedInner>,
}

struct SharedInner {
    slot: Mutex<Slot>,
    wake: Box<dyn Fn() + Send + Sync>,
}

/// What the lock guards: the mailbox and whether its values are held.
#[derive(Default)]
struct Slot {
    mailbox: ViewerMailbox,
    /// Set by [`SharedMailbox::hold_values`] until the next drain: more
    /// values then wake nobody.
    holding: bool,
}

impl std::fmt::Debug for SharedMailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedMailbox").finish_non_exhaustive()
    }
}

impl SharedMailbox {
    /// A new empty mailbox; `wake` is called after every change so the
    /// draining side knows to look (it must not block).
    pub fn new(wake: impl Fn() + Send + Sync + 'static) -> Self {
        Self {
            inner: Arc::new(SharedInner {
                slot: Mutex::new(Slot::default()),
                wake: Box::new(wake),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.inner
            .slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Changes the mailbox under its lock, then wakes the draining side if
    /// anything is pending, unless the draining side holds values back (see
    /// [`SharedMailbox::hold_values`]) and values are all that is pending.
    pub fn update<R>(&self, change: impl FnOnce(&mut ViewerMailbox) -> R) -> R {
        let (result, wake) = {
            let mut slot = self.lock();
            let result = change(&mut slot.mailbox);
            let held = slot.holding && slot.mailbox.holds_only_values();
            (result, !slot.mailbox.is_empty() && !held)
        };
        if wake {
            (self.inner.wake)();
        }
        result
    }

    /// Takes everything pending as frames; see [`ViewerMailbox::drain_frames`].
    /// Ends a hold.
    pub fn drain_frames(&self, frame_budget_bytes: usize) -> Vec<ServerToViewer> {
        self.drain_frames_up_to(frame_budget_bytes, usize::MAX)
    }

    /// Takes about `drain_budget_bytes` of what can be sent as frames; see
    /// [`ViewerMailbox::drain_frames_up_to`]. Ends a hold. When more can be
    /// sent after it, the draining side is woken again, so that it comes
    /// back for the rest without waiting for the next change.
    pub fn drain_frames_up_to(
        &self,
        frame_budget_bytes: usize,
        drain_budget_bytes: usize,
    ) -> Vec<ServerToViewer> {
        let (frames, more) = {
            let mut slot = self.lock();
            slot.holding = false;
            let frames = slot
                .mailbox
                .drain_frames_up_to(frame_budget_bytes, drain_budget_bytes);
            (frames, !slot.mailbox.is_empty())
        };
        if more {
            (self.inner.wake)();
        }
        frames
    }

    /// If only value updates wait (see [`ViewerMailbox::holds_only_values`]),
    /// holds them back until the next drain and returns true: further values
    /// no longer wake the draining side, anything else still does. A
    /// viewer's publishing interval uses this, so that a held viewer costs
    /// no wake-up per tick.
    pub fn hold_values(&self) -> bool {
        let mut slot = self.lock();
        slot.holding = slot.mailbox.holds_only_values();
        slot.holding
    }

    /// How many entries are waiting; see [`ViewerMailbox::pending_entries`].
    pub fn pending_entries(&self) -> usize {
        self.lock().mailbox.pending_entries()
    }
}
