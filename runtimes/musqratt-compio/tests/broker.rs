//! The compio runtime end to end: the shared MQTT and authentication cases of
//! musqratt-testkit on real sockets, the epoll fallback, and the in-person delivery between
//! shards. Not the testkit's MQTT-SN cases: this runtime serves no MQTT-SN (`start` refuses
//! `sn_listeners`).
//!
//! Connections are spread over the shards by the kernel (SO_REUSEPORT), not round robin: a
//! client whose id another shard owns is handed over whenever it lands on the wrong shard, which
//! the cases that connect many such clients make all but certain.

use core::time::Duration;

use musqratt_compio::{BrokerHandle, Driver, start, start_with};
use musqratt_proto::bytes::Bytes;
use musqratt_proto::bytestring::ByteString;
use musqratt_proto::mqtt::{Packet, Publish};
use musqratt_proto::{PacketId, ProtocolVersion, QoS};
use musqratt_testkit::{
    Broker, BrokerConfig, Client, config, connect, encode, id_on_shard, launch, receive_publish,
    run, subscribe,
};

/// The testkit's [`Broker`] over a compio broker started on `driver` (the default: io_uring
/// where the kernel offers it).
fn wrap(handle: BrokerHandle) -> Broker {
    let addrs = handle.local_addrs().to_vec();
    Broker::new(addrs, Vec::new(), move || handle.shutdown())
}

fn on_default(config: BrokerConfig) -> Broker {
    wrap(start(config).expect("the compio runtime starts"))
}

fn on_poll(config: BrokerConfig) -> Broker {
    wrap(start_with(config, Driver::Poll).expect("the compio runtime starts on epoll"))
}

musqratt_testkit::mqtt_cases!(on_default);
musqratt_testkit::auth_cases!(on_default);

/// A compio broker of `shards` threads whose counters a test reads, with its address.
fn broker(shards: usize) -> (BrokerHandle, core::net::SocketAddr) {
    let handle = std::thread::spawn(move || start(config(shards)))
        .join()
        .unwrap()
        .expect("the compio runtime starts");
    let addr = handle.local_addrs()[0];
    (handle, addr)
}

/// Stops a broker started with [`broker`] on a thread of its own, out of the test's runtime.
fn stop(handle: BrokerHandle) {
    std::thread::spawn(move || handle.shutdown()).join().unwrap();
}

#[test]
fn reports_the_driver_it_runs_on() {
    let (broker, _) = broker(2);
    // Not asserted either way: io_uring depends on the kernel and the sandbox.
    eprintln!("io_uring in use: {}", broker.uses_io_uring());
    broker.shutdown();
    let forced = start_with(config(1), Driver::Poll).unwrap();
    assert!(!forced.uses_io_uring());
    forced.shutdown();
}

#[test]
fn epoll_fallback_serves_all_qos_across_shards() {
    run(async {
        let sub_id = id_on_shard("poll-sub", 1, 2);
        let pub_id = id_on_shard("poll-pub", 0, 2);
        let broker = launch(on_poll, config(2));
        musqratt_testkit::mqtt::pub_sub_all_qos_on(broker, &sub_id, &pub_id, ProtocolVersion::V5)
            .await;
        let broker = launch(on_poll, config(1));
        let (sub_id, pub_id) = ("poll-one-sub", "poll-one-pub");
        musqratt_testkit::mqtt::pub_sub_all_qos_on(broker, sub_id, pub_id, ProtocolVersion::V3_1_1)
            .await;
    });
}

/// Publishes `count` numbered messages on `topic` (QoS 0 paced, or a QoS 1 burst) and checks
/// that the subscriber gets them all, in order.
async fn numbered(publ: &mut Client, sub: &mut Client, topic: &str, count: u16, burst: bool) {
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
            musqratt_testkit::tokio::time::sleep(Duration::from_millis(3)).await;
            publish(publ, i);
        }
        let got = receive_publish(sub).await;
        assert_eq!(got.payload, Bytes::from(i.to_string()), "{topic}: message {i}");
        assert_eq!(got.qos, qos);
    }
    if burst {
        for i in 0..count {
            match publ.recv().await {
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
    run(a_message_between_idle_shards());
}

async fn a_message_between_idle_shards() {
    let (broker, addr) = broker(2);
    for (sub_shard, pub_shard) in [(0, 1), (1, 0), (0, 0), (1, 1)] {
        let tag = format!("{sub_shard}{pub_shard}");
        let sub_id = id_on_shard(&format!("dsub{tag}"), sub_shard, 2);
        let pub_id = id_on_shard(&format!("dpub{tag}"), pub_shard, 2);
        let mut sub = connect(addr, &sub_id, ProtocolVersion::V5).await;
        subscribe(&mut sub, &format!("d/{tag}/#"), QoS::AtLeastOnce).await;
        let mut publ = connect(addr, &pub_id, ProtocolVersion::V3_1_1).await;
        let before = broker.stats();
        numbered(&mut publ, &mut sub, &format!("d/{tag}/paced"), 20, false).await;
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
        numbered(&mut publ, &mut sub, &format!("d/{tag}/burst"), 500, true).await;
        eprintln!("{sub_shard} <- {pub_shard} burst: {paced:?} -> {:?}", broker.stats());
    }
    stop(broker);
}

/// Deliveries written in person to a subscriber that does not read fill its socket: what the
/// socket does not take is left to the subscriber shard's writer task, which the publishing
/// thread wakes for it. Once the subscriber reads again, everything arrives whole and in order.
#[test]
fn a_delivery_the_socket_does_not_take_whole_is_finished_by_the_owning_shard_in_order() {
    run(a_delivery_the_socket_does_not_take_whole());
}

async fn a_delivery_the_socket_does_not_take_whole() {
    let (broker, addr) = broker(2);
    let sub_id = id_on_shard("slow-sub", 0, 2);
    let pub_id = id_on_shard("slow-pub", 1, 2);
    let mut sub = connect(addr, &sub_id, ProtocolVersion::V5).await;
    subscribe(&mut sub, "slow/#", QoS::AtLeastOnce).await;
    let mut publ = connect(addr, &pub_id, ProtocolVersion::V3_1_1).await;
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
        publ.write_all(&encode(&Packet::Publish(publish), ProtocolVersion::V3_1_1)).await;
        match publ.recv().await {
            Packet::PubAck(ack) => assert_eq!(ack.packet_id, PacketId::new(i + 1).unwrap()),
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
    let sent = broker.stats();
    eprintln!("{before:?} -> {sent:?}");
    assert!(sent.direct_steps > before.direct_steps, "{before:?} -> {sent:?}");
    for i in 0..count {
        let got = receive_publish(&mut sub).await;
        assert_eq!(got.payload, payload(i), "message {i}");
    }
    let after = broker.stats();
    eprintln!("{sent:?} -> {after:?}");
    assert!(sent.owner_wakes > before.owner_wakes, "a full socket: {before:?} -> {sent:?}");
    stop(broker);
}
