//! The io-uring runtime with byte-stream layers (docs/adr/0015): musqratt-testkit's layer
//! cases (every MQTT case through the identity layer, MQTT through layers that XOR every byte).

use musqratt_testkit::{Broker, BrokerConfig};

fn start(config: BrokerConfig) -> Broker {
    let handle = musqratt_compio::start(config).expect("the compio runtime starts");
    let addrs = handle.local_addrs().to_vec();
    Broker::new(addrs, Vec::new(), move || handle.shutdown())
}

musqratt_testkit::layer_cases!(start);
musqratt_testkit::ws_cases!(start);
