//! The bench over every transport on real sockets: the tokio runtime with a `mqtts://`, a
//! `ws://` and a `wss://` listener (the kit's server layers), and a short `latency` scenario
//! through the bench's library API over each, every message arriving. Nothing is timed.

use core::time::Duration;
use std::path::Path;

use musqratt_bench::{Args, ConnsArgs, LatencyArgs, Placement, Scenario, ThroughputArgs};
use musqratt_kit::Layers;
use musqratt_kit::layer::tls::TlsSettings;
use musqratt_kit::layer::ws::WsSettings;
use musqratt_testkit::pki::TestCa;
use musqratt_tokio::{Broker, BrokerConfig};

/// A CA (its certificate in `dir/ca.pem`) and a server certificate it signed for `localhost`
/// and 127.0.0.1 (`dir/server.pem`, `dir/server.key`).
fn certificates(dir: &Path) -> TlsSettings {
    let (cert, key) = TestCa::new(dir, "ca").server(dir, "server");
    TlsSettings::new(cert, key)
}

/// A one-shard broker whose one listener has `layers`.
fn broker(layers: Layers) -> Broker {
    let mut config = BrokerConfig::default();
    let addr = "127.0.0.1:0".parse().unwrap();
    config.listeners = vec![addr];
    config.listener_layers = vec![(addr, layers)];
    config.threads = 1;
    Broker::start(config).unwrap()
}

fn latency(url: String, cafile: &Path, qos: u8) -> Args {
    args(
        url,
        cafile,
        Scenario::Latency(LatencyArgs {
            qos,
            rate: 2000,
            payload: 64,
            window: 1000,
            spin_us: 20,
            sn: None,
            sn_sub: false,
            placement: Placement::Any,
            shards: 1,
        }),
    )
}

fn args(url: String, cafile: &Path, scenario: Scenario) -> Args {
    Args {
        scenario,
        url,
        cafile: Some(cafile.to_owned()),
        duration: Duration::from_millis(100),
        warmup: Duration::ZERO,
        drain: Duration::from_secs(2),
        json: true,
        label: None,
        pid: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenarios_over_mqtts_ws_and_wss() {
    let dir = std::env::temp_dir().join(format!("musqratt-bench-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tls = Layers::tls(certificates(&dir).load().unwrap());
    let ws = WsSettings::default();
    let cafile = dir.join("ca.pem");
    let brokers = [
        ("mqtts", "", broker(tls.clone())),
        ("ws", "/mqtt", broker(Layers::ws(ws.clone()))),
        ("wss", "", broker(tls.with_ws(ws))),
    ];
    for (scheme, path, broker) in &brokers {
        // By IP address and by name: the certificate carries both.
        let port = broker.local_addr().port();
        for host in ["127.0.0.1", "localhost"] {
            for qos in [0, 2] {
                let url = format!("{scheme}://u:p@{host}:{port}{path}");
                let reports = musqratt_bench::run_reports(&latency(url.clone(), &cafile, qos))
                    .await
                    .unwrap_or_else(|e| panic!("{url}: {e:#}"));
                let r = &reports[0].results;
                assert_eq!(r["sent"], 200, "{url} QoS {qos}: {r:?}");
                assert_eq!(r["received"], 200, "{url} QoS {qos}: {r:?}");
                assert_eq!(r["lost"], 0, "{url} QoS {qos}: {r:?}");
                assert_eq!(r["duplicates"], 0, "{url} QoS {qos}: {r:?}");
            }
        }
    }
    // The tokio-side scenarios too: throughput at QoS 1 (the publisher's writes and its
    // acknowledgement reader share a connection), and idle connections.
    for (scheme, path, broker) in &brokers {
        let url = format!("{scheme}://127.0.0.1:{}{path}", broker.local_addr().port());
        let throughput = Scenario::Throughput(ThroughputArgs {
            publishers: 2,
            subscribers: 2,
            qos: 1,
            payload: 3000,
            window: 100,
            rate: 2000,
            single_topic: false,
            placement: Placement::Any,
            shards: 1,
        });
        let reports = musqratt_bench::run_reports(&args(url.clone(), &cafile, throughput))
            .await
            .unwrap_or_else(|e| panic!("{url}: {e:#}"));
        let r = &reports[0].results;
        assert_eq!(r["no_loss"], true, "{url}: {r:?}");
        assert!(r["delivered"].as_u64().unwrap() >= 300, "{url}: {r:?}");
        let conns = Scenario::Conns(ConnsArgs {
            connections: 20,
            parallel: 8,
            keep_alive: 60,
            users: 0,
            hold: Duration::ZERO,
            clean: true,
            source_ips: 0,
        });
        let reports = musqratt_bench::run_reports(&args(url.clone(), &cafile, conns))
            .await
            .unwrap_or_else(|e| panic!("{url}: {e:#}"));
        let r = &reports[0].results;
        assert_eq!((&r["connected"], &r["failed"]), (&20.into(), &0.into()), "{url}: {r:?}");
    }
    // Without --cafile, mqtts and wss say what is missing.
    let mut args =
        latency(format!("mqtts://127.0.0.1:{}", brokers[0].2.local_addr().port()), &cafile, 0);
    args.cafile = None;
    let error = musqratt_bench::run_reports(&args).await.unwrap_err();
    assert!(format!("{error:#}").contains("--cafile"), "{error:#}");
    for (_, _, broker) in brokers {
        tokio::task::spawn_blocking(move || broker.shutdown().unwrap()).await.unwrap();
    }
}

/// The TLS relay (`relay --tls-cert --tls-key`, the floor of a TLS hop) carries every message
/// of a `latency` run over `mqtts://`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tls_relay_carries_latency_over_mqtts() {
    let dir = std::env::temp_dir().join(format!("musqratt-bench-relay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = TestCa::new(&dir, "ca").server(&dir, "server");
    let port = musqratt_testkit::free_port();
    let relay = musqratt_testkit::BrokerProcess::command({
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_musqratt-bench"));
        command.args(["relay", "--listen", &format!("127.0.0.1:{port}"), "--tls-cert"]);
        command.arg(&cert).arg("--tls-key").arg(&key);
        command
    })
    .port(port)
    .start();
    let url = format!("mqtts://127.0.0.1:{port}");
    let reports = musqratt_bench::run_reports(&latency(url.clone(), &dir.join("ca.pem"), 0))
        .await
        .unwrap_or_else(|e| panic!("{url}: {e:#}"));
    let r = &reports[0].results;
    assert_eq!((&r["sent"], &r["received"]), (&200.into(), &200.into()), "{r:?}");
    drop(relay);
}
