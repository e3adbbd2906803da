//! The `polis` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

mod audit;
mod config;
mod history;
mod import;
mod progress;
mod push;
mod replay;
mod replay_mqtt;
mod resident;
mod scene;
mod serve;
mod token;
mod watch;

/// Polis: a live digital twin of a city, served over QUIC.
#[derive(Debug, Parser)]
#[command(name = "polis", version, about, long_about = None)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true, env = "POLIS_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the headless server (on the bundled scene unless told otherwise).
    Serve(serve::ServeArgs),
    /// Check or show the server's configuration.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Make access tokens.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Import real data (OpenStreetMap, EPANET) into scenes.
    #[command(subcommand)]
    Import(import::ImportCommand),
    /// Work with scene files.
    #[command(subcommand)]
    Scene(scene::SceneCommand),
    /// Push readings from a CSV file (`sensor,time,value[,quality]`) as a gateway.
    Push(push::PushArgs),
    /// Watch the live values of an area as a viewer.
    Watch(watch::WatchArgs),
    /// Query the recorded readings of a sensor (raw or aggregated).
    History(history::HistoryArgs),
    /// Read the audit log of access to personal data (who saw which
    /// households' sensors, when), filtered by sensor, who, kind and time.
    Audit(audit::AuditArgs),
    /// Answer a resident's request: export everything held about their
    /// home, or erase its recorded readings (audited).
    #[command(subcommand)]
    Resident(resident::ResidentCommand),
    /// Drive a server's twin with feeds built from real data (SimBench load
    /// and PV profiles, a real water-flow series, EPANET demand patterns,
    /// transit along the real routes) in simulated time, as a gateway or
    /// through an MQTT broker (`--mqtt`).
    Replay(replay::ReplayCommand),
}

/// How to reach a server as a client.
#[derive(Debug, Clone, Args)]
struct ServerArgs {
    /// Server address, HOST:PORT.
    #[arg(long, default_value = crate::DEFAULT_LISTEN)]
    server: String,
    /// The server's certificate (PEM), e.g. `polis-data/tls/cert.pem`.
    #[arg(long)]
    cert: PathBuf,
    /// Access token (or set POLIS_TOKEN).
    #[arg(long, env = "POLIS_TOKEN", hide_env_values = true)]
    token: String,
}

impl ServerArgs {
    /// How to connect to the server with these arguments, as `role`.
    fn client_options(&self, role: polis_protocol::Role) -> polis_net::ClientOptions {
        polis_net::ClientOptions::new(
            self.server.clone(),
            self.cert.clone(),
            self.token.clone(),
            role,
        )
    }
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Parses the command line, runs the command, and maps the outcome to an
/// exit code: 0 success, 1 the command ran but reports a failure (e.g.
/// refused readings), 2 it could not run.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Config(command) => config::run(command),
        Command::Token(command) => token::run(command),
        Command::Import(command) => import::run(command),
        Command::Scene(command) => scene::run(command),
        Command::Push(args) => push::run(args),
        Command::Watch(args) => watch::run(args),
        Command::History(args) => history::run(args),
        Command::Audit(args) => audit::run(args),
        Command::Resident(command) => resident::run(command),
        Command::Replay(args) => replay::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// A single-threaded tokio runtime, for a client command or a helper thread.
pub(crate) fn client_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Milliseconds since the Unix epoch of the RFC 3339 time given for `flag`.
pub(crate) fn parse_time_ms(flag: &str, text: &str) -> anyhow::Result<i64> {
    use anyhow::Context as _;
    let time = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .with_context(|| format!("{flag} `{text}` is not an RFC 3339 time"))?;
    i64::try_from(time.unix_timestamp_nanos() / 1_000_000)
        .with_context(|| format!("{flag} `{text}` is out of range"))
}

/// RFC 3339 text of a device time in ms since the Unix epoch.
pub(crate) fn format_time_ms(device_time_ms: i64) -> String {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(device_time_ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| device_time_ms.to_string())
}
