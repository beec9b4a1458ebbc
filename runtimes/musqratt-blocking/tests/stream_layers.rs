//! The blocking runtime with byte-stream layers (docs/adr/0015): musqratt-testkit's layer
//! cases (every MQTT case through the identity layer, MQTT through layers that XOR every byte).

use musqratt_testkit::{Broker, BrokerConfig};

fn start(config: BrokerConfig) -> Broker {
    let handle = musqratt_blocking::start(config).expect("the blocking runtime starts");
    let (tcp, udp) = (handle.local_addrs().to_vec(), handle.sn_local_addrs().to_vec());
    Broker::new(tcp, udp, move || handle.shutdown())
}

musqratt_testkit::layer_cases!(start);
musqratt_testkit::ws_cases!(start);
