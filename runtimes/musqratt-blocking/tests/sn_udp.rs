//! MQTT-SN over UDP through the blocking runtime: the shared cases (`common/sn_cases.rs`) on 1
//! and 3 shards.

#[allow(dead_code)] // the helpers this file does not use
mod common;
#[path = "common/sn_cases.rs"]
mod sn_cases;

use core::net::SocketAddr;

use musqratt_blocking::start_with_sn;

#[test]
fn sn_clients_connect_register_publish_and_subscribe_over_udp() {
    for shards in [1, 3] {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let broker = start_with_sn(sn_cases::config(), &[any], &[any], shards).unwrap();
        let (tcp, udp) = (broker.local_addrs()[0], broker.sn_local_addrs()[0]);
        sn_cases::connect_register_publish_subscribe(tcp, udp);
        sn_cases::a_second_connect_from_the_same_address_keeps_the_route(udp);
        broker.shutdown();
    }
}
