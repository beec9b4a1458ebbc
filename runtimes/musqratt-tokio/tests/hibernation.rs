//! Hibernation over real sockets (docs/adr/0009-hibernation.md): a connection silent for
//! `hibernate_after` gives up its task and tokio registration, and whatever needs it wakes it
//! without the client noticing: its own packets, a delivery, the keep alive running out, a
//! takeover, the peer closing, the broker shutting down. On 1 and 2 shards (handed-off
//! connections hibernate on the shard that adopted them).

#[allow(dead_code)] // the helpers this file does not use
#[path = "../../musqratt-blocking/tests/common/mod.rs"]
mod common;

use core::net::SocketAddr;
use core::time::Duration;
use std::time::Instant;

use common::{Client, connect_packet};
use musqratt_proto::bytes::Bytes;
use musqratt_proto::mqtt::{LastWill, Packet, ReasonCode, WillProperties};
use musqratt_proto::{ProtocolVersion, QoS};
use musqratt_tokio::{Broker, BrokerConfig, Stats};

const V5: ProtocolVersion = ProtocolVersion::V5;
const V311: ProtocolVersion = ProtocolVersion::V3_1_1;
/// Short, so that the tests do not wait long; connections hibernate after 50-100 ms.
const AFTER: Duration = Duration::from_millis(50);

fn start(shards: usize) -> Broker {
    let mut config = BrokerConfig::default();
    config.listeners = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
    config.threads = shards;
    config.hibernate_after = Some(AFTER);
    Broker::start(config).unwrap()
}

/// Waits until the broker's counters satisfy `done`.
fn wait_for(broker: &Broker, what: &str, done: impl Fn(Stats) -> bool) -> Stats {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stats = broker.stats();
        if done(stats) {
            return stats;
        }
        assert!(Instant::now() < deadline, "{what}: not within 5 s ({stats:?})");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn hibernating_clients_wake_to_publish_and_to_receive() {
    for shards in [1, 2] {
        let broker = start(shards);
        let addr = broker.local_addr();
        let mut subscriber = Client::connect(addr, "hib-sub", V5);
        subscriber.subscribe("hib/#", QoS::AtLeastOnce);
        let mut publisher = Client::connect(addr, "hib-pub", V311);
        let before = wait_for(&broker, "both hibernate", |s| s.hibernations >= 2);

        // The publisher wakes for its own PUBLISH (and gets its PUBACK); the subscriber wakes
        // for the delivery.
        publisher.publish("hib/1", b"one", QoS::AtLeastOnce, 1);
        let received = subscriber.receive_publish();
        assert_eq!((&*received.topic, &received.payload[..]), ("hib/1", &b"one"[..]));
        let woken = wait_for(&broker, "both wake", |s| s.wakeups >= before.wakeups + 2);

        // Both hibernate again, and wake again: QoS 2 this time, every packet of the flow
        // after a pause long enough to hibernate in between.
        wait_for(&broker, "both hibernate again", |s| s.hibernations >= woken.hibernations + 2);
        publisher.publish("hib/2", b"two", QoS::ExactlyOnce, 2);
        let received = subscriber.receive_publish();
        assert_eq!(&received.payload[..], b"two");

        // Many in a row to a subscriber that hibernated: all arrive, in order (MQTT-4.6.0-5).
        wait_for(&broker, "hibernated before the burst", |s| {
            s.hibernations >= woken.hibernations + 4
        });
        for id in 1..=100u16 {
            publisher.publish("hib/burst", b"x", QoS::AtLeastOnce, id);
        }
        for _ in 1..=100 {
            assert_eq!(&*subscriber.receive_publish().topic, "hib/burst");
        }
        broker.shutdown().unwrap();
    }
}

/// [MQTT-3.1.2-22]: a client silent for 1.5 times its keep alive is disconnected, hibernating
/// or not; its will is then published [MQTT-3.1.2-8]. And a hibernating client whose socket
/// closes is seen to go.
#[test]
fn keep_alive_and_peer_close_reach_hibernating_clients() {
    for shards in [1, 2] {
        let broker = start(shards);
        let addr = broker.local_addr();
        let mut watcher = Client::connect(addr, "hib-watch", V311);
        watcher.subscribe("will/#", QoS::AtMostOnce);

        let mut silent = Client::open(addr, V311);
        let mut connect = connect_packet("hib-silent", V311, 1);
        let mut closing = Client::open(addr, V311);
        let mut connect_closing = connect_packet("hib-closing", V311, 60);
        for (packet, topic) in
            [(&mut connect, "will/silent"), (&mut connect_closing, "will/closing")]
        {
            let Packet::Connect(connect) = packet else { unreachable!() };
            connect.will = Some(LastWill {
                topic: topic.into(),
                payload: Bytes::from_static(b"gone"),
                qos: QoS::AtMostOnce,
                retain: false,
                properties: WillProperties::default(),
            });
        }
        silent.send(&connect);
        assert!(matches!(silent.recv(), Packet::ConnAck(_)));
        closing.send(&connect_closing);
        assert!(matches!(closing.recv(), Packet::ConnAck(_)));
        let before = wait_for(&broker, "all three hibernate", |s| s.hibernations >= 3);

        drop(closing);
        let will = watcher.receive_publish();
        assert_eq!(&*will.topic, "will/closing");

        // Keep alive 1 s: closed by the broker between 1.5 s and 2 s (plus a hibernation sweep
        // for nothing: the close wakes it).
        let started = Instant::now();
        silent.expect_closed(Duration::from_secs(4));
        assert!(started.elapsed() >= Duration::from_millis(1000), "{:?}", started.elapsed());
        let will = watcher.receive_publish();
        assert_eq!(&*will.topic, "will/silent");
        assert!(broker.stats().wakeups >= before.wakeups + 2, "{:?}", broker.stats());
        broker.shutdown().unwrap();
    }
}

/// A new connection with the client id of a hibernating one takes its session over: the old one
/// gets DISCONNECT 0x8E Session taken over (§3.1.4, MQTT-3.1.4-3) and is closed.
#[test]
fn a_takeover_wakes_and_closes_the_hibernating_connection() {
    for shards in [1, 2] {
        let broker = start(shards);
        let addr = broker.local_addr();
        let mut old = Client::connect(addr, "hib-twin", V5);
        wait_for(&broker, "the first hibernates", |s| s.hibernations >= 1);
        let _new = Client::connect(addr, "hib-twin", V5);
        let packets = old.expect_closed(Duration::from_secs(3));
        match packets.as_slice() {
            [Packet::Disconnect(disconnect)] => {
                assert_eq!(disconnect.reason_code, ReasonCode::SESSION_TAKEN_OVER);
            }
            other => panic!("expected DISCONNECT 0x8E, got {other:?}"),
        }
        broker.shutdown().unwrap();
    }
}

/// Shutting down reaches hibernating MQTT 5.0 clients: DISCONNECT 0x8B Server shutting down,
/// then the close.
#[test]
fn shutdown_reaches_hibernating_clients() {
    let broker = start(2);
    let addr = broker.local_addr();
    let mut clients: Vec<Client> =
        (0..8).map(|i| Client::connect(addr, &format!("hib-down-{i}"), V5)).collect();
    wait_for(&broker, "all hibernate", |s| s.hibernations >= 8);
    broker.shutdown().unwrap();
    for client in &mut clients {
        match client.expect_closed(Duration::from_secs(3)).as_slice() {
            [Packet::Disconnect(disconnect)] => {
                assert_eq!(disconnect.reason_code, ReasonCode::SERVER_SHUTTING_DOWN);
            }
            other => panic!("expected DISCONNECT 0x8B, got {other:?}"),
        }
    }
}

/// Off: nothing hibernates.
#[test]
fn hibernation_off() {
    let mut config = BrokerConfig::default();
    config.listeners = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
    config.threads = 1;
    config.hibernate_after = None;
    let broker = Broker::start(config).unwrap();
    let mut client = Client::connect(broker.local_addr(), "hib-off", V311);
    std::thread::sleep(AFTER * 4);
    client.send(&Packet::PingReq);
    assert!(matches!(client.recv(), Packet::PingResp));
    assert_eq!(broker.stats().hibernations, 0);
    broker.shutdown().unwrap();
}
