//! Will Messages (§3.1.2.5, §3.1.3.2, §3.14.2.1).

use core::time::Duration;

use musqratt_conformance::*;
use musqratt_proto::ProtocolVersion;
use musqratt_proto::mqtt::{Disconnect, LastWill, ReasonCode};
use tokio::time::Instant;

/// Connects client "w" with `will` (and, for 5.0, the Session Expiry), and a watcher subscribed
/// to the will topic.
async fn with_will(
    t: &Ctx,
    version: ProtocolVersion,
    will: LastWill,
    session_expiry: Option<u32>,
) -> (Client, Client) {
    let mut watcher = t.client(version, "watch").await;
    watcher.subscribe(&will.topic, Q2).await;
    let mut conn = t.conn(version, "w");
    conn.will = Some(will);
    conn.properties.session_expiry_interval = session_expiry;
    let (w, _) = t.connect_ok(conn).await;
    (w, watcher)
}

/// MQTT-3.1.2-8 (3.1.1 MQTT-3.1.2-8): the will is published when the network connection is
/// closed without DISCONNECT.
#[tokio::test]
async fn v3_will_on_abnormal_close() {
    let t = Ctx::new("v3_will_on_abnormal_close");
    let topic = t.topic("will");
    let (w, mut watcher) = with_will(&t, V3, will(&topic, b"gone", Q1, false), None).await;
    w.drop_connection().await;
    let got = watcher.recv_msg().await;
    assert_eq!(&*got.topic, topic);
    assert_eq!(&got.payload[..], b"gone");
    assert_eq!(got.qos, Q1, "Will QoS");
}

/// MQTT-3.1.2-10 (3.1.1 MQTT-3.1.2-10): a DISCONNECT removes the will: it is not published.
#[tokio::test]
async fn v3_no_will_on_disconnect() {
    let t = Ctx::new("v3_no_will_on_disconnect");
    let topic = t.topic("will");
    let (w, mut watcher) = with_will(&t, V3, will(&topic, b"gone", Q1, false), None).await;
    w.disconnect().await;
    watcher.expect_silence().await;
}

/// MQTT-3.1.2-8 (5.0): the will is published when the connection closes without DISCONNECT.
#[tokio::test]
async fn v5_will_on_abnormal_close() {
    let t = Ctx::new("v5_will_on_abnormal_close");
    let topic = t.topic("will");
    let (w, mut watcher) = with_will(&t, V5, will(&topic, b"gone", Q2, false), None).await;
    w.drop_connection().await;
    let got = watcher.recv_msg().await;
    assert_eq!(&got.payload[..], b"gone");
    assert_eq!(got.qos, Q2);
}

/// MQTT-3.1.2-10, MQTT-3.14.4-3 (5.0): DISCONNECT with Reason Code 0x00 removes the will.
#[tokio::test]
async fn v5_no_will_on_normal_disconnect() {
    let t = Ctx::new("v5_no_will_on_normal_disconnect");
    let topic = t.topic("will");
    let (w, mut watcher) = with_will(&t, V5, will(&topic, b"gone", Q0, false), None).await;
    w.disconnect().await;
    watcher.expect_silence().await;
}

/// §3.14.2.1 (5.0): DISCONNECT with 0x04 Disconnect with Will Message: the will is published.
#[tokio::test]
async fn v5_will_on_disconnect_0x04() {
    let t = Ctx::new("v5_will_on_disconnect_0x04");
    let topic = t.topic("will");
    let (w, mut watcher) = with_will(&t, V5, will(&topic, b"bye", Q1, false), None).await;
    w.disconnect_with(Disconnect::new(ReasonCode::DISCONNECT_WITH_WILL)).await;
    assert_eq!(&watcher.recv_msg().await.payload[..], b"bye");
}

/// MQTT-3.1.2-8: the will is published when the server closes the connection because of a
/// protocol error (here a malformed PUBLISH with QoS 3).
#[tokio::test]
async fn will_on_malformed_packet() {
    let t = Ctx::new("will_on_malformed_packet");
    let topic = t.topic("will");
    let (mut w, mut watcher) = with_will(&t, V3, will(&topic, b"err", Q1, false), None).await;
    w.send_raw(b"\x36\x06\x00\x01a\x00\x01x");
    w.expect_closed().await;
    assert_eq!(&watcher.recv_msg().await.payload[..], b"err");
}

/// MQTT-3.1.2-8 with MQTT-3.1.0-2: a second CONNECT is a protocol error; the server closes the
/// connection and publishes the will.
#[tokio::test]
async fn will_on_second_connect() {
    let t = Ctx::new("will_on_second_connect");
    if t.deviation(
        "mosquitto",
        "Mosquitto 2.0.11 closes the connection on a second CONNECT but does not publish the will",
    ) {
        return;
    }
    let topic = t.topic("will");
    let (mut w, mut watcher) = with_will(&t, V3, will(&topic, b"err", Q1, false), None).await;
    w.send(&Packet::Connect(Box::new(t.conn(V3, "w"))));
    w.expect_closed().await;
    assert_eq!(&watcher.recv_msg().await.payload[..], b"err");
}

/// MQTT-3.1.2-17 (3.1.1 MQTT-3.1.2-17): a will with Will Retain 1 is published as a retained
/// message.
#[tokio::test]
async fn will_retain_published_retained() {
    let t = Ctx::new("will_retain_published_retained");
    let topic = t.topic("will");
    let (w, mut watcher) = with_will(&t, V3, will(&topic, b"kept", Q1, true), None).await;
    w.drop_connection().await;
    watcher.recv_msg().await;
    let mut late = t.client(V3, "late").await;
    late.subscribe(&topic, Q1).await;
    let got = late.recv_msg().await;
    assert_eq!(&got.payload[..], b"kept");
    assert!(got.retain);
}

/// MQTT-3.1.2-16 (3.1.1 MQTT-3.1.2-16): a will with Will Retain 0 is published as a non-retained
/// message.
#[tokio::test]
async fn will_not_retained_without_retain() {
    let t = Ctx::new("will_not_retained_without_retain");
    let topic = t.topic("will");
    let (w, mut watcher) = with_will(&t, V5, will(&topic, b"live", Q1, false), None).await;
    w.drop_connection().await;
    watcher.recv_msg().await;
    let mut late = t.client(V5, "late").await;
    late.subscribe(&topic, Q1).await;
    late.expect_silence().await;
}

/// MQTT-3.1.2-8, §3.1.3.2.2 (5.0): the will is delayed by the Will Delay Interval (2 s here) when the session
/// outlives the connection.
#[tokio::test]
async fn v5_will_delay_delays() {
    let t = Ctx::new("v5_will_delay_delays");
    let topic = t.topic("will");
    let mut lw = will(&topic, b"late", Q1, false);
    lw.properties.will_delay_interval = Some(2);
    let (w, mut watcher) = with_will(&t, V5, lw, Some(30)).await;
    let start = Instant::now();
    w.drop_connection().await;
    watcher.expect_silence_for(Duration::from_millis(1300)).await;
    match watcher.next_event(Duration::from_millis(2500)).await {
        Event::Packet(Packet::Publish(p)) => assert_eq!(&p.payload[..], b"late"),
        other => panic!("expected the delayed will, got {other:?}"),
    }
    assert!(start.elapsed() >= Duration::from_millis(1500), "{:?}", start.elapsed());
    t.session(V5, "w", true, 0).await.0.disconnect().await;
}

/// MQTT-3.1.2-26 (5.0): if a new connection to the session is made before the Will Delay
/// Interval has passed, the will is not sent.
#[tokio::test]
async fn v5_will_delay_cancelled_by_reconnect() {
    let t = Ctx::new("v5_will_delay_cancelled_by_reconnect");
    let topic = t.topic("will");
    let mut lw = will(&topic, b"late", Q1, false);
    lw.properties.will_delay_interval = Some(1);
    let (w, mut watcher) = with_will(&t, V5, lw, Some(30)).await;
    w.drop_connection().await;
    sleep_ms(200).await;
    let (w, ack) = t.session(V5, "w", false, 0).await;
    assert!(ack.session_present);
    watcher.expect_silence_for(Duration::from_millis(1800)).await;
    w.disconnect().await;
}

/// MQTT-3.1.2-8, §3.1.3.2.2 (5.0): the will is published when the session ends, if that is before the Will
/// Delay Interval (Session Expiry 1 s, Will Delay 30 s).
#[tokio::test]
async fn v5_will_at_session_end_before_delay() {
    let t = Ctx::new("v5_will_at_session_end_before_delay");
    let topic = t.topic("will");
    let mut lw = will(&topic, b"end", Q1, false);
    lw.properties.will_delay_interval = Some(30);
    let (w, mut watcher) = with_will(&t, V5, lw, Some(1)).await;
    w.drop_connection().await;
    match watcher.next_event(Duration::from_millis(3500)).await {
        Event::Packet(Packet::Publish(p)) => assert_eq!(&p.payload[..], b"end"),
        other => panic!("expected the will at session end, got {other:?}"),
    }
}

/// §3.1.3.2 (5.0): the will's properties (Content Type, Response Topic,
/// Correlation Data, Payload Format Indicator, User Properties in order) are published with it.
#[tokio::test]
async fn v5_will_properties_forwarded() {
    let t = Ctx::new("v5_will_properties_forwarded");
    let topic = t.topic("will");
    let mut lw = will(&topic, b"props", Q1, false);
    lw.properties.content_type = Some("text/plain".into());
    lw.properties.response_topic = Some(t.topic("resp").into());
    lw.properties.correlation_data = Some(bytes::Bytes::from_static(b"\x01\x02"));
    lw.properties.payload_format_indicator = Some(true);
    lw.properties.user_properties =
        vec![("k".into(), "2".into()), ("a".into(), "1".into()), ("k".into(), "1".into())];
    let (w, mut watcher) = with_will(&t, V5, lw.clone(), None).await;
    w.drop_connection().await;
    let got = watcher.recv_msg().await;
    let p = &got.properties;
    assert_eq!(p.content_type, lw.properties.content_type);
    assert_eq!(p.response_topic, lw.properties.response_topic);
    assert_eq!(p.correlation_data, lw.properties.correlation_data);
    assert_eq!(p.payload_format_indicator, Some(true));
    assert_eq!(p.user_properties, lw.properties.user_properties);
}

/// MQTT-3.1.4-3 and §3.1.4 (5.0): when a session is taken over, the existing client's will is
/// published (Will Delay 0, new connection with Clean Start).
#[tokio::test]
async fn v5_will_on_takeover() {
    let t = Ctx::new("v5_will_on_takeover");
    let topic = t.topic("will");
    let (mut w, mut watcher) = with_will(&t, V5, will(&topic, b"taken", Q1, false), None).await;
    let _new = t.client(V5, "w").await;
    w.expect_closed().await;
    assert_eq!(&watcher.recv_msg().await.payload[..], b"taken");
}
