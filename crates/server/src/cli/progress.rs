//! Progress of long work on stderr: a line rewritten in place on a terminal,
//! a line per stage (and every few seconds) otherwise.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Shows progress of one command.
pub(crate) struct ProgressLine {
    terminal: bool,
    stage: String,
    started: Instant,
    last_shown: Instant,
    shown_any: bool,
}

impl ProgressLine {
    pub(crate) fn new() -> Self {
        let now = Instant::now();
        Self {
            terminal: std::io::stderr().is_terminal(),
            stage: String::new(),
            started: now,
            last_shown: now,
            shown_any: false,
        }
    }

    /// Reports `done` of `total` in `stage`.
    pub(crate) fn update(&mut self, stage: &str, done: u64, total: Option<u64>) {
        let changed = stage != self.stage;
        let interval = if self.terminal {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(5)
        };
        if !changed && self.last_shown.elapsed() < interval {
            return;
        }
        let text = match total {
            Some(total) if total > 0 => {
                format!(
                    "{stage}: {done}/{total} ({:.0} %)",
                    100.0 * done as f64 / total as f64
                )
            }
            _ => format!("{stage}: {done}"),
        };
        let elapsed = self.started.elapsed().as_secs_f64();
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let _ = write!(err, "\r\x1b[2K{text}  [{elapsed:.1} s]");
        } else {
            let _ = writeln!(err, "{text}  [{elapsed:.1} s]");
        }
        let _ = err.flush();
        self.stage = stage.to_owned();
        self.last_shown = Instant::now();
        self.shown_any = true;
    }

    /// Ends the progress line.
    pub(crate) fn finish(&mut self) {
        if self.terminal && self.shown_any {
            let _ = writeln!(std::io::stderr());
        }
        self.shown_any = false;
    }
}
