//! Fair runs: the system under test on one core, the load generators on
//! another, so that neither measures the scheduler's contention between
//! them.

use anyhow::Context as _;
use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::unistd::Pid as NixPid;

use crate::procstat::{Pid, allowed_cpus};

/// The cores a run uses: `None` when it runs unpinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cores {
    /// The system under test (the Polis server, mosquitto, the history
    /// store alone, the twin of the scale scenario).
    pub(crate) server: Option<usize>,
    /// The load generators (gateways, viewers, publishers).
    pub(crate) load: Option<usize>,
}

impl Cores {
    /// Unpinned: the scheduler places every thread.
    pub(crate) const UNPINNED: Cores = Cores {
        server: None,
        load: None,
    };

    /// The first two CPUs this process may run on, or unpinned (with a
    /// message saying why) when it may run on fewer or `pin` is false.
    pub(crate) fn plan(pin: bool) -> Cores {
        if !pin {
            eprintln!("cores: unpinned (--no-pin); server and load share every core");
            return Cores::UNPINNED;
        }
        let allowed = match allowed_cores() {
            Ok(allowed) => allowed,
            Err(error) => {
                eprintln!("cores: cannot read this process's CPUs ({error:#}); running unpinned");
                return Cores::UNPINNED;
            }
        };
        match allowed[..] {
            [server, load, ..] => Cores {
                server: Some(server),
                load: Some(load),
            },
            _ => {
                eprintln!(
                    "cores: only {} CPU available (need 2 to pin the server and the load apart); running unpinned",
                    allowed.len()
                );
                Cores::UNPINNED
            }
        }
    }

    /// The cores for a run of the system under test alone in this process
    /// (the scale scenario): the server core for everything.
    pub(crate) fn in_process(self) -> Cores {
        Cores {
            server: self.server,
            load: self.server,
        }
    }

    /// Which CPUs each side may run on, as the kernel lists them for the
    /// server process `server` and this process.
    pub(crate) fn json(self, server: Option<Pid>) -> serde_json::Value {
        serde_json::json!({
            "pinned": self.server.is_some(),
            "server_core": self.server,
            "load_core": self.load,
            "server_cpus_allowed": server.map(allowed_cpus),
            "load_cpus_allowed": allowed_cpus(Pid::current()),
        })
    }

    /// One line for the report: where each side ran.
    pub(crate) fn describe(self, server: Option<Pid>) -> String {
        let server_cpus = server.map_or_else(|| "–".to_owned(), allowed_cpus);
        if server == Some(Pid::current()) {
            let pinned = if self.server.is_some() {
                "pinned"
            } else {
                "unpinned"
            };
            return format!("{pinned}: system under test in this process, on CPUs {server_cpus}");
        }
        match self.server {
            Some(_) => format!(
                "pinned: system under test on CPU {server_cpus}, load generator on CPU {}",
                allowed_cpus(Pid::current())
            ),
            None => format!(
                "unpinned: system under test on CPUs {server_cpus}, load generator on CPUs {}",
                allowed_cpus(Pid::current())
            ),
        }
    }
}

/// The CPUs this process may run on, in order.
fn allowed_cores() -> anyhow::Result<Vec<usize>> {
    let set = sched_getaffinity(NixPid::from_raw(0))?;
    Ok((0..CpuSet::count())
        .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
        .collect())
}

fn only(core: usize) -> anyhow::Result<CpuSet> {
    let mut set = CpuSet::new();
    set.set(core)
        .with_context(|| format!("CPU {core} is out of range"))?;
    Ok(set)
}

/// Pins the calling thread, and every thread it starts from now on, to
/// `core`: called first thing in `main`, before any runtime starts threads.
pub(crate) fn pin_current_thread(core: Option<usize>) -> anyhow::Result<()> {
    if let Some(core) = core {
        sched_setaffinity(NixPid::from_raw(0), &only(core)?)
            .with_context(|| format!("cannot pin this process to CPU {core}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_two_distinct_cores_or_none() {
        let cores = Cores::plan(true);
        match (cores.server, cores.load) {
            (Some(server), Some(load)) => assert_ne!(server, load),
            (None, None) => assert!(allowed_cores().map_or(true, |a| a.len() < 2)),
            other => panic!("half a plan: {other:?}"),
        }
        assert_eq!(Cores::plan(false), Cores::UNPINNED);
        assert_eq!(cores.in_process().load, cores.server);
    }

    #[test]
    fn pins_a_thread_of_its_own() -> anyhow::Result<()> {
        let Some(&core) = allowed_cores()?.last() else {
            return Ok(());
        };
        // A thread of its own, so the test's other threads keep their CPUs.
        let allowed = std::thread::spawn(move || -> anyhow::Result<Vec<usize>> {
            pin_current_thread(Some(core))?;
            allowed_cores()
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the pinned thread panicked"))??;
        assert_eq!(allowed, vec![core]);
        Ok(())
    }
}
