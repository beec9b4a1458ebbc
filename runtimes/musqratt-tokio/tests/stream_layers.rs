//! The tokio runtime with byte-stream layers (docs/adr/0015): musqratt-testkit's layer cases
//! (every MQTT case through the identity layer, MQTT through layers that XOR every byte), and
//! layered connections hibernating.

use core::time::Duration;
use std::time::Instant;

use musqratt_proto::QoS;
use musqratt_proto::bytes::Bytes;
use musqratt_proto::mqtt::Packet;
use musqratt_testkit::layers::{KEY, XorClient, with_layers, xor_layers};
use musqratt_testkit::{Broker, BrokerConfig, config};
use musqratt_tokio::Broker as Tokio;

fn start(config: BrokerConfig) -> Broker {
    let broker = Tokio::start(config).expect("the tokio runtime starts");
    let (tcp, udp) = (broker.local_addrs().to_vec(), broker.sn_local_addrs().to_vec());
    Broker::new(tcp, udp, move || broker.shutdown().expect("no shard thread panicked"))
}

musqratt_testkit::layer_cases!(start);
musqratt_testkit::ws_cases!(start);

/// A layered connection hibernates like a plain one (docs/adr/0009): its stack waits in the
/// shard while the socket sleeps, and bytes still pass through it when the peer or a delivery
/// wakes it, on 1 and 2 shards (handed-off connections take their stack along).
#[test]
fn layered_connections_hibernate_and_wake_with_their_stack() {
    for shards in [1, 2] {
        let mut config = with_layers(config(shards), &xor_layers());
        config.hibernate_after = Some(Duration::from_millis(50));
        let broker = Tokio::start(config).unwrap();
        let addr = broker.local_addrs()[0];
        let mut sub = XorClient::connect(addr, "lh-sub", KEY);
        sub.subscribe("lh/#");
        let mut publisher = XorClient::connect(addr, "lh-pub", KEY);
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
