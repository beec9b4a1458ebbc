//! The broker's numbers on this runtime (issue 17, docs/adr/0018-metrics.md): every shard's
//! engine counts on its own ([`Engine::metrics`](musqratt_engine::Engine::metrics)); a reader
//! takes each shard's lock in turn, copies its snapshot and merges. Nothing is shared on the
//! publish path; a read costs each shard one short lock.

use core::fmt;
use core::time::Duration;
use std::sync::Arc;

use musqratt_engine::Metrics;
use musqratt_kit::Clock;
use musqratt_kit::metrics::{Maximum, sys_tree};

use super::{Directory, ShardLock};

/// Reads the broker's merged [`Metrics`] from any thread (the HTTP listener's, a test's).
#[derive(Clone)]
pub struct MetricsSource {
    directory: Directory,
    maximum: Arc<Maximum>,
    clock: Clock,
}

impl fmt::Debug for MetricsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsSource").field("shards", &self.directory.len()).finish()
    }
}

impl MetricsSource {
    pub(crate) fn new(directory: Directory, maximum: Arc<Maximum>, clock: Clock) -> Self {
        Self { directory, maximum, clock }
    }

    /// Every shard's numbers, merged. Locks one shard at a time, and must not be called
    /// from inside a step (a blocking lock on a peer while holding one's own could deadlock,
    /// ADR 10): the `$SYS` task and other threads call it between steps.
    #[must_use]
    pub fn metrics(&self) -> Metrics {
        let mut merged = Metrics::default();
        for entry in self.directory.iter() {
            if let Some(shard) = entry.get().and_then(std::sync::Weak::upgrade) {
                merged.merge(&shard.lock().engine.metrics());
            }
        }
        self.maximum.refine(&mut merged);
        merged
    }

    /// Time since the broker started (the engines' clock).
    #[must_use]
    pub fn uptime(&self) -> Duration {
        Duration::from_micros(self.clock.now().as_micros())
    }
}

/// Shard 0's task: every `every`, the `$SYS` tree of the merged numbers, published as
/// retained messages by shard 0's engine ([`Engine::publish_broker_message`]; retained
/// copies reach the other shards like any retained message). The first tree goes out after
/// one period, when every shard has started.
///
/// [`Engine::publish_broker_message`]: musqratt_engine::Engine::publish_broker_message
pub(crate) async fn publish(shard: Arc<ShardLock>, source: MetricsSource, every: Duration) {
    let start = tokio::time::Instant::now() + every;
    let mut interval = tokio::time::interval_at(start, every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        // Gathered before taking this shard's lock for the publish: never two locks at once.
        let metrics = source.metrics();
        let tree = sys_tree(&metrics, source.uptime(), env!("CARGO_PKG_VERSION"));
        let mut state = shard.lock();
        if state.shutting_down {
            return;
        }
        let now = state.now();
        for (topic, payload) in tree {
            state.engine.publish_broker_message(now, topic.into(), payload.into());
        }
        state.drain();
    }
}
