//! Byte-stream layers on real sockets, shared by every runtime's `tests/layers.rs`: a listener
//! whose stack XORs every byte (two XOR layers around an identity layer), and MQTT clients that
//! XOR their side of the stream. They connect, subscribe and publish at every QoS, within a
//! shard and across shards (handoffs move the stack with the socket), with payloads that take
//! many reads; a client that does not XOR is not understood.

use core::net::SocketAddr;
use core::time::Duration;
use std::io::{self, Read, Write};
use std::net::TcpStream;

use musqratt_kit::layer::Xor;
use musqratt_kit::{Identity, Layers, StreamLayer};
use musqratt_proto::bytes::{Bytes, BytesMut};
use musqratt_proto::bytestring::ByteString;
use musqratt_proto::mqtt::{
    Connect, Decoder, Packet, PubResponse, Publish, Subscribe, SubscribeProperties,
    SubscriptionOptions,
};
use musqratt_proto::{PacketId, ProtocolVersion, QoS};

/// What the stack amounts to: 0x5a then 0x0f.
pub(crate) const KEY: u8 = 0x5a ^ 0x0f;

/// XOR 0x5a, identity, XOR 0x0f, from the socket up.
pub(crate) fn xor_layers() -> Layers {
    Layers::new("xor-identity-xor", |_| {
        let layers: Vec<Box<dyn StreamLayer>> =
            vec![Box::new(Xor(0x5a)), Box::new(Identity), Box::new(Xor(0x0f))];
        layers
    })
}

/// An MQTT 5.0 client whose bytes are XORed with `key` both ways (0: plain).
pub(crate) struct XorClient {
    stream: TcpStream,
    key: u8,
    decoder: Decoder,
    buf: BytesMut,
}

impl XorClient {
    pub(crate) fn open(addr: SocketAddr, key: u8) -> Self {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        stream.set_nodelay(true).unwrap();
        let decoder = Decoder::with_version(ProtocolVersion::V5, u32::MAX);
        Self { stream, key, decoder, buf: BytesMut::new() }
    }

    pub(crate) fn connect(addr: SocketAddr, id: &str, key: u8) -> Self {
        let mut client = Self::open(addr, key);
        client.send(&Packet::Connect(Box::new(Connect::new(ProtocolVersion::V5, id))));
        match client.recv() {
            Ok(Packet::ConnAck(ack)) => assert!(!ack.reason_code.is_error(), "{ack:?}"),
            other => panic!("expected CONNACK, got {other:?}"),
        }
        client
    }

    pub(crate) fn send(&mut self, packet: &Packet) {
        let mut bytes = BytesMut::new();
        packet.encode(ProtocolVersion::V5, &mut bytes).unwrap();
        Xor(self.key).apply(&mut bytes);
        self.stream.write_all(&bytes).unwrap();
    }

    pub(crate) fn recv(&mut self) -> io::Result<Packet> {
        loop {
            if let Some(packet) = self.decoder.decode(&mut self.buf).map_err(io::Error::other)? {
                return Ok(packet);
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk)? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => {
                    Xor(self.key).apply(&mut chunk[..n]);
                    self.buf.extend_from_slice(&chunk[..n]);
                }
            }
        }
    }

    pub(crate) fn subscribe(&mut self, filter: &str) {
        let packet_id = PacketId::new(1).unwrap();
        self.send(&Packet::Subscribe(Subscribe {
            packet_id,
            filters: vec![(
                ByteString::from(filter),
                SubscriptionOptions::with_qos(QoS::ExactlyOnce),
            )],
            properties: SubscribeProperties::default(),
        }));
        match self.recv() {
            Ok(Packet::SubAck(ack)) => assert!(!ack.reason_codes[0].is_error(), "{ack:?}"),
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// Publishes at `qos` and completes the flow; `id` is the packet id for QoS 1 and 2.
    pub(crate) fn publish(&mut self, topic: &str, payload: Bytes, qos: QoS, id: u16) {
        let mut publish = Publish::new(ByteString::from(topic), payload);
        publish.qos = qos;
        let packet_id = PacketId::new(id).unwrap();
        if qos != QoS::AtMostOnce {
            publish.packet_id = Some(packet_id);
        }
        self.send(&Packet::Publish(publish));
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => assert!(matches!(self.recv(), Ok(Packet::PubAck(_)))),
            QoS::ExactlyOnce => {
                assert!(matches!(self.recv(), Ok(Packet::PubRec(_))));
                self.send(&Packet::PubRel(PubResponse::new(packet_id)));
                assert!(matches!(self.recv(), Ok(Packet::PubComp(_))));
            }
        }
    }

    /// The next PUBLISH, its QoS flow completed.
    pub(crate) fn receive(&mut self) -> Publish {
        let publish = match self.recv() {
            Ok(Packet::Publish(publish)) => publish,
            other => panic!("expected PUBLISH, got {other:?}"),
        };
        match (publish.qos, publish.packet_id) {
            (QoS::AtLeastOnce, Some(id)) => self.send(&Packet::PubAck(PubResponse::new(id))),
            (QoS::ExactlyOnce, Some(id)) => {
                self.send(&Packet::PubRec(PubResponse::new(id)));
                assert!(matches!(self.recv(), Ok(Packet::PubRel(_))));
                self.send(&Packet::PubComp(PubResponse::new(id)));
            }
            _ => {}
        }
        publish
    }
}

/// A client identifier starting with `prefix` that the engine places on `shard` of 2.
fn id_on(prefix: &str, shard: u16) -> String {
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .find(|id| musqratt_engine::owner_of(id, 2).0 == shard)
        .unwrap()
}

/// Publish and subscribe through the XOR listener at `addr` (a broker of 2 shards, whose
/// listener has [`xor_layers`]): every QoS, both placements, a payload of many reads.
pub(crate) fn xor_pub_sub(addr: SocketAddr) {
    for (sub_shard, pub_shard) in [(0, 0), (0, 1), (1, 0)] {
        let tag = format!("x{sub_shard}{pub_shard}");
        let mut sub = XorClient::connect(addr, &id_on(&format!("{tag}s"), sub_shard), KEY);
        sub.subscribe(&format!("{tag}/#"));
        let mut publisher = XorClient::connect(addr, &id_on(&format!("{tag}p"), pub_shard), KEY);
        let big: Vec<u8> = (0..200_000u32).map(|i| i.to_le_bytes()[0] ^ 0x33).collect();
        let payloads = [Bytes::from_static(b"zero"), Bytes::from_static(b"one"), Bytes::from(big)];
        for (qos, payload) in
            [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce].into_iter().zip(payloads)
        {
            publisher.publish(&format!("{tag}/t"), payload.clone(), qos, 7);
            let got = sub.receive();
            assert_eq!((got.qos, got.payload), (qos, payload), "{tag}");
        }
        publisher.send(&Packet::PingReq);
        assert_eq!(publisher.recv().unwrap(), Packet::PingResp);
    }
}

/// A client that does not XOR sends garbage to the XOR listener: the broker closes it.
pub(crate) fn plain_client_is_not_understood(addr: SocketAddr) {
    let mut plain = XorClient::open(addr, 0);
    plain.send(&Packet::Connect(Box::new(Connect::new(ProtocolVersion::V5, "plain"))));
    let mut left = Vec::new();
    let ended = loop {
        match plain.recv() {
            Ok(packet) => left.push(packet),
            Err(e) => break e,
        }
    };
    // Closed (or answered with garbage), not waited out, and never accepted.
    assert!(
        !matches!(ended.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut),
        "{ended}"
    );
    assert!(
        !left.iter().any(|p| matches!(p, Packet::ConnAck(ack) if !ack.reason_code.is_error())),
        "{left:?}"
    );
}
