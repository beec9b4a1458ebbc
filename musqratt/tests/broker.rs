//! The broker over real sockets: an in-process [`Broker`] on an ephemeral port, and the built
//! `musqratt` binary, driven by the workspace's raw test client (musqratt-testkit's).

use core::net::SocketAddr;
use core::time::Duration;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use bytes::Bytes;
use musqratt::config::FileConfig;
use musqratt::proto::bytestring::ByteString;
use musqratt::proto::mqtt::{Packet, Publish, ReasonCode};
use musqratt::proto::{ProtocolVersion, QoS};
use musqratt::{Broker, BrokerConfig};
use musqratt_testkit::{
    Client, Event, WAIT, connect_packet, id_on_shard, open, publish_packet, receive_publish,
    subscribe,
};

fn start(threads: usize) -> Broker {
    let mut config = BrokerConfig::default();
    config.listeners = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
    config.threads = threads;
    Broker::start(config).expect("broker starts")
}

/// Connects with Clean Start and this keep alive, and returns the client and whatever the
/// broker answered first.
async fn connect_raw(
    addr: SocketAddr,
    version: ProtocolVersion,
    client_id: &str,
    keep_alive: u16,
) -> (Client, Packet) {
    let mut client = open(addr, version).await;
    client.send(&connect_packet(client_id, version, keep_alive));
    let connack = client.recv().await;
    (client, connack)
}

/// Connects and checks that the broker accepted.
async fn connected(addr: SocketAddr, version: ProtocolVersion, client_id: &str) -> Client {
    let (client, connack) = connect_raw(addr, version, client_id, 0).await;
    match connack {
        Packet::ConnAck(ack) => assert_eq!(ack.reason_code, ReasonCode::SUCCESS),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    client
}

/// Publishes (retained or not) with the client's next packet id and completes the QoS flow.
async fn publish(client: &mut Client, topic: &str, payload: &'static [u8], qos: QoS, retain: bool) {
    let mut publish = Publish::new(ByteString::from(topic), Bytes::from_static(payload));
    publish.qos = qos;
    publish.retain = retain;
    publish.packet_id = (qos != QoS::AtMostOnce).then(|| client.next_pid());
    publish_packet(client, publish).await;
}

/// Reads until the broker closes (within [`WAIT`]), returning the last packet it sent before.
async fn closed(client: &mut Client) -> Option<Packet> {
    client.packets_until_closed(WAIT).await.pop()
}

/// Runs blocking broker control (shutdown joins threads) off the test's runtime.
async fn stop(broker: Broker) {
    tokio::task::spawn_blocking(move || broker.shutdown()).await.unwrap().unwrap();
}

#[tokio::test]
async fn connect_and_connack_in_every_version() {
    let broker = start(1);
    for (version, id) in [
        (ProtocolVersion::V3_1, "v31"),
        (ProtocolVersion::V3_1_1, "v311"),
        (ProtocolVersion::V5, "v5"),
    ] {
        let (_client, connack) = connect_raw(broker.local_addr(), version, id, 30).await;
        match connack {
            Packet::ConnAck(ack) => {
                assert_eq!(ack.reason_code, ReasonCode::SUCCESS, "{version:?}");
                assert!(!ack.session_present);
            }
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }
    stop(broker).await;
}

async fn deliver_all_qos(addr: SocketAddr, subscriber: &str, publisher: &str) {
    let mut sub = connected(addr, ProtocolVersion::V5, subscriber).await;
    subscribe(&mut sub, "t/#", QoS::ExactlyOnce).await;
    let mut publ = connected(addr, ProtocolVersion::V3_1_1, publisher).await;
    // No waiting or retrying: the SUBACK came once every shard routes the subscription.
    publish(&mut publ, "t/0", b"zero", QoS::AtMostOnce, false).await;
    publish(&mut publ, "t/1", b"one", QoS::AtLeastOnce, false).await;
    publish(&mut publ, "t/2", b"two", QoS::ExactlyOnce, false).await;
    let mut got = Vec::new();
    while got.len() < 3 {
        let p = receive_publish(&mut sub).await;
        got.push((p.topic.to_string(), p.payload, p.qos));
    }
    assert_eq!(
        got,
        vec![
            ("t/0".to_owned(), Bytes::from_static(b"zero"), QoS::AtMostOnce),
            ("t/1".to_owned(), Bytes::from_static(b"one"), QoS::AtLeastOnce),
            ("t/2".to_owned(), Bytes::from_static(b"two"), QoS::ExactlyOnce),
        ]
    );
}

#[tokio::test]
async fn qos_0_1_2_on_one_shard() {
    let broker = start(1);
    deliver_all_qos(broker.local_addr(), "sub", "pub").await;
    stop(broker).await;
}

#[tokio::test]
async fn qos_0_1_2_across_shards() {
    let broker = start(2);
    let addr = broker.local_addr();
    // Sessions live on the shard owning the client identifier: these two are on different
    // shards whichever shard accepted their sockets.
    deliver_all_qos(addr, &id_on_shard("sub", 0, 2), &id_on_shard("pub", 1, 2)).await;
    deliver_all_qos(addr, &id_on_shard("sub", 1, 2), &id_on_shard("pub", 0, 2)).await;
    stop(broker).await;
}

#[tokio::test]
async fn connections_accepted_elsewhere_are_handed_to_their_owner() {
    let broker = start(2);
    let addr = broker.local_addr();
    // The kernel spreads connections over both shards' listeners; about half land on the shard
    // that does not own their client identifier and must move (2^-24 that none does).
    let mut clients = Vec::new();
    for i in 0..24 {
        let id = id_on_shard(&format!("h{i}"), 1, 2);
        clients.push(connected(addr, ProtocolVersion::V5, &id).await);
    }
    let stats = broker.stats();
    assert_eq!(stats.accepted, 24);
    assert!(stats.handoffs > 0, "{stats:?}");
    // Handed-over connections keep working: one subscribes, another publishes.
    let mut publ = clients.pop().unwrap();
    let mut sub = clients.pop().unwrap();
    subscribe(&mut sub, "h", QoS::AtLeastOnce).await;
    publish(&mut publ, "h", b"moved", QoS::AtLeastOnce, false).await;
    assert_eq!(&receive_publish(&mut sub).await.payload[..], b"moved");
    stop(broker).await;
}

#[test]
fn a_port_in_use_is_refused() {
    let broker = start(2);
    let mut config = BrokerConfig::default();
    config.listeners = vec![broker.local_addr()];
    config.threads = 2;
    let error = Broker::start(config).expect_err("the port is taken");
    assert_eq!(error.kind(), std::io::ErrorKind::AddrInUse, "{error}");
    broker.shutdown().unwrap();
}

#[tokio::test]
async fn empty_payloads_are_delivered() {
    let broker = start(1);
    let addr = broker.local_addr();
    let mut sub = connected(addr, ProtocolVersion::V5, "empty-sub").await;
    subscribe(&mut sub, "e", QoS::AtLeastOnce).await;
    let mut publ = connected(addr, ProtocolVersion::V5, "empty-pub").await;
    publish(&mut publ, "e", b"", QoS::AtMostOnce, false).await;
    publish(&mut publ, "e", b"", QoS::AtLeastOnce, false).await;
    publish(&mut publ, "e", b"after", QoS::AtLeastOnce, false).await;
    assert_eq!(&receive_publish(&mut sub).await.payload[..], b"");
    assert_eq!(&receive_publish(&mut sub).await.payload[..], b"");
    assert_eq!(&receive_publish(&mut sub).await.payload[..], b"after");
    stop(broker).await;
}

#[tokio::test]
async fn retained_message_goes_to_later_subscribers_on_every_shard() {
    let broker = start(2);
    let addr = broker.local_addr();
    let mut publ = connected(addr, ProtocolVersion::V5, &id_on_shard("rp", 0, 2)).await;
    publish(&mut publ, "r/state", b"on", QoS::AtLeastOnce, true).await;
    for shard in [0, 1] {
        let id = id_on_shard("rs", shard, 2);
        // Retained messages are replicated to every shard asynchronously: retry briefly.
        let publish = tokio::time::timeout(WAIT, async {
            loop {
                let mut sub = connected(addr, ProtocolVersion::V3_1_1, &id).await;
                subscribe(&mut sub, "r/#", QoS::AtLeastOnce).await;
                let got = sub.next_event(Duration::from_millis(200)).await;
                if let Event::Packet(Packet::Publish(p)) = got {
                    return p;
                }
            }
        })
        .await
        .expect("retained message arrives");
        assert!(publish.retain);
        assert_eq!(&*publish.topic, "r/state");
        assert_eq!(&publish.payload[..], b"on");
    }
    stop(broker).await;
}

#[tokio::test]
async fn keep_alive_answers_pings_and_closes_silent_clients() {
    let broker = start(1);
    let (mut client, _) = connect_raw(broker.local_addr(), ProtocolVersion::V5, "ka", 1).await;
    client.send(&Packet::PingReq);
    assert_eq!(client.recv().await, Packet::PingResp);
    // Then silence: closed after 1.5 × Keep Alive, told why (0x8D).
    let started = tokio::time::Instant::now();
    match closed(&mut client).await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason_code, ReasonCode::KEEP_ALIVE_TIMEOUT),
        other => panic!("expected DISCONNECT 0x8D, got {other:?}"),
    }
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(1400), "{waited:?}");
    assert!(waited < Duration::from_secs(4), "{waited:?}");
    stop(broker).await;
}

#[tokio::test]
async fn malformed_packet_closes_the_connection() {
    let broker = start(1);
    let addr = broker.local_addr();
    // 3.1.1: PUBLISH whose topic length runs past the packet: closed without a word.
    let mut client = connected(addr, ProtocolVersion::V3_1_1, "bad311").await;
    client.write_all(&[0x30, 0x03, 0x00, 0x05, b'a']).await;
    assert_eq!(closed(&mut client).await, None);
    // 5.0: told why with a DISCONNECT carrying an error reason code.
    let mut client = connected(addr, ProtocolVersion::V5, "bad5").await;
    client.write_all(&[0x30, 0x03, 0x00, 0x05, b'a']).await;
    match closed(&mut client).await {
        Some(Packet::Disconnect(d)) => assert!(d.reason_code.is_error(), "{d:?}"),
        other => panic!("expected DISCONNECT, got {other:?}"),
    }
    // Not MQTT at all before CONNECT ("GE" reads as a 69-byte packet: send all of it).
    let mut client = open(addr, ProtocolVersion::V3_1_1).await;
    client.write_all(format!("GET / HTTP/1.1\r\nHost: x\r\n{:80}\r\n\r\n", "").as_bytes()).await;
    assert_eq!(closed(&mut client).await, None);
    // The broker is still fine.
    connected(addr, ProtocolVersion::V5, "after").await;
    stop(broker).await;
}

#[tokio::test]
async fn shutdown_sends_server_shutting_down_to_v5_clients() {
    let broker = start(2);
    let addr = broker.local_addr();
    let mut v5 = connected(addr, ProtocolVersion::V5, "down5").await;
    let mut v3 = connected(addr, ProtocolVersion::V3_1_1, "down3").await;
    let started = std::time::Instant::now();
    stop(broker).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    match closed(&mut v5).await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason_code, ReasonCode::SERVER_SHUTTING_DOWN),
        other => panic!("expected DISCONNECT 0x8B, got {other:?}"),
    }
    assert_eq!(closed(&mut v3).await, None);
}

#[test]
fn invalid_config_exits_with_code_2_naming_key_and_line() {
    let dir = std::env::temp_dir().join(format!("musqratt-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(&path, "threads = 1\nmax_queued_mesages = 5\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_musqratt"))
        .args(["broker", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("max_queued_mesages"), "{stderr}");
    assert!(stderr.contains("line 2"), "{stderr}");
    for (listener, says) in [
        ("http://127.0.0.1:8883", "unsupported scheme"),
        // TLS without its certificate and key.
        ("mqtts://127.0.0.1:0", "tls.cert_file and tls.key_file"),
        ("wss://127.0.0.1:0/mqtt", "tls.cert_file and tls.key_file"),
    ] {
        std::fs::write(&path, format!("listeners = [\"{listener}\"]\n")).unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_musqratt"))
            .args(["broker", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{listener}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(says), "{listener}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigterm_stops_the_binary_gracefully() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_musqratt"))
        .args(["broker", "--listen", "mqtt://127.0.0.1:0", "--threads", "2"])
        .args(["--log-level", "info"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The bound port, from the log line `listening addr=127.0.0.1:PORT`.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let addr: SocketAddr = loop {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "broker exited before listening");
        if let Some(rest) = line.split("addr=").nth(1).filter(|_| line.contains("listening")) {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut client = connected(addr, ProtocolVersion::V5, "term").await;
        let started = std::time::Instant::now();
        let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        assert!(status.unwrap().success());
        match closed(&mut client).await {
            Some(Packet::Disconnect(d)) => {
                assert_eq!(d.reason_code, ReasonCode::SERVER_SHUTTING_DOWN);
            }
            other => panic!("expected DISCONNECT 0x8B, got {other:?}"),
        }
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(started.elapsed() < Duration::from_secs(5), "still running after 5 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(status.code(), Some(0));
    });
}

#[test]
fn config_example_in_docs_parses_and_matches_defaults() {
    let doc = include_str!("../../docs/CONFIG.md");
    // The first ```toml block is the full example with every key at its default.
    let start = doc.find("```toml\n").expect("a toml example") + "```toml\n".len();
    let end = start + doc[start..].find("```").unwrap();
    let example = FileConfig::parse(&doc[start..end]).expect("the documented example parses");
    assert_eq!(example, FileConfig::default(), "docs/CONFIG.md shows the defaults");
    // Keys without a default are shown commented out: they must be valid too.
    let uncommented: String = doc[start..end]
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(key_value) if key_value.contains(" = ") => key_value.to_owned() + "\n",
            _ => l.to_owned() + "\n",
        })
        .collect();
    let full = FileConfig::parse(&uncommented).expect("the commented keys parse");
    assert!(full.server_keep_alive.is_some() && full.server_reference.is_some());
    // Every key of the example is documented in the table.
    let mut table = String::new();
    for line in doc[start..end].lines() {
        if let Some(name) = line.strip_prefix('[') {
            table = format!("{}.", name.trim_end_matches(']'));
        } else if let Some((key, _)) = line.split_once(" = ") {
            let key = key.trim_start_matches('#').trim();
            let row = format!("| `{table}{key}`");
            // A table of free-form keys (predefined topic ids) has one row for the table.
            let table_row = format!("| `{}`", table.trim_end_matches('.'));
            assert!(
                doc.contains(&row) || !table.is_empty() && doc.contains(&table_row),
                "{table}{key} is not in the key table"
            );
        }
    }
}

/// Once a client has its SUBACK, a publish another shard handles reaches it: the SUBACK waits
/// until every shard routes the subscription (MQTT-3.8.4-1 answers a SUBSCRIBE; a subscriber
/// that was told it is subscribed must not miss what follows). 200 rounds, each subscribing to a
/// new topic and publishing to it at once from a client owned by the other shard: without the
/// barrier some of these publishes were routed before the route reached the publisher's shard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_right_after_suback_reaches_the_subscriber_from_any_shard() {
    let broker = start(2);
    let addr = broker.local_addr();
    let mut sub = connected(addr, ProtocolVersion::V3_1_1, &id_on_shard("barrier-sub", 0, 2)).await;
    let mut publisher =
        connected(addr, ProtocolVersion::V3_1_1, &id_on_shard("barrier-pub", 1, 2)).await;
    for round in 0..200 {
        let topic = format!("barrier/{round}");
        subscribe(&mut sub, &topic, QoS::AtMostOnce).await;
        let publish = Publish::new(ByteString::from(topic.as_str()), Bytes::from_static(b"x"));
        publisher.send(&Packet::Publish(publish));
        let got = receive_publish(&mut sub).await;
        assert_eq!(&*got.topic, topic, "round {round}");
    }
    broker.shutdown().unwrap();
}

/// MQTT-3.3.1-6 (3.1.1): a retained message goes to future subscribers. Once its publisher has
/// the PUBACK, a client subscribing on another shard gets it, although retained messages are
/// replicated between shards asynchronously (the SUBACK waits for a sync with every shard).
/// 200 rounds, each a new topic, the publisher and the subscriber on different shards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retained_message_acknowledged_on_one_shard_reaches_a_subscriber_on_another() {
    let broker = start(2);
    let addr = broker.local_addr();
    let mut sub = connected(addr, ProtocolVersion::V3_1_1, &id_on_shard("retain-sub", 0, 2)).await;
    let mut publisher =
        connected(addr, ProtocolVersion::V3_1_1, &id_on_shard("retain-pub", 1, 2)).await;
    for round in 0..200 {
        let topic = format!("retained/{round}");
        publish(&mut publisher, &topic, b"kept", QoS::AtLeastOnce, true).await;
        subscribe(&mut sub, &topic, QoS::AtMostOnce).await;
        let got = receive_publish(&mut sub).await;
        assert_eq!(&*got.topic, topic, "round {round}");
        assert!(got.retain, "round {round}: sent because of the new subscription");
    }
    broker.shutdown().unwrap();
}

/// A message between shards is handled by the publishing shard's thread, which runs the
/// subscriber's shard's step in person and writes the delivery itself, when that shard is idle
/// (docs/adr/0010): one broker thread wakes per message, as within a shard. Messages sent in a
/// burst, some in person and some by mail (the other shard busy), still arrive in order.
#[tokio::test]
async fn a_message_between_idle_shards_is_delivered_by_the_publishing_thread_in_order() {
    let broker = start(2);
    let addr = broker.local_addr();
    for (sub_shard, pub_shard) in [(0, 1), (1, 0)] {
        let mut sub =
            connected(addr, ProtocolVersion::V5, &id_on_shard("dsub", sub_shard, 2)).await;
        subscribe(&mut sub, "d/#", QoS::AtLeastOnce).await;
        let mut publ =
            connected(addr, ProtocolVersion::V3_1_1, &id_on_shard("dpub", pub_shard, 2)).await;
        let before = broker.stats();
        // Paced: the subscriber's shard is idle when each message comes.
        for i in 0..20u32 {
            tokio::time::sleep(Duration::from_millis(3)).await;
            let publish = Publish::new(ByteString::from("d/paced"), Bytes::from(i.to_string()));
            publ.send(&Packet::Publish(publish));
            assert_eq!(receive_publish(&mut sub).await.payload, Bytes::from(i.to_string()));
        }
        let paced = broker.stats();
        assert!(paced.direct_steps > before.direct_steps, "{before:?} -> {paced:?}");
        assert!(paced.direct_writes > before.direct_writes, "{before:?} -> {paced:?}");
        // A burst at QoS 1, acknowledged as it arrives: in order, none lost, none doubled.
        for i in 0..500u32 {
            let mut publish = Publish::new(ByteString::from("d/burst"), Bytes::from(i.to_string()));
            publish.qos = QoS::AtLeastOnce;
            publish.packet_id = Some(publ.next_pid());
            publ.send(&Packet::Publish(publish));
        }
        for i in 0..500u32 {
            let got = receive_publish(&mut sub).await;
            assert_eq!(got.payload, Bytes::from(i.to_string()), "burst message {i}");
        }
    }
    stop(broker).await;
}
