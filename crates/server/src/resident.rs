//! Data-subject requests of residents: everything Polis holds about a
//! home's sensors ([`export`]: recorded readings, consent, the aggregates
//! derived from them and who is shown those, and every audited access),
//! erasure of their recorded readings ([`erase`]) and consent
//! (`crate::consent`). The operator answers them with `polis resident`;
//! a resident makes them over the protocol with their own token
//! (`Residents`).
//!
//! Both work on the data directory itself, so the operator can answer a
//! request whether or not the server runs: history is SQLite in WAL mode
//! (its own connection beside the server's writer), and every history path
//! of the server — history queries, sparklines, time travel — reads that
//! file, so an erasure takes effect on all of them at once. Each request is
//! itself written to the audit log.

use std::io::BufRead;
use std::path::Path;

use anyhow::Context as _;
use polis_history::HistoryReader;
use polis_net::{Grant, ResidentAnswer, ResidentService};
use polis_protocol::{
    Consent, ErrorCode, ExportFormat, ProtocolError, ResidentAction, ResidentOutcome,
};
use polis_scene::Scene;
use polis_twin::{Consents, DerivedAggregate, HomeInTwin, PrivacyOptions, describe_home};
use tracing::warn;

use crate::audit::AuditLog;
use crate::cli::format_time_ms;
use crate::consent::TwinLink;

/// Everything held about a home's sensors.
#[derive(Debug, serde::Serialize)]
pub struct ResidentExport {
    /// The sensors asked about, with their recorded readings.
    pub sensors: Vec<SensorExport>,
    /// The aggregates that include them, and who is shown each.
    pub derived: Vec<DerivedAggregate>,
    /// Every audit-log entry naming any of them (who was shown their raw
    /// values, read their history, exported or erased them), as written.
    pub access: Vec<serde_json::Value>,
}

/// One sensor of the home.
#[derive(Debug, serde::Serialize)]
pub struct SensorExport {
    /// Its id.
    pub id: String,
    /// What it measures, per the scene (absent if the scene does not have it).
    pub quantity: Option<String>,
    /// Its unit, per the scene.
    pub unit: Option<String>,
    /// What its home lets Polis derive from it.
    pub consent: Consent,
    /// Every recorded reading, by device time.
    pub readings: Vec<ExportedReading>,
}

/// One recorded reading.
#[derive(Debug, serde::Serialize)]
pub struct ExportedReading {
    /// Device time, RFC 3339.
    pub time: String,
    /// Device time, ms since the Unix epoch.
    pub device_time_ms: i64,
    /// The value, in the sensor's unit.
    pub value: f64,
    /// Quality flag (0 good, 1 uncertain, 2 bad), if any.
    pub quality: Option<u8>,
}

/// Where a data directory keeps what a request reads and writes.
#[derive(Debug, Clone)]
pub struct DataFiles<'a> {
    /// The history store (`<data dir>/history.sqlite` by default).
    pub history: &'a Path,
    /// The audit log (`<data dir>/audit.log`).
    pub audit: &'a Path,
    /// Residents' consent (`<data dir>/consent.json`).
    pub consent: &'a Path,
    /// The privacy groups formed so far (`<data dir>/groups.json`).
    pub groups: &'a Path,
}

/// Everything held about `sensors` (a home's sensor ids) in `files`, with
/// what the twin holds about them (`home`: the running twin's, or
/// [`describe_home`] of the scene). Writes an `export` entry for `who` to
/// `audit` (the log in `files`) afterwards.
pub fn export(
    files: &DataFiles<'_>,
    audit: &AuditLog,
    home: &HomeInTwin,
    sensors: &[String],
    who: &str,
) -> anyhow::Result<ResidentExport> {
    let reader = if files.history.exists() {
        Some(HistoryReader::open(files.history)?)
    } else {
        None
    };
    let consents = crate::consent::load(files.consent)?;
    let mut exported = Vec::with_capacity(sensors.len());
    for (index, id) in sensors.iter().enumerate() {
        let described = home.sensors.get(index).cloned().flatten();
        let readings = match &reader {
            Some(reader) if reader.key(id).is_ok() => reader
                .readings(id, i64::MIN, i64::MAX)?
                .into_iter()
                .map(|r| ExportedReading {
                    time: format_time_ms(r.device_time_ms),
                    device_time_ms: r.device_time_ms,
                    value: r.value,
                    quality: r.quality,
                })
                .collect(),
            _ => Vec::new(),
        };
        exported.push(SensorExport {
            id: id.clone(),
            quantity: described.as_ref().map(|(quantity, _)| quantity.clone()),
            unit: described.map(|(_, unit)| unit),
            consent: consents.get(id).copied().unwrap_or_default(),
            readings,
        });
    }
    let derived = home.derived.clone();
    let access = audit_entries_naming(files.audit, sensors)?;
    audit.request(who, "export", sensors, None, None);
    Ok(ResidentExport {
        sensors: exported,
        derived,
        access,
    })
}

/// Deletes the recorded readings of `sensors` in `files` (those before
/// `before_ms`, or all), and writes an `erase` entry for `who` with the
/// count to `audit`; returns the count.
pub fn erase(
    files: &DataFiles<'_>,
    audit: &AuditLog,
    sensors: &[String],
    before_ms: Option<i64>,
    who: &str,
) -> anyhow::Result<u64> {
    let deleted = polis_history::erase_readings(files.history, sensors, before_ms)?;
    audit.request(who, "erase", sensors, before_ms, Some(deleted));
    Ok(deleted)
}

/// The audit entries naming any of `sensors`, in the order written, each
/// with its list of sensors cut down to those (an operator's entry may
/// name other homes' sensors too); a line that is not JSON (a torn last
/// line after a crash) is skipped.
fn audit_entries_naming(path: &Path, sensors: &[String]) -> anyhow::Result<Vec<serde_json::Value>> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => {
            return Err(err).with_context(|| format!("cannot read {}", path.display()));
        }
    };
    let mut entries = Vec::new();
    for line in std::io::BufReader::new(file).lines() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        let Ok(mut entry) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let Some(named) = entry.get_mut("sensors").and_then(|s| s.as_array_mut()) else {
            continue;
        };
        named.retain(|s| sensors.iter().any(|own| s == own.as_str()));
        if !named.is_empty() {
            entries.push(entry);
        }
    }
    Ok(entries)
}

/// Largest export sent over the protocol; a home with more recorded data
/// is exported by the operator (`polis resident export`), which writes a
/// file instead.
const MAX_PROTOCOL_EXPORT_BYTES: usize = 256 * 1024 * 1024;

/// What a twin of `scene` with the consent recorded in `files` holds about
/// `sensors` at its start: for answering a resident without a server.
pub fn home_in_scene(
    files: &DataFiles<'_>,
    scene: &Scene,
    privacy: &PrivacyOptions,
    sensors: &[String],
) -> anyhow::Result<HomeInTwin> {
    let consents = Consents::new(crate::consent::load(files.consent)?);
    let past = crate::groups::load(files.groups)?;
    describe_home(scene, privacy, &consents, &past, sensors)
        .map_err(|err| anyhow::anyhow!("the scene cannot be built: {err}"))
}

/// Answers residents' requests over the protocol, for their token's home.
pub(crate) struct Residents {
    pub(crate) history: std::path::PathBuf,
    pub(crate) audit_path: std::path::PathBuf,
    pub(crate) audit: AuditLog,
    pub(crate) consent: TwinLink,
    pub(crate) consent_path: std::path::PathBuf,
    pub(crate) groups_path: std::path::PathBuf,
}

fn unavailable(what: &str, err: &dyn std::fmt::Display) -> ProtocolError {
    warn!("resident request failed: {what}: {err:#}");
    ProtocolError {
        code: ErrorCode::Unavailable,
        detail: format!("{what} failed; try again later"),
    }
}

impl ResidentService for Residents {
    fn answer(
        &self,
        grant: &Grant,
        action: &ResidentAction,
    ) -> Result<ResidentAnswer, ProtocolError> {
        let home: Vec<String> = grant.own_sensors.to_vec();
        let files = DataFiles {
            history: &self.history,
            audit: &self.audit_path,
            consent: &self.consent_path,
            groups: &self.groups_path,
        };
        match action {
            ResidentAction::Export(format) => {
                let Some(in_twin) = self.consent.home(&home) else {
                    return Err(unavailable("export", &"the twin did not answer in time"));
                };
                let exported = export(&files, &self.audit, &in_twin, &home, &grant.name)
                    .map_err(|err| unavailable("export", &err))?;
                let bytes = match format {
                    ExportFormat::Json => serde_json::to_vec_pretty(&exported)
                        .map_err(|err| unavailable("export", &err))?,
                    ExportFormat::Csv => exported.to_csv().into_bytes(),
                };
                if bytes.len() > MAX_PROTOCOL_EXPORT_BYTES {
                    return Err(ProtocolError {
                        code: ErrorCode::InvalidRequest,
                        detail: format!(
                            "the export is {} MiB, more than the {} MiB sent over the protocol; \
                             ask the operator for it (`polis resident export`)",
                            bytes.len() >> 20,
                            MAX_PROTOCOL_EXPORT_BYTES >> 20
                        ),
                    });
                }
                Ok(ResidentAnswer::Document(bytes))
            }
            ResidentAction::Erase { before_ms } => {
                let readings = erase(&files, &self.audit, &home, *before_ms, &grant.name)
                    .map_err(|err| unavailable("erasure", &err))?;
                Ok(ResidentAnswer::Outcome(ResidentOutcome::Erased {
                    readings,
                }))
            }
            ResidentAction::GetConsent => {
                let consent = home_consent(&self.consent_path, &home)
                    .map_err(|err| unavailable("reading consent", &err))?;
                Ok(ResidentAnswer::Outcome(ResidentOutcome::Consent(consent)))
            }
            ResidentAction::SetConsent(consent) => {
                use crate::consent::ConsentError;
                let set = self.consent.set(&home, *consent);
                if matches!(set, Ok(()) | Err(ConsentError::NotApplied)) {
                    // Recorded (applied, or about to be).
                    self.audit.consent(&grant.name, &home, *consent);
                }
                match set {
                    Ok(()) => {}
                    Err(ConsentError::NotApplied) => {
                        return Err(ProtocolError {
                            code: ErrorCode::Unavailable,
                            detail: "consent recorded; it takes effect as soon as the server \
                                     catches up (ask again for the consent to see it)"
                                .into(),
                        });
                    }
                    Err(err) => return Err(unavailable("recording consent", &err)),
                }
                let now = home_consent(&self.consent_path, &home)
                    .map_err(|err| unavailable("reading consent", &err))?;
                Ok(ResidentAnswer::Outcome(ResidentOutcome::Consent(now)))
            }
        }
    }
}

/// What the whole home consents to: a role only if every one of its
/// sensors consents to it.
pub fn home_consent(path: &Path, home: &[String]) -> anyhow::Result<Consent> {
    let each = crate::consent::of(path, home)?;
    Ok(Consent {
        planners: each.iter().all(|(_, c)| c.planners),
        public: each.iter().all(|(_, c)| c.public),
    })
}

impl ResidentExport {
    /// The export as CSV: one row per reading, derived aggregate and access,
    /// `record,sensor,time,value,quality,detail` (RFC 4180 quoting).
    pub fn to_csv(&self) -> String {
        let mut out = String::from("record,sensor,time,value,quality,detail\r\n");
        let mut row = |fields: [&str; 6]| {
            let quoted: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
            out.push_str(&quoted.join(","));
            out.push_str("\r\n");
        };
        for sensor in &self.sensors {
            for reading in &sensor.readings {
                let quality = reading.quality.map(|q| q.to_string()).unwrap_or_default();
                let unit = sensor.unit.clone().unwrap_or_default();
                row([
                    "reading",
                    &sensor.id,
                    &reading.time,
                    &reading.value.to_string(),
                    &quality,
                    &unit,
                ]);
            }
        }
        for sensor in &self.sensors {
            let yes_no = |yes: bool| if yes { "yes" } else { "no" };
            let detail = format!(
                "aggregates for planners: {}; for the public: {}",
                yes_no(sensor.consent.planners),
                yes_no(sensor.consent.public)
            );
            row(["consent", &sensor.id, "", "", "", &detail]);
        }
        for derived in &self.derived {
            let detail = format!(
                "{} (shown to {}, {} households{})",
                derived.id,
                derived.shown_to,
                derived.households,
                if derived.withdrawn {
                    "; withdrawn after a change of consent"
                } else {
                    ""
                }
            );
            for sensor in &derived.from {
                row(["derived", sensor, "", "", "", &detail]);
            }
        }
        for entry in &self.access {
            let time = entry["time"].as_str().unwrap_or_default();
            let who = entry["who"].as_str().unwrap_or_default();
            let what = entry["what"].as_str().unwrap_or_default();
            let detail = format!("{what} by {who}");
            let named: Vec<&str> = entry["sensors"]
                .as_array()
                .map(|a| a.iter().filter_map(|s| s.as_str()).collect())
                .unwrap_or_default();
            for sensor in self
                .sensors
                .iter()
                .filter(|s| named.contains(&s.id.as_str()))
            {
                row(["access", &sensor.id, time, "", "", &detail]);
            }
        }
        out
    }
}

/// One CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}
