//! Shared subscriptions (MQTT 5.0 §4.8.2): one group of members per (share name, topic filter),
//! and the round-robin choice of the one member that receives each message.

use alloc::collections::BTreeMap;
use alloc::collections::btree_map;
use core::ops::Bound;

/// The members of one shared subscription `$share/{group}/{filter}` (MQTT 5.0 §4.8.2).
///
/// Each matching message goes to exactly one member. The choice is round robin in key order, with
/// a cursor holding the key picked last, so it is deterministic (the same subscriptions and the
/// same publishes pick the same members) and it survives members joining and leaving: the next
/// pick is the first member after the cursor, wrapping to the smallest key. With a stable
/// membership of `n`, every `n` consecutive messages reach every member exactly once.
#[derive(Debug, Clone)]
pub struct SharedGroup<K, V> {
    members: BTreeMap<K, V>,
    /// The key picked last; it may name a member that has since left, which is fine for `range`.
    cursor: Option<K>,
}

impl<K: Ord + Copy, V> SharedGroup<K, V> {
    /// A group with no members; the trie drops a group when its last member leaves.
    pub(crate) const fn new() -> Self {
        Self { members: BTreeMap::new(), cursor: None }
    }

    /// How many members the group has.
    #[must_use]
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the group has no members (the trie never keeps such a group).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The members in key order, with their subscription values.
    pub fn members(&self) -> impl Iterator<Item = (K, &V)> + '_ {
        self.members.iter().map(|(k, v)| (*k, v))
    }

    /// The member that would receive the next message, without advancing the cursor.
    #[must_use]
    pub fn peek(&self) -> Option<(K, &V)> {
        self.next_entry().map(|(k, v)| (*k, v))
    }

    /// Chooses the member that receives this message and advances the cursor past it.
    ///
    /// MQTT 5.0 §4.8.2: "each message matching the subscription is delivered to only one of the
    /// sessions attached to that shared subscription". `None` only for an empty group.
    pub fn pick(&mut self) -> Option<(K, &V)> {
        let key = *self.next_entry()?.0;
        self.cursor = Some(key);
        self.members.get_key_value(&key).map(|(k, v)| (*k, v))
    }

    fn next_entry(&self) -> Option<(&K, &V)> {
        let after = match self.cursor {
            Some(last) => self.members.range((Bound::Excluded(last), Bound::Unbounded)).next(),
            None => None,
        };
        after.or_else(|| self.members.iter().next())
    }

    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<V> {
        self.members.insert(key, value)
    }

    pub(crate) fn remove(&mut self, key: K) -> Option<V> {
        self.members.remove(&key)
    }

    pub(crate) fn get_mut(&mut self, key: K) -> Option<&mut V> {
        self.members.get_mut(&key)
    }

    pub(crate) fn iter(&self) -> btree_map::Iter<'_, K, V> {
        self.members.iter()
    }
}

/// One delivery decided by [`SubscriptionTrie::for_each_match`](super::SubscriptionTrie::for_each_match).
///
/// A publish reaches every direct subscriber whose filter matches, and one member of every
/// matching shared group. A session with both a direct and a shared subscription that match gets
/// a copy for each (MQTT 5.0 §4.8.2), and so the caller sees both matches; folding overlapping
/// subscriptions of one session into one delivery (MQTT 5.0 §3.3.4) is the caller's choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match<'a, K, V> {
    /// A non-shared subscription of `key` whose filter matches the topic.
    Direct {
        /// The subscriber.
        key: K,
        /// Its subscription's value (options, subscription identifier...).
        value: &'a V,
    },
    /// The member of shared group `group` chosen, round robin, to receive this message.
    Shared {
        /// The share name, from `$share/{group}/{filter}`.
        group: &'a str,
        /// The chosen member.
        key: K,
        /// Its subscription's value.
        value: &'a V,
    },
}

impl<'a, K: Copy, V> Match<'a, K, V> {
    /// The subscriber this match delivers to.
    #[must_use]
    pub const fn key(&self) -> K {
        match *self {
            Self::Direct { key, .. } | Self::Shared { key, .. } => key,
        }
    }

    /// The value of the subscription this match delivers through.
    #[must_use]
    pub const fn value(&self) -> &'a V {
        match *self {
            Self::Direct { value, .. } | Self::Shared { value, .. } => value,
        }
    }

    /// The share name for a shared match, `None` for a direct one.
    #[must_use]
    pub const fn group(&self) -> Option<&'a str> {
        match *self {
            Self::Direct { .. } => None,
            Self::Shared { group, .. } => Some(group),
        }
    }
}
