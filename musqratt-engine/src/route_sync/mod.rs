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
//!
//! The barrier's state ([`state::RouteSync`], [`state::Subscribed`]) is a leaf module the
//! `Engine` holds; this module's steps work on the `Engine` (docs/adr/0014-engine-layers.md).

pub(crate) mod state;

use musqratt_proto::mqtt::Packet;

use crate::engine::Engine;
use crate::ids::{ConnectionId, ShardId};
use crate::io::Action;
use crate::route_sync::state::Subscribed;
use crate::session::Delivery;
use crate::shards::{ShardMessage, ShardMessageKind};
use crate::time::Instant;

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
            // A SUBSCRIBE that announced new routes syncs so that every shard routes them before
            // the SUBACK; one that may send retained messages syncs so that every retained
            // message stored elsewhere before it is in this shard's replica.
            if let Some(seq) = self.route_sync.start_sync(shards, !done.retained.is_empty()) {
                for shard in (0..shards).map(ShardId).filter(|s| *s != own) {
                    let message = ShardMessage(ShardMessageKind::Sync(seq));
                    self.push_action(Action::ToShard { to: shard, message });
                }
            }
            match self.route_sync.hold(own, conn, done) {
                Some(ready) => done = ready,
                None => return,
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
        let acked = self.route_sync.acknowledge(self.config.shard, from, seq);
        while let Some((conn, done)) = self.route_sync.release(acked) {
            // A connection that closed meanwhile has no answer any more.
            if let Some(done) = done {
                self.send_subscribed(now, conn, done);
                self.process_input(now, conn);
            }
        }
    }

    /// SUBACK, then the retained messages, then the topic backlog of the new filters.
    fn send_subscribed(&mut self, now: Instant, conn: ConnectionId, done: Subscribed) {
        self.send_packet(now, conn, &Packet::SubAck(done.suback));
        for (filter, subscription) in done.retained {
            for message in self.retained.matching(&filter, now) {
                let delivery = Delivery {
                    qos: message.qos.min(subscription.options.qos),
                    retain: true, // MQTT-3.3.1-8: sent because of a new subscription
                    subscription_ids: subscription.id.into_iter().collect(),
                    message,
                    stored: 0,
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
