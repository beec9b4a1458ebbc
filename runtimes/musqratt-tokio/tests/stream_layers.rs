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
use core::time::Duration;
use std::time::Instant;

use musqratt_kit::Layers;
use musqratt_proto::QoS;
use musqratt_proto::bytes::Bytes;
use musqratt_proto::mqtt::Packet;
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

/// A layered connection hibernates like a plain one (docs/adr/0009): its stack waits in the
/// shard while the socket sleeps, and bytes still pass through it when the peer or a delivery
/// wakes it, on 1 and 2 shards (handed-off connections take their stack along).
#[test]
fn layered_connections_hibernate_and_wake_with_their_stack() {
    for shards in [1, 2] {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut config = BrokerConfig::default();
        config.listeners = vec![any];
        config.listener_layers = vec![(any, layered::xor_layers())];
        config.threads = shards;
        config.hibernate_after = Some(Duration::from_millis(50));
        let broker = start(config).unwrap();
        let addr = broker.local_addrs()[0];
        let mut sub = layered::XorClient::connect(addr, "lh-sub", layered::KEY);
        sub.subscribe("lh/#");
        let mut publisher = layered::XorClient::connect(addr, "lh-pub", layered::KEY);
        let deadline = Instant::now() + Duration::from_secs(5);
        while broker.stats().hibernations < 2 {
            assert!(Instant::now() < deadline, "not hibernated: {:?}", broker.stats());
            std::thread::sleep(Duration::from_millis(5));
        }
        publisher.publish("lh/1", Bytes::from_static(b"after sleep"), QoS::ExactlyOnce, 3);
        assert_eq!(&sub.receive().payload[..], b"after sleep");
        publisher.send(&Packet::PingReq);
        assert_eq!(publisher.recv().unwrap(), Packet::PingResp);
        assert!(broker.stats().wakeups >= 2, "{:?}", broker.stats());
        broker.shutdown().unwrap();
    }
}
