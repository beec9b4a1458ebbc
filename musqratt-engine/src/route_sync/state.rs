//! The state of the SUBACK barrier (ADR 6): the `Sync`s sent and acknowledged, and the
//! SUBSCRIBEs waiting for them. The barrier's steps, which send and answer, are in
//! `route_sync/mod.rs`; this module knows nothing of the `Engine` (docs/adr/0014-engine-layers.md).

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;

use musqratt_proto::bytestring::ByteString;
use musqratt_proto::mqtt::SubAck;

use crate::ids::{ConnectionId, SessionId, ShardId};
use crate::session::Subscription;

/// This shard's side of the barrier.
#[derive(Debug, Default)]
pub(crate) struct RouteSync {
    /// Whether route or shared-member messages went out since the last `Sync`.
    dirty: bool,
    /// The last `Sync` sent.
    sent: u64,
    /// The last `SyncAck` from each shard (this shard's own entry is unused).
    acked: Vec<u64>,
    /// SUBSCRIBEs answered once every shard acknowledged their `Sync`.
    waiting: BTreeMap<ConnectionId, Subscribed>,
    /// The same connections in the order they started waiting, which is also the order of the
    /// `Sync` they wait for: an acknowledgement releases a prefix (entries of connections that
    /// closed meanwhile are skipped).
    queue: VecDeque<(u64, ConnectionId)>,
}

/// What a SUBSCRIBE answers with, held while the other shards catch up.
#[derive(Debug)]
pub(crate) struct Subscribed {
    pub(crate) session: SessionId,
    pub(crate) suback: SubAck,
    /// Filters whose retained messages go out after the SUBACK (MQTT-3.3.1-9..11), with the
    /// subscription that asked for them. Looked up when the SUBACK goes out, after every shard
    /// has acknowledged a `Sync` sent after the SUBSCRIBE: a retained message another shard
    /// stored (and acknowledged to its publisher) before the SUBSCRIBE has reached this shard's
    /// replica by then, the links being FIFO.
    pub(crate) retained: Vec<(ByteString, Subscription)>,
    /// Filters new to the session, for the topic backlog.
    pub(crate) new_filters: Vec<ByteString>,
    /// The `Sync` it waits for.
    seq: u64,
}

impl Subscribed {
    pub(crate) fn new(session: SessionId, suback: SubAck) -> Self {
        Self { session, suback, retained: Vec::new(), new_filters: Vec::new(), seq: 0 }
    }
}

impl RouteSync {
    /// Route or shared-member messages were sent: the next SUBSCRIBE must sync.
    pub(crate) fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// Whether this connection's input waits for a SUBACK.
    pub(crate) fn is_waiting(&self, conn: ConnectionId) -> bool {
        !self.waiting.is_empty() && self.waiting.contains_key(&conn)
    }

    /// Forgets a closed connection's pending SUBACK.
    pub(crate) fn forget(&mut self, conn: ConnectionId) {
        if !self.waiting.is_empty() {
            self.waiting.remove(&conn);
        }
    }

    /// Starts a `Sync` when one is needed: when route or shared-member messages went out since
    /// the last one, or when `retained` (a SUBSCRIBE that may send retained messages must see
    /// every retained message stored elsewhere before it). Returns its number, to send to every
    /// other shard.
    pub(crate) fn start_sync(&mut self, shards: u16, retained: bool) -> Option<u64> {
        if self.acked.len() != usize::from(shards) {
            self.acked.resize(usize::from(shards), 0);
        }
        if self.dirty || retained {
            self.dirty = false;
            self.sent += 1;
            return Some(self.sent);
        }
        None
    }

    /// Holds a SUBSCRIBE's answer until every other shard acknowledges the last `Sync` sent;
    /// gives it back when they all have (nothing to wait for).
    pub(crate) fn hold(
        &mut self,
        own: ShardId,
        conn: ConnectionId,
        mut done: Subscribed,
    ) -> Option<Subscribed> {
        if self.acked_by_all(own) >= self.sent {
            return Some(done);
        }
        done.seq = self.sent;
        self.queue.push_back((done.seq, conn));
        self.waiting.insert(conn, done);
        None
    }

    /// Records a `SyncAck` from `from`; returns the last `Sync` every other shard has now
    /// acknowledged.
    pub(crate) fn acknowledge(&mut self, own: ShardId, from: ShardId, seq: u64) -> u64 {
        if let Some(acked) = self.acked.get_mut(usize::from(from.0)) {
            *acked = (*acked).max(seq);
        }
        self.acked_by_all(own)
    }

    /// The next connection whose wait `acked` ends, in the order they started waiting, with
    /// its answer (`None` when the connection closed meanwhile).
    pub(crate) fn release(&mut self, acked: u64) -> Option<(ConnectionId, Option<Subscribed>)> {
        let &(seq, conn) = self.queue.front()?;
        if seq > acked {
            return None;
        }
        self.queue.pop_front();
        Some((conn, self.waiting.remove(&conn)))
    }

    /// The last `Sync` every other shard has acknowledged.
    fn acked_by_all(&self, own: ShardId) -> u64 {
        let others =
            self.acked.iter().enumerate().filter(|(shard, _)| *shard != usize::from(own.0));
        others.map(|(_, &acked)| acked).min().unwrap_or(u64::MAX)
    }
}
