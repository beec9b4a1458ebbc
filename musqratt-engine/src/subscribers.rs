//! Which of this shard's sessions a topic reaches: plain subscriptions and shared subscription
//! groups (§4.7, §4.8.2).
//!
//! Plain subscriptions live in a [`SubscriptionTrie`], matched without allocating; shared groups
//! (few, in practice) in an ordered map, because which member gets a message is decided by the
//! group's owner shard by client identifier (`shards::SharedGroups`).

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use musqratt_proto::bytestring::ByteString;
use musqratt_proto::topic::{matches, split_shared};

use crate::ids::SessionId;
use crate::router::SubscriptionTrie;
use crate::session::Subscription;
use crate::shards::GroupKey;

#[derive(Debug, Default)]
pub(crate) struct Subscribers {
    plain: SubscriptionTrie<SessionId, Subscription>,
    /// This shard's members of shared groups, by client identifier; which member gets a
    /// message is decided by the group's owner shard (`shards::SharedGroups`).
    shared: BTreeMap<GroupKey, BTreeMap<ByteString, (SessionId, Subscription)>>,
    /// A buffer reused by every publish for its matches.
    pub(crate) scratch: Vec<(SessionId, Subscription)>,
}

impl Subscribers {
    /// Adds or replaces a subscription; true when it is the shard's first on this filter (the
    /// other shards are then told).
    pub(crate) fn subscribe(
        &mut self,
        filter: &str,
        session: SessionId,
        client_id: &ByteString,
        sub: Subscription,
    ) -> bool {
        match split_shared(filter) {
            Some(Ok((group, inner))) => {
                let key = (ByteString::from(inner), ByteString::from(group));
                let members = self.shared.entry(key).or_default();
                let new = members.insert(client_id.clone(), (session, sub)).is_none();
                new && members.len() == 1
            }
            Some(Err(_)) => false,
            None => {
                // The engine inserts only filters the codec validated: an error cannot happen and
                // would mean no subscription, so no first subscriber either.
                let replaced = self.plain.insert(filter, session, sub).map(|old| old.is_some());
                replaced == Ok(false) && self.plain.subscribers(filter).nth(1).is_none()
            }
        }
    }

    /// Removes a subscription; true when it was the shard's last on this filter.
    pub(crate) fn unsubscribe(
        &mut self,
        filter: &str,
        session: SessionId,
        client_id: &ByteString,
    ) -> bool {
        match split_shared(filter) {
            Some(Ok((group, inner))) => {
                let key = (ByteString::from(inner), ByteString::from(group));
                let Some(members) = self.shared.get_mut(&key) else { return false };
                let removed = members.remove(client_id).is_some();
                let last = removed && members.is_empty();
                if last {
                    self.shared.remove(&key);
                }
                last
            }
            Some(Err(_)) => false,
            None => {
                let removed = self.plain.remove(filter, session).is_some();
                removed && self.plain.subscribers(filter).next().is_none()
            }
        }
    }

    /// Appends every plain subscription `topic` matches.
    pub(crate) fn collect_plain(&self, topic: &str, out: &mut Vec<(SessionId, Subscription)>) {
        self.plain.for_each_subscriber(topic, |session, sub| out.push((session, *sub)));
    }

    /// The shared groups with members here that `topic` matches.
    pub(crate) fn shared_groups(&self, topic: &str) -> impl Iterator<Item = &GroupKey> {
        self.shared.keys().filter(move |(filter, _)| matches(filter, topic))
    }

    /// The subscription of one member of a shared group, if it is still here.
    pub(crate) fn member(
        &self,
        key: &GroupKey,
        client_id: &ByteString,
    ) -> Option<(SessionId, Subscription)> {
        self.shared.get(key)?.get(client_id).copied()
    }
}
