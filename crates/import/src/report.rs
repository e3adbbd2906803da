//! What an import did: counts of what was made and of what was skipped, and
//! progress while it runs.

use std::collections::BTreeMap;
use std::fmt;

/// Progress of a long-running import, reported to a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// What is being done: `"reading"`, `"buildings"`, `"roads"`,
    /// `"transit"`, `"validating"`.
    pub stage: &'static str,
    /// Elements handled so far in this stage.
    pub done: u64,
    /// Elements to handle in this stage, when known.
    pub total: Option<u64>,
}

/// What an import made and what it left out.
///
/// Keys of [`counts`](Self::counts) are what was made (`building`, `road`,
/// `water_pipe`, `meter`, ...). Keys of [`skipped`](Self::skipped) are
/// `"<what>: <reason>"` (`"building: degenerate polygon"`): nothing from
/// the input is dropped without being counted here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Number of items made, by kind.
    pub counts: BTreeMap<String, u64>,
    /// Number of input elements left out or clipped, by `"<what>: <reason>"`.
    pub skipped: BTreeMap<String, u64>,
}

impl ImportReport {
    /// An empty report.
    pub fn new() -> ImportReport {
        ImportReport::default()
    }

    /// Adds `n` to the count of `what`.
    pub fn add_count(&mut self, what: &str, n: u64) {
        if n > 0 {
            *self.counts.entry(what.to_owned()).or_insert(0) += n;
        }
    }

    /// Counts one element left out (or clipped) for `reason`, which reads
    /// `"<what>: <reason>"`.
    pub fn skip(&mut self, reason: impl Into<String>) {
        self.skip_n(reason, 1);
    }

    /// Counts `n` elements left out (or clipped) for `reason`.
    pub fn skip_n(&mut self, reason: impl Into<String>, n: u64) {
        if n > 0 {
            *self.skipped.entry(reason.into()).or_insert(0) += n;
        }
    }

    /// The count of `what`, 0 when absent.
    pub fn count(&self, what: &str) -> u64 {
        self.counts.get(what).copied().unwrap_or(0)
    }

    /// The number of elements skipped for `reason`, 0 when absent.
    pub fn skipped(&self, reason: &str) -> u64 {
        self.skipped.get(reason).copied().unwrap_or(0)
    }

    /// Adds every count and skip of `other` to this report.
    pub fn merge(&mut self, other: &ImportReport) {
        for (what, n) in &other.counts {
            self.add_count(what, *n);
        }
        for (reason, n) in &other.skipped {
            self.skip_n(reason.clone(), *n);
        }
    }
}

impl fmt::Display for ImportReport {
    /// A readable multi-line summary:
    ///
    /// ```text
    /// imported:
    ///   building        512
    ///   road           2650
    /// skipped:
    ///   building: degenerate polygon     3
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_section(f, "imported", &self.counts)?;
        write_section(f, "skipped", &self.skipped)
    }
}

/// One `title:` line, then the entries aligned, or `title: none`.
fn write_section(
    f: &mut fmt::Formatter<'_>,
    title: &str,
    entries: &BTreeMap<String, u64>,
) -> fmt::Result {
    if entries.is_empty() {
        return writeln!(f, "{title}: none");
    }
    writeln!(f, "{title}:")?;
    let key_width = entries.keys().map(|k| k.chars().count()).max().unwrap_or(0);
    let value_width = entries
        .values()
        .map(|v| v.to_string().len())
        .max()
        .unwrap_or(0);
    for (key, value) in entries {
        writeln!(f, "  {key:<key_width$}  {value:>value_width$}")?;
    }
    Ok(())
}
