//! The compio runtime end to end: the shared runtime cases (the blocking runtime's
//! `tests/common/cases.rs`, with its test client) on real sockets, and the epoll fallback.
//!
//! Connections are spread over the shards by the kernel (SO_REUSEPORT), not round robin: a
//! client whose id another shard owns is handed over whenever it lands on the wrong shard, which
//! the cases that connect many such clients make all but certain.

#[path = "../../musqratt-blocking/tests/common/mod.rs"]
mod common;
#[macro_use]
#[path = "../../musqratt-blocking/tests/common/cases.rs"]
mod cases;

use core::net::SocketAddr;

use common::id_on_shard;
use musqratt_compio::{BrokerHandle, Driver, start, start_with};
use musqratt_engine::Config;
use musqratt_proto::ProtocolVersion;

fn broker(shards: usize) -> (BrokerHandle, SocketAddr) {
    broker_on(shards, None)
}

fn broker_on(shards: usize, driver: Option<Driver>) -> (BrokerHandle, SocketAddr) {
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::DEBUG)
        .with_test_writer()
        .try_init();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let handle = match driver {
        None => start(Config::default(), &[any], shards),
        Some(driver) => start_with(Config::default(), &[any], shards, driver),
    }
    .unwrap();
    let addr = handle.local_addrs()[0];
    (handle, addr)
}

runtime_cases!(start = broker, handle = BrokerHandle);

#[test]
fn reports_the_driver_it_runs_on() {
    let (broker, _) = broker(2);
    // Not asserted either way: io_uring depends on the kernel and the sandbox.
    eprintln!("io_uring in use: {}", broker.uses_io_uring());
    broker.shutdown();
    let (forced, _) = broker_on(1, Some(Driver::Poll));
    assert!(!forced.uses_io_uring());
    forced.shutdown();
}

#[test]
fn epoll_fallback_serves_all_qos_across_shards() {
    let sub_id = id_on_shard("poll-sub", 1, 2);
    let pub_id = id_on_shard("poll-pub", 0, 2);
    shared::pub_sub_all_qos_on(
        broker_on(2, Some(Driver::Poll)),
        &sub_id,
        &pub_id,
        ProtocolVersion::V5,
    );
    shared::pub_sub_all_qos_on(
        broker_on(1, Some(Driver::Poll)),
        "poll-one-sub",
        "poll-one-pub",
        ProtocolVersion::V3_1_1,
    );
}
