//! `polis token new`: a fresh token and the `polis.toml` lines that grant it.

use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};

use crate::{new_token, token_sha256};

/// Roles a token can grant.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum RoleArg {
    /// Push readings (optionally only for some sensor-id prefixes).
    Gateway,
    /// View raw personal data (audited).
    Operator,
    /// View personal data as aggregates over at least k_planner homes.
    Planner,
    /// View personal data only as aggregates over at least k homes.
    Public,
    /// A household: what the public sees, and its own home's sensors raw
    /// (`--sensors`).
    Resident,
}

impl RoleArg {
    fn as_str(self) -> &'static str {
        match self {
            RoleArg::Gateway => "gateway",
            RoleArg::Operator => "operator",
            RoleArg::Planner => "planner",
            RoleArg::Public => "public",
            RoleArg::Resident => "resident",
        }
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Print a new random token and the `[[token]]` entry (with its SHA-256
    /// only) to add to polis.toml.
    New {
        /// What the token grants.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// For gateways: sensor-id prefixes it may write (repeat or
        /// comma-separate); all sensors when absent.
        #[arg(long, value_delimiter = ',')]
        scope: Vec<String>,
        /// For residents: the ids of the home's sensors (repeat or
        /// comma-separate); required for residents only.
        #[arg(long, value_delimiter = ',')]
        sensors: Vec<String>,
        /// A name for logs and the audit log.
        #[arg(long)]
        name: Option<String>,
    },
}

fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

pub(crate) fn run(command: TokenCommand) -> anyhow::Result<ExitCode> {
    let TokenCommand::New {
        role,
        scope,
        sensors,
        name,
    } = command;
    if !scope.is_empty() && !matches!(role, RoleArg::Gateway) {
        anyhow::bail!("--scope applies to gateway tokens only");
    }
    match (matches!(role, RoleArg::Resident), sensors.is_empty()) {
        (true, true) => anyhow::bail!("a resident token needs --sensors (the home's sensor ids)"),
        (false, false) => anyhow::bail!("--sensors applies to resident tokens only"),
        _ => {}
    }
    let token = new_token();
    println!("token: {token}");
    println!();
    println!("# add to polis.toml (the file keeps only the token's SHA-256):");
    println!("[[token]]");
    if let Some(name) = name {
        println!("name = {}", toml_string(&name));
    }
    println!("role = {}", toml_string(role.as_str()));
    println!("sha256 = {}", toml_string(&token_sha256(&token)));
    if !scope.is_empty() {
        let list: Vec<String> = scope.iter().map(|s| toml_string(s)).collect();
        println!("scope_prefixes = [{}]", list.join(", "));
    }
    if !sensors.is_empty() {
        let list: Vec<String> = sensors.iter().map(|s| toml_string(s)).collect();
        println!("sensors = [{}]", list.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}
