//! The `polis` command: a thin wrapper around [`polis_server::cli::run`].

fn main() -> std::process::ExitCode {
    polis_server::cli::run()
}
