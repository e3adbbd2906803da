//! Per-viewer coalescing of outgoing changes.
//!
//! The twin writes changes into a viewer's [`ViewerMailbox`] as they happen;
//! the viewer's connection drains it into frames whenever the connection can
//! send (and, under a publishing interval, values only once the interval
//! has passed). Between two drains the latest value of a sensor replaces the previous
//! one, and an asset that enters and leaves again cancels out, so a mailbox
//! never holds more than one entry per asset and sensor of the viewer's area:
//! a slow or stalled viewer costs bounded memory and never delays anyone else.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use crate::messages::{AssetInfo, SensorInfo, ServerToViewer, Snapshot, Update, ValueUpdate};

/// Upper bound of the encoded size of a [`ValueUpdate`], bytes (one compact
/// record).
const VALUE_UPDATE_MAX_BYTES: usize = crate::compact::MAX_RECORD_BYTES;
/// Upper bound of the fixed part of a frame (variant, tick, counts), bytes.
const FRAME_OVERHEAD_BYTES: usize = 64;

/// Changes waiting to be sent to one viewer.
#[derive(Debug, Default)]
pub struct ViewerMailbox {
    /// Set when the next frames must be a snapshot answering this subscription.
    snapshot: Option<u32>,
    entered_assets: BTreeMap<u32, AssetInfo>,
    entered_sensors: BTreeMap<u32, SensorInfo>,
    left_assets: BTreeSet<u32>,
    left_sensors: BTreeSet<u32>,
    values: BTreeMap<u32, ValueUpdate>,
    tick: u64,
}

impl ViewerMailbox {
    /// Discards everything pending: the next frames are a snapshot answering
    /// `subscription`, made of whatever enters after this call.
    pub fn begin_snapshot(&mut self, subscription: u32) {
        *self = ViewerMailbox {
            snapshot: Some(subscription),
            tick: self.tick,
            ..ViewerMailbox::default()
        };
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
        if self.snapshot.is_none() {
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
        if self.snapshot.is_none() {
            self.left_sensors.insert(handle);
        }
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

    /// True when nothing is waiting to be sent.
    pub fn is_empty(&self) -> bool {
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

    /// Takes everything pending as frames, each encoding to at most about
    /// `frame_budget_bytes`; empty when nothing is pending. A pending snapshot
    /// comes out as one or more [`Snapshot`] parts (always at least one, so an
    /// empty area is answered too), otherwise as [`Update`]s.
    pub fn drain_frames(&mut self, frame_budget_bytes: usize) -> Vec<ServerToViewer> {
        let taken = std::mem::replace(
            self,
            ViewerMailbox {
                tick: self.tick,
                ..ViewerMailbox::default()
            },
        );
        let mut frames = Vec::new();
        let mut chunker = Chunker::new(frame_budget_bytes, taken.snapshot, taken.tick);
        for asset in taken.entered_assets.into_values() {
            let bytes = estimate_size(&asset);
            if chunker.full(bytes) {
                frames.push(chunker.frame());
            }
            chunker.assets.push(asset);
        }
        for sensor in taken.entered_sensors.into_values() {
            let bytes = estimate_size(&sensor);
            if chunker.full(bytes) {
                frames.push(chunker.frame());
            }
            chunker.sensors.push(sensor);
        }
        for handle in taken.left_assets {
            if chunker.full(5) {
                frames.push(chunker.frame());
            }
            chunker.left_assets.push(handle);
        }
        for handle in taken.left_sensors {
            if chunker.full(5) {
                frames.push(chunker.frame());
            }
            chunker.left_sensors.push(handle);
        }
        for value in taken.values.into_values() {
            if chunker.full(VALUE_UPDATE_MAX_BYTES) {
                frames.push(chunker.frame());
            }
            chunker.values.push(value);
        }
        if !chunker.is_empty() || (taken.snapshot.is_some() && frames.is_empty()) {
            frames.push(chunker.frame());
        }
        if let Some(ServerToViewer::Snapshot(last)) = frames.last_mut() {
            last.complete = true;
        }
        frames
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
    fn new(budget_bytes: usize, snapshot: Option<u32>, tick: u64) -> Self {
        Self {
            budget_bytes,
            used_bytes: FRAME_OVERHEAD_BYTES,
            snapshot,
            tick,
            parts: 0,
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

    /// Accounts for an item of `bytes`; true if the current frame must be
    /// closed first (it is never closed while empty).
    fn full(&mut self, bytes: usize) -> bool {
        let full = !self.is_empty() && self.used_bytes + bytes > self.budget_bytes;
        if full {
            self.used_bytes = FRAME_OVERHEAD_BYTES;
        }
        self.used_bytes += bytes;
        full
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
        let mut slot = self.lock();
        slot.holding = false;
        slot.mailbox.drain_frames(frame_budget_bytes)
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
