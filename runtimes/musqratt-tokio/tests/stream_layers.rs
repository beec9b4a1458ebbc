//! The tokio runtime with byte-stream layers (docs/adr/0015): the runtime cases the blocking
//! and io-uring runtimes share (their `tests/common/cases.rs`) through a listener with the
//! identity layer, and MQTT through a listener whose layers XOR every byte, with clients that
//! XOR too (the blocking runtime's `tests/layered/mod.rs`).

#[path = "../../musqratt-blocking/tests/common/mod.rs"]
mod common;
#[macro_use]
#[path = "../../musqratt-blocking/tests/common/cases.rs"]
mod cases;
#[path = "../../musqratt-blocking/tests/layered/mod.rs"]
mod layered;

use core::net::SocketAddr;

use musqratt_kit::Layers;
use musqratt_tokio::{Broker, BrokerConfig, start};

/// The broker, with the `local_addrs` and `shutdown` the shared cases call (tokio's shutdown
/// says whether a shard panicked: a test fails then).
struct Handle(Broker);

impl Handle {
    fn local_addrs(&self) -> &[SocketAddr] {
        self.0.local_addrs()
    }

    fn shutdown(self) {
        self.0.shutdown().unwrap();
    }
}

fn broker_with(shards: usize, layers: Layers) -> (Handle, SocketAddr) {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut config = BrokerConfig::default();
    config.listeners = vec![any];
    config.listener_layers = vec![(any, layers)];
    config.threads = shards;
    let broker = start(config).unwrap();
    let addr = broker.local_addrs()[0];
    (Handle(broker), addr)
}

/// The shared cases' broker, every connection through the identity layer.
fn identity_broker(shards: usize) -> (Handle, SocketAddr) {
    broker_with(shards, Layers::identity())
}

runtime_cases!(start = identity_broker, handle = Handle);

#[test]
fn mqtt_through_layers_that_change_every_byte() {
    let (broker, addr) = broker_with(2, layered::xor_layers());
    layered::xor_pub_sub(addr);
    layered::plain_client_is_not_understood(addr);
    broker.shutdown();
}
