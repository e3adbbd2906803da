//! `polis resident`: answer a resident's data-subject request — export
//! everything held about their home, or erase its recorded readings — on
//! the server's data directory (the server may be running).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};

use super::parse_time_ms;
use crate::config::Config;
use crate::resident::{DataFiles, erase, export, home_consent, home_in_scene};

/// Whose data: a resident token's name in the configuration, or sensor ids.
#[derive(Debug, Args)]
pub(crate) struct Whose {
    /// Configuration file (the data directory, scene, privacy settings and
    /// resident tokens come from it).
    #[arg(long, env = "POLIS_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory, overriding the configuration's.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The resident: the `name` of a `role = "resident"` token in the
    /// configuration; its `sensors` are the home's.
    #[arg(long, conflicts_with = "sensor", required_unless_present = "sensor")]
    resident: Option<String>,
    /// The home's sensor ids instead (repeat or comma-separate).
    #[arg(long, value_delimiter = ',')]
    sensor: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ResidentCommand {
    /// Everything held about the home's sensors: recorded readings, the
    /// aggregates derived from them and who is shown each, and every audited
    /// access. JSON (default) or CSV, to stdout or `--out`.
    Export {
        #[command(flatten)]
        whose: Whose,
        /// CSV (`record,sensor,time,value,quality,detail`) instead of JSON.
        #[arg(long)]
        csv: bool,
        /// Write here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Delete the home's recorded readings (all, or those before
    /// `--before`), from every history path at once; audited.
    Erase {
        #[command(flatten)]
        whose: Whose,
        /// Only readings with a device time before this, RFC 3339.
        #[arg(long)]
        before: Option<String>,
    },
    /// Show or set what the home lets Polis derive from its sensors:
    /// whether its readings may feed planners' aggregates and the public's.
    /// A running server applies a change within a second (every aggregate
    /// the home feeds is withdrawn until its next start); audited.
    Consent {
        #[command(flatten)]
        whose: Whose,
        /// May the home's readings feed planners' aggregates?
        #[arg(long, value_parser = yes_no)]
        planners: Option<bool>,
        /// May the home's readings feed the public's aggregates?
        #[arg(long, value_parser = yes_no)]
        public: Option<bool>,
    },
}

fn yes_no(text: &str) -> Result<bool, String> {
    match text {
        "yes" => Ok(true),
        "no" => Ok(false),
        other => Err(format!("`{other}` is neither `yes` nor `no`")),
    }
}

/// The effective configuration, the home's sensors and who asked.
fn resolve(whose: &Whose) -> anyhow::Result<(Config, Vec<String>, String)> {
    let mut overrides = Vec::new();
    if let Some(dir) = &whose.data_dir {
        overrides.push((
            "--data-dir".to_owned(),
            "data_dir",
            dir.display().to_string(),
        ));
    }
    let config = Config::layered(whose.config.as_deref(), &overrides)?;
    match &whose.resident {
        Some(name) => {
            let Some(token) = config
                .tokens
                .iter()
                .find(|t| t.name.as_deref() == Some(name.as_str()))
            else {
                bail!("no token named `{name}` in the configuration");
            };
            if token.sensors.is_empty() {
                bail!("token `{name}` is not a resident's (it names no sensors)");
            }
            let sensors = token.sensors.clone();
            Ok((config, sensors, name.clone()))
        }
        None => Ok((config, whose.sensor.clone(), "operator".to_owned())),
    }
}

pub(crate) fn run(command: ResidentCommand) -> anyhow::Result<ExitCode> {
    match command {
        ResidentCommand::Export { whose, csv, out } => {
            let (config, sensors, who) = resolve(&whose)?;
            let scene = crate::load_scene(config.scene.as_deref())?;
            let (history, audit, consent, groups) = (
                config.history_path(),
                config.audit_path(),
                config.consent_path(),
                config.groups_path(),
            );
            let files = DataFiles {
                history: &history,
                audit: &audit,
                consent: &consent,
                groups: &groups,
            };
            let home = home_in_scene(&files, &scene, &config.privacy_options(), &sensors)?;
            let audit_log = crate::audit::AuditLog::open(&audit)?;
            let exported = export(&files, &audit_log, &home, &sensors, &who)?;
            let text = if csv {
                exported.to_csv()
            } else {
                let mut text = serde_json::to_string_pretty(&exported)?;
                text.push('\n');
                text
            };
            match out {
                Some(path) => std::fs::write(&path, text)
                    .with_context(|| format!("cannot write {}", path.display()))?,
                None => std::io::stdout().lock().write_all(text.as_bytes())?,
            }
            let readings: usize = exported.sensors.iter().map(|s| s.readings.len()).sum();
            eprintln!(
                "exported {} sensors, {readings} readings, {} derived aggregates, {} accesses",
                exported.sensors.len(),
                exported.derived.len(),
                exported.access.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        ResidentCommand::Erase { whose, before } => {
            let (config, sensors, who) = resolve(&whose)?;
            let before_ms = before
                .as_deref()
                .map(|t| parse_time_ms("--before", t))
                .transpose()?;
            let (history, audit, consent, groups) = (
                config.history_path(),
                config.audit_path(),
                config.consent_path(),
                config.groups_path(),
            );
            let files = DataFiles {
                history: &history,
                audit: &audit,
                consent: &consent,
                groups: &groups,
            };
            let audit_log = crate::audit::AuditLog::open(&audit)?;
            let deleted = erase(&files, &audit_log, &sensors, before_ms, &who)?;
            eprintln!(
                "erased {deleted} recorded readings of {} sensors",
                sensors.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        ResidentCommand::Consent {
            whose,
            planners,
            public,
        } => {
            let (config, sensors, who) = resolve(&whose)?;
            let path = config.consent_path();
            let now = home_consent(&path, &sensors)?;
            if planners.is_some() || public.is_some() {
                let wanted = polis_protocol::Consent {
                    planners: planners.unwrap_or(now.planners),
                    public: public.unwrap_or(now.public),
                };
                std::fs::create_dir_all(&config.data_dir)
                    .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
                crate::consent::set(&path, &sensors, wanted)?;
                crate::audit::AuditLog::open(&config.audit_path())?.consent(&who, &sensors, wanted);
            }
            let now = home_consent(&path, &sensors)?;
            let yes_no = |yes: bool| if yes { "yes" } else { "no" };
            println!(
                "planners: {}\npublic: {}",
                yes_no(now.planners),
                yes_no(now.public)
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
