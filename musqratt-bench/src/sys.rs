//! The operating system calls std does not wrap: file descriptor limit, timer slack, the
//! broker's memory from `/proc`, and how busy the machine was (CPU time from `/proc`).
#![allow(unsafe_code)]

use core::time::Duration;
use std::time::Instant;

/// Raises the soft RLIMIT_NOFILE of this process to its hard limit; returns the new soft limit.
pub(crate) fn raise_nofile() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0)
}

/// Makes this thread's sleeps wake on time (Linux rounds them up by 50 µs by default).
pub(crate) fn precise_timer_slack() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_TIMERSLACK takes an integer argument and affects the calling thread only.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
}

/// Waits until `deadline`: sleeps while more than `spin` remains, then spins.
pub(crate) fn spin_sleep_until(deadline: Instant, spin: Duration) {
    loop {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        let left = deadline - now;
        if left > spin {
            std::thread::sleep(left - spin);
        } else {
            core::hint::spin_loop();
        }
    }
}

/// A field of `/proc/PID/status` in bytes (`VmRSS`, `VmHWM`) or as a number (`Threads`).
pub(crate) fn proc_status(pid: u32, field: &str) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = text
        .lines()
        .find(|line| line.starts_with(field) && line[field.len()..].starts_with(':'))
        .ok_or_else(|| anyhow::anyhow!("no {field} in /proc/{pid}/status"))?;
    let mut parts = line[field.len() + 1..].split_whitespace();
    let value: u64 = parts.next().unwrap_or("0").parse()?;
    Ok(match parts.next() {
        Some("kB") => value * 1024,
        _ => value,
    })
}

/// CPU time counters at one instant, in clock ticks (`USER_HZ`), as `/proc` gives them.
#[derive(Debug, Clone, Copy)]
struct CpuSample {
    at: Instant,
    /// All CPUs, busy time: user + nice + system + irq + softirq + steal (not idle, not iowait).
    machine: u64,
    /// This process, all its threads (live and exited): utime + stime.
    own: u64,
    /// The broker's process, when its pid is known and readable.
    broker: Option<u64>,
}

impl CpuSample {
    /// Reads the counters now; `None` off Linux or when `/proc` cannot be read.
    fn now(pid: Option<u32>) -> Option<Self> {
        let machine = parse_machine_busy(&std::fs::read_to_string("/proc/stat").ok()?)?;
        let own = parse_process_cpu(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
        let broker = pid.and_then(|pid| {
            parse_process_cpu(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
        });
        Some(Self { at: Instant::now(), machine, own, broker })
    }
}

/// How busy the machine was over a window, in cores (1.0 = one core busy all the time).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuUse {
    /// Busy CPU time of everything but this process and the broker: what a quiet machine keeps
    /// near 0, and what makes a latency run not comparable with another when it is not.
    pub(crate) other_cores: f64,
    /// The broker's own CPU time, when `--pid` was given.
    pub(crate) broker_cores: Option<f64>,
}

/// Measures [`CpuUse`] over a window without the scenario knowing: a thread of its own samples
/// `/proc` when the window starts (after the warm-up) and when it ends, so that no measured
/// thread pays for reading `/proc`, and the warm-up and drain do not count.
pub(crate) struct CpuWindow {
    sampler: std::thread::JoinHandle<(Option<CpuSample>, Option<CpuSample>)>,
    end_known: bool,
    pid: Option<u32>,
}

impl CpuWindow {
    /// Samples at `start` and, if given, at `end`; otherwise [`Self::finish`] samples the end.
    pub(crate) fn new(pid: Option<u32>, start: Instant, end: Option<Instant>) -> Self {
        let sampler = std::thread::spawn(move || {
            sleep_until(start);
            let first = CpuSample::now(pid);
            let last = end.and_then(|end| {
                sleep_until(end);
                CpuSample::now(pid)
            });
            (first, last)
        });
        Self { sampler, end_known: end.is_some(), pid }
    }

    /// The CPU use over the window (waits for its end if it has not come yet); `None` when
    /// `/proc` could not be read.
    pub(crate) fn finish(self) -> Option<CpuUse> {
        let (first, last) = self.sampler.join().ok()?;
        let last = if self.end_known { last } else { CpuSample::now(self.pid) };
        cpu_use(&first?, &last?)
    }
}

fn sleep_until(deadline: Instant) {
    let now = Instant::now();
    if deadline > now {
        std::thread::sleep(deadline - now);
    }
}

/// The difference of two samples in cores. The aggregate line is sampled by the tick while
/// process times are precise, so small negative remainders are noise and read as 0.
fn cpu_use(first: &CpuSample, last: &CpuSample) -> Option<CpuUse> {
    let secs = last.at.checked_duration_since(first.at)?.as_secs_f64();
    // SAFETY: sysconf reads a constant of the system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if secs <= 0.0 || hz <= 0 {
        return None;
    }
    let ticks_per_core = secs * hz as f64;
    let machine = last.machine.saturating_sub(first.machine);
    let own = last.own.saturating_sub(first.own);
    let broker = match (first.broker, last.broker) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    let other = machine.saturating_sub(own + broker.unwrap_or(0));
    let round = |cores: f64| (cores * 1000.0).round() / 1000.0;
    Some(CpuUse {
        other_cores: round(other as f64 / ticks_per_core),
        broker_cores: broker.map(|b| round(b as f64 / ticks_per_core)),
    })
}

/// Busy ticks of all CPUs from the aggregate `cpu` line of `/proc/stat`: user, nice, system,
/// irq, softirq, steal (fields 1, 2, 3, 6, 7, 8; guest time is already inside user and nice).
fn parse_machine_busy(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|line| line.split_whitespace().next() == Some("cpu"))?;
    let fields: Vec<u64> =
        line.split_whitespace().skip(1).map(str::parse).collect::<Result<_, _>>().ok()?;
    let field = |i: usize| fields.get(i).copied().unwrap_or(0);
    if fields.len() < 4 {
        return None;
    }
    Some(field(0) + field(1) + field(2) + field(5) + field(6) + field(7))
}

/// utime + stime ticks from a `/proc/PID/stat` line (fields 14 and 15). The command name,
/// field 2, is in parentheses and may hold spaces and parentheses: count from the last `)`.
fn parse_process_cpu(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_stat_line() {
        let line = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                    250 75 0 0 20 0 3 0 123456 1000000 500 18446744073709551615";
        assert_eq!(parse_process_cpu(line), Some(325));
        assert_eq!(parse_process_cpu("4242 (x) S 1 2"), None);
        assert_eq!(parse_process_cpu("garbage"), None);
    }

    #[test]
    fn machine_stat_line() {
        let stat = "cpu  100 20 30 5000 40 6 7 8 9 10\n\
                    cpu0 50 10 15 2500 20 3 3 4 0 0\n\
                    intr 1 2 3\n";
        assert_eq!(parse_machine_busy(stat), Some(100 + 20 + 30 + 6 + 7 + 8));
        // Old kernels: no steal column.
        assert_eq!(parse_machine_busy("cpu 1 2 3 4 5 6 7\n"), Some(1 + 2 + 3 + 6 + 7));
        assert_eq!(parse_machine_busy("cpu0 1 2 3 4\n"), None);
    }

    #[test]
    fn own_process_reads() {
        if cfg!(target_os = "linux") {
            let now = Instant::now();
            let window = CpuWindow::new(Some(std::process::id()), now, None);
            std::thread::sleep(Duration::from_millis(20));
            let used = window.finish().expect("/proc readable on Linux");
            assert!(used.other_cores >= 0.0);
            assert!(used.broker_cores.is_some());
        }
    }
}
