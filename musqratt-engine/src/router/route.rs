//! The route table of a shard: which shards have subscribers on which filters (design, "Many
//! cores"), so a publish is forwarded once to each interested shard and to no other.

use musqratt_proto::topic::TopicError;
use smallvec::{Array, SmallVec};

use super::trie::SubscriptionTrie;

use crate::ids::ShardId;

/// Filter -> the shards that have at least one subscriber on it.
///
/// Each shard keeps a replica, updated by the subscribe and unsubscribe events the shards
/// exchange. A shard is counted once per subscription it reports on a filter, and stays listed
/// while its count is at least one, so two sessions on one shard subscribing to `a/+` and one of
/// them leaving keeps the route. It is a [`SubscriptionTrie`] keyed by shard, with the count as
/// the value, so it matches with the same rules and the same cost as local delivery.
///
/// Shared subscriptions (`$share/{group}/{filter}`) are routes like any other: every shard with a
/// member is listed. Choosing the one member of a group across shards, so that a message reaches
/// exactly one session (MQTT 5.0 §4.8.2), is decided by the engine, not by this table.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    trie: SubscriptionTrie<ShardId, u32>,
}

impl RouteTable {
    /// An empty table.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one more subscription of `shard` on `filter`. Returns `true` when the shard was
    /// not listed for that filter before.
    ///
    /// # Errors
    /// The filter is not a valid topic filter; the table is unchanged.
    pub fn add(&mut self, filter: &str, shard: ShardId) -> Result<bool, TopicError> {
        if let Some(count) = self.trie.get_mut(filter, shard) {
            *count = count.saturating_add(1);
            return Ok(false);
        }
        self.trie.insert(filter, shard, 1).map(|_| true)
    }

    /// Counts one subscription of `shard` on `filter` fewer. Returns `true` when that was its
    /// last one, so the shard is no longer listed; `false` also when it was not listed at all.
    pub fn remove(&mut self, filter: &str, shard: ShardId) -> bool {
        match self.trie.get_mut(filter, shard) {
            Some(count) if *count > 1 => {
                *count -= 1;
                false
            }
            Some(_) => self.trie.remove(filter, shard).is_some(),
            None => false,
        }
    }

    /// How many subscriptions `shard` has on exactly `filter`: 0 when it is not listed.
    #[must_use]
    pub fn count(&self, filter: &str, shard: ShardId) -> u32 {
        self.trie.subscribers(filter).find(|&(s, _)| s == shard).map_or(0, |(_, &n)| n)
    }

    /// Whether no shard is listed for any filter.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.trie.is_empty()
    }

    /// How many (filter, shard) routes are listed.
    #[must_use]
    pub const fn len(&self) -> usize {
        self.trie.len()
    }

    /// The trie's node count, root included (1 when empty).
    #[must_use]
    pub fn node_count(&self) -> usize {
        self.trie.node_count()
    }

    /// Replaces `out` with the shards whose routes match `topic`, sorted and without duplicates,
    /// so a publish is forwarded once per shard in a fixed order. The caller skips its own shard.
    pub fn shards_matching<A: Array<Item = ShardId>>(&self, topic: &str, out: &mut SmallVec<A>) {
        out.clear();
        self.trie.for_each_subscriber(topic, |shard, _| out.push(shard));
        out.sort_unstable();
        out.dedup();
    }
}
