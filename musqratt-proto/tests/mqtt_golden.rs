//! Golden byte vectors written by hand from the packet layouts of the MQTT 3.1.1 and 5.0
//! specifications: each decodes to the expected struct, and the struct encodes to the exact bytes.

mod common;

use musqratt_proto::bytes::{Bytes, BytesMut};
use musqratt_proto::mqtt::{
    AckProperties, Auth, ConnAck, Connect, Decoder, Disconnect, LastWill, Packet, PubResponse,
    Publish, ReasonCode, RetainHandling, SubAck, Subscribe, SubscriptionOptions, UnsubAck,
    Unsubscribe,
};
use musqratt_proto::{PacketId, ProtocolVersion, QoS};

const V3_1: ProtocolVersion = ProtocolVersion::V3_1;
const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

fn id(id: u16) -> PacketId {
    PacketId::new(id).expect("non-zero")
}

/// Decodes `bytes` (CONNECT with a server's decoder, the rest with a client's of version `v`).
fn decode_one(v: ProtocolVersion, bytes: &[u8]) -> Packet {
    let mut buf = BytesMut::from(bytes);
    let mut decoder =
        if bytes[0] >> 4 == 1 { Decoder::new(1024) } else { Decoder::with_version(v, 1024) };
    let packet = decoder.decode(&mut buf).expect("golden bytes decode").expect("a whole packet");
    assert!(buf.is_empty(), "bytes left: {}", common::hex(&buf));
    assert_eq!(decoder.version(), Some(v));
    packet
}

/// `bytes` decodes to `packet` and `packet` encodes to `bytes`.
#[track_caller]
fn golden(v: ProtocolVersion, bytes: &[u8], packet: &Packet) {
    assert_eq!(&decode_one(v, bytes), packet);
    let encoded = common::encode(v, packet);
    assert_eq!(common::hex(&encoded), common::hex(bytes));
    assert_eq!(packet.encoded_len(v), Ok(bytes.len()));
}

/// A valid but not canonical form: `bytes` decodes to `packet`, which encodes to `canonical`.
#[track_caller]
fn decode_only(v: ProtocolVersion, bytes: &[u8], packet: &Packet, canonical: &[u8]) {
    assert_eq!(&decode_one(v, bytes), packet);
    assert_eq!(common::hex(&common::encode(v, packet)), common::hex(canonical));
}

#[test]
fn connect_v3_1_1_with_will_username_password() {
    #[rustfmt::skip]
    let bytes = [
        0x10, 35,
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04,
        // User Name, Password, Will Retain, Will QoS 1, Will Flag, Clean Session.
        0xEE,
        0x00, 0x3C,
        0x00, 0x03, b'c', b'i', b'd',
        0x00, 0x03, b'w', b'/', b't',
        0x00, 0x03, b'b', b'y', b'e',
        0x00, 0x04, b'u', b's', b'e', b'r',
        0x00, 0x02, b'p', b'w',
    ];
    let connect = Connect {
        protocol: V4,
        clean_start: true,
        keep_alive: 60,
        client_id: "cid".into(),
        will: Some(LastWill {
            topic: "w/t".into(),
            payload: Bytes::from_static(b"bye"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Default::default(),
        }),
        username: Some("user".into()),
        password: Some(Bytes::from_static(b"pw")),
        properties: Default::default(),
    };
    golden(V4, &bytes, &Packet::Connect(Box::new(connect)));
}

#[test]
fn connect_v3_1_minimal() {
    #[rustfmt::skip]
    let bytes = [
        0x10, 15,
        0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', 0x03,
        0x02, 0x00, 0x3C,
        0x00, 0x01, b'a',
    ];
    let connect = Connect {
        protocol: V3_1,
        clean_start: true,
        keep_alive: 60,
        client_id: "a".into(),
        will: None,
        username: None,
        password: None,
        properties: Default::default(),
    };
    golden(V3_1, &bytes, &Packet::Connect(Box::new(connect)));
}

#[test]
fn connect_v5_with_properties_will_username_password() {
    #[rustfmt::skip]
    let bytes = [
        0x10, 46,
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05,
        // User Name, Password, Will QoS 2, Will Flag, Clean Start.
        0xD6,
        0x00, 0x0A,
        // Properties: Session Expiry Interval 120, Receive Maximum 20.
        0x08, 0x11, 0x00, 0x00, 0x00, 0x78, 0x21, 0x00, 0x14,
        0x00, 0x02, b'c', b'1',
        // Will Properties: Will Delay Interval 5, Payload Format Indicator 1.
        0x07, 0x18, 0x00, 0x00, 0x00, 0x05, 0x01, 0x01,
        0x00, 0x02, b'l', b'w',
        0x00, 0x03, 0x01, 0x02, 0x03,
        0x00, 0x01, b'u',
        0x00, 0x01, b'p',
    ];
    let mut properties = musqratt_proto::mqtt::ConnectProperties::default();
    properties.session_expiry_interval = Some(120);
    properties.receive_maximum = Some(20);
    let mut will_properties = musqratt_proto::mqtt::WillProperties::default();
    will_properties.will_delay_interval = Some(5);
    will_properties.payload_format_indicator = Some(true);
    let connect = Connect {
        protocol: V5,
        clean_start: true,
        keep_alive: 10,
        client_id: "c1".into(),
        will: Some(LastWill {
            topic: "lw".into(),
            payload: Bytes::from_static(&[1, 2, 3]),
            qos: QoS::ExactlyOnce,
            retain: false,
            properties: will_properties,
        }),
        username: Some("u".into()),
        password: Some(Bytes::from_static(b"p")),
        properties,
    };
    golden(V5, &bytes, &Packet::Connect(Box::new(connect)));
}

#[test]
fn connect_v5_password_without_username() {
    // Allowed in 5.0 (§3.1.2.9), unlike 3.1.1.
    #[rustfmt::skip]
    let bytes = [
        0x10, 17,
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x40, 0x00, 0x00,
        0x00,
        0x00, 0x00,
        0x00, 0x02, b'p', b'w',
    ];
    let connect = Connect {
        protocol: V5,
        clean_start: false,
        keep_alive: 0,
        client_id: "".into(),
        will: None,
        username: None,
        password: Some(Bytes::from_static(b"pw")),
        properties: Default::default(),
    };
    golden(V5, &bytes, &Packet::Connect(Box::new(connect)));
}

#[test]
fn connack_v3_1_1() {
    let accepted = ConnAck {
        session_present: true,
        reason_code: ReasonCode::SUCCESS,
        properties: Default::default(),
    };
    golden(V4, &[0x20, 0x02, 0x01, 0x00], &Packet::ConnAck(Box::new(accepted)));
    let refused = ConnAck {
        session_present: false,
        reason_code: ReasonCode::NOT_AUTHORIZED,
        properties: Default::default(),
    };
    golden(V4, &[0x20, 0x02, 0x00, 0x05], &Packet::ConnAck(Box::new(refused)));
}

#[test]
fn connack_v5_with_properties() {
    #[rustfmt::skip]
    let bytes = [
        0x20, 16, 0x00, 0x00,
        13,
        0x21, 0x00, 0x0A, // Receive Maximum 10
        0x24, 0x01, // Maximum QoS 1
        0x25, 0x00, // Retain Available 0
        0x12, 0x00, 0x03, b'a', b'b', b'c', // Assigned Client Identifier
    ];
    let mut properties = musqratt_proto::mqtt::ConnAckProperties::default();
    properties.receive_maximum = Some(10);
    properties.maximum_qos = Some(QoS::AtLeastOnce);
    properties.retain_available = Some(false);
    properties.assigned_client_identifier = Some("abc".into());
    let connack = ConnAck { session_present: false, reason_code: ReasonCode::SUCCESS, properties };
    golden(V5, &bytes, &Packet::ConnAck(Box::new(connack)));

    let refused = ConnAck {
        session_present: false,
        reason_code: ReasonCode::BAD_USERNAME_OR_PASSWORD,
        properties: Default::default(),
    };
    golden(V5, &[0x20, 0x03, 0x00, 0x86, 0x00], &Packet::ConnAck(Box::new(refused)));
}

#[test]
fn publish_v3_1_1_qos0_and_qos1() {
    let qos0 = Publish::new("a/b".into(), Bytes::from_static(b"hi"));
    golden(V4, &[0x30, 0x07, 0x00, 0x03, b'a', b'/', b'b', b'h', b'i'], &Packet::Publish(qos0));

    // DUP, QoS 1, RETAIN.
    let qos1 = Publish {
        dup: true,
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: "a/b".into(),
        packet_id: Some(id(10)),
        payload: Bytes::from_static(b"x"),
        properties: Default::default(),
    };
    golden(
        V4,
        &[0x3B, 0x08, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x0A, b'x'],
        &Packet::Publish(qos1),
    );
}

#[test]
fn publish_v3_1_1_two_byte_remaining_length() {
    let payload = Bytes::from(vec![0xA5; 200]);
    let mut bytes = vec![0x30, 0xCD, 0x01, 0x00, 0x03, b'a', b'/', b'b'];
    bytes.extend_from_slice(&payload);
    golden(V4, &bytes, &Packet::Publish(Publish::new("a/b".into(), payload)));
}

#[test]
fn publish_v5_qos1_with_properties() {
    #[rustfmt::skip]
    let bytes = [
        0x32, 46,
        0x00, 0x01, b't',
        0x00, 0x01,
        38,
        0x01, 0x01, // Payload Format Indicator
        0x02, 0x00, 0x00, 0x00, 0x3C, // Message Expiry Interval 60
        0x23, 0x00, 0x05, // Topic Alias 5
        0x08, 0x00, 0x01, b'r', // Response Topic
        0x09, 0x00, 0x02, 0xAB, 0xCD, // Correlation Data
        0x03, 0x00, 0x04, b't', b'e', b'x', b't', // Content Type
        0x0B, 0x01, // Subscription Identifier 1
        0x0B, 0x80, 0x01, // Subscription Identifier 128
        0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', // User Property
        b'h', b'i',
    ];
    let mut properties = musqratt_proto::mqtt::PublishProperties::default();
    properties.payload_format_indicator = Some(true);
    properties.message_expiry_interval = Some(60);
    properties.topic_alias = Some(5);
    properties.response_topic = Some("r".into());
    properties.correlation_data = Some(Bytes::from_static(&[0xAB, 0xCD]));
    properties.content_type = Some("text".into());
    properties.subscription_identifiers.extend([1, 128]);
    properties.user_properties.push(("k".into(), "v".into()));
    let publish = Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: "t".into(),
        packet_id: Some(id(1)),
        payload: Bytes::from_static(b"hi"),
        properties,
    };
    let packet = Packet::Publish(publish.clone());
    golden(V5, &bytes, &packet);
    // The vectored form: everything but the payload.
    let mut header = BytesMut::new();
    assert_eq!(publish.encode_header(V5, &mut header), Ok(bytes.len()));
    assert_eq!(&header[..], &bytes[..bytes.len() - 2]);
}

#[test]
fn publish_v5_qos0_without_properties_and_with_topic_alias_only() {
    let plain = Publish::new("t".into(), Bytes::from_static(b"x"));
    golden(V5, &[0x30, 0x05, 0x00, 0x01, b't', 0x00, b'x'], &Packet::Publish(plain));

    // An empty topic name with a Topic Alias (§3.3.2.3.4).
    let mut aliased = Publish::new("".into(), Bytes::from_static(b"x"));
    aliased.properties.topic_alias = Some(1);
    golden(V5, &[0x30, 0x07, 0x00, 0x00, 0x03, 0x23, 0x00, 0x01, b'x'], &Packet::Publish(aliased));
}

#[test]
fn puback_v3_1_1_and_v5_short_and_long_forms() {
    let ok = Packet::PubAck(PubResponse::new(id(1)));
    golden(V4, &[0x40, 0x02, 0x00, 0x01], &ok);
    // 5.0: Remaining Length 2 means Success without properties (§3.4.2.1).
    golden(V5, &[0x40, 0x02, 0x00, 0x01], &ok);

    let mut long = PubResponse::new(id(1));
    long.reason_code = ReasonCode::NO_MATCHING_SUBSCRIBERS;
    long.properties.reason_string = Some("no".into());
    golden(
        V5,
        &[0x40, 0x09, 0x00, 0x01, 0x10, 0x05, 0x1F, 0x00, 0x02, b'n', b'o'],
        &Packet::PubAck(long),
    );

    // Remaining Length 3: a reason code without properties; encoded with an empty property set.
    let mut reason_only = PubResponse::new(id(1));
    reason_only.reason_code = ReasonCode::NO_MATCHING_SUBSCRIBERS;
    decode_only(
        V5,
        &[0x40, 0x03, 0x00, 0x01, 0x10],
        &Packet::PubAck(reason_only),
        &[0x40, 0x04, 0x00, 0x01, 0x10, 0x00],
    );
}

#[test]
fn pubrec_pubrel_pubcomp() {
    golden(V4, &[0x50, 0x02, 0x12, 0x34], &Packet::PubRec(PubResponse::new(id(0x1234))));
    golden(V4, &[0x62, 0x02, 0x12, 0x34], &Packet::PubRel(PubResponse::new(id(0x1234))));
    golden(V4, &[0x70, 0x02, 0x12, 0x34], &Packet::PubComp(PubResponse::new(id(0x1234))));
    let mut not_found = PubResponse::new(id(0x1234));
    not_found.reason_code = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
    golden(V5, &[0x62, 0x04, 0x12, 0x34, 0x92, 0x00], &Packet::PubRel(not_found.clone()));
    golden(V5, &[0x70, 0x04, 0x12, 0x34, 0x92, 0x00], &Packet::PubComp(not_found));
    let mut quota = PubResponse::new(id(0x1234));
    quota.reason_code = ReasonCode::QUOTA_EXCEEDED;
    golden(V5, &[0x50, 0x04, 0x12, 0x34, 0x97, 0x00], &Packet::PubRec(quota));
}

#[test]
fn subscribe_v3_1_1() {
    #[rustfmt::skip]
    let bytes = [
        0x82, 12, 0x00, 0x0A,
        0x00, 0x03, b'a', b'/', b'b', 0x01,
        0x00, 0x01, b'#', 0x02,
    ];
    let subscribe = Subscribe {
        packet_id: id(10),
        filters: vec![
            ("a/b".into(), SubscriptionOptions::with_qos(QoS::AtLeastOnce)),
            ("#".into(), SubscriptionOptions::with_qos(QoS::ExactlyOnce)),
        ],
        properties: Default::default(),
    };
    golden(V4, &bytes, &Packet::Subscribe(subscribe));
}

#[test]
fn subscribe_v5_with_options_and_subscription_identifier() {
    #[rustfmt::skip]
    let bytes = [
        0x82, 25, 0x00, 0x0A,
        0x03, 0x0B, 0x80, 0x01, // Subscription Identifier 128
        // QoS 1, No Local, Retain As Published, Retain Handling 2.
        0x00, 0x03, b'a', b'/', b'+', 0x2D,
        // QoS 2, Retain Handling 1.
        0x00, 0x0A, b'$', b's', b'h', b'a', b'r', b'e', b'/', b'g', b'/', b'x', 0x12,
    ];
    let mut properties = musqratt_proto::mqtt::SubscribeProperties::default();
    properties.subscription_identifier = Some(128);
    let mut first = SubscriptionOptions::with_qos(QoS::AtLeastOnce);
    first.no_local = true;
    first.retain_as_published = true;
    first.retain_handling = RetainHandling::DoNotSend;
    let mut second = SubscriptionOptions::with_qos(QoS::ExactlyOnce);
    second.retain_handling = RetainHandling::SendIfNew;
    let subscribe = Subscribe {
        packet_id: id(10),
        filters: vec![("a/+".into(), first), ("$share/g/x".into(), second)],
        properties,
    };
    golden(V5, &bytes, &Packet::Subscribe(subscribe));
}

#[test]
fn suback_v3_1_1_and_v5() {
    let v3 = SubAck {
        packet_id: id(10),
        reason_codes: vec![ReasonCode(0x00), ReasonCode(0x02), ReasonCode(0x80)],
        properties: Default::default(),
    };
    golden(V4, &[0x90, 0x05, 0x00, 0x0A, 0x00, 0x02, 0x80], &Packet::SubAck(v3));

    let v5 = SubAck {
        packet_id: id(10),
        reason_codes: vec![
            ReasonCode::GRANTED_QOS_1,
            ReasonCode::TOPIC_FILTER_INVALID,
            ReasonCode::WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED,
        ],
        properties: AckProperties::default(),
    };
    golden(V5, &[0x90, 0x06, 0x00, 0x0A, 0x00, 0x01, 0x8F, 0xA2], &Packet::SubAck(v5));
}

#[test]
fn unsubscribe_v3_1_1_and_v5() {
    let v3 = Unsubscribe {
        packet_id: id(11),
        filters: vec!["a/b".into(), "#".into()],
        properties: Default::default(),
    };
    golden(
        V4,
        &[0xA2, 10, 0x00, 0x0B, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x01, b'#'],
        &Packet::Unsubscribe(v3),
    );

    let mut properties = musqratt_proto::mqtt::UnsubscribeProperties::default();
    properties.user_properties.push(("k".into(), "v".into()));
    let v5 = Unsubscribe { packet_id: id(11), filters: vec!["x".into()], properties };
    #[rustfmt::skip]
    let bytes = [
        0xA2, 13, 0x00, 0x0B,
        0x07, 0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v',
        0x00, 0x01, b'x',
    ];
    golden(V5, &bytes, &Packet::Unsubscribe(v5));
}

#[test]
fn unsuback_v3_1_1_and_v5() {
    let v3 = UnsubAck { packet_id: id(11), reason_codes: vec![], properties: Default::default() };
    golden(V4, &[0xB0, 0x02, 0x00, 0x0B], &Packet::UnsubAck(v3));

    let v5 = UnsubAck {
        packet_id: id(11),
        reason_codes: vec![ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED],
        properties: Default::default(),
    };
    golden(V5, &[0xB0, 0x05, 0x00, 0x0B, 0x00, 0x00, 0x11], &Packet::UnsubAck(v5));
}

#[test]
fn pingreq_and_pingresp() {
    for v in common::VERSIONS {
        golden(v, &[0xC0, 0x00], &Packet::PingReq);
        golden(v, &[0xD0, 0x00], &Packet::PingResp);
    }
}

#[test]
fn disconnect_v3_1_1_and_v5() {
    golden(V4, &[0xE0, 0x00], &Packet::Disconnect(Disconnect::default()));
    // 5.0: Remaining Length 0 is Normal disconnection (§3.14.2.1).
    golden(V5, &[0xE0, 0x00], &Packet::Disconnect(Disconnect::default()));

    let taken_over = Disconnect::new(ReasonCode::SESSION_TAKEN_OVER);
    golden(V5, &[0xE0, 0x02, 0x8E, 0x00], &Packet::Disconnect(taken_over.clone()));
    // Remaining Length 1: a reason code without properties (§3.14.2.2.1).
    decode_only(
        V5,
        &[0xE0, 0x01, 0x8E],
        &Packet::Disconnect(taken_over),
        &[0xE0, 0x02, 0x8E, 0x00],
    );

    let mut with_will = Disconnect::new(ReasonCode::DISCONNECT_WITH_WILL);
    with_will.properties.session_expiry_interval = Some(0);
    with_will.properties.reason_string = Some("bye".into());
    #[rustfmt::skip]
    let bytes = [
        0xE0, 13, 0x04,
        11,
        0x11, 0x00, 0x00, 0x00, 0x00, // Session Expiry Interval 0
        0x1F, 0x00, 0x03, b'b', b'y', b'e', // Reason String
    ];
    golden(V5, &bytes, &Packet::Disconnect(with_will));
}

#[test]
fn auth_v5() {
    golden(V5, &[0xF0, 0x00], &Packet::Auth(Auth::default()));

    let mut auth = Auth { reason_code: ReasonCode::CONTINUE_AUTHENTICATION, ..Auth::default() };
    auth.properties.authentication_method = Some("SCRAM".into());
    auth.properties.authentication_data = Some(Bytes::from_static(&[1, 2]));
    #[rustfmt::skip]
    let bytes = [
        0xF0, 15, 0x18,
        13,
        0x15, 0x00, 0x05, b'S', b'C', b'R', b'A', b'M', // Authentication Method
        0x16, 0x00, 0x02, 0x01, 0x02, // Authentication Data
    ];
    golden(V5, &bytes, &Packet::Auth(auth));
}
