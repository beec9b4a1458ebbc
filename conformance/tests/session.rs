//! Sessions: persistence, expiry and takeover (§3.1.2.4, §3.1.2.11.2, §3.1.4, §4.1).

use musqratt_conformance::*;
use musqratt_proto::mqtt::{Disconnect, DisconnectProperties, ReasonCode};

/// MQTT-3.1.2-4, MQTT-3.1.2-5 (3.1.1): with CleanSession 0 the subscriptions survive the
/// disconnection and QoS 1 messages published meanwhile are delivered on resume.
#[tokio::test]
async fn v3_offline_qos1_queued_and_delivered() {
    let t = Ctx::new("v3_offline_qos1_queued_and_delivered");
    let topic = t.topic("x");
    let (mut s, _) = t.session(V3, "s", false, 0).await;
    s.subscribe(&topic, Q1).await;
    s.disconnect().await;
    let mut p = t.client(V3, "p").await;
    p.publish(msg(&topic, b"q1", Q1)).await;
    p.publish(msg(&topic, b"q2", Q2)).await;
    let (mut s, ack) = t.session(V3, "s", false, 0).await;
    assert!(ack.session_present);
    let got: Vec<_> = s.drain_msgs().await.into_iter().map(|m| (m.payload, m.qos)).collect();
    assert_eq!(got, vec![(bytes::Bytes::from_static(b"q1"), Q1), ("q2".into(), Q1)]);
    s.disconnect().await;
    t.session(V3, "s", true, 0).await.0.disconnect().await;
}

/// MQTT-3.1.2-6 (3.1.1): with CleanSession 1 the session, and its subscriptions, end with the
/// connection.
#[tokio::test]
async fn v3_clean_session_discards_subscriptions() {
    let t = Ctx::new("v3_clean_session_discards_subscriptions");
    let topic = t.topic("x");
    let (mut s, _) = t.session(V3, "s", true, 0).await;
    s.subscribe(&topic, Q1).await;
    s.disconnect().await;
    let (mut s, ack) = t.session(V3, "s", false, 0).await;
    assert!(!ack.session_present);
    let mut p = t.client(V3, "p").await;
    p.publish(msg(&topic, b"m", Q1)).await;
    s.expect_silence().await;
    s.disconnect().await;
    t.session(V3, "s", true, 0).await.0.disconnect().await;
}

/// §3.1.2.11.2 (5.0): without Session Expiry Interval (0) the session ends when the connection
/// closes, even with Clean Start 0.
#[tokio::test]
async fn v5_session_expiry_absent_ends_session() {
    let t = Ctx::new("v5_session_expiry_absent_ends_session");
    let mut c = t.conn(V5, "s");
    c.clean_start = false;
    let (mut s, _) = t.connect_ok(c.clone()).await;
    s.subscribe(&t.topic("x"), Q1).await;
    s.disconnect().await;
    let (_s, ack) = t.connect_ok(c).await;
    assert!(!ack.session_present);
}

/// MQTT-3.1.2-25, MQTT-3.2.2-3 (5.0): a session with a Session Expiry Interval survives the
/// connection:
/// Session Present 1, subscriptions kept and messages queued while offline delivered.
#[tokio::test]
async fn v5_session_resumed_within_expiry() {
    let t = Ctx::new("v5_session_resumed_within_expiry");
    let topic = t.topic("x");
    let (mut s, _) = t.session(V5, "s", false, 30).await;
    s.subscribe(&topic, Q1).await;
    s.disconnect().await;
    let mut p = t.client(V5, "p").await;
    p.publish(msg(&topic, b"queued", Q1)).await;
    let (mut s, ack) = t.session(V5, "s", false, 0).await;
    assert!(ack.session_present);
    assert_eq!(&s.recv_msg().await.payload[..], b"queued");
}

/// MQTT-4.1.0-2, MQTT-3.2.2-3 (5.0): the session is deleted when the Session Expiry Interval
/// (1 s) has passed after the connection closed: a later resume gets Session Present 0.
#[tokio::test]
async fn v5_session_expires() {
    let t = Ctx::new("v5_session_expires");
    let (mut s, _) = t.session(V5, "s", false, 1).await;
    s.subscribe(&t.topic("x"), Q1).await;
    s.disconnect().await;
    sleep_ms(2500).await;
    let (_s, ack) = t.session(V5, "s", false, 0).await;
    assert!(!ack.session_present, "the session should have expired");
}

/// §3.14.2.2.2 (5.0): the Session Expiry Interval sent in DISCONNECT replaces the one of CONNECT:
/// 0 ends the session at once.
#[tokio::test]
async fn v5_disconnect_sets_expiry_zero() {
    let t = Ctx::new("v5_disconnect_sets_expiry_zero");
    let (s, _) = t.session(V5, "s", false, 60).await;
    let mut props = DisconnectProperties::default();
    props.session_expiry_interval = Some(0);
    s.disconnect_with(Disconnect { reason_code: ReasonCode::SUCCESS, properties: props }).await;
    sleep_ms(200).await;
    let (_s, ack) = t.session(V5, "s", false, 0).await;
    assert!(!ack.session_present);
}

/// §3.14.2.2.2 (5.0): a client that connected with Session Expiry 0 must not set a non-zero
/// one in DISCONNECT; the server treats it as a Protocol Error (DISCONNECT 0x82 and close).
#[tokio::test]
async fn v5_disconnect_raising_expiry_is_protocol_error() {
    let t = Ctx::new("v5_disconnect_raising_expiry_is_protocol_error");
    let mut s = t.client(V5, "s").await;
    let mut props = DisconnectProperties::default();
    props.session_expiry_interval = Some(60);
    s.send(&Packet::Disconnect(Disconnect { reason_code: ReasonCode::SUCCESS, properties: props }));
    if let Some(reason) = s.expect_closed().await {
        assert_eq!(reason, ReasonCode::PROTOCOL_ERROR);
    }
    let (_s, ack) = t.session(V5, "s", false, 0).await;
    assert!(!ack.session_present, "the session must not have been kept");
}

/// MQTT-3.1.4-2 (3.1.1 MQTT-3.1.4-2): a CONNECT with the client id of a connected client makes
/// the server close the existing connection; the new one is accepted.
#[tokio::test]
async fn v3_takeover_closes_existing() {
    let t = Ctx::new("v3_takeover_closes_existing");
    let mut old = t.client(V3, "same").await;
    let mut new = t.client(V3, "same").await;
    old.expect_closed().await;
    new.ping().await;
}

/// MQTT-3.1.2-6 (3.1.1): the state of a CleanSession 1 session must not be reused by any later
/// session, not even by a CleanSession 0 connection that takes its client id over while it is
/// still connected: Session Present 0, and its subscription is gone.
#[tokio::test]
async fn v3_takeover_does_not_resume_a_clean_session() {
    let t = Ctx::new("v3_takeover_does_not_resume_a_clean_session");
    let topic = t.topic("x");
    let (mut old, _) = t.session(V3, "s", true, 0).await;
    old.subscribe(&topic, Q1).await;
    let (mut new, ack) = t.session(V3, "s", false, 0).await;
    assert!(!ack.session_present);
    old.expect_closed().await;
    let mut p = t.client(V3, "p").await;
    p.publish(msg(&topic, b"m", Q1)).await;
    new.expect_silence().await;
    new.disconnect().await;
    t.session(V3, "s", true, 0).await.0.disconnect().await;
}

/// MQTT-3.1.4-3 and §4.13 (5.0): on takeover the server sends DISCONNECT 0x8E Session taken over
/// to the existing client and closes its connection.
#[tokio::test]
async fn v5_takeover_disconnect_0x8e() {
    let t = Ctx::new("v5_takeover_disconnect_0x8e");
    if t.deviation(
        "mosquitto",
        "Mosquitto 2.0.11 closes the existing connection without sending DISCONNECT 0x8E",
    ) {
        return;
    }
    let mut old = t.client(V5, "same").await;
    let mut new = t.client(V5, "same").await;
    let reason = old.expect_closed().await;
    assert_eq!(reason, Some(ReasonCode::SESSION_TAKEN_OVER), "DISCONNECT 0x8E before close");
    new.ping().await;
}

/// MQTT-3.1.4-3, §3.1.4 (5.0): a takeover with Clean Start 0 continues the session: Session
/// Present 1 and the subscriptions are kept.
#[tokio::test]
async fn v5_takeover_resumes_session() {
    let t = Ctx::new("v5_takeover_resumes_session");
    let topic = t.topic("x");
    let (mut old, _) = t.session(V5, "same", false, 30).await;
    old.subscribe(&topic, Q1).await;
    let (mut new, ack) = t.session(V5, "same", false, 30).await;
    assert!(ack.session_present);
    old.expect_closed().await;
    let mut p = t.client(V5, "p").await;
    p.publish(msg(&topic, b"m", Q1)).await;
    assert_eq!(&new.recv_msg().await.payload[..], b"m");
    new.disconnect().await;
    t.session(V5, "same", true, 0).await.0.disconnect().await;
}
