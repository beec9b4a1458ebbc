//! The operating system calls std does not wrap: file descriptor limit, timer slack, and the
//! broker's memory from `/proc`.
#![allow(unsafe_code)]

use core::time::Duration;
use std::time::Instant;

/// Raises the soft RLIMIT_NOFILE of this process to its hard limit; returns the new soft limit.
pub(crate) fn raise_nofile() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    limit.rlim_cur
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
