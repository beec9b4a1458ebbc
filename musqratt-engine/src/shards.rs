//! Many shards, one broker (DESIGN.md, "Many cores").
//!
//! Each shard owns the connections and sessions of the client identifiers that hash to it: a
//! connection accepted elsewhere is handed over after its CONNECT ([`crate::Action::Handoff`]),
//! so session takeover and resume never cross a thread. A publish is delivered to the shard's own
//! subscribers directly and sent once to each other shard with a matching subscription, found in
//! a replica of the route table that every shard keeps from the others' announcements. Retained
//! messages are replicated to every shard.
//!
//! A shared subscription group may have members on several shards; the publishing shard picks
//! one shard holding members (round robin) and that shard picks one of its members, so each
//! message still reaches exactly one member of the group (§4.8.2).

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::sync::Arc;

use musqratt_proto::bytestring::ByteString;
use musqratt_proto::topic::{matches, split_shared};
use smallvec::SmallVec;

use crate::ids::ShardId;
use crate::session::Message;

/// A message between shards, opaque to the runtime, which only carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardMessage(pub(crate) ShardMessageKind);

/// A shared subscription group: (topic filter, share name).
pub(crate) type GroupKey = (ByteString, ByteString);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ShardMessageKind {
    /// The sender now has at least one subscriber on `filter` (`add`), or none any more.
    Route { filter: ByteString, add: bool },
    /// A message for the receiver's own subscribers: the plain ones when `plain`, and one member
    /// of each listed shared group.
    Publish { message: Arc<Message>, plain: bool, groups: SmallVec<[GroupKey; 1]> },
    /// A retained message to store (or delete, with an empty payload).
    Retain(Arc<Message>),
}

/// The shard that owns a client identifier: FNV-1a, stable across runs and platforms.
pub(crate) fn owner_of(client_id: &str, shard_count: u16) -> ShardId {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in client_id.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    ShardId((hash % u64::from(shard_count.max(1))) as u16)
}

/// Where the other shards have subscribers.
#[derive(Debug, Default)]
pub(crate) struct RouteTable {
    plain: BTreeMap<ByteString, BTreeSet<ShardId>>,
    shared: BTreeMap<GroupKey, BTreeSet<ShardId>>,
    /// Round robin position per shared group: the shard that got the last message.
    cursors: BTreeMap<GroupKey, ShardId>,
}

impl RouteTable {
    pub(crate) fn update(&mut self, from: ShardId, filter: &ByteString, add: bool) {
        match split_shared(filter) {
            Some(Ok((group, inner))) => {
                let key = (ByteString::from(inner), ByteString::from(group));
                update_set(&mut self.shared, key, from, add);
            }
            Some(Err(_)) => {}
            None => update_set(&mut self.plain, filter.clone(), from, add),
        }
    }

    /// Adds to `out` every shard with a plain subscription matching `topic`.
    pub(crate) fn plain_shards(&self, topic: &str, out: &mut BTreeSet<ShardId>) {
        for (filter, shards) in &self.plain {
            if matches(filter, topic) {
                out.extend(shards.iter().copied());
            }
        }
    }

    /// The shared groups matching `topic` with the shards that have members of them.
    pub(crate) fn shared_groups(&self, topic: &str) -> BTreeMap<GroupKey, BTreeSet<ShardId>> {
        self.shared
            .iter()
            .filter(|((filter, _), _)| matches(filter, topic))
            .map(|(key, shards)| (key.clone(), shards.clone()))
            .collect()
    }

    /// Picks the next shard of a group's candidates, round robin.
    pub(crate) fn pick(
        &mut self,
        key: &GroupKey,
        candidates: &BTreeSet<ShardId>,
    ) -> Option<ShardId> {
        let last = self.cursors.get(key).copied();
        let next = last
            .and_then(|last| candidates.range(last..).find(|s| **s != last))
            .or_else(|| candidates.first())
            .copied()?;
        self.cursors.insert(key.clone(), next);
        Some(next)
    }
}

fn update_set<K: Ord>(map: &mut BTreeMap<K, BTreeSet<ShardId>>, key: K, shard: ShardId, add: bool) {
    if add {
        map.entry(key).or_default().insert(shard);
    } else if let Some(shards) = map.get_mut(&key) {
        shards.remove(&shard);
        if shards.is_empty() {
            map.remove(&key);
        }
    }
}
