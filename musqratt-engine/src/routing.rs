//! Routing a message to the sessions whose subscriptions match it (§4.7, §4.8), on this shard
//! and, through the route table, on the others.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::sync::Arc;
use alloc::vec::Vec;

use musqratt_proto::QoS;
use musqratt_proto::bytestring::ByteString;
use musqratt_proto::mqtt::SubscriptionIds;
use musqratt_proto::topic::split_shared;
use smallvec::SmallVec;

use crate::deliver::state::{Lent, Routed};
use crate::engine::Engine;
use crate::ids::{SessionId, ShardId};
use crate::io::{Action, DropReason, Event};
use crate::session::{Delivery, Message, Subscription};
use crate::shards::{GroupKey, Member, ShardMessage, ShardMessageKind, group_owner};
use crate::store_sync::state::Kind;
use crate::time::Instant;

/// Shared group members of this shard picked for one message.
type SharedPicks = SmallVec<[(SessionId, Subscription); 2]>;

/// What a publish sends to one other shard.
#[derive(Default)]
struct Forward {
    plain: bool,
    members: SmallVec<[Member; 1]>,
}

impl Engine {
    /// Routes a message published on this shard: retained store, local subscribers, other
    /// shards; with the backlog on, keeps a message nobody matched. Returns whether any
    /// subscription matched. The message is shared only if something keeps it.
    pub(crate) fn route(&mut self, now: Instant, mut message: Routed) -> bool {
        if message.retain {
            let shared = message.share();
            self.retained.store(&shared);
            self.persist_retained(&shared);
            self.broadcast(&ShardMessageKind::Retain(shared));
        }
        let mut matches = core::mem::take(&mut self.subscribers.scratch);
        matches.clear();
        self.subscribers.collect_plain(&message.topic, &mut matches);

        let mut forwards: BTreeMap<ShardId, Forward> = BTreeMap::new();
        if self.config.shard_count > 1 {
            let mut shards = SmallVec::new();
            self.routes.plain_shards(&message.topic, &mut shards);
            for shard in shards {
                forwards.entry(shard).or_default().plain = true;
            }
        }
        // Shared groups: served by each group's owner shard (here, or sent there).
        let mut keys = BTreeSet::new();
        self.routes.shared_groups(&message.topic, &mut keys);
        keys.extend(self.subscribers.shared_groups(&message.topic).cloned());
        let mut owners: BTreeMap<ShardId, SmallVec<[GroupKey; 1]>> = BTreeMap::new();
        let any_group = !keys.is_empty();
        let mut picks = SharedPicks::new();
        for key in keys {
            let owner = group_owner(&key, self.config.shard_count);
            if owner == self.config.shard {
                self.serve_shared(key, &mut picks, &mut forwards);
            } else {
                owners.entry(owner).or_default().push(key);
            }
        }
        let matched = !matches.is_empty() || !forwards.is_empty() || any_group;
        self.deliver_matches(now, &mut message, &mut matches, &picks);
        self.subscribers.scratch = matches;

        if !forwards.is_empty() || !owners.is_empty() {
            // The publisher's own subscriptions are on this shard: No Local never applies there.
            let mut remote = Message::clone(&message);
            remote.publisher = None;
            let remote = Arc::new(remote);
            let shards = forwards.keys().chain(owners.keys()).copied();
            self.note_forwards(&remote, shards, Kind::Store);
            self.send_forwards(&remote, forwards);
            for (to, keys) in owners {
                let kind = ShardMessageKind::SharedPublish { message: Arc::clone(&remote), keys };
                self.push_action(Action::ToShard { to, message: ShardMessage(kind) });
            }
        }
        if !matched && !message.retain && self.config.backlog.enabled() {
            self.keep_in_backlog(message.share());
        }
        matched
    }

    /// Picks the member of a group this shard owns that gets the message: a local subscription
    /// goes to `matches`, a member on another shard to `forwards`.
    fn serve_shared(
        &mut self,
        key: GroupKey,
        picks: &mut SharedPicks,
        forwards: &mut BTreeMap<ShardId, Forward>,
    ) {
        let Some((client_id, shard)) = self.shared_groups.pick(&key) else { return };
        if shard == self.config.shard {
            picks.extend(self.subscribers.member(&key, &client_id));
        } else {
            forwards.entry(shard).or_default().members.push((key, client_id));
        }
    }

    /// With persistence, a QoS 1 or 2 message sent to other shards: their answers to the
    /// syncs that follow it release its acknowledgement (`store_sync`).
    fn note_forwards(
        &mut self,
        message: &Message,
        shards: impl Iterator<Item = ShardId>,
        kind: Kind,
    ) {
        if self.config.persistence && message.qos != QoS::AtMostOnce {
            for shard in shards {
                self.store_sync.forwarded(shard, kind);
            }
        }
    }

    fn send_forwards(&mut self, message: &Arc<Message>, forwards: BTreeMap<ShardId, Forward>) {
        for (to, forward) in forwards {
            let kind = ShardMessageKind::Publish {
                message: Arc::clone(message),
                plain: forward.plain,
                members: forward.members,
            };
            self.push_action(Action::ToShard { to, message: ShardMessage(kind) });
        }
    }

    /// Delivers to the matched plain subscriptions of this shard: one copy per session at the
    /// highest QoS of its matching subscriptions, with all their identifiers (MQTT-3.3.4-2, -3,
    /// -5); then one copy to each picked shared group member (§4.8.2: a shared subscription
    /// gives its own copy, besides any non-shared one).
    fn deliver_matches(
        &mut self,
        now: Instant,
        message: &mut Routed,
        matches: &mut Vec<(SessionId, Subscription)>,
        shared_picks: &[(SessionId, Subscription)],
    ) {
        // No Local (MQTT-3.8.3-3): not back to the publisher's own subscriptions.
        let publisher = message.publisher;
        matches.retain(|(session, sub)| !(sub.options.no_local && publisher == Some(*session)));
        // Usually already in session order; a stable sort of a long list allocates its buffer.
        if !matches.is_sorted_by_key(|(session, _)| *session) {
            matches.sort_by_key(|(session, _)| *session);
        }
        for run in matches.chunk_by(|a, b| a.0 == b.0) {
            let delivery = delivery(message, run.iter().map(|(_, sub)| sub));
            self.deliver(now, run[0].0, delivery);
        }
        for (session, sub) in shared_picks {
            self.deliver(now, *session, delivery(message, core::iter::once(sub)));
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
            ShardMessageKind::Route { filter, add } => self.routes.update(from, &filter, add),
            // A subscriber on another shard got its SUBACK: it gets what this shard kept.
            ShardMessageKind::ReleaseBacklog(filter) => self.release_backlog(now, &filter),
            ShardMessageKind::Retain(message) => self.retained.store(&message),
            ShardMessageKind::Sync(seq) => self.handle_sync(from, seq),
            ShardMessageKind::SyncAck(seq) => self.handle_sync_ack(now, from, seq),
            ShardMessageKind::StoreSync(seq) => self.handle_store_sync(from, Kind::Store, seq),
            ShardMessageKind::RelaySync(seq) => self.handle_store_sync(from, Kind::Relay, seq),
            ShardMessageKind::StoreSynced(seq) => {
                self.handle_store_synced(now, from, Kind::Store, seq);
            }
            ShardMessageKind::RelaySynced(seq) => {
                self.handle_store_synced(now, from, Kind::Relay, seq);
            }
            ShardMessageKind::SharedMember { key, client_id, add } => {
                self.shared_groups.update(key, client_id, from, add);
            }
            ShardMessageKind::SharedPublish { message, keys } => {
                let mut picks = SharedPicks::new();
                let mut forwards = BTreeMap::new();
                for key in keys {
                    self.serve_shared(key, &mut picks, &mut forwards);
                }
                let mut routed = Routed::Shared(Arc::clone(&message));
                self.deliver_matches(now, &mut routed, &mut Vec::new(), &picks);
                self.note_forwards(&message, forwards.keys().copied(), Kind::Relay);
                self.send_forwards(&message, forwards);
            }
            ShardMessageKind::Publish { message, plain, members } => {
                let mut matches = core::mem::take(&mut self.subscribers.scratch);
                matches.clear();
                if plain {
                    self.subscribers.collect_plain(&message.topic, &mut matches);
                }
                // A member that left since its group's owner picked it misses this message.
                let picks: SharedPicks =
                    members.iter().filter_map(|(key, c)| self.subscribers.member(key, c)).collect();
                self.deliver_matches(now, &mut Routed::Shared(message), &mut matches, &picks);
                self.subscribers.scratch = matches;
            }
        }
    }

    /// Records a subscription change of a local session: the other shards hear of a filter's
    /// first and last local subscriber, and a shared group's owner of every member.
    pub(crate) fn subscription_changed(
        &mut self,
        filter: &ByteString,
        session: SessionId,
        client_id: &ByteString,
        subscription: Option<Subscription>,
    ) {
        let add = subscription.is_some();
        let edge = match subscription {
            Some(sub) => self.subscribers.subscribe(filter, session, client_id, sub),
            None => self.subscribers.unsubscribe(filter, session, client_id),
        };
        if edge {
            self.announce_route(filter, add);
        }
        if let Some(Ok((group, inner))) = split_shared(filter) {
            let key = (ByteString::from(inner), ByteString::from(group));
            let owner = group_owner(&key, self.config.shard_count);
            if owner == self.config.shard {
                self.shared_groups.update(key, client_id.clone(), owner, add);
            } else {
                let kind =
                    ShardMessageKind::SharedMember { key, client_id: client_id.clone(), add };
                self.push_action(Action::ToShard { to: owner, message: ShardMessage(kind) });
                self.route_sync.mark_dirty();
            }
        }
    }

    /// Tells every other shard that this one gained its first or lost its last subscriber on a
    /// filter.
    fn announce_route(&mut self, filter: &ByteString, add: bool) {
        self.broadcast(&ShardMessageKind::Route { filter: filter.clone(), add });
        self.route_sync.mark_dirty();
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

/// One delivery of `message` for the subscriptions of one session that it matches.
fn delivery<'a, 'm>(
    message: &'m mut Routed,
    subs: impl Iterator<Item = &'a Subscription>,
) -> Delivery<Lent<'m>> {
    let mut qos = QoS::AtMostOnce;
    let mut retain_as_published = false;
    let mut subscription_ids = SubscriptionIds::new();
    for sub in subs {
        qos = qos.max(sub.options.qos);
        retain_as_published |= sub.options.retain_as_published;
        subscription_ids.extend(sub.id);
    }
    Delivery {
        qos: qos.min(message.qos),
        // MQTT-3.3.1-12, -13: RETAIN is kept only for Retain As Published.
        retain: message.retain && retain_as_published,
        subscription_ids,
        message: Lent(message),
        stored: 0,
    }
}
