//! MQTT-SN over UDP, what only the tokio runtime does so far: gateway advertisements. The cases
//! every MQTT-SN runtime shares are musqratt-testkit's (`tests/broker.rs` runs them).

use core::time::Duration;
use std::net::UdpSocket;

use musqratt_proto::bytes::Bytes;
use musqratt_proto::sn::{self, Message};
use musqratt_tokio::Broker;

/// §6.1: a gateway advertises itself every T_ADV from the start, before any client has spoken
/// (the first ADVERTISE is due at once; the shard's timer must start armed with it).
#[test]
fn the_first_advertise_goes_out_at_start_without_any_input() {
    let watcher = UdpSocket::bind("127.0.0.1:0").unwrap();
    watcher.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut config = musqratt_testkit::sn::config(2);
    config.sn_broadcast = Some(watcher.local_addr().unwrap());
    config.engine.sn_gateway_id = 7;
    config.engine.sn_advertise_interval = Some(Duration::from_secs(900));
    let broker = Broker::start(config).unwrap();
    let mut buf = [0u8; 64];
    let len = watcher.recv(&mut buf).expect("an ADVERTISE within 3 s of start");
    let advertise = sn::decode(Bytes::copy_from_slice(&buf[..len])).unwrap();
    assert_eq!(advertise, Message::Advertise(sn::Advertise { gw_id: 7, duration: 900 }));
    broker.shutdown().unwrap();
}
