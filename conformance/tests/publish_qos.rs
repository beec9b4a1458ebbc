//! PUBLISH and its QoS 0/1/2 flows in both directions (§3.3-3.7, §4.3, §4.4, §4.6).

use musqratt_conformance::*;
use musqratt_proto::mqtt::{PubResponse, ReasonCode};
use musqratt_proto::{PacketId, ProtocolVersion, QoS};

async fn roundtrip(t: &Ctx, version: ProtocolVersion, qos: QoS) {
    let topic = t.topic("x");
    let mut s = t.client(version, "s").await;
    s.subscribe(&topic, qos).await;
    let mut p = t.client(version, "p").await;
    let ack = p.publish(msg(&topic, b"hello", qos)).await;
    if qos != Q0 {
        let ack = ack.expect("acknowledged");
        assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    }
    let got = s.recv_msg().await;
    assert_eq!(&*got.topic, topic);
    assert_eq!(&got.payload[..], b"hello");
    assert_eq!(got.qos, qos);
    assert_eq!(got.packet_id.is_some(), qos != Q0, "MQTT-2.2.1-2: packet id iff QoS > 0");
    assert!(!got.dup);
}

/// MQTT-4.3.1-1, MQTT-2.2.1-2 (3.1.1 MQTT-2.3.1-5): a QoS 0 message is delivered at QoS 0
/// without packet identifier.
#[tokio::test]
async fn v3_qos0_roundtrip() {
    let t = Ctx::new("v3_qos0_roundtrip");
    roundtrip(&t, V3, Q0).await;
}

/// MQTT-4.3.2-4, MQTT-2.2.1-4 (3.1.1 MQTT-4.3.2-2): the receiver of a QoS 1 PUBLISH answers PUBACK with its
/// packet identifier; the server forwards it at QoS 1 with a non-zero packet identifier.
#[tokio::test]
async fn v3_qos1_roundtrip() {
    let t = Ctx::new("v3_qos1_roundtrip");
    roundtrip(&t, V3, Q1).await;
}

/// MQTT-4.3.3-8, MQTT-4.3.3-4, MQTT-4.3.3-11 (3.1.1 MQTT-4.3.3-2): PUBREC, PUBREL, PUBCOMP with the packet
/// identifier of the PUBLISH, both towards the server and from it.
#[tokio::test]
async fn v3_qos2_roundtrip() {
    let t = Ctx::new("v3_qos2_roundtrip");
    roundtrip(&t, V3, Q2).await;
}

/// §4.3.1: QoS 0 in 5.0.
#[tokio::test]
async fn v5_qos0_roundtrip() {
    let t = Ctx::new("v5_qos0_roundtrip");
    roundtrip(&t, V5, Q0).await;
}

/// MQTT-4.3.2-4 (5.0): QoS 1 flow with PUBACK reason code Success.
#[tokio::test]
async fn v5_qos1_roundtrip() {
    let t = Ctx::new("v5_qos1_roundtrip");
    roundtrip(&t, V5, Q1).await;
}

/// MQTT-4.3.3-8 to -11 (5.0): QoS 2 flow with Success reason codes.
#[tokio::test]
async fn v5_qos2_roundtrip() {
    let t = Ctx::new("v5_qos2_roundtrip");
    roundtrip(&t, V5, Q2).await;
}

async fn downgrade(t: &Ctx, pub_qos: QoS, sub_qos: QoS) {
    let topic = t.topic("x");
    let mut s = t.client(V5, "s").await;
    s.subscribe(&topic, sub_qos).await;
    let mut p = t.client(V5, "p").await;
    p.publish(msg(&topic, b"m", pub_qos)).await;
    let got = s.recv_msg().await;
    assert_eq!(got.qos, pub_qos.min(sub_qos), "delivered QoS must be min(publish, subscription)");
}

/// MQTT-3.8.4-8 (3.1.1 §3.8.4): a QoS 2 message on a QoS 1 subscription is delivered at QoS 1.
#[tokio::test]
async fn delivered_qos_min_2_1() {
    let t = Ctx::new("delivered_qos_min_2_1");
    downgrade(&t, Q2, Q1).await;
}

/// MQTT-3.8.4-8: a QoS 1 message on a QoS 0 subscription is delivered at QoS 0.
#[tokio::test]
async fn delivered_qos_min_1_0() {
    let t = Ctx::new("delivered_qos_min_1_0");
    downgrade(&t, Q1, Q0).await;
}

/// MQTT-3.8.4-8: a QoS 0 message on a QoS 2 subscription stays QoS 0 (never upgraded).
#[tokio::test]
async fn delivered_qos_min_0_2() {
    let t = Ctx::new("delivered_qos_min_0_2");
    downgrade(&t, Q0, Q2).await;
}

/// MQTT-2.2.1-4 (3.1.1 MQTT-2.3.1-2): the server uses a distinct unused packet identifier for
/// each in-flight QoS 1 message it sends to a client.
#[tokio::test]
async fn outbound_packet_ids_distinct_in_flight() {
    let t = Ctx::new("outbound_packet_ids_distinct_in_flight");
    let topic = t.topic("x");
    let mut s = t.client(V3, "s").await;
    s.subscribe(&topic, Q1).await;
    let mut p = t.client(V3, "p").await;
    for i in 0..5u8 {
        p.publish(msg(&topic, &[i], Q1)).await;
    }
    let mut ids = Vec::new();
    for i in 0..5u8 {
        let got = s.recv_publish().await;
        assert_eq!(&got.payload[..], &[i], "MQTT-4.6.0-6: order of an ordered topic");
        ids.push(got.packet_id.expect("QoS 1 has a packet id").get());
    }
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "in-flight ids must be distinct: {ids:?}");
}

/// MQTT-4.6.0-5, MQTT-4.6.0-6 (3.1.1 MQTT-4.6.0-6): messages of one topic at the same QoS are forwarded in the
/// order they were published.
#[tokio::test]
async fn qos1_order_preserved() {
    let t = Ctx::new("qos1_order_preserved");
    let topic = t.topic("x");
    let mut s = t.client(V5, "s").await;
    s.subscribe(&topic, Q1).await;
    let mut p = t.client(V5, "p").await;
    for i in 0..20u8 {
        p.publish(msg(&topic, &[i], Q1)).await;
    }
    for i in 0..20u8 {
        assert_eq!(&s.recv_msg().await.payload[..], &[i]);
    }
}

/// MQTT-4.3.3-10 (3.1.1 MQTT-4.3.3-2, method B): a QoS 2 PUBLISH re-sent with DUP before PUBREL
/// is answered with PUBREC again but delivered to subscribers exactly once.
#[tokio::test]
async fn qos2_duplicate_publish_delivered_once() {
    let t = Ctx::new("qos2_duplicate_publish_delivered_once");
    let topic = t.topic("x");
    let mut s = t.client(V3, "s").await;
    s.subscribe(&topic, Q2).await;
    let mut p = t.client(V3, "p").await;
    let id = PacketId::new(7).unwrap();
    let mut m = msg(&topic, b"once", Q2);
    m.packet_id = Some(id);
    p.send(&Packet::Publish(m.clone()));
    assert!(matches!(p.recv().await, Packet::PubRec(r) if r.packet_id == id));
    m.dup = true;
    p.send(&Packet::Publish(m));
    assert!(matches!(p.recv().await, Packet::PubRec(r) if r.packet_id == id));
    p.send(&Packet::PubRel(PubResponse::new(id)));
    assert!(matches!(p.recv().await, Packet::PubComp(r) if r.packet_id == id));
    let got = s.drain_msgs().await;
    assert_eq!(got.len(), 1, "exactly once: {got:?}");
}

/// MQTT-4.3.3-12: once PUBCOMP is sent the packet identifier is
/// free again: a new QoS 2 PUBLISH reusing it is a new message and is delivered again.
#[tokio::test]
async fn qos2_packet_id_reusable_after_pubcomp() {
    let t = Ctx::new("qos2_packet_id_reusable_after_pubcomp");
    let topic = t.topic("x");
    let mut s = t.client(V5, "s").await;
    s.subscribe(&topic, Q2).await;
    let mut p = t.client(V5, "p").await;
    for payload in [b"one", b"two"] {
        let mut m = msg(&topic, payload, Q2);
        m.packet_id = PacketId::new(9);
        p.publish(m).await;
    }
    let got: Vec<_> = s.drain_msgs().await.into_iter().map(|m| m.payload).collect();
    assert_eq!(got, vec![&b"one"[..], &b"two"[..]]);
}

/// MQTT-4.4.0-1 and MQTT-3.3.1-1 (3.1.1): on resuming a session (CleanSession 0) the server
/// re-sends unacknowledged QoS 1 PUBLISH packets with their original packet identifier and DUP 1.
#[tokio::test]
async fn v3_qos1_redelivered_with_dup_on_resume() {
    let t = Ctx::new("v3_qos1_redelivered_with_dup_on_resume");
    let topic = t.topic("x");
    let (mut s, _) = t.session(V3, "s", false, 0).await;
    s.subscribe(&topic, Q1).await;
    let mut p = t.client(V3, "p").await;
    p.publish(msg(&topic, b"again", Q1)).await;
    let first = s.recv_publish().await; // not acknowledged
    assert!(!first.dup);
    s.drop_connection().await;
    sleep_ms(200).await;
    let (mut s, ack) = t.session(V3, "s", false, 0).await;
    assert!(ack.session_present);
    let again = s.recv_msg().await;
    assert_eq!(again.packet_id, first.packet_id, "original packet identifier");
    assert!(again.dup, "MQTT-3.3.1-1: DUP on re-delivery");
    assert_eq!(&again.payload[..], b"again");
    s.disconnect().await;
    t.session(V3, "s", true, 0).await.0.disconnect().await;
}

/// MQTT-4.4.0-1 (5.0): on resuming a session (Clean Start 0) unacknowledged QoS 2 PUBLISH
/// packets are re-sent with DUP 1 and the original packet identifier.
#[tokio::test]
async fn v5_qos2_redelivered_with_dup_on_resume() {
    let t = Ctx::new("v5_qos2_redelivered_with_dup_on_resume");
    let topic = t.topic("x");
    let (mut s, _) = t.session(V5, "s", false, 30).await;
    s.subscribe(&topic, Q2).await;
    let mut p = t.client(V5, "p").await;
    p.publish(msg(&topic, b"again", Q2)).await;
    let first = s.recv_publish().await;
    s.drop_connection().await;
    sleep_ms(200).await;
    let (mut s, ack) = t.session(V5, "s", false, 0).await;
    assert!(ack.session_present);
    let again = s.recv_msg().await;
    assert_eq!(again.packet_id, first.packet_id);
    assert!(again.dup, "MQTT-3.3.1-1");
    s.expect_silence().await;
}

/// MQTT-4.4.0-1 (3.1.1): when the client had sent PUBREC but not received PUBREL, the server
/// re-sends the PUBREL (not the PUBLISH) on session resume.
#[tokio::test]
async fn v3_pubrel_resent_on_resume() {
    let t = Ctx::new("v3_pubrel_resent_on_resume");
    let topic = t.topic("x");
    let (mut s, _) = t.session(V3, "s", false, 0).await;
    s.subscribe(&topic, Q2).await;
    let mut p = t.client(V3, "p").await;
    p.publish(msg(&topic, b"m", Q2)).await;
    let first = s.recv_publish().await;
    let id = first.packet_id.unwrap();
    s.send(&Packet::PubRec(PubResponse::new(id)));
    assert!(matches!(s.recv().await, Packet::PubRel(r) if r.packet_id == id));
    s.drop_connection().await;
    sleep_ms(200).await;
    let (mut s, ack) = t.session(V3, "s", false, 0).await;
    assert!(ack.session_present);
    assert!(matches!(s.recv().await, Packet::PubRel(r) if r.packet_id == id), "PUBREL re-sent");
    s.send(&Packet::PubComp(PubResponse::new(id)));
    s.expect_silence().await;
    s.disconnect().await;
    t.session(V3, "s", true, 0).await.0.disconnect().await;
}

/// MQTT-3.3.1-4: a PUBLISH with both QoS bits set is malformed: the server closes the
/// connection.
#[tokio::test]
async fn publish_qos3_closes() {
    let t = Ctx::new("publish_qos3_closes");
    let mut c = t.client(V3, "a").await;
    c.send_raw(b"\x36\x06\x00\x01a\x00\x01x");
    c.expect_closed().await;
}

/// MQTT-3.3.4-1 (3.1.1 MQTT-3.3.4-1): the server answers a QoS 1 PUBLISH even when no client is
/// subscribed; 5.0 may say 0x10 No matching subscribers instead of Success.
#[tokio::test]
async fn v5_puback_without_subscribers() {
    let t = Ctx::new("v5_puback_without_subscribers");
    let mut p = t.client(V5, "p").await;
    let ack = p.publish(msg(&t.topic("nobody"), b"m", Q1)).await.unwrap();
    assert!(
        [ReasonCode::SUCCESS, ReasonCode::NO_MATCHING_SUBSCRIBERS].contains(&ack.reason_code),
        "{ack:?}"
    );
}

/// MQTT-4.3.3-11 (5.0): a PUBREL is answered with a PUBCOMP with the same packet identifier,
/// even for an unknown identifier; §3.7.2.1 then allows 0x92 Packet Identifier not found (or
/// Success: the spec does not require 0x92).
#[tokio::test]
async fn v5_pubrel_unknown_id_answered() {
    let t = Ctx::new("v5_pubrel_unknown_id_answered");
    let mut p = t.client(V5, "p").await;
    let id = PacketId::new(4242).unwrap();
    p.send(&Packet::PubRel(PubResponse::new(id)));
    match p.recv().await {
        Packet::PubComp(c) => {
            assert_eq!(c.packet_id, id);
            let allowed = [ReasonCode::SUCCESS, ReasonCode::PACKET_IDENTIFIER_NOT_FOUND];
            assert!(allowed.contains(&c.reason_code), "{c:?}");
        }
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
}
