//! The audit log of raw personal-data access: who saw which personal
//! sensors, when. JSON lines in `<data dir>/audit.log`, appended and flushed
//! per entry, readable with any tool.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use bevy::prelude::*;
use polis_twin::{PersonalDataShown, TwinSystems};
use tracing::error;

use crate::cli::format_time_ms;

/// Appends audit entries; cheap to clone.
#[derive(Resource, Clone)]
pub struct AuditLog {
    file: Arc<Mutex<std::fs::File>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").finish_non_exhaustive()
    }
}

#[derive(serde::Serialize)]
struct Entry<'a> {
    time: String,
    who: &'a str,
    what: &'a str,
    sensors: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<String>,
    /// Rows a request affected (erasure).
    #[serde(skip_serializing_if = "Option::is_none")]
    count: Option<u64>,
    /// The consent set (consent changes).
    #[serde(skip_serializing_if = "Option::is_none")]
    consent: Option<polis_protocol::Consent>,
}

fn now() -> String {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}

impl AuditLog {
    /// Opens (creating) the log for appending.
    pub fn open(path: &Path) -> anyhow::Result<AuditLog> {
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options
            .open(path)
            .with_context(|| format!("cannot open the audit log {}", path.display()))?;
        Ok(AuditLog {
            file: Arc::new(Mutex::new(file)),
        })
    }

    fn write(&self, entry: &Entry<'_>) {
        let Ok(mut line) = serde_json::to_string(entry) else {
            return;
        };
        line.push('\n');
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(err) = file.write_all(line.as_bytes()).and_then(|()| file.flush()) {
            error!("audit log write failed (an access went unrecorded): {err}");
        }
    }

    /// Records that `who` was shown the live (or, with `at_ms`, past) values
    /// of personal `sensors`.
    pub fn shown(&self, who: &str, sensors: &[String], at_ms: Option<i64>) {
        self.write(&Entry {
            time: now(),
            who,
            what: if at_ms.is_some() {
                "time_travel"
            } else {
                "subscribe"
            },
            sensors,
            at: at_ms.map(format_time_ms),
            from: None,
            to: None,
            count: None,
            consent: None,
        });
    }

    /// Records that `who` read the history of a personal sensor.
    pub fn history(&self, who: &str, sensor: &str, from_ms: i64, to_ms: i64) {
        self.write(&Entry {
            time: now(),
            who,
            what: "history",
            sensors: &[sensor.to_owned()],
            at: None,
            from: Some(format_time_ms(from_ms)),
            to: Some(format_time_ms(to_ms)),
            count: None,
            consent: None,
        });
    }

    /// Records a resident's request (`export`, `erase`) about `sensors`,
    /// made by or for `who`: up to `before_ms` if limited, affecting
    /// `count` rows if it changed any.
    pub fn request(
        &self,
        who: &str,
        what: &str,
        sensors: &[String],
        before_ms: Option<i64>,
        count: Option<u64>,
    ) {
        self.write(&Entry {
            time: now(),
            who,
            what,
            sensors,
            at: None,
            from: None,
            to: before_ms.map(format_time_ms),
            count,
            consent: None,
        });
    }
}

impl AuditLog {
    /// Records that `who` set the consent of `sensors` to `consent`.
    pub fn consent(&self, who: &str, sensors: &[String], consent: polis_protocol::Consent) {
        self.write(&Entry {
            time: now(),
            who,
            what: "consent",
            sensors,
            at: None,
            from: None,
            to: None,
            count: None,
            consent: Some(consent),
        });
    }
}

/// Records in the [`AuditLog`] resource (inserted by the caller) every
/// showing of raw personal data the twin reports.
pub(crate) struct AuditPlugin;

impl Plugin for AuditPlugin {
    fn build(&self, app: &mut App) {
        app.add_systems(Update, audit_personal_data.after(TwinSystems::Interest));
    }
}

/// Writes an entry for every personal-data showing the twin reports.
fn audit_personal_data(audit: Res<AuditLog>, mut shown: MessageReader<PersonalDataShown>) {
    for event in shown.read() {
        audit.shown(&event.name, &event.sensors, event.at_ms);
    }
}
