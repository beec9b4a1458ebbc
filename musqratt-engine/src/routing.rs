//! Routing a message to the sessions whose subscriptions match it (§4.7, §4.8), on this shard
//! and, through the route table, on the others.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::sync::Arc;

use musqratt_proto::QoS;
use musqratt_proto::bytestring::ByteString;
use musqratt_proto::mqtt::SubscriptionIds;
use smallvec::SmallVec;

use crate::engine::Engine;
use crate::ids::{SessionId, ShardId};
use crate::io::{Action, DropReason, Event};
use crate::session::{Delivery, Message, Subscription};
use crate::shards::{GroupKey, ShardMessage, ShardMessageKind};
use crate::time::Instant;

/// What a publish sends to one other shard.
#[derive(Default)]
struct Forward {
    plain: bool,
    groups: SmallVec<[GroupKey; 1]>,
}

impl Engine {
    /// Routes a message published on this shard: retained store, local subscribers, other
    /// shards; with the backlog on, keeps a message nobody matched. Returns whether any
    /// subscription matched.
    pub(crate) fn route(&mut self, now: Instant, message: Arc<Message>) -> bool {
        if message.retain {
            self.retained.store(&message);
            self.broadcast(&ShardMessageKind::Retain(Arc::clone(&message)));
        }
        let mut matches = core::mem::take(&mut self.subscribers.scratch);
        matches.clear();
        self.subscribers.collect_plain(&message.topic, &mut matches);

        let mut forwards: BTreeMap<ShardId, Forward> = BTreeMap::new();
        if self.config.shard_count > 1 {
            let mut shards = BTreeSet::new();
            self.routes.plain_shards(&message.topic, &mut shards);
            for shard in shards {
                forwards.entry(shard).or_default().plain = true;
            }
        }
        // Shared groups: one shard among those with members, then one member there.
        let mut groups = self.routes.shared_groups(&message.topic);
        for key in self.subscribers.shared_groups(&message.topic) {
            groups.entry(key.clone()).or_default().insert(self.config.shard);
        }
        for (key, candidates) in groups {
            match self.routes.pick(&key, &candidates) {
                Some(shard) if shard == self.config.shard => {
                    matches.extend(self.subscribers.pick_member(&key));
                }
                Some(shard) => forwards.entry(shard).or_default().groups.push(key),
                None => {}
            }
        }
        let matched = !matches.is_empty() || !forwards.is_empty();
        self.deliver_matches(now, &message, &mut matches);
        self.subscribers.scratch = matches;

        if !forwards.is_empty() {
            // The publisher's own subscriptions are on this shard: No Local never applies there.
            let mut remote = Message::clone(&message);
            remote.publisher = None;
            let remote = Arc::new(remote);
            for (to, forward) in forwards {
                let kind = ShardMessageKind::Publish {
                    message: Arc::clone(&remote),
                    plain: forward.plain,
                    groups: forward.groups,
                };
                self.push_action(Action::ToShard { to, message: ShardMessage(kind) });
            }
        }
        if !matched && !message.retain && self.config.backlog.enabled() {
            self.keep_in_backlog(message);
        }
        matched
    }

    /// Delivers to the matched subscriptions of this shard: one copy per session at the highest
    /// QoS of its matching subscriptions, with all their identifiers (MQTT-3.3.4-2, -3, -5).
    fn deliver_matches(
        &mut self,
        now: Instant,
        message: &Arc<Message>,
        matches: &mut alloc::vec::Vec<(SessionId, Subscription)>,
    ) {
        // No Local (MQTT-3.8.3-3): not back to the publisher's own subscriptions.
        matches.retain(|(session, sub)| {
            !(sub.options.no_local && message.publisher == Some(*session))
        });
        matches.sort_by_key(|(session, _)| *session);
        let mut index = 0;
        while index < matches.len() {
            let session = matches[index].0;
            let mut qos = QoS::AtMostOnce;
            let mut retain_as_published = false;
            let mut subscription_ids = SubscriptionIds::new();
            while index < matches.len() && matches[index].0 == session {
                let sub = matches[index].1;
                qos = qos.max(sub.options.qos);
                retain_as_published |= sub.options.retain_as_published;
                subscription_ids.extend(sub.id);
                index += 1;
            }
            let delivery = Delivery {
                qos: qos.min(message.qos),
                // MQTT-3.3.1-12, -13: RETAIN is kept only for Retain As Published.
                retain: message.retain && retain_as_published,
                subscription_ids,
                message: Arc::clone(message),
            };
            self.deliver(now, session, delivery);
        }
    }

    /// A message from another shard.
    pub(crate) fn handle_shard_message(
        &mut self,
        now: Instant,
        from: ShardId,
        kind: ShardMessageKind,
    ) {
        match kind {
            ShardMessageKind::Route { filter, add } => {
                self.routes.update(from, &filter, add);
                if add && self.config.backlog.enabled() {
                    // A subscriber appeared on another shard: it gets what this shard kept.
                    self.release_backlog(now, &filter);
                }
            }
            ShardMessageKind::Retain(message) => self.retained.store(&message),
            ShardMessageKind::Publish { message, plain, groups } => {
                let mut matches = core::mem::take(&mut self.subscribers.scratch);
                matches.clear();
                if plain {
                    self.subscribers.collect_plain(&message.topic, &mut matches);
                }
                for key in &groups {
                    matches.extend(self.subscribers.pick_member(key));
                }
                self.deliver_matches(now, &message, &mut matches);
                self.subscribers.scratch = matches;
            }
        }
    }

    /// Tells every other shard that this one gained its first or lost its last subscriber on a
    /// filter.
    pub(crate) fn announce_route(&mut self, filter: &ByteString, add: bool) {
        self.broadcast(&ShardMessageKind::Route { filter: filter.clone(), add });
    }

    fn broadcast(&mut self, kind: &ShardMessageKind) {
        for shard in 0..self.config.shard_count {
            let to = ShardId(shard);
            if to != self.config.shard {
                self.push_action(Action::ToShard { to, message: ShardMessage(kind.clone()) });
            }
        }
    }

    fn keep_in_backlog(&mut self, message: Arc<Message>) {
        if !self.backlog.push(message, &self.config.backlog) {
            let client_id = ByteString::new();
            self.emit(Event::MessageDropped { client_id, reason: DropReason::BacklogFull });
        }
    }
}
