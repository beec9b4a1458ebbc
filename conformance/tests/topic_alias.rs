//! Topic aliases in both directions (§3.3.2.3.4).

use std::collections::HashMap;

use musqratt_conformance::*;
use musqratt_proto::PacketId;
use musqratt_proto::mqtt::{Publish, ReasonCode};

fn aliased(topic: &str, alias: u16, payload: &[u8]) -> Publish {
    let mut m = msg(topic, payload, Q1);
    m.properties.topic_alias = Some(alias);
    m
}

/// As [`aliased`] with packet identifier 1, to be sent as is.
fn raw_aliased(topic: &str, alias: u16) -> Packet {
    let mut m = aliased(topic, alias, b"m");
    m.packet_id = PacketId::new(1);
    Packet::Publish(m)
}

/// The broker's Topic Alias Maximum from CONNACK (absent means 0).
async fn publisher(t: &Ctx) -> (Client, u16) {
    let (p, ack) = t.connect_ok(t.conn(V5, "p")).await;
    (p, ack.properties.topic_alias_maximum.unwrap_or(0))
}

/// §3.3.2.3.4: a PUBLISH with a topic and a Topic Alias sets the alias; a later PUBLISH with an
/// empty topic and that alias is delivered on the full topic.
#[tokio::test]
async fn inbound_alias_set_and_used() {
    let t = Ctx::new("inbound_alias_set_and_used");
    let topic = t.topic("x");
    let mut s = t.client(V5, "s").await;
    s.subscribe(&topic, Q1).await;
    let (mut p, max) = publisher(&t).await;
    if max == 0 {
        eprintln!("SKIP inbound_alias_set_and_used: Topic Alias Maximum is 0");
        return;
    }
    p.publish(aliased(&topic, 1, b"one")).await;
    p.publish(aliased("", 1, b"two")).await;
    for want in [&b"one"[..], b"two"] {
        let got = s.recv_msg().await;
        assert_eq!(&*got.topic, topic);
        assert_eq!(&got.payload[..], want);
    }
}

/// §3.3.2.3.4: a Topic Alias can be remapped to another topic by sending it with a new topic.
#[tokio::test]
async fn inbound_alias_remapped() {
    let t = Ctx::new("inbound_alias_remapped");
    let (a, b) = (t.topic("a"), t.topic("b"));
    let mut s = t.client(V5, "s").await;
    s.subscribe(&t.topic("+"), Q1).await;
    let (mut p, max) = publisher(&t).await;
    if max == 0 {
        eprintln!("SKIP inbound_alias_remapped: Topic Alias Maximum is 0");
        return;
    }
    p.publish(aliased(&a, 1, b"1")).await;
    p.publish(aliased(&b, 1, b"2")).await;
    p.publish(aliased("", 1, b"3")).await;
    let got: Vec<_> = s.drain_msgs().await.into_iter().map(|m| m.topic.to_string()).collect();
    assert_eq!(got, vec![a, b.clone(), b]);
}

/// MQTT-3.3.2-8: a Topic Alias of 0 is not permitted; the server closes the connection. The
/// specification names no reason code for it: 0x94 Topic Alias invalid, 0x82 Protocol Error and
/// 0x81 Malformed Packet are accepted.
#[tokio::test]
async fn inbound_alias_zero_refused() {
    let t = Ctx::new("inbound_alias_zero_refused");
    let (mut p, _) = publisher(&t).await;
    p.send(&raw_aliased(&t.topic("x"), 0));
    if let Some(reason) = p.expect_closed().await {
        let allowed = [
            ReasonCode::TOPIC_ALIAS_INVALID,
            ReasonCode::PROTOCOL_ERROR,
            ReasonCode::MALFORMED_PACKET,
        ];
        assert!(allowed.contains(&reason), "{reason:?}");
    }
}

/// MQTT-3.3.2-9, §3.3.2.3.4: a Topic Alias above the server's Topic Alias Maximum is refused
/// with DISCONNECT 0x94 Topic Alias invalid.
#[tokio::test]
async fn inbound_alias_over_maximum_0x94() {
    let t = Ctx::new("inbound_alias_over_maximum_0x94");
    let (mut p, max) = publisher(&t).await;
    p.send(&raw_aliased(&t.topic("x"), max.saturating_add(1)));
    let reason = p.expect_closed().await;
    assert_eq!(reason, Some(ReasonCode::TOPIC_ALIAS_INVALID));
}

/// §3.3.2.3.4: an empty topic with an alias that has no mapping is a Protocol Error (0x82).
#[tokio::test]
async fn inbound_unknown_alias_protocol_error() {
    let t = Ctx::new("inbound_unknown_alias_protocol_error");
    let (mut p, max) = publisher(&t).await;
    if max == 0 {
        eprintln!("SKIP inbound_unknown_alias_protocol_error: Topic Alias Maximum is 0");
        return;
    }
    p.send(&raw_aliased("", 1));
    if let Some(reason) = p.expect_closed().await {
        assert_eq!(reason, ReasonCode::PROTOCOL_ERROR);
    }
}

/// MQTT-3.3.2-7: topic alias mappings exist only within a network connection: after a new
/// connection the old alias is unknown (Protocol Error).
#[tokio::test]
async fn inbound_alias_not_kept_across_connections() {
    let t = Ctx::new("inbound_alias_not_kept_across_connections");
    let (mut p, max) = publisher(&t).await;
    if max == 0 {
        eprintln!("SKIP inbound_alias_not_kept_across_connections: Topic Alias Maximum is 0");
        return;
    }
    p.publish(aliased(&t.topic("x"), 1, b"m")).await;
    p.disconnect().await;
    let (mut p, _) = publisher(&t).await;
    p.send(&raw_aliased("", 1));
    if let Some(reason) = p.expect_closed().await {
        assert_eq!(reason, ReasonCode::PROTOCOL_ERROR);
    }
}

/// MQTT-3.1.2-30: a client that sends no Topic Alias Maximum (0) never receives a
/// Topic Alias.
#[tokio::test]
async fn outbound_no_alias_without_client_maximum() {
    let t = Ctx::new("outbound_no_alias_without_client_maximum");
    let topic = t.topic("x");
    let mut s = t.client(V5, "s").await;
    s.subscribe(&topic, Q0).await;
    let mut p = t.client(V5, "p").await;
    for _ in 0..3 {
        p.publish(msg(&topic, b"m", Q1)).await;
    }
    for m in s.drain_msgs().await {
        assert_eq!(m.properties.topic_alias, None);
        assert_eq!(&*m.topic, topic);
    }
}

/// MQTT-3.1.2-29, MQTT-3.3.2-11 (§3.3.2.3.4): when the client advertises Topic Alias Maximum 2,
/// the server may use aliases 1..=2; every message, resolved through the aliases it set, has
/// the right topic.
#[tokio::test]
async fn outbound_alias_within_client_maximum() {
    let t = Ctx::new("outbound_alias_within_client_maximum");
    let mut conn = t.conn(V5, "s");
    conn.properties.topic_alias_maximum = Some(2);
    let (mut s, _) = t.connect_ok(conn).await;
    s.subscribe(&t.topic("+"), Q0).await;
    let mut p = t.client(V5, "p").await;
    let topics: Vec<String> =
        ["a", "b", "a", "c", "a", "b", "b"].iter().map(|l| t.topic(l)).collect();
    for topic in &topics {
        p.publish(msg(topic, topic.as_bytes(), Q1)).await;
    }
    let mut map: HashMap<u16, String> = HashMap::new();
    let mut used = 0;
    for m in s.drain_msgs().await {
        let expected = String::from_utf8(m.payload.to_vec()).unwrap();
        let resolved = match m.properties.topic_alias {
            None => m.topic.to_string(),
            Some(alias) => {
                used += 1;
                assert!((1..=2).contains(&alias), "alias {alias} outside 1..=2");
                if m.topic.is_empty() {
                    map.get(&alias).cloned().expect("alias used before it was set")
                } else {
                    map.insert(alias, m.topic.to_string());
                    m.topic.to_string()
                }
            }
        };
        assert_eq!(resolved, expected);
    }
    eprintln!("note: {used} of {} messages carried a topic alias", topics.len());
}
