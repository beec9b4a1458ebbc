//! The MusQraTT broker on the blocking runtime: threads and blocking sockets, nothing else.
//!
//! ```text
//! cargo run -p musqratt-blocking --example blocking_broker -- [ADDR] [SHARDS] [-v] [--stdin-shutdown]
//! ```
//!
//! `ADDR` defaults to 127.0.0.1:1883 and `SHARDS` to the number of CPUs. With `-v` the log shows
//! handoffs and accepts; with `--stdin-shutdown` the broker shuts down gracefully when its
//! standard input ends (the runtime has no signal handling: std offers none).

use core::net::SocketAddr;
use std::io::{IsTerminal, Read};
use std::process::ExitCode;

use musqratt_engine::Config;
use tracing_subscriber::filter::LevelFilter;

fn main() -> ExitCode {
    let mut addr: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 1883));
    let mut shards = std::thread::available_parallelism().map_or(1, usize::from);
    let mut verbose = false;
    let mut stdin_shutdown = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "-v" => verbose = true,
            "--stdin-shutdown" => stdin_shutdown = true,
            _ if arg.parse::<SocketAddr>().is_ok() => addr = arg.parse().unwrap_or(addr),
            _ if arg.parse::<usize>().is_ok() => shards = arg.parse().unwrap_or(shards),
            _ => {
                eprintln!("usage: blocking_broker [ADDR] [SHARDS] [-v] [--stdin-shutdown]");
                return ExitCode::FAILURE;
            }
        }
    }
    let level = if verbose { LevelFilter::DEBUG } else { LevelFilter::INFO };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();

    let mut config = musqratt_blocking::BrokerConfig::default();
    config.listeners = vec![addr];
    config.threads = shards;
    config.engine = Config::default();
    let broker = match musqratt_blocking::start(config) {
        Ok(broker) => broker,
        Err(error) => {
            eprintln!("cannot start the broker on {addr}: {error}");
            return ExitCode::FAILURE;
        }
    };
    for addr in broker.local_addrs() {
        println!("listening on {addr} with {shards} shard(s)");
    }
    if stdin_shutdown {
        // Blocks until standard input ends.
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        broker.shutdown();
        println!("stopped");
    } else {
        loop {
            std::thread::park();
        }
    }
    ExitCode::SUCCESS
}
