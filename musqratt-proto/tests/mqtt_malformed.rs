//! Malformed and forbidden packets: one test per [`DecodeError`] variant, named after the normative
//! statement it enforces, asserting the exact error and the reason code it maps to (§4.13).

mod common;

use musqratt_proto::bytes::BytesMut;
use musqratt_proto::mqtt::{Decoder, Packet, ReasonCode};
use musqratt_proto::topic::TopicError;
use musqratt_proto::{DecodeError, ProtocolVersion};

const V3_1: ProtocolVersion = ProtocolVersion::V3_1;
const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

const MALFORMED: ReasonCode = ReasonCode::MALFORMED_PACKET;
const PROTOCOL_ERROR: ReasonCode = ReasonCode::PROTOCOL_ERROR;

/// A packet: the header byte, the Remaining Length, the body.
fn pkt(header: u8, body: &[u8]) -> Vec<u8> {
    let mut bytes = vec![header];
    let mut len = body.len();
    loop {
        let byte = (len & 0x7F) as u8;
        len >>= 7;
        if len == 0 {
            bytes.push(byte);
            break;
        }
        bytes.push(byte | 0x80);
    }
    bytes.extend_from_slice(body);
    bytes
}

/// A CONNECT with this protocol name, level and flags, keep alive 0, then `rest` (properties,
/// client identifier and the payload fields the flags announce).
fn connect(name: &[u8], level: u8, flags: u8, rest: &[u8]) -> Vec<u8> {
    let mut body = vec![0, name.len() as u8];
    body.extend_from_slice(name);
    body.extend_from_slice(&[level, flags, 0, 0]);
    body.extend_from_slice(rest);
    pkt(0x10, &body)
}

/// A 5.0 PUBLISH QoS 0 on topic `t` with these property bytes (Property Length included).
fn publish_v5_with_properties(properties: &[u8]) -> Vec<u8> {
    let mut body = vec![0x00, 0x01, b't'];
    body.extend_from_slice(properties);
    body.push(b'x');
    pkt(0x30, &body)
}

/// A SUBSCRIBE with packet id 1, `properties` (5.0 only) and one filter with its options.
fn subscribe(v: ProtocolVersion, filter: &[u8], options: u8) -> Vec<u8> {
    let mut body = vec![0x00, 0x01];
    if v.is_v5() {
        body.push(0x00);
    }
    body.extend_from_slice(&[0x00, filter.len() as u8]);
    body.extend_from_slice(filter);
    body.push(options);
    pkt(0x82, &body)
}

/// An UNSUBSCRIBE with packet id 1 and one filter.
fn unsubscribe(v: ProtocolVersion, filter: &[u8]) -> Vec<u8> {
    let mut body = vec![0x00, 0x01];
    if v.is_v5() {
        body.push(0x00);
    }
    body.extend_from_slice(&[0x00, filter.len() as u8]);
    body.extend_from_slice(filter);
    pkt(0xA2, &body)
}

/// Decodes `bytes` (CONNECT with a server's decoder, anything else with a client's decoder of
/// version `v`) and checks the error and its reason code.
#[track_caller]
fn rejects(v: ProtocolVersion, bytes: &[u8], error: DecodeError, reason: ReasonCode) {
    let mut buf = BytesMut::from(bytes);
    let mut decoder =
        if bytes[0] >> 4 == 1 { Decoder::new(1 << 20) } else { Decoder::with_version(v, 1 << 20) };
    assert_eq!(decoder.decode(&mut buf), Err(error), "decoding {}", common::hex(bytes));
    assert_eq!(error.reason_code(), reason, "reason code of {error:?}");
}

/// `bytes` decodes as a whole packet.
#[track_caller]
fn accepts(v: ProtocolVersion, bytes: &[u8]) -> Packet {
    match common::decode(v, bytes) {
        Ok(Some(packet)) => packet,
        other => panic!("{} should decode, got {other:?}", common::hex(bytes)),
    }
}

// MQTT-3.1.2-24 and §3.2.2.3.6: the Maximum Packet Size is enforced from the fixed header.
#[test]
fn packet_too_large_mqtt_3_1_2_24_from_the_fixed_header() {
    let reason = ReasonCode::PACKET_TOO_LARGE;
    // Two bytes: Remaining Length 127, 129 bytes in all; no body supplied.
    let mut decoder = Decoder::with_version(V5, 100);
    let err = DecodeError::PacketTooLarge { size: 129, max: 100 };
    assert_eq!(decoder.decode(&mut BytesMut::from(&[0x30, 0x7F][..])), Err(err));
    assert_eq!(err.reason_code(), reason);

    // Three bytes: the decoder waits for the end of the Remaining Length, then refuses.
    let mut buf = BytesMut::from(&[0x30, 0xE5][..]);
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    buf.extend_from_slice(&[0x01]);
    assert_eq!(decoder.decode(&mut buf), Err(DecodeError::PacketTooLarge { size: 232, max: 100 }));

    // Four and five bytes.
    let err = DecodeError::PacketTooLarge { size: 2_097_152 + 5, max: 100 };
    assert_eq!(decoder.decode(&mut BytesMut::from(&[0x30, 0x80, 0x80, 0x80, 0x01][..])), Err(err));
    let err = DecodeError::PacketTooLarge { size: 16_384 + 4, max: 100 };
    assert_eq!(decoder.decode(&mut BytesMut::from(&[0x30, 0x80, 0x80, 0x01][..])), Err(err));
    let err = DecodeError::PacketTooLarge { size: 268_435_455 + 5, max: 100 };
    assert_eq!(decoder.decode(&mut BytesMut::from(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F][..])), Err(err));

    // A server's decoder refuses an oversize CONNECT the same way.
    let err = DecodeError::PacketTooLarge { size: 1003, max: 1000 };
    assert_eq!(Decoder::new(1000).decode(&mut BytesMut::from(&[0x10, 0xE8, 0x07][..])), Err(err));

    // Exactly the maximum is accepted: the decoder waits for the body.
    let mut decoder = Decoder::with_version(V5, 129);
    assert_eq!(decoder.decode(&mut BytesMut::from(&[0x30, 0x7F][..])), Ok(None));
}

// MQTT-1.5.5-1: at most four bytes, and no more bytes than needed.
#[test]
fn malformed_varint_mqtt_1_5_5_1() {
    // In the Remaining Length: five bytes, with or without the rest of the packet.
    rejects(V5, &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01], DecodeError::MalformedVarInt, MALFORMED);
    rejects(V5, &[0x30, 0x80, 0x80, 0x80, 0x80], DecodeError::MalformedVarInt, MALFORMED);
    // Non-minimal: 0 in two bytes, 1 in three bytes.
    rejects(V4, &[0xC0, 0x80, 0x00], DecodeError::MalformedVarInt, MALFORMED);
    rejects(V4, &[0x40, 0x82, 0x80, 0x00, 0x00, 0x01], DecodeError::MalformedVarInt, MALFORMED);
    // In a Property Length: non-minimal, and five bytes.
    rejects(
        V5,
        &pkt(0x40, &[0x00, 0x01, 0x00, 0x80, 0x00]),
        DecodeError::MalformedVarInt,
        MALFORMED,
    );
    rejects(
        V5,
        &pkt(0x40, &[0x00, 0x01, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
        DecodeError::MalformedVarInt,
        MALFORMED,
    );
    // In a Subscription Identifier: non-minimal.
    rejects(
        V5,
        &publish_v5_with_properties(&[0x03, 0x0B, 0x81, 0x00]),
        DecodeError::MalformedVarInt,
        MALFORMED,
    );
}

// §2.1.2: type 0 is reserved, and 15 (AUTH) before 5.0.
#[test]
fn reserved_packet_type_2_1_2() {
    rejects(V5, &[0x00, 0x00], DecodeError::ReservedPacketType(0), MALFORMED);
    rejects(V4, &[0xF0, 0x00], DecodeError::ReservedPacketType(15), MALFORMED);
    rejects(V3_1, &[0xF0, 0x00], DecodeError::ReservedPacketType(15), MALFORMED);
    // AUTH is a packet of 5.0.
    assert_eq!(accepts(V5, &[0xF0, 0x00]), Packet::Auth(Default::default()));
}

// MQTT-3.1.0-1: the first packet a server receives is CONNECT.
#[test]
fn first_packet_not_connect_mqtt_3_1_0_1() {
    let err = DecodeError::FirstPacketNotConnect;
    assert_eq!(err.reason_code(), PROTOCOL_ERROR);
    for bytes in [&[0xC0, 0x00][..], &[0x30, 0x04, 0x00, 0x01, b't', b'x'], &[0xE0, 0x00]] {
        assert_eq!(Decoder::new(1024).decode(&mut BytesMut::from(bytes)), Err(err));
    }
    // Refused from the first byte: an HTTP request is not kept waiting for its "body".
    assert_eq!(Decoder::new(1024).decode(&mut BytesMut::from(&b"G"[..])), Err(err));
    // A client's decoder, given its version, accepts any packet first.
    let mut buf = BytesMut::from(&[0xD0, 0x00][..]);
    assert_eq!(Decoder::with_version(V4, 1024).decode(&mut buf), Ok(Some(Packet::PingResp)));
}

// MQTT-3.8.3-4 (5.0): No Local on a shared subscription is a Protocol Error.
#[test]
fn no_local_on_shared_subscription_mqtt_3_8_3_4() {
    rejects(
        V5,
        &subscribe(V5, b"$share/g/a", 0x04),
        DecodeError::NoLocalOnSharedSubscription,
        PROTOCOL_ERROR,
    );
    rejects(
        V5,
        &subscribe(V5, b"$share/g/#", 0x05),
        DecodeError::NoLocalOnSharedSubscription,
        PROTOCOL_ERROR,
    );
    // No Local on a plain subscription, and a shared one without it, are fine.
    accepts(V5, &subscribe(V5, b"a", 0x04));
    accepts(V5, &subscribe(V5, b"$share/g/a", 0x01));
}

// MQTT-2.1.3-1: the fixed header flags each packet type requires.
#[test]
fn invalid_header_flags_mqtt_2_1_3_1() {
    let err = |kind| DecodeError::InvalidHeaderFlags(kind);
    rejects(
        V5,
        &subscribe(V5, b"a", 0)[..]
            .iter()
            .enumerate()
            .map(|(i, &b)| if i == 0 { 0x80 } else { b })
            .collect::<Vec<_>>(),
        err(8),
        MALFORMED,
    );
    rejects(V4, &[0x60, 0x02, 0x00, 0x01], err(6), MALFORMED);
    rejects(V4, &[0xA0, 0x05, 0x00, 0x01, 0x00, 0x01, b'a'], err(10), MALFORMED);
    rejects(V4, &[0x42, 0x02, 0x00, 0x01], err(4), MALFORMED);
    rejects(V4, &[0xC1, 0x00], err(12), MALFORMED);
    rejects(V4, &[0xE8, 0x00], err(14), MALFORMED);
    rejects(V5, &[0xF1, 0x00], err(15), MALFORMED);
    let mut connect = connect(b"MQTT", 4, 0x02, &[0x00, 0x01, b'a']);
    connect[0] = 0x12;
    rejects(V4, &connect, err(1), MALFORMED);
}

// §1.5 and §2.1.4: a field runs past the Remaining Length.
#[test]
fn truncated_2_1_4() {
    rejects(V4, &[0x40, 0x01, 0x00], DecodeError::Truncated, MALFORMED);
    rejects(V4, &[0x30, 0x03, 0x00, 0x05, b'a'], DecodeError::Truncated, MALFORMED);
    rejects(V4, &[0x20, 0x01, 0x00], DecodeError::Truncated, MALFORMED);
    // A Property Length beyond the packet.
    rejects(V5, &[0x40, 0x04, 0x00, 0x01, 0x00, 0x05], DecodeError::Truncated, MALFORMED);
    // A property value beyond the Property Length.
    rejects(
        V5,
        &[0x40, 0x06, 0x00, 0x01, 0x00, 0x02, 0x1F, 0x00],
        DecodeError::Truncated,
        MALFORMED,
    );
    // QoS 1 without room for the packet identifier.
    rejects(V4, &[0x32, 0x04, 0x00, 0x01, b't', 0x00], DecodeError::Truncated, MALFORMED);
    // A CONNECT that ends after its flags.
    rejects(
        V4,
        &pkt(0x10, &[0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02]),
        DecodeError::Truncated,
        MALFORMED,
    );
    // A CONNECT whose flags announce a user name that is not there.
    rejects(V4, &connect(b"MQTT", 4, 0x82, &[0x00, 0x01, b'a']), DecodeError::Truncated, MALFORMED);
}

// §2.1.4: bytes after the last field of a packet.
#[test]
fn trailing_bytes_2_1_4() {
    rejects(V4, &[0xC0, 0x01, 0x00], DecodeError::TrailingBytes, MALFORMED);
    rejects(V4, &[0xD0, 0x01, 0x00], DecodeError::TrailingBytes, MALFORMED);
    rejects(V4, &[0x40, 0x03, 0x00, 0x01, 0x00], DecodeError::TrailingBytes, MALFORMED);
    rejects(V4, &[0xE0, 0x01, 0x00], DecodeError::TrailingBytes, MALFORMED);
    rejects(V4, &[0xB0, 0x03, 0x00, 0x01, 0x00], DecodeError::TrailingBytes, MALFORMED);
    rejects(V4, &[0x20, 0x03, 0x00, 0x00, 0x00], DecodeError::TrailingBytes, MALFORMED);
    rejects(V5, &[0x20, 0x04, 0x00, 0x00, 0x00, 0x00], DecodeError::TrailingBytes, MALFORMED);
    rejects(V5, &[0x40, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00], DecodeError::TrailingBytes, MALFORMED);
    rejects(V5, &[0xE0, 0x03, 0x00, 0x00, 0x00], DecodeError::TrailingBytes, MALFORMED);
    rejects(V5, &[0xF0, 0x03, 0x00, 0x00, 0x00], DecodeError::TrailingBytes, MALFORMED);
    rejects(
        V4,
        &connect(b"MQTT", 4, 0x00, &[0x00, 0x01, b'a', 0x00]),
        DecodeError::TrailingBytes,
        MALFORMED,
    );
}

// MQTT-1.5.4-1: ill-formed UTF-8, encoded surrogates included.
#[test]
fn invalid_utf8_mqtt_1_5_4_1() {
    let err = DecodeError::InvalidUtf8;
    // U+D800 encoded in three bytes.
    rejects(V4, &[0x30, 0x05, 0x00, 0x03, 0xED, 0xA0, 0x80], err, MALFORMED);
    rejects(V4, &[0x30, 0x03, 0x00, 0x01, 0xFF], err, MALFORMED);
    // An overlong encoding of '/'.
    rejects(V4, &[0x30, 0x04, 0x00, 0x02, 0xC0, 0xAF], err, MALFORMED);
    // A truncated sequence.
    rejects(V4, &[0x30, 0x04, 0x00, 0x02, b'a', 0xE2], err, MALFORMED);
    // In a topic filter, a client identifier and a user property.
    rejects(V4, &subscribe(V4, &[0xED, 0xB0, 0x80], 0), err, MALFORMED);
    rejects(V4, &connect(b"MQTT", 4, 0x00, &[0x00, 0x01, 0xFE]), err, MALFORMED);
    rejects(
        V5,
        &publish_v5_with_properties(&[0x07, 0x26, 0x00, 0x01, 0x80, 0x00, 0x01, b'v']),
        err,
        MALFORMED,
    );
}

// MQTT-1.5.4-2: U+0000 in a UTF-8 Encoded String.
#[test]
fn null_character_mqtt_1_5_4_2() {
    let err = DecodeError::NullCharacter;
    rejects(V4, &[0x30, 0x05, 0x00, 0x03, b'a', 0x00, b'b'], err, MALFORMED);
    rejects(V4, &subscribe(V4, b"a\0", 0), err, MALFORMED);
    rejects(V4, &unsubscribe(V4, b"\0"), err, MALFORMED);
    rejects(V4, &connect(b"MQTT", 4, 0x00, &[0x00, 0x01, 0x00]), err, MALFORMED);
    rejects(V4, &connect(b"MQTT", 4, 0x80, &[0x00, 0x00, 0x00, 0x02, b'u', 0x00]), err, MALFORMED);
    rejects(V5, &[0xE0, 0x07, 0x00, 0x05, 0x1F, 0x00, 0x02, b'a', 0x00], err, MALFORMED);
}

// MQTT-3.1.2-1: the protocol name is `MQTT` (or `MQIsdp` for 3.1).
#[test]
fn invalid_protocol_name_mqtt_3_1_2_1() {
    let err = DecodeError::InvalidProtocolName;
    let reason = ReasonCode::UNSUPPORTED_PROTOCOL_VERSION;
    rejects(V4, &connect(b"MQTX", 4, 0x02, &[0x00, 0x00]), err, reason);
    rejects(V4, &connect(b"mqtt", 4, 0x02, &[0x00, 0x00]), err, reason);
    rejects(V5, &connect(b"", 5, 0x02, &[0x00, 0x00, 0x00]), err, reason);
}

// MQTT-3.1.2-2: a protocol level the server does not support, or one that does not go with the
// name.
#[test]
fn unsupported_protocol_level_mqtt_3_1_2_2() {
    let reason = ReasonCode::UNSUPPORTED_PROTOCOL_VERSION;
    let err = DecodeError::UnsupportedProtocolLevel;
    rejects(V5, &connect(b"MQTT", 6, 0x02, &[0x00, 0x00]), err(6), reason);
    rejects(V5, &connect(b"MQTT", 3, 0x02, &[0x00, 0x00]), err(3), reason);
    rejects(V5, &connect(b"MQIsdp", 4, 0x02, &[0x00, 0x00]), err(4), reason);
    rejects(V5, &connect(b"MQIsdp", 5, 0x02, &[0x00, 0x00]), err(5), reason);
    rejects(V5, &connect(b"MQTT", 0, 0x02, &[0x00, 0x00]), err(0), reason);
}

// MQTT-3.1.2-3: the reserved CONNECT flag is 0.
#[test]
fn connect_reserved_flag_mqtt_3_1_2_3() {
    rejects(
        V4,
        &connect(b"MQTT", 4, 0x03, &[0x00, 0x00]),
        DecodeError::ConnectReservedFlag,
        MALFORMED,
    );
    rejects(
        V5,
        &connect(b"MQTT", 5, 0x01, &[0x00, 0x00, 0x00]),
        DecodeError::ConnectReservedFlag,
        MALFORMED,
    );
}

// MQTT-3.1.2-11, -13, -14, -15: Will QoS and Will Retain need the Will Flag; Will QoS is not 3.
#[test]
fn invalid_will_flags_mqtt_3_1_2_11_13_14_15() {
    let err = DecodeError::InvalidWillFlags;
    // Will QoS 1 and 2 without the Will Flag (MQTT-3.1.2-11, -13).
    rejects(V4, &connect(b"MQTT", 4, 0x08, &[0x00, 0x00]), err, MALFORMED);
    rejects(V5, &connect(b"MQTT", 5, 0x10, &[0x00, 0x00, 0x00]), err, MALFORMED);
    // Will Retain without the Will Flag (MQTT-3.1.2-15).
    rejects(V4, &connect(b"MQTT", 4, 0x20, &[0x00, 0x00]), err, MALFORMED);
    // Will QoS 3 with the Will Flag (MQTT-3.1.2-14).
    let will = [0x00, 0x00, 0x00, 0x01, b'w', 0x00, 0x00];
    rejects(V4, &connect(b"MQTT", 4, 0x1C, &will), err, MALFORMED);
    // With the Will Flag, QoS 2 and Retain are fine.
    accepts(V4, &connect(b"MQTT", 4, 0x34, &will));
}

// MQTT-3.1.2-22 (3.1.1): no password without a user name; 5.0 allows it (§3.1.2.9).
#[test]
fn password_without_username_mqtt_3_1_2_22() {
    let err = DecodeError::PasswordWithoutUsername;
    rejects(V4, &connect(b"MQTT", 4, 0x40, &[0x00, 0x00, 0x00, 0x01, b'p']), err, MALFORMED);
    rejects(
        V3_1,
        &connect(b"MQIsdp", 3, 0x40, &[0x00, 0x01, b'c', 0x00, 0x01, b'p']),
        err,
        MALFORMED,
    );
    let Packet::Connect(connect) =
        accepts(V5, &connect(b"MQTT", 5, 0x40, &[0x00, 0x00, 0x00, 0x00, 0x01, b'p']))
    else {
        panic!("not a CONNECT");
    };
    assert_eq!(connect.username, None);
    assert_eq!(connect.password.as_deref(), Some(&b"p"[..]));
}

// MQTT-3.3.1-4 (PUBLISH QoS) and MQTT-3.8.3-4 of 3.1.1 / §3.8.3.1 of 5.0 (subscription QoS).
#[test]
fn invalid_qos_mqtt_3_3_1_4() {
    let err = DecodeError::InvalidQoS;
    rejects(V4, &[0x36, 0x06, 0x00, 0x01, b't', 0x00, 0x01, b'x'], err, MALFORMED);
    rejects(V5, &[0x37, 0x07, 0x00, 0x01, b't', 0x00, 0x01, 0x00, b'x'], err, MALFORMED);
    rejects(V4, &subscribe(V4, b"a", 0x03), err, MALFORMED);
    rejects(V5, &subscribe(V5, b"a", 0x03), err, MALFORMED);
    rejects(V5, &subscribe(V5, b"a", 0x2F), err, MALFORMED);
}

// MQTT-3.3.1-2: DUP is 0 on a QoS 0 PUBLISH.
#[test]
fn dup_on_qos0_mqtt_3_3_1_2() {
    rejects(V4, &[0x38, 0x04, 0x00, 0x01, b't', b'x'], DecodeError::DupOnQoS0, MALFORMED);
    rejects(V5, &[0x39, 0x05, 0x00, 0x01, b't', 0x00, b'x'], DecodeError::DupOnQoS0, MALFORMED);
}

// MQTT-3.3.2-2 / MQTT-4.7.0-1 (no wildcards in a topic name), MQTT-4.7.3-1 (not empty).
#[test]
fn invalid_topic_name_mqtt_3_3_2_2() {
    let reason = ReasonCode::TOPIC_NAME_INVALID;
    let wildcard = DecodeError::InvalidTopicName(TopicError::WildcardInName);
    rejects(V4, &[0x30, 0x05, 0x00, 0x03, b'a', b'/', b'+'], wildcard, reason);
    rejects(V5, &[0x30, 0x04, 0x00, 0x01, b'#', 0x00], wildcard, reason);
    rejects(V4, &[0x30, 0x06, 0x00, 0x04, b's', b'#', b'/', b'a'], wildcard, reason);
    // MQTT-4.7.3-1: empty in 3.1.1; in 5.0 it stands for a Topic Alias.
    rejects(
        V4,
        &[0x30, 0x02, 0x00, 0x00],
        DecodeError::InvalidTopicName(TopicError::Empty),
        reason,
    );
    accepts(V5, &[0x30, 0x06, 0x00, 0x00, 0x03, 0x23, 0x00, 0x01]);
    // A Will Topic is a topic name too.
    rejects(
        V4,
        &connect(b"MQTT", 4, 0x04, &[0x00, 0x00, 0x00, 0x01, b'+', 0x00, 0x00]),
        wildcard,
        reason,
    );
}

// MQTT-3.3.2-14: the Response Topic holds no wildcard; a Will's Response Topic (§3.1.3.2.6)
// becomes a PUBLISH's. A Protocol Error (0x82), not Topic Name invalid: the topic itself is fine.
#[test]
fn invalid_response_topic_mqtt_3_3_2_14() {
    let wildcard = DecodeError::InvalidResponseTopic(TopicError::WildcardInName);
    rejects(
        V5,
        &publish_v5_with_properties(&[0x04, 0x08, 0x00, 0x01, b'#']),
        wildcard,
        PROTOCOL_ERROR,
    );
    rejects(
        V5,
        &publish_v5_with_properties(&[0x06, 0x08, 0x00, 0x03, b'a', b'/', b'+']),
        wildcard,
        PROTOCOL_ERROR,
    );
    rejects(
        V5,
        &publish_v5_with_properties(&[0x03, 0x08, 0x00, 0x00]),
        DecodeError::InvalidResponseTopic(TopicError::Empty),
        PROTOCOL_ERROR,
    );
    // Will Flag, Will Properties with a Response Topic "+", Will Topic "w", empty payload.
    rejects(
        V5,
        &connect(
            b"MQTT",
            5,
            0x06,
            &[0x00, 0x00, 0x00, 0x04, 0x08, 0x00, 0x01, b'+', 0x00, 0x01, b'w', 0x00, 0x00],
        ),
        wildcard,
        PROTOCOL_ERROR,
    );
    accepts(V5, &publish_v5_with_properties(&[0x06, 0x08, 0x00, 0x03, b'a', b'/', b'b']));
}

// §4.13.1 / §3.2.2.2: a CONNECT that fails to decode after naming a supported version keeps that
// version in the decoder, so that a server can answer a 5.0 client with a CONNACK reason code.
#[test]
fn failed_connect_keeps_its_announced_version_4_13_1() {
    let cases: [(Vec<u8>, Option<ProtocolVersion>); 5] = [
        // Receive Maximum 0 (§3.1.2.11.3).
        (connect(b"MQTT", 5, 0x02, &[0x03, 0x21, 0x00, 0x00, 0x00, 0x00]), Some(V5)),
        // Reserved flag (MQTT-3.1.2-3) in 3.1.1 and 3.1.
        (connect(b"MQTT", 4, 0x03, &[0x00, 0x00]), Some(V4)),
        (connect(b"MQIsdp", 3, 0x03, &[0x00, 0x00]), Some(V3_1)),
        // Unsupported level, unknown name: no version to answer in.
        (connect(b"MQTT", 6, 0x02, &[0x00, 0x00]), None),
        (connect(b"MQTX", 5, 0x02, &[0x00, 0x00]), None),
    ];
    for (bytes, version) in cases {
        let mut decoder = Decoder::new(1 << 20);
        assert!(decoder.decode(&mut BytesMut::from(&bytes[..])).is_err());
        assert_eq!(decoder.version(), version, "{}", common::hex(&bytes));
    }
    assert_eq!(musqratt_proto::mqtt::Connect::announced_version(&[0x00, 0x04, b'M']), None);
}

// MQTT-4.7.1-1, MQTT-4.7.1-2, MQTT-4.8.2-1, MQTT-4.8.2-2, MQTT-4.7.3-1: topic filters.
#[test]
fn invalid_topic_filter_mqtt_4_7_1_1_and_4_8_2_1() {
    let cases: [(&[u8], TopicError); 6] = [
        (b"a/#/b", TopicError::MisplacedMultiLevelWildcard),
        (b"a#", TopicError::MisplacedMultiLevelWildcard),
        (b"a+", TopicError::MisplacedSingleLevelWildcard),
        (b"$share//a", TopicError::InvalidShareName),
        (b"$share/g", TopicError::MissingSharedFilter),
        (b"", TopicError::Empty),
    ];
    for (filter, topic_error) in cases {
        let err = DecodeError::InvalidTopicFilter(topic_error);
        for v in common::VERSIONS {
            rejects(v, &subscribe(v, filter, 0x01), err, MALFORMED);
            rejects(v, &unsubscribe(v, filter), err, MALFORMED);
        }
    }
}

// MQTT-2.2.1-3: a packet that needs a Packet Identifier does not carry 0.
#[test]
fn zero_packet_id_mqtt_2_2_1_3() {
    let err = DecodeError::ZeroPacketId;
    rejects(V4, &[0x32, 0x06, 0x00, 0x01, b't', 0x00, 0x00, b'x'], err, MALFORMED);
    rejects(V5, &[0x34, 0x07, 0x00, 0x01, b't', 0x00, 0x00, 0x00, b'x'], err, MALFORMED);
    rejects(V4, &[0x82, 0x06, 0x00, 0x00, 0x00, 0x01, b'a', 0x00], err, MALFORMED);
    rejects(V5, &[0x82, 0x07, 0x00, 0x00, 0x00, 0x00, 0x01, b'a', 0x00], err, MALFORMED);
    rejects(V4, &[0xA2, 0x05, 0x00, 0x00, 0x00, 0x01, b'a'], err, MALFORMED);
    rejects(V5, &[0xA2, 0x06, 0x00, 0x00, 0x00, 0x00, 0x01, b'a'], err, MALFORMED);
    for header in [0x40, 0x50, 0x62, 0x70] {
        rejects(V4, &[header, 0x02, 0x00, 0x00], err, MALFORMED);
        rejects(V5, &[header, 0x02, 0x00, 0x00], err, MALFORMED);
    }
    rejects(V4, &[0x90, 0x03, 0x00, 0x00, 0x00], err, MALFORMED);
    rejects(V4, &[0xB0, 0x02, 0x00, 0x00], err, MALFORMED);
}

// MQTT-3.8.3-3: a SUBSCRIBE carries at least one subscription.
#[test]
fn empty_subscribe_mqtt_3_8_3_3() {
    rejects(V4, &[0x82, 0x02, 0x00, 0x01], DecodeError::EmptySubscribe, MALFORMED);
    rejects(V5, &[0x82, 0x03, 0x00, 0x01, 0x00], DecodeError::EmptySubscribe, MALFORMED);
}

// MQTT-3.10.3-2: an UNSUBSCRIBE carries at least one topic filter.
#[test]
fn empty_unsubscribe_mqtt_3_10_3_2() {
    rejects(V4, &[0xA2, 0x02, 0x00, 0x01], DecodeError::EmptyUnsubscribe, MALFORMED);
    rejects(V5, &[0xA2, 0x03, 0x00, 0x01, 0x00], DecodeError::EmptyUnsubscribe, MALFORMED);
}

// MQTT-3.8.3-5 (5.0: bits 6-7 reserved, Retain Handling 3) and MQTT-3.8.3-4 of 3.1.1 (bits 2-7).
#[test]
fn invalid_subscription_options_mqtt_3_8_3_5() {
    let err = DecodeError::InvalidSubscriptionOptions;
    rejects(V5, &subscribe(V5, b"a", 0x40), err, MALFORMED);
    rejects(V5, &subscribe(V5, b"a", 0x81), err, MALFORMED);
    rejects(V5, &subscribe(V5, b"a", 0x30), err, MALFORMED);
    // 3.1.1 and 3.1: No Local, Retain As Published and Retain Handling bits are reserved.
    for v in [V3_1, V4] {
        for options in [0x04, 0x08, 0x10, 0x20, 0x40, 0x80] {
            rejects(v, &subscribe(v, b"a", options), err, MALFORMED);
        }
    }
    // The same bits are options in 5.0.
    accepts(V5, &subscribe(V5, b"a", 0x2E));
}

// §2.2.2.2: a property other than User Property (and PUBLISH's Subscription Identifier) appears
// at most once.
#[test]
fn duplicate_property_2_2_2_2() {
    let err = DecodeError::DuplicateProperty;
    rejects(
        V5,
        &publish_v5_with_properties(&[0x04, 0x01, 0x01, 0x01, 0x00]),
        err(0x01),
        PROTOCOL_ERROR,
    );
    rejects(
        V5,
        &pkt(0x82, &[0x00, 0x01, 0x04, 0x0B, 0x01, 0x0B, 0x02, 0x00, 0x01, b'a', 0x00]),
        err(0x0B),
        PROTOCOL_ERROR,
    );
    rejects(
        V5,
        &connect(b"MQTT", 5, 0x02, &[0x06, 0x21, 0x00, 0x01, 0x21, 0x00, 0x02, 0x00, 0x00]),
        err(0x21),
        PROTOCOL_ERROR,
    );
    rejects(
        V5,
        &pkt(0x40, &[0x00, 0x01, 0x00, 0x08, 0x1F, 0x00, 0x01, b'a', 0x1F, 0x00, 0x01, b'b']),
        err(0x1F),
        PROTOCOL_ERROR,
    );
    // Several Subscription Identifiers on PUBLISH, and several User Properties, are allowed.
    accepts(V5, &publish_v5_with_properties(&[0x04, 0x0B, 0x01, 0x0B, 0x02]));
    accepts(
        V5,
        &publish_v5_with_properties(&[
            0x0C, 0x26, 0x00, 0x01, b'k', 0x00, 0x00, 0x26, 0x00, 0x01, b'k', 0x00, 0x00,
        ]),
    );
}

// §2.2.2.2 table: a defined property that this packet may not carry.
#[test]
fn property_not_allowed_2_2_2_2() {
    let err = DecodeError::PropertyNotAllowed;
    // Topic Alias in CONNECT.
    rejects(
        V5,
        &connect(b"MQTT", 5, 0x02, &[0x03, 0x23, 0x00, 0x01, 0x00, 0x00]),
        err(0x23),
        PROTOCOL_ERROR,
    );
    // Reason String in PUBLISH.
    rejects(
        V5,
        &publish_v5_with_properties(&[0x04, 0x1F, 0x00, 0x01, b'r']),
        err(0x1F),
        PROTOCOL_ERROR,
    );
    // Subscription Identifier in SUBACK, Maximum QoS in DISCONNECT, Will Delay Interval in CONNECT.
    rejects(V5, &pkt(0x90, &[0x00, 0x01, 0x02, 0x0B, 0x01, 0x00]), err(0x0B), PROTOCOL_ERROR);
    rejects(V5, &pkt(0xE0, &[0x00, 0x02, 0x24, 0x01]), err(0x24), PROTOCOL_ERROR);
    rejects(
        V5,
        &connect(b"MQTT", 5, 0x02, &[0x05, 0x18, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00]),
        err(0x18),
        PROTOCOL_ERROR,
    );
    // Session Expiry Interval in a Will's properties.
    let will = [0x00, 0x00, 0x00, 0x05, 0x11, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, b'w', 0x00, 0x00];
    rejects(V5, &connect(b"MQTT", 5, 0x06, &will), err(0x11), PROTOCOL_ERROR);
}

// §2.2.2.2: an identifier the specification does not define.
#[test]
fn unknown_property_2_2_2_2() {
    let err = DecodeError::UnknownProperty;
    rejects(V5, &pkt(0x40, &[0x00, 0x01, 0x00, 0x02, 0x00, 0x00]), err(0x00), MALFORMED);
    rejects(V5, &pkt(0x40, &[0x00, 0x01, 0x00, 0x02, 0x04, 0x00]), err(0x04), MALFORMED);
    rejects(V5, &publish_v5_with_properties(&[0x02, 0x7F, 0x00]), err(0x7F), MALFORMED);
    rejects(V5, &connect(b"MQTT", 5, 0x02, &[0x01, 0x2B, 0x00, 0x00]), err(0x2B), MALFORMED);
}

// §3.1.2.11.3 and §3.2.2.3: Receive Maximum 0, Maximum Packet Size 0, Subscription Identifier 0,
// a boolean other than 0 or 1 and Maximum QoS 2 are Protocol Errors.
#[test]
fn invalid_property_value_3_1_2_11() {
    let err = DecodeError::InvalidPropertyValue;
    rejects(
        V5,
        &connect(b"MQTT", 5, 0x02, &[0x03, 0x21, 0x00, 0x00, 0x00, 0x00]),
        err(0x21),
        PROTOCOL_ERROR,
    );
    rejects(
        V5,
        &connect(b"MQTT", 5, 0x02, &[0x05, 0x27, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00]),
        err(0x27),
        PROTOCOL_ERROR,
    );
    rejects(
        V5,
        &connect(b"MQTT", 5, 0x02, &[0x02, 0x17, 0x02, 0x00, 0x00]),
        err(0x17),
        PROTOCOL_ERROR,
    );
    rejects(V5, &pkt(0x20, &[0x00, 0x00, 0x03, 0x21, 0x00, 0x00]), err(0x21), PROTOCOL_ERROR);
    rejects(V5, &pkt(0x20, &[0x00, 0x00, 0x02, 0x24, 0x02]), err(0x24), PROTOCOL_ERROR);
    rejects(V5, &pkt(0x20, &[0x00, 0x00, 0x02, 0x25, 0x02]), err(0x25), PROTOCOL_ERROR);
    rejects(V5, &publish_v5_with_properties(&[0x02, 0x01, 0x02]), err(0x01), PROTOCOL_ERROR);
    rejects(V5, &publish_v5_with_properties(&[0x02, 0x0B, 0x00]), err(0x0B), PROTOCOL_ERROR);
    rejects(
        V5,
        &pkt(0x82, &[0x00, 0x01, 0x02, 0x0B, 0x00, 0x00, 0x01, b'a', 0x00]),
        err(0x0B),
        PROTOCOL_ERROR,
    );
}

// §2.4 and each packet's table: a reason code the packet may not carry; §3.2.2.3 and §3.9.3 of
// 3.1.1 for its return codes.
#[test]
fn invalid_reason_code_2_4() {
    let err = DecodeError::InvalidReasonCode;
    rejects(V5, &[0x40, 0x04, 0x00, 0x01, 0x92, 0x00], err(0x92), PROTOCOL_ERROR);
    rejects(V5, &[0x50, 0x03, 0x00, 0x01, 0x04], err(0x04), PROTOCOL_ERROR);
    rejects(V5, &[0x62, 0x03, 0x00, 0x01, 0x10], err(0x10), PROTOCOL_ERROR);
    rejects(V5, &[0x70, 0x03, 0x00, 0x01, 0x80], err(0x80), PROTOCOL_ERROR);
    rejects(V5, &[0x90, 0x04, 0x00, 0x01, 0x00, 0x11], err(0x11), PROTOCOL_ERROR);
    rejects(V5, &[0xB0, 0x04, 0x00, 0x01, 0x00, 0x01], err(0x01), PROTOCOL_ERROR);
    rejects(V5, &[0xE0, 0x01, 0x18], err(0x18), PROTOCOL_ERROR);
    rejects(V5, &[0xF0, 0x01, 0x04], err(0x04), PROTOCOL_ERROR);
    rejects(V5, &[0x20, 0x03, 0x00, 0x04, 0x00], err(0x04), PROTOCOL_ERROR);
    rejects(V5, &[0x20, 0x03, 0x00, 0x01, 0x00], err(0x01), PROTOCOL_ERROR);
    // 3.1.1: CONNACK return codes 0-5, SUBACK 0-2 and 0x80.
    rejects(V4, &[0x20, 0x02, 0x00, 0x06], err(0x06), PROTOCOL_ERROR);
    rejects(V4, &[0x90, 0x03, 0x00, 0x01, 0x03], err(0x03), PROTOCOL_ERROR);
    rejects(V4, &[0x90, 0x03, 0x00, 0x01, 0x8F], err(0x8F), PROTOCOL_ERROR);
    rejects(V3_1, &[0x90, 0x03, 0x00, 0x01, 0x81], err(0x81), PROTOCOL_ERROR);
}

// MQTT-3.2.2-1: CONNACK's bits 7-1 are reserved.
#[test]
fn invalid_connack_flags_mqtt_3_2_2_1() {
    rejects(V4, &[0x20, 0x02, 0x02, 0x00], DecodeError::InvalidConnAckFlags, MALFORMED);
    rejects(V5, &[0x20, 0x03, 0x80, 0x00, 0x00], DecodeError::InvalidConnAckFlags, MALFORMED);
}

/// `Packet::decode` reports the same errors as the decoder for a body given directly.
#[test]
fn packet_decode_without_decoder() {
    use musqratt_proto::bytes::Bytes;
    assert_eq!(Packet::decode(V4, 0xC0, Bytes::from_static(&[0])), Err(DecodeError::TrailingBytes));
    assert_eq!(Packet::decode(V4, 0x0F, Bytes::new()), Err(DecodeError::ReservedPacketType(0)));
    assert_eq!(
        Packet::decode(V4, 0x38, Bytes::from_static(b"\0\x01tx")),
        Err(DecodeError::DupOnQoS0)
    );
}
