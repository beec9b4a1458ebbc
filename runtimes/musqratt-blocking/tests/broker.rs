//! The blocking runtime end to end: every shared case of musqratt-testkit (MQTT, MQTT-SN over
//! UDP, authentication) on real sockets. Accepts go round robin over the shards, so a client
//! whose id another shard owns is handed over whenever it lands on the wrong one.

use musqratt_blocking::start as start_blocking;
use musqratt_testkit::{Broker, BrokerConfig};

fn start(config: BrokerConfig) -> Broker {
    let handle = start_blocking(config).expect("the blocking runtime starts");
    let (tcp, udp) = (handle.local_addrs().to_vec(), handle.sn_local_addrs().to_vec());
    Broker::new(tcp, udp, move || handle.shutdown())
}

musqratt_testkit::all_cases!(start);
