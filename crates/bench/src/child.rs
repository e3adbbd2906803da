//! The system under test in a process of its own: `polis-bench` starts
//! itself again as the hidden `target` subcommand, pinned to the server
//! core, and talks to it in JSON lines (its stdout; requests on its stdin).
//! The child is killed when its handle is dropped, and stops by itself when
//! its stdin closes, so neither an error nor Ctrl-C leaves it behind.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use anyhow::Context as _;
use serde::de::DeserializeOwned;

use crate::procstat::Pid;

/// A running `polis-bench target …` process.
pub(crate) struct TargetProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    what: &'static str,
}

impl TargetProcess {
    /// Starts `polis-bench target [--core CORE] ARGS…` (this executable).
    pub(crate) fn spawn(
        what: &'static str,
        core: Option<usize>,
        args: &[std::ffi::OsString],
    ) -> anyhow::Result<TargetProcess> {
        let exe = std::env::current_exe().context("cannot find the polis-bench executable")?;
        let mut command = Command::new(&exe);
        command.arg("target");
        if let Some(core) = core {
            command.arg("--core").arg(core.to_string());
        }
        let mut child = command
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {} ({what})", exe.display()))?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .context("the target process has no stdout")?;
        Ok(TargetProcess {
            child,
            stdin,
            stdout: BufReader::new(stdout),
            what,
        })
    }

    /// The child's process id.
    pub(crate) fn pid(&self) -> Pid {
        Pid(self.child.id())
    }

    /// Waits for the child's next line and reads it as a `T`.
    pub(crate) fn read<T: DeserializeOwned>(&mut self) -> anyhow::Result<T> {
        let mut line = String::new();
        let read = self
            .stdout
            .read_line(&mut line)
            .with_context(|| format!("cannot read from the {} process", self.what))?;
        if read == 0 {
            let status = self.child.wait()?;
            anyhow::bail!(
                "the {} process ended ({status}) without answering (see its errors above)",
                self.what
            );
        }
        serde_json::from_str(&line)
            .with_context(|| format!("the {} process answered `{}`", self.what, line.trim()))
    }

    /// Sends `request` (one line) and reads the answer.
    pub(crate) fn request<T: DeserializeOwned>(&mut self, request: &str) -> anyhow::Result<T> {
        let stdin = self
            .stdin
            .as_mut()
            .with_context(|| format!("the {} process's stdin is closed", self.what))?;
        writeln!(stdin, "{request}")
            .and_then(|()| stdin.flush())
            .with_context(|| format!("cannot write to the {} process", self.what))?;
        self.read()
    }
}

impl Drop for TargetProcess {
    fn drop(&mut self) {
        // Closing stdin asks the child to stop; kill it if it has not within
        // 2 s.
        drop(self.stdin.take());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while std::time::Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `config` if the server would accept it (the rules of
/// [`polis_server::Config::problems`]), else the problems, for settings the
/// bench derives from its options.
pub(crate) fn checked(config: polis_server::Config) -> anyhow::Result<polis_server::Config> {
    let problems = config.problems();
    anyhow::ensure!(
        problems.is_empty(),
        "these bench settings give the server a configuration it refuses: {}",
        problems
            .iter()
            .map(|p| format!("{}: {}", p.key, p.message))
            .collect::<Vec<_>>()
            .join("; ")
    );
    Ok(config)
}

/// Starts a Polis server with `config` on a grid city of `sensors` sensors
/// in a target process pinned to `core` (its configuration file written to
/// `dir`); returns once it listens.
pub(crate) fn start_polis(
    config: polis_server::Config,
    sensors: usize,
    core: Option<usize>,
    dir: &std::path::Path,
) -> anyhow::Result<(TargetProcess, crate::target::PolisReady)> {
    let config = checked(config)?;
    let path = dir.join("polis-bench-server.toml");
    std::fs::write(&path, toml::to_string(&config)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    let mut process = TargetProcess::spawn(
        "Polis server",
        core,
        &[
            "polis".into(),
            "--config".into(),
            path.into_os_string(),
            "--grid-sensors".into(),
            sensors.to_string().into(),
        ],
    )?;
    let ready = process.read()?;
    Ok((process, ready))
}
