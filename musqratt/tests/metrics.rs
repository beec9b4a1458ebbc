//! Issue 17 end to end, on the `musqratt` binary (each runtime): a real client subscribed to
//! `$SYS/#` sees Mosquitto's tree, whose numbers say what the test did (N clients connected,
//! M messages published), and `/metrics` says the same and passes `promtool check metrics`
//! (Debian's `prometheus` package; required in CI).

use core::time::Duration;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Command, Stdio};

use musqratt_testkit::{BrokerProcess, free_port, http_get, scratch_dir, tool_available};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};

fn client(port: u16, id: &str) -> (AsyncClient, EventLoop) {
    let mut options = MqttOptions::new(id, "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    AsyncClient::new(options, 64)
}

/// Polls until the CONNACK.
async fn connected(events: &mut EventLoop) {
    loop {
        if let Event::Incoming(Packet::ConnAck(_)) = events.poll().await.unwrap() {
            return;
        }
    }
}

const N_CLIENTS: usize = 4;
const M_MESSAGES: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sys_tree_and_prometheus_say_what_the_clients_did_on_tokio() {
    sys_tree_and_prometheus("tokio").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sys_tree_and_prometheus_say_what_the_clients_did_on_io_uring() {
    sys_tree_and_prometheus("io-uring").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sys_tree_and_prometheus_say_what_the_clients_did_on_blocking() {
    sys_tree_and_prometheus("blocking").await;
}

async fn sys_tree_and_prometheus(runtime: &str) {
    let (port, http) = (free_port(), free_port());
    let dir = scratch_dir(&format!("metrics-sys-{runtime}"));
    let config = format!(
        "listeners = [\"mqtt://127.0.0.1:{port}\"]\nthreads = 2\nsys_interval_s = 1\n\
         [http]\nlisten = \"127.0.0.1:{http}\"\n"
    );
    let broker = BrokerProcess::musqratt(env!("CARGO_BIN_EXE_musqratt"), &dir, runtime, &config)
        .port(port)
        .port(http)
        .start();
    assert_eq!(http_get(http, "/healthz"), ("HTTP/1.1 200 OK".to_owned(), "ok\n".to_owned()));

    // N clients: the `$SYS` watcher, a subscriber, an idle one and a publisher (spread over
    // both shards by their client ids).
    let (watcher, mut watch_events) = client(port, "sys-watcher");
    connected(&mut watch_events).await;
    watcher.subscribe("$SYS/#", QoS::AtMostOnce).await.unwrap();
    let mut others = Vec::new();
    for id in ["subscriber", "idle"] {
        let (c, mut events) = client(port, id);
        connected(&mut events).await;
        if id == "subscriber" {
            // The in-broker latency is timed on delivery: someone must receive.
            c.subscribe("metrics/test", QoS::AtLeastOnce).await.unwrap();
            loop {
                if let Event::Incoming(Packet::SubAck(_)) = events.poll().await.unwrap() {
                    break;
                }
            }
        }
        others.push((c, tokio::spawn(async move { while events.poll().await.is_ok() {} })));
    }
    let (publisher, mut pub_events) = client(port, "publisher");
    connected(&mut pub_events).await;
    // M messages at QoS 1, each acknowledged before the next counts as done.
    for i in 0..M_MESSAGES {
        publisher
            .publish("metrics/test", QoS::AtLeastOnce, false, vec![b'x'; i + 1])
            .await
            .unwrap();
        loop {
            if let Event::Incoming(Packet::PubAck(_)) = pub_events.poll().await.unwrap() {
                break;
            }
        }
    }
    let _pub_task = tokio::spawn(async move { while pub_events.poll().await.is_ok() {} });

    // The tree, as the watcher sees it, until a publication reflects all of the above.
    let want_received = M_MESSAGES.to_string();
    let want_connected = N_CLIENTS.to_string();
    let mut tree = BTreeMap::new();
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Event::Incoming(Packet::Publish(p)) = watch_events.poll().await.unwrap() {
                let value = String::from_utf8_lossy(&p.payload).into_owned();
                tree.insert(p.topic.clone(), value);
            }
            let get = |t: &str| tree.get(t).map(String::as_str);
            if get("$SYS/broker/messages/received") == Some(&want_received)
                && get("$SYS/broker/clients/connected") == Some(&want_connected)
                && get("$SYS/broker/latency/qos1/p50").is_some()
                // From the second tree on, the first is retained too.
                && get("$SYS/broker/retained messages/count")
                    .is_some_and(|n| n.parse::<usize>().unwrap() >= 15)
            {
                return;
            }
        }
    })
    .await;
    assert!(seen.is_ok(), "the $SYS tree never said {N_CLIENTS} clients, {M_MESSAGES}: {tree:#?}");
    for name in [
        "version",
        "uptime",
        "clients/connected",
        "clients/total",
        "clients/maximum",
        "messages/received",
        "messages/sent",
        "bytes/received",
        "bytes/sent",
        "subscriptions/count",
        "retained messages/count",
        "latency/qos1/p50",
        "latency/qos1/p99",
    ] {
        assert!(tree.contains_key(&format!("$SYS/broker/{name}")), "{name} missing: {tree:#?}");
    }
    assert_eq!(tree["$SYS/broker/clients/total"], want_connected);
    // The watcher's `$SYS/#` and the subscriber's.
    assert_eq!(tree["$SYS/broker/subscriptions/count"], "2");
    assert!(tree["$SYS/broker/uptime"].ends_with(" seconds"), "{tree:#?}");
    assert!(tree["$SYS/broker/version"].starts_with("musqratt version "), "{tree:#?}");
    // The $SYS messages themselves are retained, replicated on each shard, counted once
    // (2 strings, 20 numbers, 3 quantiles of QoS 1; of QoS 0, those of the $SYS deliveries;
    // from the second tree on, 27 load averages).
    let retained: usize = tree["$SYS/broker/retained messages/count"].parse().unwrap();
    assert!(
        (25..=28).contains(&retained) || (52..=55).contains(&retained),
        "{retained}: {tree:#?}"
    );
    // Mosquitto's load averages, per minute, from the second tree on.
    let load = "$SYS/broker/load/messages/received/1min";
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        while !tree.contains_key(load) {
            if let Event::Incoming(Packet::Publish(p)) = watch_events.poll().await.unwrap() {
                tree.insert(p.topic.clone(), String::from_utf8_lossy(&p.payload).into_owned());
            }
        }
    })
    .await;
    assert!(seen.is_ok(), "no {load}: {tree:#?}");
    assert!(tree[load].parse::<f64>().is_ok_and(|rate| rate >= 0.0), "{tree:#?}");

    // A client may not publish into $SYS (MQTT-4.7.2-1): the watcher would see it.
    publisher.publish("$SYS/broker/uptime", QoS::AtMostOnce, true, "forged").await.unwrap();

    let (status, metrics) = http_get(http, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(metrics.contains(&format!("\nmusqratt_clients_connected {N_CLIENTS}\n")), "{metrics}");
    assert!(
        metrics
            .contains(&format!("\nmusqratt_messages_received_total{{qos=\"1\"}} {M_MESSAGES}\n")),
        "{metrics}"
    );
    // 1 + 2 + 3 + 4 + 5 payload bytes.
    assert!(
        metrics.contains("\nmusqratt_payload_received_bytes_total{qos=\"1\"} 15\n"),
        "{metrics}"
    );
    let (_, stats) = http_get(http, "/api/v1/stats");
    assert!(stats.contains(&format!("\"clients\":{{\"connected\":{N_CLIENTS},")), "{stats}");
    if tool_available(&["promtool", "--version"]) {
        let mut check = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        check.stdin.take().unwrap().write_all(metrics.as_bytes()).unwrap();
        let out = check.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool: {}{}\n{metrics}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The forged uptime never reaches the watcher: the next tree's is the broker's.
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Event::Incoming(Packet::Publish(p)) = watch_events.poll().await.unwrap() {
                assert_ne!(&p.payload[..], b"forged");
                if p.topic == "$SYS/broker/uptime" {
                    return;
                }
            }
        }
    })
    .await
    .expect("another $SYS tree");
    let log = broker.stop();
    assert!(!log.contains("panicked"), "{log}");
}
