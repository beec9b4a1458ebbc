//! SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK (§3.8-3.11) and topic matching (§4.7).

use musqratt_conformance::*;
use musqratt_proto::ProtocolVersion;
use musqratt_proto::mqtt::ReasonCode;

/// Subscribes `filter` (relative to the case's topic space) and reports which of `topics`
/// (relative too) reach the subscriber.
async fn matched(t: &Ctx, version: ProtocolVersion, filter: &str, topics: &[&str]) -> Vec<String> {
    let base = t.topic("");
    let mut s = t.client(version, "s").await;
    s.subscribe(&format!("{base}{filter}"), Q0).await;
    let mut p = t.client(version, "p").await;
    for topic in topics {
        p.publish(msg(&format!("{base}{topic}"), topic.as_bytes(), Q1)).await;
    }
    s.drain_msgs()
        .await
        .into_iter()
        .map(|m| String::from_utf8(m.payload.to_vec()).unwrap())
        .collect()
}

/// MQTT-3.8.4-1, MQTT-3.8.4-2 (3.1.1 MQTT-3.8.4-1, -2): SUBACK carries the SUBSCRIBE's packet
/// identifier; MQTT-3.9.3-1: one granted QoS per filter, in order (3.1.1 return codes).
#[tokio::test]
async fn v3_suback_codes_in_order() {
    let t = Ctx::new("v3_suback_codes_in_order");
    let mut s = t.client(V3, "s").await;
    let (a, b, c) = (t.topic("a"), t.topic("b"), t.topic("c"));
    let ack = s
        .subscribe_with(&[(&a, opts(Q2)), (&b, opts(Q0)), (&c, opts(Q1))], Default::default())
        .await;
    assert_eq!(ack.reason_codes, vec![ReasonCode(2), ReasonCode(0), ReasonCode(1)]);
}

/// MQTT-3.8.4-6, MQTT-3.9.3-1 (5.0): the SUBACK has one Reason Code per Topic Filter in order: Granted QoS.
#[tokio::test]
async fn v5_suback_codes_in_order() {
    let t = Ctx::new("v5_suback_codes_in_order");
    let mut s = t.client(V5, "s").await;
    let (a, b) = (t.topic("a"), t.topic("b/+"));
    let ack = s.subscribe_with(&[(&a, opts(Q1)), (&b, opts(Q2))], Default::default()).await;
    assert_eq!(ack.reason_codes, vec![ReasonCode::GRANTED_QOS_1, ReasonCode::GRANTED_QOS_2]);
}

/// §4.7.1.2: `+` matches exactly one level, including an empty one, and not the parent.
#[tokio::test]
async fn single_level_wildcard() {
    let t = Ctx::new("single_level_wildcard");
    let got = matched(&t, V3, "s/+/p", &["s/x/p", "s//p", "s/x/y/p", "s/p", "s/x/p/q"]).await;
    assert_eq!(got, vec!["s/x/p", "s//p"]);
}

/// §4.7.1.2: a trailing `+` matches one level: "s/+" matches "s/x" and "s/" but not "s" or "s/x/y".
#[tokio::test]
async fn single_level_wildcard_trailing() {
    let t = Ctx::new("single_level_wildcard_trailing");
    let got = matched(&t, V5, "s/+", &["s/x", "s/", "s", "s/x/y"]).await;
    assert_eq!(got, vec!["s/x", "s/"]);
}

/// §4.7.1.2: `#` matches the parent level and any number of child levels.
#[tokio::test]
async fn multi_level_wildcard() {
    let t = Ctx::new("multi_level_wildcard");
    let got = matched(&t, V3, "s/#", &["s", "s/x", "s/x/y/z", "t/x", "sx"]).await;
    assert_eq!(got, vec!["s", "s/x", "s/x/y/z"]);
}

/// §4.7.3: topic names and filters are case sensitive and "/" is a level separator even at the
/// start: "A" and "a", "/a" and "a" are distinct.
#[tokio::test]
async fn topics_case_sensitive_and_exact() {
    let t = Ctx::new("topics_case_sensitive_and_exact");
    let got = matched(&t, V5, "s/a", &["s/A", "s/a", "s/a/", "s//a", "s/a"]).await;
    assert_eq!(got, vec!["s/a", "s/a"]);
}

/// MQTT-4.7.2-1: a filter starting with a wildcard does not match topic names beginning with
/// `$`: `#` receives none of them (checked on $SYS and on a `$`-topic of our own).
#[tokio::test]
async fn dollar_topics_not_matched_by_hash() {
    let t = Ctx::new("dollar_topics_not_matched_by_hash");
    let dollar = format!("${}", t.topic("x"));
    let mut all = t.client(V3, "all").await;
    all.subscribe("#", Q0).await;
    let mut direct = t.client(V3, "direct").await;
    direct.subscribe(&dollar, Q0).await;
    let mut p = t.client(V3, "p").await;
    p.publish(msg(&dollar, b"d", Q1)).await;
    p.publish(msg(&t.topic("plain"), b"p", Q1)).await;
    let got = all.collect_for(core::time::Duration::from_millis(700)).await;
    assert!(got.iter().all(|m| !m.topic.starts_with('$')), "`#` matched a $ topic");
    assert!(got.iter().any(|m| *m.topic == *t.topic("plain")), "`#` missed a plain topic");
    if direct.drain_msgs().await.is_empty() {
        eprintln!("note: broker refuses publishing to {dollar}; only $SYS was covered");
    }
}

/// MQTT-4.7.2-1: `+/...` does not match a topic whose first level begins with `$`.
#[tokio::test]
async fn dollar_topics_not_matched_by_plus() {
    let t = Ctx::new("dollar_topics_not_matched_by_plus");
    let first = format!("$cf{}", t.id("l"));
    let dollar = format!("{first}/x");
    let mut plus = t.client(V5, "plus").await;
    plus.subscribe("+/x", Q0).await;
    let mut direct = t.client(V5, "direct").await;
    direct.subscribe(&format!("{first}/+"), Q0).await;
    let mut p = t.client(V5, "p").await;
    p.publish(msg(&dollar, b"d", Q1)).await;
    let direct_got = direct.drain_msgs().await;
    let got = plus.drain_msgs().await;
    assert!(got.iter().all(|m| *m.topic != *dollar), "`+/x` matched {dollar}");
    if direct_got.is_empty() {
        eprintln!("note: broker did not deliver {dollar} to an explicit subscription either");
    }
}

/// MQTT-3.3.5-1 (3.1.1): with overlapping subscriptions the message is delivered respecting the
/// maximum QoS of all matching subscriptions (further copies, one per subscription, MAY be sent).
#[tokio::test]
async fn v3_overlapping_subscriptions_max_qos() {
    let t = Ctx::new("v3_overlapping_subscriptions_max_qos");
    if t.deviation("mosquitto", "Mosquitto 2.0.11 sends one copy at the QoS of one matching subscription (QoS 1 of the exact filter), not the maximum QoS 2 of the overlapping a/# subscription") {
        return;
    }
    let topic = t.topic("a/b");
    let mut s = t.client(V3, "s").await;
    s.subscribe(&t.topic("a/+"), Q0).await;
    s.subscribe(&t.topic("a/#"), Q2).await;
    s.subscribe(&topic, Q1).await;
    let mut p = t.client(V3, "p").await;
    p.publish(msg(&topic, b"m", Q2)).await;
    let got = s.drain_msgs().await;
    assert!(!got.is_empty());
    assert!(got.len() <= 3, "at most one copy per matching subscription");
    assert!(got.iter().any(|m| m.qos == Q2), "a copy at the maximum QoS: {got:?}");
    if got.len() > 1 {
        eprintln!("note: broker sent {} copies (one per subscription, allowed)", got.len());
    }
}

/// MQTT-3.3.4-2 (5.0): overlapping subscriptions: delivered respecting the maximum QoS of the
/// matching subscriptions.
#[tokio::test]
async fn v5_overlapping_subscriptions_max_qos() {
    let t = Ctx::new("v5_overlapping_subscriptions_max_qos");
    let topic = t.topic("a/b");
    let mut s = t.client(V5, "s").await;
    s.subscribe(&t.topic("a/+"), Q0).await;
    s.subscribe(&t.topic("a/#"), Q2).await;
    s.subscribe(&topic, Q1).await;
    let mut p = t.client(V5, "p").await;
    p.publish(msg(&topic, b"m", Q2)).await;
    let got = s.drain_msgs().await;
    assert!(!got.is_empty() && got.len() <= 3, "{got:?}");
    assert!(got.iter().any(|m| m.qos == Q2), "a copy at the maximum QoS: {got:?}");
}

/// MQTT-3.8.4-3: a SUBSCRIBE with a filter identical to an existing subscription replaces it:
/// the new QoS applies and messages are not duplicated.
#[tokio::test]
async fn subscription_replaced() {
    let t = Ctx::new("subscription_replaced");
    let topic = t.topic("x");
    let mut s = t.client(V3, "s").await;
    s.subscribe(&topic, Q0).await;
    s.subscribe(&topic, Q1).await;
    let mut p = t.client(V3, "p").await;
    p.publish(msg(&topic, b"m", Q2)).await;
    let got = s.drain_msgs().await;
    assert_eq!(got.len(), 1, "one copy: {got:?}");
    assert_eq!(got[0].qos, Q1, "the new subscription's QoS");
}

/// MQTT-3.10.4-1, -2, -4 (3.1.1 MQTT-3.10.4-1, -2, -4): after UNSUBSCRIBE, answered with
/// UNSUBACK with the same packet identifier, the server stops delivering.
#[tokio::test]
async fn v3_unsubscribe_stops_delivery() {
    let t = Ctx::new("v3_unsubscribe_stops_delivery");
    let topic = t.topic("x");
    let mut s = t.client(V3, "s").await;
    s.subscribe(&topic, Q1).await;
    let ack = s.unsubscribe(&[&topic]).await;
    assert!(ack.reason_codes.is_empty(), "3.1.1 UNSUBACK has no payload");
    let mut p = t.client(V3, "p").await;
    p.publish(msg(&topic, b"m", Q1)).await;
    s.expect_silence().await;
}

/// MQTT-3.10.4-5 (3.1.1): UNSUBACK is sent even when no filter matched a subscription.
#[tokio::test]
async fn v3_unsubscribe_unknown_acknowledged() {
    let t = Ctx::new("v3_unsubscribe_unknown_acknowledged");
    let mut s = t.client(V3, "s").await;
    s.unsubscribe(&[&t.topic("never")]).await;
}

/// MQTT-3.11.3-1, §3.11.3 (5.0): UNSUBACK has one reason code per filter: 0x00 for a removed
/// subscription and 0x11 No subscription existed otherwise.
#[tokio::test]
async fn v5_unsuback_reason_codes() {
    let t = Ctx::new("v5_unsuback_reason_codes");
    let (a, b) = (t.topic("a"), t.topic("b"));
    let mut s = t.client(V5, "s").await;
    s.subscribe(&a, Q1).await;
    let ack = s.unsubscribe(&[&a, &b]).await;
    assert_eq!(
        ack.reason_codes,
        vec![ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED],
        "expected [0x00, 0x11]"
    );
}

/// MQTT-3.10.4-6 (5.0; 3.1.1 MQTT-3.10.4-6): UNSUBSCRIBE with several filters is processed as a
/// sequence; unsubscribing one of two overlapping filters keeps delivery through the other.
#[tokio::test]
async fn unsubscribe_one_of_overlapping() {
    let t = Ctx::new("unsubscribe_one_of_overlapping");
    let topic = t.topic("a/b");
    let mut s = t.client(V5, "s").await;
    s.subscribe(&topic, Q1).await;
    s.subscribe(&t.topic("a/+"), Q1).await;
    s.unsubscribe(&[&topic]).await;
    let mut p = t.client(V5, "p").await;
    p.publish(msg(&topic, b"m", Q1)).await;
    assert_eq!(s.drain_msgs().await.len(), 1);
}

/// MQTT-3.8.4-5 (5.0; 3.1.1 MQTT-3.8.4-4): a SUBSCRIBE with several filters is handled as a sequence
/// of SUBSCRIBE packets: all of them are in effect afterwards.
#[tokio::test]
async fn multiple_filters_all_effective() {
    let t = Ctx::new("multiple_filters_all_effective");
    let (a, b) = (t.topic("a"), t.topic("b"));
    let mut s = t.client(V3, "s").await;
    s.subscribe_with(&[(&a, opts(Q1)), (&b, opts(Q1))], Default::default()).await;
    let mut p = t.client(V3, "p").await;
    p.publish(msg(&a, b"a", Q1)).await;
    p.publish(msg(&b, b"b", Q1)).await;
    let got: Vec<_> = s.drain_msgs().await.into_iter().map(|m| m.payload).collect();
    assert_eq!(got, vec![&b"a"[..], &b"b"[..]]);
}
