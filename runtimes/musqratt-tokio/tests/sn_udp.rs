//! MQTT-SN over UDP through the tokio runtime: the shared cases of the blocking runtime's tests
//! (`common/sn_cases.rs`) on 1 and 3 shards, where `SO_REUSEPORT` spreads peers over shards
//! and a client's datagrams follow it to the shard owning its client id.

#[allow(dead_code)] // the helpers this file does not use
#[path = "../../musqratt-blocking/tests/common/mod.rs"]
mod common;
#[path = "../../musqratt-blocking/tests/common/sn_cases.rs"]
mod sn_cases;

use core::net::SocketAddr;

use musqratt_tokio::{Broker, BrokerConfig};

#[test]
fn sn_clients_connect_register_publish_and_subscribe_over_udp() {
    for shards in [1, 3] {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut config = BrokerConfig::default();
        config.listeners = vec![any];
        config.sn_listeners = vec![any];
        config.threads = shards;
        config.engine = sn_cases::config();
        let broker = Broker::start(config).unwrap();
        let (tcp, udp) = (broker.local_addr(), broker.sn_local_addrs()[0]);
        sn_cases::connect_register_publish_subscribe(tcp, udp);
        sn_cases::a_second_connect_from_the_same_address_keeps_the_route(udp);
        broker.shutdown().unwrap();
    }
}

/// §6.1: a gateway advertises itself every T_ADV from the start, before any client has spoken
/// (the first ADVERTISE is due at once; the shard's timer must start armed with it).
#[test]
fn the_first_advertise_goes_out_at_start_without_any_input() {
    use core::time::Duration;
    use musqratt_proto::sn::{self, Message};

    let watcher = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    watcher.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut config = BrokerConfig::default();
    config.listeners = vec![any];
    config.sn_listeners = vec![any];
    config.sn_broadcast = Some(watcher.local_addr().unwrap());
    config.threads = 2;
    config.engine = sn_cases::config();
    config.engine.sn_gateway_id = 7;
    config.engine.sn_advertise_interval = Some(Duration::from_secs(900));
    let broker = Broker::start(config).unwrap();
    let mut buf = [0u8; 64];
    let len = watcher.recv(&mut buf).expect("an ADVERTISE within 3 s of start");
    let advertise = sn::decode(bytes::Bytes::copy_from_slice(&buf[..len])).unwrap();
    assert_eq!(advertise, Message::Advertise(sn::Advertise { gw_id: 7, duration: 900 }));
    broker.shutdown().unwrap();
}
