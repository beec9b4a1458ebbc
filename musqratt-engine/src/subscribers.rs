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
struct SharedGroup {
    members: BTreeMap<SessionId, Subscription>,
    /// Round robin position: the member that got the last message.
    cursor: Option<SessionId>,
}

#[derive(Debug, Default)]
pub(crate) struct Subscribers {
    plain: BTreeMap<ByteString, BTreeMap<SessionId, Subscription>>,
    shared: BTreeMap<GroupKey, SharedGroup>,
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
        sub: Subscription,
    ) -> bool {
        let members = match split_shared(filter) {
            Some(Ok((group, inner))) => {
                let key = (ByteString::from(inner), ByteString::from(group));
                &mut self.shared.entry(key).or_default().members
            }
            Some(Err(_)) => return false,
            None => self.plain.entry(ByteString::from(filter)).or_default(),
        };
        members.insert(session, sub);
        members.len() == 1
    }

    /// Removes a subscription; true when it was the shard's last on this filter.
    pub(crate) fn unsubscribe(&mut self, filter: &str, session: SessionId) -> bool {
        match split_shared(filter) {
            Some(Ok((group, inner))) => {
                let key = (ByteString::from(inner), ByteString::from(group));
                let Some(shared) = self.shared.get_mut(&key) else { return false };
                let removed = shared.members.remove(&session).is_some();
                let last = removed && shared.members.is_empty();
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

    /// The next member of a group, round robin (§4.8.2: each message to one member).
    pub(crate) fn pick_member(&mut self, key: &GroupKey) -> Option<(SessionId, Subscription)> {
        let group = self.shared.get_mut(key)?;
        let next = group
            .cursor
            .and_then(|last| group.members.range(last..).find(|(s, _)| **s != last))
            .or_else(|| group.members.iter().next())
            .map(|(session, sub)| (*session, *sub))?;
        group.cursor = Some(next.0);
        Some(next)
    }
}
