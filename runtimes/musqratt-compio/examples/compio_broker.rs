//! The MusQraTT broker on the compio runtime: io_uring, thread per core.
//!
//! ```text
//! cargo run -p musqratt-compio --example compio_broker -- [ADDR] [SHARDS] [-v] [--poll] [--stdin-shutdown]
//! ```
//!
//! `ADDR` defaults to 127.0.0.1:1883 and `SHARDS` to the number of CPUs. With `-v` the log shows
//! handoffs and accepts; `--poll` forces compio's epoll driver instead of io_uring; with
//! `--stdin-shutdown` the broker shuts down gracefully when its standard input ends.

use core::net::SocketAddr;
use std::io::{IsTerminal, Read};
use std::process::ExitCode;

use musqratt_compio::{BrokerConfig, Driver};
use tracing_subscriber::filter::LevelFilter;

fn main() -> ExitCode {
    let mut addr: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 1883));
    let mut shards = std::thread::available_parallelism().map_or(1, usize::from);
    let mut verbose = false;
    let mut stdin_shutdown = false;
    let mut driver = Driver::Auto;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "-v" => verbose = true,
            "--stdin-shutdown" => stdin_shutdown = true,
            "--poll" => driver = Driver::Poll,
            _ if arg.parse::<SocketAddr>().is_ok() => addr = arg.parse().unwrap_or(addr),
            _ if arg.parse::<usize>().is_ok() => shards = arg.parse().unwrap_or(shards),
            _ => {
                eprintln!("usage: compio_broker [ADDR] [SHARDS] [-v] [--poll] [--stdin-shutdown]");
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

    let mut config = BrokerConfig::default();
    config.listeners = vec![addr];
    config.threads = shards;
    let broker = match musqratt_compio::start_with(config, driver) {
        Ok(broker) => broker,
        Err(error) => {
            eprintln!("cannot start the broker on {addr}: {error}");
            return ExitCode::FAILURE;
        }
    };
    for addr in broker.local_addrs() {
        println!("listening on {addr} with {shards} shard(s)");
    }
    let driver = if broker.uses_io_uring() { "io_uring" } else { "epoll (polling)" };
    println!("driver: {driver}");
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
