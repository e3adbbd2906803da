//! What gateways send and are told: readings with their quality and device
//! time, batches, and the per-reading outcomes of an acknowledgement.

use serde::{Deserialize, Serialize};

/// Data quality a gateway may attach to a reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quality {
    /// Measured and plausible.
    Good,
    /// Measured, but the device flags it as doubtful (e.g. estimated).
    Uncertain,
    /// The device flags it as wrong (e.g. sensor fault).
    Bad,
}

impl Quality {
    /// Every quality, in code order.
    pub const ALL: [Quality; 3] = [Quality::Good, Quality::Uncertain, Quality::Bad];

    /// The quality's one-byte code, as history stores it and the twin's
    /// latest-reading column builds on: `good` 0, `uncertain` 1, `bad` 2.
    pub const fn code(self) -> u8 {
        match self {
            Quality::Good => 0,
            Quality::Uncertain => 1,
            Quality::Bad => 2,
        }
    }

    /// The quality of a [`Quality::code`]; `None` for any other byte.
    pub const fn from_code(code: u8) -> Option<Quality> {
        match code {
            0 => Some(Quality::Good),
            1 => Some(Quality::Uncertain),
            2 => Some(Quality::Bad),
            _ => None,
        }
    }
}

/// Earliest device time a reading may carry, ms since the Unix epoch:
/// 0000-01-01T00:00:00Z, the first instant RFC 3339 can write.
pub const MIN_DEVICE_TIME_MS: i64 = -62_167_219_200_000;
/// Latest device time a reading may carry, ms since the Unix epoch:
/// 9999-12-31T23:59:59.999Z, the last millisecond RFC 3339 can write.
pub const MAX_DEVICE_TIME_MS: i64 = 253_402_300_799_999;

/// One sensor reading as a gateway sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    /// The sensor's stable string id from the scene.
    pub sensor: String,
    /// Device timestamp: milliseconds since the Unix epoch, UTC.
    pub device_time_ms: i64,
    /// The measured value, in the sensor's unit.
    pub value: f64,
    /// Optional quality flag.
    pub quality: Option<Quality>,
}

/// A batch of readings, acknowledged as a whole by its sequence number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadingBatch {
    /// Gateway-chosen sequence number, echoed in the [`BatchAck`].
    pub seq: u64,
    /// The readings, at most [`crate::MAX_READINGS_PER_BATCH`].
    pub readings: Vec<Reading>,
}

/// Why a single reading was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ReadingOutcome {
    /// Counted, but older than the sensor's latest reading, which stays.
    Stale,
    /// Identical to the reading already held (same time and value): idempotent.
    Duplicate,
    /// Refused: no sensor with this id in the scene.
    UnknownSensor,
    /// Refused: the value is NaN or infinite.
    NonFiniteValue,
    /// Refused: same device time as the reading held, but a different value.
    ConflictingValue,
    /// Refused: the gateway's token does not cover this sensor.
    OutOfScope,
    /// Refused: the device time lies further in the future than the
    /// server's clock and its allowed skew (`limits.max_clock_skew_secs`):
    /// kept, it would make every real reading after it stale.
    FutureTime,
    /// Refused: the device time is outside what RFC 3339 can write (years
    /// 0000 to 9999, [`MIN_DEVICE_TIME_MS`]..=[`MAX_DEVICE_TIME_MS`]).
    TimeOutOfRange,
}

impl ReadingOutcome {
    /// True for outcomes that refuse the reading (as opposed to stale or
    /// duplicate readings, which are valid but change nothing).
    pub fn is_refusal(self) -> bool {
        matches!(
            self,
            ReadingOutcome::UnknownSensor
                | ReadingOutcome::NonFiniteValue
                | ReadingOutcome::ConflictingValue
                | ReadingOutcome::OutOfScope
                | ReadingOutcome::FutureTime
                | ReadingOutcome::TimeOutOfRange
        )
    }

    /// A short human-readable reason.
    pub fn describe(self) -> &'static str {
        match self {
            ReadingOutcome::Stale => "stale: older than the sensor's latest reading",
            ReadingOutcome::Duplicate => "duplicate of the reading already held",
            ReadingOutcome::UnknownSensor => "unknown sensor id",
            ReadingOutcome::NonFiniteValue => "value is not a finite number",
            ReadingOutcome::ConflictingValue => "conflicting value for a device time already held",
            ReadingOutcome::OutOfScope => "outside the sensors this gateway token may write",
            ReadingOutcome::FutureTime => {
                "device time is further ahead of the server's clock than the allowed skew"
            }
            ReadingOutcome::TimeOutOfRange => {
                "device time is outside the years 0000 to 9999 (RFC 3339)"
            }
        }
    }
}

/// The outcome of one reading that was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotAccepted {
    /// Index of the reading within its batch.
    pub index: u32,
    /// What happened to it.
    pub outcome: ReadingOutcome,
}

/// Acknowledgement of a batch, sent once every reading has been applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchAck {
    /// The batch's sequence number.
    pub seq: u64,
    /// How many readings became their sensor's latest value.
    pub accepted: u32,
    /// Every reading that was not accepted, in batch order.
    pub not_accepted: Vec<NotAccepted>,
}

impl BatchAck {
    /// Each reading that was not accepted, as (index in its batch, outcome),
    /// in batch order.
    pub fn outcomes(&self) -> Vec<(u32, ReadingOutcome)> {
        self.not_accepted
            .iter()
            .map(|not| (not.index, not.outcome))
            .collect()
    }
}
