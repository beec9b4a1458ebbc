//! CONNECT and CONNACK (§3.1, §3.2), keep alive (§3.1.2.10), PINGREQ/PINGRESP (§3.12, §3.13).

use core::time::Duration;

use musqratt_conformance::*;
use musqratt_proto::mqtt::{LastWill, ReasonCode, WillProperties};
use tokio::time::Instant;

/// MQTT-3.2.2-1 (3.1.1): a connection accepted with CleanSession 1 is answered with return code
/// 0x00 and Session Present 0.
#[tokio::test]
async fn v3_connack_accepted_clean_session() {
    let t = Ctx::new("v3_connack_accepted_clean_session");
    let (_c, ack) = t.connect_with(t.conn(V3, "a")).await;
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    assert!(!ack.session_present, "MQTT-3.2.2-1: Session Present must be 0 with CleanSession 1");
}

/// MQTT-3.2.2-2 (5.0): a new session with Clean Start 1 is answered with Session Present 0 and
/// Reason Code 0x00 Success.
#[tokio::test]
async fn v5_connack_success_clean_start() {
    let t = Ctx::new("v5_connack_success_clean_start");
    let (_c, ack) = t.connect_with(t.conn(V5, "a")).await;
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    assert!(!ack.session_present);
}

/// MQTT-3.1.2-2 (3.1.1 and 5.0): an unsupported protocol level is answered with CONNACK 0x01
/// (3.1.1) or 0x84 (5.0), or no CONNACK, and the connection is closed.
#[tokio::test]
async fn unsupported_protocol_level_refused() {
    let t = Ctx::new("unsupported_protocol_level_refused");
    let mut c = t.open(V3).await;
    // CONNECT "MQTT" level 6, clean session, keep alive 30, client id "x".
    c.send_raw(b"\x10\x0d\x00\x04MQTT\x06\x02\x00\x1e\x00\x01x");
    match c.next_event(RECV_TIMEOUT).await {
        Event::Closed => {}
        Event::Packet(Packet::ConnAck(ack)) => {
            assert_eq!(ack.reason_code, ReasonCode::UNSUPPORTED_PROTOCOL_VERSION);
            c.expect_closed().await;
        }
        // A 5.0-style CONNACK (0x84 plus properties) does not decode as 3.1.1: read raw.
        Event::Malformed(e) => panic!("unexpected answer: {e}"),
        other => panic!("expected CONNACK 0x01 or a close, got {other:?}"),
    }
}

/// MQTT-3.1.2-1: a protocol name other than "MQTT" makes the server close the connection
/// (it MAY send CONNACK 0x84 first in 5.0).
#[tokio::test]
async fn invalid_protocol_name_closes() {
    let t = Ctx::new("invalid_protocol_name_closes");
    let mut c = t.open(V3).await;
    c.send_raw(b"\x10\x0d\x00\x04MQTX\x04\x02\x00\x1e\x00\x01x");
    match c.next_event(RECV_TIMEOUT).await {
        Event::Closed => {}
        Event::Packet(Packet::ConnAck(ack)) => {
            assert!(ack.reason_code.is_error(), "must not accept: {ack:?}");
            c.expect_closed().await;
        }
        other => panic!("expected a close, got {other:?}"),
    }
}

/// MQTT-3.1.3-8 (3.1.1): a zero-length ClientId with CleanSession 0 is refused with CONNACK
/// return code 0x02 (identifier rejected) and the connection closed.
#[tokio::test]
async fn v3_empty_client_id_without_clean_session_rejected() {
    let t = Ctx::new("v3_empty_client_id_without_clean_session_rejected");
    let mut conn = connect_packet(V3, "");
    conn.clean_start = false;
    let (mut c, ack) = t.connect_with(conn).await;
    assert_eq!(ack.reason_code, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID, "expected 0x02");
    c.expect_closed().await;
}

/// MQTT-3.1.3-6 (3.1.1): a zero-length ClientId with CleanSession 1 is accepted, the server
/// assigning a unique id.
#[tokio::test]
async fn v3_empty_client_id_with_clean_session_accepted() {
    let t = Ctx::new("v3_empty_client_id_with_clean_session_accepted");
    let (mut c, ack) = t.connect_with(connect_packet(V3, "")).await;
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    assert!(!ack.session_present);
    c.ping().await;
}

/// MQTT-3.1.3-6, MQTT-3.1.3-7, MQTT-3.2.2-16 (5.0): a zero-length Client Identifier is accepted and the
/// CONNACK carries the Assigned Client Identifier.
#[tokio::test]
async fn v5_empty_client_id_assigned() {
    let t = Ctx::new("v5_empty_client_id_assigned");
    let (mut c, ack) = t.connect_with(connect_packet(V5, "")).await;
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    let assigned = ack.properties.assigned_client_identifier.expect("MQTT-3.2.2-16");
    assert!(!assigned.is_empty());
    c.ping().await;
}

/// MQTT-3.2.2-2 (3.1.1): with CleanSession 0 and a stored session, Session Present is 1;
/// MQTT-3.2.2-3 for the first connection without a session it is 0.
#[tokio::test]
async fn v3_session_present_on_resume() {
    let t = Ctx::new("v3_session_present_on_resume");
    let (c, ack) = t.session(V3, "a", false, 0).await;
    assert!(!ack.session_present, "no session existed");
    c.disconnect().await;
    let (c, ack) = t.session(V3, "a", false, 0).await;
    assert!(ack.session_present, "MQTT-3.2.2-2");
    c.disconnect().await;
    // Clean up the session.
    let (c, _) = t.session(V3, "a", true, 0).await;
    c.disconnect().await;
}

/// MQTT-3.1.2-4, MQTT-3.2.2-2 (5.0): Clean Start 1 discards an existing session; Session
/// Present is 0.
#[tokio::test]
async fn v5_clean_start_discards_session() {
    let t = Ctx::new("v5_clean_start_discards_session");
    let (mut c, _) = t.session(V5, "a", false, 60).await;
    c.subscribe(&t.topic("x"), Q1).await;
    c.disconnect().await;
    let (mut c, ack) = t.session(V5, "a", true, 0).await;
    assert!(!ack.session_present, "MQTT-3.2.2-2");
    let mut p = t.client(V5, "p").await;
    p.publish(msg(&t.topic("x"), b"m", Q1)).await;
    c.expect_silence().await; // the old subscription is gone
}

/// MQTT-3.1.0-2: a second CONNECT on a connection is a protocol violation: the server closes
/// the connection (3.1.1).
#[tokio::test]
async fn v3_second_connect_closes() {
    let t = Ctx::new("v3_second_connect_closes");
    let mut c = t.client(V3, "a").await;
    c.send(&Packet::Connect(Box::new(t.conn(V3, "a"))));
    c.expect_closed().await;
}

/// MQTT-3.1.0-2 (5.0): a second CONNECT is a Protocol Error: DISCONNECT 0x82 (optional) and
/// close.
#[tokio::test]
async fn v5_second_connect_closes() {
    let t = Ctx::new("v5_second_connect_closes");
    let mut c = t.client(V5, "a").await;
    c.send(&Packet::Connect(Box::new(t.conn(V5, "a"))));
    if let Some(reason) = c.expect_closed().await {
        assert_eq!(reason, ReasonCode::PROTOCOL_ERROR);
    }
}

/// MQTT-3.1.0-1: the first packet from the client must be CONNECT; a PINGREQ first makes the
/// server close the connection.
#[tokio::test]
async fn first_packet_pingreq_closes() {
    let t = Ctx::new("first_packet_pingreq_closes");
    let mut c = t.open(V3).await;
    c.send_raw(&[0xC0, 0x00]);
    c.expect_closed().await;
}

/// MQTT-3.1.0-1: a PUBLISH before CONNECT makes the server close the connection, and the
/// message is not delivered.
#[tokio::test]
async fn first_packet_publish_closes() {
    let t = Ctx::new("first_packet_publish_closes");
    let topic = t.topic("x");
    let mut s = t.client(V3, "s").await;
    s.subscribe(&topic, Q0).await;
    let mut c = t.open(V3).await;
    c.send(&Packet::Publish(msg(&topic, b"nope", Q0)));
    c.expect_closed().await;
    s.expect_silence().await;
}

/// MQTT-3.1.2-24 (5.0 and 3.1.1): with Keep Alive 1 and no packet from the client,
/// the server disconnects after one and a half times the Keep Alive (2 s of slack allowed).
#[tokio::test]
async fn keep_alive_timeout_closes() {
    let t = Ctx::new("keep_alive_timeout_closes");
    if t.deviation("mosquitto", "Mosquitto 2.0.11 closes a Keep Alive 1 connection anywhere between 1.2 s and 5.8 s after the last packet (coarse keep alive check), beyond 1.5 x Keep Alive even with 2 s of slack") {
        return;
    }
    let mut conn = t.conn(V3, "a");
    conn.keep_alive = 1;
    let start = Instant::now();
    let (mut c, _) = t.connect_ok(conn).await;
    c.expect_closed_within(Duration::from_millis(3500)).await;
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(1000), "closed too early: {took:?}");
}

/// §3.1.2.10 (5.0): the server must not disconnect a client that sends a packet within
/// each Keep Alive period (here PINGREQ every 0.5 s with Keep Alive 1).
#[tokio::test]
async fn keep_alive_kept_by_pingreq() {
    let t = Ctx::new("keep_alive_kept_by_pingreq");
    let mut conn = t.conn(V5, "a");
    conn.keep_alive = 1;
    let (mut c, ack) = t.connect_ok(conn).await;
    if let Some(ka) = ack.properties.server_keep_alive {
        eprintln!("note: Server Keep Alive {ka}");
    }
    for _ in 0..6 {
        sleep_ms(500).await;
        c.ping().await;
    }
}

/// MQTT-3.12.4-1: the server answers PINGREQ with PINGRESP.
#[tokio::test]
async fn pingreq_answered_with_pingresp() {
    let t = Ctx::new("pingreq_answered_with_pingresp");
    for version in [V3, V5] {
        let mut c = t.client(version, &format!("a{}", version.level())).await;
        c.send(&Packet::PingReq);
        assert!(matches!(c.recv().await, Packet::PingResp));
    }
}

/// MQTT-3.1.2-3: the reserved flag of CONNECT must be 0, otherwise the server closes the
/// connection.
#[tokio::test]
async fn connect_reserved_flag_closes() {
    let t = Ctx::new("connect_reserved_flag_closes");
    let mut c = t.open(V3).await;
    c.send_raw(b"\x10\x0d\x00\x04MQTT\x04\x03\x00\x1e\x00\x01x");
    c.expect_closed().await;
}

/// MQTT-3.1.2-13, MQTT-3.1.4-1: with the Will Flag 0 the Will QoS must be 0; otherwise
/// the server closes the connection.
#[tokio::test]
async fn will_qos_without_will_flag_closes() {
    let t = Ctx::new("will_qos_without_will_flag_closes");
    let mut c = t.open(V3).await;
    c.send_raw(b"\x10\x0d\x00\x04MQTT\x04\x0a\x00\x1e\x00\x01x");
    c.expect_closed().await;
}

/// MQTT-3.1.2-14 (3.1.1): Will QoS 3 is invalid: the server closes the connection.
#[tokio::test]
async fn will_qos_3_closes() {
    let t = Ctx::new("will_qos_3_closes");
    let mut c = t.open(V3).await;
    // flags 0x1e: clean session, will flag, will QoS 3; will topic "w", payload "p".
    c.send_raw(b"\x10\x13\x00\x04MQTT\x04\x1e\x00\x1e\x00\x01x\x00\x01w\x00\x01p");
    c.expect_closed().await;
}

/// MQTT-3.1.2-22 (3.1.1): if the User Name Flag is 0 the Password Flag must be 0; the server
/// closes a connection that breaks this.
#[tokio::test]
async fn v3_password_without_username_closes() {
    let t = Ctx::new("v3_password_without_username_closes");
    let mut c = t.open(V3).await;
    c.send_raw(b"\x10\x10\x00\x04MQTT\x04\x42\x00\x1e\x00\x01x\x00\x01p");
    match c.next_event(RECV_TIMEOUT).await {
        Event::Closed => {}
        Event::Packet(Packet::ConnAck(ack)) => {
            assert!(ack.reason_code.is_error(), "accepted a password without user name");
            c.expect_closed().await;
        }
        other => panic!("expected a close, got {other:?}"),
    }
}

/// MQTT-4.7.0-1 (3.1.1 MQTT-4.7.1-1) with MQTT-3.1.4-1: a will topic is a topic name; a wildcard in it makes
/// the server refuse the connection.
#[tokio::test]
async fn will_topic_with_wildcard_refused() {
    let t = Ctx::new("will_topic_with_wildcard_refused");
    let mut c = t.open(V3).await;
    let mut conn = t.conn(V3, "a");
    conn.will = Some(LastWill {
        topic: "a/#".into(),
        payload: bytes::Bytes::from_static(b"w"),
        qos: Q0,
        retain: false,
        properties: WillProperties::default(),
    });
    c.send(&Packet::Connect(Box::new(conn)));
    match c.next_event(RECV_TIMEOUT).await {
        Event::Closed => {}
        Event::Packet(Packet::ConnAck(ack)) => {
            assert!(ack.reason_code.is_error(), "accepted will topic a/#");
            c.expect_closed().await;
        }
        other => panic!("expected a close, got {other:?}"),
    }
}

/// Sends a 5.0 CONNECT that breaks a rule and checks the answer: the server closes the
/// connection (§4.13.1), and MAY first send CONNACK with a reason code of 0x80 or more
/// (§3.2.2.2, §4.13.1). A CONNACK must be a refusal; from MusQraTT (in-process) it must come and
/// carry `reason`, the code matching the rule broken.
async fn v5_connect_refused_with(name: &'static str, bytes: &[u8], reason: ReasonCode) {
    let mut c = Ctx::new(name).open(V5).await;
    c.send_raw(bytes);
    match c.next_event(RECV_TIMEOUT).await {
        Event::Packet(Packet::ConnAck(ack)) => {
            assert!(ack.reason_code.is_error(), "accepted an invalid CONNECT: {ack:?}");
            if in_process() {
                assert_eq!(ack.reason_code, reason, "CONNACK reason code");
            }
            c.expect_closed().await;
        }
        Event::Closed => assert!(!in_process(), "closed without CONNACK {reason:?}"),
        other => panic!("expected CONNACK {reason:?} or a close, got {other:?}"),
    }
}

/// §2.2.2.2: "It is a Protocol Error to include [a property other than User Property] more than
/// once": Session Expiry Interval twice; CONNACK 0x82 Protocol Error, then close.
#[tokio::test]
async fn v5_duplicate_property_connack_0x82() {
    v5_connect_refused_with(
        "v5_duplicate_property_connack_0x82",
        b"\x10\x17\x00\x04MQTT\x05\x02\x00\x00\x0a\x11\x00\x00\x00\x01\x11\x00\x00\x00\x02\x00\x00",
        ReasonCode::PROTOCOL_ERROR,
    )
    .await;
}

/// §3.1.2.11.3: "It is a Protocol Error to include the Receive Maximum value more than once or
/// for it to have the value 0": CONNACK 0x82 Protocol Error, then close.
#[tokio::test]
async fn v5_receive_maximum_0_connack_0x82() {
    v5_connect_refused_with(
        "v5_receive_maximum_0_connack_0x82",
        b"\x10\x10\x00\x04MQTT\x05\x02\x00\x00\x03\x21\x00\x00\x00\x00",
        ReasonCode::PROTOCOL_ERROR,
    )
    .await;
}

/// §3.1.3.3 and MQTT-4.7.0-1: the Will Topic is a topic name, without wildcards: CONNACK 0x90
/// Topic Name invalid, then close.
#[tokio::test]
async fn v5_will_topic_wildcard_connack_0x90() {
    // Will Flag and Clean Start; no properties; empty client id; no will properties; will topic
    // "+"; empty will payload.
    v5_connect_refused_with(
        "v5_will_topic_wildcard_connack_0x90",
        b"\x10\x13\x00\x04MQTT\x05\x06\x00\x00\x00\x00\x00\x00\x00\x01+\x00\x00",
        ReasonCode::TOPIC_NAME_INVALID,
    )
    .await;
}

/// MQTT-3.1.2-3: the reserved CONNECT flag set is a Malformed Packet: CONNACK 0x81, then close.
#[tokio::test]
async fn v5_reserved_flag_connack_0x81() {
    v5_connect_refused_with(
        "v5_reserved_flag_connack_0x81",
        b"\x10\x0d\x00\x04MQTT\x05\x03\x00\x00\x00\x00\x00",
        ReasonCode::MALFORMED_PACKET,
    )
    .await;
}
