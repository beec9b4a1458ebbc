//! Matching is the publish hot path: once the subscriptions are in, deciding a publish's
//! deliveries must not touch the allocator. A counting global allocator checks it.
//!
//! This file is its own test binary with a single test, so no other test allocates meanwhile.

use musqratt_engine::ShardId;
use musqratt_engine::router::{RouteTable, SubscriptionTrie};
use smallvec::SmallVec;

mod common;

fn allocations_during(f: impl FnOnce()) -> usize {
    let before = common::allocations();
    f();
    common::allocations() - before
}

#[test]
fn matching_does_not_allocate() {
    let mut trie = SubscriptionTrie::new();
    let mut routes = RouteTable::new();
    let filters = [
        "#",
        "+/+/+/+/+/+",
        "home/+/temp",
        "home/#",
        "home/kitchen/temp",
        "+/kitchen/#",
        "$share/g/home/+/temp",
        "$share/h/home/#",
        "$SYS/#",
    ];
    for (i, filter) in filters.iter().enumerate() {
        for key in 0..4_u32 {
            trie.insert(filter, key, i).unwrap();
        }
        routes.add(filter, ShardId(u16::try_from(i % 3).unwrap())).unwrap();
    }
    let mut out: SmallVec<[ShardId; 8]> = SmallVec::new();
    let mut deliveries = 0;
    let allocations = allocations_during(|| {
        for topic in ["home/kitchen/temp", "home/a/b/c/d/e", "$SYS/load", "x"] {
            trie.for_each_match(topic, |_| deliveries += 1);
            trie.for_each_subscriber(topic, |_, _| deliveries += 1);
            routes.shards_matching(topic, &mut out);
        }
    });
    assert!(deliveries > 0);
    assert_eq!(allocations, 0);
}
