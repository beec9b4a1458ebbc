//! The broker's numbers on this runtime (as on the tokio runtime, whose shards have the same
//! lock) (issue 17, docs/adr/0018-metrics.md): every shard's
//! engine counts on its own ([`Engine::metrics`](musqratt_engine::Engine::metrics)); a reader
//! takes each shard's lock in turn, copies its snapshot and merges. Nothing is shared on the
//! publish path; a read costs each shard one short lock.

use core::net::SocketAddr;
use core::time::Duration;
use std::rc::Rc;

use musqratt_engine::{ConnectionId, Engine};
use musqratt_kit::metrics::{LoadAverages, sys_tree};
use musqratt_kit::{MetricsSource, PeerOf, Shards};

use super::{Core, Directory, Shard};

/// This runtime's shards as a reader reaches them: through the directory, one lock at a time.
pub(crate) struct CompioShards(pub(crate) Directory);

impl Shards for CompioShards {
    fn count(&self) -> usize {
        self.0.len()
    }

    fn each(&self, visit: &mut dyn FnMut(&Engine, PeerOf<'_>)) {
        for entry in self.0.iter() {
            if let Some(shard) = entry.get().and_then(std::sync::Weak::upgrade) {
                let core = shard.lock();
                visit(&core.engine, &|conn| peer_of(&core, conn));
            }
        }
    }
}

/// The peer address of a connection, from the slot's second descriptor of its socket (a
/// `getpeername`, only when someone lists the clients).
fn peer_of(core: &Core, conn: ConnectionId) -> Option<SocketAddr> {
    core.slots.get(&conn)?.direct.as_ref()?.peer_addr().ok()
}

/// Shard 0's task: every `every`, the `$SYS` tree of the merged numbers, published as
/// retained messages by shard 0's engine ([`Engine::publish_broker_message`]; retained
/// copies reach the other shards like any retained message). The first tree goes out after
/// one period, when every shard has started.
///
/// [`Engine::publish_broker_message`]: musqratt_engine::Engine::publish_broker_message
pub(crate) async fn publish(shard: Rc<Shard>, source: MetricsSource, every: Duration) {
    let mut load = LoadAverages::default();
    loop {
        compio::time::sleep(every).await;
        // Gathered before taking this shard's lock for the publish: never two locks at once.
        let metrics = source.metrics();
        let uptime = source.uptime();
        let mut tree = sys_tree(&metrics, uptime, env!("CARGO_PKG_VERSION"));
        tree.extend(load.update(&metrics, uptime));
        let mut core = shard.lock();
        if core.stopping {
            return;
        }
        let now = core.clock.now();
        for (topic, payload) in tree {
            core.engine.publish_broker_message(now, topic.into(), payload.into());
        }
        core.dispatch();
    }
}
