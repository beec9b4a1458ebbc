//! Properties: the trie agrees with the reference matcher of `musqratt_proto::topic`, churn
//! leaves nothing behind, and shared groups rotate fairly.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::vec::Vec;
use alloc::{format, vec};

use musqratt_proto::topic::{matches, split_shared};
use quickcheck::{Arbitrary, Gen, QuickCheck, TestResult};
use smallvec::SmallVec;

use super::{Match, RouteTable, SubscriptionTrie};
use crate::ids::ShardId;

/// A small alphabet so that random filters and topics collide often, with the awkward cases in
/// it: `$` first levels (MQTT-4.7.2-1) and empty levels.
const FILTER_LEVELS: [&str; 6] = ["a", "b", "$x", "+", "#", ""];
const TOPIC_LEVELS: [&str; 4] = ["a", "b", "$x", ""];

/// A valid filter over the alphabet, a quarter of them shared in group `g` or `h`.
#[derive(Debug, Clone)]
struct Filter(String);

impl Arbitrary for Filter {
    fn arbitrary(g: &mut Gen) -> Self {
        let mut levels = Vec::new();
        for _ in 0..=usize::arbitrary(g) % 4 {
            let level = *g.choose(&FILTER_LEVELS).unwrap();
            levels.push(level);
            if level == "#" {
                break; // MQTT-4.7.1-1
            }
        }
        let mut filter = levels.join("/");
        if filter.is_empty() {
            filter.push('/'); // One empty level is an empty filter (MQTT-4.7.3-1); two are fine.
        }
        if u8::arbitrary(g) % 4 == 0 {
            Self(format!("$share/{}/{filter}", g.choose(&["g", "h"]).unwrap()))
        } else {
            Self(filter)
        }
    }
}

/// A topic name over the alphabet: one to four levels.
#[derive(Debug, Clone)]
struct Topic(String);

impl Arbitrary for Topic {
    fn arbitrary(g: &mut Gen) -> Self {
        let n = 1 + usize::arbitrary(g) % 4;
        Self((0..n).map(|_| *g.choose(&TOPIC_LEVELS).unwrap()).collect::<Vec<_>>().join("/"))
    }
}

/// The topic filter proper, without a `$share/{group}/` prefix.
fn inner(filter: &str) -> &str {
    split_shared(filter).map_or(filter, |shared| shared.unwrap().1)
}

fn check<A: quickcheck::Testable>(prop: A) {
    QuickCheck::new().tests(500).quickcheck(prop);
}

fn matches_like_reference(subs: Vec<(Filter, u8)>, topics: Vec<Topic>) -> bool {
    let mut trie = SubscriptionTrie::new();
    let mut model = BTreeSet::new();
    for (Filter(filter), key) in subs {
        let key = key % 4;
        trie.insert(&filter, key, filter.clone()).unwrap();
        model.insert((filter, key));
    }
    topics.iter().all(|Topic(topic)| {
        let expected: Vec<(u8, &str)> = model
            .iter()
            .filter(|(filter, _)| matches(inner(filter), topic))
            .map(|(filter, key)| (*key, filter.as_str()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut seen = Vec::new();
        trie.for_each_subscriber(topic, |key, filter| seen.push((key, filter.clone())));
        seen.sort_unstable();
        let seen: Vec<(u8, &str)> = seen.iter().map(|(k, f)| (*k, f.as_str())).collect();

        // Deliveries: every direct subscriber, and exactly one member of every shared group.
        let mut direct = Vec::new();
        let mut groups = Vec::new();
        trie.for_each_match(topic, |m| match m {
            Match::Direct { key, value } => direct.push((key, value.clone())),
            Match::Shared { key, value, .. } => groups.push((value.clone(), key)),
        });
        direct.sort_unstable();
        groups.sort_unstable();
        let expected_direct: Vec<_> = expected
            .iter()
            .filter(|(_, f)| split_shared(f).is_none())
            .map(|&(k, f)| (k, String::from(f)))
            .collect();
        let expected_groups: BTreeSet<&str> =
            expected.iter().map(|&(_, f)| f).filter(|f| split_shared(f).is_some()).collect();
        let one_per_group = groups.iter().map(|(f, _)| f.as_str()).eq(expected_groups);
        let picked_members = groups.iter().all(|(f, k)| model.contains(&(f.clone(), *k)));
        seen == expected && direct == expected_direct && one_per_group && picked_members
    })
}

#[test]
fn trie_matches_like_the_reference_matcher() {
    check(matches_like_reference as fn(Vec<(Filter, u8)>, Vec<Topic>) -> bool);
}

fn churn_leaves_no_trace(ops: Vec<(bool, Filter, u8)>) -> bool {
    let mut trie = SubscriptionTrie::new();
    let mut model = BTreeMap::new();
    for (step, (insert, Filter(filter), key)) in ops.into_iter().enumerate() {
        let key = key % 3;
        let agrees = if insert {
            trie.insert(&filter, key, step).unwrap() == model.insert((filter, key), step)
        } else {
            trie.remove(&filter, key) == model.remove(&(filter, key))
        };
        if !agrees || trie.len() != model.len() {
            return false;
        }
    }
    // Pruning is exact: the nodes in use are those a fresh trie of the survivors needs.
    let mut fresh = SubscriptionTrie::new();
    for ((filter, key), value) in &model {
        fresh.insert(filter, *key, *value).unwrap();
    }
    if fresh.node_count() != trie.node_count() {
        return false;
    }
    for ((filter, key), value) in model {
        if trie.remove(&filter, key) != Some(value) {
            return false;
        }
    }
    trie.is_empty() && trie.node_count() == 1
}

#[test]
fn insert_remove_sequences_leave_an_empty_trie() {
    check(churn_leaves_no_trace as fn(Vec<(bool, Filter, u8)>) -> bool);
}

fn round_robin_is_fair(keys: Vec<u8>, warmup: u8, rounds: u8) -> TestResult {
    let members: BTreeSet<u8> = keys.into_iter().collect();
    let n = members.len();
    if n == 0 {
        return TestResult::discard();
    }
    let mut trie = SubscriptionTrie::new();
    for &key in &members {
        trie.insert("$share/g/t/+", key, ()).unwrap();
    }
    let mut picks = Vec::new();
    for i in 0..usize::from(warmup % 8) + n * (1 + usize::from(rounds % 4)) {
        let mut this = vec![];
        trie.for_each_match("t/x", |m| this.push(m.key()));
        if this.len() != 1 {
            return TestResult::failed();
        }
        if i >= usize::from(warmup % 8) {
            picks.push(this[0]);
        }
    }
    // Any n consecutive messages reach each member exactly once.
    TestResult::from_bool(
        picks.windows(n).all(|w| w.iter().copied().collect::<BTreeSet<_>>() == members),
    )
}

#[test]
fn round_robin_gives_each_member_one_message_in_n() {
    check(round_robin_is_fair as fn(Vec<u8>, u8, u8) -> TestResult);
}

fn routes_like_reference(ops: Vec<(bool, Filter, u8)>, topics: Vec<Topic>) -> bool {
    let mut routes = RouteTable::new();
    let mut model: BTreeMap<(String, u16), u32> = BTreeMap::new();
    for (add, Filter(filter), shard) in ops {
        let shard = u16::from(shard % 3);
        if add {
            routes.add(&filter, ShardId(shard)).unwrap();
            *model.entry((filter, shard)).or_default() += 1;
        } else {
            routes.remove(&filter, ShardId(shard));
            if let Some(count) = model.get_mut(&(filter.clone(), shard)) {
                *count -= 1;
                if *count == 0 {
                    model.remove(&(filter, shard));
                }
            }
        }
    }
    let mut out: SmallVec<[ShardId; 4]> = SmallVec::new();
    topics.iter().all(|Topic(topic)| {
        let expected: BTreeSet<ShardId> = model
            .keys()
            .filter(|(filter, _)| matches(inner(filter), topic))
            .map(|&(_, shard)| ShardId(shard))
            .collect();
        routes.shards_matching(topic, &mut out);
        out.iter().copied().eq(expected)
    }) && routes.len() == model.len()
}

#[test]
fn route_table_lists_shards_with_matching_subscribers() {
    check(routes_like_reference as fn(Vec<(bool, Filter, u8)>, Vec<Topic>) -> bool);
}
