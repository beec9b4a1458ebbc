//! Many shards, one broker (docs/DESIGN.md, "Many cores").
//!
//! Each shard owns the connections and sessions of the client identifiers that hash to it: a
//! connection accepted elsewhere is handed over after its CONNECT ([`crate::Action::Handoff`]),
//! so session takeover and resume never cross a thread. A publish is delivered to the shard's own
//! subscribers directly and sent once to each other shard with a matching subscription, found in
//! a replica of the route table that every shard keeps from the others' announcements. Retained
//! messages are replicated to every shard.
//!
//! A shared subscription group may have members on several shards. One shard, chosen by hashing
//! the group, owns its member list and round robin position: publishers send the group's
//! messages there and it forwards each to the one member it picks (§4.8.2). With one shard or
//! with many, members are picked in the same order, so sharding stays invisible to clients.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::sync::Arc;

use musqratt_proto::bytestring::ByteString;
use musqratt_proto::topic::{matches, split_shared};
use smallvec::SmallVec;

use crate::ids::ShardId;
use crate::router::RouteTable;
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
    /// To a shared group's owner shard: a client of the sender joined or left the group.
    SharedMember { key: GroupKey, client_id: ByteString, add: bool },
    /// To a shared group's owner shard: pick a member of each group for this message.
    SharedPublish { message: Arc<Message>, keys: SmallVec<[GroupKey; 1]> },
    /// A message for the receiver's own subscribers: the plain ones when `plain`, and the
    /// listed members of shared groups (chosen by each group's owner).
    Publish { message: Arc<Message>, plain: bool, members: SmallVec<[Member; 1]> },
    /// A retained message to store (or delete, with an empty payload).
    Retain(Arc<Message>),
    /// A new subscription's SUBACK went out on the sender: hand it this shard's topic backlog
    /// for the filter.
    ReleaseBacklog(ByteString),
    /// Answer with `SyncAck` once everything sent before is applied (`route_sync`).
    Sync(u64),
    /// The answer to `Sync`.
    SyncAck(u64),
    /// With persistence: answer with `StoreSynced` once everything sent before is stored here,
    /// and what this shard relayed before is stored where it went (`store_sync`).
    StoreSync(u64),
    /// The answer to `StoreSync`.
    StoreSynced(u64),
    /// With persistence, from a shared group's owner: answer with `RelaySynced` at once.
    RelaySync(u64),
    /// The answer to `RelaySync`.
    RelaySynced(u64),
}

/// A member of a shared group: the group and the member's client identifier.
pub(crate) type Member = (GroupKey, ByteString);

/// The shard that owns a client identifier: where its session lives and its connection is served
/// (docs/adr/0001). Runtimes, tests and benches that need to know where a client lands call this
/// one function.
///
/// FNV-1a over the bytes, then MurmurHash3's 64-bit finalizer, then the remainder: stable across
/// runs, platforms and runtimes. The finalizer matters: FNV-1a's low bits depend only on the low
/// bits of each byte, so with a power-of-two shard count any two identifiers differing in one
/// character of different parity (`sensor-1`/`sensor-2`, `app-pub`/`app-sub`) always landed on
/// different shards, and a publisher and its subscriber paid a hop between threads on every
/// message (docs/adr/0010).
#[must_use]
pub fn owner_of(client_id: &str, shard_count: u16) -> ShardId {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in client_id.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^= hash >> 33;
    ShardId((hash % u64::from(shard_count.max(1))) as u16)
}

/// The shard that serves a shared subscription group: it holds the member list and the round
/// robin position, so that the sequence of members is the same whatever the number of shards.
pub(crate) fn group_owner(key: &GroupKey, shard_count: u16) -> ShardId {
    let (filter, group) = key;
    owner_of(&alloc::format!("{group}/{filter}"), shard_count)
}

/// The shared groups this shard owns: every member on every shard, ordered by client
/// identifier, and where the round robin stands (§4.8.2: each message to one member).
#[derive(Debug, Default)]
pub(crate) struct SharedGroups {
    groups: BTreeMap<GroupKey, OwnedGroup>,
}

#[derive(Debug, Default)]
struct OwnedGroup {
    members: BTreeMap<ByteString, ShardId>,
    /// The member that got the last message.
    cursor: Option<ByteString>,
}

impl SharedGroups {
    pub(crate) fn update(
        &mut self,
        key: GroupKey,
        client_id: ByteString,
        shard: ShardId,
        add: bool,
    ) {
        if add {
            self.groups.entry(key).or_default().members.insert(client_id, shard);
        } else if let Some(group) = self.groups.get_mut(&key) {
            group.members.remove(&client_id);
            if group.members.is_empty() {
                self.groups.remove(&key);
            }
        }
    }

    /// The next member of a group, round robin in client identifier order.
    pub(crate) fn pick(&mut self, key: &GroupKey) -> Option<(ByteString, ShardId)> {
        let group = self.groups.get_mut(key)?;
        let next = group
            .cursor
            .as_ref()
            .and_then(|last| group.members.range(last.clone()..).find(|(c, _)| *c != last))
            .or_else(|| group.members.iter().next())
            .map(|(client, shard)| (client.clone(), *shard))?;
        group.cursor = Some(next.0.clone());
        Some(next)
    }
}

/// Where the other shards have subscribers.
#[derive(Debug, Default)]
pub(crate) struct Routes {
    plain: RouteTable,
    shared: BTreeMap<GroupKey, BTreeSet<ShardId>>,
}

impl Routes {
    pub(crate) fn update(&mut self, from: ShardId, filter: &ByteString, add: bool) {
        match split_shared(filter) {
            Some(Ok((group, inner))) => {
                let key = (ByteString::from(inner), ByteString::from(group));
                update_set(&mut self.shared, key, from, add);
            }
            Some(Err(_)) => {}
            None if add => {
                let _ = self.plain.add(filter, from);
            }
            None => {
                self.plain.remove(filter, from);
            }
        }
    }

    /// The shards with a plain subscription matching `topic`, sorted.
    pub(crate) fn plain_shards(&self, topic: &str, out: &mut SmallVec<[ShardId; 8]>) {
        self.plain.shards_matching(topic, out);
    }

    /// Adds to `out` the shared groups of other shards that `topic` matches.
    pub(crate) fn shared_groups(&self, topic: &str, out: &mut BTreeSet<GroupKey>) {
        let matching = self.shared.keys().filter(|(filter, _)| matches(filter, topic));
        out.extend(matching.cloned());
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
