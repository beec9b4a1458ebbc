//! A tiny MQTT client over a raw `std::net::TcpStream`, encoding and decoding with
//! musqratt-proto. Tests may use socket timeouts; the broker does not.

use core::net::SocketAddr;
use core::time::Duration;
use std::io::{self, Read, Write};
use std::net::TcpStream;

use musqratt_proto::bytes::{Bytes, BytesMut};
use musqratt_proto::bytestring::ByteString;
use musqratt_proto::mqtt::Decoder;
use musqratt_proto::mqtt::{
    Connect, Packet, PubResponse, Publish, Subscribe, SubscribeProperties, SubscriptionOptions,
};
use musqratt_proto::{PacketId, ProtocolVersion, QoS};

/// How long a test waits for a packet before failing.
pub(crate) const WAIT: Duration = Duration::from_secs(5);

/// A connected test client.
pub(crate) struct Client {
    pub(crate) stream: TcpStream,
    version: ProtocolVersion,
    decoder: Decoder,
    buf: BytesMut,
}

/// The owner shard of a client identifier (the engine's function).
pub(crate) fn owner_of(client_id: &str, shards: u64) -> u64 {
    let shards = u16::try_from(shards).expect("shard count fits u16");
    u64::from(musqratt_engine::owner_of(client_id, shards).0)
}

/// A client identifier starting with `prefix` that hashes to `shard` of `shards`.
pub(crate) fn id_on_shard(prefix: &str, shard: u64, shards: u64) -> String {
    (0..).map(|i| format!("{prefix}-{i}")).find(|id| owner_of(id, shards) == shard).unwrap()
}

pub(crate) fn connect_packet(client_id: &str, version: ProtocolVersion, keep_alive: u16) -> Packet {
    let mut connect = Connect::new(version, client_id);
    connect.keep_alive = keep_alive;
    Packet::Connect(Box::new(connect))
}

pub(crate) fn encode(packet: &Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut buf = BytesMut::new();
    packet.encode(version, &mut buf).unwrap();
    buf.to_vec()
}

impl Client {
    /// Opens a TCP connection without sending anything.
    pub(crate) fn open(addr: SocketAddr, version: ProtocolVersion) -> Self {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Self {
            stream,
            version,
            decoder: Decoder::with_version(version, u32::MAX),
            buf: BytesMut::new(),
        }
    }

    /// Connects, sends CONNECT and expects a successful CONNACK.
    pub(crate) fn connect(addr: SocketAddr, client_id: &str, version: ProtocolVersion) -> Self {
        Self::connect_with(addr, client_id, version, 0, &[])
    }

    /// Connects, sends CONNECT followed by `then` in the same write, expects CONNACK.
    pub(crate) fn connect_with(
        addr: SocketAddr,
        client_id: &str,
        version: ProtocolVersion,
        keep_alive: u16,
        then: &[Packet],
    ) -> Self {
        let mut client = Self::open(addr, version);
        let mut bytes = encode(&connect_packet(client_id, version, keep_alive), version);
        for packet in then {
            bytes.extend(encode(packet, version));
        }
        client.stream.write_all(&bytes).unwrap();
        match client.recv() {
            Packet::ConnAck(ack) => assert!(!ack.reason_code.is_error(), "refused: {ack:?}"),
            other => panic!("expected CONNACK, got {other:?}"),
        }
        client
    }

    pub(crate) fn send(&mut self, packet: &Packet) {
        self.stream.write_all(&encode(packet, self.version)).unwrap();
    }

    /// The next packet; panics on timeout or end of stream.
    pub(crate) fn recv(&mut self) -> Packet {
        self.try_recv().unwrap_or_else(|e| panic!("no packet: {e}"))
    }

    /// The next packet, or why there was none.
    pub(crate) fn try_recv(&mut self) -> io::Result<Packet> {
        loop {
            if let Some(packet) = self.decoder.decode(&mut self.buf).map_err(io::Error::other)? {
                return Ok(packet);
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk)? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Waits until the broker closes the connection, returning whatever packets came first.
    pub(crate) fn expect_closed(&mut self, within: Duration) -> Vec<Packet> {
        self.stream.set_read_timeout(Some(within)).unwrap();
        let mut packets = Vec::new();
        loop {
            match self.try_recv() {
                Ok(packet) => packets.push(packet),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::UnexpectedEof
                            | io::ErrorKind::ConnectionReset
                            | io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    return packets;
                }
                Err(e) => panic!("connection not closed: {e} (got {packets:?})"),
            }
        }
    }

    pub(crate) fn subscribe(&mut self, filter: &str, qos: QoS) {
        let packet_id = PacketId::new(1).unwrap();
        self.send(&subscribe_packet(filter, qos, packet_id));
        match self.recv() {
            Packet::SubAck(ack) => {
                assert_eq!(ack.packet_id, packet_id);
                assert_eq!(ack.reason_codes.len(), 1);
                assert!(!ack.reason_codes[0].is_error(), "{ack:?}");
            }
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// Publishes and completes the QoS flow from the publisher's side.
    pub(crate) fn publish(&mut self, topic: &str, payload: &'static [u8], qos: QoS, id: u16) {
        let mut publish = Publish::new(ByteString::from(topic), Bytes::from_static(payload));
        publish.qos = qos;
        let packet_id = PacketId::new(id).unwrap();
        if qos != QoS::AtMostOnce {
            publish.packet_id = Some(packet_id);
        }
        self.send(&Packet::Publish(publish));
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => match self.recv() {
                Packet::PubAck(ack) => assert_eq!(ack.packet_id, packet_id),
                other => panic!("expected PUBACK, got {other:?}"),
            },
            QoS::ExactlyOnce => {
                match self.recv() {
                    Packet::PubRec(rec) => assert_eq!(rec.packet_id, packet_id),
                    other => panic!("expected PUBREC, got {other:?}"),
                }
                self.send(&Packet::PubRel(PubResponse::new(packet_id)));
                match self.recv() {
                    Packet::PubComp(comp) => assert_eq!(comp.packet_id, packet_id),
                    other => panic!("expected PUBCOMP, got {other:?}"),
                }
            }
        }
    }

    /// Expects a PUBLISH and completes the QoS flow from the subscriber's side.
    pub(crate) fn receive_publish(&mut self) -> Publish {
        let publish = match self.recv() {
            Packet::Publish(publish) => publish,
            other => panic!("expected PUBLISH, got {other:?}"),
        };
        match (publish.qos, publish.packet_id) {
            (QoS::AtMostOnce, _) => {}
            (QoS::AtLeastOnce, Some(id)) => self.send(&Packet::PubAck(PubResponse::new(id))),
            (QoS::ExactlyOnce, Some(id)) => {
                self.send(&Packet::PubRec(PubResponse::new(id)));
                match self.recv() {
                    Packet::PubRel(rel) => assert_eq!(rel.packet_id, id),
                    other => panic!("expected PUBREL, got {other:?}"),
                }
                self.send(&Packet::PubComp(PubResponse::new(id)));
            }
            other => panic!("QoS without packet id: {other:?}"),
        }
        publish
    }
}

pub(crate) fn subscribe_packet(filter: &str, qos: QoS, packet_id: PacketId) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id,
        filters: vec![(ByteString::from(filter), SubscriptionOptions::with_qos(qos))],
        properties: SubscribeProperties::default(),
    })
}
