//! The compio runtime end to end: the shared runtime cases (the blocking runtime's
//! `tests/common/cases.rs`, with its test client) on real sockets, and the epoll fallback.
//!
//! Connections are spread over the shards by the kernel (SO_REUSEPORT), not round robin: a
//! client whose id another shard owns is handed over whenever it lands on the wrong shard, which
//! the cases that connect many such clients make all but certain.

#[path = "../../musqratt-blocking/tests/common/mod.rs"]
mod common;
#[macro_use]
#[path = "../../musqratt-blocking/tests/common/cases.rs"]
mod cases;

use core::net::SocketAddr;
use core::time::Duration;

use common::{Client, id_on_shard};
use musqratt_compio::{BrokerConfig, BrokerHandle, Driver, start, start_with};
use musqratt_proto::bytes::Bytes;
use musqratt_proto::bytestring::ByteString;
use musqratt_proto::mqtt::{Packet, Publish};
use musqratt_proto::{PacketId, ProtocolVersion, QoS};

fn broker(shards: usize) -> (BrokerHandle, SocketAddr) {
    broker_on(shards, None)
}

fn broker_on(shards: usize, driver: Option<Driver>) -> (BrokerHandle, SocketAddr) {
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::DEBUG)
        .with_test_writer()
        .try_init();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut config = BrokerConfig::default();
    config.listeners = vec![any];
    config.threads = shards;
    let handle = match driver {
        None => start(config),
        Some(driver) => start_with(config, driver),
    }
    .unwrap();
    let addr = handle.local_addrs()[0];
    (handle, addr)
}

runtime_cases!(start = broker, handle = BrokerHandle);

#[test]
fn reports_the_driver_it_runs_on() {
    let (broker, _) = broker(2);
    // Not asserted either way: io_uring depends on the kernel and the sandbox.
    eprintln!("io_uring in use: {}", broker.uses_io_uring());
    broker.shutdown();
    let (forced, _) = broker_on(1, Some(Driver::Poll));
    assert!(!forced.uses_io_uring());
    forced.shutdown();
}

#[test]
fn epoll_fallback_serves_all_qos_across_shards() {
    let sub_id = id_on_shard("poll-sub", 1, 2);
    let pub_id = id_on_shard("poll-pub", 0, 2);
    shared::pub_sub_all_qos_on(
        broker_on(2, Some(Driver::Poll)),
        &sub_id,
        &pub_id,
        ProtocolVersion::V5,
    );
    shared::pub_sub_all_qos_on(
        broker_on(1, Some(Driver::Poll)),
        "poll-one-sub",
        "poll-one-pub",
        ProtocolVersion::V3_1_1,
    );
}

/// Publishes `count` numbered messages on `topic` (QoS 0 paced, or a QoS 1 burst) and checks
/// that the subscriber gets them all, in order.
fn numbered(publ: &mut Client, sub: &mut Client, topic: &str, count: u16, burst: bool) {
    let qos = if burst { QoS::AtLeastOnce } else { QoS::AtMostOnce };
    let publish = |publ: &mut Client, i: u16| {
        let mut publish = Publish::new(ByteString::from(topic), Bytes::from(i.to_string()));
        publish.qos = qos;
        if burst {
            publish.packet_id = Some(PacketId::new(i + 1).unwrap());
        }
        publ.send(&Packet::Publish(publish));
    };
    if burst {
        for i in 0..count {
            publish(publ, i);
        }
    }
    for i in 0..count {
        if !burst {
            // Paced: the subscriber's shard is idle when each message comes.
            std::thread::sleep(Duration::from_millis(3));
            publish(publ, i);
        }
        let got = sub.receive_publish();
        assert_eq!(got.payload, Bytes::from(i.to_string()), "{topic}: message {i}");
        assert_eq!(got.qos, qos);
    }
    if burst {
        for i in 0..count {
            match publ.recv() {
                Packet::PubAck(ack) => assert_eq!(ack.packet_id, PacketId::new(i + 1).unwrap()),
                other => panic!("expected PUBACK, got {other:?}"),
            }
        }
    }
}

/// A message between shards is handled by the publishing shard's thread, which runs the
/// subscriber's shard's step in person and writes the delivery itself when that shard is idle
/// (docs/adr/0012): one broker thread wakes per message, as within a shard. Paced messages and
/// a 500-message QoS 1 burst (some in person, some by mail while the other shard is busy)
/// arrive in order, between shards both ways and within each shard.
#[test]
fn a_message_between_idle_shards_is_delivered_by_the_publishing_thread_in_order() {
    let (broker, addr) = broker(2);
    for (sub_shard, pub_shard) in [(0, 1), (1, 0), (0, 0), (1, 1)] {
        let tag = format!("{sub_shard}{pub_shard}");
        let sub_id = id_on_shard(&format!("dsub{tag}"), sub_shard, 2);
        let pub_id = id_on_shard(&format!("dpub{tag}"), pub_shard, 2);
        let mut sub = Client::connect(addr, &sub_id, ProtocolVersion::V5);
        sub.subscribe(&format!("d/{tag}/#"), QoS::AtLeastOnce);
        let mut publ = Client::connect(addr, &pub_id, ProtocolVersion::V3_1_1);
        let before = broker.stats();
        numbered(&mut publ, &mut sub, &format!("d/{tag}/paced"), 20, false);
        let paced = broker.stats();
        eprintln!("{sub_shard} <- {pub_shard} paced: {before:?} -> {paced:?}");
        if sub_shard != pub_shard {
            // Most of them at least: the machine may be busy, or the shard thread awake.
            assert!(paced.direct_steps >= before.direct_steps + 10, "{before:?} -> {paced:?}");
            assert!(paced.direct_writes >= before.direct_writes + 10, "{before:?} -> {paced:?}");
        } else {
            // None of the 20 messages crosses; the previous pair's clients, closing, may still
            // send their route removals to the other shard meanwhile (seen on a busy machine).
            let crossed = paced.direct_steps - before.direct_steps;
            assert!(crossed < 5, "within a shard: {before:?} -> {paced:?}");
        }
        numbered(&mut publ, &mut sub, &format!("d/{tag}/burst"), 500, true);
        eprintln!("{sub_shard} <- {pub_shard} burst: {paced:?} -> {:?}", broker.stats());
    }
    broker.shutdown();
}

/// Deliveries written in person to a subscriber that does not read fill its socket: what the
/// socket does not take is left to the subscriber shard's writer task, which the publishing
/// thread wakes for it. Once the subscriber reads again, everything arrives whole and in order.
#[test]
fn a_delivery_the_socket_does_not_take_whole_is_finished_by_the_owning_shard_in_order() {
    let (broker, addr) = broker(2);
    let sub_id = id_on_shard("slow-sub", 0, 2);
    let pub_id = id_on_shard("slow-pub", 1, 2);
    let mut sub = Client::connect(addr, &sub_id, ProtocolVersion::V5);
    sub.subscribe("slow/#", QoS::AtLeastOnce);
    let mut publ = Client::connect(addr, &pub_id, ProtocolVersion::V3_1_1);
    let before = broker.stats();
    let count: u16 = 200;
    let payload = |i: u16| {
        let mut bytes = format!("{i:05}-").into_bytes();
        bytes.resize(32 * 1024, b'x' ^ u8::try_from(i % 64).unwrap());
        Bytes::from(bytes)
    };
    for i in 0..count {
        let mut publish = Publish::new(ByteString::from("slow/big"), payload(i));
        publish.qos = QoS::AtLeastOnce;
        publish.packet_id = Some(PacketId::new(i + 1).unwrap());
        publ.send(&Packet::Publish(publish));
        match publ.recv() {
            Packet::PubAck(ack) => assert_eq!(ack.packet_id, PacketId::new(i + 1).unwrap()),
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
    let sent = broker.stats();
    eprintln!("{before:?} -> {sent:?}");
    assert!(sent.direct_steps > before.direct_steps, "{before:?} -> {sent:?}");
    for i in 0..count {
        let got = sub.receive_publish();
        assert_eq!(got.payload, payload(i), "message {i}");
    }
    let after = broker.stats();
    eprintln!("{sent:?} -> {after:?}");
    assert!(sent.owner_wakes > before.owner_wakes, "a full socket: {before:?} -> {sent:?}");
    broker.shutdown();
}
