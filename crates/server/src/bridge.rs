//! Bridges the network thread and the twin: drains the bounded event channel
//! into twin messages each tick, records applied readings in history, and
//! sends each acknowledgement back once its batch is durable.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bevy::prelude::*;
use polis_history::{History, Rejected, Row, SensorKey};
use polis_net::{NetEvent, NetServer};
use polis_protocol::{BatchAck, ErrorCode, ProtocolError, Quality};
use polis_twin::{
    BatchApplied, BatchTicket, IncomingBatch, PickRequested, PickResponder, TwinSystems,
    ViewerConnected, ViewerDisconnected, ViewerId, ViewerSubscribed,
};
use tokio::sync::oneshot;
use tracing::error;

/// When the bridge's systems run.
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NetSystems {
    /// Network events become twin messages (before [`TwinSystems::Apply`]).
    Receive,
    /// Applied batches go to history, and their acknowledgements back once
    /// durable (after [`TwinSystems::Apply`]).
    Acknowledge,
}

type Reply = oneshot::Sender<Result<BatchAck, ProtocolError>>;

/// History as the bridge uses it: the store, each sensor handle's key, and
/// batches waiting for room in the writer's queue.
pub struct Durable {
    history: History,
    keys_by_handle: Vec<SensorKey>,
    waiting: Mutex<VecDeque<Rejected>>,
    /// Unparked when a commit completes (and so made room in the writer).
    wake: std::sync::OnceLock<std::thread::Thread>,
}

impl Durable {
    /// Wraps an open store; `keys_by_handle[h]` is the key of sensor handle `h`.
    pub fn new(history: History, keys_by_handle: Vec<SensorKey>) -> Self {
        Self {
            history,
            keys_by_handle,
            waiting: Mutex::new(VecDeque::new()),
            wake: std::sync::OnceLock::new(),
        }
    }

    /// Unparks `thread` whenever the writer has committed rows queued from
    /// here: a twin held back by a full writer waits for that instead of
    /// polling.
    pub fn wake_on_commit(&self, thread: std::thread::Thread) {
        let _ = self.wake.set(thread);
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, VecDeque<Rejected>> {
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// History key of each sensor handle.
    pub fn keys_by_handle(&self) -> &[SensorKey] {
        &self.keys_by_handle
    }

    /// The writer's counters (its lag among them).
    pub fn writer_stats(&self) -> &std::sync::Arc<polis_history::WriterStats> {
        self.history.writer().stats()
    }

    /// The writer, for maintenance jobs such as retention.
    pub fn writer(&self) -> &polis_history::HistoryWriter {
        self.history.writer()
    }

    /// Moves waiting batches into the writer's queue while it has room;
    /// true when none is left waiting.
    fn retry_waiting(&self) -> bool {
        let mut waiting = self.waiting();
        while let Some((rows, done)) = waiting.pop_front() {
            match self.history.writer().try_append(rows, done) {
                Ok(()) | Err(None) => {}
                Err(Some(rejected)) => {
                    waiting.push_front(rejected);
                    return false;
                }
            }
        }
        true
    }

    /// Queues rows (after anything already waiting).
    fn append(&self, rows: Vec<Row>, done: Box<dyn FnOnce(bool) + Send>) {
        let done: Box<dyn FnOnce(bool) + Send> = match self.wake.get().cloned() {
            Some(thread) => Box::new(move |committed| {
                done(committed);
                thread.unpark();
            }),
            None => done,
        };
        if !self.retry_waiting() {
            self.waiting().push_back((rows, done));
            return;
        }
        if let Err(Some(rejected)) = self.history.writer().try_append(rows, done) {
            self.waiting().push_back(rejected);
        }
    }

    /// Hands every waiting batch to the writer, blocking as needed, then
    /// commits everything and stops the writer (clean shutdown).
    pub fn flush_and_close(self) {
        loop {
            if self.retry_waiting() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        if let Err(err) = self.history.close() {
            error!("history did not close cleanly: {err}");
        }
    }
}

/// The running network edge, history, and the batches awaiting
/// acknowledgement.
#[derive(Resource)]
pub struct NetLink {
    server: NetServer,
    durable: Option<Durable>,
    pending_acks: HashMap<u64, Reply>,
    next_ticket: u64,
    max_events_per_tick: usize,
}

impl NetLink {
    /// Wraps a started network edge and, if enabled, history.
    pub fn new(server: NetServer, durable: Option<Durable>, max_events_per_tick: usize) -> Self {
        Self {
            server,
            durable,
            pending_acks: HashMap::new(),
            next_ticket: 0,
            max_events_per_tick,
        }
    }

    /// The network edge.
    pub fn server(&self) -> &NetServer {
        &self.server
    }

    /// Splits the link for shutdown.
    pub fn into_parts(self) -> (NetServer, Option<Durable>) {
        (self.server, self.durable)
    }

    /// True while history cannot take more rows: the twin takes no new
    /// events until the writer has committed.
    pub fn held_back(&self) -> bool {
        self.durable
            .as_ref()
            .is_some_and(|durable| !durable.waiting().is_empty())
    }

    /// Unparks `thread` whenever history has committed rows queued from
    /// this link: a twin held back by a full writer waits for that instead
    /// of polling.
    pub fn wake_on_commit(&self, thread: std::thread::Thread) {
        if let Some(durable) = &self.durable {
            durable.wake_on_commit(thread);
        }
    }

    /// True when nothing is left to apply or record.
    pub fn is_drained(&self) -> bool {
        self.server.pending_events() == 0
            && self
                .durable
                .as_ref()
                .is_none_or(|durable| durable.waiting().is_empty())
    }
}

/// Connects a [`NetLink`] resource (inserted by the caller) to the twin:
/// network events in before [`TwinSystems::Apply`], history and
/// acknowledgements after it.
pub struct NetBridgePlugin;

impl Plugin for NetBridgePlugin {
    fn build(&self, app: &mut App) {
        app.configure_sets(Update, NetSystems::Receive.before(TwinSystems::Apply))
            .configure_sets(
                Update,
                NetSystems::Acknowledge
                    .after(TwinSystems::Apply)
                    .before(TwinSystems::Interest),
            )
            .add_systems(Update, receive_net_events.in_set(NetSystems::Receive))
            .add_systems(
                Update,
                record_and_acknowledge.in_set(NetSystems::Acknowledge),
            );
    }
}

fn receive_net_events(
    mut link: ResMut<NetLink>,
    mut batches: MessageWriter<IncomingBatch>,
    mut connected: MessageWriter<ViewerConnected>,
    mut subscribed: MessageWriter<ViewerSubscribed>,
    mut disconnected: MessageWriter<ViewerDisconnected>,
    mut picks: MessageWriter<PickRequested>,
) {
    let link = &mut *link;
    // While history cannot keep up, take nothing new: the channel fills and
    // QUIC flow control slows the gateways down.
    if let Some(durable) = &link.durable
        && !durable.retry_waiting()
    {
        return;
    }
    for _ in 0..link.max_events_per_tick {
        let Some(event) = link.server.try_recv() else {
            break;
        };
        match event {
            NetEvent::Batch {
                batch,
                reply,
                scope,
                ..
            } => {
                let ticket = link.next_ticket;
                link.next_ticket += 1;
                link.pending_acks.insert(ticket, reply);
                batches.write(IncomingBatch {
                    ticket: BatchTicket(ticket),
                    scope,
                    batch,
                });
            }
            NetEvent::ViewerConnected {
                viewer,
                access,
                name,
                own_sensors,
                mailbox,
            } => {
                connected.write(ViewerConnected {
                    viewer: ViewerId(viewer),
                    access,
                    name,
                    own_sensors: own_sensors.to_vec(),
                    mailbox,
                });
            }
            NetEvent::ViewerSubscribed { viewer, subscribe } => {
                subscribed.write(ViewerSubscribed {
                    viewer: ViewerId(viewer),
                    subscribe,
                });
            }
            NetEvent::Pick {
                viewer,
                request,
                reply,
            } => {
                picks.write(PickRequested {
                    viewer: ViewerId(viewer),
                    request,
                    responder: PickResponder::new(move |answer| {
                        // The viewer may have gone meanwhile; nothing to do then.
                        let _ = reply.send(answer);
                    }),
                });
            }
            NetEvent::ViewerDisconnected { viewer } => {
                disconnected.write(ViewerDisconnected {
                    viewer: ViewerId(viewer),
                });
            }
        }
    }
}

fn record_and_acknowledge(mut link: ResMut<NetLink>, mut applied: MessageReader<BatchApplied>) {
    let link = &mut *link;
    for BatchApplied {
        ticket,
        ack,
        recorded,
    } in applied.read()
    {
        let Some(reply) = link.pending_acks.remove(&ticket.0) else {
            continue;
        };
        let Some(durable) = &link.durable else {
            // The gateway may have gone; its ack then has no one to go to.
            let _ = reply.send(Ok(ack.clone()));
            continue;
        };
        let rows: Vec<Row> = recorded
            .iter()
            .filter_map(|r| {
                Some(Row {
                    sensor: *durable.keys_by_handle.get(r.sensor as usize)?,
                    device_time_ms: r.device_time_ms,
                    value: r.value,
                    quality: r.quality.map(Quality::code),
                })
            })
            .collect();
        let ack = ack.clone();
        durable.append(
            rows,
            Box::new(move |committed| {
                let answer = if committed {
                    Ok(ack)
                } else {
                    Err(ProtocolError {
                        code: ErrorCode::Unavailable,
                        detail: format!("batch {} could not be stored; resend it later", ack.seq),
                    })
                };
                let _ = reply.send(answer);
            }),
        );
    }
}
