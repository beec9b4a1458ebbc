//! Malformed packets and protocol violations: the server closes the connection (§4.8 of 3.1.1,
//! §4.13 of 5.0), in 5.0 possibly after a DISCONNECT with 0x81 Malformed Packet or 0x82 Protocol
//! Error (or a more specific code). Invalid filters may instead be refused in SUBACK.

use musqratt_conformance::*;
use musqratt_proto::ProtocolVersion;
use musqratt_proto::mqtt::ReasonCode;

/// A packet with this first byte and body, Remaining Length computed.
fn packet(header: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![header];
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// A length-prefixed string of raw bytes.
fn s(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Connects, sends `bytes` and asserts the connection is closed; a 5.0 DISCONNECT before the
/// close must carry one of `reasons` (any error code when empty).
async fn refused(t: &Ctx, version: ProtocolVersion, bytes: &[u8], reasons: &[ReasonCode]) {
    let mut c = t.client(version, "c").await;
    c.send_raw(bytes);
    if let Some(reason) = c.expect_closed().await {
        if reasons.is_empty() {
            assert!(reason.is_error(), "DISCONNECT {reason:?}");
        } else {
            assert!(
                reasons.contains(&reason),
                "DISCONNECT {reason:?}, expected one of {reasons:?}"
            );
        }
    }
}

const MALFORMED: ReasonCode = ReasonCode::MALFORMED_PACKET;
const PROTOCOL: ReasonCode = ReasonCode::PROTOCOL_ERROR;

/// Sends a SUBSCRIBE with `filter` and accepts a close or a SUBACK failure code in `codes`.
async fn filter_refused(t: &Ctx, version: ProtocolVersion, filter: &[u8], codes: &[ReasonCode]) {
    let mut c = t.client(version, "c").await;
    let props: &[u8] = if version.is_v5() { &[0] } else { &[] };
    c.send_raw(&packet(0x82, &cat(&[&[0, 1], props, &s(filter), &[1]])));
    match c.next_event(RECV_TIMEOUT).await {
        Event::Packet(Packet::SubAck(ack)) => {
            assert_eq!(ack.reason_codes.len(), 1);
            assert!(codes.contains(&ack.reason_codes[0]), "SUBACK {:?}", ack.reason_codes);
        }
        Event::Packet(Packet::Disconnect(d)) if version.is_v5() => {
            assert!(d.reason_code.is_error());
            c.expect_closed().await;
        }
        Event::Closed => {}
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// MQTT-3.8.1-1: SUBSCRIBE fixed-header flags must be 0010; flags 0000 close the connection.
#[tokio::test]
async fn subscribe_reserved_flags() {
    let t = Ctx::new("subscribe_reserved_flags");
    let body = cat(&[&[0, 1], &s(t.topic("x").as_bytes()), &[0]]);
    refused(&t, V3, &packet(0x80, &body), &[]).await;
}

/// MQTT-2.1.3-1 (3.1.1 MQTT-2.2.2-2): PINGREQ with non-zero flags is malformed.
#[tokio::test]
async fn pingreq_reserved_flags() {
    let t = Ctx::new("pingreq_reserved_flags");
    if t.deviation("mosquitto", "Mosquitto 2.0.11 answers a PINGREQ with flags 0001 with PINGRESP")
    {
        return;
    }
    refused(&t, V5, &[0xC1, 0x00], &[MALFORMED, PROTOCOL]).await;
}

/// MQTT-3.6.1-1: PUBREL fixed-header flags must be 0010.
#[tokio::test]
async fn pubrel_reserved_flags() {
    let t = Ctx::new("pubrel_reserved_flags");
    refused(&t, V3, &[0x60, 0x02, 0x00, 0x01], &[]).await;
}

/// MQTT-3.10.1-1: UNSUBSCRIBE fixed-header flags must be 0010.
#[tokio::test]
async fn unsubscribe_reserved_flags() {
    let t = Ctx::new("unsubscribe_reserved_flags");
    let body = cat(&[&[0, 1], &[0], &s(b"a")]);
    refused(&t, V5, &packet(0xA0, &body), &[MALFORMED, PROTOCOL]).await;
}

/// §1.5.5 (5.0; 3.1.1 §2.2.3): a Remaining Length of more than four bytes is malformed.
#[tokio::test]
async fn remaining_length_five_bytes() {
    let t = Ctx::new("remaining_length_five_bytes");
    refused(&t, V3, &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F], &[]).await;
}

/// §2.1.4, §4.13: a Remaining Length too short for the fields it must hold (a topic length
/// pointing past the end of the packet) is malformed.
#[tokio::test]
async fn remaining_length_too_short() {
    let t = Ctx::new("remaining_length_too_short");
    refused(&t, V5, b"\x32\x03\x00\x05a", &[MALFORMED, PROTOCOL]).await;
}

/// MQTT-1.5.3-1 (3.1.1; 5.0 MQTT-1.5.4-1): a topic that is not well-formed UTF-8 closes the
/// connection.
#[tokio::test]
async fn topic_invalid_utf8() {
    let t = Ctx::new("topic_invalid_utf8");
    let body = cat(&[&s(b"cf/\xc3\x28"), b"m"]);
    refused(&t, V3, &packet(0x30, &body), &[]).await;
}

/// MQTT-1.5.3-1 (3.1.1; 5.0 MQTT-1.5.4-1): UTF-8 encodings of surrogates (U+D800..U+DFFF) are
/// ill-formed.
#[tokio::test]
async fn topic_utf8_surrogate() {
    let t = Ctx::new("topic_utf8_surrogate");
    let body = cat(&[&s(b"cf/\xed\xa0\x80"), &[0], b"m"]);
    refused(&t, V5, &packet(0x30, &body), &[MALFORMED, PROTOCOL, ReasonCode::TOPIC_NAME_INVALID])
        .await;
}

/// MQTT-1.5.3-2 (3.1.1; 5.0 MQTT-1.5.4-2, MQTT-4.7.3-2): a string must not contain U+0000; a topic with it
/// closes the connection.
#[tokio::test]
async fn topic_with_nul() {
    let t = Ctx::new("topic_with_nul");
    let body = cat(&[&s(b"cf/a\x00b"), b"m"]);
    refused(&t, V3, &packet(0x30, &body), &[]).await;
}

/// MQTT-1.5.3-1 (3.1.1 MQTT-1.5.3-1): a Client Identifier that is not UTF-8 makes the server
/// close the connection (possibly after CONNACK 0x02 / 0x85).
#[tokio::test]
async fn client_id_invalid_utf8() {
    let t = Ctx::new("client_id_invalid_utf8");
    let mut c = t.open(V3).await;
    c.send_raw(&packet(0x10, &cat(&[&s(b"MQTT"), &[4, 2, 0, 30], &s(b"id\xff")])));
    match c.next_event(RECV_TIMEOUT).await {
        Event::Closed => {}
        Event::Packet(Packet::ConnAck(ack)) => {
            assert!(ack.reason_code.is_error(), "accepted: {ack:?}");
            c.expect_closed().await;
        }
        other => panic!("expected a close, got {other:?}"),
    }
}

/// MQTT-3.3.2-2 (3.1.1 MQTT-3.3.2-2): a Topic Name must not contain wildcards: a PUBLISH to
/// "a/+" closes the connection.
#[tokio::test]
async fn v3_publish_wildcard_topic() {
    let t = Ctx::new("v3_publish_wildcard_topic");
    let body = cat(&[&s(t.topic("+").as_bytes()), b"m"]);
    refused(&t, V3, &packet(0x30, &body), &[]).await;
}

/// MQTT-3.3.2-2 (5.0): a PUBLISH to "a/#" is refused: DISCONNECT 0x90 Topic Name invalid (or
/// 0x81/0x82) and close.
#[tokio::test]
async fn v5_publish_wildcard_topic() {
    let t = Ctx::new("v5_publish_wildcard_topic");
    let body = cat(&[&s(t.topic("#").as_bytes()), &[0], b"m"]);
    let codes = [ReasonCode::TOPIC_NAME_INVALID, MALFORMED, PROTOCOL];
    refused(&t, V5, &packet(0x30, &body), &codes).await;
}

/// MQTT-4.7.1-1 (3.1.1 MQTT-4.7.1-2): "#" must be the last character of a filter: "a/#/b" is
/// refused by closing the connection or with SUBACK 0x80.
#[tokio::test]
async fn v3_subscribe_hash_not_last() {
    let t = Ctx::new("v3_subscribe_hash_not_last");
    filter_refused(&t, V3, t.topic("#/b").as_bytes(), &[ReasonCode(0x80)]).await;
}

/// MQTT-4.7.1-1 (5.0): "a/#/b" is refused: SUBACK 0x8F Topic Filter invalid or a close.
#[tokio::test]
async fn v5_subscribe_hash_not_last() {
    let t = Ctx::new("v5_subscribe_hash_not_last");
    filter_refused(&t, V5, t.topic("#/b").as_bytes(), &[ReasonCode::TOPIC_FILTER_INVALID]).await;
}

/// MQTT-4.7.1-2 (5.0; 3.1.1 MQTT-4.7.1-3): "+" must occupy an entire level: "a+" is refused.
#[tokio::test]
async fn subscribe_plus_not_whole_level() {
    let t = Ctx::new("subscribe_plus_not_whole_level");
    let filter = format!("{}a+", t.topic(""));
    filter_refused(&t, V5, filter.as_bytes(), &[ReasonCode::TOPIC_FILTER_INVALID]).await;
}

/// MQTT-3.8.3-2 (5.0; 3.1.1 MQTT-3.8.3-3): a SUBSCRIBE without any filter is a protocol violation.
#[tokio::test]
async fn subscribe_without_filters() {
    let t = Ctx::new("subscribe_without_filters");
    refused(&t, V3, &packet(0x82, &[0, 1]), &[]).await;
}

/// MQTT-3.10.3-2 (3.1.1 MQTT-3.10.3-2): an UNSUBSCRIBE without any filter is a protocol
/// violation.
#[tokio::test]
async fn unsubscribe_without_filters() {
    let t = Ctx::new("unsubscribe_without_filters");
    refused(&t, V5, &packet(0xA2, &[0, 1, 0]), &[MALFORMED, PROTOCOL]).await;
}

/// MQTT-2.2.1-3 (3.1.1 MQTT-2.3.1-1): SUBSCRIBE needs a non-zero packet identifier.
#[tokio::test]
async fn subscribe_packet_id_zero() {
    let t = Ctx::new("subscribe_packet_id_zero");
    let body = cat(&[&[0, 0], &s(t.topic("x").as_bytes()), &[0]]);
    refused(&t, V3, &packet(0x82, &body), &[]).await;
}

/// MQTT-2.2.1-3 (3.1.1 MQTT-2.3.1-1): a QoS 1 PUBLISH needs a non-zero packet identifier.
#[tokio::test]
async fn publish_qos1_packet_id_zero() {
    let t = Ctx::new("publish_qos1_packet_id_zero");
    let body = cat(&[&s(t.topic("x").as_bytes()), &[0, 0], &[0], b"m"]);
    refused(&t, V5, &packet(0x32, &body), &[MALFORMED, PROTOCOL]).await;
}

/// §2.1.2: packet type 0 is reserved and forbidden.
#[tokio::test]
async fn reserved_packet_type_0() {
    let t = Ctx::new("reserved_packet_type_0");
    refused(&t, V3, &[0x00, 0x00], &[]).await;
}

/// §2.2.1 (3.1.1): packet type 15 is reserved in 3.1.1 (AUTH exists only in 5.0).
#[tokio::test]
async fn v3_auth_packet_type_reserved() {
    let t = Ctx::new("v3_auth_packet_type_reserved");
    refused(&t, V3, &[0xF0, 0x00], &[]).await;
}

/// MQTT-3.8.3-5 (5.0): the reserved bits 6-7 of the Subscription Options must be 0.
#[tokio::test]
async fn v5_subscription_options_reserved_bits() {
    let t = Ctx::new("v5_subscription_options_reserved_bits");
    let body = cat(&[&[0, 1, 0], &s(t.topic("x").as_bytes()), &[0xC1]]);
    refused(&t, V5, &packet(0x82, &body), &[MALFORMED, PROTOCOL]).await;
}

/// MQTT-3.8.3-4 (3.1.1; 5.0 §3.8.3.1): a requested QoS of 3 in SUBSCRIBE is malformed.
#[tokio::test]
async fn subscribe_qos3() {
    let t = Ctx::new("subscribe_qos3");
    let body = cat(&[&[0, 1], &s(t.topic("x").as_bytes()), &[3]]);
    refused(&t, V3, &packet(0x82, &body), &[]).await;
}

/// §2.2.2.2 (5.0): a property not allowed in the packet (Session Expiry Interval in PUBLISH) is
/// a Malformed Packet.
#[tokio::test]
async fn v5_property_not_allowed_in_publish() {
    let t = Ctx::new("v5_property_not_allowed_in_publish");
    let body = cat(&[&s(t.topic("x").as_bytes()), &[5, 0x11, 0, 0, 0, 10], b"m"]);
    refused(&t, V5, &packet(0x30, &body), &[MALFORMED, PROTOCOL]).await;
}

/// §2.2.2.2 (5.0): including a property that may appear once (Message Expiry Interval) twice
/// is a Protocol Error.
#[tokio::test]
async fn v5_duplicate_property() {
    let t = Ctx::new("v5_duplicate_property");
    let body = cat(&[&s(t.topic("x").as_bytes()), &[10, 2, 0, 0, 0, 9, 2, 0, 0, 0, 9], b"m"]);
    refused(&t, V5, &packet(0x30, &body), &[MALFORMED, PROTOCOL]).await;
}

/// MQTT-4.7.3-1 (5.0 and 3.1.1): a Topic Name must be at least one character long.
#[tokio::test]
async fn v3_publish_empty_topic() {
    let t = Ctx::new("v3_publish_empty_topic");
    refused(&t, V3, &packet(0x30, &cat(&[&s(b""), b"m"])), &[]).await;
}

/// MQTT-3.3.2-1 and §3.3.2.3.4 (5.0): an empty Topic Name without Topic Alias is a Protocol
/// Error.
#[tokio::test]
async fn v5_publish_empty_topic_without_alias() {
    let t = Ctx::new("v5_publish_empty_topic_without_alias");
    let codes = [MALFORMED, PROTOCOL, ReasonCode::TOPIC_NAME_INVALID];
    refused(&t, V5, &packet(0x30, &cat(&[&s(b""), &[0], b"m"])), &codes).await;
}
