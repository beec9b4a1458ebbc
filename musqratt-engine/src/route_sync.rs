//! A SUBACK goes out once every shard routes the new subscription (docs/DESIGN.md, "Many cores").
//!
//! Route announcements travel to the other shards asynchronously. Without a barrier, a client
//! that got its SUBACK could tell another client to publish, that client's shard could route the
//! message before the announcement arrived, and the message would miss a subscription the broker
//! had already acknowledged: Mosquitto and a one-shard MusQraTT would deliver it. So a
//! SUBSCRIBE that changed what this shard announced ends with a `Sync` to every other shard; the
//! links are FIFO, so a shard's `SyncAck` proves it applied everything sent before. The SUBACK,
//! and the retained messages that follow it, wait for every acknowledgement, and so does the
//! rest of that connection's input, which keeps the client's packets answered in order.
//! MQTT 5.0 §3.8.4 allows matching PUBLISH packets before the SUBACK; only the SUBACK waits.
//!
//! A SUBSCRIBE that may send retained messages syncs too, and looks them up when its SUBACK goes
//! out: a retained message another shard stored before the SUBSCRIBE is in this shard's replica
//! by then (ADR 6).
//!
//! With one shard nothing waits. The wait is one round trip between shards. The topic backlog
//! kept on other shards is released after the SUBACK too (`ReleaseBacklog`), not on the route
//! announcement, so that a subscriber sees its SUBACK first with any number of shards.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;

use musqratt_proto::bytestring::ByteString;
use musqratt_proto::mqtt::{Packet, SubAck};

use crate::engine::Engine;
use crate::ids::{ConnectionId, SessionId, ShardId};
use crate::io::Action;
use crate::session::{Delivery, Subscription};
use crate::shards::{ShardMessage, ShardMessageKind};
use crate::time::Instant;

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

    /// The last `Sync` every other shard has acknowledged.
    fn acked_by_all(&self, own: ShardId) -> u64 {
        let others =
            self.acked.iter().enumerate().filter(|(shard, _)| *shard != usize::from(own.0));
        others.map(|(_, &acked)| acked).min().unwrap_or(u64::MAX)
    }
}

impl Engine {
    /// Sends the SUBACK of a SUBSCRIBE now, or once every shard routes what it announced.
    pub(crate) fn finish_subscribe(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        mut done: Subscribed,
    ) {
        let (shards, own) = (self.config.shard_count, self.config.shard);
        if shards > 1 {
            let sync = &mut self.route_sync;
            if sync.acked.len() != usize::from(shards) {
                sync.acked.resize(usize::from(shards), 0);
            }
            // A SUBSCRIBE that announced new routes syncs so that every shard routes them before
            // the SUBACK; one that may send retained messages syncs so that every retained
            // message stored elsewhere before it is in this shard's replica.
            if sync.dirty || !done.retained.is_empty() {
                sync.dirty = false;
                sync.sent += 1;
                let seq = sync.sent;
                for shard in (0..shards).map(ShardId).filter(|s| *s != own) {
                    let message = ShardMessage(ShardMessageKind::Sync(seq));
                    self.push_action(Action::ToShard { to: shard, message });
                }
            }
            let sync = &mut self.route_sync;
            if sync.acked_by_all(own) < sync.sent {
                done.seq = sync.sent;
                sync.queue.push_back((done.seq, conn));
                sync.waiting.insert(conn, done);
                return;
            }
        }
        self.send_subscribed(now, conn, done);
    }

    /// A `Sync` from another shard: everything it sent before has been applied.
    pub(crate) fn handle_sync(&mut self, from: ShardId, seq: u64) {
        let message = ShardMessage(ShardMessageKind::SyncAck(seq));
        self.push_action(Action::ToShard { to: from, message });
    }

    /// A `SyncAck`: answers the SUBSCRIBEs every shard has now caught up with, then goes on with
    /// their connections' input.
    pub(crate) fn handle_sync_ack(&mut self, now: Instant, from: ShardId, seq: u64) {
        let own = self.config.shard;
        let sync = &mut self.route_sync;
        if let Some(acked) = sync.acked.get_mut(usize::from(from.0)) {
            *acked = (*acked).max(seq);
        }
        let acked = sync.acked_by_all(own);
        while let Some(&(seq, conn)) = self.route_sync.queue.front() {
            if seq > acked {
                break;
            }
            self.route_sync.queue.pop_front();
            // A connection that closed meanwhile has no entry any more.
            if let Some(done) = self.route_sync.waiting.remove(&conn) {
                self.send_subscribed(now, conn, done);
                self.process_input(now, conn);
            }
        }
    }

    /// SUBACK, then the retained messages, then the topic backlog of the new filters.
    fn send_subscribed(&mut self, now: Instant, conn: ConnectionId, done: Subscribed) {
        self.send_packet(conn, &Packet::SubAck(done.suback));
        for (filter, subscription) in done.retained {
            for message in self.retained.matching(&filter, now) {
                let delivery = Delivery {
                    qos: message.qos.min(subscription.options.qos),
                    retain: true, // MQTT-3.3.1-8: sent because of a new subscription
                    subscription_ids: subscription.id.into_iter().collect(),
                    message,
                };
                self.deliver(now, done.session, delivery);
            }
        }
        // The topic backlog after the SUBACK, on every shard (the other shards' after this
        // shard's: a difference from one shard in the order of the backlogs of several
        // publishers, which tests/transcripts/README.md documents).
        if self.config.backlog.enabled() {
            let own = self.config.shard;
            for filter in done.new_filters {
                for shard in (0..self.config.shard_count).map(ShardId).filter(|s| *s != own) {
                    let message = ShardMessage(ShardMessageKind::ReleaseBacklog(filter.clone()));
                    self.push_action(Action::ToShard { to: shard, message });
                }
                self.release_backlog(now, &filter);
            }
        }
    }
}
