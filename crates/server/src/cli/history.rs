//! `polis history`: query the recorded readings of a sensor.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use polis_history::{Aggregate, HistoryReader};

use super::{format_time_ms, parse_time_ms};

/// How buckets are combined.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Agg {
    Mean,
    Min,
    Max,
    Last,
}

/// Arguments of `polis history`.
#[derive(Debug, Args)]
pub(crate) struct HistoryArgs {
    /// The server's data directory.
    #[arg(long, default_value = crate::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// History file inside the data directory.
    #[arg(long, default_value = "history.sqlite")]
    file: PathBuf,
    /// Sensor id.
    #[arg(long)]
    sensor: String,
    /// From this device time, RFC 3339 (inclusive; default: the beginning).
    #[arg(long)]
    from: Option<String>,
    /// To this device time, RFC 3339 (exclusive; default: no end).
    #[arg(long)]
    to: Option<String>,
    /// Aggregate into buckets of this width, e.g. 30s, 15m, 1h, 1d.
    #[arg(long)]
    every: Option<String>,
    /// How to combine the readings of a bucket.
    #[arg(long, value_enum, default_value_t = Agg::Mean, requires = "every")]
    agg: Agg,
    /// CSV output (`time,value` or `start,value,count`).
    #[arg(long, conflicts_with = "json")]
    csv: bool,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

/// `15m` → 900 000 ms.
fn parse_every(text: &str) -> anyhow::Result<i64> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: i64 = number
        .parse()
        .with_context(|| format!("--every `{text}`: expected a number and a unit (s, m, h, d)"))?;
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => bail!("--every `{text}`: the unit must be s, m, h or d"),
    };
    if number <= 0 {
        bail!("--every `{text}` must be positive");
    }
    number
        .checked_mul(unit_ms)
        .with_context(|| format!("--every `{text}` is too long"))
}

#[derive(serde::Serialize)]
struct ValueLine<'a> {
    sensor: &'a str,
    time: String,
    value: f64,
}

#[derive(serde::Serialize)]
struct BucketLine<'a> {
    sensor: &'a str,
    start: String,
    value: f64,
    count: u64,
}

pub(crate) fn run(args: HistoryArgs) -> anyhow::Result<ExitCode> {
    let time_or = |flag: &str, text: Option<&str>, default_ms: i64| {
        text.map_or(Ok(default_ms), |text| parse_time_ms(flag, text))
    };
    let from_ms = time_or("--from", args.from.as_deref(), i64::MIN)?;
    let to_ms = time_or("--to", args.to.as_deref(), i64::MAX)?;
    let path = args.data_dir.join(&args.file);
    if !path.exists() {
        bail!(
            "no history at {} (is --data-dir the server's?)",
            path.display()
        );
    }
    let reader = HistoryReader::open(&path)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match args.every.as_deref().map(parse_every).transpose()? {
        None => {
            let readings = reader.readings(&args.sensor, from_ms, to_ms)?;
            if args.csv {
                writeln!(out, "time,value")?;
            }
            for reading in readings {
                let time = format_time_ms(reading.device_time_ms);
                if args.csv {
                    writeln!(out, "{time},{}", reading.value)?;
                } else if args.json {
                    let line = ValueLine {
                        sensor: &args.sensor,
                        time,
                        value: reading.value,
                    };
                    writeln!(out, "{}", serde_json::to_string(&line)?)?;
                } else {
                    writeln!(out, "{time}  {}", reading.value)?;
                }
            }
        }
        Some(every_ms) => {
            let aggregate = match args.agg {
                Agg::Mean => Aggregate::Mean,
                Agg::Min => Aggregate::Min,
                Agg::Max => Aggregate::Max,
                Agg::Last => Aggregate::Last,
            };
            let buckets = reader.aggregate(&args.sensor, from_ms, to_ms, every_ms, aggregate)?;
            if args.csv {
                writeln!(out, "start,value,count")?;
            }
            for bucket in buckets {
                let start = format_time_ms(bucket.start_ms);
                if args.csv {
                    writeln!(out, "{start},{},{}", bucket.value, bucket.count)?;
                } else if args.json {
                    let line = BucketLine {
                        sensor: &args.sensor,
                        start,
                        value: bucket.value,
                        count: bucket.count,
                    };
                    writeln!(out, "{}", serde_json::to_string(&line)?)?;
                } else {
                    writeln!(
                        out,
                        "{start}  {}  ({} readings)",
                        bucket.value, bucket.count
                    )?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
