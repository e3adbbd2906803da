//! The valid range of every setting: [`Config::problems`] lists every
//! value outside its range, all at once, for `polis config check` and the
//! server's start.

use std::borrow::Cow;
use std::collections::HashMap;

use super::{Config, ConfigProblem, MAX_MAX_TICK_HZ};
use crate::tokens::token_sha256;

/// Hours in 100 years: the longest retention age (longer ages would push
/// the cut-off before any representable time).
const MAX_RETENTION_AGE_HOURS: f64 = 876_000.0;
/// Seconds in a year: the longest pause between two retention runs.
const MAX_RETENTION_EVERY_SECS: u64 = 31_536_000;
/// Seconds in a week: the most a gateway's clock may run ahead.
const MAX_CLOCK_SKEW_SECS: f64 = 604_800.0;
/// Earth's surface, km²: no area to subscribe to is larger.
const EARTH_SURFACE_KM2: f64 = 510_072_000.0;

/// A number a setting holds, for range checks.
#[derive(Debug, Clone, Copy)]
enum Number {
    Integer(u64),
    Real(f64),
}

impl std::fmt::Display for Number {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Number::Integer(value) => write!(f, "{value}"),
            // Very large and very small numbers in exponent form, as they
            // are usually written.
            Number::Real(value) if *value != 0.0 && !(1e-6..1e9).contains(&value.abs()) => {
                write!(f, "{value:e}")
            }
            Number::Real(value) => write!(f, "{value}"),
        }
    }
}

/// One numeric setting and its valid range, both ends included (a `0`
/// also allowed where `zero_allowed`, e.g. "keep forever").
#[derive(Debug, Clone)]
struct Range {
    key: Cow<'static, str>,
    value: Number,
    min: f64,
    max: f64,
    zero_allowed: bool,
}

impl Range {
    fn integer(
        key: impl Into<Cow<'static, str>>,
        value: impl TryInto<u64>,
        min: u64,
        max: u64,
    ) -> Self {
        Self {
            key: key.into(),
            // A value beyond u64 is beyond every range.
            value: Number::Integer(value.try_into().unwrap_or(u64::MAX)),
            min: min as f64,
            max: max as f64,
            zero_allowed: false,
        }
    }

    fn real(key: &'static str, value: f64, min: f64, max: f64) -> Self {
        Self {
            key: key.into(),
            value: Number::Real(value),
            min,
            max,
            zero_allowed: false,
        }
    }

    fn or_zero(self) -> Self {
        Self {
            zero_allowed: true,
            ..self
        }
    }

    /// What is wrong with the value, naming the range and the value.
    fn problem(&self) -> Option<String> {
        let inside = match self.value {
            Number::Integer(value) => {
                (value == 0 && self.zero_allowed)
                    || (value as f64 >= self.min && value as f64 <= self.max)
            }
            Number::Real(value) => {
                value.is_finite()
                    && ((value == 0.0 && self.zero_allowed)
                        || (value >= self.min && value <= self.max))
            }
        };
        if inside {
            return None;
        }
        let zero = if self.zero_allowed { "0 or " } else { "" };
        Some(format!(
            "must be {zero}in [{}, {}], is {}",
            self.min, self.max, self.value
        ))
    }
}

impl Config {
    /// Every numeric setting with its valid range. Each bound keeps the
    /// server's arithmetic in range: durations, semaphores, channel
    /// capacities and the retention cut-off can neither overflow nor panic.
    fn ranges(&self) -> Vec<Range> {
        let limits = &self.limits;
        let max_frame = polis_protocol::MAX_FRAME_BYTES as u64;
        let mqtt = self.mqtt.iter().enumerate().flat_map(|(index, source)| {
            source
                .ranges(index)
                .into_iter()
                .map(|(key, value, min, max)| Range::integer(key, value, min, max))
        });
        let mut ranges = vec![
            Range::real("tick_hz", self.tick_hz, 0.1, 1_000.0),
            Range::real(
                "max_tick_hz",
                self.max_tick_hz,
                self.tick_hz.max(0.1),
                MAX_MAX_TICK_HZ,
            ),
            Range::integer("limits.max_connections", limits.max_connections, 1, 100_000),
            Range::integer("limits.event_capacity", limits.event_capacity, 1, 1_000_000),
            Range::integer(
                "limits.max_events_per_tick",
                limits.max_events_per_tick,
                1,
                10_000_000,
            ),
            Range::integer("limits.gateway_window", limits.gateway_window, 1, 65_536),
            Range::integer(
                "limits.viewer_frame_bytes",
                limits.viewer_frame_bytes,
                4_096,
                max_frame,
            ),
            Range::integer("ngsi_ld.max_page", self.ngsi_ld.max_page, 1, 10_000),
            Range::integer(
                "limits.max_connections_per_token",
                limits.max_connections_per_token,
                1,
                100_000,
            ),
            Range::integer(
                "limits.max_connections_per_token_per_address",
                limits.max_connections_per_token_per_address,
                1,
                100_000,
            ),
            Range::real(
                "limits.max_readings_per_second",
                limits.max_readings_per_second,
                1.0,
                1e12,
            ),
            Range::real(
                "limits.max_subscriptions_per_second",
                limits.max_subscriptions_per_second,
                0.01,
                1_000.0,
            ),
            Range::real(
                "limits.max_picks_per_second",
                limits.max_picks_per_second,
                0.01,
                10_000.0,
            ),
            Range::real(
                "limits.max_area_km2",
                limits.max_area_km2,
                1e-6,
                EARTH_SURFACE_KM2,
            ),
            Range::integer(
                "limits.retry_above_handshakes",
                limits.retry_above_handshakes,
                0,
                100_000,
            ),
            Range::integer(
                "limits.max_handshakes_per_address",
                limits.max_handshakes_per_address,
                1,
                100_000,
            ),
            Range::real(
                "limits.max_clock_skew_secs",
                limits.max_clock_skew_secs,
                0.0,
                MAX_CLOCK_SKEW_SECS,
            ),
            Range::real(
                "limits.max_area_items_per_second",
                limits.max_area_items_per_second,
                100.0,
                1e9,
            ),
            Range::real(
                "limits.max_area_items_per_second_per_connection",
                limits.max_area_items_per_second_per_connection,
                100.0,
                1e9,
            ),
            Range::integer(
                "limits.max_area_items_per_tick",
                limits.max_area_items_per_tick,
                10,
                10_000_000,
            ),
            Range::real(
                "history.personal_raw_max_age_hours",
                self.history.personal_raw_max_age_hours,
                0.01,
                MAX_RETENTION_AGE_HOURS,
            )
            .or_zero(),
            Range::integer(
                "history.retention_every_secs",
                self.history.retention_every_secs,
                1,
                MAX_RETENTION_EVERY_SECS,
            ),
            Range::integer("privacy.k", self.privacy.k, 2, 1_000_000),
            Range::integer(
                "privacy.k_planner",
                self.privacy.k_planner,
                2,
                self.privacy.k.clamp(2, 1_000_000) as u64,
            ),
            Range::real("privacy.block_m", self.privacy.block_m, 1.0, 1_000_000.0),
            Range::real(
                "privacy.district_m",
                self.privacy.district_m,
                self.privacy.block_m.max(1.0),
                1_000_000.0,
            ),
            Range::real(
                "privacy.dp_epsilon",
                self.privacy.dp_epsilon,
                0.001,
                1_000.0,
            )
            .or_zero(),
            Range::real(
                "privacy.dp_window_hours",
                self.privacy.dp_window_hours,
                0.01,
                24.0 * 366.0,
            ),
            Range::integer(
                "privacy.dp_releases",
                self.privacy.dp_releases,
                1,
                1_000_000,
            ),
        ];
        ranges.extend(mqtt);
        ranges
    }

    /// Every problem with the values, all at once.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        let mut problem = |key: &str, message: &str| {
            problems.push(ConfigProblem {
                key: key.to_owned(),
                message: message.to_owned(),
            });
        };
        for range in self.ranges() {
            if let Some(message) = range.problem() {
                problem(&range.key, &message);
            }
        }
        for (quantity, [lo, hi]) in &self.privacy.dp_bounds {
            if !(lo.is_finite() && hi.is_finite() && lo < hi) {
                problem(
                    &format!("privacy.dp_bounds.{quantity}"),
                    "must be [lo, hi], finite, with lo < hi",
                );
            }
        }
        for (index, entry) in self.tokens.iter().enumerate() {
            let key = format!("token[{index}]");
            match (&entry.token, &entry.sha256) {
                (Some(_), Some(_)) => problem(&key, "give either `token` or `sha256`, not both"),
                (None, None) => problem(&key, "needs `token` or `sha256`"),
                (Some(token), None) if token.len() < 16 => {
                    problem(&key, "tokens must be at least 16 characters");
                }
                (None, Some(hash))
                    if hash.len() != 64 || !hash.chars().all(|c| c.is_ascii_hexdigit()) =>
                {
                    problem(&key, "`sha256` must be 64 hex digits");
                }
                _ => {}
            }
            match (
                entry.role == polis_protocol::Access::Resident,
                entry.sensors.is_empty(),
            ) {
                (true, true) => problem(
                    &key,
                    "a resident token needs `sensors` (the ids of the home's sensors)",
                ),
                (false, false) => problem(&key, "`sensors` applies to resident tokens only"),
                _ => {}
            }
        }
        // One secret for two entries would grant whichever came last.
        let mut first_with_hash: HashMap<String, usize> = HashMap::new();
        for (index, entry) in self.tokens.iter().enumerate() {
            let hash = match (&entry.token, &entry.sha256) {
                (Some(token), None) => token_sha256(token),
                (None, Some(hash)) => hash.to_ascii_lowercase(),
                _ => continue,
            };
            if let Some(first) = first_with_hash.insert(hash, index) {
                problem(
                    &format!("token[{index}]"),
                    &format!("has the same secret as token[{first}]; give each holder its own"),
                );
            }
        }
        // Port 0 asks the OS for a free port each: never the same address.
        if self.http.enabled
            && self.listen.port() != 0
            && self.http.listen.port() == self.listen.port()
            && self.http.listen.ip() == self.listen.ip()
        {
            // Different protocols (TCP vs UDP) could share it, but it is
            // almost always a typo.
            problem("http.listen", "uses the same address as `listen`");
        }
        if self.ngsi_ld.enabled {
            if !self.ngsi_ld.listen.ip().is_loopback() {
                problem(
                    "ngsi_ld.listen",
                    "must be a loopback address: the NGSI-LD API is plain HTTP; put a \
                     TLS reverse proxy in front to reach it from other hosts",
                );
            }
            let same = |other: std::net::SocketAddr| {
                self.ngsi_ld.listen.port() != 0 && other == self.ngsi_ld.listen
            };
            if self.http.enabled && same(self.http.listen) {
                problem("ngsi_ld.listen", "uses the same address as `http.listen`");
            }
        }
        problems.extend(super::mqtt::problems(self));
        problems
    }
}
