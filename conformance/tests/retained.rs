//! Retained messages (§3.3.1.3) and the Retain As Published / Retain Handling options (§3.8.3.1).

use musqratt_conformance::*;
use musqratt_proto::mqtt::{Publish, RetainHandling, SubscriptionOptions};
use musqratt_proto::{ProtocolVersion, QoS};

fn retained(topic: &str, payload: &[u8], qos: QoS) -> Publish {
    let mut m = msg(topic, payload, qos);
    m.retain = true;
    m
}

/// Publishes a retained message from a throwaway client.
async fn store(t: &Ctx, version: ProtocolVersion, m: Publish) {
    let mut p = t.client(version, "store").await;
    p.publish(m).await;
    p.ping().await;
    p.disconnect().await;
}

/// MQTT-3.3.1-6 and MQTT-3.3.1-9 (5.0; 3.1.1 MQTT-3.3.1-6, -8): a retained message is sent to a
/// new subscription with the RETAIN flag set.
#[tokio::test]
async fn retained_delivered_to_new_subscriber() {
    let t = Ctx::new("retained_delivered_to_new_subscriber");
    let topic = t.topic("x");
    store(&t, V3, retained(&topic, b"kept", Q1)).await;
    let mut s = t.client(V3, "s").await;
    s.subscribe(&topic, Q1).await;
    let got = s.recv_msg().await;
    assert_eq!(&got.payload[..], b"kept");
    assert!(got.retain, "MQTT-3.3.1-8 (3.1.1): RETAIN 1 on a message sent for a new subscription");
}

/// MQTT-3.3.1-5: a new retained message replaces the one stored for its topic.
#[tokio::test]
async fn retained_replaced() {
    let t = Ctx::new("retained_replaced");
    let topic = t.topic("x");
    store(&t, V5, retained(&topic, b"old", Q0)).await;
    store(&t, V5, retained(&topic, b"new", Q0)).await;
    let mut s = t.client(V5, "s").await;
    s.subscribe(&topic, Q0).await;
    let got = s.drain_msgs().await;
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].payload[..], b"new");
}

/// MQTT-3.3.1-6, MQTT-3.3.1-7 (5.0; 3.1.1 MQTT-3.3.1-10, -11): a retained message with an empty
/// payload removes the retained message and is not stored itself.
#[tokio::test]
async fn retained_deleted_by_empty_payload() {
    let t = Ctx::new("retained_deleted_by_empty_payload");
    let topic = t.topic("x");
    store(&t, V3, retained(&topic, b"old", Q1)).await;
    store(&t, V3, retained(&topic, b"", Q1)).await;
    let mut s = t.client(V3, "s").await;
    s.subscribe(&topic, Q1).await;
    s.expect_silence().await;
}

/// MQTT-3.3.1-10 (3.1.1): a zero-byte retained message is forwarded as normal to existing
/// subscribers.
#[tokio::test]
async fn empty_retained_forwarded_to_existing_subscribers() {
    let t = Ctx::new("empty_retained_forwarded_to_existing_subscribers");
    let topic = t.topic("x");
    let mut s = t.client(V3, "s").await;
    s.subscribe(&topic, Q1).await;
    store(&t, V3, retained(&topic, b"", Q1)).await;
    let got = s.recv_msg().await;
    assert!(got.payload.is_empty());
}

/// MQTT-3.3.1-12 (3.1.1; 5.0 MQTT-3.3.1-8): a PUBLISH with RETAIN 0 does not replace or remove
/// the retained message of its topic.
#[tokio::test]
async fn non_retained_publish_keeps_retained() {
    let t = Ctx::new("non_retained_publish_keeps_retained");
    let topic = t.topic("x");
    store(&t, V3, retained(&topic, b"kept", Q1)).await;
    store(&t, V3, msg(&topic, b"live", Q1)).await;
    store(&t, V3, msg(&topic, b"", Q1)).await;
    let mut s = t.client(V3, "s").await;
    s.subscribe(&topic, Q1).await;
    let got = s.drain_msgs().await;
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].payload[..], b"kept");
}

/// MQTT-3.3.1-9 (3.1.1): a message forwarded because it matches an established subscription has
/// RETAIN 0, even if it was published with RETAIN 1.
#[tokio::test]
async fn v3_live_retained_forwarded_without_retain_flag() {
    let t = Ctx::new("v3_live_retained_forwarded_without_retain_flag");
    let topic = t.topic("x");
    let mut s = t.client(V3, "s").await;
    s.subscribe(&topic, Q1).await;
    store(&t, V3, retained(&topic, b"r", Q1)).await;
    let got = s.recv_msg().await;
    assert!(!got.retain, "MQTT-3.3.1-9 (3.1.1): RETAIN must be 0");
}

/// MQTT-3.3.1-12 (5.0): with Retain As Published 0 the server sets RETAIN 0 on messages it
/// forwards to an established subscription.
#[tokio::test]
async fn v5_retain_as_published_off_clears_flag() {
    let t = Ctx::new("v5_retain_as_published_off_clears_flag");
    let topic = t.topic("x");
    let mut s = t.client(V5, "s").await;
    s.subscribe(&topic, Q1).await;
    store(&t, V5, retained(&topic, b"r", Q1)).await;
    assert!(!s.recv_msg().await.retain);
}

/// MQTT-3.3.1-13 (5.0): with Retain As Published 1 the server keeps the RETAIN flag of the
/// publication, 1 and 0.
#[tokio::test]
async fn v5_retain_as_published_keeps_flag() {
    let t = Ctx::new("v5_retain_as_published_keeps_flag");
    let topic = t.topic("x");
    let mut s = t.client(V5, "s").await;
    let o = SubscriptionOptions { retain_as_published: true, ..opts(Q1) };
    s.subscribe_with(&[(&topic, o)], Default::default()).await;
    store(&t, V5, retained(&topic, b"r", Q1)).await;
    assert!(s.recv_msg().await.retain, "RETAIN kept");
    store(&t, V5, msg(&topic, b"n", Q1)).await;
    assert!(!s.recv_msg().await.retain, "RETAIN 0 kept");
}

async fn retain_handling(t: &Ctx, rh: RetainHandling) -> (usize, usize) {
    let topic = t.topic("x");
    store(t, V5, retained(&topic, b"r", Q1)).await;
    let mut s = t.client(V5, "s").await;
    let o = SubscriptionOptions { retain_handling: rh, ..opts(Q1) };
    s.subscribe_with(&[(&topic, o)], Default::default()).await;
    let first = s.drain_msgs().await.len();
    s.subscribe_with(&[(&topic, o)], Default::default()).await;
    let second = s.drain_msgs().await.len();
    (first, second)
}

/// MQTT-3.3.1-9 (5.0): Retain Handling 0: retained messages are sent on every SUBSCRIBE, also
/// when the subscription already existed.
#[tokio::test]
async fn retain_handling_0_sends_always() {
    let t = Ctx::new("retain_handling_0_sends_always");
    assert_eq!(retain_handling(&t, RetainHandling::SendAtSubscribe).await, (1, 1));
}

/// MQTT-3.3.1-10 (5.0): Retain Handling 1: retained messages are sent only if the subscription
/// did not exist.
#[tokio::test]
async fn retain_handling_1_sends_if_new() {
    let t = Ctx::new("retain_handling_1_sends_if_new");
    assert_eq!(retain_handling(&t, RetainHandling::SendIfNew).await, (1, 0));
}

/// MQTT-3.3.1-11 (5.0): Retain Handling 2: retained messages are not sent.
#[tokio::test]
async fn retain_handling_2_never_sends() {
    let t = Ctx::new("retain_handling_2_never_sends");
    assert_eq!(retain_handling(&t, RetainHandling::DoNotSend).await, (0, 0));
}

/// MQTT-3.8.4-8 (§3.3.1.3): a retained message is delivered at the minimum of its QoS and the
/// subscription's.
#[tokio::test]
async fn retained_delivered_at_min_qos() {
    let t = Ctx::new("retained_delivered_at_min_qos");
    let topic = t.topic("x");
    store(&t, V3, retained(&topic, b"r", Q2)).await;
    let mut s = t.client(V3, "s").await;
    s.subscribe(&topic, Q1).await;
    assert_eq!(s.recv_msg().await.qos, Q1);
}

/// MQTT-3.3.1-6 (5.0) with §4.7: retained messages of every topic matching a wildcard filter are
/// sent when subscribing with it.
#[tokio::test]
async fn retained_matched_by_wildcard() {
    let t = Ctx::new("retained_matched_by_wildcard");
    store(&t, V5, retained(&t.topic("a/1"), b"1", Q0)).await;
    store(&t, V5, retained(&t.topic("a/2"), b"2", Q0)).await;
    store(&t, V5, retained(&t.topic("b/3"), b"3", Q0)).await;
    let mut s = t.client(V5, "s").await;
    s.subscribe(&t.topic("a/+"), Q0).await;
    let mut got: Vec<_> = s.drain_msgs().await.into_iter().map(|m| m.payload).collect();
    got.sort();
    assert_eq!(got, vec![&b"1"[..], &b"2"[..]]);
}
