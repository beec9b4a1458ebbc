//! Subscription routing: which subscribers, and which shards, a published topic name reaches.
//!
//! - [`SubscriptionTrie`] holds a shard's own subscriptions, plain and shared (MQTT 5.0 §4.7,
//!   §4.8.2), and decides a publish's deliveries in one allocation-free walk.
//! - [`SharedGroup`] is one shared subscription's members and its round-robin cursor.
//! - [`RouteTable`] is the replica of filter -> shards each shard keeps to forward publishes.
//!
//! ```
//! use musqratt_engine::router::{Match, SubscriptionTrie};
//!
//! let mut trie = SubscriptionTrie::new();
//! trie.insert("sensors/+/temp", 1_u32, "qos1").unwrap();
//! trie.insert("$share/g/sensors/#", 2, "qos0").unwrap();
//! trie.insert("$share/g/sensors/#", 3, "qos0").unwrap();
//!
//! let mut got = Vec::new();
//! for _ in 0..2 {
//!     trie.for_each_match("sensors/kitchen/temp", |m| got.push((m.key(), m.group().is_some())));
//! }
//! // The direct subscriber gets both messages; the group's members take turns.
//! assert_eq!(got, [(1, false), (2, true), (1, false), (3, true)]);
//! ```

mod route;
mod shared;
mod trie;

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;

pub use route::RouteTable;
pub use shared::{Match, SharedGroup};
pub use trie::SubscriptionTrie;
