//! Messages between transports and the twin.

use bevy::prelude::*;
use polis_protocol::{BatchAck, ReadingBatch, SharedMailbox, Subscribe};

/// Identifies one incoming batch until it is acknowledged; chosen by the
/// transport, unique among batches in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BatchTicket(pub u64);

/// Identifies a viewer connection, chosen by the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ViewerId(pub u64);

/// A batch of readings from a gateway, to be applied.
#[derive(Message, Debug, Clone)]
pub struct IncomingBatch {
    /// Echoed in [`BatchApplied`].
    pub ticket: BatchTicket,
    /// Sensor-id prefixes the gateway may write; `None` for all.
    pub scope: Option<std::sync::Arc<[String]>>,
    /// The readings.
    pub batch: ReadingBatch,
}

/// A batch has been applied; its acknowledgement may be sent once
/// `recorded` is durable.
#[derive(Message, Debug, Clone)]
pub struct BatchApplied {
    /// The batch's ticket.
    pub ticket: BatchTicket,
    /// The acknowledgement with every reading's outcome.
    pub ack: BatchAck,
    /// The readings of the batch worth recording: accepted and stale ones
    /// (real measurements, whether or not they are the latest); not
    /// duplicates or refused ones.
    pub recorded: Vec<RecordedReading>,
}

/// A reading to record in history, by sensor handle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecordedReading {
    /// The sensor's handle.
    pub sensor: u32,
    /// Device time, ms since the Unix epoch, UTC.
    pub device_time_ms: i64,
    /// The value.
    pub value: f64,
    /// Quality flag, if any.
    pub quality: Option<polis_protocol::Quality>,
}

/// A viewer connected; the twin fills `mailbox` from now on.
#[derive(Message, Debug, Clone)]
pub struct ViewerConnected {
    /// The connection.
    pub viewer: ViewerId,
    /// What its token grants.
    pub access: polis_protocol::Access,
    /// Its token's name.
    pub name: String,
    /// A resident's own sensors (ids): it sees their raw values. Empty for
    /// other roles.
    pub own_sensors: Vec<String>,
    /// Where its outgoing changes coalesce.
    pub mailbox: SharedMailbox,
}

/// A viewer set or replaced its area of interest.
#[derive(Message, Debug, Clone)]
pub struct ViewerSubscribed {
    /// The connection.
    pub viewer: ViewerId,
    /// The subscription, already checked by the transport (valid area).
    pub subscribe: Subscribe,
}

/// A viewer went away.
#[derive(Message, Debug, Clone, Copy)]
pub struct ViewerDisconnected {
    /// The connection.
    pub viewer: ViewerId,
}

/// What a viewer's playback of recorded values should do, in the order the
/// viewer asked for it.
#[derive(Message, Debug, Clone)]
pub enum PlaybackCommand {
    /// Start (or restart) a playback, replacing any the viewer had.
    Start(PlaybackRequested),
    /// End the viewer's playback (it went live again, or left).
    Stop(ViewerId),
}

/// A viewer travels to a past time: play its area's recorded values into
/// `mailbox` from `at_ms` at `speed`.
#[derive(Debug, Clone)]
pub struct PlaybackRequested {
    /// The connection.
    pub viewer: ViewerId,
    /// Where the values go.
    pub mailbox: SharedMailbox,
    /// Handles of the sensors in its area, sorted.
    pub sensors: Vec<u32>,
    /// Device time to start from, ms since the Unix epoch.
    pub at_ms: i64,
    /// Simulated seconds per second.
    pub speed: f32,
}

/// An operator was shown raw personal data (for the audit log).
#[derive(Message, Debug, Clone)]
pub struct PersonalDataShown {
    /// The connection.
    pub viewer: ViewerId,
    /// The token's name.
    pub name: String,
    /// Ids of the personal sensors now in its view.
    pub sensors: Vec<String>,
    /// Device time travelled to, if not live.
    pub at_ms: Option<i64>,
}

/// Households changed their consent (see `privacy`): every aggregate their
/// sensors feed is withdrawn in the tick that reads this, before its
/// readings are applied.
#[derive(Message, Debug)]
pub struct ConsentChanged {
    /// The households' sensor ids.
    pub sensors: Vec<String>,
    /// Told how many aggregates were withdrawn, once they are.
    pub done: Option<std::sync::mpsc::Sender<usize>>,
}
