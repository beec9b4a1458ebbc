//! MQTT 5.0 properties and options: message expiry, forwarded PUBLISH properties, subscription
//! identifiers, No Local, Receive Maximum and Maximum Packet Size (§3.1.2.11, §3.3.2.3, §3.8.3).

use core::time::Duration;

use bytes::Bytes;
use musqratt_conformance::*;
use musqratt_proto::mqtt::{ReasonCode, SubscribeProperties, SubscriptionOptions};

fn sub_id(id: u32) -> SubscribeProperties {
    let mut p = SubscribeProperties::default();
    p.subscription_identifier = Some(id);
    p
}

/// MQTT-3.3.2-6: the server forwards the Message Expiry Interval minus the time the message
/// waited (here: at most what was sent, and more than 0).
#[tokio::test]
async fn message_expiry_forwarded() {
    let t = Ctx::new("message_expiry_forwarded");
    let topic = t.topic("x");
    let mut s = t.client(V5, "s").await;
    s.subscribe(&topic, Q1).await;
    let mut p = t.client(V5, "p").await;
    let mut m = msg(&topic, b"m", Q1);
    m.properties.message_expiry_interval = Some(60);
    p.publish(m).await;
    let got = s.recv_msg().await;
    let left = got.properties.message_expiry_interval.expect("MQTT-3.3.2-6: expiry forwarded");
    assert!((58..=60).contains(&left), "remaining expiry {left}");
}

/// MQTT-3.3.2-6: a message that waited in an offline session is forwarded with its remaining
/// Message Expiry Interval (sent 10, waited about 2 s).
#[tokio::test]
async fn message_expiry_decremented_while_queued() {
    let t = Ctx::new("message_expiry_decremented_while_queued");
    let topic = t.topic("x");
    let (mut s, _) = t.session(V5, "s", false, 30).await;
    s.subscribe(&topic, Q1).await;
    s.disconnect().await;
    let mut p = t.client(V5, "p").await;
    let mut m = msg(&topic, b"m", Q1);
    m.properties.message_expiry_interval = Some(10);
    p.publish(m).await;
    sleep_ms(2100).await;
    let (mut s, _) = t.session(V5, "s", false, 0).await;
    let got = s.recv_msg().await;
    let left = got.properties.message_expiry_interval.expect("expiry forwarded");
    assert!((6..=9).contains(&left), "remaining expiry {left} after ~2 s");
}

/// MQTT-3.3.2-5: a message whose Message Expiry Interval passed before onward delivery started
/// is not delivered from an offline session's queue; one without expiry still is.
#[tokio::test]
async fn expired_message_not_delivered_from_queue() {
    let t = Ctx::new("expired_message_not_delivered_from_queue");
    let topic = t.topic("x");
    let (mut s, _) = t.session(V5, "s", false, 30).await;
    s.subscribe(&topic, Q1).await;
    s.disconnect().await;
    let mut p = t.client(V5, "p").await;
    let mut m = msg(&topic, b"expires", Q1);
    m.properties.message_expiry_interval = Some(1);
    p.publish(m).await;
    p.publish(msg(&topic, b"stays", Q1)).await;
    sleep_ms(2200).await;
    let (mut s, _) = t.session(V5, "s", false, 0).await;
    let got: Vec<_> = s.drain_msgs().await.into_iter().map(|m| m.payload).collect();
    assert_eq!(got, vec![&b"stays"[..]]);
}

/// MQTT-3.3.2-5 with §3.3.1.3: an expired retained message is not sent to new subscribers.
#[tokio::test]
async fn expired_retained_not_delivered() {
    let t = Ctx::new("expired_retained_not_delivered");
    let topic = t.topic("x");
    let mut p = t.client(V5, "p").await;
    let mut m = msg(&topic, b"r", Q1);
    m.retain = true;
    m.properties.message_expiry_interval = Some(1);
    p.publish(m).await;
    sleep_ms(2200).await;
    let mut s = t.client(V5, "s").await;
    s.subscribe(&topic, Q1).await;
    s.expect_silence().await;
}

/// MQTT-3.3.2-17, MQTT-3.3.2-18: User Properties are forwarded unaltered and in order
/// (including repeated names).
#[tokio::test]
async fn user_properties_forwarded_in_order() {
    let t = Ctx::new("user_properties_forwarded_in_order");
    let topic = t.topic("x");
    let mut s = t.client(V5, "s").await;
    s.subscribe(&topic, Q0).await;
    let mut p = t.client(V5, "p").await;
    let mut m = msg(&topic, b"m", Q1);
    let props = vec![("z".into(), "1".into()), ("a".into(), "2".into()), ("z".into(), "0".into())];
    m.properties.user_properties.clone_from(&props);
    p.publish(m).await;
    assert_eq!(s.recv_msg().await.properties.user_properties, props);
}

/// MQTT-3.3.2-15, MQTT-3.3.2-16: Response Topic and Correlation Data are forwarded unaltered.
#[tokio::test]
async fn response_topic_and_correlation_data_forwarded() {
    let t = Ctx::new("response_topic_and_correlation_data_forwarded");
    let topic = t.topic("x");
    let mut s = t.client(V5, "s").await;
    s.subscribe(&topic, Q1).await;
    let mut p = t.client(V5, "p").await;
    let mut m = msg(&topic, b"m", Q1);
    m.properties.response_topic = Some(t.topic("reply").into());
    m.properties.correlation_data = Some(Bytes::from_static(b"\x00\xffid"));
    p.publish(m.clone()).await;
    let got = s.recv_msg().await;
    assert_eq!(got.properties.response_topic, m.properties.response_topic);
    assert_eq!(got.properties.correlation_data, m.properties.correlation_data);
}

/// MQTT-3.3.2-20, MQTT-3.3.2-4: Content Type and Payload Format Indicator are forwarded
/// unaltered.
#[tokio::test]
async fn content_type_and_payload_format_forwarded() {
    let t = Ctx::new("content_type_and_payload_format_forwarded");
    let topic = t.topic("x");
    let mut s = t.client(V5, "s").await;
    s.subscribe(&topic, Q1).await;
    let mut p = t.client(V5, "p").await;
    let mut m = msg(&topic, "héllo".as_bytes(), Q1);
    m.properties.content_type = Some("text/plain; charset=utf-8".into());
    m.properties.payload_format_indicator = Some(true);
    p.publish(m.clone()).await;
    let got = s.recv_msg().await;
    assert_eq!(got.properties.content_type, m.properties.content_type);
    assert_eq!(got.properties.payload_format_indicator, Some(true));
}

/// MQTT-3.3.4-3: a message matching a subscription made with a Subscription Identifier carries
/// that identifier.
#[tokio::test]
async fn subscription_identifier_single() {
    let t = Ctx::new("subscription_identifier_single");
    let topic = t.topic("x");
    let mut s = t.client(V5, "s").await;
    s.subscribe_with(&[(&t.topic("+"), opts(Q1))], sub_id(4242)).await;
    let mut p = t.client(V5, "p").await;
    p.publish(msg(&topic, b"m", Q1)).await;
    let got = s.recv_msg().await;
    assert_eq!(got.properties.subscription_identifiers.as_slice(), &[4242]);
}

/// MQTT-3.3.4-4, MQTT-3.3.4-5: with overlapping subscriptions with identifiers, a single copy
/// carries all of them (any order), or each copy carries its subscription's identifier.
#[tokio::test]
async fn subscription_identifiers_overlapping() {
    let t = Ctx::new("subscription_identifiers_overlapping");
    let topic = t.topic("a/b");
    let mut s = t.client(V5, "s").await;
    s.subscribe_with(&[(&t.topic("a/+"), opts(Q1))], sub_id(1)).await;
    s.subscribe_with(&[(&t.topic("a/#"), opts(Q1))], sub_id(2)).await;
    let mut p = t.client(V5, "p").await;
    p.publish(msg(&topic, b"m", Q1)).await;
    let got = s.drain_msgs().await;
    let mut ids: Vec<Vec<u32>> =
        got.iter().map(|m| m.properties.subscription_identifiers.to_vec()).collect();
    for v in &mut ids {
        v.sort_unstable();
    }
    match ids.len() {
        1 => assert_eq!(ids[0], vec![1, 2], "MQTT-3.3.4-4: single copy with both ids"),
        2 => {
            ids.sort();
            assert_eq!(ids, vec![vec![1], vec![2]], "MQTT-3.3.4-5: one id per copy");
        }
        n => panic!("expected 1 or 2 copies, got {n}"),
    }
}

/// MQTT-3.3.4-3 (a contrario): a subscription made without identifier adds none.
#[tokio::test]
async fn no_subscription_identifier_when_none_given() {
    let t = Ctx::new("no_subscription_identifier_when_none_given");
    let topic = t.topic("x");
    let mut s = t.client(V5, "s").await;
    s.subscribe(&topic, Q0).await;
    let mut p = t.client(V5, "p").await;
    p.publish(msg(&topic, b"m", Q1)).await;
    assert!(s.recv_msg().await.properties.subscription_identifiers.is_empty());
}

/// MQTT-3.8.3-3: with No Local the server does not forward the client's own publications to it;
/// other clients' publications still arrive.
#[tokio::test]
async fn no_local() {
    let t = Ctx::new("no_local");
    let topic = t.topic("x");
    let mut s = t.client(V5, "s").await;
    let o = SubscriptionOptions { no_local: true, ..opts(Q1) };
    s.subscribe_with(&[(&topic, o)], Default::default()).await;
    s.publish(msg(&topic, b"own", Q1)).await;
    let mut p = t.client(V5, "p").await;
    p.publish(msg(&topic, b"other", Q1)).await;
    let got: Vec<_> = s.drain_msgs().await.into_iter().map(|m| m.payload).collect();
    assert_eq!(got, vec![&b"other"[..]]);
}

/// MQTT-3.3.4-9, MQTT-4.9.0-2 (§4.9): the server does not send more unacknowledged QoS 1
/// messages than the client's Receive Maximum; an acknowledgement lets the next one through.
#[tokio::test]
async fn receive_maximum_flow_control() {
    let t = Ctx::new("receive_maximum_flow_control");
    if t.deviation("mosquitto", "Mosquitto 2.0.11 with Receive Maximum 2 sends a third and a fourth QoS 1 message after the first PUBACK while the second is still unacknowledged (3 in flight)") {
        return;
    }
    let topic = t.topic("x");
    let mut conn = t.conn(V5, "s");
    conn.properties.receive_maximum = Some(2);
    let (mut s, _) = t.connect_ok(conn).await;
    s.subscribe(&topic, Q1).await;
    let mut p = t.client(V5, "p").await;
    for i in 0..5u8 {
        p.publish(msg(&topic, &[i], Q1)).await;
    }
    let a = s.recv_publish().await;
    let b = s.recv_publish().await;
    assert_eq!((&a.payload[..], &b.payload[..]), (&[0][..], &[1][..]));
    s.expect_silence().await;
    s.ack(&a).await;
    let c = s.recv_publish().await;
    assert_eq!(&c.payload[..], &[2]);
    s.expect_silence().await;
    s.ack(&b).await;
    s.ack(&c).await;
    let rest: Vec<_> = s.drain_msgs().await.into_iter().map(|m| m.payload).collect();
    assert_eq!(rest, vec![&[3][..], &[4][..]]);
}

/// MQTT-3.1.2-27, MQTT-3.1.2-28: the server does not send the client a packet larger than the
/// client's Maximum Packet Size; it discards it and goes on with the next message.
#[tokio::test]
async fn maximum_packet_size_respected() {
    let t = Ctx::new("maximum_packet_size_respected");
    let topic = t.topic("x");
    let mut conn = t.conn(V5, "s");
    conn.properties.maximum_packet_size = Some(128);
    let (mut s, _) = t.connect_ok(conn).await;
    s.subscribe(&topic, Q1).await;
    let mut p = t.client(V5, "p").await;
    p.publish(msg(&topic, &[b'x'; 400], Q1)).await;
    p.publish(msg(&topic, b"small", Q1)).await;
    let got: Vec<_> = s.drain_msgs().await.into_iter().map(|m| m.payload).collect();
    assert_eq!(got, vec![&b"small"[..]]);
}

/// MQTT-3.2.2-15 with §3.1.2.11.4 and §4.13: a packet larger than the Maximum Packet Size the
/// server advertised in CONNACK is a protocol violation: DISCONNECT 0x95 Packet too large (or
/// a plain close).
#[tokio::test]
async fn packet_over_server_maximum_0x95() {
    let t = Ctx::new("packet_over_server_maximum_0x95");
    let (mut c, ack) = t.connect_ok(t.conn(V5, "a")).await;
    let Some(max) = ack.properties.maximum_packet_size else {
        eprintln!("SKIP packet_over_server_maximum_0x95: the broker advertises no maximum");
        return;
    };
    let size = usize::try_from(max).unwrap() + 16;
    let mut bytes = bytes::BytesMut::new();
    Packet::Publish(msg(&t.topic("x"), &vec![0u8; size], Q0)).encode(V5, &mut bytes).unwrap();
    c.send_raw(&bytes); // the broker may close before reading it all

    if let Some(reason) = c.expect_closed_within(Duration::from_secs(4)).await {
        assert_eq!(reason, ReasonCode::PACKET_TOO_LARGE);
    }
}

/// §3.3.2.3.2 and MQTT-3.3.2-4 (Payload Format Indicator): a PUBLISH with Payload Format Indicator 1
/// and a payload that is not UTF-8 may be refused with 0x99 Payload format invalid; a server that
/// does not check forwards it unchanged. Either way it must not forward a modified payload.
#[tokio::test]
async fn payload_format_invalid_refused_or_forwarded_unchanged() {
    let t = Ctx::new("payload_format_invalid_refused_or_forwarded_unchanged");
    let topic = t.topic("x");
    let mut s = t.client(V5, "s").await;
    s.subscribe(&topic, Q1).await;
    let mut p = t.client(V5, "p").await;
    let mut m = msg(&topic, b"\xff\xfe", Q1);
    m.properties.payload_format_indicator = Some(true);
    let ack = p.publish(m).await.expect("PUBACK");
    if ack.reason_code == ReasonCode::SUCCESS {
        assert_eq!(&s.recv_msg().await.payload[..], b"\xff\xfe");
    } else {
        assert_eq!(ack.reason_code, ReasonCode::PAYLOAD_FORMAT_INVALID);
        s.expect_silence().await;
    }
}

/// MQTT-3.3.2-14: "The Response Topic MUST NOT contain wildcard characters." A PUBLISH breaking it
/// is a Protocol Error (§4.13): the server closes the connection, possibly after DISCONNECT (0x82
/// from MusQraTT, in-process), and forwards nothing.
#[tokio::test]
async fn response_topic_with_wildcard_closes() {
    let t = Ctx::new("response_topic_with_wildcard_closes");
    if t.deviation(
        "mosquitto",
        "Mosquitto 2.0.11 acknowledges and forwards a PUBLISH whose Response Topic is reply/+",
    ) {
        return;
    }
    let topic = t.topic("x");
    let mut s = t.client(V5, "s").await;
    s.subscribe(&topic, Q1).await;
    for (who, response_topic) in [("p1", "reply/+"), ("p2", "reply/#")] {
        let mut p = t.client(V5, who).await;
        let mut m = msg(&topic, b"request", Q1);
        m.packet_id = Some(p.next_pid());
        m.properties.response_topic = Some(response_topic.into());
        p.send(&Packet::Publish(m));
        let reason = p.expect_closed().await;
        if let Some(reason) = reason {
            assert!(reason.is_error(), "DISCONNECT {reason:?}");
        }
        if in_process() {
            assert_eq!(reason, Some(ReasonCode::PROTOCOL_ERROR), "{response_topic}");
        }
    }
    s.expect_silence().await;
}
