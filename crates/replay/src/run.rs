//! The gateway loop: sample every feed once per interval of wall time and
//! push the readings in pipelined batches.

use std::collections::HashSet;
use std::time::Duration;

use polis_net::{ClientError, ClientOptions, GatewayClient, GatewayOptions};
use polis_protocol::{BatchAck, MAX_READINGS_PER_BATCH, Reading, ReadingOutcome, Role};

use crate::calendar::{Rounds, sim_time_ms};
use crate::data::FeedData;
use crate::error::ReplayError;
use crate::plan::FeedPlan;

/// Wall time between two rounds by default.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// Readings per batch by default.
pub const DEFAULT_BATCH_SIZE: usize = 5_000;
/// Batches in flight (sent, not yet acknowledged) by default.
pub const DEFAULT_WINDOW: usize = 8;
/// How long to wait for an acknowledgement by default before giving the
/// connection up as lost.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(30);

/// How fast, from when and for how long to replay.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayOptions {
    /// Simulated seconds per wall-clock second (1 = real time, 60 = an hour
    /// a minute). Finite and positive.
    pub speed: f64,
    /// Simulated time at the start, ms since the Unix epoch, UTC.
    pub start_ms: i64,
    /// Wall time between rounds; not zero.
    pub interval: Duration,
    /// Wall time to run for; `None` runs until the future is dropped or the
    /// connection is lost.
    pub duration: Option<Duration>,
    /// Readings per batch, `1..=MAX_READINGS_PER_BATCH`; lowered to the
    /// server's limit if that is smaller.
    pub batch_size: usize,
    /// Most batches in flight before waiting for acknowledgements; at least 1.
    pub window: usize,
    /// Longest wait for the next acknowledgement; a server that stays silent
    /// longer (while keeping the connection alive) ends the replay with
    /// [`ReplayError::AckTimeout`]. Not zero.
    pub ack_timeout: Duration,
    /// After losing the server, how long to keep trying to reconnect (then
    /// every unacknowledged batch is resent).
    pub reconnect_for: Duration,
}

impl ReplayOptions {
    /// Real-time replay from `start_ms` with the default interval, batch
    /// size and window, without end.
    pub fn new(start_ms: i64) -> ReplayOptions {
        ReplayOptions {
            speed: 1.0,
            start_ms,
            interval: DEFAULT_INTERVAL,
            duration: None,
            batch_size: DEFAULT_BATCH_SIZE,
            window: DEFAULT_WINDOW,
            ack_timeout: DEFAULT_ACK_TIMEOUT,
            reconnect_for: Duration::from_secs(60),
        }
    }

    /// Checks the options; the message names the bad one.
    pub fn validate(&self) -> Result<(), ReplayError> {
        let problem = if !(self.speed.is_finite() && self.speed > 0.0) {
            format!("speed must be a positive number, is {}", self.speed)
        } else if self.interval.is_zero() {
            "interval must not be zero".to_owned()
        } else if !(1..=MAX_READINGS_PER_BATCH).contains(&self.batch_size) {
            format!(
                "batch size must be between 1 and {MAX_READINGS_PER_BATCH}, is {}",
                self.batch_size
            )
        } else if self.window == 0 {
            "window must be at least 1".to_owned()
        } else if self.ack_timeout.is_zero() {
            "acknowledgement timeout must not be zero".to_owned()
        } else {
            return Ok(());
        };
        Err(ReplayError::Options(problem))
    }
}

/// Running totals of a replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReplayStats {
    /// Rounds completed (every fed sensor sampled and acknowledged once).
    pub rounds: u64,
    /// Readings sent.
    pub sent: u64,
    /// Readings that became their sensor's latest value.
    pub accepted: u64,
    /// Readings older than the sensor's latest.
    pub stale: u64,
    /// Readings identical to the one held.
    pub duplicate: u64,
    /// Readings refused (unknown sensor, non-finite value, conflict).
    pub refused: u64,
    /// Simulated time of the last completed round, ms since the Unix epoch
    /// (the start time before the first round).
    pub sim_time_ms: i64,
}

impl ReplayStats {
    /// Adds one acknowledgement to the totals; returns the refused
    /// readings' indices in the batch with their outcomes.
    pub(crate) fn count_ack(&mut self, ack: &BatchAck) -> Vec<(usize, ReadingOutcome)> {
        self.accepted += u64::from(ack.accepted);
        let mut refusals = Vec::new();
        for not in &ack.not_accepted {
            match not.outcome {
                ReadingOutcome::Stale => self.stale += 1,
                ReadingOutcome::Duplicate => self.duplicate += 1,
                outcome => {
                    self.refused += 1;
                    refusals.push((not.index as usize, outcome));
                }
            }
        }
        refusals
    }
}

/// Logs each kind of refusal once, with the first sensor it hit.
#[derive(Debug, Default)]
struct RefusalLog {
    seen: HashSet<ReadingOutcome>,
}

impl RefusalLog {
    fn note(&mut self, sensor: &str, outcome: ReadingOutcome) {
        if self.seen.insert(outcome) {
            tracing::warn!(
                sensor,
                reason = outcome.describe(),
                "server refused a replayed reading (further refusals of this kind are only counted)"
            );
        }
    }
}

/// Connects as a gateway and replays `plan` until `options.duration` of
/// wall time has passed (forever without one).
///
/// Each round, at every `options.interval` of wall time (the first at
/// once; late rounds are delayed, not bunched), samples every feed at
/// `sim_time = start_ms + wall_elapsed × speed`, sends the readings in
/// batches of `batch_size` with at most `window` unacknowledged, waits for
/// every acknowledgement, then calls `progress` with the running totals.
///
/// Errors: invalid options, a client role other than gateway, any
/// connection failure (a lost connection ends the replay; reconnection
/// comes with durable history), a protocol error from the server, or
/// acknowledgements out of order. Refused readings are only counted, and
/// each kind is logged once with `tracing::warn!`.
pub async fn run_replay(
    client: &ClientOptions,
    plan: &FeedPlan,
    data: &FeedData,
    options: &ReplayOptions,
    progress: &mut dyn FnMut(&ReplayStats),
) -> Result<ReplayStats, ReplayError> {
    options.validate()?;
    if client.role != Role::Gateway {
        return Err(ReplayError::NotGateway(client.role));
    }
    let mut gateway = GatewayClient::connect(
        client.clone(),
        GatewayOptions {
            window: options.window.max(1),
            reconnect_for: options.reconnect_for,
        },
    )
    .await
    .map_err(from_client)?;
    let batch_size = options.batch_size.clamp(1, MAX_READINGS_PER_BATCH);
    let mut rounds = Rounds::new(options.interval, options.duration);
    let mut refusals = RefusalLog::default();
    let mut stats = ReplayStats {
        sim_time_ms: options.start_ms,
        ..ReplayStats::default()
    };
    while rounds.next().await {
        let sim_ms = sim_time_ms(options.start_ms, options.speed, rounds.elapsed());
        let mut readings = plan.readings_at(data, sim_ms);
        // Servers refuse device times ahead of their clock, so a replay
        // faster than real time stamps its values with the wall clock once
        // simulated time has passed it.
        let stamp_ms = sim_ms.min(wall_clock_ms());
        if stamp_ms != sim_ms {
            for reading in &mut readings {
                reading.device_time_ms = stamp_ms;
            }
        }
        push_round(
            &mut gateway,
            &readings,
            batch_size,
            options.ack_timeout,
            &mut stats,
            &mut refusals,
        )
        .await?;
        stats.rounds += 1;
        stats.sim_time_ms = sim_ms;
        progress(&stats);
    }
    gateway.close().await;
    Ok(stats)
}

/// The wall clock, ms since the Unix epoch.
fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn from_client(err: ClientError) -> ReplayError {
    match err {
        ClientError::Server(error) => ReplayError::Server(error),
        other => ReplayError::Client(other),
    }
}

/// Sends `readings` in batches through the gateway client (which resends
/// unacknowledged batches after a reconnect) and returns once every batch
/// of the round is acknowledged.
async fn push_round(
    gateway: &mut GatewayClient,
    readings: &[Reading],
    batch_size: usize,
    ack_timeout: Duration,
    stats: &mut ReplayStats,
    refusals: &mut RefusalLog,
) -> Result<(), ReplayError> {
    let mut offsets = std::collections::HashMap::new();
    let mut account = |acks: Vec<BatchAck>,
                       offsets: &mut std::collections::HashMap<u64, usize>,
                       stats: &mut ReplayStats| {
        for ack in acks {
            let offset = offsets.remove(&ack.seq).unwrap_or(0);
            for (index, outcome) in stats.count_ack(&ack) {
                let sensor = readings
                    .get(offset + index)
                    .map_or("?", |r| r.sensor.as_str());
                refusals.note(sensor, outcome);
            }
        }
    };
    for (chunk_index, chunk) in readings.chunks(batch_size).enumerate() {
        let pushed = tokio::time::timeout(ack_timeout, gateway.push(chunk.to_vec()))
            .await
            .map_err(|_| ReplayError::AckTimeout {
                seq: chunk_index as u64,
                waited: ack_timeout,
            })?;
        let (seq, acks) = pushed.map_err(from_client)?;
        stats.sent += chunk.len() as u64;
        offsets.insert(seq, chunk_index * batch_size);
        account(acks, &mut offsets, stats);
    }
    let acks = tokio::time::timeout(ack_timeout, gateway.flush())
        .await
        .map_err(|_| ReplayError::AckTimeout {
            seq: 0,
            waited: ack_timeout,
        })?
        .map_err(from_client)?;
    account(acks, &mut offsets, stats);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use polis_protocol::NotAccepted;

    #[test]
    fn options_are_validated() {
        let good = ReplayOptions::new(0);
        assert!(good.validate().is_ok());
        let bad = [
            ReplayOptions {
                speed: 0.0,
                ..good.clone()
            },
            ReplayOptions {
                speed: f64::INFINITY,
                ..good.clone()
            },
            ReplayOptions {
                interval: Duration::ZERO,
                ..good.clone()
            },
            ReplayOptions {
                batch_size: 0,
                ..good.clone()
            },
            ReplayOptions {
                batch_size: MAX_READINGS_PER_BATCH + 1,
                ..good.clone()
            },
            ReplayOptions {
                window: 0,
                ..good.clone()
            },
            ReplayOptions {
                ack_timeout: Duration::ZERO,
                ..good.clone()
            },
        ];
        for options in bad {
            assert!(
                matches!(options.validate(), Err(ReplayError::Options(_))),
                "{options:?}"
            );
        }
    }

    #[test]
    fn acks_are_counted_by_outcome() {
        let mut stats = ReplayStats::default();
        let outcomes = [
            ReadingOutcome::Stale,
            ReadingOutcome::Duplicate,
            ReadingOutcome::Duplicate,
            ReadingOutcome::UnknownSensor,
            ReadingOutcome::ConflictingValue,
        ];
        let ack = BatchAck {
            seq: 0,
            accepted: 7,
            not_accepted: outcomes
                .iter()
                .enumerate()
                .map(|(i, outcome)| NotAccepted {
                    index: i as u32 + 7,
                    outcome: *outcome,
                })
                .collect(),
        };
        let refused = stats.count_ack(&ack);
        assert_eq!(
            (stats.accepted, stats.stale, stats.duplicate, stats.refused),
            (7, 1, 2, 2)
        );
        assert_eq!(
            refused,
            vec![
                (10, ReadingOutcome::UnknownSensor),
                (11, ReadingOutcome::ConflictingValue)
            ]
        );
    }
}
