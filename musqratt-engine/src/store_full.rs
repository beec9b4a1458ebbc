//! A store that cannot write (a full disk): new QoS 1 and 2 messages that would need a durable
//! write are refused, and the rest of the traffic keeps flowing (docs/PERSISTENCE.md, "A full
//! disk"; docs/adr/0021-full-disk-refuses-new-messages.md).
//!
//! The runtime says when its store stopped and started writing again
//! ([`Engine::set_store_full`]); the engine decides, per PUBLISH, whether accepting it would
//! add to the store. It refuses only those: a message nobody durable would keep costs no write
//! and goes on, so QoS 0 and traffic between clean sessions are not stopped by the disk.

use alloc::collections::BTreeSet;

use musqratt_proto::QoS;
use smallvec::SmallVec;

use crate::engine::Engine;

impl Engine {
    /// Whether the runtime's store can write (`false`) or not (`true`: its last write failed
    /// and it has not got room since). While it cannot, a QoS 1 or 2 PUBLISH that would need a
    /// durable write is refused: MQTT 5.0 PUBACK or PUBREC 0x97 Quota exceeded (§3.4.2.1,
    /// §3.5.2.1), MQTT 3.1.1 not acknowledged (it has no negative acknowledgement; the client
    /// keeps the message and sends it again when it reconnects, MQTT-4.4.0-1), MQTT-SN PUBACK
    /// "rejected: congestion" (§5.3.10). Without persistence it changes nothing.
    pub fn set_store_full(&mut self, full: bool) {
        self.store_full = full && self.config.persistence;
    }

    /// Whether the store is said to be full ([`Engine::set_store_full`]).
    #[must_use]
    pub fn store_full(&self) -> bool {
        self.store_full
    }

    /// Whether a QoS 1 or 2 PUBLISH to `topic` must be refused because the store cannot
    /// write: it is retained (the retained slot is stored), or it would reach a durable
    /// session of this shard at QoS 1 or 2, or another shard (which this shard cannot see
    /// into: a durable subscriber there is possible, so it is refused too), or a shared
    /// group (whose member may be durable).
    pub(crate) fn refused_while_full(&mut self, topic: &str, qos: QoS, retain: bool) -> bool {
        if !self.store_full || qos == QoS::AtMostOnce {
            return false;
        }
        if retain {
            return true;
        }
        if self.config.shard_count > 1 {
            let mut shards = SmallVec::new();
            self.routes.plain_shards(topic, &mut shards);
            if !shards.is_empty() {
                return true;
            }
        }
        let mut groups = BTreeSet::new();
        self.routes.shared_groups(topic, &mut groups);
        if !groups.is_empty() || self.subscribers.shared_groups(topic).next().is_some() {
            return true;
        }
        let mut matches = core::mem::take(&mut self.subscribers.scratch);
        matches.clear();
        self.subscribers.collect_plain(topic, &mut matches);
        let durable = matches.iter().any(|(id, sub)| {
            sub.options.qos != QoS::AtMostOnce && self.sessions.get(id).is_some_and(|s| s.stored)
        });
        matches.clear();
        self.subscribers.scratch = matches;
        durable
    }
}
