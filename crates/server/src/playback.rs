//! Time travel and history queries for viewers, answered from the history
//! store off the tick thread.
//!
//! The twin decides *what* a travelling viewer sees (the assets and sensors
//! of its area, as for a live viewer) and tells the `polis-playback` worker
//! through a bounded channel; the worker writes the area's state at the
//! chosen time into the viewer's mailbox and then the recorded changes, paced
//! at the chosen speed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use bevy::prelude::*;
use polis_history::{Aggregate, HistoryReader, RecordedValue, SensorKey};
use polis_net::{Grant, HistoryService};
use polis_protocol::{
    Access, Aggregation, ErrorCode, HistoryPoint, HistoryReply, HistoryRequest, MAX_HISTORY_POINTS,
    ProtocolError, SharedMailbox, ValueUpdate,
};
use polis_twin::{PlaybackCommand, TwinSystems};
use tracing::{debug, warn};

use crate::audit::AuditLog;

/// How often the worker advances every playback.
const PLAYBACK_STEP: Duration = Duration::from_millis(50);
/// Most commands waiting for the worker.
const COMMAND_CAPACITY: usize = 256;

/// Sensor handles and their history keys and ids, shared by queries and playback.
#[derive(Debug, Clone)]
pub(crate) struct SensorKeys {
    keys_by_handle: Vec<SensorKey>,
    ids_by_handle: Vec<String>,
    personal_by_handle: Vec<bool>,
}

impl SensorKeys {
    pub(crate) fn new(
        keys_by_handle: Vec<SensorKey>,
        ids_by_handle: Vec<String>,
        personal_by_handle: Vec<bool>,
    ) -> Self {
        Self {
            keys_by_handle,
            ids_by_handle,
            personal_by_handle,
        }
    }
}

/// Answers [`HistoryRequest`]s from the store.
pub(crate) struct HistoryQueries {
    path: PathBuf,
    sensors: SensorKeys,
    audit: AuditLog,
}

impl HistoryQueries {
    pub(crate) fn new(path: PathBuf, sensors: SensorKeys, audit: AuditLog) -> Self {
        Self {
            path,
            sensors,
            audit,
        }
    }
}

fn invalid(detail: String) -> ProtocolError {
    ProtocolError {
        code: ErrorCode::InvalidRequest,
        detail,
    }
}

impl HistoryService for HistoryQueries {
    fn query(
        &self,
        _viewer: u64,
        grant: &Grant,
        request: &HistoryRequest,
    ) -> Result<HistoryReply, ProtocolError> {
        let Some(id) = self.sensors.ids_by_handle.get(request.sensor as usize) else {
            return Err(invalid(format!(
                "no recorded sensor with handle {} (aggregates have no history)",
                request.sensor
            )));
        };
        if request.to_ms <= request.from_ms {
            return Err(invalid("`to_ms` must be after `from_ms`".into()));
        }
        let personal = self
            .sensors
            .personal_by_handle
            .get(request.sensor as usize)
            .copied()
            .unwrap_or(true);
        if personal {
            let own = grant.access == Access::Resident && grant.own_sensors.contains(id);
            if grant.access != Access::Operator && !own {
                return Err(invalid(format!(
                    "`{id}` is personal data: its history is for operators and its household only"
                )));
            }
            if !own {
                self.audit
                    .history(&grant.name, id, request.from_ms, request.to_ms);
            }
        }
        let unavailable = |err: polis_history::HistoryError| {
            warn!("history query failed: {err}");
            ProtocolError {
                code: ErrorCode::Unavailable,
                detail: "history is unavailable".into(),
            }
        };
        let reader = HistoryReader::open(&self.path).map_err(unavailable)?;
        let mut points: Vec<HistoryPoint> = match request.aggregation {
            Aggregation::Raw => reader
                .readings(id, request.from_ms, request.to_ms)
                .map_err(unavailable)?
                .into_iter()
                .map(|r| HistoryPoint {
                    time_ms: r.device_time_ms,
                    value: r.value,
                    count: 1,
                })
                .collect(),
            aggregation => {
                if request.every_ms <= 0 {
                    return Err(invalid("`every_ms` must be positive to aggregate".into()));
                }
                let aggregate = match aggregation {
                    Aggregation::Min => Aggregate::Min,
                    Aggregation::Max => Aggregate::Max,
                    Aggregation::Last => Aggregate::Last,
                    Aggregation::Mean | Aggregation::Raw => Aggregate::Mean,
                };
                reader
                    .aggregate(
                        id,
                        request.from_ms,
                        request.to_ms,
                        request.every_ms,
                        aggregate,
                    )
                    .map_err(unavailable)?
                    .into_iter()
                    .map(|b| HistoryPoint {
                        time_ms: b.start_ms,
                        value: b.value,
                        count: u32::try_from(b.count).unwrap_or(u32::MAX),
                    })
                    .collect()
            }
        };
        let truncated = points.len() > MAX_HISTORY_POINTS;
        if truncated {
            points.drain(..points.len() - MAX_HISTORY_POINTS);
        }
        Ok(HistoryReply {
            request: request.request,
            sensor: request.sensor,
            points,
            truncated,
        })
    }
}

enum Command {
    Start {
        viewer: u64,
        mailbox: SharedMailbox,
        sensors: Vec<u32>,
        at_ms: i64,
        speed: f32,
    },
    Stop {
        viewer: u64,
    },
}

/// The playback worker as a world resource.
#[derive(Resource)]
pub(crate) struct Playback {
    commands: SyncSender<Command>,
}

/// One viewer's trip.
struct Trip {
    mailbox: SharedMailbox,
    keys: Vec<SensorKey>,
    handle_of: HashMap<SensorKey, u32>,
    at_ms: i64,
    speed: f64,
    started: Instant,
    /// Device time up to which changes have been sent.
    sent_until_ms: i64,
}

impl Playback {
    /// Starts the `polis-playback` thread reading the store at `path`.
    pub(crate) fn start(path: PathBuf, sensors: SensorKeys) -> anyhow::Result<Playback> {
        let reader = HistoryReader::open(&path)?;
        let (commands, queue) = sync_channel(COMMAND_CAPACITY);
        std::thread::Builder::new()
            .name("polis-playback".into())
            .spawn(move || run(&reader, &sensors, &queue))?;
        Ok(Playback { commands })
    }

    fn send(&self, command: Command) {
        match self.commands.try_send(command) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => warn!("playback worker is behind; a request was dropped"),
            Err(TrySendError::Disconnected(_)) => warn!("playback worker has stopped"),
        }
    }
}

fn to_updates(
    values: Vec<(SensorKey, RecordedValue)>,
    handle_of: &HashMap<SensorKey, u32>,
) -> Vec<ValueUpdate> {
    values
        .into_iter()
        .filter_map(|(key, value)| {
            Some(ValueUpdate {
                sensor: *handle_of.get(&key)?,
                device_time_ms: value.device_time_ms,
                value: value.value,
            })
        })
        .collect()
}

fn deliver(mailbox: &SharedMailbox, updates: Vec<ValueUpdate>) {
    if updates.is_empty() {
        return;
    }
    mailbox.update(|mailbox| {
        for update in updates {
            mailbox.value(update);
        }
    });
}

fn run(reader: &HistoryReader, sensors: &SensorKeys, queue: &Receiver<Command>) {
    let mut trips: HashMap<u64, Trip> = HashMap::new();
    loop {
        match queue.recv_timeout(PLAYBACK_STEP) {
            Ok(Command::Start {
                viewer,
                mailbox,
                sensors: handles,
                at_ms,
                speed,
            }) => {
                let mut keys = Vec::with_capacity(handles.len());
                let mut handle_of = HashMap::with_capacity(handles.len());
                for handle in handles {
                    if let Some(&key) = sensors.keys_by_handle.get(handle as usize) {
                        keys.push(key);
                        handle_of.insert(key, handle);
                    }
                }
                match reader.state_at(&keys, at_ms) {
                    Ok(state) => deliver(&mailbox, to_updates(state, &handle_of)),
                    Err(err) => warn!("time travel to {at_ms}: {err}"),
                }
                debug!(viewer, at_ms, sensors = keys.len(), "playback started");
                trips.insert(
                    viewer,
                    Trip {
                        mailbox,
                        keys,
                        handle_of,
                        at_ms,
                        speed: f64::from(speed),
                        started: Instant::now(),
                        sent_until_ms: at_ms,
                    },
                );
            }
            Ok(Command::Stop { viewer }) => {
                trips.remove(&viewer);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        for trip in trips.values_mut() {
            let played_ms = (trip.started.elapsed().as_secs_f64() * trip.speed * 1e3) as i64;
            let now_ms = trip.at_ms.saturating_add(played_ms);
            if now_ms <= trip.sent_until_ms {
                continue;
            }
            match reader.changes(&trip.keys, trip.sent_until_ms, now_ms) {
                Ok(changes) => deliver(&trip.mailbox, to_updates(changes, &trip.handle_of)),
                Err(err) => warn!("playback: {err}"),
            }
            trip.sent_until_ms = now_ms;
        }
    }
}

/// Hands the twin's time-travel requests to the playback worker (a
/// [`Playback`] resource inserted by the caller; without one, as when
/// history is off, the requests are dropped).
pub(crate) struct PlaybackPlugin;

impl Plugin for PlaybackPlugin {
    fn build(&self, app: &mut App) {
        app.add_systems(Update, forward_playback.after(TwinSystems::Interest));
    }
}

/// Hands the twin's playback commands to the worker, in order.
fn forward_playback(playback: Option<Res<Playback>>, mut commands: MessageReader<PlaybackCommand>) {
    let Some(playback) = playback else {
        commands.clear();
        return;
    };
    for command in commands.read() {
        match command {
            PlaybackCommand::Stop(viewer) => playback.send(Command::Stop { viewer: viewer.0 }),
            PlaybackCommand::Start(request) => playback.send(Command::Start {
                viewer: request.viewer.0,
                mailbox: request.mailbox.clone(),
                sensors: request.sensors.clone(),
                at_ms: request.at_ms,
                speed: request.speed,
            }),
        }
    }
}
