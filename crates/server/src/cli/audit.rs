//! `polis audit`: read the audit log of raw personal-data access, filtered
//! by sensor, by who, by kind and by time.
//!
//! The log is JSON lines (`<data dir>/audit.log`), appended by the server;
//! this command streams it line by line, so its memory stays bounded
//! whatever the log's size. A line that is not an entry (a torn last line
//! after a crash, or an edit) is reported on stderr with its number and
//! skipped; the command then exits with status 1, so scripts notice.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use super::parse_time_ms;

/// Longest audit line read, bytes: an entry names at most the sensors of one
/// subscription, which the area limits bound well below this.
const MAX_LINE_BYTES: usize = 64 * 1024 * 1024;

/// Arguments of `polis audit`.
#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    /// The server's data directory.
    #[arg(long, default_value = crate::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// Only entries naming this sensor (repeat for any of several).
    #[arg(long)]
    sensor: Vec<String>,
    /// Only entries of this token name (`who`).
    #[arg(long)]
    who: Option<String>,
    /// Only entries of this kind: subscribe, time_travel, history, export, erase.
    #[arg(long)]
    what: Option<String>,
    /// Only entries written at or after this time, RFC 3339.
    #[arg(long)]
    since: Option<String>,
    /// Only entries written before this time, RFC 3339.
    #[arg(long)]
    until: Option<String>,
    /// The matching entries as written (JSON lines) instead of a table.
    #[arg(long)]
    json: bool,
}

/// One audit entry as the server writes it.
#[derive(Debug, serde::Deserialize)]
struct Entry {
    time: String,
    who: String,
    what: String,
    sensors: Vec<String>,
    #[serde(default)]
    at: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
}

/// What an entry must match.
struct Filter {
    sensors: Vec<String>,
    who: Option<String>,
    what: Option<String>,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
}

impl Filter {
    fn from_args(args: &AuditArgs) -> anyhow::Result<Self> {
        Ok(Self {
            sensors: args.sensor.clone(),
            who: args.who.clone(),
            what: args.what.clone(),
            since_ms: args
                .since
                .as_deref()
                .map(|t| parse_time_ms("--since", t))
                .transpose()?,
            until_ms: args
                .until
                .as_deref()
                .map(|t| parse_time_ms("--until", t))
                .transpose()?,
        })
    }

    /// Whether `entry`, written at `time_ms`, matches.
    fn matches(&self, entry: &Entry, time_ms: i64) -> bool {
        (self.sensors.is_empty() || entry.sensors.iter().any(|s| self.sensors.contains(s)))
            && self.who.as_ref().is_none_or(|who| *who == entry.who)
            && self.what.as_ref().is_none_or(|what| *what == entry.what)
            && self.since_ms.is_none_or(|since| time_ms >= since)
            && self.until_ms.is_none_or(|until| time_ms < until)
    }
}

/// Runs `polis audit`.
pub(crate) fn run(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let filter = Filter::from_args(&args)?;
    let path = args.data_dir.join("audit.log");
    let file = std::fs::File::open(&path).with_context(|| {
        format!(
            "cannot read the audit log {} (the server writes it in its data directory once an operator is shown personal data)",
            path.display()
        )
    })?;
    let mut reader = std::io::BufReader::new(file);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if !args.json {
        writeln!(
            out,
            "{:<24}  {:<16}  {:<11}  {:<40}  detail",
            "time", "who", "what", "sensors"
        )?;
    }
    let mut bad_lines = Vec::new();
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        line.clear();
        let read = std::io::Read::take(&mut reader, MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if read == 0 {
            break;
        }
        number += 1;
        if line.len() > MAX_LINE_BYTES {
            anyhow::bail!(
                "{} line {number}: longer than {MAX_LINE_BYTES} bytes; not an audit log",
                path.display()
            );
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\n', '\r']);
        if text.is_empty() {
            continue;
        }
        let parsed = serde_json::from_str::<Entry>(text)
            .ok()
            .and_then(|entry| Some((parse_time_ms("time", &entry.time).ok()?, entry)));
        let Some((time_ms, entry)) = parsed else {
            bad_lines.push(number);
            continue;
        };
        if !filter.matches(&entry, time_ms) {
            continue;
        }
        if args.json {
            writeln!(out, "{text}")?;
        } else {
            writeln!(out, "{}", table_row(&entry))?;
        }
    }
    out.flush()?;
    if let Some(first) = bad_lines.first() {
        eprintln!(
            "polis audit: {} line(s) of {} are not audit entries and were skipped (first: line {first}); a torn last line follows a crash, anything else an edit",
            bad_lines.len(),
            path.display()
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// One entry as a table row: the sensors shortened to the first three and a
/// count.
fn table_row(entry: &Entry) -> String {
    let shown: Vec<&str> = entry.sensors.iter().take(3).map(String::as_str).collect();
    let mut sensors = shown.join(",");
    if entry.sensors.len() > 3 {
        sensors.push_str(&format!(" (+{} more)", entry.sensors.len() - 3));
    }
    let detail = match (&entry.at, &entry.from, &entry.to) {
        (Some(at), _, _) => format!("at {at}"),
        (None, Some(from), Some(to)) => format!("from {from} to {to}"),
        _ => String::new(),
    };
    format!(
        "{:<24}  {:<16}  {:<11}  {:<40}  {detail}",
        entry.time, entry.who, entry.what, sensors
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(who: &str, what: &str, sensors: &[&str]) -> Entry {
        Entry {
            time: "2026-12-03T10:00:00Z".into(),
            who: who.into(),
            what: what.into(),
            sensors: sensors.iter().map(|s| (*s).to_owned()).collect(),
            at: None,
            from: None,
            to: None,
        }
    }

    #[test]
    fn filters_combine_and_times_are_half_open() {
        let t = parse_time_ms("t", "2026-12-03T10:00:00Z").expect("time");
        let filter = Filter {
            sensors: vec!["meter-1".into()],
            who: Some("control-room".into()),
            what: None,
            since_ms: Some(t),
            until_ms: Some(t + 1),
        };
        assert!(filter.matches(&entry("control-room", "subscribe", &["a", "meter-1"]), t));
        assert!(!filter.matches(&entry("control-room", "subscribe", &["a"]), t));
        assert!(!filter.matches(&entry("someone", "history", &["meter-1"]), t));
        assert!(!filter.matches(&entry("control-room", "history", &["meter-1"]), t + 1));
        assert!(!filter.matches(&entry("control-room", "history", &["meter-1"]), t - 1));
    }

    #[test]
    fn a_row_names_three_sensors_and_counts_the_rest() {
        let row = table_row(&entry("ops", "subscribe", &["a", "b", "c", "d", "e"]));
        assert!(row.contains("a,b,c (+2 more)"), "{row}");
    }
}
