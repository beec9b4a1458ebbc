//! The blocking runtime's one-wake-up path (docs/adr/0011): the thread that reads a message
//! steps its shard itself, steps the subscriber's shard in person when that one is idle, and
//! writes the delivery to the subscriber's socket itself. Messages stay in order on one shard
//! and between shards, paced or in a burst (when some go by mail and some in person), and a
//! transport without a non-blocking write still works through the writer threads.

use core::net::SocketAddr;
use core::time::Duration;
use std::io;
use std::net::{TcpListener, TcpStream};

use musqratt_blocking::{
    BrokerConfig, BrokerHandle, CHUNK, StdTransport, Transport, start, start_with,
};
use musqratt_engine::Config;
use musqratt_proto::bytes::Bytes;
use musqratt_proto::bytestring::ByteString;
use musqratt_proto::mqtt::{Packet, Publish};
use musqratt_proto::{PacketId, ProtocolVersion, QoS};
use musqratt_testkit::{connect, encode, id_on_shard, receive_publish, run, subscribe, tokio};

const SHARDS: usize = 2;

fn any() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// `engine` on 127.0.0.1, any port, [`SHARDS`] shards.
fn config(engine: Config) -> BrokerConfig {
    let mut config = BrokerConfig::default();
    config.listeners = vec![any()];
    config.threads = SHARDS;
    config.engine = engine;
    config
}

/// [`StdTransport`] without [`Transport::try_write`]: every send goes through a writer thread.
struct NoTryWrite;

impl Transport for NoTryWrite {
    type Listener = TcpListener;
    type Stream = TcpStream;

    fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
        StdTransport::bind(addr)
    }
    fn local_addr(listener: &TcpListener) -> io::Result<SocketAddr> {
        StdTransport::local_addr(listener)
    }
    fn accept(listener: &TcpListener) -> io::Result<(TcpStream, SocketAddr)> {
        StdTransport::accept(listener)
    }
    fn unblock_accept(listener: &TcpListener) -> io::Result<()> {
        StdTransport::unblock_accept(listener)
    }
    fn try_clone(stream: &TcpStream) -> io::Result<TcpStream> {
        StdTransport::try_clone(stream)
    }
    fn read(stream: &mut TcpStream, buf: &mut [u8; CHUNK]) -> io::Result<usize> {
        StdTransport::read(stream, buf)
    }
    fn write(stream: &mut TcpStream, bytes: &[u8]) -> io::Result<usize> {
        StdTransport::write(stream, bytes)
    }
    fn shutdown(stream: &TcpStream) {
        StdTransport::shutdown(stream);
    }
}

/// A subscriber on shard `sub_shard` and a publisher on `pub_shard`: 20 QoS 1 messages paced
/// (each received before the next is sent: the shards are idle when it comes), then a burst of
/// 500 sent without waiting; every one arrives once and in order.
async fn paced_then_burst(broker: &BrokerHandle, sub_shard: u64, pub_shard: u64) {
    let addr = broker.local_addrs()[0];
    let tag = format!("{sub_shard}{pub_shard}");
    let shards = SHARDS as u64;
    let sub_id = id_on_shard(&format!("dsub{tag}"), sub_shard, shards);
    let mut sub = connect(addr, &sub_id, ProtocolVersion::V5).await;
    let filter = format!("d/{tag}/#");
    subscribe(&mut sub, &filter, QoS::AtLeastOnce).await;
    let pub_id = id_on_shard(&format!("dpub{tag}"), pub_shard, shards);
    let mut publ = connect(addr, &pub_id, ProtocolVersion::V3_1_1).await;
    let topic = ByteString::from(format!("d/{tag}/x"));
    let publish = move |i: u32| {
        let mut publish = Publish::new(topic.clone(), Bytes::from(i.to_string()));
        publish.qos = QoS::AtLeastOnce;
        publish.packet_id = Some(PacketId::new(u16::try_from(i % 60_000 + 1).unwrap()).unwrap());
        Packet::Publish(publish)
    };
    let before = broker.stats();
    for i in 0..20u32 {
        tokio::time::sleep(Duration::from_millis(3)).await;
        publ.send(&publish(i));
        assert!(matches!(publ.recv().await, Packet::PubAck(_)));
        assert_eq!(
            receive_publish(&mut sub).await.payload,
            Bytes::from(i.to_string()),
            "paced {i}"
        );
    }
    // One wake-up per message: the engine threads sleep through the paced messages.
    let paced = broker.stats();
    eprintln!("paced {sub_shard}/{pub_shard}: {before:?} -> {paced:?}");
    assert!(paced.engine_wakeups < before.engine_wakeups + 10, "{before:?} -> {paced:?}");
    // Sent and acknowledged while the subscriber reads.
    let burst = async {
        for i in 20..520u32 {
            publ.send(&publish(i));
        }
        for _ in 20..520u32 {
            assert!(matches!(publ.recv().await, Packet::PubAck(_)));
        }
    };
    let read = async {
        for i in 20..520u32 {
            let got = receive_publish(&mut sub).await;
            assert_eq!(got.payload, Bytes::from(i.to_string()), "burst {i}");
        }
    };
    tokio::join!(burst, read);
}

/// On one shard: the publisher's reader steps the shard and writes the delivery itself.
#[test]
fn within_a_shard_the_reader_steps_and_writes_in_order() {
    run(async {
        let broker = start(config(Config::default())).unwrap();
        for shard in 0..SHARDS as u64 {
            let before = broker.stats();
            paced_then_burst(&broker, shard, shard).await;
            let after = broker.stats();
            eprintln!("{shard}/{shard}: {before:?} -> {after:?}");
            assert!(after.direct_steps >= before.direct_steps + 20, "{before:?} -> {after:?}");
            // 520 deliveries and 520 PUBACKs, written by the stepping threads.
            assert!(after.direct_writes > before.direct_writes + 1000, "{before:?} -> {after:?}");
        }
        broker.shutdown();
    });
}

/// Between shards, both ways: the publisher's reader steps the subscriber's shard in person
/// when it is idle, and messages stay in order when some go by mail.
#[test]
fn between_shards_the_reader_steps_the_other_shard_in_order_both_ways() {
    run(async {
        let broker = start(config(Config::default())).unwrap();
        for (sub_shard, pub_shard) in [(0, 1), (1, 0)] {
            let before = broker.stats();
            paced_then_burst(&broker, sub_shard, pub_shard).await;
            let after = broker.stats();
            eprintln!("{sub_shard}/{pub_shard}: {before:?} -> {after:?}");
            assert!(after.peer_steps > before.peer_steps, "{before:?} -> {after:?}");
            assert!(after.direct_steps >= before.direct_steps + 20, "{before:?} -> {after:?}");
            assert!(after.direct_writes > before.direct_writes + 1000, "{before:?} -> {after:?}");
        }
        broker.shutdown();
    });
}

/// A transport without a non-blocking write: every send goes through the writer threads, in
/// order, on one shard and between shards.
#[test]
fn a_transport_without_try_write_sends_through_the_writer_threads() {
    run(async {
        let broker = start_with::<NoTryWrite>(config(Config::default())).unwrap();
        for (sub_shard, pub_shard) in [(0, 0), (0, 1), (1, 0)] {
            paced_then_burst(&broker, sub_shard, pub_shard).await;
        }
        let stats = broker.stats();
        eprintln!("{stats:?}");
        assert_eq!(stats.direct_writes, 0, "{stats:?}");
        assert!(stats.writer_sends > 3 * 520, "{stats:?}");
        assert!(stats.direct_steps > 0, "{stats:?}");
        broker.shutdown();
    });
}

/// Writes made by the stepping thread are reported to the engine (`Input::Written`): 300 KiB
/// go one by one to a subscriber that keeps up, through a broker that counts a subscriber more
/// than 64 KiB behind as slow and drops its QoS 0 messages. None is dropped.
#[test]
fn direct_writes_are_reported_written() {
    run(async {
        let mut engine = Config::default();
        engine.max_unwritten_bytes = 64 * 1024;
        let broker = start(config(engine)).unwrap();
        let addr = broker.local_addrs()[0];
        for (sub_shard, pub_shard) in [(0, 0), (0, 1)] {
            let tag = format!("w{sub_shard}{pub_shard}");
            let mut sub =
                connect(addr, &id_on_shard(&tag, sub_shard, 2), ProtocolVersion::V5).await;
            subscribe(&mut sub, &tag, QoS::AtMostOnce).await;
            let pub_id = id_on_shard(&format!("{tag}p"), pub_shard, 2);
            let mut publ = connect(addr, &pub_id, ProtocolVersion::V3_1_1).await;
            for i in 0..300u32 {
                let mut payload = vec![0u8; 1024];
                payload[..4].copy_from_slice(&i.to_be_bytes());
                publ.send(&Packet::Publish(Publish::new(tag.clone().into(), payload.into())));
                assert_eq!(
                    receive_publish(&mut sub).await.payload[..4],
                    i.to_be_bytes(),
                    "message {i}"
                );
            }
        }
        let stats = broker.stats();
        assert!(stats.direct_writes >= 600, "{stats:?}");
        broker.shutdown();
    });
}

/// A subscriber that does not read: the sends the socket does not take go to its writer thread
/// (which blocks, not the publisher's thread), the engine drops QoS 0 beyond its bound, and the
/// publisher is still served.
#[test]
fn a_subscriber_that_does_not_read_does_not_hold_up_the_publisher() {
    run(async {
        let broker = start(config(Config::default())).unwrap();
        let addr = broker.local_addrs()[0];
        for (sub_shard, pub_shard) in [(0, 0), (1, 0)] {
            let tag = format!("s{sub_shard}{pub_shard}");
            let mut sub =
                connect(addr, &id_on_shard(&tag, sub_shard, 2), ProtocolVersion::V5).await;
            subscribe(&mut sub, &tag, QoS::AtMostOnce).await;
            let pub_id = id_on_shard(&format!("{tag}p"), pub_shard, 2);
            let mut publ = connect(addr, &pub_id, ProtocolVersion::V3_1_1).await;
            let mut bytes = Vec::new();
            for _ in 0..8 {
                let publish = Publish::new(tag.clone().into(), vec![0u8; 64 * 1024].into());
                bytes.extend(encode(&Packet::Publish(publish), ProtocolVersion::V3_1_1));
            }
            // 8 MiB to a subscriber that reads nothing: far beyond the sockets' buffers and the
            // engine's 4 MiB bound.
            for _ in 0..16 {
                publ.write_all(&bytes).await;
            }
            publ.send(&Packet::PingReq);
            assert!(matches!(publ.recv().await, Packet::PingResp), "publisher served");
            drop(sub);
        }
        let stats = broker.stats();
        assert!(stats.writer_sends > 0, "{stats:?}");
        broker.shutdown();
    });
}

/// Four publishers, two on each shard, publish at once to one subscriber: the shards are busy,
/// inputs go by mail and in person mixed, and each publisher's messages still arrive in order.
#[test]
fn concurrent_publishers_on_both_shards_keep_their_order() {
    run(async {
        const COUNT: u32 = 300;
        let broker = start(config(Config::default())).unwrap();
        let addr = broker.local_addrs()[0];
        let mut sub = connect(addr, &id_on_shard("csub", 0, 2), ProtocolVersion::V5).await;
        subscribe(&mut sub, "c/#", QoS::AtLeastOnce).await;
        let mut publishers = Vec::new();
        for (n, shard) in [0u64, 1, 0, 1].into_iter().enumerate() {
            let pub_id = id_on_shard(&format!("cpub{n}"), shard, 2);
            let mut publ = connect(addr, &pub_id, ProtocolVersion::V3_1_1).await;
            // A task of the test's runtime: runs whenever the subscriber waits for a packet.
            publishers.push(tokio::spawn(async move {
                for i in 0..COUNT {
                    let mut publish = Publish::new(
                        ByteString::from(format!("c/{n}")),
                        Bytes::from(i.to_string()),
                    );
                    publish.qos = QoS::AtLeastOnce;
                    publish.packet_id = Some(PacketId::new(u16::try_from(i + 1).unwrap()).unwrap());
                    publ.send(&Packet::Publish(publish));
                }
                for _ in 0..COUNT {
                    assert!(matches!(publ.recv().await, Packet::PubAck(_)));
                }
                publ
            }));
        }
        let mut next = [0u32; 4];
        for _ in 0..4 * COUNT {
            let publish = receive_publish(&mut sub).await;
            let n: usize = publish.topic.strip_prefix("c/").unwrap().parse().unwrap();
            assert_eq!(publish.payload, Bytes::from(next[n].to_string()), "publisher {n}");
            next[n] += 1;
        }
        for publisher in publishers {
            drop(publisher.await.unwrap());
        }
        eprintln!("{:?}", broker.stats());
        broker.shutdown();
    });
}
