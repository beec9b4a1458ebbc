//! The client-id owner function spreads identifiers that differ in one character evenly over
//! the shards (docs/adr/0010). FNV-1a alone did not: with 2 shards, `app-pub` and `app-sub`
//! (or `sensor-1` and `sensor-2`) always landed on different shards, and every message between
//! such a publisher and subscriber crossed threads.

use musqratt_engine::owner_of;
use quickcheck::{QuickCheck, TestResult};

/// Printable ASCII: the characters client identifiers are made of in practice.
fn printable() -> impl Iterator<Item = char> {
    (0x21u8..=0x7e).map(char::from)
}

/// Base identifiers shaped like real ones: a name, a separator, a number.
fn bases() -> Vec<String> {
    let names = ["sensor", "app", "lat", "client", "dev", "mqb", "node", "x"];
    let mut out = Vec::new();
    for name in names {
        for i in 0..250 {
            out.push(format!("{name}-{i}"));
        }
    }
    out
}

/// Over every base identifier and every position in it, the variants with that character
/// replaced land on the base's shard a `1/n` share of the time, and every shard gets its share
/// of all identifiers (within 3 points).
#[test]
fn one_character_apart_spreads_evenly() {
    for shards in [2u16, 3, 4, 8] {
        let mut same = 0u64;
        let mut pairs = 0u64;
        let mut per_shard = vec![0u64; usize::from(shards)];
        for base in bases() {
            let home = owner_of(&base, shards);
            for (position, _) in base.char_indices() {
                for c in printable() {
                    let mut variant = base.clone();
                    variant.replace_range(position..=position, c.encode_utf8(&mut [0; 4]));
                    if variant == base {
                        continue;
                    }
                    let shard = owner_of(&variant, shards);
                    per_shard[usize::from(shard.0)] += 1;
                    same += u64::from(shard == home);
                    pairs += 1;
                }
            }
        }
        let share = same as f64 / pairs as f64;
        let expected = 1.0 / f64::from(shards);
        assert!((share - expected).abs() < 0.03, "{shards} shards: {share:.3} on the same shard");
        for (shard, count) in per_shard.iter().enumerate() {
            let part = *count as f64 / pairs as f64;
            assert!((part - expected).abs() < 0.03, "{shards} shards: shard {shard} got {part:.3}");
        }
    }
}

/// The pairs people actually use: `X-pub`/`X-sub`, `X-1`/`X-2` share a shard about half the
/// time with 2 shards (never, with FNV-1a alone).
#[test]
fn publisher_and_subscriber_pairs_meet_half_the_time_on_two_shards() {
    for (a, b) in [("pub", "sub"), ("1", "2"), ("a", "b"), ("publisher", "subscriber")] {
        let together = (0..1000)
            .filter(|i| owner_of(&format!("app{i}-{a}"), 2) == owner_of(&format!("app{i}-{b}"), 2))
            .count();
        assert!((400..=600).contains(&together), "{a}/{b}: {together} of 1000 together");
    }
}

/// Property: whatever the identifier and whichever character changes, the 94 printable variants
/// reach every shard of 2, 3 and 4, and at least 6 of 8 (a miss is about 1e-9 per case for a
/// well-mixed hash).
#[test]
fn variants_reach_every_shard() {
    fn property(base: String, position: usize) -> TestResult {
        let Some((at, c)) = base.char_indices().nth(position % base.chars().count().max(1)) else {
            return TestResult::discard();
        };
        for shards in [2u16, 3, 4, 8] {
            let mut reached = vec![false; usize::from(shards)];
            for replacement in printable() {
                let mut variant = base.clone();
                variant.replace_range(at..at + c.len_utf8(), replacement.encode_utf8(&mut [0; 4]));
                reached[usize::from(owner_of(&variant, shards).0)] = true;
            }
            let count = reached.iter().filter(|r| **r).count();
            let needed = if shards == 8 { 6 } else { usize::from(shards) };
            if count < needed {
                return TestResult::error(format!("{base:?} at {at}: {count} of {shards} shards"));
            }
        }
        TestResult::passed()
    }
    QuickCheck::new().tests(500).quickcheck(property as fn(String, usize) -> TestResult);
}

/// One shard (or a zero count, treated as one) owns everything.
#[test]
fn one_shard_owns_everything() {
    for id in ["", "a", "sensor-1"] {
        assert_eq!(owner_of(id, 1).0, 0);
        assert_eq!(owner_of(id, 0).0, 0);
    }
}
