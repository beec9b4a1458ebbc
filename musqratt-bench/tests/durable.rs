//! The `durable` scenario against the tokio runtime on a real socket (in memory: a stored
//! session is the broker's business, the scenario's is that every message of a persistent
//! subscriber arrives): online, and away while the messages come, then back to drain them.

use core::time::Duration;

use musqratt_bench::{Args, DurableArgs, DurableMode, Scenario};
use musqratt_tokio::{Broker, BrokerConfig};

fn broker() -> Broker {
    let mut config = BrokerConfig::default();
    config.listeners = vec!["127.0.0.1:0".parse().unwrap()];
    config.threads = 2;
    // The away subscriber's session keeps every message of the run.
    config.engine.max_queued_messages = 10_000;
    Broker::start(config).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_reaches_a_persistent_subscriber_online_and_after_being_away() {
    let broker = broker();
    let url = format!("mqtt://127.0.0.1:{}", broker.local_addr().port());
    for mode in [DurableMode::Online, DurableMode::Offline] {
        let args = Args {
            scenario: Scenario::Durable(DurableArgs {
                messages: 5_000,
                payload: 64,
                window: 50,
                mode,
            }),
            url: url.clone(),
            cafile: None,
            duration: Duration::from_secs(1),
            warmup: Duration::ZERO,
            drain: Duration::from_secs(2),
            json: true,
            label: None,
            pid: None,
        };
        let reports =
            musqratt_bench::run_reports(&args).await.unwrap_or_else(|e| panic!("{mode:?}: {e:#}"));
        let r = &reports[0].results;
        assert_eq!(r["delivered"], 5_000, "{mode:?}: {r:?}");
        assert_eq!(r["lost"], 0, "{mode:?}: {r:?}");
        let rate = if mode == DurableMode::Online { "deliveries_per_s" } else { "drain_per_s" };
        assert!(r[rate].as_f64().is_some_and(|x| x > 0.0), "{mode:?}: {r:?}");
    }
}
