//! `conns`: N idle MQTT 3.1.1 connections; the time to connect them all and, given the broker's
//! pid, its resident memory per connection (`VmRSS` after minus before, over N).

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
}

/// Opens the connections, holds them, measures, closes them.
pub(crate) async fn run(cfg: &ConnsCfg, progress: Arc<AtomicU64>) -> anyhow::Result<ConnsOut> {
    let status = |field| cfg.pid.and_then(|pid| crate::sys::proc_status(pid, field).ok());
    let rss_before = status("VmRSS");
    let threads_before = status("Threads");
    let gate = Arc::new(Semaphore::new(cfg.parallel.max(1)));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(cfg.connections);
    for i in 0..cfg.connections {
        let gate = Arc::clone(&gate);
        let target = cfg.target.clone();
        let progress = Arc::clone(&progress);
        let keep_alive = cfg.keep_alive;
        let login = cfg.login.numbered(i, cfg.users);
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await?;
            let t0 = Instant::now();
            let conn = AsyncConn::connect(&target, &wire::client_id("idle", i), keep_alive, &login)
                .await?;
            progress.fetch_add(1, Ordering::Relaxed);
            anyhow::Ok((conn, t0.elapsed()))
        }));
    }
    let mut conns = Vec::with_capacity(cfg.connections);
    let mut hist = histogram();
    let mut first_error = None;
    let mut failed = 0;
    for task in tasks {
        match task.await? {
            Ok((conn, took)) => {
                let _ = hist.record((took.as_nanos() as u64).max(1));
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
    })
}
