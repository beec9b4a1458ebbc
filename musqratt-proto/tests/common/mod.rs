//! Shared helpers of the MQTT codec tests: quickcheck generators of valid packets for every packet
//! type and protocol version, and encode/decode helpers.
#![allow(dead_code, reason = "each test file uses a different part of these helpers")]

use musqratt_proto::bytes::{Bytes, BytesMut};
use musqratt_proto::bytestring::ByteString;
use musqratt_proto::mqtt::properties::UserProperties;
use musqratt_proto::mqtt::{
    AckProperties, Auth, AuthProperties, ConnAck, ConnAckProperties, Connect, ConnectProperties,
    Decoder, Disconnect, DisconnectProperties, LastWill, Packet, PacketType, PubResponse, Publish,
    PublishProperties, ReasonCode, RetainHandling, SubAck, Subscribe, SubscribeProperties,
    SubscriptionOptions, UnsubAck, Unsubscribe, UnsubscribeProperties, WillProperties,
};
use musqratt_proto::{PacketId, ProtocolVersion, QoS};
use quickcheck::{Arbitrary, Gen};

/// The largest Variable Byte Integer (§1.5.5).
pub(crate) const MAX_VARINT: u32 = 268_435_455;

pub(crate) const VERSIONS: [ProtocolVersion; 3] =
    [ProtocolVersion::V3_1, ProtocolVersion::V3_1_1, ProtocolVersion::V5];

/// Every packet type, AUTH last.
pub(crate) const KINDS: [PacketType; 15] = [
    PacketType::Connect,
    PacketType::ConnAck,
    PacketType::Publish,
    PacketType::PubAck,
    PacketType::PubRec,
    PacketType::PubRel,
    PacketType::PubComp,
    PacketType::Subscribe,
    PacketType::SubAck,
    PacketType::Unsubscribe,
    PacketType::UnsubAck,
    PacketType::PingReq,
    PacketType::PingResp,
    PacketType::Disconnect,
    PacketType::Auth,
];

pub(crate) fn version_of_level(level: u8) -> ProtocolVersion {
    match level {
        3 => ProtocolVersion::V3_1,
        4 => ProtocolVersion::V3_1_1,
        5 => ProtocolVersion::V5,
        _ => panic!("no protocol level {level}"),
    }
}

// ----------------------------------------------------------------------------------------------
// Small generators
// ----------------------------------------------------------------------------------------------

pub(crate) fn coin(g: &mut Gen) -> bool {
    bool::arbitrary(g)
}

/// A number in `0..n`.
pub(crate) fn below(g: &mut Gen, n: u32) -> u32 {
    u32::arbitrary(g) % n
}

pub(crate) fn maybe<T>(g: &mut Gen, f: impl FnOnce(&mut Gen) -> T) -> Option<T> {
    if coin(g) { Some(f(g)) } else { None }
}

/// Any valid UTF-8 Encoded String: any `char` but U+0000 (MQTT-1.5.4-2); surrogates cannot be a
/// Rust `char`. Short, so that packets stay small.
pub(crate) fn string(g: &mut Gen) -> ByteString {
    let len = below(g, 12) as usize;
    let s: String =
        (0..len).map(|_| char::arbitrary(g)).map(|c| if c == '\0' { 'z' } else { c }).collect();
    ByteString::from(s)
}

pub(crate) fn binary(g: &mut Gen) -> Bytes {
    let len = below(g, 16) as usize;
    Bytes::from((0..len).map(|_| u8::arbitrary(g)).collect::<Vec<u8>>())
}

/// A payload, sometimes large enough for a Remaining Length of two or three bytes.
pub(crate) fn payload(g: &mut Gen) -> Bytes {
    let len = match below(g, 10) {
        0 => 0,
        1 => 100 + below(g, 200) as usize,
        2 => 16_000 + below(g, 1000) as usize,
        _ => below(g, 32) as usize,
    };
    Bytes::from((0..len).map(|_| u8::arbitrary(g)).collect::<Vec<u8>>())
}

fn nonzero_u16(g: &mut Gen) -> u16 {
    u16::arbitrary(g).max(1)
}

fn nonzero_u32(g: &mut Gen) -> u32 {
    u32::arbitrary(g).max(1)
}

fn packet_id(g: &mut Gen) -> PacketId {
    PacketId::new(nonzero_u16(g)).expect("non-zero")
}

/// A Subscription Identifier: 1 to 268,435,455, often near the varint length boundaries.
pub(crate) fn subscription_id(g: &mut Gen) -> u32 {
    let v = match below(g, 4) {
        0 => {
            *g.choose(&[1, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, MAX_VARINT]).expect("x")
        }
        _ => u32::arbitrary(g) % MAX_VARINT,
    };
    v.max(1)
}

/// A level of a topic: any string without `/`, `+`, `#` (and U+0000).
fn level(g: &mut Gen) -> String {
    string(g).chars().filter(|c| !matches!(c, '/' | '+' | '#')).collect()
}

/// A valid topic name: non-empty, no wildcards (MQTT-4.7.3-1, MQTT-3.3.2-2).
pub(crate) fn topic_name(g: &mut Gen) -> ByteString {
    let levels = 1 + below(g, 4);
    let mut name = (0..levels).map(|_| level(g)).collect::<Vec<_>>().join("/");
    if name.is_empty() {
        name.push('t');
    }
    if below(g, 8) == 0 {
        name.insert(0, '$');
    }
    ByteString::from(name)
}

/// A valid topic filter, wildcards and shared subscriptions included; and whether it is shared.
pub(crate) fn topic_filter(g: &mut Gen) -> (ByteString, bool) {
    let levels = 1 + below(g, 4);
    let mut parts: Vec<String> =
        (0..levels).map(|_| if below(g, 4) == 0 { "+".to_owned() } else { level(g) }).collect();
    if below(g, 4) == 0 {
        parts.push("#".to_owned());
    }
    let mut filter = parts.join("/");
    if filter.is_empty() {
        filter.push('f');
    }
    let shared = below(g, 5) == 0;
    if shared {
        let mut group = level(g);
        if group.is_empty() {
            group.push('g');
        }
        filter = format!("$share/{group}/{filter}");
    } else if filter.starts_with("$share/") {
        filter.insert(0, 'x');
    }
    (ByteString::from(filter), shared)
}

pub(crate) fn user_properties(g: &mut Gen) -> UserProperties {
    (0..below(g, 3)).map(|_| (string(g), string(g))).collect()
}

fn qos(g: &mut Gen) -> QoS {
    *g.choose(&[QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]).expect("x")
}

/// A reason code `kind` may carry in 5.0 (§2.4 tables), chosen among all 256 bytes.
pub(crate) fn reason_v5(g: &mut Gen, kind: PacketType) -> ReasonCode {
    let allowed: Vec<ReasonCode> =
        (0..=u8::MAX).map(ReasonCode).filter(|code| code.allowed_in(kind)).collect();
    *g.choose(&allowed).expect("every packet with a reason code allows Success")
}

// ----------------------------------------------------------------------------------------------
// Properties: every field set or not
// ----------------------------------------------------------------------------------------------

pub(crate) fn connect_properties(g: &mut Gen) -> ConnectProperties {
    let mut p = ConnectProperties::default();
    p.session_expiry_interval = maybe(g, u32::arbitrary);
    p.receive_maximum = maybe(g, nonzero_u16);
    p.maximum_packet_size = maybe(g, nonzero_u32);
    p.topic_alias_maximum = maybe(g, u16::arbitrary);
    p.request_response_information = maybe(g, bool::arbitrary);
    p.request_problem_information = maybe(g, bool::arbitrary);
    p.authentication_method = maybe(g, string);
    p.authentication_data = maybe(g, binary);
    p.user_properties = user_properties(g);
    p
}

pub(crate) fn will_properties(g: &mut Gen) -> WillProperties {
    let mut p = WillProperties::default();
    p.will_delay_interval = maybe(g, u32::arbitrary);
    p.payload_format_indicator = maybe(g, bool::arbitrary);
    p.message_expiry_interval = maybe(g, u32::arbitrary);
    p.content_type = maybe(g, string);
    p.response_topic = maybe(g, topic_name);
    p.correlation_data = maybe(g, binary);
    p.user_properties = user_properties(g);
    p
}

pub(crate) fn connack_properties(g: &mut Gen) -> ConnAckProperties {
    let mut p = ConnAckProperties::default();
    p.session_expiry_interval = maybe(g, u32::arbitrary);
    p.receive_maximum = maybe(g, nonzero_u16);
    // Maximum QoS is 0 or 1 (§3.2.2.3.4).
    p.maximum_qos = maybe(g, |g| if coin(g) { QoS::AtMostOnce } else { QoS::AtLeastOnce });
    p.retain_available = maybe(g, bool::arbitrary);
    p.maximum_packet_size = maybe(g, nonzero_u32);
    p.assigned_client_identifier = maybe(g, string);
    p.topic_alias_maximum = maybe(g, u16::arbitrary);
    p.reason_string = maybe(g, string);
    p.wildcard_subscription_available = maybe(g, bool::arbitrary);
    p.subscription_identifiers_available = maybe(g, bool::arbitrary);
    p.shared_subscription_available = maybe(g, bool::arbitrary);
    p.server_keep_alive = maybe(g, u16::arbitrary);
    p.response_information = maybe(g, string);
    p.server_reference = maybe(g, string);
    p.authentication_method = maybe(g, string);
    p.authentication_data = maybe(g, binary);
    p.user_properties = user_properties(g);
    p
}

pub(crate) fn publish_properties(g: &mut Gen) -> PublishProperties {
    let mut p = PublishProperties::default();
    p.payload_format_indicator = maybe(g, bool::arbitrary);
    p.message_expiry_interval = maybe(g, u32::arbitrary);
    p.topic_alias = maybe(g, nonzero_u16);
    p.response_topic = maybe(g, topic_name);
    p.correlation_data = maybe(g, binary);
    p.content_type = maybe(g, string);
    for _ in 0..below(g, 4) {
        p.subscription_identifiers.push(subscription_id(g));
    }
    p.user_properties = user_properties(g);
    p
}

pub(crate) fn ack_properties(g: &mut Gen) -> AckProperties {
    let mut p = AckProperties::default();
    p.reason_string = maybe(g, string);
    p.user_properties = user_properties(g);
    p
}

pub(crate) fn subscribe_properties(g: &mut Gen) -> SubscribeProperties {
    let mut p = SubscribeProperties::default();
    p.subscription_identifier = maybe(g, subscription_id);
    p.user_properties = user_properties(g);
    p
}

pub(crate) fn unsubscribe_properties(g: &mut Gen) -> UnsubscribeProperties {
    let mut p = UnsubscribeProperties::default();
    p.user_properties = user_properties(g);
    p
}

pub(crate) fn disconnect_properties(g: &mut Gen) -> DisconnectProperties {
    let mut p = DisconnectProperties::default();
    p.session_expiry_interval = maybe(g, u32::arbitrary);
    p.reason_string = maybe(g, string);
    p.server_reference = maybe(g, string);
    p.user_properties = user_properties(g);
    p
}

pub(crate) fn auth_properties(g: &mut Gen) -> AuthProperties {
    let mut p = AuthProperties::default();
    p.authentication_method = maybe(g, string);
    p.authentication_data = maybe(g, binary);
    p.reason_string = maybe(g, string);
    p.user_properties = user_properties(g);
    p
}

/// 5.0 properties from `f`, or the empty set an older version decodes.
fn props<P: Default>(g: &mut Gen, v: ProtocolVersion, f: impl FnOnce(&mut Gen) -> P) -> P {
    if v.is_v5() { f(g) } else { P::default() }
}

// ----------------------------------------------------------------------------------------------
// Packets
// ----------------------------------------------------------------------------------------------

pub(crate) fn connect(g: &mut Gen, v: ProtocolVersion) -> Connect {
    let will = maybe(g, |g| LastWill {
        topic: topic_name(g),
        payload: binary(g),
        qos: qos(g),
        retain: coin(g),
        properties: props(g, v, will_properties),
    });
    let username = maybe(g, string);
    // MQTT-3.1.2-22: 3.1 and 3.1.1 have no password without a user name; 5.0 has.
    let password = if username.is_some() || v.is_v5() { maybe(g, binary) } else { None };
    Connect {
        protocol: v,
        clean_start: coin(g),
        keep_alive: u16::arbitrary(g),
        client_id: string(g),
        will,
        username,
        password,
        properties: props(g, v, connect_properties),
    }
}

pub(crate) fn connack(g: &mut Gen, v: ProtocolVersion) -> ConnAck {
    let reason_code = if v.is_v5() {
        reason_v5(g, PacketType::ConnAck)
    } else {
        ReasonCode::from_v3_connack(below(g, 6) as u8).expect("0..=5 are return codes")
    };
    // MQTT 3.1 has no Session Present flag: its acknowledge flags byte is reserved.
    let session_present = coin(g) && v != ProtocolVersion::V3_1;
    ConnAck { session_present, reason_code, properties: props(g, v, connack_properties) }
}

pub(crate) fn publish(g: &mut Gen, v: ProtocolVersion) -> Publish {
    let qos = qos(g);
    let mut properties = props(g, v, publish_properties);
    // 5.0: an empty topic name stands for a Topic Alias (§3.3.2.3.4).
    let topic = if v.is_v5() && below(g, 6) == 0 {
        properties.topic_alias = Some(nonzero_u16(g));
        ByteString::new()
    } else {
        topic_name(g)
    };
    Publish {
        dup: qos != QoS::AtMostOnce && coin(g),
        qos,
        retain: coin(g),
        topic,
        packet_id: if qos == QoS::AtMostOnce { None } else { Some(packet_id(g)) },
        payload: payload(g),
        properties,
    }
}

pub(crate) fn pub_response(g: &mut Gen, v: ProtocolVersion, kind: PacketType) -> PubResponse {
    let mut p = PubResponse::new(packet_id(g));
    if v.is_v5() {
        p.reason_code = reason_v5(g, kind);
        if coin(g) {
            p.properties = ack_properties(g);
        }
    }
    p
}

pub(crate) fn subscription_options(
    g: &mut Gen,
    v: ProtocolVersion,
    shared: bool,
) -> SubscriptionOptions {
    let mut o = SubscriptionOptions::with_qos(qos(g));
    if v.is_v5() {
        // MQTT-3.8.3-4: no No Local on a shared subscription.
        o.no_local = !shared && coin(g);
        o.retain_as_published = coin(g);
        o.retain_handling = *g
            .choose(&[
                RetainHandling::SendAtSubscribe,
                RetainHandling::SendIfNew,
                RetainHandling::DoNotSend,
            ])
            .expect("x");
    }
    o
}

pub(crate) fn subscribe(g: &mut Gen, v: ProtocolVersion) -> Subscribe {
    let filters = (0..1 + below(g, 4))
        .map(|_| {
            let (filter, shared) = topic_filter(g);
            (filter, subscription_options(g, v, shared))
        })
        .collect();
    Subscribe { packet_id: packet_id(g), filters, properties: props(g, v, subscribe_properties) }
}

pub(crate) fn suback(g: &mut Gen, v: ProtocolVersion) -> SubAck {
    let reason_codes = (0..1 + below(g, 5))
        .map(|_| {
            if v.is_v5() {
                reason_v5(g, PacketType::SubAck)
            } else {
                ReasonCode(*g.choose(&[0x00, 0x01, 0x02, 0x80]).expect("x"))
            }
        })
        .collect();
    SubAck { packet_id: packet_id(g), reason_codes, properties: props(g, v, ack_properties) }
}

pub(crate) fn unsubscribe(g: &mut Gen, v: ProtocolVersion) -> Unsubscribe {
    let filters = (0..1 + below(g, 4)).map(|_| topic_filter(g).0).collect();
    Unsubscribe {
        packet_id: packet_id(g),
        filters,
        properties: props(g, v, unsubscribe_properties),
    }
}

pub(crate) fn unsuback(g: &mut Gen, v: ProtocolVersion) -> UnsubAck {
    let reason_codes = if v.is_v5() {
        (0..1 + below(g, 5)).map(|_| reason_v5(g, PacketType::UnsubAck)).collect()
    } else {
        Vec::new()
    };
    UnsubAck { packet_id: packet_id(g), reason_codes, properties: props(g, v, ack_properties) }
}

pub(crate) fn disconnect(g: &mut Gen, v: ProtocolVersion) -> Disconnect {
    let mut d = Disconnect::default();
    if v.is_v5() {
        d.reason_code = reason_v5(g, PacketType::Disconnect);
        if coin(g) {
            d.properties = disconnect_properties(g);
        }
    }
    d
}

pub(crate) fn auth(g: &mut Gen) -> Auth {
    let mut a = Auth { reason_code: reason_v5(g, PacketType::Auth), ..Auth::default() };
    if coin(g) {
        a.properties = auth_properties(g);
    }
    a
}

/// A valid packet of type `kind` for version `v` (AUTH only exists in 5.0).
pub(crate) fn packet(g: &mut Gen, v: ProtocolVersion, kind: PacketType) -> Packet {
    match kind {
        PacketType::Connect => Packet::Connect(Box::new(connect(g, v))),
        PacketType::ConnAck => Packet::ConnAck(Box::new(connack(g, v))),
        PacketType::Publish => Packet::Publish(publish(g, v)),
        PacketType::PubAck => Packet::PubAck(pub_response(g, v, kind)),
        PacketType::PubRec => Packet::PubRec(pub_response(g, v, kind)),
        PacketType::PubRel => Packet::PubRel(pub_response(g, v, kind)),
        PacketType::PubComp => Packet::PubComp(pub_response(g, v, kind)),
        PacketType::Subscribe => Packet::Subscribe(subscribe(g, v)),
        PacketType::SubAck => Packet::SubAck(suback(g, v)),
        PacketType::Unsubscribe => Packet::Unsubscribe(unsubscribe(g, v)),
        PacketType::UnsubAck => Packet::UnsubAck(unsuback(g, v)),
        PacketType::PingReq => Packet::PingReq,
        PacketType::PingResp => Packet::PingResp,
        PacketType::Disconnect => Packet::Disconnect(disconnect(g, v)),
        PacketType::Auth => {
            assert!(v.is_v5(), "AUTH is MQTT 5.0 only");
            Packet::Auth(auth(g))
        }
    }
}

/// Any valid packet other than CONNECT for version `v`.
pub(crate) fn any_after_connect(g: &mut Gen, v: ProtocolVersion) -> Packet {
    let kinds = if v.is_v5() { &KINDS[1..] } else { &KINDS[1..14] };
    let kind = *g.choose(kinds).expect("x");
    packet(g, v, kind)
}

/// A valid packet of type `KIND` (the fixed header's type number) for protocol level `LEVEL`.
#[derive(Debug, Clone)]
pub(crate) struct Valid<const KIND: u8, const LEVEL: u8>(pub(crate) Packet);

impl<const KIND: u8, const LEVEL: u8> Arbitrary for Valid<KIND, LEVEL> {
    fn arbitrary(g: &mut Gen) -> Self {
        let kind = PacketType::from_header(KIND << 4).expect("a packet type");
        Self(packet(g, version_of_level(LEVEL), kind))
    }
}

/// Any valid packet of any version, CONNECT included.
#[derive(Debug, Clone)]
pub(crate) struct AnyPacket(pub(crate) ProtocolVersion, pub(crate) Packet);

impl Arbitrary for AnyPacket {
    fn arbitrary(g: &mut Gen) -> Self {
        let v = *g.choose(&VERSIONS).expect("x");
        let kinds = if v.is_v5() { &KINDS[..] } else { &KINDS[..14] };
        let kind = *g.choose(kinds).expect("x");
        Self(v, packet(g, v, kind))
    }
}

// ----------------------------------------------------------------------------------------------
// Encoding and decoding
// ----------------------------------------------------------------------------------------------

pub(crate) fn encode(v: ProtocolVersion, packet: &Packet) -> Vec<u8> {
    let mut buf = BytesMut::new();
    packet.encode(v, &mut buf).expect("valid packets encode");
    buf.to_vec()
}

/// Decodes exactly one packet from `bytes` with a client decoder of version `v`, checking that
/// it takes all the bytes.
pub(crate) fn decode(
    v: ProtocolVersion,
    bytes: &[u8],
) -> Result<Option<Packet>, musqratt_proto::DecodeError> {
    let mut buf = BytesMut::from(bytes);
    let packet = Decoder::with_version(v, u32::MAX).decode(&mut buf)?;
    if packet.is_some() {
        assert!(buf.is_empty(), "{} bytes left after the packet", buf.len());
    }
    Ok(packet)
}

/// Formats bytes as hex for assertion messages.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(" ")
}
