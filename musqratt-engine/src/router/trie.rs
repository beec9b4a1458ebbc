//! The subscription trie: topic filters split into levels (MQTT 5.0 §4.7.1), one node per level,
//! held in an arena so matching walks indices and never allocates.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::mem;

use musqratt_proto::topic::{TopicError, split_shared, validate_topic_filter};
use smallvec::SmallVec;

use super::shared::{Match, SharedGroup};

/// An index into the trie's arena.
type NodeId = u32;

/// The root node: the level before the first one. It is never freed.
const ROOT: NodeId = 0;

/// The position in the topic after its last level has been consumed.
const END: usize = usize::MAX;

/// The walk's stack lives inline up to this many pending nodes. While one branch is explored,
/// each level above it leaves at most its `+` and `#` siblings pending, so topics up to about 15
/// levels deep in a trie with wildcards at every level match without touching the heap.
const INLINE_STACK: usize = 32;

/// One level of one or more topic filters.
#[derive(Debug, Clone)]
struct Node<K, V> {
    /// Children for literal levels, sorted by level for binary search. A sorted `Vec` is smaller
    /// and faster to search than a map for the handful of children most nodes have.
    children: Vec<(Box<str>, NodeId)>,
    /// The `+` child (MQTT 5.0 §4.7.1.3), kept apart so matching needs no string comparison.
    plus: Option<NodeId>,
    /// The `#` child (MQTT 5.0 §4.7.1.2); it is always a leaf because `#` is last (MQTT-4.7.1-1).
    hash: Option<NodeId>,
    /// Non-shared subscriptions of the filter ending here, by subscriber.
    direct: BTreeMap<K, V>,
    /// Shared subscriptions `$share/{group}/{filter}` of the filter ending here, by share name.
    shared: BTreeMap<Box<str>, SharedGroup<K, V>>,
}

impl<K, V> Node<K, V> {
    const fn new() -> Self {
        Self {
            children: Vec::new(),
            plus: None,
            hash: None,
            direct: BTreeMap::new(),
            shared: BTreeMap::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.plus.is_none()
            && self.hash.is_none()
            && self.direct.is_empty()
            && self.shared.is_empty()
    }

    fn child(&self, level: &str) -> Option<NodeId> {
        match level {
            "+" => self.plus,
            "#" => self.hash,
            _ => self.literal(level),
        }
    }

    fn literal(&self, level: &str) -> Option<NodeId> {
        self.children.binary_search_by(|(l, _)| (**l).cmp(level)).ok().map(|i| self.children[i].1)
    }

    fn unlink(&mut self, level: &str) {
        match level {
            "+" => self.plus = None,
            "#" => self.hash = None,
            _ => {
                if let Ok(i) = self.children.binary_search_by(|(l, _)| (**l).cmp(level)) {
                    self.children.remove(i);
                }
            }
        }
    }
}

/// Which subscription of a filter string: direct, or a member of a shared group.
#[derive(Clone, Copy)]
enum Kind<'f> {
    Direct,
    Shared(&'f str),
}

/// Splits a subscription filter into its kind and the topic filter proper.
fn parse(filter: &str) -> Result<(Kind<'_>, &str), TopicError> {
    match split_shared(filter) {
        Some(shared) => shared.map(|(group, inner)| (Kind::Shared(group), inner)),
        None => validate_topic_filter(filter).map(|()| (Kind::Direct, filter)),
    }
}

/// Topic filters and their subscribers, matched against topic names on every publish.
///
/// `K` identifies a subscriber (a session id, or a shard in a [`RouteTable`](super::RouteTable));
/// `V` is what one subscription carries (its options). One key has at most one subscription per
/// filter string: subscribing again replaces it (MQTT-3.8.4-3). `a/b` and `$share/g/a/b` are
/// different filter strings, so a session may hold both (MQTT 5.0 §4.8.2).
///
/// Nodes live in an arena `Vec` addressed by index, with a free list: removing the last
/// subscription of a filter prunes the nodes it alone used, dropping their buffers, and later
/// inserts reuse their slots, so the arena never outgrows the peak number of live nodes however
/// much subscriptions churn. Everything that reaches an output is
/// ordered (sorted children, `BTreeMap`s of keys), so matches come out in the same order for the
/// same history.
#[derive(Debug, Clone)]
pub struct SubscriptionTrie<K, V> {
    nodes: Vec<Node<K, V>>,
    free: Vec<NodeId>,
    /// Subscriptions: direct ones plus shared-group memberships.
    len: usize,
}

impl<K: Ord + Copy, V> Default for SubscriptionTrie<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Ord + Copy, V> SubscriptionTrie<K, V> {
    /// An empty trie: just the root node.
    #[must_use]
    pub fn new() -> Self {
        Self { nodes: Vec::from([Node::new()]), free: Vec::new(), len: 0 }
    }

    /// How many subscriptions the trie holds, counting each shared-group member once.
    #[must_use]
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether the trie holds no subscription.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many nodes are in use, the root included: 1 for an empty trie. Exposed so tests and
    /// metrics can check that pruning keeps memory proportional to the live filters.
    #[must_use]
    pub fn node_count(&self) -> usize {
        self.nodes.len() - self.free.len()
    }

    /// Subscribes `key` to `filter` (plain or `$share/{group}/{filter}`), returning the value of
    /// the subscription it replaces: a session's second SUBSCRIBE to the same filter replaces the
    /// first (MQTT-3.8.4-3).
    ///
    /// # Errors
    /// The filter breaks §4.7.1 or §4.8.2 ([`validate_topic_filter`]); the trie is unchanged.
    /// The codec already rejects such filters, but a trie that stored them would hold levels no
    /// topic can reach, so it checks again rather than trust its caller.
    pub fn insert(&mut self, filter: &str, key: K, value: V) -> Result<Option<V>, TopicError> {
        let (kind, inner) = parse(filter)?;
        let mut node = ROOT;
        for level in inner.split('/') {
            node = match self.nodes[node as usize].child(level) {
                Some(child) => child,
                None => self.add_child(node, level),
            };
        }
        let node = &mut self.nodes[node as usize];
        let old = match kind {
            Kind::Direct => node.direct.insert(key, value),
            Kind::Shared(group) => match node.shared.get_mut(group) {
                Some(members) => members.insert(key, value),
                None => {
                    let mut members = SharedGroup::new();
                    members.insert(key, value);
                    node.shared.insert(group.into(), members);
                    None
                }
            },
        };
        if old.is_none() {
            self.len += 1;
        }
        Ok(old)
    }

    /// Unsubscribes `key` from `filter` (MQTT 5.0 §3.10.4), returning the subscription's value,
    /// or `None` when there was none (an invalid filter has none). Nodes left without any
    /// subscription or child are freed, back up to the root.
    pub fn remove(&mut self, filter: &str, key: K) -> Option<V> {
        let (kind, inner) = parse(filter).ok()?;
        // The path from the root, with the level that leads to each node, for pruning.
        let mut path: SmallVec<[(NodeId, &str); INLINE_STACK]> = SmallVec::new();
        let mut node = ROOT;
        for level in inner.split('/') {
            node = self.nodes[node as usize].child(level)?;
            path.push((node, level));
        }
        let leaf = &mut self.nodes[node as usize];
        let old = match kind {
            Kind::Direct => leaf.direct.remove(&key)?,
            Kind::Shared(group) => {
                let members = leaf.shared.get_mut(group)?;
                let old = members.remove(key)?;
                if members.is_empty() {
                    leaf.shared.remove(group);
                }
                old
            }
        };
        self.len -= 1;
        while let Some((node, level)) = path.pop() {
            if !self.nodes[node as usize].is_empty() {
                break;
            }
            let parent = path.last().map_or(ROOT, |&(parent, _)| parent);
            self.nodes[parent as usize].unlink(level);
            self.free_node(node);
        }
        Some(old)
    }

    /// The value of `key`'s subscription to `filter`, to update its options in place.
    pub fn get_mut(&mut self, filter: &str, key: K) -> Option<&mut V> {
        let (kind, inner) = parse(filter).ok()?;
        let id = self.find(inner)?;
        let node = &mut self.nodes[id as usize];
        match kind {
            Kind::Direct => node.direct.get_mut(&key),
            Kind::Shared(group) => node.shared.get_mut(group)?.get_mut(key),
        }
    }

    /// The subscribers of exactly this filter string (not of the filters that overlap it), in key
    /// order: the direct subscribers of a plain filter, or the members of a shared group.
    pub fn subscribers(&self, filter: &str) -> impl Iterator<Item = (K, &V)> + '_ {
        let found = parse(filter).ok().and_then(|(kind, inner)| {
            let node = &self.nodes[self.find(inner)? as usize];
            match kind {
                Kind::Direct => Some(node.direct.iter()),
                Kind::Shared(group) => Some(node.shared.get(group)?.iter()),
            }
        });
        found.into_iter().flatten().map(|(k, v)| (*k, v))
    }

    /// The shared group `$share/{group}/{filter}` as `filter` names it, if it has members.
    #[must_use]
    pub fn shared_group(&self, filter: &str) -> Option<&SharedGroup<K, V>> {
        let (Kind::Shared(group), inner) = parse(filter).ok()? else { return None };
        self.nodes[self.find(inner)? as usize].shared.get(group)
    }

    /// Decides the deliveries of a message published to `topic`: calls `f` once for every direct
    /// subscription whose filter matches, and once for every matching shared group with the member
    /// picked round robin ([`SharedGroup::pick`]), which advances that group's cursor.
    ///
    /// This takes `&mut self` so picking is part of matching: a caller cannot forget to advance a
    /// cursor, and there is one walk per publish. Use [`for_each_subscriber`](Self::for_each_subscriber)
    /// to look without picking.
    ///
    /// The matching rules are those of [`musqratt_proto::topic::matches`]: `+` matches exactly one
    /// level, `#` any number of levels including none, so `a/#` matches `a` (MQTT 5.0 §4.7.1.2), and
    /// a filter starting with a wildcard does not match a topic starting with `$` (MQTT-4.7.2-1).
    /// The walk allocates nothing unless the matching part of the trie is unusually deep (see
    /// `INLINE_STACK`); the visit order is fixed by the trie's sorted structure.
    pub fn for_each_match(&mut self, topic: &str, mut f: impl FnMut(Match<'_, K, V>)) {
        let mut walk = Walk::new(topic);
        while let Some(id) = walk.next(&self.nodes) {
            let node = &mut self.nodes[id as usize];
            for (key, value) in &node.direct {
                f(Match::Direct { key: *key, value });
            }
            for (group, members) in &mut node.shared {
                if let Some((key, value)) = members.pick() {
                    f(Match::Shared { group, key, value });
                }
            }
        }
    }

    /// Calls `f` for every subscription whose filter matches `topic`, every member of every
    /// matching shared group included, without picking. This is the "who is interested" question
    /// a [`RouteTable`](super::RouteTable) asks; the rules are those of
    /// [`for_each_match`](Self::for_each_match).
    pub fn for_each_subscriber(&self, topic: &str, mut f: impl FnMut(K, &V)) {
        let mut walk = Walk::new(topic);
        while let Some(id) = walk.next(&self.nodes) {
            let node = &self.nodes[id as usize];
            for (key, value) in &node.direct {
                f(*key, value);
            }
            for members in node.shared.values() {
                for (key, value) in members.iter() {
                    f(*key, value);
                }
            }
        }
    }

    /// The node of a plain filter, if any subscription made it.
    fn find(&self, filter: &str) -> Option<NodeId> {
        filter.split('/').try_fold(ROOT, |node, level| self.nodes[node as usize].child(level))
    }

    fn add_child(&mut self, parent: NodeId, level: &str) -> NodeId {
        let child = match self.free.pop() {
            Some(id) => id,
            None => {
                // Four billion nodes would take hundreds of gigabytes; memory runs out first.
                let id = NodeId::try_from(self.nodes.len()).expect("trie exceeds 2^32 nodes");
                self.nodes.push(Node::new());
                id
            }
        };
        let parent = &mut self.nodes[parent as usize];
        match level {
            "+" => parent.plus = Some(child),
            "#" => parent.hash = Some(child),
            _ => {
                let at = parent.children.binary_search_by(|(l, _)| (**l).cmp(level)).unwrap_err();
                parent.children.insert(at, (level.into(), child));
            }
        }
        child
    }

    fn free_node(&mut self, id: NodeId) {
        // Drop the emptied node's buffers now rather than when the slot is reused.
        drop(mem::replace(&mut self.nodes[id as usize], Node::new()));
        self.free.push(id);
    }
}

/// A depth-first walk over the nodes whose filter matches one topic name, yielding each such node
/// once. It borrows the arena only inside [`Walk::next`], so the caller may mutate the node it was
/// given (to advance a shared cursor) before asking for the next one.
struct Walk<'t> {
    topic: &'t str,
    /// Nodes still to visit, with the byte offset in `topic` of the level each one is to match
    /// next, or [`END`] when every level has been consumed on the way to it.
    stack: SmallVec<[(NodeId, usize); INLINE_STACK]>,
}

impl<'t> Walk<'t> {
    fn new(topic: &'t str) -> Self {
        let mut stack = SmallVec::new();
        stack.push((ROOT, 0));
        Self { topic, stack }
    }

    fn next<K, V>(&mut self, nodes: &[Node<K, V>]) -> Option<NodeId> {
        while let Some((id, at)) = self.stack.pop() {
            let node = &nodes[id as usize];
            if at == END {
                // Every level matched: this node's filter matches, and so does its `#` child,
                // since `#` also matches the parent level (MQTT 5.0 §4.7.1.2).
                if let Some(hash) = node.hash {
                    self.stack.push((hash, END));
                }
                return Some(id);
            }
            let rest = &self.topic[at..];
            let (level, next) = match rest.find('/') {
                Some(len) => (&rest[..len], at + len + 1),
                None => (rest, END),
            };
            // MQTT-4.7.2-1: a filter whose first level is a wildcard does not match a topic
            // starting with `$`, such as `$SYS/...`; literal first levels still do.
            let wildcards = !(id == ROOT && self.topic.starts_with('$'));
            if wildcards {
                if let Some(hash) = node.hash {
                    self.stack.push((hash, END));
                }
                if let Some(plus) = node.plus {
                    self.stack.push((plus, next));
                }
            }
            if let Some(child) = node.literal(level) {
                self.stack.push((child, next));
            }
        }
        None
    }
}
