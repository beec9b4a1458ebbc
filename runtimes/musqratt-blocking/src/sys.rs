//! The broker's numbers on the blocking runtime (issue 17, docs/adr/0018-metrics.md): every
//! shard's engine counts on its own; a reader takes each shard's lock in turn and merges the
//! snapshots, and a thread of its own mails the `$SYS` tree to shard 0 every `sys_interval`.
//!
//! Holding a shard's lock from outside a step is safe with the mailbox protocol (ADR 11): a
//! connection thread that finds the lock taken mails its input, and since the reader never
//! marks itself `stepping`, the mail wakes the engine thread, which steps once the reader is
//! done (a copy of the counters).

use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};
use core::time::Duration;
use std::sync::Arc;

use musqratt_engine::Metrics;
use musqratt_kit::metrics::{Maximum, sys_tree};

use crate::inbox::Inboxes;
use crate::shard::ShardInput;

/// Reads the broker's merged [`Metrics`] from any thread (the HTTP listener's, a test's).
#[derive(Clone)]
pub struct MetricsSource {
    shards: Arc<Inboxes>,
    maximum: Arc<Maximum>,
}

impl fmt::Debug for MetricsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsSource").field("shards", &self.shards.len()).finish()
    }
}

impl MetricsSource {
    pub(crate) fn new(shards: Arc<Inboxes>) -> Self {
        Self { shards, maximum: Arc::new(Maximum::default()) }
    }

    /// Every shard's numbers, merged; one shard's lock at a time. Not from inside a step.
    #[must_use]
    pub fn metrics(&self) -> Metrics {
        let mut merged = Metrics::default();
        for cell in self.shards.iter() {
            merged.merge(&cell.lock().metrics());
        }
        self.maximum.refine(&mut merged);
        merged
    }

    /// Time since the broker started (the engines' clock).
    #[must_use]
    pub fn uptime(&self) -> Duration {
        Duration::from_micros(self.shards.clock.now().as_micros())
    }
}

/// The `$SYS` thread: every `every` (checking `stopping` ten times a second), the tree of the
/// merged numbers, mailed to shard 0, whose step publishes it
/// (`Engine::publish_broker_message`). A sleeping thread, not a poll: the runtime's rule.
pub(crate) fn run(source: &MetricsSource, every: Duration, stopping: &AtomicBool) {
    const TICK: Duration = Duration::from_millis(100);
    loop {
        let mut left = every;
        while !left.is_zero() {
            if stopping.load(Ordering::SeqCst) {
                return;
            }
            let nap = left.min(TICK);
            std::thread::sleep(nap);
            left -= nap;
        }
        let metrics = source.metrics();
        let tree = sys_tree(&metrics, source.uptime(), env!("CARGO_PKG_VERSION"));
        if !source.shards.mail(0, ShardInput::Sys(tree)) {
            return;
        }
    }
}
