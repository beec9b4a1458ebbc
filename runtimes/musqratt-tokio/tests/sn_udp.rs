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
        broker.shutdown().unwrap();
    }
}
