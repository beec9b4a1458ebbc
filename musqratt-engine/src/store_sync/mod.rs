//! With persistence, a PUBACK or PUBREC goes out once every shard the message was forwarded to
//! has stored it (the acknowledgement rule across shards, docs/adr/0017-persistence-store.md).
//!
//! The runtime writes a step's records before that step's packets and shard messages leave,
//! so the publisher's shard has written its own records (a retained message, a local durable
//! subscriber's copy) before its PUBACK (MQTT 5.0 §4.3.2: the sender may discard the message
//! once it has the PUBACK; §4.3.3 the same for PUBREC). A durable subscriber on another shard
//! gets the message a mail later, in that shard's step: a `kill -9` in between would lose a
//! message the publisher was told was received. So, the shape of ADR 6's SUBACK barrier: a
//! publish forwarded to other shards ends its input with a `StoreSync` to each of them; the
//! links are FIFO, so a shard's `StoreSynced` answer, which leaves after that shard wrote the
//! records of every step before it, proves the message is stored there. The acknowledgement
//! waits for those answers, and every later acknowledgement of the same connection waits
//! behind it (§4.6: PUBACKs and PUBRECs in the order of the PUBLISHes). The connection's
//! input is not held: the client goes on publishing (§4.9 flow control bounds it).
//!
//! A shared group's owner shard forwards the group's messages to the member it picks, on a
//! third shard perhaps. It marks those relays with a `RelaySync` of their own, answered at
//! once (a relayed message goes no further), and answers a `StoreSync` only once every relay
//! before it is answered. The two kinds are counted apart, so an answer never waits for a
//! `StoreSync`, and two owners relaying to each other cannot wait for each other.
//!
//! The publisher's shard cannot tell whether another shard's subscriber is durable, so with
//! persistence on every QoS 1 or 2 publish forwarded to another shard waits one round trip
//! between shards before its acknowledgement, and a local delivery may reach its subscriber
//! before the PUBACK reaches the publisher. With persistence off nothing here runs.
//!
//! The barrier's state ([`state::StoreSync`]) is a leaf module the `Engine` holds; this
//! module's steps work on the `Engine` (docs/adr/0014-engine-layers.md).

pub(crate) mod state;

use musqratt_proto::mqtt::Packet;

use crate::engine::Engine;
use crate::ids::{ConnectionId, ShardId};
use crate::io::Action;
use crate::shards::{ShardMessage, ShardMessageKind};
use crate::store_sync::state::{Kind, Needs};
use crate::time::Instant;

impl Engine {
    /// Sends a PUBACK or PUBREC at `mark`, or holds it until the shards in `needs` have stored
    /// the message, or while an earlier one of the connection is held.
    pub(crate) fn send_ack(
        &mut self,
        now: Instant,
        mark: usize,
        conn: ConnectionId,
        packet: Packet,
        needs: Needs,
    ) {
        if needs.is_empty() && !self.store_sync.holds(conn) {
            return self.send_packet_at(now, mark, conn, &packet);
        }
        self.store_sync.hold(conn, packet, needs);
    }

    /// At the end of an input: a `StoreSync` or `RelaySync` to each shard that was sent
    /// something to confirm, one per input however many messages it got.
    pub(crate) fn send_store_syncs(&mut self) {
        for (to, kind, seq) in self.store_sync.take_due() {
            let kind = match kind {
                Kind::Store => ShardMessageKind::StoreSync(seq),
                Kind::Relay => ShardMessageKind::RelaySync(seq),
            };
            self.push_action(Action::ToShard { to, message: ShardMessage(kind) });
        }
    }

    /// A sync from another shard: answered once what it sent before is stored here (and,
    /// for a `StoreSync`, what this shard relayed before).
    pub(crate) fn handle_store_sync(&mut self, from: ShardId, kind: Kind, seq: u64) {
        let answer = match kind {
            Kind::Relay => Some((from, seq)),
            Kind::Store => self.store_sync.store_sync(from, seq),
        };
        if let Some((to, seq)) = answer {
            self.send_synced(to, kind, seq);
        }
    }

    fn send_synced(&mut self, to: ShardId, kind: Kind, seq: u64) {
        let kind = match kind {
            Kind::Store => ShardMessageKind::StoreSynced(seq),
            Kind::Relay => ShardMessageKind::RelaySynced(seq),
        };
        self.push_action(Action::ToShard { to, message: ShardMessage(kind) });
    }

    /// An answer: sends the acknowledgements (or `StoreSynced` answers) it releases.
    pub(crate) fn handle_store_synced(
        &mut self,
        now: Instant,
        from: ShardId,
        kind: Kind,
        seq: u64,
    ) {
        for (conn, packet) in self.store_sync.answered(from, kind, seq) {
            self.send_packet(now, conn, &packet);
        }
        if kind == Kind::Relay {
            for (to, seq) in self.store_sync.ready_replies() {
                self.send_synced(to, Kind::Store, seq);
            }
        }
    }
}
