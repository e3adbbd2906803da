//! Applying gateway readings to the sensors' latest state.

use bevy::prelude::*;
use polis_protocol::{
    BatchAck, MAX_DEVICE_TIME_MS, MIN_DEVICE_TIME_MS, NotAccepted, Reading, ReadingOutcome,
};

use crate::city::SensorTable;
use crate::components::{Audience, StoredReading};
use crate::messages::{BatchApplied, IncomingBatch, RecordedReading};
use crate::noise::{PublicNoise, Release};
use crate::privacy::{AggregatesOf, DirtyAggregates, combine};

/// Totals of readings since start, by outcome.
#[derive(Resource, Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IngestCounters {
    /// Every reading received, whatever its outcome.
    pub received: u64,
    /// Readings that became their sensor's latest value.
    pub accepted: u64,
    /// Readings older than the latest one (kept out, still counted).
    pub stale: u64,
    /// Exact repeats of the latest reading.
    pub duplicate: u64,
    /// Readings refused (unknown sensor, non-finite or conflicting value).
    pub refused: u64,
    /// Batches applied.
    pub batches: u64,
}

/// The latest device time a reading may carry this tick: the server's
/// wall clock plus the clock skew it allows, set before each tick. Without
/// it, only the RFC 3339 range bounds device times.
#[derive(Resource, Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceTimeLimit {
    /// Newest device time accepted, ms since the Unix epoch.
    pub newest_ms: i64,
}

/// Handles of sensors whose latest value changed this tick (a value that
/// went away included), in order, from the end of `TwinSystems::Apply`
/// until publishing takes them in `TwinSystems::Publish`.
#[derive(Resource, Debug, Default)]
pub struct ChangedSensors(pub(crate) Vec<u32>);

impl ChangedSensors {
    /// The handles (a handle may appear more than once).
    pub fn handles(&self) -> &[u32] {
        &self.0
    }
}

/// Decides what a reading does to a sensor whose latest reading is `latest`,
/// when device times up to `newest_ms` are accepted: `None` means accepted
/// (it becomes the latest).
pub fn classify_reading(
    latest: Option<&StoredReading>,
    reading: &Reading,
    newest_ms: Option<i64>,
) -> Option<ReadingOutcome> {
    if !reading.value.is_finite() {
        return Some(ReadingOutcome::NonFiniteValue);
    }
    if !(MIN_DEVICE_TIME_MS..=MAX_DEVICE_TIME_MS).contains(&reading.device_time_ms) {
        return Some(ReadingOutcome::TimeOutOfRange);
    }
    if newest_ms.is_some_and(|newest_ms| reading.device_time_ms > newest_ms) {
        return Some(ReadingOutcome::FutureTime);
    }
    let latest = latest?;
    match reading.device_time_ms.cmp(&latest.device_time_ms) {
        std::cmp::Ordering::Greater => None,
        std::cmp::Ordering::Less => Some(ReadingOutcome::Stale),
        std::cmp::Ordering::Equal if reading.value.to_bits() == latest.value.to_bits() => {
            Some(ReadingOutcome::Duplicate)
        }
        std::cmp::Ordering::Equal => Some(ReadingOutcome::ConflictingValue),
    }
}

pub(crate) fn apply_readings(
    mut incoming: MessageReader<IncomingBatch>,
    mut applied: MessageWriter<BatchApplied>,
    mut sensors: ResMut<SensorTable>,
    aggregates_of: Res<AggregatesOf>,
    mut counters: ResMut<IngestCounters>,
    mut changed: ResMut<ChangedSensors>,
    mut dirty: ResMut<DirtyAggregates>,
    limit: Option<Res<DeviceTimeLimit>>,
    mut noise: Option<ResMut<PublicNoise>>,
) {
    let newest_ms = limit.map(|limit| limit.newest_ms);
    for IncomingBatch {
        ticket,
        scope,
        batch,
    } in incoming.read()
    {
        let mut accepted = 0u32;
        let mut not_accepted = Vec::new();
        let mut recorded = Vec::with_capacity(batch.readings.len());
        for (index, reading) in (0u32..).zip(&batch.readings) {
            counters.received += 1;
            let in_scope = scope.as_ref().is_none_or(|prefixes| {
                prefixes
                    .iter()
                    .any(|p| reading.sensor.starts_with(p.as_str()))
            });
            let handle = sensors.by_id(&reading.sensor);
            let outcome = match handle {
                _ if !in_scope => Some(ReadingOutcome::OutOfScope),
                None => Some(ReadingOutcome::UnknownSensor),
                Some(handle) => {
                    let outcome =
                        classify_reading(sensors.latest(handle).as_ref(), reading, newest_ms);
                    if matches!(outcome, None | Some(ReadingOutcome::Stale)) {
                        recorded.push(RecordedReading {
                            sensor: handle,
                            device_time_ms: reading.device_time_ms,
                            value: reading.value,
                            quality: reading.quality,
                        });
                    }
                    if outcome.is_none() {
                        sensors.set_latest(
                            handle,
                            Some(StoredReading {
                                device_time_ms: reading.device_time_ms,
                                value: reading.value,
                                quality: reading.quality,
                            }),
                        );
                        changed.0.push(handle);
                        dirty.0.extend(aggregates_of.of(handle));
                    }
                    outcome
                }
            };
            match outcome {
                None => {
                    accepted += 1;
                    counters.accepted += 1;
                }
                Some(outcome) => {
                    match outcome {
                        ReadingOutcome::Stale => counters.stale += 1,
                        ReadingOutcome::Duplicate => counters.duplicate += 1,
                        _ => counters.refused += 1,
                    }
                    not_accepted.push(NotAccepted { index, outcome });
                }
            }
        }
        counters.batches += 1;
        applied.write(BatchApplied {
            ticket: *ticket,
            ack: BatchAck {
                seq: batch.seq,
                accepted,
                not_accepted,
            },
            recorded,
        });
    }
    // Once per tick, after every batch: aggregates whose members changed,
    // and at start all of them (restored or not).
    refresh_aggregates(
        &mut dirty.0,
        &mut sensors,
        &mut changed,
        noise.as_deref_mut(),
    );
}

/// Recomputes the aggregates whose members changed; with differential
/// privacy on, public aggregates release noisy values (see `noise`).
fn refresh_aggregates(
    dirty: &mut Vec<u32>,
    sensors: &mut SensorTable,
    changed: &mut ChangedSensors,
    mut noise: Option<&mut PublicNoise>,
) {
    dirty.sort_unstable();
    dirty.dedup();
    for handle in dirty.drain(..) {
        let Some((members, rule)) = sensors.aggregate(handle) else {
            continue;
        };
        let public = sensors.audience(handle) == Some(Audience::PUBLIC);
        let readings = members.iter().map(|&m| sensors.received_latest(m));
        let value = match noise.as_deref_mut().filter(|_| public) {
            None => combine(rule, readings),
            Some(noise) => {
                let id = sensors.id(handle).unwrap_or_default();
                let quantity = sensors.quantity(handle).unwrap_or_default();
                match noise.public_value(handle, id, quantity, rule, readings) {
                    Release::Value(reading) => Some(reading),
                    Release::Hold => continue,
                    Release::Withheld => None,
                }
            }
        };
        if sensors.latest(handle) != value {
            sensors.set_latest(handle, value);
            changed.0.push(handle);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(device_time_ms: i64, value: f64) -> Reading {
        Reading {
            sensor: "s".into(),
            device_time_ms,
            value,
            quality: None,
        }
    }

    fn stored(device_time_ms: i64, value: f64) -> StoredReading {
        StoredReading {
            device_time_ms,
            value,
            quality: None,
        }
    }

    #[test]
    fn newer_readings_win_by_device_time() {
        assert_eq!(classify_reading(None, &reading(5, 1.0), None), None);
        assert_eq!(
            classify_reading(Some(&stored(5, 1.0)), &reading(6, 0.0), None),
            None
        );
        assert_eq!(
            classify_reading(Some(&stored(5, 1.0)), &reading(4, 9.0), None),
            Some(ReadingOutcome::Stale)
        );
        assert_eq!(
            classify_reading(Some(&stored(5, 1.0)), &reading(5, 1.0), None),
            Some(ReadingOutcome::Duplicate)
        );
        assert_eq!(
            classify_reading(Some(&stored(5, 1.0)), &reading(5, 2.0), None),
            Some(ReadingOutcome::ConflictingValue)
        );
        assert_eq!(
            classify_reading(None, &reading(5, f64::NAN), None),
            Some(ReadingOutcome::NonFiniteValue)
        );
        assert_eq!(
            classify_reading(None, &reading(5, f64::INFINITY), None),
            Some(ReadingOutcome::NonFiniteValue)
        );
    }

    #[test]
    fn device_times_past_the_limit_or_rfc_3339_are_refused() {
        let newest = Some(1_000);
        assert_eq!(classify_reading(None, &reading(1_000, 1.0), newest), None);
        assert_eq!(
            classify_reading(None, &reading(1_001, 1.0), newest),
            Some(ReadingOutcome::FutureTime)
        );
        // Refused before it can be compared with the latest reading.
        assert_eq!(
            classify_reading(Some(&stored(5, 1.0)), &reading(1_001, 1.0), newest),
            Some(ReadingOutcome::FutureTime)
        );
        assert_eq!(
            classify_reading(None, &reading(MAX_DEVICE_TIME_MS + 1, 1.0), None),
            Some(ReadingOutcome::TimeOutOfRange)
        );
        assert_eq!(
            classify_reading(None, &reading(MIN_DEVICE_TIME_MS - 1, 1.0), None),
            Some(ReadingOutcome::TimeOutOfRange)
        );
        assert_eq!(
            classify_reading(None, &reading(MIN_DEVICE_TIME_MS, 1.0), None),
            None
        );
    }
}
