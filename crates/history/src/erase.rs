//! Erasure of a household's recorded readings (a resident's request), from
//! any process: its own connection to the store, which SQLite (WAL, busy
//! timeout) lets run beside a server's writer.

use std::path::Path;

use rusqlite::{Connection, params};

use crate::store::{HistoryError, sqlite_error};

/// Deletes every recorded reading of `sensors` (ids) with a device time
/// before `before_ms` (every one when `None`), in one transaction; returns
/// how many were deleted. Ids the store does not know delete nothing.
pub fn erase_readings(
    path: &Path,
    sensors: &[String],
    before_ms: Option<i64>,
) -> Result<u64, HistoryError> {
    let err = sqlite_error(path);
    let mut conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)
        .map_err(&err)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(&err)?;
    let tx = conn.transaction().map_err(&err)?;
    let mut deleted = 0u64;
    {
        let mut delete = tx
            .prepare(
                "DELETE FROM readings WHERE (?2 IS NULL OR device_time_ms < ?2)
                 AND sensor = (SELECT key FROM sensors WHERE id = ?1)",
            )
            .map_err(&err)?;
        for sensor in sensors {
            let count = delete.execute(params![sensor, before_ms]).map_err(&err)?;
            deleted += count as u64;
        }
    }
    tx.commit().map_err(&err)?;
    Ok(deleted)
}
