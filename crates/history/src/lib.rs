//! Durable history of sensor readings in SQLite: a dedicated writer commits in large batches; queries, aggregates, time-travel reads and retention.
//!
//! The store is one SQLite file (WAL mode) that analysts can open with their
//! own tools:
//!
//! ```sql
//! sensors(key INTEGER PRIMARY KEY, id TEXT UNIQUE, personal INTEGER)
//! readings(sensor INTEGER, device_time_ms INTEGER, value REAL, quality INTEGER,
//!          PRIMARY KEY (sensor, device_time_ms)) WITHOUT ROWID
//! ```
//!
//! A reading is identified by its sensor and device time, so writing the same
//! reading twice (a gateway resending after a reconnect) stores it once.
//!
//! All writes go through one [`HistoryWriter`] thread (`polis-history`) fed by
//! a bounded queue: it takes every job waiting, commits them in one
//! transaction, and only then calls each job's completion — which is when the
//! server acknowledges a batch. Reads use their own connections
//! ([`HistoryReader`]) and never wait for the writer.

mod erase;
mod reader;
mod store;
mod writer;

pub use erase::erase_readings;
pub use reader::{Aggregate, Bucket, HistoryReader, RecordedValue};
pub use store::{History, HistoryError, HistoryOptions, SensorKey, Synchronous};
pub use writer::{HistoryWriter, Rejected, Row, WriterStats};
