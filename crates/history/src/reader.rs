//! Read-only queries: series, aggregates, latest state, state at a time and
//! the changes after it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, params};

use crate::store::{HistoryError, SensorKey, open_read_only, sqlite_error};

/// One recorded reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecordedValue {
    /// Device time, ms since the Unix epoch, UTC.
    pub device_time_ms: i64,
    /// The value.
    pub value: f64,
    /// Quality flag as `polis_protocol::Quality::code` writes it (0 good,
    /// 1 uncertain, 2 bad), if any.
    pub quality: Option<u8>,
}

/// How readings in a time bucket are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    /// Arithmetic mean.
    Mean,
    /// Smallest value.
    Min,
    /// Largest value.
    Max,
    /// The value with the latest device time.
    Last,
}

/// One time bucket of an aggregated series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// Start of the bucket, ms since the Unix epoch (a multiple of its width).
    pub start_ms: i64,
    /// The aggregated value.
    pub value: f64,
    /// Readings in the bucket.
    pub count: u64,
}

/// A read-only connection to the store.
pub struct HistoryReader {
    conn: Connection,
    path: PathBuf,
    keys: HashMap<String, SensorKey>,
}

impl std::fmt::Debug for HistoryReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryReader")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn recorded(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<RecordedValue> {
    Ok(RecordedValue {
        device_time_ms: row.get(first)?,
        value: row.get(first + 1)?,
        quality: row.get(first + 2)?,
    })
}

impl HistoryReader {
    /// Opens the store at `path` read-only.
    pub fn open(path: &Path) -> Result<HistoryReader, HistoryError> {
        let conn = open_read_only(path)?;
        let err = sqlite_error(path);
        let mut keys = HashMap::new();
        {
            let mut statement = conn.prepare("SELECT key, id FROM sensors").map_err(&err)?;
            let rows = statement
                .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
                .map_err(&err)?;
            for row in rows {
                let (key, id) = row.map_err(&err)?;
                keys.insert(id, key);
            }
        }
        Ok(HistoryReader {
            conn,
            path: path.to_owned(),
            keys,
        })
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> HistoryError + '_ {
        sqlite_error(&self.path)
    }

    /// The key of a sensor id.
    pub fn key(&self, id: &str) -> Result<SensorKey, HistoryError> {
        self.keys
            .get(id)
            .copied()
            .ok_or_else(|| HistoryError::UnknownSensor(id.to_owned()))
    }

    /// Every reading of `sensor` with `from_ms <= device time < to_ms`,
    /// sorted by device time.
    pub fn readings(
        &self,
        sensor: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<RecordedValue>, HistoryError> {
        let key = self.key(sensor)?;
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT device_time_ms, value, quality FROM readings
                 WHERE sensor = ?1 AND device_time_ms >= ?2 AND device_time_ms < ?3
                 ORDER BY device_time_ms",
            )
            .map_err(self.err())?;
        let rows = statement
            .query_map(params![key, from_ms, to_ms], |r| recorded(r, 0))
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// Readings of `sensor` in `[from_ms, to_ms)` combined per bucket of
    /// `every_ms` (aligned to multiples of it), sorted; empty buckets are
    /// left out.
    pub fn aggregate(
        &self,
        sensor: &str,
        from_ms: i64,
        to_ms: i64,
        every_ms: i64,
        aggregate: Aggregate,
    ) -> Result<Vec<Bucket>, HistoryError> {
        let key = self.key(sensor)?;
        let every_ms = every_ms.max(1);
        let combine = match aggregate {
            Aggregate::Mean => "AVG(value)",
            Aggregate::Min => "MIN(value)",
            Aggregate::Max => "MAX(value)",
            // SQLite takes bare columns from the row holding the MAX().
            Aggregate::Last => "value",
        };
        let sql = format!(
            "SELECT device_time_ms - (((device_time_ms % ?4) + ?4) % ?4) AS bucket, {combine},
                    COUNT(*), MAX(device_time_ms)
             FROM readings WHERE sensor = ?1 AND device_time_ms >= ?2 AND device_time_ms < ?3
             GROUP BY bucket ORDER BY bucket"
        );
        let mut statement = self.conn.prepare(&sql).map_err(self.err())?;
        let rows = statement
            .query_map(params![key, from_ms, to_ms, every_ms], |r| {
                Ok(Bucket {
                    start_ms: r.get(0)?,
                    value: r.get(1)?,
                    count: r.get::<_, i64>(2)? as u64,
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// The latest reading of every sensor that has one, by device time.
    pub fn latest_all(&self) -> Result<Vec<(String, RecordedValue)>, HistoryError> {
        let mut statement = self
            .conn
            .prepare(
                "SELECT s.id, r.device_time_ms, r.value, r.quality
                 FROM sensors s JOIN readings r ON r.sensor = s.key
                 AND r.device_time_ms =
                     (SELECT MAX(device_time_ms) FROM readings WHERE sensor = s.key)",
            )
            .map_err(self.err())?;
        let rows = statement
            .query_map([], |r| Ok((r.get::<_, String>(0)?, recorded(r, 1)?)))
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// For each of `sensors`, its latest reading with device time `<= at_ms`.
    pub fn state_at(
        &self,
        sensors: &[SensorKey],
        at_ms: i64,
    ) -> Result<Vec<(SensorKey, RecordedValue)>, HistoryError> {
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT device_time_ms, value, quality FROM readings
                 WHERE sensor = ?1 AND device_time_ms <= ?2
                 ORDER BY device_time_ms DESC LIMIT 1",
            )
            .map_err(self.err())?;
        let mut state = Vec::new();
        for &key in sensors {
            let mut rows = statement
                .query_map(params![key, at_ms], |r| recorded(r, 0))
                .map_err(self.err())?;
            if let Some(row) = rows.next() {
                state.push((key, row.map_err(self.err())?));
            }
        }
        Ok(state)
    }

    /// Every reading of `sensors` with `after_ms < device time <= until_ms`,
    /// sorted by device time (then sensor key).
    pub fn changes(
        &self,
        sensors: &[SensorKey],
        after_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<(SensorKey, RecordedValue)>, HistoryError> {
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT device_time_ms, value, quality FROM readings
                 WHERE sensor = ?1 AND device_time_ms > ?2 AND device_time_ms <= ?3
                 ORDER BY device_time_ms",
            )
            .map_err(self.err())?;
        let mut changes = Vec::new();
        for &key in sensors {
            let rows = statement
                .query_map(params![key, after_ms, until_ms], |r| recorded(r, 0))
                .map_err(self.err())?;
            for row in rows {
                changes.push((key, row.map_err(self.err())?));
            }
        }
        changes.sort_by_key(|(key, value)| (value.device_time_ms, *key));
        Ok(changes)
    }

    /// Number of readings stored for `sensor`.
    pub fn count(&self, sensor: &str) -> Result<u64, HistoryError> {
        let key = self.key(sensor)?;
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM readings WHERE sensor = ?1",
                params![key],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(self.err())
    }
}
