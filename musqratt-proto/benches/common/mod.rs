//! The cases both codec benches measure (`codec.rs` with criterion, `codec_instr.rs` under
//! callgrind), so that wall time and instruction counts describe the same packets.
#![allow(dead_code, reason = "each bench uses a part")]

use core::hint::black_box;

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use musqratt_proto::mqtt::{Decoder, Packet, Publish};
use musqratt_proto::{PacketId, ProtocolVersion, QoS};
use rumqttc::mqttbytes::v4 as rv4;
use rumqttc::v5::mqttbytes::v5 as rv5;

pub(crate) const STREAM_BYTES: usize = 256 * 1024;
pub(crate) const TOPIC: &str = "sensors/building-7/floor-3/room-12/temperature";
pub(crate) const MAX: usize = 1 << 20;

/// One case: the same PUBLISH packets for both libraries and the stream they encode to.
pub(crate) struct Case {
    pub(crate) name: String,
    pub(crate) version: ProtocolVersion,
    pub(crate) ours: Vec<Publish>,
    pub(crate) theirs_v4: Vec<rv4::Publish>,
    pub(crate) theirs_v5: Vec<rv5::Publish>,
    pub(crate) wire: Bytes,
}

impl Case {
    /// Builds the case and checks that both libraries encode the same bytes and read them back.
    pub(crate) fn new(version: ProtocolVersion, payload_len: usize, qos: QoS) -> Self {
        let payload = Bytes::from((0..payload_len).map(|i| i as u8).collect::<Vec<u8>>());
        let mut ours = Vec::new();
        let mut wire = BytesMut::new();
        let mut id = PacketId::MIN;
        while wire.len() < STREAM_BYTES {
            let mut publish = Publish::new(ByteString::from_static(TOPIC), payload.clone());
            publish.qos = qos;
            if qos != QoS::AtMostOnce {
                publish.packet_id = Some(id);
                id = id.next();
            }
            publish.encode(version, &mut wire).unwrap();
            ours.push(publish);
        }
        let v = if version.is_v5() { "v5" } else { "v311" };
        let size = if payload_len >= 1024 { "1KiB" } else { "64B" };
        let name = format!("{v}/{size}/qos{}", qos.bits());
        let (theirs_v4, theirs_v5) = if version.is_v5() {
            (Vec::new(), rumqttc_v5(&ours))
        } else {
            (rumqttc_v4(&ours), Vec::new())
        };
        let this = Self { name, version, ours, theirs_v4, theirs_v5, wire: wire.freeze() };
        let count = this.ours.len();
        let mut dst = BytesMut::new();
        this.encode_theirs(&mut dst);
        assert_eq!(&dst[..], &this.wire[..], "{}: rumqttc encodes other bytes", this.name);
        assert_eq!(this.decode_theirs(this.fresh()), count);
        assert_eq!(decode_ours(version, this.fresh()), count);
        this
    }

    /// The 16 cases: 3.1.1 and 5.0, 64 B and 1 KiB payloads, QoS 0 and 1.
    pub(crate) fn all() -> Vec<Self> {
        let mut cases = Vec::new();
        for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
            for payload in [64, 1024] {
                for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
                    cases.push(Self::new(version, payload, qos));
                }
            }
        }
        cases
    }

    /// A fresh, uniquely owned copy of the stream, as a decoder receives it.
    pub(crate) fn fresh(&self) -> BytesMut {
        BytesMut::from(&self.wire[..])
    }

    pub(crate) fn encode_ours(&self, buf: &mut BytesMut) -> usize {
        buf.clear();
        for p in &self.ours {
            p.encode(self.version, buf).unwrap();
        }
        black_box(buf.len())
    }

    pub(crate) fn encode_theirs(&self, buf: &mut BytesMut) -> usize {
        buf.clear();
        for p in &self.theirs_v4 {
            p.write(buf).unwrap();
        }
        for p in &self.theirs_v5 {
            p.write(buf).unwrap();
        }
        black_box(buf.len())
    }

    pub(crate) fn decode_theirs(&self, buf: BytesMut) -> usize {
        if self.version.is_v5() { decode_v5(buf) } else { decode_v4(buf) }
    }
}

fn rumqttc_v4(ours: &[Publish]) -> Vec<rv4::Publish> {
    ours.iter()
        .map(|p| {
            let qos = rumqttc::mqttbytes::qos(p.qos.bits()).unwrap();
            let mut publish = rv4::Publish::from_bytes(&*p.topic, qos, p.payload.clone());
            publish.pkid = p.packet_id.map_or(0, PacketId::get);
            publish
        })
        .collect()
}

fn rumqttc_v5(ours: &[Publish]) -> Vec<rv5::Publish> {
    ours.iter()
        .map(|p| {
            let qos = rumqttc::v5::mqttbytes::qos(p.qos.bits()).unwrap();
            let mut publish = rv5::Publish::new(&*p.topic, qos, p.payload.clone(), None);
            publish.pkid = p.packet_id.map_or(0, PacketId::get);
            publish
        })
        .collect()
}

pub(crate) fn decode_ours(version: ProtocolVersion, mut buf: BytesMut) -> usize {
    let mut decoder = Decoder::with_version(version, MAX as u32);
    let mut n = 0;
    while let Some(packet) = decoder.decode(&mut buf).unwrap() {
        debug_assert!(matches!(packet, Packet::Publish(_)));
        black_box(packet);
        n += 1;
    }
    assert!(buf.is_empty());
    n
}

pub(crate) fn decode_v4(mut buf: BytesMut) -> usize {
    let mut n = 0;
    while !buf.is_empty() {
        black_box(rv4::Packet::read(&mut buf, MAX).unwrap());
        n += 1;
    }
    n
}

pub(crate) fn decode_v5(mut buf: BytesMut) -> usize {
    let mut n = 0;
    while !buf.is_empty() {
        black_box(rv5::Packet::read(&mut buf, Some(MAX as u32)).unwrap());
        n += 1;
    }
    n
}
