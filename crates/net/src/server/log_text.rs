//! Keeping what clients say out of the operator's log unharmed: [`LogText`]
//! escapes and shortens a client-controlled string for a text log, and
//! [`LogLimiter`] summarises repeated warnings of one kind from one source
//! (an address, an MQTT topic), so a flood of bad handshakes writes one line
//! a minute, not one per attempt.
//!
//! No clock and no I/O: the limiter takes the time as an argument.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

/// Characters of a client-chosen name shown in a log line; longer ones are
/// cut and end with "…".
pub const LOG_NAME_MAX_CHARS: usize = 64;

/// Characters of an error detail that may echo client input shown in a log
/// line.
pub const LOG_DETAIL_MAX_CHARS: usize = 240;

/// A client-controlled string as it may appear in a text log: control
/// characters (newlines, ESC, …), quotes and backslashes escaped the way
/// Rust's `escape_debug` does, and at most `max_chars` characters of the
/// original shown.
#[derive(Debug, Clone, Copy)]
pub struct LogText<'a> {
    text: &'a str,
    max_chars: usize,
}

impl<'a> LogText<'a> {
    /// A client-chosen name (at most [`LOG_NAME_MAX_CHARS`] shown).
    pub fn name(text: &'a str) -> Self {
        Self {
            text,
            max_chars: LOG_NAME_MAX_CHARS,
        }
    }

    /// An error detail that may echo client input (at most
    /// [`LOG_DETAIL_MAX_CHARS`] shown).
    pub fn detail(text: &'a str) -> Self {
        Self {
            text,
            max_chars: LOG_DETAIL_MAX_CHARS,
        }
    }
}

impl fmt::Display for LogText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut chars = self.text.chars();
        for c in chars.by_ref().take(self.max_chars) {
            write!(f, "{}", c.escape_debug())?;
        }
        if chars.next().is_some() {
            f.write_str("…")?;
        }
        Ok(())
    }
}

/// Whether to write a warning now, and how many of its kind from the same
/// source were left out since the last one written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogVerdict {
    /// Write it; `suppressed` earlier ones were not written.
    Write {
        /// Warnings of this kind from this source left out since the last
        /// one written.
        suppressed: u64,
    },
    /// Leave it out (it is counted and reported with the next one written).
    Suppress,
}

/// What the limiter remembers of one (source, kind).
#[derive(Debug, Clone, Copy)]
struct Window {
    /// When the last warning written was written.
    written_at: Instant,
    /// Left out since then.
    suppressed: u64,
}

/// What a [`LogLimiter`] tells warnings apart by, besides their kind: a
/// source address, an MQTT topic.
pub trait LogSource: Hash + Eq + Clone {
    /// The one entry every source beyond the limiter's bound shares.
    fn shared() -> Self;
}

impl LogSource for IpAddr {
    /// The unspecified address.
    fn shared() -> Self {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    }
}

impl LogSource for String {
    /// The empty string.
    fn shared() -> Self {
        String::new()
    }
}

/// Lets through one warning of each kind per source per `interval`,
/// counting the ones it holds back.
///
/// It remembers at most `max_sources` (source, kind) pairs; beyond that,
/// further sources share one entry ([`LogSource::shared`]), so a flood from
/// many addresses (or topics) is summarised too and memory stays bounded.
#[derive(Debug)]
pub struct LogLimiter<S: LogSource = IpAddr> {
    interval: Duration,
    max_sources: usize,
    windows: HashMap<(S, &'static str), Window>,
}

impl<S: LogSource> LogLimiter<S> {
    /// A limiter writing one warning per (source, kind) per `interval`,
    /// remembering at most `max_sources` of them.
    pub fn new(interval: Duration, max_sources: usize) -> Self {
        Self {
            interval,
            max_sources: max_sources.max(1),
            windows: HashMap::new(),
        }
    }

    /// Whether a warning of `kind` from `source` at `now` is written.
    pub fn check(&mut self, source: S, kind: &'static str, now: Instant) -> LogVerdict {
        let mut key = (source, kind);
        if !self.windows.contains_key(&key) && self.windows.len() >= self.max_sources {
            let interval = self.interval;
            self.windows.retain(|_, window| {
                now.saturating_duration_since(window.written_at) < interval || window.suppressed > 0
            });
            if self.windows.len() >= self.max_sources {
                key = (S::shared(), kind);
            }
        }
        match self.windows.get_mut(&key) {
            Some(window) if now.saturating_duration_since(window.written_at) < self.interval => {
                window.suppressed += 1;
                LogVerdict::Suppress
            }
            Some(window) => {
                let suppressed = window.suppressed;
                *window = Window {
                    written_at: now,
                    suppressed: 0,
                };
                LogVerdict::Write { suppressed }
            }
            None => {
                self.windows.insert(
                    key,
                    Window {
                        written_at: now,
                        suppressed: 0,
                    },
                );
                LogVerdict::Write { suppressed: 0 }
            }
        }
    }

    /// Warnings held back in windows that have ended, each as (source,
    /// kind, how many), reported once and forgotten: whoever owns the
    /// limiter logs them, so that a burst followed by silence is still
    /// counted in the log. The next warning from such a source is written
    /// at once.
    pub fn take_ended(&mut self, now: Instant) -> Vec<(S, &'static str, u64)> {
        let interval = self.interval;
        let mut ended = Vec::new();
        self.windows.retain(|(source, kind), window| {
            if now.saturating_duration_since(window.written_at) < interval {
                return true;
            }
            if window.suppressed > 0 {
                ended.push((source.clone(), *kind, window.suppressed));
            }
            false
        });
        ended
    }

    /// (source, kind) pairs remembered.
    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.windows.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newlines_and_escapes_in_a_client_name_are_escaped() {
        let forged = "x\n2026-12-03T11:00:00Z  INFO polis: forged\r\x1b[31mred\x1b[0m\t\"q\"\\";
        let shown = LogText::name(forged).to_string();
        assert!(!shown.contains('\n'), "{shown}");
        assert!(!shown.contains('\r'), "{shown}");
        assert!(!shown.contains('\x1b'), "{shown}");
        assert!(!shown.contains('\t'), "{shown}");
        assert!(shown.starts_with("x\\n2026-12-03T11:00:00Z"), "{shown}");
        assert!(shown.contains("\\u{1b}[31mred"), "{shown}");
        assert!(shown.chars().all(|c| !c.is_control()), "{shown}");
    }

    #[test]
    fn ordinary_text_is_shown_as_it_is() {
        assert_eq!(
            LogText::name("sensor-gw Zürich 7").to_string(),
            "sensor-gw Zürich 7"
        );
        assert_eq!(LogText::name("").to_string(), "");
    }

    #[test]
    fn long_text_is_cut_after_its_limit_of_characters() {
        let exact = "é".repeat(LOG_NAME_MAX_CHARS);
        assert_eq!(
            LogText::name(&exact).to_string(),
            exact,
            "at the limit: not cut"
        );
        let long = "a".repeat(1 << 20);
        let shown = LogText::name(&long).to_string();
        assert_eq!(shown, format!("{}…", "a".repeat(LOG_NAME_MAX_CHARS)));
        // Escapes lengthen what is shown but not what is taken.
        let newlines = "\n".repeat(1000);
        let shown = LogText::name(&newlines).to_string();
        assert_eq!(shown, format!("{}…", "\\n".repeat(LOG_NAME_MAX_CHARS)));
        let detail = LogText::detail(&long).to_string();
        assert_eq!(detail.chars().count(), LOG_DETAIL_MAX_CHARS + 1);
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    #[test]
    fn one_warning_per_source_and_kind_per_interval_with_a_count_of_the_rest() {
        let t0 = Instant::now();
        let mut limiter = LogLimiter::new(Duration::from_secs(60), 100);
        assert_eq!(
            limiter.check(ip(1), "rejected", t0),
            LogVerdict::Write { suppressed: 0 }
        );
        for s in 1..=5 {
            let now = t0 + Duration::from_secs(s);
            assert_eq!(limiter.check(ip(1), "rejected", now), LogVerdict::Suppress);
        }
        // Another kind and another source are counted on their own.
        assert_eq!(
            limiter.check(ip(1), "bad hello", t0),
            LogVerdict::Write { suppressed: 0 }
        );
        assert_eq!(
            limiter.check(ip(2), "rejected", t0),
            LogVerdict::Write { suppressed: 0 }
        );
        // After the interval, the next one is written with the count.
        let t1 = t0 + Duration::from_secs(60);
        assert_eq!(
            limiter.check(ip(1), "rejected", t1),
            LogVerdict::Write { suppressed: 5 }
        );
        assert_eq!(
            limiter.check(ip(1), "rejected", t1 + Duration::from_secs(1)),
            LogVerdict::Suppress
        );
        let t2 = t1 + Duration::from_secs(61);
        assert_eq!(
            limiter.check(ip(1), "rejected", t2),
            LogVerdict::Write { suppressed: 1 }
        );
    }

    #[test]
    fn time_going_backwards_writes_nothing_extra() {
        let t0 = Instant::now() + Duration::from_secs(600);
        let mut limiter = LogLimiter::new(Duration::from_secs(60), 100);
        assert!(matches!(
            limiter.check(ip(1), "rejected", t0),
            LogVerdict::Write { .. }
        ));
        let earlier = t0 - Duration::from_secs(300);
        assert_eq!(
            limiter.check(ip(1), "rejected", earlier),
            LogVerdict::Suppress
        );
    }

    #[test]
    fn many_sources_share_one_entry_beyond_the_bound() {
        let t0 = Instant::now();
        let mut limiter = LogLimiter::new(Duration::from_secs(60), 4);
        for last in 0..4 {
            assert!(matches!(
                limiter.check(ip(last), "rejected", t0),
                LogVerdict::Write { .. }
            ));
        }
        // The fifth source onwards: one line for all of them per interval.
        assert_eq!(
            limiter.check(ip(4), "rejected", t0),
            LogVerdict::Write { suppressed: 0 }
        );
        for last in 5..200 {
            assert_eq!(
                limiter.check(ip(last), "rejected", t0),
                LogVerdict::Suppress
            );
        }
        assert_eq!(limiter.remembered(), 5);
        // Once the interval has passed, quiet entries are forgotten and room
        // is made for new sources.
        let t1 = t0 + Duration::from_secs(120);
        assert_eq!(
            limiter.check(ip(250), "rejected", t1),
            LogVerdict::Write { suppressed: 0 }
        );
        assert!(limiter.remembered() <= 4, "{}", limiter.remembered());
    }

    #[test]
    fn warnings_held_back_are_reported_once_their_window_ends() {
        let start = Instant::now();
        let source = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
        let mut limiter: LogLimiter = LogLimiter::new(Duration::from_secs(60), 16);
        assert_eq!(
            limiter.check(source, "bad hello", start),
            LogVerdict::Write { suppressed: 0 }
        );
        for _ in 0..39 {
            assert_eq!(
                limiter.check(source, "bad hello", start),
                LogVerdict::Suppress
            );
        }
        assert!(
            limiter
                .take_ended(start + Duration::from_secs(59))
                .is_empty()
        );
        let ended = limiter.take_ended(start + Duration::from_secs(61));
        assert_eq!(ended, [(source, "bad hello", 39)]);
        assert!(
            limiter
                .take_ended(start + Duration::from_secs(62))
                .is_empty(),
            "once"
        );
        assert_eq!(
            limiter.check(source, "bad hello", start + Duration::from_secs(63)),
            LogVerdict::Write { suppressed: 0 },
            "counted already: the next one is written at once"
        );
    }
}
