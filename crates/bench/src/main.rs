//! End-to-end benchmarks of Polis against mosquitto in the same run, server and load pinned to cores of their own: the `polis-bench` command.
//!
//! Each scenario runs the system under test (the Polis server, mosquitto,
//! the history store alone) in a process of its own on one core, and its
//! load generators in this process on another, and reports both sides' CPU.
//! `polis-bench target …` (hidden) is this executable started again as the
//! system under test.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod child;
mod dp;
mod fanout;
mod ingest;
mod layout;
mod measure;
mod mosquitto;
mod mqtt_ingest;
mod pin;
mod procstat;
mod scale;
mod scene;
mod store;
mod target;

/// Polis benchmarks: each scenario with its baseline in the same run, the
/// system under test and the load pinned to cores of their own.
#[derive(Debug, Parser)]
#[command(name = "polis-bench", version, about, long_about = None)]
struct Cli {
    /// Run unpinned: let the scheduler place the server and the load on any
    /// core (the figures then include their contention).
    #[arg(long, global = true)]
    no_pin: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Gateways push batched readings as fast as they are acknowledged (with
    /// durable history); baselines: the history store alone writing the same
    /// rows, and mosquitto taking the same readings at QoS 1.
    Ingest(ingest::IngestArgs),
    /// Devices publish readings at QoS 1 to mosquitto; Polis reads them as an
    /// `[[mqtt]]` source and acknowledges each once durable; in the same run
    /// mosquitto delivers the same messages to a bare subscriber: readings/s
    /// of both, their ratio, and Polis' arrival-to-PUBACK latency.
    MqttIngest(mqtt_ingest::MqttIngestArgs),
    /// Resident memory per building (with its meter) for a synthetic city,
    /// and area-query latency; baseline: a linear scan over the same points.
    Scale(scale::ScaleArgs),
    /// Viewers each watching ~1,000 sensors while a tenth of the sensors
    /// change each second: sensor-to-viewer latency, bytes on the wire per
    /// value, server and load CPU; baseline: mosquitto (started by the
    /// bench) doing the same job with per-sensor topics under spatial tile
    /// prefixes.
    Fanout(fanout::FanoutArgs),
    /// What differential privacy on public aggregates costs in accuracy:
    /// the bundled city driven by the replay's load profiles, noisy public
    /// aggregates against exact ones in the same run.
    Dp(dp::DpArgs),
    /// The system under test, started by the scenarios themselves.
    #[command(hide = true)]
    Target {
        /// The CPU to pin this process to, before it starts any thread.
        #[arg(long)]
        core: Option<usize>,
        #[command(subcommand)]
        command: target::TargetCommand,
    },
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

/// Pins this process (before any thread starts), then runs the command.
fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Target { core, command } = cli.command {
        pin::pin_current_thread(core)?;
        init_logging();
        target::run(command)?;
        return Ok(ExitCode::SUCCESS);
    }
    let cores = pin::Cores::plan(!cli.no_pin);
    init_logging();
    match cli.command {
        Command::Ingest(args) => {
            pin::pin_current_thread(cores.load)?;
            ingest::run(args, cores)
        }
        Command::MqttIngest(args) => {
            pin::pin_current_thread(cores.load)?;
            mqtt_ingest::run(args, cores)
        }
        Command::Fanout(args) => {
            pin::pin_current_thread(cores.load)?;
            fanout::run(args, cores)
        }
        Command::Scale(args) => {
            let cores = cores.in_process();
            pin::pin_current_thread(cores.server)?;
            scale::run(args, cores)
        }
        Command::Dp(args) => dp::run(args),
        Command::Target { .. } => Ok(ExitCode::SUCCESS),
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}
