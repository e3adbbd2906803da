//! `polis push`: a one-shot gateway reading a CSV file.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Args;
use polis_net::{ClientOptions, GatewayClient, GatewayOptions};
use polis_protocol::{MAX_READINGS_PER_BATCH, Reading, ReadingOutcome, Role};

use super::{ServerArgs, client_runtime};

/// Arguments of `polis push`.
#[derive(Debug, Args)]
pub(crate) struct PushArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Readings per batch.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Most batches in flight before waiting for acknowledgements.
    #[arg(long, default_value_t = 8)]
    window: usize,
    /// After losing the server, keep trying to reconnect (and then resend
    /// every unacknowledged batch) for this many seconds.
    #[arg(long, default_value_t = 60.0)]
    reconnect_for: f64,
    /// CSV file with header `sensor,time,value` (and optionally `quality`);
    /// times in RFC 3339.
    file: PathBuf,
}

/// The readings of a CSV file, read as they are needed (one line in
/// memory at a time), each with its line number.
fn open_csv(path: &Path) -> anyhow::Result<polis_import::ReadingsCsv<std::io::BufReader<File>>> {
    let file = File::open(path).with_context(|| format!("{}", path.display()))?;
    Ok(polis_import::readings_csv(
        std::io::BufReader::new(file),
        &path.display().to_string(),
    )?)
}

/// Reads the whole file once without keeping it, so that a broken file is
/// refused with its line number before anything is sent; returns how many
/// readings it holds.
fn check_csv(path: &Path) -> anyhow::Result<u64> {
    let mut count = 0;
    for reading in open_csv(path)? {
        reading?;
        count += 1;
    }
    Ok(count)
}

/// Totals reported by `polis push`.
#[derive(Debug, Default)]
struct Tally {
    accepted: u64,
    stale: u64,
    duplicate: u64,
    refused: u64,
}

pub(crate) fn run(args: PushArgs) -> anyhow::Result<ExitCode> {
    if args.batch == 0 || args.batch > MAX_READINGS_PER_BATCH {
        bail!("--batch must be between 1 and {MAX_READINGS_PER_BATCH}");
    }
    check_csv(&args.file)?;
    let readings = open_csv(&args.file)?;
    let options = args.server.client_options(Role::Gateway);
    let runtime = client_runtime()?;
    anyhow::ensure!(
        args.reconnect_for.is_finite() && args.reconnect_for >= 0.0,
        "--reconnect-for must be a non-negative number of seconds"
    );
    let gateway = GatewayOptions {
        window: args.window.max(1),
        reconnect_for: std::time::Duration::from_secs_f64(args.reconnect_for),
    };
    let tally = runtime.block_on(push(&options, readings, args.batch, gateway))?;
    println!(
        "accepted {}, stale {}, duplicate {}, refused {}",
        tally.accepted, tally.stale, tally.duplicate, tally.refused
    );
    Ok(if tally.refused > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// How many refusals are listed one by one before summarising.
const REFUSALS_LISTED: u64 = 20;

/// Where each batch's readings came from, for reporting refusals.
type Origins = HashMap<u64, (Vec<u64>, Vec<String>)>;

fn tally_acks(tally: &mut Tally, origins: &mut Origins, acks: Vec<polis_protocol::BatchAck>) {
    for ack in acks {
        let (lines, sensors) = origins.remove(&ack.seq).unwrap_or_default();
        tally.accepted += u64::from(ack.accepted);
        for not in &ack.not_accepted {
            match not.outcome {
                ReadingOutcome::Stale => tally.stale += 1,
                ReadingOutcome::Duplicate => tally.duplicate += 1,
                outcome => {
                    tally.refused += 1;
                    if tally.refused <= REFUSALS_LISTED {
                        let index = not.index as usize;
                        eprintln!(
                            "refused: line {}: sensor `{}`: {}",
                            lines.get(index).copied().unwrap_or(0),
                            sensors.get(index).map_or("?", String::as_str),
                            outcome.describe()
                        );
                    }
                }
            }
        }
    }
}

async fn push(
    options: &ClientOptions,
    mut readings: impl Iterator<Item = Result<(u64, Reading), polis_import::ReadingsCsvError>>,
    batch_size: usize,
    gateway: GatewayOptions,
) -> anyhow::Result<Tally> {
    let mut client = GatewayClient::connect(options.clone(), gateway)
        .await
        .with_context(|| format!("cannot push to {}", options.server))?;
    let mut tally = Tally::default();
    let mut origins = Origins::new();
    loop {
        // The file was checked whole before connecting; it may still change
        // meanwhile, and then the error names its line.
        let chunk = readings
            .by_ref()
            .take(batch_size)
            .collect::<Result<Vec<_>, _>>()?;
        if chunk.is_empty() {
            break;
        }
        let lines = chunk.iter().map(|(line, _)| *line).collect();
        let sensors = chunk.iter().map(|(_, r)| r.sensor.clone()).collect();
        let batch = chunk.into_iter().map(|(_, r)| r).collect();
        let (seq, acks) = client.push(batch).await?;
        origins.insert(seq, (lines, sensors));
        tally_acks(&mut tally, &mut origins, acks);
    }
    let acks = client.flush().await?;
    tally_acks(&mut tally, &mut origins, acks);
    if tally.refused > REFUSALS_LISTED {
        eprintln!("… and {} more refused", tally.refused - REFUSALS_LISTED);
    }
    if client.reconnects() > 0 {
        eprintln!(
            "reconnected {} time(s); resent batches were stored once (repeats count as duplicates)",
            client.reconnects()
        );
    }
    client.close().await;
    Ok(tally)
}
