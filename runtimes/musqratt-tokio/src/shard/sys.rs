//! The broker's numbers on this runtime (issue 17, docs/adr/0018-metrics.md): every shard's
//! engine counts on its own ([`Engine::metrics`](musqratt_engine::Engine::metrics)); a reader
//! takes each shard's lock in turn, copies its snapshot and merges. Nothing is shared on the
//! publish path; a read costs each shard one short lock ([`musqratt_kit::MetricsSource`]).

use core::net::SocketAddr;
use core::time::Duration;
use std::sync::Arc;

use musqratt_engine::{ConnectionId, Engine};
use musqratt_kit::metrics::{LoadAverages, sys_tree};
use musqratt_kit::{MetricsSource, PeerOf, Shards};

use super::{Directory, Shard, ShardLock, Stream};

/// This runtime's shards as a reader reaches them: through the directory, one lock at a time.
pub(crate) struct TokioShards(pub(crate) Directory);

impl Shards for TokioShards {
    fn count(&self) -> usize {
        self.0.len()
    }

    fn each(&self, visit: &mut dyn FnMut(&Engine, PeerOf<'_>)) {
        for entry in self.0.iter() {
            if let Some(shard) = entry.get().and_then(std::sync::Weak::upgrade) {
                let state = shard.lock();
                visit(&state.engine, &|conn| peer_of(&state, conn));
            }
        }
    }
}

/// The peer address of a connection's socket (a `getpeername`, only when someone lists the
/// clients).
fn peer_of(shard: &Shard, conn: ConnectionId) -> Option<SocketAddr> {
    match &shard.conns.get(&conn)?.stream {
        Stream::Awake(stream) => stream.peer_addr().ok(),
        Stream::Hibernating(stream) => stream.peer_addr().ok(),
        Stream::Moving => None,
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
    let mut load = LoadAverages::default();
    loop {
        interval.tick().await;
        // Gathered before taking this shard's lock for the publish: never two locks at once.
        let metrics = source.metrics();
        let uptime = source.uptime();
        let mut tree = sys_tree(&metrics, uptime, env!("CARGO_PKG_VERSION"));
        tree.extend(load.update(&metrics, uptime));
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
