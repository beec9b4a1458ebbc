//! The end-to-end cases every thread-per-core runtime must pass, over real sockets on 127.0.0.1
//! with raw MQTT packets: one macro, so that the blocking and compio runtimes run the same cases
//! (the tokio runtime is covered through the `musqratt` binary's tests and the conformance
//! suite). Expanded in a test crate that has `mod common` (the client in `common/mod.rs`).

/// The shared cases as `#[test]` functions. `start` is a function `fn(shards: usize) -> (handle,
/// SocketAddr)` starting the runtime on 127.0.0.1 with `Config::default()`; `handle` is its
/// handle type, which has `local_addrs(&self)` and `shutdown(self)`.
macro_rules! runtime_cases {
    (start = $start:ident, handle = $handle:ty) => {
        /// The cases every runtime shares.
        mod shared {
            // The caller's `$start`, `$handle` and `common`.
            #[allow(unused_imports, reason = "only the macro's arguments are needed")]
            use super::*;
            use core::net::SocketAddr;
            use core::time::Duration;
            use std::io::Write;
            use std::net::TcpStream;
            use std::time::Instant;

            use crate::common::{self, Client, encode, id_on_shard, subscribe_packet};
            use musqratt_proto::mqtt::{Packet, ReasonCode};
            use musqratt_proto::{PacketId, ProtocolVersion, QoS};

            const V311: ProtocolVersion = ProtocolVersion::V3_1_1;
            const V5: ProtocolVersion = ProtocolVersion::V5;

            #[test]
            fn local_addrs_reports_the_real_port() {
                let (broker, addr) = $start(1);
                assert_eq!(broker.local_addrs().len(), 1);
                assert_ne!(addr.port(), 0);
                assert!(addr.ip().is_loopback());
                TcpStream::connect(addr).unwrap();
                broker.shutdown();
            }

            #[test]
            fn connect_connack_and_ping() {
                let (broker, addr) = $start(1);
                for version in [ProtocolVersion::V3_1, V311, V5] {
                    let mut client = Client::connect(addr, "pinger", version);
                    client.send(&Packet::PingReq);
                    assert_eq!(client.recv(), Packet::PingResp);
                }
                broker.shutdown();
            }

            /// SUBSCRIBE, then PUBLISH at each QoS from another client, with both QoS flows completed.
            fn pub_sub_all_qos(shards: usize, sub_id: &str, pub_id: &str, version: ProtocolVersion) {
                pub_sub_all_qos_on($start(shards), sub_id, pub_id, version);
            }

            /// [`pub_sub_all_qos`] on a broker the caller started.
            #[allow(dead_code, reason = "used by the runtimes with start options")]
            pub(crate) fn pub_sub_all_qos_on(
                (broker, addr): ($handle, SocketAddr),
                sub_id: &str,
                pub_id: &str,
                version: ProtocolVersion,
            ) {
                let mut sub = Client::connect(addr, sub_id, version);
                sub.subscribe("t/#", QoS::ExactlyOnce);
                let mut publisher = Client::connect(addr, pub_id, version);
                for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce].into_iter().enumerate() {
                    let payload: &'static [u8] = [&b"zero"[..], b"one", b"two"][i];
                    publisher.publish("t/x", payload, qos, 10 + u16::try_from(i).unwrap());
                    let got = sub.receive_publish();
                    assert_eq!(&*got.topic, "t/x");
                    assert_eq!(&got.payload[..], payload);
                    assert_eq!(got.qos, qos);
                }
                broker.shutdown();
            }

            #[test]
            fn publish_qos_0_1_2_between_two_clients() {
                pub_sub_all_qos(1, "sub", "pub", V311);
                pub_sub_all_qos(1, "sub5", "pub5", V5);
            }

            #[test]
            fn two_shards_handoff_and_cross_shard_delivery() {
                // Subscriber and publisher are owned by different shards, so the publisher's shard forwards
                // to the subscriber's; whichever is accepted on the other shard is handed over first.
                let sub_id = id_on_shard("sub", 1, 2);
                let pub_id = id_on_shard("pub", 0, 2);
                pub_sub_all_qos(2, &sub_id, &pub_id, V311);
                pub_sub_all_qos(2, &sub_id, &pub_id, V5);
            }

            #[test]
            fn packets_pipelined_behind_connect_survive_the_handoff() {
                let (broker, addr) = $start(2);
                // Owned by shard 1: when accepted on shard 0, SUBSCRIBE and PINGREQ ride in the same write
                // as CONNECT and must reach shard 1 in order. Ten rounds, so that some land on shard 0.
                for round in 0..10 {
                    let sub_id = id_on_shard(&format!("pipelined{round}"), 1, 2);
                    let subscribe = subscribe_packet("p/+", QoS::AtLeastOnce, PacketId::new(7).unwrap());
                    let mut sub = Client::connect_with(addr, &sub_id, V311, 0, &[subscribe, Packet::PingReq]);
                    assert!(matches!(sub.recv(), Packet::SubAck(ack) if ack.packet_id.get() == 7));
                    assert_eq!(sub.recv(), Packet::PingResp);
                    // A publisher owned by the other shard.
                    let mut publisher = Client::connect(addr, &id_on_shard(&format!("p{round}"), 0, 2), V311);
                    for i in 1..=20u16 {
                        publisher.publish("p/q", b"m", QoS::AtLeastOnce, i);
                    }
                    for _ in 1..=20 {
                        assert_eq!(&sub.receive_publish().payload[..], b"m");
                    }
                }
                broker.shutdown();
            }

            #[test]
            fn packets_written_separately_after_connect_keep_their_order_across_the_handoff() {
                let (broker, addr) = $start(2);
                for i in 0..20 {
                    // These ids belong to shard 1; with round-robin accepts (the blocking runtime) every
                    // one of them lands on shard 0, with SO_REUSEPORT about half do.
                    let id = id_on_shard(&format!("sep{i}"), 1, 2);
                    let mut client = Client::open(addr, V311);
                    client.stream.write_all(&encode(&common::connect_packet(&id, V311, 0), V311)).unwrap();
                    let subscribe = subscribe_packet("s/#", QoS::AtMostOnce, PacketId::new(3).unwrap());
                    client.stream.write_all(&encode(&subscribe, V311)).unwrap();
                    client.stream.write_all(&encode(&Packet::PingReq, V311)).unwrap();
                    assert!(matches!(client.recv(), Packet::ConnAck(_)));
                    assert!(matches!(client.recv(), Packet::SubAck(ack) if ack.packet_id.get() == 3));
                    assert_eq!(client.recv(), Packet::PingResp);
                    // Under round robin, keeps the next round's first accept on shard 0.
                    let _other = Client::connect(addr, &id_on_shard(&format!("sep{i}b"), 1, 2), V311);
                }
                broker.shutdown();
            }

            #[test]
            fn many_clients_on_many_shards_all_receive() {
                let (broker, addr) = $start(3);
                let mut subs: Vec<Client> = (0..6)
                    .map(|i| {
                        let mut c = Client::connect(addr, &format!("fan-{i}"), V5);
                        c.subscribe("fan/out", QoS::AtLeastOnce);
                        c
                    })
                    .collect();
                let mut publisher = Client::connect(addr, "fan-pub", V5);
                publisher.publish("fan/out", b"hello", QoS::AtLeastOnce, 1);
                for sub in &mut subs {
                    assert_eq!(&sub.receive_publish().payload[..], b"hello");
                }
                broker.shutdown();
            }

            #[test]
            fn large_payload_crosses_many_reads_both_ways() {
                let (broker, addr) = $start(2);
                let mut sub = Client::connect(addr, &id_on_shard("big-sub", 0, 2), V311);
                sub.subscribe("big", QoS::AtMostOnce);
                let mut publisher = Client::connect(addr, &id_on_shard("big-pub", 1, 2), V311);
                let payload: &'static [u8] = Box::leak(vec![0xA5u8; 100_000].into_boxed_slice());
                publisher.publish("big", payload, QoS::AtLeastOnce, 1);
                let got = sub.receive_publish();
                assert_eq!(got.payload.len(), payload.len());
                assert!(got.payload.iter().all(|&b| b == 0xA5));
                broker.shutdown();
            }

            #[test]
            fn keep_alive_timeout_closes() {
                let (broker, addr) = $start(1);
                let mut quiet = Client::connect_with(addr, "quiet", V5, 1, &[]);
                let started = Instant::now();
                let packets = quiet.expect_closed(Duration::from_secs(5));
                let waited = started.elapsed();
                // 1.5 × Keep Alive (MQTT-3.1.2-24), told with DISCONNECT 0x8D in 5.0.
                assert!(waited >= Duration::from_millis(1400), "closed too early: {waited:?}");
                assert!(waited < Duration::from_secs(4), "closed too late: {waited:?}");
                assert!(
                    matches!(packets.as_slice(), [Packet::Disconnect(d)] if d.reason_code == ReasonCode::KEEP_ALIVE_TIMEOUT),
                    "{packets:?}"
                );
                broker.shutdown();
            }

            #[test]
            fn malformed_packet_closes() {
                let (broker, addr) = $start(1);
                // Garbage instead of CONNECT.
                let mut raw = Client::open(addr, V311);
                raw.stream.write_all(b"\x00\x02\xff\xff").unwrap();
                assert!(raw.expect_closed(Duration::from_secs(5)).is_empty());
                // A connected 5.0 client sending a SUBSCRIBE with wrong header flags (MQTT-3.8.1-1).
                let mut client = Client::connect(addr, "bad", V5);
                let mut bytes = encode(&subscribe_packet("a", QoS::AtMostOnce, PacketId::MIN), V5);
                bytes[0] = 0x80;
                client.stream.write_all(&bytes).unwrap();
                let packets = client.expect_closed(Duration::from_secs(5));
                assert!(
                    matches!(packets.as_slice(), [Packet::Disconnect(d)] if d.reason_code == ReasonCode::MALFORMED_PACKET),
                    "{packets:?}"
                );
                // The broker still serves others.
                let mut fine = Client::connect(addr, "fine", V311);
                fine.send(&Packet::PingReq);
                assert_eq!(fine.recv(), Packet::PingResp);
                broker.shutdown();
            }

            #[test]
            fn shutdown_closes_connections_and_joins() {
                let (broker, addr) = $start(2);
                let mut clients: Vec<Client> =
                    (0..4).map(|i| Client::connect(addr, &format!("stay-{i}"), V5)).collect();
                let mut idle = Client::open(addr, V311); // accepted, never sent CONNECT
                let started = Instant::now();
                broker.shutdown();
                assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
                for client in &mut clients {
                    // MQTT 5.0 §3.14.2.1: the broker says why before closing.
                    let packets = client.expect_closed(Duration::from_secs(2));
                    let told = packets.iter().any(|p| {
                        matches!(p, Packet::Disconnect(d) if d.reason_code == ReasonCode::SERVER_SHUTTING_DOWN)
                    });
                    assert!(told, "no DISCONNECT 0x8B before the close: {packets:?}");
                }
                idle.expect_closed(Duration::from_secs(2));
                // Nobody listens any more.
                assert!(TcpStream::connect(addr).is_err());
            }

            #[test]
            fn a_flood_of_publishes_arrives_whole_and_in_order() {
                let (broker, addr) = $start(2);
                let mut sub = Client::connect(addr, &id_on_shard("flood-sub", 0, 2), V311);
                sub.subscribe("flood", QoS::AtMostOnce);
                let mut publisher = Client::connect(addr, &id_on_shard("flood-pub", 1, 2), V311);
                // 2,000 × 1 KiB in one go: far beyond one read (and the blocking runtime's read credit), below max_unwritten_bytes.
                let mut bytes = Vec::new();
                for i in 0..2000u32 {
                    let mut payload = vec![0u8; 1024];
                    payload[..4].copy_from_slice(&i.to_be_bytes());
                    let publish = musqratt_proto::mqtt::Publish::new("flood".into(), payload.into());
                    bytes.extend(encode(&Packet::Publish(publish), V311));
                }
                let writer = std::thread::spawn(move || {
                    publisher.stream.write_all(&bytes).unwrap();
                    publisher
                });
                for i in 0..2000u32 {
                    let got = sub.receive_publish();
                    assert_eq!(got.payload[..4], i.to_be_bytes());
                }
                drop(writer.join().unwrap());
                broker.shutdown();
            }
        }
    };
}
