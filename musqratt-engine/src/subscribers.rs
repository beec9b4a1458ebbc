//! Which of this shard's sessions a topic reaches: plain subscriptions and shared subscription
//! groups (§4.7, §4.8.2).
//!
//! A simple ordered map scanned per publish; the trie of `router` replaces the scan.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use musqratt_proto::bytestring::ByteString;
use musqratt_proto::topic::{matches, split_shared};

use crate::ids::SessionId;
use crate::session::Subscription;
use crate::shards::GroupKey;

#[derive(Debug, Default)]
pub(crate) struct Subscribers {
    plain: BTreeMap<ByteString, BTreeMap<SessionId, Subscription>>,
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
                members.insert(client_id.clone(), (session, sub));
                members.len() == 1
            }
            Some(Err(_)) => false,
            None => {
                let sessions = self.plain.entry(ByteString::from(filter)).or_default();
                sessions.insert(session, sub);
                sessions.len() == 1
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
                let Some(sessions) = self.plain.get_mut(filter) else { return false };
                let removed = sessions.remove(&session).is_some();
                let last = removed && sessions.is_empty();
                if last {
                    self.plain.remove(filter);
                }
                last
            }
        }
    }

    /// Appends every plain subscription `topic` matches.
    pub(crate) fn collect_plain(&self, topic: &str, out: &mut Vec<(SessionId, Subscription)>) {
        for (filter, sessions) in &self.plain {
            if matches(filter, topic) {
                out.extend(sessions.iter().map(|(session, sub)| (*session, *sub)));
            }
        }
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
