//! The scale scenarios of issue 19 (`subs`, `retained`, `conns` as a storm) against the tokio
//! runtime in this process, on real sockets, at tiny sizes: each must count every subscription,
//! retained message and connection, and report the broker's memory when given its pid (the
//! broker is this process). Nothing here checks a speed.

use core::time::Duration;

use musqratt_bench::{
    Args, ConnsArgs, FilterShape, Report, RetainedArgs, Scenario, SubsArgs, run_reports,
};
use musqratt_tokio::{Broker, BrokerConfig};

fn broker() -> Broker {
    broker_with(|_| {})
}

fn broker_with(change: impl FnOnce(&mut BrokerConfig)) -> Broker {
    let mut config = BrokerConfig::default();
    config.listeners = vec!["127.0.0.1:0".parse().unwrap()];
    config.threads = 2;
    change(&mut config);
    Broker::start(config).unwrap()
}

fn args(broker: &Broker, scenario: Scenario) -> Args {
    Args {
        scenario,
        url: format!("mqtt://127.0.0.1:{}", broker.local_addr().port()),
        cafile: None,
        duration: Duration::from_millis(300),
        warmup: Duration::from_millis(100),
        drain: Duration::from_millis(500),
        json: true,
        label: None,
        pid: Some(std::process::id()),
    }
}

async fn run(args: &Args) -> Report {
    let mut reports = run_reports(args).await.unwrap_or_else(|e| panic!("{args:?}: {e:#}"));
    assert_eq!(reports.len(), 1);
    reports.remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subs_holds_every_filter_and_measures_a_pair_meanwhile() {
    let broker = broker();
    for (shape, per_packet) in [(FilterShape::Exact, 1), (FilterShape::Wildcard, 7)] {
        let r = run(&args(
            &broker,
            Scenario::Subs(SubsArgs {
                filters: 500,
                shape,
                clients: 3,
                window: 10,
                per_packet,
                qos: 1,
                rate: 500,
                shards: 2,
                hold: Duration::ZERO,
            }),
        ))
        .await;
        let (p, r) = (&r.params, &r.results);
        // MQTT-3.9.3-1: one return code per filter, each a granted QoS here.
        assert_eq!((&r["acknowledged"], &r["refused"]), (&500.into(), &0.into()), "{r:?}");
        assert!(r["subscribes_per_s"].as_f64().unwrap() > 0.0, "{r:?}");
        assert!(r["rss_per_sub_bytes"].is_number(), "{r:?}");
        assert_eq!(p["shape"], if shape == FilterShape::Exact { "exact" } else { "wildcard" });
        // The pair's topic is among the held filters and matches none of them: nothing is
        // lost and the subscriber got every message.
        assert_eq!(r["lost"], 0, "{r:?}");
        assert!(r["sent"].as_u64().unwrap() > 0, "{r:?}");
        assert!(r["latency_us"]["p99"].as_f64().unwrap() > 0.0, "{r:?}");
        assert_eq!(p["pub_shard"], p["sub_shard"], "{p:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_messages_all_reach_a_wildcard_subscriber() {
    let broker = broker();
    for qos in [0, 1] {
        let r = run(&args(
            &broker,
            Scenario::Retained(RetainedArgs {
                topics: 700,
                payload: 64,
                window: 50,
                qos,
                hold: Duration::ZERO,
            }),
        ))
        .await;
        let r = &r.results;
        // MQTT-3.3.1-6: a new subscription gets every retained message it matches.
        assert_eq!((&r["received"], &r["lost"]), (&700.into(), &0.into()), "qos {qos}: {r:?}");
        assert_eq!(r["duplicates"], 0, "{r:?}");
        assert!(r["rss_per_retained_bytes"].is_number(), "{r:?}");
        assert!(r["receive_all_s"].as_f64().unwrap() > 0.0, "{r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_reports_what_a_bounded_queue_drops_instead_of_waiting() {
    // A broker that lets 1 KiB wait for a subscriber's socket drops QoS 0 messages beyond it
    // (`max_unwritten_bytes`, a slow reader's bound): 700 retained messages sent at subscribe
    // time do not all fit, and the run ends after the drain saying how many were lost.
    let broker = broker_with(|config| config.engine.max_unwritten_bytes = 1024);
    let r = run(&args(
        &broker,
        Scenario::Retained(RetainedArgs {
            topics: 700,
            payload: 64,
            window: 50,
            qos: 0,
            hold: Duration::ZERO,
        }),
    ))
    .await;
    let r = &r.results;
    let received = r["received"].as_u64().unwrap();
    assert!(received < 700, "{r:?}");
    assert_eq!(r["lost"].as_u64().unwrap(), 700 - received, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_persistent_sessions_from_several_source_addresses() {
    let broker = broker();
    for clean in [true, false] {
        let r = run(&args(
            &broker,
            Scenario::Conns(ConnsArgs {
                connections: 60,
                parallel: 0,
                keep_alive: 60,
                users: 0,
                hold: Duration::ZERO,
                clean,
                source_ips: 3,
            }),
        ))
        .await;
        let (p, r) = (&r.params, &r.results);
        assert_eq!((&r["connected"], &r["failed"]), (&60.into(), &0.into()), "{r:?}");
        assert_eq!(p["source_ips"], 3, "{p:?}");
        assert_eq!(p["clean"], clean, "{p:?}");
        // New client ids: no session to resume (MQTT-3.2.2-3 for Clean Session 0).
        assert_eq!(r.get("sessions_present").cloned(), (!clean).then(|| 0.into()), "{r:?}");
        assert!(r["connect_us"]["p99"].as_f64().unwrap() > 0.0, "{r:?}");
    }
}
