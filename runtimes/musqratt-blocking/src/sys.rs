//! The broker's numbers on the blocking runtime (issue 17, docs/adr/0018-metrics.md): every
//! shard's engine counts on its own; a reader takes each shard's lock in turn and merges the
//! snapshots, and a thread of its own mails the `$SYS` tree to shard 0 every `sys_interval`.
//!
//! Holding a shard's lock from outside a step is safe with the mailbox protocol (ADR 11): a
//! connection thread that finds the lock taken mails its input, and since the reader never
//! marks itself `stepping`, the mail wakes the engine thread, which steps once the reader is
//! done (a copy of the counters).

use core::sync::atomic::{AtomicBool, Ordering};
use core::time::Duration;
use std::sync::Arc;

use musqratt_engine::Engine;
use musqratt_kit::metrics::{LoadAverages, sys_tree};
use musqratt_kit::{MetricsSource, PeerOf, Shards};

use crate::inbox::Inboxes;
use crate::shard::ShardInput;

/// This runtime's shards as a reader reaches them: each cell's lock in turn.
pub(crate) struct BlockingShards(pub(crate) Arc<Inboxes>);

impl Shards for BlockingShards {
    fn count(&self) -> usize {
        self.0.len()
    }

    fn each(&self, visit: &mut dyn FnMut(&Engine, PeerOf<'_>)) {
        for cell in self.0.iter() {
            cell.lock().visit(visit);
        }
    }
}

/// The `$SYS` thread: every `every` (checking `stopping` ten times a second), the tree of the
/// merged numbers, mailed to shard 0, whose step publishes it
/// (`Engine::publish_broker_message`). A sleeping thread, not a poll: the runtime's rule.
pub(crate) fn run(
    source: &MetricsSource,
    shards: &Inboxes,
    every: Duration,
    stopping: &AtomicBool,
) {
    const TICK: Duration = Duration::from_millis(100);
    let mut load = LoadAverages::default();
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
        let uptime = source.uptime();
        let mut tree = sys_tree(&metrics, uptime, env!("CARGO_PKG_VERSION"));
        tree.extend(load.update(&metrics, uptime));
        if !shards.mail(0, ShardInput::Sys(tree)) {
            return;
        }
    }
}
