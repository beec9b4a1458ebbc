//! The tokio runtime end to end: every shared case of musqratt-testkit (MQTT, MQTT-SN over UDP,
//! authentication) on real sockets. `SO_REUSEPORT` spreads connections and MQTT-SN peers over
//! the shards; a client accepted by a shard other than its owner's is handed over.

use musqratt_testkit::{Broker, BrokerConfig};
use musqratt_tokio::Broker as Tokio;

fn start(config: BrokerConfig) -> Broker {
    let broker = Tokio::start(config).expect("the tokio runtime starts");
    let (tcp, udp) = (broker.local_addrs().to_vec(), broker.sn_local_addrs().to_vec());
    Broker::new(tcp, udp, move || broker.shutdown().expect("no shard thread panicked"))
}

musqratt_testkit::all_cases!(start);
