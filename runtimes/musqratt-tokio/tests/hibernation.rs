//! Hibernation over real sockets (docs/adr/0009-hibernation.md): a connection silent for
//! `hibernate_after` gives up its task and tokio registration, and whatever needs it wakes it
//! without the client noticing: its own packets, a delivery, the keep alive running out, a
//! takeover, the peer closing, the broker shutting down. On 1 and 2 shards (handed-off
//! connections hibernate on the shard that adopted them).

use core::net::SocketAddr;
use core::time::Duration;
use std::time::Instant;

use musqratt_proto::bytes::Bytes;
use musqratt_proto::mqtt::{LastWill, Packet, ReasonCode, WillProperties};
use musqratt_proto::{ProtocolVersion, QoS};
use musqratt_testkit::{
    Client, connect, connect_packet, open, publish, receive_publish, run, subscribe,
};
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

/// Stops the broker on a thread of its own: its shutdown blocks, and must not run inside the
/// test's tokio runtime (the clients').
fn stop(broker: Broker) {
    std::thread::spawn(move || broker.shutdown()).join().unwrap().unwrap();
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
    run(async {
        for shards in [1, 2] {
            let broker = start(shards);
            let addr = broker.local_addr();
            let mut subscriber = connect(addr, "hib-sub", V5).await;
            subscribe(&mut subscriber, "hib/#", QoS::AtLeastOnce).await;
            let mut publisher = connect(addr, "hib-pub", V311).await;
            let before = wait_for(&broker, "both hibernate", |s| s.hibernations >= 2);

            // The publisher wakes for its own PUBLISH (and gets its PUBACK); the subscriber wakes
            // for the delivery.
            publish(&mut publisher, "hib/1", b"one", QoS::AtLeastOnce, 1).await;
            let received = receive_publish(&mut subscriber).await;
            assert_eq!((&*received.topic, &received.payload[..]), ("hib/1", &b"one"[..]));
            let woken = wait_for(&broker, "both wake", |s| s.wakeups >= before.wakeups + 2);

            // Both hibernate again, and wake again: QoS 2 this time, every packet of the flow
            // after a pause long enough to hibernate in between.
            wait_for(&broker, "both hibernate again", |s| s.hibernations >= woken.hibernations + 2);
            publish(&mut publisher, "hib/2", b"two", QoS::ExactlyOnce, 2).await;
            let received = receive_publish(&mut subscriber).await;
            assert_eq!(&received.payload[..], b"two");

            // Many in a row to a subscriber that hibernated: all arrive, in order (MQTT-4.6.0-5).
            wait_for(&broker, "hibernated before the burst", |s| {
                s.hibernations >= woken.hibernations + 4
            });
            for id in 1..=100u16 {
                publish(&mut publisher, "hib/burst", b"x", QoS::AtLeastOnce, id).await;
            }
            for _ in 1..=100 {
                assert_eq!(&*receive_publish(&mut subscriber).await.topic, "hib/burst");
            }
            stop(broker);
        }
    });
}

/// [MQTT-3.1.2-22]: a client silent for 1.5 times its keep alive is disconnected, hibernating
/// or not; its will is then published [MQTT-3.1.2-8]. And a hibernating client whose socket
/// closes is seen to go.
#[test]
fn keep_alive_and_peer_close_reach_hibernating_clients() {
    run(async {
        for shards in [1, 2] {
            let broker = start(shards);
            let addr = broker.local_addr();
            let mut watcher = connect(addr, "hib-watch", V311).await;
            subscribe(&mut watcher, "will/#", QoS::AtMostOnce).await;

            let mut silent = open(addr, V311).await;
            let mut connect = connect_packet("hib-silent", V311, 1);
            let mut closing = open(addr, V311).await;
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
            assert!(matches!(silent.recv().await, Packet::ConnAck(_)));
            closing.send(&connect_closing);
            assert!(matches!(closing.recv().await, Packet::ConnAck(_)));
            let before = wait_for(&broker, "all three hibernate", |s| s.hibernations >= 3);

            drop(closing);
            let will = receive_publish(&mut watcher).await;
            assert_eq!(&*will.topic, "will/closing");

            // Keep alive 1 s: closed by the broker between 1.5 s and 2 s (plus a hibernation sweep
            // for nothing: the close wakes it).
            let started = Instant::now();
            silent.packets_until_closed(Duration::from_secs(4)).await;
            assert!(started.elapsed() >= Duration::from_millis(1000), "{:?}", started.elapsed());
            let will = receive_publish(&mut watcher).await;
            assert_eq!(&*will.topic, "will/silent");
            assert!(broker.stats().wakeups >= before.wakeups + 2, "{:?}", broker.stats());
            stop(broker);
        }
    });
}

/// A new connection with the client id of a hibernating one takes its session over: the old one
/// gets DISCONNECT 0x8E Session taken over (§3.1.4, MQTT-3.1.4-3) and is closed.
#[test]
fn a_takeover_wakes_and_closes_the_hibernating_connection() {
    run(async {
        for shards in [1, 2] {
            let broker = start(shards);
            let addr = broker.local_addr();
            let mut old = connect(addr, "hib-twin", V5).await;
            wait_for(&broker, "the first hibernates", |s| s.hibernations >= 1);
            let _new = connect(addr, "hib-twin", V5).await;
            let packets = old.packets_until_closed(Duration::from_secs(3)).await;
            match packets.as_slice() {
                [Packet::Disconnect(disconnect)] => {
                    assert_eq!(disconnect.reason_code, ReasonCode::SESSION_TAKEN_OVER);
                }
                other => panic!("expected DISCONNECT 0x8E, got {other:?}"),
            }
            stop(broker);
        }
    });
}

/// Shutting down reaches hibernating MQTT 5.0 clients: DISCONNECT 0x8B Server shutting down,
/// then the close.
#[test]
fn shutdown_reaches_hibernating_clients() {
    run(async {
        let broker = start(2);
        let addr = broker.local_addr();
        let mut clients: Vec<Client> = Vec::new();
        for i in 0..8 {
            clients.push(connect(addr, &format!("hib-down-{i}"), V5).await);
        }
        wait_for(&broker, "all hibernate", |s| s.hibernations >= 8);
        stop(broker);
        for client in &mut clients {
            match client.packets_until_closed(Duration::from_secs(3)).await.as_slice() {
                [Packet::Disconnect(disconnect)] => {
                    assert_eq!(disconnect.reason_code, ReasonCode::SERVER_SHUTTING_DOWN);
                }
                other => panic!("expected DISCONNECT 0x8B, got {other:?}"),
            }
        }
    });
}

/// Off: nothing hibernates.
#[test]
fn hibernation_off() {
    run(async {
        let mut config = BrokerConfig::default();
        config.listeners = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
        config.threads = 1;
        config.hibernate_after = None;
        let broker = Broker::start(config).unwrap();
        let mut client = connect(broker.local_addr(), "hib-off", V311).await;
        std::thread::sleep(AFTER * 4);
        client.send(&Packet::PingReq);
        assert!(matches!(client.recv().await, Packet::PingResp));
        assert_eq!(broker.stats().hibernations, 0);
        stop(broker);
    });
}
