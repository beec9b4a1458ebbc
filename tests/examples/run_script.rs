//! Runs one transcript script and prints its transcript: `cargo run -p musqratt-tests
//! --example run_script -- tests/transcripts/x.mqtt [shards]`.

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("a script path");
    let shards = args.next().map_or(1, |s| s.parse().expect("a shard count"));
    let script = std::fs::read_to_string(&path).expect("readable script");
    match musqratt_tests::script::run(&script, shards) {
        Ok(output) => print!("{}", output.full),
        Err(e) => eprintln!("{path}: {e}"),
    }
}
