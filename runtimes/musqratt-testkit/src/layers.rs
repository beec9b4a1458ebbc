//! Byte-stream layers (docs/adr/0015-byte-stream-layers.md) on real sockets: the MQTT cases
//! through a listener with the identity layer, and MQTT through a listener whose layers XOR
//! every byte (two XOR layers around an identity layer) with clients that XOR their side of
//! the stream ([`XorClient`]). [`crate::layer_cases`] runs them.

use core::net::SocketAddr;
use core::time::Duration;
use std::io::{self, Read, Write};
use std::net::TcpStream;

use bytes::{Bytes, BytesMut};
use musqratt_kit::layer::Xor;
use musqratt_kit::{Identity, Layers, StreamLayer};
use musqratt_proto::bytestring::ByteString;
use musqratt_proto::mqtt::{
    Connect, Decoder, Packet, PubResponse, Publish, Subscribe, SubscribeProperties,
    SubscriptionOptions,
};
use musqratt_proto::{PacketId, ProtocolVersion, QoS};

use crate::{BrokerConfig, Start, config, id_on_shard, launch};

/// What [`xor_layers`] amount to: 0x5a then 0x0f.
pub const KEY: u8 = 0x5a ^ 0x0f;

/// XOR 0x5a, identity, XOR 0x0f, from the socket up: three layers, each one's output the next
/// one's input, and every byte changed on the wire.
#[must_use]
pub fn xor_layers() -> Layers {
    Layers::new("xor-identity-xor", |_| {
        let layers: Vec<Box<dyn StreamLayer>> =
            vec![Box::new(Xor(0x5a)), Box::new(Identity), Box::new(Xor(0x0f))];
        layers
    })
}

/// `config` with `layers` on every MQTT listener.
#[must_use]
pub fn with_layers(mut config: BrokerConfig, layers: &Layers) -> BrokerConfig {
    config.listener_layers = config.listeners.iter().map(|addr| (*addr, layers.clone())).collect();
    config
}

/// `config` with the identity layer on every MQTT listener.
#[must_use]
pub fn identity(config: BrokerConfig) -> BrokerConfig {
    with_layers(config, &Layers::identity())
}

/// An MQTT 5.0 client whose bytes are XORed with `key` both ways (0: plain).
pub struct XorClient {
    stream: TcpStream,
    key: u8,
    decoder: Decoder,
    buf: BytesMut,
}

impl XorClient {
    /// Opens a TCP connection without sending anything.
    ///
    /// # Panics
    /// The connection cannot be made.
    #[must_use]
    pub fn open(addr: SocketAddr, key: u8) -> Self {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        stream.set_nodelay(true).unwrap();
        let decoder = Decoder::with_version(ProtocolVersion::V5, u32::MAX);
        Self { stream, key, decoder, buf: BytesMut::new() }
    }

    /// Connects as `id` and expects a successful CONNACK.
    ///
    /// # Panics
    /// Anything else comes.
    #[must_use]
    pub fn connect(addr: SocketAddr, id: &str, key: u8) -> Self {
        let mut client = Self::open(addr, key);
        client.send(&Packet::Connect(Box::new(Connect::new(ProtocolVersion::V5, id))));
        match client.recv() {
            Ok(Packet::ConnAck(ack)) => assert!(!ack.reason_code.is_error(), "{ack:?}"),
            other => panic!("expected CONNACK, got {other:?}"),
        }
        client
    }

    /// Sends `packet`, XORed.
    ///
    /// # Panics
    /// The write fails.
    pub fn send(&mut self, packet: &Packet) {
        let mut bytes = BytesMut::new();
        packet.encode(ProtocolVersion::V5, &mut bytes).unwrap();
        Xor(self.key).apply(&mut bytes);
        self.stream.write_all(&bytes).unwrap();
    }

    /// The next packet, or why there is none (end of stream, timeout, undecodable bytes).
    ///
    /// # Errors
    /// As said.
    pub fn recv(&mut self) -> io::Result<Packet> {
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

    /// Subscribes to `filter` at QoS 2 and expects a granted SUBACK.
    ///
    /// # Panics
    /// Anything else comes.
    pub fn subscribe(&mut self, filter: &str) {
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
    ///
    /// # Panics
    /// The flow does not complete.
    pub fn publish(&mut self, topic: &str, payload: Bytes, qos: QoS, id: u16) {
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
    ///
    /// # Panics
    /// Anything else comes.
    pub fn receive(&mut self) -> Publish {
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

/// Clients through the XOR listener of a 2-shard broker connect, subscribe and publish at every
/// QoS, within a shard and across shards (a handoff moves the stack with the socket), with a
/// payload of many reads; a client that does not XOR is not understood and is closed.
pub async fn mqtt_through_layers_that_change_every_byte(start: Start) {
    let broker = launch(start, with_layers(config(2), &xor_layers()));
    let addr = broker.addr();
    for (sub_shard, pub_shard) in [(0, 0), (0, 1), (1, 0)] {
        let tag = format!("x{sub_shard}{pub_shard}");
        let sub_id = id_on_shard(&format!("{tag}s"), sub_shard, 2);
        let mut sub = XorClient::connect(addr, &sub_id, KEY);
        sub.subscribe(&format!("{tag}/#"));
        let pub_id = id_on_shard(&format!("{tag}p"), pub_shard, 2);
        let mut publisher = XorClient::connect(addr, &pub_id, KEY);
        let big: Vec<u8> = (0..200_000u32).map(|i| i.to_le_bytes()[0] ^ 0x33).collect();
        let payloads = [Bytes::from_static(b"zero"), Bytes::from_static(b"one"), Bytes::from(big)];
        let qos = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];
        for (qos, payload) in qos.into_iter().zip(payloads) {
            publisher.publish(&format!("{tag}/t"), payload.clone(), qos, 7);
            let got = sub.receive();
            assert_eq!((got.qos, got.payload), (qos, payload), "{tag}");
        }
        publisher.send(&Packet::PingReq);
        assert_eq!(publisher.recv().unwrap(), Packet::PingResp);
    }
    // A client that does not XOR sends garbage: closed (or answered with garbage), not waited
    // out, and never accepted.
    let mut plain = XorClient::open(addr, 0);
    plain.send(&Packet::Connect(Box::new(Connect::new(ProtocolVersion::V5, "plain"))));
    let mut got = Vec::new();
    let ended = loop {
        match plain.recv() {
            Ok(packet) => got.push(packet),
            Err(e) => break e,
        }
    };
    assert!(
        !matches!(ended.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut),
        "{ended}"
    );
    let accepted =
        got.iter().any(|p| matches!(p, Packet::ConnAck(ack) if !ack.reason_code.is_error()));
    assert!(!accepted, "{got:?}");
    broker.shutdown();
}
