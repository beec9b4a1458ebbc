//! Runs every `transcripts/*.mqtt` script with 1 shard and with 3 shards, checks that clients
//! see exactly the same thing (sharding must be invisible to clients, docs/DESIGN.md "Many cores"),
//! and snapshots the 1-shard transcript.

use musqratt_tests::script::run;

#[test]
fn transcripts() {
    insta::glob!("../transcripts", "*.mqtt", |path| {
        let script = std::fs::read_to_string(path).expect("script readable");
        let one = run(&script, 1).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let three = run(&script, 3).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            one.client_visible,
            three.client_visible,
            "{}: clients see a difference between 1 and 3 shards",
            path.display()
        );
        insta::assert_snapshot!(one.full);
    });
}
