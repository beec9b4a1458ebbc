//! `conns`: N idle MQTT 3.1.1 connections; the time to connect them all and, given the broker's
//! pid, its resident memory per connection (`VmRSS` after minus before, over N).
//!
//! With `parallel` = N it is a connection storm (every attempt started at once), with Clean
//! Session 1 or 0 (a persistent session for each: what a fleet reconnecting after an outage
//! costs the broker); `connect_us` p99 is then the storm's tail.

use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;
use std::sync::Arc;

use hdrhistogram::Histogram;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::report::histogram;
use crate::transport::{AsyncConn, Target};
use crate::wire;

/// Parameters of one run.
#[derive(Debug, Clone)]
pub(crate) struct ConnsCfg {
    pub(crate) target: Target,
    /// Who the clients log in as.
    pub(crate) login: wire::Login,
    pub(crate) connections: usize,
    pub(crate) parallel: usize,
    pub(crate) keep_alive: u16,
    /// Numbered users the connections log in as (0: the login's one user).
    pub(crate) users: usize,
    pub(crate) hold: Duration,
    pub(crate) pid: Option<u32>,
    /// Clean Session flag of every CONNECT.
    pub(crate) clean: bool,
    /// Local addresses the connections are spread over, round robin (empty: the kernel's).
    pub(crate) sources: Vec<core::net::IpAddr>,
}

/// What one run measured.
pub(crate) struct ConnsOut {
    pub(crate) connected: usize,
    pub(crate) failed: usize,
    pub(crate) first_error: Option<String>,
    pub(crate) connect_all: Duration,
    pub(crate) connect_latency: Histogram<u64>,
    pub(crate) rss_before: Option<u64>,
    pub(crate) rss_after: Option<u64>,
    pub(crate) threads_before: Option<u64>,
    pub(crate) threads_after: Option<u64>,
    /// CONNACKs with session present 1 (a persistent session the broker already had).
    pub(crate) sessions_present: usize,
}

/// Opens the connections, holds them, measures, closes them.
pub(crate) async fn run(cfg: &ConnsCfg, progress: Arc<AtomicU64>) -> anyhow::Result<ConnsOut> {
    let status = |field| cfg.pid.and_then(|pid| crate::sys::proc_status(pid, field).ok());
    let rss_before = status("VmRSS");
    let threads_before = status("Threads");
    // 0: every attempt at once (a storm).
    let parallel = if cfg.parallel == 0 { cfg.connections } else { cfg.parallel };
    let gate = Arc::new(Semaphore::new(parallel.clamp(1, Semaphore::MAX_PERMITS)));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(cfg.connections);
    for i in 0..cfg.connections {
        let gate = Arc::clone(&gate);
        let target = cfg.target.clone();
        let progress = Arc::clone(&progress);
        let keep_alive = cfg.keep_alive;
        let login = cfg.login.numbered(i, cfg.users);
        let (clean, source) = (cfg.clean, source_of(&cfg.sources, i));
        let id = wire::client_id("idle", i);
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await?;
            let t0 = Instant::now();
            let (conn, present) =
                AsyncConn::connect_from(&target, source, &id, keep_alive, &login, clean).await?;
            progress.fetch_add(1, Ordering::Relaxed);
            anyhow::Ok((conn, present, t0.elapsed()))
        }));
    }
    let mut conns = Vec::with_capacity(cfg.connections);
    let mut hist = histogram();
    let mut first_error = None;
    let (mut failed, mut sessions_present) = (0, 0);
    for task in tasks {
        match task.await? {
            Ok((conn, present, took)) => {
                let _ = hist.record((took.as_nanos() as u64).max(1));
                sessions_present += usize::from(present);
                conns.push(conn);
            }
            Err(error) => {
                failed += 1;
                first_error.get_or_insert_with(|| format!("{error:#}"));
            }
        }
    }
    let connect_all = start.elapsed();
    // Let the broker settle (lazily freed buffers, deferred allocations) before reading RSS.
    tokio::time::sleep(cfg.hold).await;
    let rss_after = status("VmRSS");
    let threads_after = status("Threads");
    let connected = conns.len();
    for conn in &mut conns {
        let _ = conn.write_all(&[0xE0, 0]).await;
    }
    drop(conns);
    Ok(ConnsOut {
        connected,
        failed,
        first_error,
        connect_all,
        connect_latency: hist,
        rss_before,
        rss_after,
        threads_before,
        threads_after,
        sessions_present,
    })
}

/// Connection `i`'s local address: round robin over `sources`.
fn source_of(sources: &[core::net::IpAddr], i: usize) -> Option<core::net::IpAddr> {
    (!sources.is_empty()).then(|| sources[i % sources.len()])
}

/// Loopback connections one source address can hold: below the ~28k ports of Linux's default
/// ephemeral range (32768-60999), with room for the run's other sockets.
const PER_SOURCE: usize = 20_000;

/// The source addresses for `connections` to `target`: `count` of them when given (> 0),
/// otherwise as many as the count needs at [`PER_SOURCE`] each when the broker is on an IPv4
/// loopback address (127.0.0.1, 127.0.0.2, ...: all of 127/8 is the loopback), none (the
/// kernel's choice) when one is enough or the broker is elsewhere.
pub(crate) fn sources(
    target: &str,
    connections: usize,
    count: usize,
) -> anyhow::Result<Vec<core::net::IpAddr>> {
    let addr: core::net::SocketAddr = target.parse()?;
    let core::net::IpAddr::V4(ip) = addr.ip() else {
        anyhow::ensure!(count == 0, "--source-ips needs an IPv4 loopback broker address");
        return Ok(Vec::new());
    };
    let count = match count {
        0 if ip.is_loopback() && connections > PER_SOURCE => connections.div_ceil(PER_SOURCE),
        0 => return Ok(Vec::new()),
        n => {
            anyhow::ensure!(ip.is_loopback(), "--source-ips needs a loopback broker address");
            n
        }
    };
    anyhow::ensure!(count < 250, "at most 249 source addresses");
    Ok((1..=count).map(|k| core::net::IpAddr::from([127, 0, 0, k as u8])).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addresses_spread_loopback_connections() {
        assert!(sources("127.0.0.1:1883", 10_000, 0).unwrap().is_empty());
        let many = sources("127.0.0.1:1883", 100_000, 0).unwrap();
        assert_eq!(many.len(), 5);
        assert_eq!(many[4], core::net::IpAddr::from([127, 0, 0, 5]));
        assert_eq!(sources("127.0.0.1:1883", 10, 3).unwrap().len(), 3);
        assert!(sources("10.0.0.1:1883", 100_000, 0).unwrap().is_empty());
        assert!(sources("10.0.0.1:1883", 10, 2).is_err());
        assert_eq!(source_of(&many, 7), Some(many[2]));
        assert_eq!(source_of(&[], 7), None);
    }
}
