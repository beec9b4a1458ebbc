//! Round trip of every packet type of every protocol version: quickcheck generates valid packets,
//! which must decode (through [`Decoder`]) to themselves, with `encoded_len` equal to the bytes
//! written and `Publish::encode_header` + payload equal to `encode`.

mod common;

use common::{AnyPacket, Valid, version_of_level};
use musqratt_proto::bytes::{Bytes, BytesMut};
use musqratt_proto::mqtt::{
    ConnAck, Decoder, Packet, ReasonCode, SubAck, Subscribe, SubscriptionOptions, UnsubAck,
};
use musqratt_proto::{PacketId, ProtocolVersion, QoS};
use quickcheck::{QuickCheck, quickcheck};

/// Encodes `packet`, checks the encoded sizes, decodes it back and checks it is unchanged.
fn check(v: ProtocolVersion, packet: &Packet) {
    let mut buf = BytesMut::new();
    packet.encode(v, &mut buf).expect("a valid packet encodes");
    let len = buf.len();
    assert_eq!(packet.encoded_len(v), Ok(len), "encoded_len of {packet:?}");

    if let Packet::Publish(publish) = packet {
        // The vectored form: header, then the shared payload unchanged.
        let mut header = BytesMut::new();
        let total = publish.encode_header(v, &mut header).expect("header encodes");
        assert_eq!(total, len, "encode_header returns the whole packet's size");
        assert_eq!(publish.encoded_len(v), Ok(len));
        assert_eq!(header.len() + publish.payload.len(), len);
        header.extend_from_slice(&publish.payload);
        assert_eq!(header, buf, "encode_header + payload == encode");
    }

    // The decoder accepts a packet of exactly its maximum size.
    let max = u32::try_from(len).expect("test packets are small");
    let mut decoder = match packet {
        Packet::Connect(_) => Decoder::new(max),
        _ => Decoder::with_version(v, max),
    };
    let mut stream = buf.clone();
    let decoded = decoder.decode(&mut stream).expect("a valid packet decodes");
    assert_eq!(decoded.as_ref(), Some(packet));
    assert!(stream.is_empty(), "the decoder takes exactly the packet's bytes");
    assert_eq!(decoder.version(), Some(v), "the connection's version is known");
    assert_eq!(decoder.decode(&mut stream), Ok(None));

    // Packet::decode on the body as the fixed header delimits it.
    let header_len = len - body_len_of(&buf);
    let body = Bytes::copy_from_slice(&buf[header_len..]);
    assert_eq!(Packet::decode(v, buf[0], body).as_ref(), Ok(packet));

    // And the decoded packet encodes to the same bytes.
    assert_eq!(common::encode(v, decoded.as_ref().expect("decoded")), buf.to_vec());
}

/// The Remaining Length of an encoded packet.
fn body_len_of(packet: &[u8]) -> usize {
    let mut value = 0usize;
    for (i, byte) in packet[1..].iter().enumerate().take(4) {
        value |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return value;
        }
    }
    panic!("malformed remaining length in {}", common::hex(packet));
}

macro_rules! roundtrip {
    ($($name:ident: $kind:literal, $level:literal;)*) => {$(
        #[test]
        fn $name() {
            fn prop(p: Valid<$kind, $level>) -> bool {
                check(version_of_level($level), &p.0);
                true
            }
            quickcheck(prop as fn(Valid<$kind, $level>) -> bool);
        }
    )*};
}

roundtrip! {
    connect_v3_1: 1, 3;
    connect_v3_1_1: 1, 4;
    connect_v5: 1, 5;
    connack_v3_1: 2, 3;
    connack_v3_1_1: 2, 4;
    connack_v5: 2, 5;
    publish_v3_1: 3, 3;
    publish_v3_1_1: 3, 4;
    publish_v5: 3, 5;
    puback_v3_1: 4, 3;
    puback_v3_1_1: 4, 4;
    puback_v5: 4, 5;
    pubrec_v3_1: 5, 3;
    pubrec_v3_1_1: 5, 4;
    pubrec_v5: 5, 5;
    pubrel_v3_1: 6, 3;
    pubrel_v3_1_1: 6, 4;
    pubrel_v5: 6, 5;
    pubcomp_v3_1: 7, 3;
    pubcomp_v3_1_1: 7, 4;
    pubcomp_v5: 7, 5;
    subscribe_v3_1: 8, 3;
    subscribe_v3_1_1: 8, 4;
    subscribe_v5: 8, 5;
    suback_v3_1: 9, 3;
    suback_v3_1_1: 9, 4;
    suback_v5: 9, 5;
    unsubscribe_v3_1: 10, 3;
    unsubscribe_v3_1_1: 10, 4;
    unsubscribe_v5: 10, 5;
    unsuback_v3_1: 11, 3;
    unsuback_v3_1_1: 11, 4;
    unsuback_v5: 11, 5;
    pingreq_v3_1: 12, 3;
    pingreq_v3_1_1: 12, 4;
    pingreq_v5: 12, 5;
    pingresp_v3_1: 13, 3;
    pingresp_v3_1_1: 13, 4;
    pingresp_v5: 13, 5;
    disconnect_v3_1: 14, 3;
    disconnect_v3_1_1: 14, 4;
    disconnect_v5: 14, 5;
    auth_v5: 15, 5;
}

#[test]
fn any_packet_of_any_version() {
    fn prop(p: AnyPacket) -> bool {
        check(p.0, &p.1);
        true
    }
    QuickCheck::new().tests(1000).quickcheck(prop as fn(AnyPacket) -> bool);
}

/// Fields 3.1.1 does not carry are left out of its encoding: the packet decodes with them empty.
#[test]
fn v3_encoding_drops_v5_only_fields() {
    let v = ProtocolVersion::V3_1_1;
    let mut options = SubscriptionOptions::with_qos(QoS::AtLeastOnce);
    options.no_local = true;
    options.retain_as_published = true;
    let mut subscribe = Subscribe {
        packet_id: PacketId::new(7).expect("non-zero"),
        filters: vec![("a/+".into(), options)],
        properties: Default::default(),
    };
    subscribe.properties.subscription_identifier = Some(5);
    let bytes = common::encode(v, &Packet::Subscribe(subscribe));
    assert_eq!(bytes, [0x82, 0x08, 0x00, 0x07, 0x00, 0x03, b'a', b'/', b'+', 0x01]);

    // A failure code 3.1.1 lacks becomes 0x80 (§3.9.3 of 3.1.1).
    let suback = SubAck {
        packet_id: PacketId::new(7).expect("non-zero"),
        reason_codes: vec![ReasonCode::GRANTED_QOS_2, ReasonCode::TOPIC_FILTER_INVALID],
        properties: Default::default(),
    };
    assert_eq!(common::encode(v, &Packet::SubAck(suback)), [0x90, 0x04, 0x00, 0x07, 0x02, 0x80]);

    // 3.1.1's UNSUBACK has no reason codes.
    let unsuback = UnsubAck {
        packet_id: PacketId::new(7).expect("non-zero"),
        reason_codes: vec![ReasonCode::NO_SUBSCRIPTION_EXISTED],
        properties: Default::default(),
    };
    assert_eq!(common::encode(v, &Packet::UnsubAck(unsuback)), [0xB0, 0x02, 0x00, 0x07]);

    // A 5.0 CONNACK reason becomes the nearest 3.1.1 return code.
    for (reason, code) in [
        (ReasonCode::SUCCESS, 0),
        (ReasonCode::UNSUPPORTED_PROTOCOL_VERSION, 1),
        (ReasonCode::CLIENT_IDENTIFIER_NOT_VALID, 2),
        (ReasonCode::SERVER_BUSY, 3),
        (ReasonCode::BAD_AUTHENTICATION_METHOD, 4),
        (ReasonCode::BANNED, 5),
    ] {
        let connack =
            ConnAck { session_present: false, reason_code: reason, properties: Default::default() };
        assert_eq!(
            common::encode(v, &Packet::ConnAck(Box::new(connack))),
            [0x20, 0x02, 0x00, code]
        );
    }
}

/// Packets the encoder cannot write are refused with an error, `encoded_len` agrees, and nothing
/// is appended to the buffer.
#[test]
fn unencodable_packets_are_refused_without_writing() {
    use musqratt_proto::EncodeError;
    use musqratt_proto::mqtt::{Connect, Publish};

    #[track_caller]
    fn refused(v: ProtocolVersion, packet: &Packet, error: EncodeError) {
        let mut buf = BytesMut::from(&b"prefix"[..]);
        assert_eq!(packet.encode(v, &mut buf), Err(error));
        assert_eq!(&buf[..], b"prefix", "nothing written on error");
        assert_eq!(packet.encoded_len(v), Err(error));
    }

    // MQTT-3.1.2-22: 3.1.1 has no password without a user name.
    let connect = Connect {
        protocol: ProtocolVersion::V3_1_1,
        clean_start: true,
        keep_alive: 0,
        client_id: "c".into(),
        will: None,
        username: None,
        password: Some(Bytes::from_static(b"p")),
        properties: Default::default(),
    };
    refused(
        ProtocolVersion::V3_1_1,
        &Packet::Connect(Box::new(connect)),
        EncodeError::NotRepresentable,
    );

    // §1.5.4: a string longer than 65,535 bytes.
    let long = "x".repeat(65_536);
    let publish = Publish::new(long.clone().into(), Bytes::new());
    refused(ProtocolVersion::V5, &Packet::Publish(publish), EncodeError::FieldTooLong);
    let unsubscribe = musqratt_proto::mqtt::Unsubscribe {
        packet_id: PacketId::MIN,
        filters: vec![long.into()],
        properties: Default::default(),
    };
    refused(ProtocolVersion::V3_1_1, &Packet::Unsubscribe(unsubscribe), EncodeError::FieldTooLong);

    // §3.3.2.2: a packet identifier exactly when QoS > 0.
    let mut no_id = Publish::new("t".into(), Bytes::new());
    no_id.qos = QoS::AtLeastOnce;
    refused(ProtocolVersion::V3_1_1, &Packet::Publish(no_id), EncodeError::NotRepresentable);
    let mut id_at_qos0 = Publish::new("t".into(), Bytes::new());
    id_at_qos0.packet_id = Some(PacketId::MIN);
    refused(ProtocolVersion::V3_1_1, &Packet::Publish(id_at_qos0), EncodeError::NotRepresentable);

    // §3.8.2.1.2: a Subscription Identifier is 1 to 268,435,455.
    for id in [0, common::MAX_VARINT + 1] {
        let mut publish = Publish::new("t".into(), Bytes::new());
        publish.properties.subscription_identifiers.push(id);
        refused(ProtocolVersion::V5, &Packet::Publish(publish), EncodeError::NotRepresentable);
    }

    // AUTH before 5.0.
    refused(
        ProtocolVersion::V3_1_1,
        &Packet::Auth(Default::default()),
        EncodeError::NotRepresentable,
    );
}
