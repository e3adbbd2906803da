//! `polis config …`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::serve::{ServeArgs, effective_config};
use crate::{Config, ConfigError};

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Validate a configuration file and explain every error.
    Check {
        /// The file (e.g. polis.toml).
        file: PathBuf,
    },
    /// Print the effective configuration (defaults < file < POLIS_… environment
    /// < flags) as TOML, with token secrets replaced by their SHA-256.
    Show {
        #[command(flatten)]
        serve: ServeArgs,
    },
}

pub(crate) fn run(command: ConfigCommand) -> anyhow::Result<ExitCode> {
    match command {
        ConfigCommand::Check { file } => match Config::load(&file) {
            Ok(config) => {
                println!(
                    "{}: ok ({} token{}, listening on {})",
                    file.display(),
                    config.tokens.len(),
                    if config.tokens.len() == 1 { "" } else { "s" },
                    config.listen
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(err @ (ConfigError::Syntax { .. } | ConfigError::Invalid { .. })) => {
                eprintln!("{err}");
                Ok(ExitCode::from(1))
            }
            Err(err) => Err(err.into()),
        },
        ConfigCommand::Show { serve } => {
            let config = effective_config(&serve)?;
            print!("{}", config.to_toml_redacted());
            Ok(ExitCode::SUCCESS)
        }
    }
}
