//! Progress of long work on stderr: an `indicatif` bar (or spinner, when the
//! total is unknown) on a terminal, a plain line per stage (and every few
//! seconds) otherwise, so that logs and CI stay readable.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Redraws per second on a terminal.
const TERMINAL_HZ: u8 = 10;
/// Time between plain lines within one stage when stderr is not a terminal.
const LOG_INTERVAL: Duration = Duration::from_secs(5);
/// Template with a known total.
const BAR_TEMPLATE: &str = "{msg}: [{bar:30}] {pos}/{len} ({percent} %)  [{elapsed}]";
/// Template without a total.
const SPINNER_TEMPLATE: &str = "{spinner} {msg}: {pos}  [{elapsed}]";

/// Shows progress of one command.
pub(crate) struct ProgressLine {
    /// Draws on a terminal; hidden (and only counting time) otherwise.
    bar: ProgressBar,
    stage: String,
    /// Whether the bar's style shows a total; `None` before the first update.
    with_total: Option<bool>,
    last_logged: Instant,
    shown_any: bool,
}

impl ProgressLine {
    pub(crate) fn new() -> Self {
        Self {
            bar: ProgressBar::with_draw_target(
                None,
                ProgressDrawTarget::stderr_with_hz(TERMINAL_HZ),
            ),
            stage: String::new(),
            with_total: None,
            last_logged: Instant::now(),
            shown_any: false,
        }
    }

    /// Reports `done` of `total` in `stage`.
    pub(crate) fn update(&mut self, stage: &str, done: u64, total: Option<u64>) {
        let total = total.filter(|&total| total > 0);
        if !self.shown_any && !self.bar.is_hidden() {
            // Keeps the spinner and the elapsed time moving between updates
            // (and draws instead of every setter below).
            self.bar
                .enable_steady_tick(Duration::from_millis(1000 / u64::from(TERMINAL_HZ)));
        }
        // Style, position and length first, the message (which draws) last,
        // so that a stage is not drawn with the figures of another.
        if self.with_total != Some(total.is_some()) {
            self.with_total = Some(total.is_some());
            self.bar.set_style(style(total.is_some()));
        }
        self.bar.update(|state| {
            state.set_pos(done);
            if let Some(total) = total {
                state.set_len(total);
            }
        });
        if total.is_none() && self.bar.length().is_some() {
            self.bar.unset_length();
        }
        let changed = stage != self.stage;
        if changed {
            stage.clone_into(&mut self.stage);
            self.bar.set_message(stage.to_owned());
        }
        if self.bar.is_hidden() && (changed || self.last_logged.elapsed() >= LOG_INTERVAL) {
            eprintln!(
                "{}  [{:.1} s]",
                plain_line(stage, done, total),
                self.bar.elapsed().as_secs_f64()
            );
            self.last_logged = Instant::now();
        }
        self.shown_any = true;
    }

    /// Ends the progress line, leaving its last state on the terminal.
    pub(crate) fn finish(&mut self) {
        if self.shown_any {
            // `abandon` keeps the position as reported (`finish` would jump to
            // the total).
            self.bar.abandon();
        }
        self.shown_any = false;
    }
}

/// The bar's style, with or without a total.
fn style(with_total: bool) -> ProgressStyle {
    if with_total {
        ProgressStyle::with_template(BAR_TEMPLATE).unwrap_or_else(|_| ProgressStyle::default_bar())
    } else {
        ProgressStyle::with_template(SPINNER_TEMPLATE)
            .unwrap_or_else(|_| ProgressStyle::default_spinner())
    }
}

/// The line written when stderr is not a terminal (without the elapsed time).
fn plain_line(stage: &str, done: u64, total: Option<u64>) -> String {
    match total {
        Some(total) => format!(
            "{stage}: {done}/{total} ({:.0} %)",
            100.0 * done as f64 / total as f64
        ),
        None => format!("{stage}: {done}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse_and_plain_lines_read_as_before() {
        assert!(ProgressStyle::with_template(BAR_TEMPLATE).is_ok());
        assert!(ProgressStyle::with_template(SPINNER_TEMPLATE).is_ok());
        assert_eq!(
            plain_line("buildings", 50, Some(200)),
            "buildings: 50/200 (25 %)"
        );
        assert_eq!(plain_line("reading", 7, None), "reading: 7");
    }

    #[test]
    fn a_hidden_bar_follows_stages_and_totals() {
        let mut progress = ProgressLine {
            bar: ProgressBar::hidden(),
            ..ProgressLine::new()
        };
        progress.update("reading", 3, None);
        assert_eq!(progress.bar.length(), None);
        progress.update("buildings", 5, Some(10));
        assert_eq!(
            (progress.bar.position(), progress.bar.length()),
            (5, Some(10))
        );
        assert_eq!(progress.bar.message(), "buildings");
        progress.update("roads", 0, Some(0));
        assert_eq!(progress.bar.length(), None, "a zero total is no total");
        progress.finish();
        assert!(!progress.shown_any);
    }
}
