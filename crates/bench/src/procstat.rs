//! What the kernel counts for a process, its threads and the machine
//! (`/proc`): CPU time, run-queue wait, loopback traffic. Every figure is a
//! running total; a scenario reads it at the start and the end of its
//! measured window and reports the difference per second.

use std::collections::BTreeMap;

/// Clock ticks per second of `/proc/*/stat` (USER_HZ on Linux).
const TICKS_PER_S: f64 = 100.0;

/// A process to measure: this one or a child, by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pid(pub(crate) u32);

impl Pid {
    /// This process.
    pub(crate) fn current() -> Pid {
        Pid(std::process::id())
    }

    fn dir(self) -> String {
        format!("/proc/{}", self.0)
    }
}

/// The name (between the parentheses) and the fields after it of a
/// `/proc/…/stat` line.
fn stat_fields(stat: &str) -> Option<(&str, Vec<&str>)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?;
    Some((name, stat.get(close + 2..)?.split_whitespace().collect()))
}

/// User plus system CPU seconds of a `/proc/…/stat` line.
fn stat_cpu_s(stat: &str) -> Option<(String, f64)> {
    let (name, fields) = stat_fields(stat)?;
    let utime = fields.get(11)?.parse::<f64>().ok()?;
    let stime = fields.get(12)?.parse::<f64>().ok()?;
    Some((name.to_owned(), (utime + stime) / TICKS_PER_S))
}

/// CPU seconds used so far by process `pid`, all its threads (NaN when it
/// cannot be read).
pub(crate) fn process_cpu_s(pid: Pid) -> f64 {
    std::fs::read_to_string(format!("{}/stat", pid.dir()))
        .ok()
        .and_then(|stat| stat_cpu_s(&stat))
        .map_or(f64::NAN, |(_, seconds)| seconds)
}

/// CPU seconds used so far by each named thread of process `pid` (threads
/// of the same name summed).
pub(crate) fn cpu_by_thread(pid: Pid) -> BTreeMap<String, f64> {
    by_thread(pid, |task| {
        let stat = std::fs::read_to_string(task.join("stat")).ok()?;
        stat_cpu_s(&stat)
    })
}

/// Seconds each named thread of process `pid` spent runnable but waiting
/// for a CPU so far (`schedstat`, second field, ns).
pub(crate) fn run_queue_wait_by_thread(pid: Pid) -> BTreeMap<String, f64> {
    by_thread(pid, |task| {
        let name = std::fs::read_to_string(task.join("comm")).ok()?;
        let wait_ns = std::fs::read_to_string(task.join("schedstat"))
            .ok()?
            .split_whitespace()
            .nth(1)?
            .parse::<f64>()
            .ok()?;
        Some((name.trim().to_owned(), wait_ns / 1e9))
    })
}

fn by_thread(
    pid: Pid,
    read: impl Fn(&std::path::Path) -> Option<(String, f64)>,
) -> BTreeMap<String, f64> {
    let mut totals = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("{}/task", pid.dir())) else {
        return totals;
    };
    for task in tasks.flatten() {
        if let Some((name, value)) = read(&task.path()) {
            *totals.entry(name).or_insert(0.0) += value;
        }
    }
    totals
}

/// The CPUs process `pid` may run on, as the kernel lists them
/// (`Cpus_allowed_list`, e.g. `0` or `0-1`).
pub(crate) fn allowed_cpus(pid: Pid) -> String {
    std::fs::read_to_string(format!("{}/status", pid.dir()))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .map(|list| list.trim().to_owned())
        })
        .unwrap_or_else(|| "?".into())
}

/// CPU seconds used so far by the whole machine (all processes, all cores,
/// not idle), from `/proc/stat`.
pub(crate) fn machine_busy_s() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return f64::NAN;
    };
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return f64::NAN;
    };
    let ticks: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    // user nice system idle iowait irq softirq steal …
    let busy: f64 = ticks.iter().take(8).sum::<f64>()
        - ticks.get(3).copied().unwrap_or(0.0)
        - ticks.get(4).copied().unwrap_or(0.0);
    busy / TICKS_PER_S
}

/// CPUs online in the machine (`cpuN` lines of `/proc/stat`), whatever
/// this process may run on.
pub(crate) fn cpus_online() -> usize {
    std::fs::read_to_string("/proc/stat").map_or(0, |stat| {
        stat.lines()
            .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
            .count()
    })
}

/// Bytes and packets sent on the loopback interface so far (all protocols,
/// all headers), from `/proc/net/dev`.
pub(crate) fn loopback_tx() -> Option<(u64, u64)> {
    let dev = std::fs::read_to_string("/proc/net/dev").ok()?;
    let line = dev.lines().find(|l| l.trim_start().starts_with("lo:"))?;
    let (_, counters) = line.split_once(':')?;
    let fields: Vec<u64> = counters
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    Some((*fields.get(8)?, *fields.get(9)?))
}

/// One reading of a process's counters; two of them give its use of the
/// machine between them.
#[derive(Debug, Clone)]
pub(crate) struct ProcessSample {
    at: std::time::Instant,
    cpu_s: f64,
    threads_cpu_s: BTreeMap<String, f64>,
    wait_s: f64,
    machine_busy_s: f64,
}

impl ProcessSample {
    /// Reads process `pid`'s counters now.
    pub(crate) fn take(pid: Pid) -> ProcessSample {
        ProcessSample {
            at: std::time::Instant::now(),
            cpu_s: process_cpu_s(pid),
            threads_cpu_s: cpu_by_thread(pid),
            wait_s: run_queue_wait_by_thread(pid).values().sum(),
            machine_busy_s: machine_busy_s(),
        }
    }

    /// What the process used from `self` to `later`, per second.
    pub(crate) fn until(&self, later: &ProcessSample) -> ProcessUse {
        let seconds = later.at.duration_since(self.at).as_secs_f64().max(1e-9);
        let threads = later
            .threads_cpu_s
            .iter()
            .map(|(name, after)| {
                let before = self.threads_cpu_s.get(name).copied().unwrap_or(0.0);
                (name.clone(), (after - before) / seconds)
            })
            .collect();
        ProcessUse {
            cores: (later.cpu_s - self.cpu_s) / seconds,
            threads,
            wait: (later.wait_s - self.wait_s) / seconds,
            machine_cores: (later.machine_busy_s - self.machine_busy_s) / seconds,
        }
    }
}

/// A process's use of the machine over a window.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProcessUse {
    /// CPU, cores (user + system, all threads).
    pub(crate) cores: f64,
    /// CPU by thread name, cores.
    pub(crate) threads: BTreeMap<String, f64>,
    /// Time its threads were runnable but waiting for a CPU, seconds per
    /// second (summed over threads).
    pub(crate) wait: f64,
    /// The whole machine's busy CPU over the same window (every process),
    /// cores: shows other work competing with the benchmark.
    pub(crate) machine_cores: f64,
}

impl ProcessUse {
    /// Cores of the thread named `name` (0 when it did not run).
    pub(crate) fn thread(&self, name: &str) -> f64 {
        self.threads.get(name).copied().unwrap_or(0.0)
    }

    /// Threads that used at least 0.005 core, `name cores` each.
    pub(crate) fn busy_threads(&self) -> String {
        self.threads
            .iter()
            .filter(|(_, cores)| **cores >= 0.005)
            .map(|(name, cores)| format!("{name} {cores:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "cores": self.cores,
            "threads": self.threads,
            "run_queue_wait_s_per_s": self.wait,
            "machine_busy_cores": self.machine_cores,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_spaces_and_parentheses_in_the_name() {
        let line = "42 (tokio (rt) 1) S 1 42 42 0 -1 4194368 10 0 0 0 250 75 0 0 20 0 3 0 1 2 3";
        assert_eq!(stat_cpu_s(line), Some(("tokio (rt) 1".into(), 3.25)));
        assert_eq!(stat_cpu_s("42 (x) S 1"), None);
    }

    #[test]
    fn this_process_is_measured() {
        let before = ProcessSample::take(Pid::current());
        let mut spin = 0u64;
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_millis(50) {
            spin = std::hint::black_box(spin.wrapping_add(1));
        }
        let used = before.until(&ProcessSample::take(Pid::current()));
        assert!(used.cores.is_finite() && used.cores >= 0.0);
        assert!(!used.threads.is_empty());
        assert_ne!(allowed_cpus(Pid::current()), "?");
    }
}
