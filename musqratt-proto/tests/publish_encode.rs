//! PUBLISH encoding against a reference written field by field from §3.3 (fixed header §2.1,
//! Remaining Length §1.5.5, topic §3.3.2.1, packet id §3.3.2.2, properties §3.3.2.3), for every
//! shape the encoder's short paths cover: Remaining Length of one, two and three or more bytes
//! (on both sides of each boundary), QoS 0, 1 and 2, DUP and RETAIN, 3.1.1 and 5.0, empty and
//! non-empty properties, `encode`, `encode_header` and `Packet::encode`, into an empty buffer
//! and after bytes already there. Decoding the result gives the packet back.

use musqratt_proto::bytes::{BufMut, Bytes, BytesMut};
use musqratt_proto::bytestring::ByteString;
use musqratt_proto::mqtt::{Decoder, Packet, Publish, PublishProperties};
use musqratt_proto::{EncodeError, PacketId, ProtocolVersion, QoS};

/// A Variable Byte Integer (§1.5.5), written the plain way.
fn varint(mut value: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (value % 128) as u8;
        value /= 128;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// The properties the tests set: Message Expiry Interval (0x02) and User Properties (0x26).
fn reference_properties(p: &PublishProperties) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(expiry) = p.message_expiry_interval {
        out.push(0x02);
        out.extend_from_slice(&expiry.to_be_bytes());
    }
    for (name, value) in &p.user_properties {
        out.push(0x26);
        for s in [name, value] {
            out.extend_from_slice(&(s.len() as u16).to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
    }
    out
}

fn reference(v: ProtocolVersion, p: &Publish) -> Vec<u8> {
    let mut variable = Vec::new();
    variable.extend_from_slice(&(p.topic.len() as u16).to_be_bytes());
    variable.extend_from_slice(p.topic.as_bytes());
    if let Some(id) = p.packet_id {
        variable.extend_from_slice(&id.get().to_be_bytes());
    }
    if v.is_v5() {
        let props = reference_properties(&p.properties);
        varint(props.len(), &mut variable);
        variable.extend_from_slice(&props);
    }
    let mut out = vec![0x30 | u8::from(p.dup) << 3 | p.qos.bits() << 1 | u8::from(p.retain)];
    varint(variable.len() + p.payload.len(), &mut out);
    out.extend_from_slice(&variable);
    out.extend_from_slice(&p.payload);
    out
}

fn publish(topic_len: usize, payload_len: usize, qos: QoS, props: bool) -> Publish {
    let topic = ByteString::from("t".repeat(topic_len));
    let payload = Bytes::from((0..payload_len).map(|i| i as u8).collect::<Vec<_>>());
    let mut p = Publish::new(topic, payload);
    p.qos = qos;
    p.packet_id = (qos != QoS::AtMostOnce).then_some(PacketId::new(0x1234).expect("non-zero"));
    p.dup = qos != QoS::AtMostOnce;
    p.retain = payload_len % 2 == 1;
    if props {
        p.properties.message_expiry_interval = Some(0x0102_0304);
        p.properties.user_properties.push(("k".into(), "value".into()));
    }
    p
}

fn check(v: ProtocolVersion, p: &Publish) {
    let expected = reference(v, p);
    let shape = format!(
        "{v} topic {} payload {} {:?} props {}",
        p.topic.len(),
        p.payload.len(),
        p.qos,
        !p.properties.is_empty()
    );
    assert_eq!(p.encoded_len(v), Ok(expected.len()), "{shape}");
    for prefix in [&b""[..], b"already here"] {
        let mut buf = BytesMut::from(prefix);
        p.encode(v, &mut buf).expect("encodes");
        assert_eq!(&buf[..prefix.len()], prefix, "{shape}: bytes before kept");
        assert_eq!(&buf[prefix.len()..], &expected[..], "{shape}: encode");

        let mut buf = BytesMut::from(prefix);
        let total = p.encode_header(v, &mut buf).expect("encodes");
        assert_eq!(total, expected.len(), "{shape}: encode_header's total");
        let header = expected.len() - p.payload.len();
        assert_eq!(&buf[prefix.len()..], &expected[..header], "{shape}: encode_header");

        let mut buf = BytesMut::from(prefix);
        Packet::Publish(p.clone()).encode(v, &mut buf).expect("encodes");
        assert_eq!(&buf[prefix.len()..], &expected[..], "{shape}: Packet::encode");
    }
    // Before 5.0 there are no properties: they are left out, and decode as none.
    let mut sent = p.clone();
    if !v.is_v5() {
        sent.properties = PublishProperties::default();
    }
    let mut stream = BytesMut::from(&expected[..]);
    let mut decoder = Decoder::with_version(v, u32::MAX);
    assert_eq!(decoder.decode(&mut stream), Ok(Some(Packet::Publish(sent))), "{shape}");
}

/// Payload sizes putting the Remaining Length of a packet whose other fields take `fixed`
/// bytes on each side of the one/two/three/four-byte boundaries (MQTT-1.5.5: 127, 16,383,
/// 2,097,151), plus small and typical sizes.
fn payload_lens(fixed: usize) -> Vec<usize> {
    let mut lens = vec![0, 1, 64, 1024];
    for boundary in [127, 16_383, 2_097_151] {
        for remaining in [boundary, boundary + 1] {
            if remaining >= fixed {
                lens.push(remaining - fixed);
            }
        }
    }
    lens
}

#[test]
fn publish_encodes_as_the_reference_for_every_shape() {
    for v in [ProtocolVersion::V3_1, ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            for props in [false, true] {
                // 5.0 allows an empty topic (a Topic Alias then stands for it, §3.3.2.3.4).
                let topics: &[usize] = if v.is_v5() { &[0, 1, 47, 300] } else { &[1, 47, 300] };
                for &topic_len in topics {
                    let probe = publish(topic_len, 0, qos, props);
                    let fixed = reference(v, &probe).len() - 1 - 1; // minus header byte, 1-byte length
                    for payload_len in payload_lens(fixed) {
                        let p = publish(topic_len, payload_len, qos, props);
                        check(v, &p);
                    }
                }
            }
        }
    }
}

#[test]
fn publish_with_the_longest_topic() {
    // §1.5.4: a string holds at most 65,535 bytes; one more is refused before anything is written.
    for v in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        check(v, &publish(65_535, 10, QoS::AtLeastOnce, false));
        let too_long = publish(65_536, 10, QoS::AtLeastOnce, false);
        let mut buf = BytesMut::new();
        buf.put_u8(7);
        assert_eq!(too_long.encode(v, &mut buf), Err(EncodeError::FieldTooLong));
        assert_eq!(too_long.encode_header(v, &mut buf), Err(EncodeError::FieldTooLong));
        assert_eq!(&buf[..], &[7], "nothing written on error");
    }
}

#[test]
fn publish_over_the_remaining_length_limit_is_refused_unwritten() {
    // §1.5.5: the Remaining Length is at most 268,435,455. The payload is a slice of one shared
    // zeroed allocation, so the test does not fill 256 MiB.
    let max = 268_435_455;
    let payload = Bytes::from(vec![0u8; max]);
    for v in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let mut p = publish(1, 0, QoS::AtMostOnce, false);
        // Topic 2 + 1 bytes, and the Property Length byte in 5.0.
        let fixed = 3 + usize::from(v.is_v5());
        p.payload = payload.slice(..max - fixed);
        assert_eq!(p.encoded_len(v), Ok(1 + 4 + max), "{v}: the largest packet");
        p.payload = payload.slice(..max - fixed + 1);
        let error = EncodeError::PacketTooLarge { size: max + 1, max };
        assert_eq!(p.encoded_len(v), Err(error));
        let mut buf = BytesMut::new();
        assert_eq!(p.encode(v, &mut buf), Err(error));
        assert_eq!(p.encode_header(v, &mut buf), Err(error));
        assert!(buf.is_empty(), "nothing written on error");
    }
}
