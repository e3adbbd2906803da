//! Opening the store, its schema, and the sensor keys.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, params};

use crate::reader::HistoryReader;
use crate::writer::HistoryWriter;

/// The compact key of a sensor in the store.
pub type SensorKey = i64;

/// Why the history store failed.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// SQLite reported an error.
    #[error("history store {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// The file was written by an incompatible version of Polis.
    #[error("history store {path}: schema version {found}, this Polis reads version {supported}")]
    Schema {
        /// The database file.
        path: PathBuf,
        /// Version found in the file.
        found: i64,
        /// Version this code reads and writes.
        supported: i64,
    },
    /// The writer thread has stopped (after an earlier error or at shutdown).
    #[error("history writer has stopped")]
    WriterStopped,
    /// A sensor id is not registered in the store.
    #[error("unknown sensor `{0}` in history")]
    UnknownSensor(String),
}

/// How hard a commit waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    /// `fsync` the log on every commit: an acknowledged batch survives a
    /// power cut (the default).
    Full,
    /// Survives a crash of the process, not of the machine; faster.
    Normal,
}

/// Settings of the store.
#[derive(Debug, Clone)]
pub struct HistoryOptions {
    /// Most rows committed in one transaction.
    pub max_rows_per_commit: usize,
    /// Capacity of the writer's queue, in jobs (batches).
    pub queue_capacity: usize,
    /// Durability of commits.
    pub synchronous: Synchronous,
    /// Readings with a device time after this (ms since the Unix epoch) are
    /// deleted when the store opens: a reading from the future would stay
    /// every sensor's latest and make real readings stale.
    pub forget_after_ms: Option<i64>,
}

impl Default for HistoryOptions {
    fn default() -> Self {
        Self {
            max_rows_per_commit: 100_000,
            queue_capacity: 1_024,
            synchronous: Synchronous::Full,
            forget_after_ms: None,
        }
    }
}

/// Version of the schema this code writes.
pub(crate) const SCHEMA_VERSION: i64 = 1;

pub(crate) fn sqlite_error(path: &Path) -> impl Fn(rusqlite::Error) -> HistoryError + '_ {
    move |source| HistoryError::Sqlite {
        path: path.to_owned(),
        source,
    }
}

/// An open history store with its writer thread.
pub struct History {
    path: PathBuf,
    keys: HashMap<String, SensorKey>,
    writer: HistoryWriter,
    forgotten_future_rows: u64,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History")
            .field("path", &self.path)
            .field("sensors", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl History {
    /// Opens (creating if needed) the store at `path`, registers `sensors`
    /// (`(id, personal)`; known ids keep their key, the personal flag is
    /// updated) and starts the writer thread.
    pub fn open(
        path: &Path,
        sensors: &[(&str, bool)],
        options: HistoryOptions,
    ) -> Result<History, HistoryError> {
        let err = sqlite_error(path);
        let mut conn = Connection::open(path).map_err(&err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(&err)?;
        let synchronous = match options.synchronous {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", synchronous)
            .map_err(&err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(&err)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS sensors (
                 key INTEGER PRIMARY KEY,
                 id TEXT NOT NULL UNIQUE,
                 personal INTEGER NOT NULL DEFAULT 0
             );
             CREATE TABLE IF NOT EXISTS readings (
                 sensor INTEGER NOT NULL,
                 device_time_ms INTEGER NOT NULL,
                 value REAL NOT NULL,
                 quality INTEGER,
                 PRIMARY KEY (sensor, device_time_ms)
             ) WITHOUT ROWID;",
        )
        .map_err(&err)?;
        let found: Option<String> = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .ok();
        match found.and_then(|v| v.parse::<i64>().ok()) {
            Some(SCHEMA_VERSION) => {}
            Some(found) => {
                return Err(HistoryError::Schema {
                    path: path.to_owned(),
                    found,
                    supported: SCHEMA_VERSION,
                });
            }
            None => {
                conn.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?1)",
                    params![SCHEMA_VERSION.to_string()],
                )
                .map_err(&err)?;
            }
        }
        let mut keys = HashMap::with_capacity(sensors.len());
        {
            let tx = conn.transaction().map_err(&err)?;
            {
                let mut upsert = tx
                    .prepare(
                        "INSERT INTO sensors (id, personal) VALUES (?1, ?2)
                         ON CONFLICT (id) DO UPDATE SET personal = excluded.personal",
                    )
                    .map_err(&err)?;
                for (id, personal) in sensors {
                    upsert.execute(params![id, personal]).map_err(&err)?;
                }
                let mut all = tx.prepare("SELECT key, id FROM sensors").map_err(&err)?;
                let rows = all
                    .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
                    .map_err(&err)?;
                for row in rows {
                    let (key, id) = row.map_err(&err)?;
                    keys.insert(id, key);
                }
            }
            tx.commit().map_err(&err)?;
        }
        let forgotten_future_rows = match options.forget_after_ms {
            Some(after_ms) => conn
                .execute(
                    "DELETE FROM readings WHERE device_time_ms > ?1",
                    params![after_ms],
                )
                .map_err(&err)? as u64,
            None => 0,
        };
        let writer = HistoryWriter::start(path.to_owned(), conn, &options)?;
        Ok(History {
            path: path.to_owned(),
            keys,
            writer,
            forgotten_future_rows,
        })
    }

    /// Readings deleted on opening for lying after
    /// [`HistoryOptions::forget_after_ms`].
    pub fn forgotten_future_rows(&self) -> u64 {
        self.forgotten_future_rows
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The key of a registered sensor.
    pub fn key(&self, id: &str) -> Option<SensorKey> {
        self.keys.get(id).copied()
    }

    /// The writer (cheap to clone).
    pub fn writer(&self) -> &HistoryWriter {
        &self.writer
    }

    /// A new read-only connection.
    pub fn reader(&self) -> Result<HistoryReader, HistoryError> {
        HistoryReader::open(&self.path)
    }

    /// Stops the writer after everything queued is committed.
    pub fn close(self) -> Result<(), HistoryError> {
        self.writer.shutdown()
    }
}

/// Opens an existing store read-only (for `polis history` on a data directory).
pub(crate) fn open_read_only(path: &Path) -> Result<Connection, HistoryError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite_error(path))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(sqlite_error(path))?;
    Ok(conn)
}
