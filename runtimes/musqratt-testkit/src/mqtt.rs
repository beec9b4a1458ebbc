//! The MQTT cases every runtime must pass, with raw packets: connecting, the three QoS flows,
//! hand-offs between shards (a client accepted on a shard other than its owner's), large and
//! many messages, keep alive, malformed input and shutdown. [`crate::mqtt_cases`] runs them.

use core::time::Duration;
use std::net::TcpStream;
use std::time::Instant;

use musqratt_proto::mqtt::{Packet, Publish, ReasonCode};
use musqratt_proto::{PacketId, ProtocolVersion, QoS};

use crate::{
    Broker, Client, Start, config, connect, connect_packet, connect_with, encode, id_on_shard,
    launch, open, publish, receive_publish, subscribe, subscribe_packet,
};

const V311: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

/// The runtime reports the port it was given for `:0`, and listens there.
pub async fn local_addrs_reports_the_real_port(start: Start) {
    let broker = launch(start, config(1));
    assert_eq!(broker.local_addrs().len(), 1);
    let addr = broker.addr();
    assert_ne!(addr.port(), 0);
    assert!(addr.ip().is_loopback());
    TcpStream::connect(addr).unwrap();
    broker.shutdown();
}

/// CONNECT is answered with CONNACK and PINGREQ with PINGRESP in 3.1, 3.1.1 and 5.0.
pub async fn connect_connack_and_ping(start: Start) {
    let broker = launch(start, config(1));
    for version in [ProtocolVersion::V3_1, V311, V5] {
        let mut client = connect(broker.addr(), "pinger", version).await;
        client.send(&Packet::PingReq);
        assert_eq!(client.recv().await, Packet::PingResp);
    }
    broker.shutdown();
}

/// SUBSCRIBE, then PUBLISH at each QoS from another client, with both QoS flows completed, on
/// a broker the caller started (the runtimes with start options of their own use it too); the
/// broker is shut down at the end.
pub async fn pub_sub_all_qos_on(
    broker: Broker,
    sub_id: &str,
    pub_id: &str,
    version: ProtocolVersion,
) {
    let addr = broker.addr();
    let mut sub = connect(addr, sub_id, version).await;
    subscribe(&mut sub, "t/#", QoS::ExactlyOnce).await;
    let mut publisher = connect(addr, pub_id, version).await;
    for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce].into_iter().enumerate() {
        let payload: &'static [u8] = [&b"zero"[..], b"one", b"two"][i];
        publish(&mut publisher, "t/x", payload, qos, 10 + u16::try_from(i).unwrap()).await;
        let got = receive_publish(&mut sub).await;
        assert_eq!(&*got.topic, "t/x");
        assert_eq!(&got.payload[..], payload);
        assert_eq!(got.qos, qos);
    }
    broker.shutdown();
}

/// QoS 0, 1 and 2 between two clients on one shard, in 3.1.1 and 5.0.
pub async fn publish_qos_0_1_2_between_two_clients(start: Start) {
    pub_sub_all_qos_on(launch(start, config(1)), "sub", "pub", V311).await;
    pub_sub_all_qos_on(launch(start, config(1)), "sub5", "pub5", V5).await;
}

/// Subscriber and publisher are owned by different shards, so the publisher's shard forwards to
/// the subscriber's; whichever is accepted on the other shard is handed over first.
pub async fn two_shards_handoff_and_cross_shard_delivery(start: Start) {
    let sub_id = id_on_shard("sub", 1, 2);
    let pub_id = id_on_shard("pub", 0, 2);
    pub_sub_all_qos_on(launch(start, config(2)), &sub_id, &pub_id, V311).await;
    pub_sub_all_qos_on(launch(start, config(2)), &sub_id, &pub_id, V5).await;
}

/// Packets in the same write as CONNECT reach the owning shard in order, after the hand-off.
pub async fn packets_pipelined_behind_connect_survive_the_handoff(start: Start) {
    let broker = launch(start, config(2));
    let addr = broker.addr();
    // Owned by shard 1: when accepted on shard 0, SUBSCRIBE and PINGREQ ride in the same write
    // as CONNECT and must reach shard 1 in order. Ten rounds, so that some land on shard 0.
    for round in 0..10 {
        let sub_id = id_on_shard(&format!("pipelined{round}"), 1, 2);
        let subscribe = subscribe_packet("p/+", QoS::AtLeastOnce, PacketId::new(7).unwrap());
        let mut sub = connect_with(addr, &sub_id, V311, 0, &[subscribe, Packet::PingReq]).await;
        assert!(matches!(sub.recv().await, Packet::SubAck(ack) if ack.packet_id.get() == 7));
        assert_eq!(sub.recv().await, Packet::PingResp);
        // A publisher owned by the other shard.
        let pub_id = id_on_shard(&format!("p{round}"), 0, 2);
        let mut publisher = connect(addr, &pub_id, V311).await;
        for i in 1..=20u16 {
            publish(&mut publisher, "p/q", b"m", QoS::AtLeastOnce, i).await;
        }
        for _ in 1..=20 {
            assert_eq!(&receive_publish(&mut sub).await.payload[..], b"m");
        }
    }
    broker.shutdown();
}

/// Packets written one by one right after CONNECT, while the connection may be on its way to
/// its owner shard, are answered in order.
pub async fn packets_written_separately_after_connect_keep_their_order_across_the_handoff(
    start: Start,
) {
    let broker = launch(start, config(2));
    let addr = broker.addr();
    for i in 0..20 {
        // These ids belong to shard 1; with round-robin accepts (the blocking runtime) every
        // one of them lands on shard 0, with SO_REUSEPORT about half do.
        let id = id_on_shard(&format!("sep{i}"), 1, 2);
        let mut client = open(addr, V311).await;
        client.write_all(&encode(&connect_packet(&id, V311, 0), V311)).await;
        let subscribe = subscribe_packet("s/#", QoS::AtMostOnce, PacketId::new(3).unwrap());
        client.write_all(&encode(&subscribe, V311)).await;
        client.write_all(&encode(&Packet::PingReq, V311)).await;
        assert!(matches!(client.recv().await, Packet::ConnAck(_)));
        assert!(matches!(client.recv().await, Packet::SubAck(ack) if ack.packet_id.get() == 3));
        assert_eq!(client.recv().await, Packet::PingResp);
        // Under round robin, keeps the next round's first accept on shard 0.
        let _other = connect(addr, &id_on_shard(&format!("sep{i}b"), 1, 2), V311).await;
    }
    broker.shutdown();
}

/// One message reaches six subscribers spread over three shards.
pub async fn many_clients_on_many_shards_all_receive(start: Start) {
    let broker = launch(start, config(3));
    let addr = broker.addr();
    let mut subs: Vec<Client> = Vec::new();
    for i in 0..6 {
        let mut client = connect(addr, &format!("fan-{i}"), V5).await;
        subscribe(&mut client, "fan/out", QoS::AtLeastOnce).await;
        subs.push(client);
    }
    let mut publisher = connect(addr, "fan-pub", V5).await;
    publish(&mut publisher, "fan/out", b"hello", QoS::AtLeastOnce, 1).await;
    for sub in &mut subs {
        assert_eq!(&receive_publish(sub).await.payload[..], b"hello");
    }
    broker.shutdown();
}

/// A 100 kB payload, read in many pieces from the publisher and written in many to the
/// subscriber, between shards.
pub async fn large_payload_crosses_many_reads_both_ways(start: Start) {
    let broker = launch(start, config(2));
    let addr = broker.addr();
    let mut sub = connect(addr, &id_on_shard("big-sub", 0, 2), V311).await;
    subscribe(&mut sub, "big", QoS::AtMostOnce).await;
    let mut publisher = connect(addr, &id_on_shard("big-pub", 1, 2), V311).await;
    let payload: &'static [u8] = Box::leak(vec![0xA5u8; 100_000].into_boxed_slice());
    publish(&mut publisher, "big", payload, QoS::AtLeastOnce, 1).await;
    let got = receive_publish(&mut sub).await;
    assert_eq!(got.payload.len(), payload.len());
    assert!(got.payload.iter().all(|&b| b == 0xA5));
    broker.shutdown();
}

/// A silent client is closed after 1.5 × Keep Alive (MQTT-3.1.2-24), told with DISCONNECT 0x8D
/// in 5.0.
pub async fn keep_alive_timeout_closes(start: Start) {
    let broker = launch(start, config(1));
    let mut quiet = connect_with(broker.addr(), "quiet", V5, 1, &[]).await;
    let started = Instant::now();
    let packets = quiet.packets_until_closed(Duration::from_secs(5)).await;
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(1400), "closed too early: {waited:?}");
    assert!(waited < Duration::from_secs(4), "closed too late: {waited:?}");
    assert!(
        matches!(packets.as_slice(), [Packet::Disconnect(d)] if d.reason_code == ReasonCode::KEEP_ALIVE_TIMEOUT),
        "{packets:?}"
    );
    broker.shutdown();
}

/// Garbage instead of CONNECT, and a malformed packet after it, close the connection (5.0 says
/// why with DISCONNECT 0x81); the broker serves others on.
pub async fn malformed_packet_closes(start: Start) {
    let broker = launch(start, config(1));
    let addr = broker.addr();
    // Garbage instead of CONNECT.
    let mut raw = open(addr, V311).await;
    raw.write_all(b"\x00\x02\xff\xff").await;
    assert!(raw.packets_until_closed(Duration::from_secs(5)).await.is_empty());
    // A connected 5.0 client sending a SUBSCRIBE with wrong header flags (MQTT-3.8.1-1).
    let mut client = connect(addr, "bad", V5).await;
    let mut bytes = encode(&subscribe_packet("a", QoS::AtMostOnce, PacketId::MIN), V5);
    bytes[0] = 0x80;
    client.write_all(&bytes).await;
    let packets = client.packets_until_closed(Duration::from_secs(5)).await;
    assert!(
        matches!(packets.as_slice(), [Packet::Disconnect(d)] if d.reason_code == ReasonCode::MALFORMED_PACKET),
        "{packets:?}"
    );
    // The broker still serves others.
    let mut fine = connect(addr, "fine", V311).await;
    fine.send(&Packet::PingReq);
    assert_eq!(fine.recv().await, Packet::PingResp);
    broker.shutdown();
}

/// Shutdown tells 5.0 clients why (DISCONNECT 0x8B, MQTT 5.0 §3.14.2.1), closes every
/// connection, connected or not yet, stops listening and returns within seconds.
pub async fn shutdown_closes_connections_and_joins(start: Start) {
    let broker = launch(start, config(2));
    let addr = broker.addr();
    let mut clients: Vec<Client> = Vec::new();
    for i in 0..4 {
        clients.push(connect(addr, &format!("stay-{i}"), V5).await);
    }
    let mut idle = open(addr, V311).await; // accepted, never sent CONNECT
    let started = Instant::now();
    broker.shutdown();
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    for client in &mut clients {
        let packets = client.packets_until_closed(Duration::from_secs(2)).await;
        let told = packets.iter().any(|p| {
            matches!(p, Packet::Disconnect(d) if d.reason_code == ReasonCode::SERVER_SHUTTING_DOWN)
        });
        assert!(told, "no DISCONNECT 0x8B before the close: {packets:?}");
    }
    idle.packets_until_closed(Duration::from_secs(2)).await;
    // Nobody listens any more.
    assert!(TcpStream::connect(addr).is_err());
}

/// 2,000 × 1 KiB written in one go, between shards: far beyond one read (and the blocking
/// runtime's read credit), below `max_unwritten_bytes`. Every one arrives, in order.
pub async fn a_flood_of_publishes_arrives_whole_and_in_order(start: Start) {
    let broker = launch(start, config(2));
    let addr = broker.addr();
    let mut sub = connect(addr, &id_on_shard("flood-sub", 0, 2), V311).await;
    subscribe(&mut sub, "flood", QoS::AtMostOnce).await;
    let mut publisher = connect(addr, &id_on_shard("flood-pub", 1, 2), V311).await;
    let mut bytes = Vec::new();
    for i in 0..2000u32 {
        let mut payload = vec![0u8; 1024];
        payload[..4].copy_from_slice(&i.to_be_bytes());
        let publish = Publish::new("flood".into(), payload.into());
        bytes.extend(encode(&Packet::Publish(publish), V311));
    }
    // Written and read at once: the broker may stop reading the publisher while the subscriber
    // does not read.
    let write = publisher.write_all(&bytes);
    let read = async {
        for i in 0..2000u32 {
            let got = receive_publish(&mut sub).await;
            assert_eq!(got.payload[..4], i.to_be_bytes());
        }
    };
    tokio::join!(write, read);
    broker.shutdown();
}
