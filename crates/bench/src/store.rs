//! The ingest scenario's storage baseline: the history store alone (no
//! network, no twin) writing the rows the gateways push, its writer queue
//! kept full, in a target process pinned to the server core.

use std::time::Instant;

use anyhow::Context as _;
use clap::Args;
use polis_history::{History, HistoryOptions, Row};
use serde::{Deserialize, Serialize};

use crate::procstat::{Pid, ProcessSample};

/// `polis-bench target store`.
#[derive(Debug, Args)]
pub(crate) struct StoreArgs {
    /// Directory for the store's database.
    #[arg(long)]
    dir: std::path::PathBuf,
    /// Sensors registered.
    #[arg(long)]
    sensors: usize,
    /// Rows per append.
    #[arg(long)]
    batch: usize,
    /// Seconds to write for.
    #[arg(long)]
    seconds: f64,
}

impl StoreArgs {
    /// The arguments of `polis-bench target store` for these settings.
    pub(crate) fn command_line(
        dir: &std::path::Path,
        sensors: usize,
        batch: usize,
        seconds: f64,
    ) -> Vec<std::ffi::OsString> {
        vec![
            "store".into(),
            "--dir".into(),
            dir.as_os_str().to_owned(),
            "--sensors".into(),
            sensors.to_string().into(),
            "--batch".into(),
            batch.to_string().into(),
            "--seconds".into(),
            seconds.to_string().into(),
        ]
    }
}

/// What the store alone did.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct StoreFigures {
    /// Rows committed per second.
    pub(crate) rows_per_s: f64,
    /// CPU of the store's process while writing, cores.
    pub(crate) cores: f64,
}

/// Writes for the given time and prints one [`StoreFigures`] line.
pub(crate) fn run(args: &StoreArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.sensors > 0 && args.batch > 0 && args.seconds > 0.0,
        "need --sensors, --batch and --seconds above 0"
    );
    let before = ProcessSample::take(Pid::current());
    let rows_per_s = storage_baseline(&args.dir, args.sensors, args.batch, args.seconds)?;
    let used = before.until(&ProcessSample::take(Pid::current()));
    crate::target::answer(&StoreFigures {
        rows_per_s,
        cores: used.cores,
    })
}

/// Rows per second the history store alone commits, for the same rows.
fn storage_baseline(
    dir: &std::path::Path,
    sensors: usize,
    batch: usize,
    seconds: f64,
) -> anyhow::Result<f64> {
    let ids: Vec<String> = (0..sensors).map(|i| format!("s{i}")).collect();
    let registered: Vec<(&str, bool)> = ids.iter().map(|id| (id.as_str(), false)).collect();
    let history = History::open(
        &dir.join("baseline.sqlite"),
        &registered,
        HistoryOptions::default(),
    )?;
    let keys: Vec<i64> = ids
        .iter()
        .map(|id| history.key(id).context("registered"))
        .collect::<anyhow::Result<_>>()?;
    let started = Instant::now();
    let mut rows_written = 0u64;
    let mut step = 0i64;
    let mut cursor = 0usize;
    // Keep the writer's queue full, as the server does, for a fair comparison.
    let (done_tx, done_rx) = std::sync::mpsc::channel::<bool>();
    let mut in_flight = 0usize;
    while started.elapsed().as_secs_f64() < seconds {
        let mut rows = Vec::with_capacity(batch);
        for _ in 0..batch {
            if cursor == keys.len() {
                cursor = 0;
                step += 1;
            }
            rows.push(Row {
                sensor: keys[cursor],
                device_time_ms: 1_700_000_000_000 + step * 1_000,
                value: step as f64,
                quality: None,
            });
            cursor += 1;
        }
        let tx = done_tx.clone();
        let mut pending = Some((
            rows,
            Box::new(move |ok: bool| {
                let _ = tx.send(ok);
            }) as Box<dyn FnOnce(bool) + Send>,
        ));
        while let Some((rows, done)) = pending.take() {
            match history.writer().try_append(rows, done) {
                Ok(()) => in_flight += 1,
                Err(Some(back)) => {
                    if done_rx.recv().unwrap_or(false) {
                        rows_written += batch as u64;
                    }
                    in_flight -= 1;
                    pending = Some(back);
                }
                Err(None) => anyhow::bail!("history writer stopped"),
            }
        }
    }
    while in_flight > 0 {
        if done_rx.recv().unwrap_or(false) {
            rows_written += batch as u64;
        }
        in_flight -= 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    history.close()?;
    Ok(rows_written as f64 / elapsed)
}
