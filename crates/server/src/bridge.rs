//! Bridges the network thread and the twin: drains the bounded event channel
//! into twin messages each tick and sends acknowledgements back.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use bevy::prelude::*;
use polis_net::{NetEvent, NetServer};
use polis_protocol::BatchAck;
use polis_twin::{
    BatchApplied, BatchTicket, IncomingBatch, IngestCounters, TwinSystems, TwinTick, ViewerBacklog,
    ViewerConnected, ViewerDisconnected, ViewerId, ViewerSubscribed,
};
use tokio::sync::oneshot;

use crate::metrics::ObservedHandle;

/// When the bridge's systems run.
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NetSystems {
    /// Network events become twin messages (before [`TwinSystems::Apply`]).
    Receive,
    /// Acknowledgements of applied batches go back (after [`TwinSystems::Apply`]).
    Acknowledge,
}

/// The running network edge and the batches awaiting acknowledgement.
#[derive(Resource)]
pub struct NetLink {
    server: NetServer,
    pending_acks: HashMap<u64, oneshot::Sender<BatchAck>>,
    next_ticket: u64,
    max_events_per_tick: usize,
}

impl NetLink {
    /// Wraps a started network edge.
    pub fn new(server: NetServer, max_events_per_tick: usize) -> Self {
        Self {
            server,
            pending_acks: HashMap::new(),
            next_ticket: 0,
            max_events_per_tick,
        }
    }

    /// The network edge.
    pub fn server(&self) -> &NetServer {
        &self.server
    }
}

/// Connects a [`NetLink`] resource (inserted by the caller) to the twin.
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
            .add_systems(Update, send_acks.in_set(NetSystems::Acknowledge))
            .add_systems(Last, export_metrics);
    }
}

fn export_metrics(
    observed: Res<ObservedHandle>,
    tick: Res<TwinTick>,
    counters: Res<IngestCounters>,
    backlog: Res<ViewerBacklog>,
    link: Res<NetLink>,
) {
    let m = &observed.0.metrics;
    m.ticks.store(tick.0, Ordering::Relaxed);
    m.readings_received
        .store(counters.received, Ordering::Relaxed);
    m.readings_accepted
        .store(counters.accepted, Ordering::Relaxed);
    m.readings_stale.store(counters.stale, Ordering::Relaxed);
    m.readings_duplicate
        .store(counters.duplicate, Ordering::Relaxed);
    m.readings_refused
        .store(counters.refused, Ordering::Relaxed);
    m.batches.store(counters.batches, Ordering::Relaxed);
    m.viewers.store(backlog.viewers as u64, Ordering::Relaxed);
    m.viewer_backlog_max
        .store(backlog.max_entries as u64, Ordering::Relaxed);
    m.viewer_backlog_peak
        .fetch_max(backlog.max_entries as u64, Ordering::Relaxed);
    m.net_events_pending
        .store(link.server.pending_events() as u64, Ordering::Relaxed);
}

fn receive_net_events(
    mut link: ResMut<NetLink>,
    mut batches: MessageWriter<IncomingBatch>,
    mut connected: MessageWriter<ViewerConnected>,
    mut subscribed: MessageWriter<ViewerSubscribed>,
    mut disconnected: MessageWriter<ViewerDisconnected>,
) {
    let link = &mut *link;
    for _ in 0..link.max_events_per_tick {
        let Some(event) = link.server.try_recv() else {
            break;
        };
        match event {
            NetEvent::Batch { batch, reply, .. } => {
                let ticket = link.next_ticket;
                link.next_ticket += 1;
                link.pending_acks.insert(ticket, reply);
                batches.write(IncomingBatch {
                    ticket: BatchTicket(ticket),
                    batch,
                });
            }
            NetEvent::ViewerConnected { viewer, mailbox } => {
                connected.write(ViewerConnected {
                    viewer: ViewerId(viewer),
                    mailbox,
                });
            }
            NetEvent::ViewerSubscribed { viewer, subscribe } => {
                subscribed.write(ViewerSubscribed {
                    viewer: ViewerId(viewer),
                    subscribe,
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

fn send_acks(mut link: ResMut<NetLink>, mut applied: MessageReader<BatchApplied>) {
    for BatchApplied { ticket, ack } in applied.read() {
        if let Some(reply) = link.pending_acks.remove(&ticket.0) {
            // The gateway may have gone; its ack then has no one to go to.
            let _ = reply.send(ack.clone());
        }
    }
}
