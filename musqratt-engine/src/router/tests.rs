//! Unit tests, one per rule, citing the normative statement or section they check.

use alloc::string::String;
use alloc::vec::Vec;
use alloc::{format, vec};

use musqratt_proto::topic::TopicError;
use smallvec::SmallVec;

use super::{Match, RouteTable, SubscriptionTrie};
use crate::ids::ShardId;

type Trie = SubscriptionTrie<u32, &'static str>;

/// Every subscriber of `topic`, shared members included, sorted.
fn interested(trie: &Trie, topic: &str) -> Vec<(u32, &'static str)> {
    let mut out = Vec::new();
    trie.for_each_subscriber(topic, |k, v| out.push((k, *v)));
    out.sort_unstable();
    out
}

/// The deliveries of one publish, in the trie's order, as `key` or `key@group`.
fn deliveries(trie: &mut Trie, topic: &str) -> Vec<String> {
    let mut out = Vec::new();
    trie.for_each_match(topic, |m| {
        out.push(match m {
            Match::Direct { key, .. } => format!("{key}"),
            Match::Shared { group, key, .. } => format!("{key}@{group}"),
        });
    });
    out
}

fn trie_of(filters: &[(&'static str, u32)]) -> Trie {
    let mut trie = Trie::new();
    for &(filter, key) in filters {
        assert_eq!(trie.insert(filter, key, filter), Ok(None), "{filter}");
    }
    trie
}

#[test]
fn empty_trie_matches_nothing() {
    let mut trie = Trie::new();
    assert!(trie.is_empty());
    assert_eq!(trie.len(), 0);
    assert_eq!(trie.node_count(), 1);
    assert!(interested(&trie, "a/b").is_empty());
    assert!(deliveries(&mut trie, "a/b").is_empty());
}

#[test]
fn exact_filters_match_only_their_topic() {
    let trie = trie_of(&[("a/b", 1), ("a", 2), ("a/b/c", 3), ("/a", 4)]);
    assert_eq!(interested(&trie, "a/b"), [(1, "a/b")]);
    assert_eq!(interested(&trie, "a"), [(2, "a")]);
    assert_eq!(interested(&trie, "/a"), [(4, "/a")]);
    assert!(interested(&trie, "a/b/c/d").is_empty());
    // Topic levels are case sensitive and compared whole (MQTT 5.0 §4.7.3).
    assert!(interested(&trie, "A/b").is_empty());
    assert!(interested(&trie, "a/bc").is_empty());
}

#[test]
fn resubscribing_replaces_the_subscription() {
    // MQTT-3.8.4-3: a SUBSCRIBE with a filter identical to an existing one of the same session
    // replaces it.
    let mut trie = Trie::new();
    assert_eq!(trie.insert("a/+", 7, "qos0"), Ok(None));
    assert_eq!(trie.insert("a/+", 7, "qos2"), Ok(Some("qos0")));
    assert_eq!(trie.len(), 1);
    assert_eq!(interested(&trie, "a/x"), [(7, "qos2")]);
    // The same for a shared subscription's membership.
    assert_eq!(trie.insert("$share/g/a/+", 7, "s0"), Ok(None));
    assert_eq!(trie.insert("$share/g/a/+", 7, "s1"), Ok(Some("s0")));
    assert_eq!(trie.len(), 2);
    assert_eq!(trie.subscribers("$share/g/a/+").collect::<Vec<_>>(), [(7, &"s1")]);
}

#[test]
fn plus_matches_exactly_one_level() {
    // MQTT-4.7.1-2 and the examples of MQTT 5.0 §4.7.1.3.
    let trie = trie_of(&[("sport/tennis/+", 1), ("sport/+", 2), ("+/+", 3), ("/+", 4), ("+", 5)]);
    assert_eq!(interested(&trie, "sport/tennis/player1"), [(1, "sport/tennis/+")]);
    assert!(interested(&trie, "sport/tennis/player1/ranking").is_empty());
    assert_eq!(interested(&trie, "sport"), [(5, "+")], "sport/+ does not match sport");
    // "sport/+" matches "sport/": the empty level is a level.
    assert_eq!(interested(&trie, "sport/"), [(2, "sport/+"), (3, "+/+")]);
    assert_eq!(interested(&trie, "/finance"), [(3, "+/+"), (4, "/+")]);
}

#[test]
fn hash_matches_the_parent_and_any_levels_below() {
    // MQTT-4.7.1-1 and the examples of MQTT 5.0 §4.7.1.2.
    let trie = trie_of(&[("sport/tennis/player1/#", 1), ("sport/#", 2), ("#", 3)]);
    let all = [(1, "sport/tennis/player1/#"), (2, "sport/#"), (3, "#")];
    assert_eq!(interested(&trie, "sport/tennis/player1"), all);
    assert_eq!(interested(&trie, "sport/tennis/player1/ranking"), all);
    assert_eq!(interested(&trie, "sport/tennis/player1/score/wimbledon"), all);
    assert_eq!(interested(&trie, "sport"), [(2, "sport/#"), (3, "#")]);
    assert_eq!(interested(&trie, "other"), [(3, "#")]);
    assert_eq!(interested(&trie, "/"), [(3, "#")]);
}

#[test]
fn invalid_filters_are_refused_and_leave_no_trace() {
    let mut trie = Trie::new();
    // MQTT-4.7.1-1: `#` alone in the last level.
    assert_eq!(trie.insert("sport/tennis#", 1, ""), Err(TopicError::MisplacedMultiLevelWildcard));
    assert_eq!(trie.insert("sport/#/ranking", 1, ""), Err(TopicError::MisplacedMultiLevelWildcard));
    // MQTT-4.7.1-2: `+` occupies a whole level.
    assert_eq!(trie.insert("sport+", 1, ""), Err(TopicError::MisplacedSingleLevelWildcard));
    // MQTT-4.7.3-1
    assert_eq!(trie.insert("", 1, ""), Err(TopicError::Empty));
    // MQTT-4.8.2-1 and MQTT-4.8.2-2
    assert_eq!(trie.insert("$share//a", 1, ""), Err(TopicError::InvalidShareName));
    assert_eq!(trie.insert("$share/g+/a", 1, ""), Err(TopicError::InvalidShareName));
    assert_eq!(trie.insert("$share/g", 1, ""), Err(TopicError::MissingSharedFilter));
    assert_eq!(trie.insert("$share/g/a/#/b", 1, ""), Err(TopicError::MisplacedMultiLevelWildcard));
    assert!(trie.is_empty());
    assert_eq!(trie.node_count(), 1);
    assert_eq!(trie.remove("sport/#/ranking", 1), None);
}

#[test]
fn wildcards_first_do_not_match_dollar_topics() {
    // MQTT-4.7.2-1 and the examples of MQTT 5.0 §4.7.2.
    let trie = trie_of(&[
        ("#", 1),
        ("+/monitor/Clients", 2),
        ("$SYS/#", 3),
        ("$SYS/monitor/+", 4),
        ("+", 5),
        ("$SYS/monitor/Clients", 6),
    ]);
    assert_eq!(
        interested(&trie, "$SYS/monitor/Clients"),
        [(3, "$SYS/#"), (4, "$SYS/monitor/+"), (6, "$SYS/monitor/Clients")]
    );
    assert!(interested(&trie, "$SYS").iter().all(|&(k, _)| k == 3));
    // Only the first level counts: a `$` further down is an ordinary character.
    assert_eq!(interested(&trie, "x/monitor/Clients"), [(1, "#"), (2, "+/monitor/Clients")]);
    assert_eq!(interested(&trie, "a/$b").len(), 1);
    // A topic name that happens to start with `$share` is a `$` topic too.
    assert!(interested(&trie, "$share/g/x").is_empty());
}

#[test]
fn remove_returns_the_value_and_prunes_unused_nodes() {
    let mut trie = trie_of(&[("a/b", 1), ("a/b/c", 2), ("a/+/#", 3)]);
    let full = trie.node_count();
    assert_eq!(full, 6, "root, a, b, c, +, #");
    assert_eq!(trie.remove("a/b/c", 1), None, "not this key's filter");
    assert_eq!(trie.remove("a/x", 1), None, "no such filter");
    assert_eq!(trie.remove("a/b/c", 2), Some("a/b/c"));
    assert_eq!(trie.node_count(), 5, "only c is freed");
    assert_eq!(trie.remove("a/b", 1), Some("a/b"));
    assert_eq!(trie.node_count(), 4, "b is freed, a stays for a/+/#");
    assert_eq!(interested(&trie, "a/b"), [(3, "a/+/#")]);
    assert_eq!(trie.remove("a/+/#", 3), Some("a/+/#"));
    assert!(trie.is_empty());
    assert_eq!(trie.node_count(), 1);
    // Freed slots are reused rather than growing the arena.
    trie.insert("x/y/z", 9, "").unwrap();
    assert_eq!(trie.node_count(), 4);
    assert_eq!(trie.remove("x/y/z", 9), Some(""));
    assert_eq!(trie.node_count(), 1);
}

#[test]
fn subscribers_lists_one_filter_in_key_order() {
    let trie = trie_of(&[("a/+", 3), ("a/+", 1), ("a/b", 2), ("$share/g/a/+", 4)]);
    let keys = |f| trie.subscribers(f).map(|(k, _)| k).collect::<Vec<_>>();
    assert_eq!(keys("a/+"), [1, 3]);
    assert_eq!(keys("a/b"), [2]);
    assert_eq!(keys("$share/g/a/+"), [4]);
    assert!(keys("a").is_empty());
    assert!(keys("$share/h/a/+").is_empty());
    assert!(keys("a/#/b").is_empty());
}

#[test]
fn get_mut_updates_in_place() {
    let mut trie = trie_of(&[("a/b", 1), ("$share/g/a/b", 2)]);
    *trie.get_mut("a/b", 1).unwrap() = "new";
    *trie.get_mut("$share/g/a/b", 2).unwrap() = "new shared";
    assert!(trie.get_mut("a/b", 2).is_none());
    assert!(trie.get_mut("$share/h/a/b", 2).is_none());
    assert_eq!(interested(&trie, "a/b"), [(1, "new"), (2, "new shared")]);
}

#[test]
fn shared_group_delivers_each_message_to_one_member_round_robin() {
    // MQTT 5.0 §4.8.2: each message matching a shared subscription goes to one of its sessions.
    let mut trie = trie_of(&[("$share/g/a/+", 3), ("$share/g/a/+", 1), ("$share/g/a/+", 2)]);
    let mut values = Vec::new();
    trie.for_each_match("a/x", |m| values.push((m.key(), m.group().map(String::from), *m.value())));
    assert_eq!(values, [(1, Some(String::from("g")), "$share/g/a/+")]);
    let got: Vec<_> = (0..6).flat_map(|_| deliveries(&mut trie, "a/x")).collect();
    assert_eq!(got, ["2@g", "3@g", "1@g", "2@g", "3@g", "1@g"]);
    assert!(deliveries(&mut trie, "a/x/y").is_empty());
    let group = trie.shared_group("$share/g/a/+").unwrap();
    assert_eq!(group.len(), 3);
    assert_eq!(group.peek().map(|(k, _)| k), Some(2));
    assert!(trie.shared_group("a/+").is_none());
}

#[test]
fn round_robin_survives_members_leaving_and_joining() {
    let mut trie = trie_of(&[("$share/g/t", 1), ("$share/g/t", 2), ("$share/g/t", 3)]);
    assert_eq!(deliveries(&mut trie, "t"), ["1@g"]);
    assert_eq!(deliveries(&mut trie, "t"), ["2@g"]);
    // The member picked last leaves: the turn passes to the next one, not back to the first.
    assert_eq!(trie.remove("$share/g/t", 2), Some("$share/g/t"));
    assert_eq!(deliveries(&mut trie, "t"), ["3@g"]);
    trie.insert("$share/g/t", 0, "").unwrap();
    assert_eq!(deliveries(&mut trie, "t"), ["0@g"]);
    assert_eq!(deliveries(&mut trie, "t"), ["1@g"]);
    assert_eq!(deliveries(&mut trie, "t"), ["3@g"]);
    for key in [0, 1, 3] {
        assert!(trie.remove("$share/g/t", key).is_some());
    }
    assert!(trie.is_empty());
    assert_eq!(trie.node_count(), 1, "the group and its node are gone");
    assert!(trie.shared_group("$share/g/t").is_none());
}

#[test]
fn groups_and_direct_subscriptions_each_get_a_copy() {
    // MQTT 5.0 §4.8.2: groups with different share names, or on different filters, are
    // different shared subscriptions; and a session with a shared and a non-shared subscription
    // that both match receives the message through each.
    let mut trie = trie_of(&[
        ("$share/g/a/#", 1),
        ("$share/g/a/#", 2),
        ("$share/h/a/#", 1),
        ("$share/g/a/b", 3),
        ("a/b", 1),
    ]);
    assert_eq!(trie.len(), 5);
    assert_eq!(deliveries(&mut trie, "a/b"), ["1", "3@g", "1@g", "1@h"]);
    assert_eq!(deliveries(&mut trie, "a/b"), ["1", "3@g", "2@g", "1@h"]);
    assert_eq!(deliveries(&mut trie, "a"), ["1@g", "1@h"]);
}

#[test]
fn shared_filters_follow_the_dollar_rule() {
    // MQTT-4.7.2-1 applies to the filter after `$share/{group}/`.
    let mut trie = trie_of(&[("$share/g/#", 1), ("$share/g/$SYS/+", 2)]);
    assert_eq!(deliveries(&mut trie, "$SYS/x"), ["2@g"]);
    assert_eq!(deliveries(&mut trie, "x"), ["1@g"]);
}

#[test]
fn delivery_order_is_deterministic() {
    // Same subscriptions, same publishes, same transcript: the order comes from the trie's
    // sorted structure, not from insertion order or hashing.
    let filters = [
        ("a/b", 2),
        ("#", 9),
        ("a/+", 1),
        ("$share/z/a/+", 5),
        ("$share/y/a/+", 6),
        ("+/b", 4),
        ("a/b", 1),
        ("a/#", 3),
    ];
    let mut forward = trie_of(&filters);
    let mut backward = Trie::new();
    for &(filter, key) in filters.iter().rev() {
        backward.insert(filter, key, filter).unwrap();
    }
    let a = deliveries(&mut forward, "a/b").join(" ");
    assert_eq!(a, deliveries(&mut backward, "a/b").join(" "));
    insta::assert_snapshot!(a, @"1 2 1 6@y 5@z 3 4 9");
}

#[test]
fn deep_topics_match_without_limits() {
    // Deeper than the walk's inline stack: it spills to the heap and stays correct.
    let deep = vec!["x"; 100].join("/");
    let mut trie = Trie::new();
    trie.insert(&deep, 1, "deep").unwrap();
    trie.insert("x/+/#", 2, "wide").unwrap();
    assert_eq!(interested(&trie, &deep), [(1, "deep"), (2, "wide")]);
    assert_eq!(trie.remove(&deep, 1), Some("deep"));
    assert_eq!(trie.node_count(), 4);
}

#[test]
fn route_table_counts_subscriptions_per_shard() {
    let mut routes = RouteTable::new();
    let (s0, s1, s2) = (ShardId(0), ShardId(1), ShardId(2));
    assert_eq!(routes.add("a/+", s1), Ok(true));
    assert_eq!(routes.add("a/+", s1), Ok(false), "second session on shard 1");
    assert_eq!(routes.add("a/b", s0), Ok(true));
    assert_eq!(routes.add("#", s2), Ok(true));
    assert_eq!(routes.add("$share/g/a/#", s2), Ok(true));
    assert_eq!(routes.add("a/#/b", s2), Err(TopicError::MisplacedMultiLevelWildcard));
    assert_eq!(routes.count("a/+", s1), 2);
    assert_eq!(routes.len(), 4);

    let mut out: SmallVec<[ShardId; 4]> = SmallVec::new();
    routes.shards_matching("a/b", &mut out);
    assert_eq!(out.as_slice(), [s0, s1, s2], "sorted, shard 2 once for two routes");
    routes.shards_matching("$SYS/x", &mut out);
    assert!(out.is_empty(), "MQTT-4.7.2-1");

    assert!(!routes.remove("a/+", s1), "one subscription left on shard 1");
    routes.shards_matching("a/x", &mut out);
    assert_eq!(out.as_slice(), [s1, s2]);
    assert!(routes.remove("a/+", s1), "last one");
    assert!(!routes.remove("a/+", s1), "not listed any more");
    routes.shards_matching("a/x", &mut out);
    assert_eq!(out.as_slice(), [s2]);

    assert!(routes.remove("a/b", s0));
    assert!(routes.remove("#", s2));
    assert!(routes.remove("$share/g/a/#", s2));
    assert!(routes.is_empty());
    assert_eq!(routes.node_count(), 1);
}
