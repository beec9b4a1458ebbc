//! MQTT-SN over UDP through the blocking runtime: raw datagrams (encoded with
//! `musqratt_proto::sn`) for CONNECT, REGISTER, PUBLISH and SUBSCRIBE, and an MQTT subscriber
//! over TCP seeing what an SN client publishes.

#[allow(dead_code)] // the helpers this file does not use
mod common;

use core::net::SocketAddr;
use core::time::Duration;
use std::net::UdpSocket;

use bytes::{Bytes, BytesMut};
use common::{Client, subscribe_packet};
use musqratt_blocking::start_with_sn;
use musqratt_engine::Config;
use musqratt_proto::mqtt::Packet;
use musqratt_proto::sn::{self, Message, MsgId, PublishTopic, ReturnCode, SnQoS, TopicId};
use musqratt_proto::{PacketId, ProtocolVersion, QoS};

fn sn_client(broker: SocketAddr) -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(broker).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    socket
}

fn send(socket: &UdpSocket, message: &Message) {
    let mut buf = BytesMut::new();
    sn::encode(message, &mut buf).unwrap();
    socket.send(&buf).unwrap();
}

fn recv(socket: &UdpSocket) -> Message {
    let mut buf = [0u8; 2048];
    let len = socket.recv(&mut buf).expect("a datagram from the broker");
    sn::decode(Bytes::copy_from_slice(&buf[..len])).unwrap()
}

fn connect(socket: &UdpSocket, client_id: &str) {
    let connect =
        sn::Connect { will: false, clean_session: true, duration: 60, client_id: client_id.into() };
    send(socket, &Message::Connect(connect));
    assert_eq!(recv(socket), Message::ConnAck(ReturnCode::Accepted));
}

#[test]
fn sn_clients_connect_register_publish_and_subscribe_over_udp() {
    for shards in [1, 3] {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let broker = start_with_sn(Config::default(), &[any], &[any], shards).unwrap();
        let (tcp, udp) = (broker.local_addrs()[0], broker.sn_local_addrs()[0]);

        // An SN subscriber by topic name: its topic id comes in SUBACK (§6.9).
        let sub = sn_client(udp);
        connect(&sub, "sn-sub");
        let subscribe = sn::Subscribe {
            dup: false,
            qos: QoS::AtLeastOnce,
            msg_id: MsgId(1),
            topic: sn::SubscribeTopic::Name("udp/temp".into()),
        };
        send(&sub, &Message::Subscribe(subscribe));
        let Message::SubAck(suback) = recv(&sub) else { panic!("SUBACK expected") };
        assert_eq!(suback.return_code, ReturnCode::Accepted);
        let sub_topic = suback.topic_id;

        // An MQTT subscriber over TCP on the same topic space.
        let mut mqtt = Client::connect(tcp, "mqtt-sub", ProtocolVersion::V3_1_1);
        mqtt.send(&subscribe_packet("udp/#", QoS::AtMostOnce, PacketId::MIN));
        assert!(matches!(mqtt.recv(), Packet::SubAck(_)));

        // An SN publisher: REGISTER, then PUBLISH QoS 1 with the id (§6.5, §6.7).
        let publisher = sn_client(udp);
        connect(&publisher, "sn-pub");
        let register =
            sn::Register { topic_id: TopicId(0), msg_id: MsgId(1), topic_name: "udp/temp".into() };
        send(&publisher, &Message::Register(register));
        let Message::RegAck(regack) = recv(&publisher) else { panic!("REGACK expected") };
        assert_eq!(regack.return_code, ReturnCode::Accepted);
        let publish = sn::Publish {
            dup: false,
            qos: SnQoS::AtLeastOnce,
            retain: false,
            topic: PublishTopic::Normal(regack.topic_id),
            msg_id: MsgId(2),
            data: Bytes::from_static(b"21.5"),
        };
        send(&publisher, &Message::Publish(publish));
        let Message::PubAck(puback) = recv(&publisher) else { panic!("PUBACK expected") };
        assert_eq!((puback.msg_id, puback.return_code), (MsgId(2), ReturnCode::Accepted));

        // The SN subscriber gets it with its own topic id, and acknowledges it.
        let Message::Publish(got) = recv(&sub) else { panic!("PUBLISH expected") };
        assert_eq!(got.topic, PublishTopic::Normal(sub_topic));
        assert_eq!(&got.data[..], b"21.5");
        let ack = sn::PubAck {
            topic_id: sub_topic,
            msg_id: got.msg_id,
            return_code: ReturnCode::Accepted,
        };
        send(&sub, &Message::PubAck(ack));

        // And so does the MQTT one.
        let Packet::Publish(publish) = mqtt.recv() else { panic!("PUBLISH expected") };
        assert_eq!(&publish.topic[..], "udp/temp");
        assert_eq!(&publish.payload[..], b"21.5");

        send(&sub, &Message::Disconnect(None));
        assert_eq!(recv(&sub), Message::Disconnect(None));
        broker.shutdown();
    }
}
