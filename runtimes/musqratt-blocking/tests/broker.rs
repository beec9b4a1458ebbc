//! The blocking runtime end to end: the shared runtime cases (`common/cases.rs`) on real
//! sockets. Accepts go round robin over the shards, so a client whose id another shard owns is
//! handed over whenever it lands on the wrong one.

mod common;
#[macro_use]
#[path = "common/cases.rs"]
mod cases;

use core::net::SocketAddr;

use musqratt_blocking::{BrokerHandle, start};
use musqratt_engine::Config;

fn broker(shards: usize) -> (BrokerHandle, SocketAddr) {
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::DEBUG)
        .with_test_writer()
        .try_init();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let handle = start(Config::default(), &[any], shards).unwrap();
    let addr = handle.local_addrs()[0];
    (handle, addr)
}

runtime_cases!(start = broker, handle = BrokerHandle);
