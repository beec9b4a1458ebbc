//! The MQTT-SN cases, for every runtime that serves MQTT-SN over UDP: raw datagrams encoded
//! with `musqratt_proto::sn` (a client of our own, for what real clients cannot express), an
//! MQTT client over TCP on the other side. Section numbers are those of MQTT-SN 1.2. Each case
//! runs on 1 and 3 shards: with several, peers are spread over shards and a client's datagrams
//! must follow it to the shard owning its client id. [`crate::sn_cases`] runs them.

use core::net::SocketAddr;
use core::time::Duration;
use std::net::UdpSocket;

use bytes::{Bytes, BytesMut};
use musqratt_proto::mqtt::{Packet, Publish};
use musqratt_proto::sn::{self, Message, MsgId, PublishTopic, ReturnCode, SnQoS, TopicId};
use musqratt_proto::{PacketId, ProtocolVersion, QoS};

use crate::{Broker, BrokerConfig, Start, connect as mqtt_connect, launch, subscribe_packet};

/// Predefined topic 1 of [`config`].
pub const PREDEFINED: &str = "sn/predefined";

/// The configuration the cases expect: MQTT and MQTT-SN on 127.0.0.1 (ports picked), `shards`
/// threads, predefined topic 1.
#[must_use]
pub fn config(shards: usize) -> BrokerConfig {
    let mut config = crate::config(shards);
    config.sn_listeners = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
    config.engine.sn_predefined_topics.insert(1, PREDEFINED.into());
    config
}

/// Runs `scenario` against a broker of 1 and of 3 shards.
async fn on_1_and_3_shards(start: Start, scenario: impl AsyncFn(&Broker)) {
    for shards in [1, 3] {
        let broker = launch(start, config(shards));
        scenario(&broker).await;
        broker.shutdown();
    }
}

/// A UDP socket of an MQTT-SN client of the broker at `broker` (reads time out after 5 s).
#[must_use]
pub fn sn_client(broker: SocketAddr) -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(broker).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    socket
}

/// Sends one MQTT-SN message.
pub fn send(socket: &UdpSocket, message: &Message) {
    let mut buf = BytesMut::new();
    sn::encode(message, &mut buf).unwrap();
    socket.send(&buf).unwrap();
}

/// Receives one MQTT-SN message (panics after the socket's timeout).
#[must_use]
pub fn recv(socket: &UdpSocket) -> Message {
    let mut buf = [0u8; 2048];
    let len = socket.recv(&mut buf).expect("a datagram from the broker");
    sn::decode(Bytes::copy_from_slice(&buf[..len])).unwrap()
}

/// CONNECT with a clean session and a 60 s keep alive; asserts the CONNACK accepts it.
pub fn connect(socket: &UdpSocket, client_id: &str) {
    let connect =
        sn::Connect { will: false, clean_session: true, duration: 60, client_id: client_id.into() };
    send(socket, &Message::Connect(connect));
    assert_eq!(recv(socket), Message::ConnAck(ReturnCode::Accepted));
}

fn publish(topic: PublishTopic, qos: SnQoS, msg_id: u16, data: &'static [u8]) -> Message {
    let msg_id = MsgId(msg_id);
    Message::Publish(sn::Publish {
        dup: false,
        qos,
        retain: false,
        topic,
        msg_id,
        data: data.into(),
    })
}

/// Receives a PUBLISH and acknowledges it as its QoS requires (§6.7).
fn receive_publish(socket: &UdpSocket) -> sn::Publish {
    let Message::Publish(got) = recv(socket) else { panic!("PUBLISH expected") };
    let topic_id = match got.topic {
        PublishTopic::Normal(id) | PublishTopic::Predefined(id) => id,
        PublishTopic::Short(_) => TopicId(0),
    };
    let return_code = ReturnCode::Accepted;
    match got.qos {
        SnQoS::AtLeastOnce => {
            send(
                socket,
                &Message::PubAck(sn::PubAck { topic_id, msg_id: got.msg_id, return_code }),
            );
        }
        SnQoS::ExactlyOnce => {
            send(socket, &Message::PubRec(got.msg_id));
            assert_eq!(recv(socket), Message::PubRel(got.msg_id));
            send(socket, &Message::PubComp(got.msg_id));
        }
        _ => {}
    }
    got
}

/// Connects, registers, publishes at every QoS and subscribes, SN to SN, SN to MQTT and MQTT to
/// SN (through a wildcard), with QoS -1 and noise on the side.
pub async fn sn_clients_connect_register_publish_and_subscribe_over_udp(start: Start) {
    on_1_and_3_shards(start, async |broker: &Broker| {
        connect_register_publish_subscribe(broker.addr(), broker.sn_addr()).await;
    })
    .await;
}

/// The whole scenario against a broker serving MQTT on `tcp` and MQTT-SN on `udp` with
/// [`config`].
async fn connect_register_publish_subscribe(tcp: SocketAddr, udp: SocketAddr) {
    // Garbage and an oversize datagram first: dropped, and the broker serves on (§5.2).
    let noise = sn_client(udp);
    noise.send(&[0xff, 0x00, 0x13]).unwrap();
    noise.send(&[0x01; 1400]).unwrap();

    // An SN subscriber by topic name, QoS 2: its topic id comes in SUBACK (§6.9).
    let sub = sn_client(udp);
    connect(&sub, "sn-sub");
    let topic = sn::SubscribeTopic::Name("udp/temp".into());
    let subscribe = sn::Subscribe { dup: false, qos: QoS::ExactlyOnce, msg_id: MsgId(1), topic };
    send(&sub, &Message::Subscribe(subscribe));
    let Message::SubAck(suback) = recv(&sub) else { panic!("SUBACK expected") };
    assert_eq!(suback.return_code, ReturnCode::Accepted);
    let sub_topic = suback.topic_id;

    // An MQTT subscriber over TCP on the same topic space.
    let mut mqtt = mqtt_connect(tcp, "mqtt-sub", ProtocolVersion::V3_1_1).await;
    mqtt.send(&subscribe_packet("#", QoS::AtMostOnce, PacketId::MIN));
    assert!(matches!(mqtt.recv().await, Packet::SubAck(_)));

    // An SN publisher: REGISTER (§6.5), then PUBLISH at QoS 0, 1 and 2 with the id (§6.7).
    let publisher = sn_client(udp);
    connect(&publisher, "sn-pub");
    let register =
        sn::Register { topic_id: TopicId(0), msg_id: MsgId(1), topic_name: "udp/temp".into() };
    send(&publisher, &Message::Register(register));
    let Message::RegAck(regack) = recv(&publisher) else { panic!("REGACK expected") };
    assert_eq!(regack.return_code, ReturnCode::Accepted);
    let normal = PublishTopic::Normal(regack.topic_id);
    for (msg_id, qos, data) in [
        (2, SnQoS::AtMostOnce, &b"q0"[..]),
        (3, SnQoS::AtLeastOnce, b"q1"),
        (4, SnQoS::ExactlyOnce, b"q2"),
    ] {
        send(&publisher, &publish(normal, qos, msg_id, data));
        match qos {
            SnQoS::AtLeastOnce => {
                let Message::PubAck(ack) = recv(&publisher) else { panic!("PUBACK expected") };
                assert_eq!((ack.msg_id, ack.return_code), (MsgId(msg_id), ReturnCode::Accepted));
            }
            SnQoS::ExactlyOnce => {
                assert_eq!(recv(&publisher), Message::PubRec(MsgId(msg_id)));
                send(&publisher, &Message::PubRel(MsgId(msg_id)));
                assert_eq!(recv(&publisher), Message::PubComp(MsgId(msg_id)));
            }
            _ => {}
        }
        // The SN subscriber gets it with its own topic id, at the publish's QoS.
        let got = receive_publish(&sub);
        assert_eq!(
            (got.topic, got.qos, &got.data[..]),
            (PublishTopic::Normal(sub_topic), qos, data)
        );
        // And so does the MQTT one (SN -> MQTT).
        let Packet::Publish(publish) = mqtt.recv().await else { panic!("PUBLISH expected") };
        assert_eq!((&publish.topic[..], &publish.payload[..]), ("udp/temp", data));
    }

    // QoS -1 (§6.8): no connection, a predefined topic id.
    let anonymous = sn_client(udp);
    send(&anonymous, &publish(PublishTopic::Predefined(TopicId(1)), SnQoS::MinusOne, 0, b"-1"));
    let Packet::Publish(publish) = mqtt.recv().await else { panic!("PUBLISH expected") };
    assert_eq!((&publish.topic[..], &publish.payload[..]), (PREDEFINED, &b"-1"[..]));

    // MQTT -> SN through a wildcard: the broker registers the topic first (§6.10).
    let wild = sn_client(udp);
    connect(&wild, "sn-wild");
    let topic = sn::SubscribeTopic::Name("from-mqtt/+".into());
    let subscribe = sn::Subscribe { dup: false, qos: QoS::AtMostOnce, msg_id: MsgId(1), topic };
    send(&wild, &Message::Subscribe(subscribe));
    assert!(matches!(recv(&wild), Message::SubAck(ack) if ack.return_code == ReturnCode::Accepted));
    let mut mqtt_pub = mqtt_connect(tcp, "mqtt-pub", ProtocolVersion::V5).await;
    mqtt_pub.send(&Packet::Publish(Publish::new("from-mqtt/x".into(), Bytes::from_static(b"m"))));
    let Message::Register(register) = recv(&wild) else { panic!("REGISTER expected") };
    assert_eq!(&*register.topic_name, "from-mqtt/x");
    let return_code = ReturnCode::Accepted;
    let regack = sn::RegAck { topic_id: register.topic_id, msg_id: register.msg_id, return_code };
    send(&wild, &Message::RegAck(regack));
    let got = receive_publish(&wild);
    assert_eq!((got.topic, &got.data[..]), (PublishTopic::Normal(register.topic_id), &b"m"[..]));

    // DISCONNECT is answered with DISCONNECT (§6.6).
    send(&sub, &Message::Disconnect(None));
    assert_eq!(recv(&sub), Message::Disconnect(None));
}

/// §6.14: a client goes active again (or simply reconnects) with a new CONNECT from the same
/// address. Where the runtime routes a peer's datagrams to the shard owning its client id, the
/// route must survive the old connection's end: with several shards most of the 12 clients live
/// on a shard other than the one their address hashes to, and each must still be answered after
/// its second CONNECT (found with the mqtt-sn-12 client: its DISCONNECT after a wake-up CONNECT
/// went unanswered).
pub async fn a_second_connect_from_the_same_address_keeps_the_route(start: Start) {
    on_1_and_3_shards(start, async |broker: &Broker| second_connect(broker.sn_addr())).await;
}

/// [`a_second_connect_from_the_same_address_keeps_the_route`] on one broker.
fn second_connect(udp: SocketAddr) {
    for i in 0..12 {
        let client_id = format!("sn-again-{i}");
        let socket = sn_client(udp);
        connect(&socket, &client_id);
        send(&socket, &Message::Disconnect(Some(30))); // asleep
        assert_eq!(recv(&socket), Message::Disconnect(None), "{client_id}");
        let again = sn::Connect {
            will: false,
            clean_session: false,
            duration: 60,
            client_id: client_id.as_str().into(),
        };
        send(&socket, &Message::Connect(again));
        assert_eq!(recv(&socket), Message::ConnAck(ReturnCode::Accepted), "{client_id}");
        send(&socket, &Message::PingReq(None));
        assert_eq!(recv(&socket), Message::PingResp, "{client_id}");
        send(&socket, &Message::Disconnect(None));
        assert_eq!(recv(&socket), Message::Disconnect(None), "{client_id}");
    }
}
