//! Shared subscriptions (MQTT 5.0 §4.8.2).

use std::collections::HashSet;

use musqratt_conformance::*;
use musqratt_proto::mqtt::{ReasonCode, SubscriptionOptions};

fn share(group: &str, filter: &str) -> String {
    format!("$share/{group}/{filter}")
}

/// §4.8.2: each message matching a shared subscription is delivered to exactly one session of
/// the group.
#[tokio::test]
async fn one_delivery_per_group() {
    let t = Ctx::new("one_delivery_per_group");
    let topic = t.topic("x");
    let group = t.id("g");
    let mut a = t.client(V5, "a").await;
    let mut b = t.client(V5, "b").await;
    a.subscribe(&share(&group, &topic), Q1).await;
    b.subscribe(&share(&group, &topic), Q1).await;
    let mut p = t.client(V5, "p").await;
    for i in 0..10u8 {
        p.publish(msg(&topic, &[i], Q1)).await;
    }
    let got_a = a.drain_msgs().await;
    let got_b = b.drain_msgs().await;
    let mut all: Vec<u8> = got_a.iter().chain(&got_b).map(|m| m.payload[0]).collect();
    all.sort_unstable();
    assert_eq!(all, (0..10).collect::<Vec<_>>(), "each message exactly once in the group");
    eprintln!(
        "note: distribution a={} b={} (selection is up to the server)",
        got_a.len(),
        got_b.len()
    );
}

/// §4.8.2: every group with a matching shared subscription receives its own copy.
#[tokio::test]
async fn each_group_receives() {
    let t = Ctx::new("each_group_receives");
    let topic = t.topic("x");
    let mut a = t.client(V5, "a").await;
    let mut b = t.client(V5, "b").await;
    a.subscribe(&share(&t.id("g1"), &topic), Q1).await;
    b.subscribe(&share(&t.id("g2"), &topic), Q1).await;
    let mut p = t.client(V5, "p").await;
    p.publish(msg(&topic, b"m", Q1)).await;
    assert_eq!(a.drain_msgs().await.len(), 1);
    assert_eq!(b.drain_msgs().await.len(), 1);
}

/// §4.8.2: shared and non-shared subscriptions are independent: both receive the message.
#[tokio::test]
async fn shared_and_plain_both_receive() {
    let t = Ctx::new("shared_and_plain_both_receive");
    let topic = t.topic("x");
    let mut a = t.client(V5, "a").await;
    let mut b = t.client(V5, "b").await;
    a.subscribe(&share(&t.id("g"), &t.topic("+")), Q1).await;
    b.subscribe(&topic, Q1).await;
    let mut p = t.client(V5, "p").await;
    p.publish(msg(&topic, b"m", Q1)).await;
    assert_eq!(a.drain_msgs().await.len(), 1);
    assert_eq!(b.drain_msgs().await.len(), 1);
}

/// §4.8.2: a shared subscription is not sent retained messages when it is established.
#[tokio::test]
async fn no_retained_on_shared_subscribe() {
    let t = Ctx::new("no_retained_on_shared_subscribe");
    if t.deviation(
        "mosquitto",
        "Mosquitto 2.0.11 sends retained messages to a new shared subscription",
    ) {
        return;
    }
    let topic = t.topic("x");
    let mut p = t.client(V5, "p").await;
    let mut m = msg(&topic, b"r", Q1);
    m.retain = true;
    p.publish(m).await;
    let mut a = t.client(V5, "a").await;
    a.subscribe(&share(&t.id("g"), &topic), Q1).await;
    a.expect_silence().await;
}

/// MQTT-3.8.3-4: No Local on a shared subscription is a Protocol Error: DISCONNECT (0x82) and
/// close.
#[tokio::test]
async fn no_local_on_shared_is_protocol_error() {
    let t = Ctx::new("no_local_on_shared_is_protocol_error");
    if t.deviation("mosquitto", "Mosquitto 2.0.11 grants a shared subscription with No Local 1") {
        return;
    }
    let mut a = t.client(V5, "a").await;
    let filter = share(&t.id("g"), &t.topic("x"));
    let o = SubscriptionOptions { no_local: true, ..opts(Q1) };
    let pid = a.next_pid();
    a.send(&Packet::Subscribe(musqratt_proto::mqtt::Subscribe {
        packet_id: pid,
        filters: vec![(filter.as_str().into(), o)],
        properties: Default::default(),
    }));
    if let Some(reason) = a.expect_closed().await {
        assert_eq!(reason, ReasonCode::PROTOCOL_ERROR);
    }
}

/// Subscribes to `bad` and asserts SUBACK 0x8F Topic Filter invalid or a close (after a
/// DISCONNECT with an error code).
async fn share_filter_refused(t: &Ctx, bad: &str) {
    let mut a = t.client(V5, "a").await;
    let pid = a.next_pid();
    a.send(&Packet::Subscribe(musqratt_proto::mqtt::Subscribe {
        packet_id: pid,
        filters: vec![(bad.into(), opts(Q0))],
        properties: Default::default(),
    }));
    match a.next_event(RECV_TIMEOUT).await {
        Event::Packet(Packet::SubAck(ack)) => {
            assert_eq!(ack.reason_codes, vec![ReasonCode::TOPIC_FILTER_INVALID], "{bad}");
        }
        Event::Packet(Packet::Disconnect(d)) => {
            assert!(d.reason_code.is_error(), "{bad}: {d:?}");
            a.expect_closed().await;
        }
        Event::Closed => {}
        other => panic!("{bad}: expected SUBACK 0x8F or a close, got {other:?}"),
    }
}

/// MQTT-4.8.2-2: the ShareName must not contain "+" or "#": "$share/g+/x" and "$share/g#/x" are
/// refused (SUBACK 0x8F, or Malformed Packet / Protocol Error and close).
#[tokio::test]
async fn share_name_with_wildcard_refused() {
    let t = Ctx::new("share_name_with_wildcard_refused");
    share_filter_refused(&t, &format!("$share/g+/{}", t.topic("x"))).await;
    share_filter_refused(&t, &format!("$share/g#/{}", t.topic("x"))).await;
}

/// MQTT-4.8.2-2: the ShareName must be followed by "/" and a Topic Filter: "$share/g" and
/// "$share/g/" (empty filter) are refused.
#[tokio::test]
async fn share_without_filter_refused() {
    let t = Ctx::new("share_without_filter_refused");
    if t.deviation(
        "mosquitto",
        "Mosquitto 2.0.11 grants \"$share/g\" and \"$share/g/\" with QoS as if they were valid",
    ) {
        return;
    }
    share_filter_refused(&t, "$share/g").await;
    share_filter_refused(&t, "$share/g/").await;
}

/// MQTT-4.8.2-1: the ShareName must be at least one character long: "$share//x" is refused.
#[tokio::test]
async fn empty_share_name_refused() {
    let t = Ctx::new("empty_share_name_refused");
    if t.deviation("mosquitto", "Mosquitto 2.0.11 grants \"$share//x\" (empty ShareName)") {
        return;
    }
    share_filter_refused(&t, &format!("$share//{}", t.topic("x"))).await;
}

/// MQTT-3.10.4-1 with §4.8.2: after unsubscribing from a shared subscription the member
/// receives nothing more; the remaining member receives everything.
#[tokio::test]
async fn unsubscribe_from_shared() {
    let t = Ctx::new("unsubscribe_from_shared");
    let topic = t.topic("x");
    let filter = share(&t.id("g"), &topic);
    let mut a = t.client(V5, "a").await;
    let mut b = t.client(V5, "b").await;
    a.subscribe(&filter, Q1).await;
    b.subscribe(&filter, Q1).await;
    let ack = a.unsubscribe(&[&filter]).await;
    assert_eq!(ack.reason_codes, vec![ReasonCode::SUCCESS]);
    let mut p = t.client(V5, "p").await;
    for i in 0..4u8 {
        p.publish(msg(&topic, &[i], Q1)).await;
    }
    assert!(a.drain_msgs().await.is_empty());
    let got: HashSet<u8> = b.drain_msgs().await.iter().map(|m| m.payload[0]).collect();
    assert_eq!(got.len(), 4);
}
