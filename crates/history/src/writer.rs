//! The writer thread: batches of rows in, one transaction per wake-up.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rusqlite::{Connection, params};
use tracing::error;

use crate::store::{HistoryError, HistoryOptions, SensorKey, sqlite_error};

/// Rows bound to one multi-row INSERT statement (4 parameters each, within
/// SQLite's default limit of 32,766 parameters).
const ROWS_PER_STATEMENT: usize = 256;

static MULTI_INSERT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let rows = vec!["(?, ?, ?, ?)"; ROWS_PER_STATEMENT].join(", ");
    format!("INSERT OR IGNORE INTO readings (sensor, device_time_ms, value, quality) VALUES {rows}")
});

/// One reading to record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row {
    /// The sensor's key in the store.
    pub sensor: SensorKey,
    /// Device time, ms since the Unix epoch, UTC.
    pub device_time_ms: i64,
    /// The value in the sensor's unit.
    pub value: f64,
    /// Quality flag as `polis_protocol::Quality::code` writes it (0 good,
    /// 1 uncertain, 2 bad), if any.
    pub quality: Option<u8>,
}

/// Called once a job is committed (`true`) or has failed (`false`).
type Done = Box<dyn FnOnce(bool) + Send>;
/// Called with the number of rows deleted, or `None` on failure.
type Deleted = Box<dyn FnOnce(Option<u64>) + Send>;

enum Job {
    Append { rows: Vec<Row>, done: Done },
    DeletePersonalBefore { before_ms: i64, done: Deleted },
    Shutdown,
}

/// Counters of the writer, readable from any thread.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Rows queued and not yet committed (the writer's lag).
    pub queued_rows: AtomicU64,
    /// Rows committed since start (duplicates of stored rows included).
    pub written_rows: AtomicU64,
    /// Transactions committed since start.
    pub commits: AtomicU64,
    /// Duration of the last commit, microseconds.
    pub last_commit_us: AtomicU64,
    /// Transactions that failed (their batches were not acknowledged).
    pub failed_commits: AtomicU64,
}

/// Handle to the writer thread; cheap to clone.
#[derive(Clone)]
pub struct HistoryWriter {
    jobs: SyncSender<Job>,
    stats: Arc<WriterStats>,
    thread: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl std::fmt::Debug for HistoryWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryWriter").finish_non_exhaustive()
    }
}

/// Rows given back when the queue is full, so the caller can retry later.
pub type Rejected = (Vec<Row>, Box<dyn FnOnce(bool) + Send>);

impl HistoryWriter {
    pub(crate) fn start(
        path: PathBuf,
        conn: Connection,
        options: &HistoryOptions,
    ) -> Result<HistoryWriter, HistoryError> {
        let (jobs, queue) = sync_channel(options.queue_capacity.max(1));
        let stats = Arc::new(WriterStats::default());
        let thread_stats = Arc::clone(&stats);
        let max_rows = options.max_rows_per_commit.max(1);
        let thread = std::thread::Builder::new()
            .name("polis-history".into())
            .spawn(move || run(path, conn, &queue, &thread_stats, max_rows))
            .map_err(|err| HistoryError::Sqlite {
                path: PathBuf::new(),
                source: rusqlite::Error::ToSqlConversionFailure(Box::new(err)),
            })?;
        Ok(HistoryWriter {
            jobs,
            stats,
            thread: Arc::new(Mutex::new(Some(thread))),
        })
    }

    /// Queues rows without blocking; `done(true)` runs on the writer thread
    /// once they are committed. When the queue is full the rows and the
    /// completion come back in `Err(Some(…))`; `Err(None)` means the writer
    /// has stopped (the completion has then been called with `false`).
    pub fn try_append(
        &self,
        rows: Vec<Row>,
        done: impl FnOnce(bool) + Send + 'static,
    ) -> Result<(), Option<Rejected>> {
        let count = rows.len() as u64;
        self.stats.queued_rows.fetch_add(count, Ordering::Relaxed);
        match self.jobs.try_send(Job::Append {
            rows,
            done: Box::new(done),
        }) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(Job::Append { rows, done })) => {
                self.stats.queued_rows.fetch_sub(count, Ordering::Relaxed);
                Err(Some((rows, done)))
            }
            Err(TrySendError::Disconnected(Job::Append { done, .. })) => {
                self.stats.queued_rows.fetch_sub(count, Ordering::Relaxed);
                done(false);
                Err(None)
            }
            Err(_) => Err(None),
        }
    }

    /// Queues rows, waiting while the queue is full; returns whether they
    /// were committed.
    pub fn append_blocking(&self, rows: Vec<Row>) -> Result<(), HistoryError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let count = rows.len() as u64;
        self.stats.queued_rows.fetch_add(count, Ordering::Relaxed);
        let job = Job::Append {
            rows,
            done: Box::new(move |ok| {
                let _ = tx.send(ok);
            }),
        };
        if self.jobs.send(job).is_err() {
            self.stats.queued_rows.fetch_sub(count, Ordering::Relaxed);
            return Err(HistoryError::WriterStopped);
        }
        match rx.recv() {
            Ok(true) => Ok(()),
            _ => Err(HistoryError::WriterStopped),
        }
    }

    /// Deletes every reading of a `personal` sensor with a device time before
    /// `before_ms`; returns how many were deleted.
    pub fn delete_personal_before(&self, before_ms: i64) -> Result<u64, HistoryError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let job = Job::DeletePersonalBefore {
            before_ms,
            done: Box::new(move |deleted| {
                let _ = tx.send(deleted);
            }),
        };
        self.jobs
            .send(job)
            .map_err(|_| HistoryError::WriterStopped)?;
        rx.recv().ok().flatten().ok_or(HistoryError::WriterStopped)
    }

    /// Live counters.
    pub fn stats(&self) -> &Arc<WriterStats> {
        &self.stats
    }

    /// Commits everything queued, then stops the thread.
    pub fn shutdown(&self) -> Result<(), HistoryError> {
        let _ = self.jobs.send(Job::Shutdown);
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            thread.join().map_err(|_| HistoryError::WriterStopped)?;
        }
        Ok(())
    }
}

fn run(
    path: PathBuf,
    mut conn: Connection,
    queue: &Receiver<Job>,
    stats: &WriterStats,
    max_rows: usize,
) {
    let err = sqlite_error(&path);
    while let Ok(first) = queue.recv() {
        let mut jobs = vec![first];
        let mut rows = job_rows(&jobs[0]);
        while rows < max_rows {
            match queue.try_recv() {
                Ok(job) => {
                    rows += job_rows(&job);
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let mut deleted = Vec::new();
        let result = (|| -> Result<(), HistoryError> {
            let tx = conn.transaction().map_err(&err)?;
            {
                let mut insert = tx
                    .prepare_cached(
                        "INSERT OR IGNORE INTO readings (sensor, device_time_ms, value, quality)
                         VALUES (?1, ?2, ?3, ?4)",
                    )
                    .map_err(&err)?;
                // Many rows per statement: most of an INSERT's cost is the
                // statement, not the row.
                let mut insert_many = tx.prepare_cached(&MULTI_INSERT).map_err(&err)?;
                for job in &jobs {
                    match job {
                        Job::Append { rows, .. } => {
                            let mut chunks = rows.chunks_exact(ROWS_PER_STATEMENT);
                            for chunk in &mut chunks {
                                let values = chunk.iter().flat_map(|row| {
                                    [
                                        rusqlite::types::Value::Integer(row.sensor),
                                        rusqlite::types::Value::Integer(row.device_time_ms),
                                        rusqlite::types::Value::Real(row.value),
                                        row.quality.map_or(rusqlite::types::Value::Null, |q| {
                                            rusqlite::types::Value::Integer(i64::from(q))
                                        }),
                                    ]
                                });
                                insert_many
                                    .execute(rusqlite::params_from_iter(values))
                                    .map_err(&err)?;
                            }
                            for row in chunks.remainder() {
                                insert
                                    .execute(params![
                                        row.sensor,
                                        row.device_time_ms,
                                        row.value,
                                        row.quality
                                    ])
                                    .map_err(&err)?;
                            }
                        }
                        Job::DeletePersonalBefore { before_ms, .. } => {
                            let count = tx
                                .execute(
                                    "DELETE FROM readings WHERE device_time_ms < ?1
                                     AND sensor IN (SELECT key FROM sensors WHERE personal = 1)",
                                    params![before_ms],
                                )
                                .map_err(&err)?;
                            deleted.push(count as u64);
                        }
                        Job::Shutdown => {}
                    }
                }
            }
            tx.commit().map_err(&err)
        })();
        let committed = result.is_ok();
        if let Err(failure) = result {
            stats.failed_commits.fetch_add(1, Ordering::Relaxed);
            error!(
                "history commit of {rows} rows failed; their batches are not acknowledged: {failure}"
            );
        } else {
            stats.commits.fetch_add(1, Ordering::Relaxed);
            stats.written_rows.fetch_add(rows as u64, Ordering::Relaxed);
            stats
                .last_commit_us
                .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        }
        stats.queued_rows.fetch_sub(rows as u64, Ordering::Relaxed);
        let mut deleted = deleted.into_iter();
        let mut stop = false;
        for job in jobs {
            match job {
                Job::Append { done, .. } => done(committed),
                Job::DeletePersonalBefore { done, .. } => {
                    done(if committed { deleted.next() } else { None });
                }
                Job::Shutdown => stop = true,
            }
        }
        if stop {
            break;
        }
    }
    // Fold the WAL back into the database file so analysts see one file.
    let _ = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
}

fn job_rows(job: &Job) -> usize {
    match job {
        Job::Append { rows, .. } => rows.len(),
        Job::DeletePersonalBefore { .. } | Job::Shutdown => 0,
    }
}
