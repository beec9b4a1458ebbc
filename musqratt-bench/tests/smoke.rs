//! CI smoke: every scenario for about half a second with a tiny load against the blocking
//! broker started in this process; the binary's `--json` output must parse and look sane.
//! Benchmarks are not timed tests: nothing here checks a speed.

use std::process::Command;

use serde_json::Value;

fn bench(args: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_musqratt-bench"))
        .args(args)
        .args(["--json", "--duration", "500ms", "--warmup", "200ms", "--drain", "1s"])
        .output()
        .expect("the bench binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON object per run: {stdout}");
    let report: Value = serde_json::from_str(lines[0]).expect("valid JSON");
    assert!(report["results"].is_object(), "{report}");
    report
}

#[test]
fn every_scenario_runs_against_the_blocking_broker() {
    let any: core::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut config = musqratt_blocking::BrokerConfig::default();
    (config.listeners, config.sn_listeners) = (vec![any], vec![any]);
    config.threads = 2;
    let broker = musqratt_blocking::start(config).expect("broker starts");
    let url = format!("mqtt://{}", broker.local_addrs()[0]);
    let url = url.as_str();
    let sn = format!("mqtt-sn://{}", broker.sn_local_addrs()[0]);

    // MQTT-SN publisher, MQTT then MQTT-SN subscriber.
    for path in [&[][..], &["--sn-sub"][..]] {
        let mut args = vec!["latency", "-u", url, "--rate", "2000", "--sn", &sn];
        args.extend_from_slice(path);
        let r = bench(&args);
        assert_eq!(r["results"]["lost"], 0, "{r}");
        assert!(r["params"]["path"].as_str().unwrap().starts_with("sn->"), "{r}");
        assert!(r["results"]["latency_us"]["p50"].as_f64().unwrap() > 0.0, "{r}");
    }

    for qos in ["0", "1", "2"] {
        let r = bench(&["latency", "-u", url, "--qos", qos, "--rate", "2000"]);
        assert_eq!(r["scenario"], "latency");
        assert_eq!(r["results"]["lost"], 0, "{r}");
        assert!(r["results"]["latency_us"]["p50"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["results"]["latency_us"]["cdf"].is_array());
    }
    let pid = std::process::id().to_string();
    for placement in ["same", "different"] {
        let r = bench(&[
            "latency",
            "-u",
            url,
            "--rate",
            "2000",
            "--placement",
            placement,
            "--shards",
            "2",
            "--pid",
            &pid,
        ]);
        assert_eq!(r["results"]["lost"], 0, "{r}");
        assert_eq!(r["params"]["placement"], placement, "{r}");
        let (p, s) = (&r["params"]["pub_shard"], &r["params"]["sub_shard"]);
        assert_eq!(p == s, placement == "same", "{r}");
        if cfg!(target_os = "linux") {
            assert!(r["results"]["other_cpu_cores"].as_f64().unwrap() >= 0.0, "{r}");
            assert!(r["results"]["broker_cpu_cores"].is_number(), "{r}");
        }
    }

    for qos in ["0", "1", "2"] {
        let r =
            bench(&["throughput", "-u", url, "-q", qos, "-p", "2", "-S", "2", "--rate", "4000"]);
        assert_eq!(r["results"]["lost"], 0, "{r}");
        assert!(r["results"]["deliveries_per_s"].as_f64().unwrap() > 0.0, "{r}");
    }
    let r = bench(&["fanout", "-u", url, "-S", "5", "--rate", "1000"]);
    assert_eq!(r["results"]["lost"], 0, "{r}");
    // Per message, the latency to the last of the 5 subscribers: never below the median
    // delivery's.
    let last = &r["results"]["last_subscriber_us"];
    assert!(last["count"].as_u64().unwrap() > 0, "{r}");
    assert!(last["max"].as_f64().unwrap() >= r["results"]["latency_us"]["p50"].as_f64().unwrap());

    let r = bench(&["conns", "-u", url, "-n", "50", "--pid", &pid, "--hold", "100ms"]);
    assert_eq!(r["results"]["connected"], 50, "{r}");
    assert!(r["results"]["rss_per_conn_bytes"].is_number(), "{r}");

    let r = bench(&["floor", "--rate", "2000"]);
    assert_eq!(r["scenario"], "floor");
    assert_eq!(r["results"]["lost"], 0, "{r}");
    let r = bench(&["floor", "--mode", "throughput"]);
    assert!(r["results"]["deliveries_per_s"].as_f64().unwrap() > 0.0, "{r}");

    broker.shutdown();
}
