//! Matching is the publish hot path: once the subscriptions are in, deciding a publish's
//! deliveries must not touch the allocator. A counting global allocator checks it.
//!
//! This file is its own test binary with a single test, so no other test allocates meanwhile.
// A global allocator needs `unsafe impl GlobalAlloc`; it only forwards to `System` and counts.
#![allow(unsafe_code)]

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicUsize, Ordering};
use std::alloc::System;

use musqratt_engine::ShardId;
use musqratt_engine::router::{RouteTable, SubscriptionTrie};
use smallvec::SmallVec;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `System` shares.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as for `dealloc`, and `new_size` is the caller's valid size.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    f();
    ALLOCATIONS.load(Ordering::Relaxed) - before
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
