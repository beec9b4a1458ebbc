//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/*`) through the checks of the fuzz
//! targets, without libFuzzer, and keeps the hand-made seeds of that corpus.
//!
//! Regenerate the seeds after changing them:
//! `cargo test -p musqratt-proto --test fuzz_corpus -- --ignored write_seed_corpus`.

use std::fs;
use std::path::{Path, PathBuf};

use musqratt_proto::bytes::{Bytes, BytesMut};
use musqratt_proto::bytestring::ByteString;
use musqratt_proto::fuzzing::{self, Input, Side};
use musqratt_proto::mqtt::{
    AckProperties, Auth, ConnAck, Connect, Decoder, Disconnect, LastWill, Packet, PubResponse,
    Publish, ReasonCode, RetainHandling, SubAck, Subscribe, SubscriptionOptions, UnsubAck,
    Unsubscribe,
};
use musqratt_proto::{PacketId, ProtocolVersion, QoS};

const V3_1: ProtocolVersion = ProtocolVersion::V3_1;
const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus")
}

fn s(text: &'static str) -> ByteString {
    ByteString::from_static(text)
}

fn id(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

fn connect(protocol: ProtocolVersion) -> Connect {
    Connect {
        protocol,
        clean_start: true,
        keep_alive: 60,
        client_id: s("c1"),
        will: None,
        username: None,
        password: None,
        properties: Default::default(),
    }
}

fn connect_full(protocol: ProtocolVersion) -> Connect {
    let mut will = LastWill {
        topic: s("will/t"),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: Default::default(),
    };
    let mut connect = connect(protocol);
    connect.clean_start = false;
    connect.username = Some(s("user"));
    connect.password = Some(Bytes::from_static(b"pw"));
    if protocol.is_v5() {
        will.properties.will_delay_interval = Some(10);
        will.properties.content_type = Some(s("text/plain"));
        will.properties.user_properties.push((s("k"), s("v")));
        connect.properties.session_expiry_interval = Some(3600);
        connect.properties.receive_maximum = Some(20);
        connect.properties.maximum_packet_size = Some(65_536);
        connect.properties.topic_alias_maximum = Some(8);
        connect.properties.request_problem_information = Some(true);
        connect.properties.authentication_method = Some(s("SCRAM-SHA-1"));
        connect.properties.authentication_data = Some(Bytes::from_static(b"\x01\x02"));
    }
    connect.will = Some(will);
    connect
}

fn publish(qos: QoS, topic: &'static str, payload: &'static [u8]) -> Publish {
    let mut publish = Publish::new(s(topic), Bytes::from_static(payload));
    publish.qos = qos;
    publish.packet_id = (qos != QoS::AtMostOnce).then(|| id(7));
    publish
}

fn publish_v5_props() -> Publish {
    let mut publish = publish(QoS::ExactlyOnce, "a/b", b"{\"x\":1}");
    publish.dup = true;
    publish.retain = true;
    let props = &mut publish.properties;
    props.payload_format_indicator = Some(true);
    props.message_expiry_interval = Some(30);
    props.topic_alias = Some(3);
    props.response_topic = Some(s("reply/here"));
    props.correlation_data = Some(Bytes::from_static(b"corr"));
    props.content_type = Some(s("application/json"));
    props.subscription_identifiers.push(5);
    props.subscription_identifiers.push(300);
    props.user_properties.push((s("name"), s("value")));
    publish
}

fn ack_props() -> AckProperties {
    let mut props = AckProperties::default();
    props.reason_string = Some(s("why"));
    props.user_properties.push((s("k"), s("v")));
    props
}

fn subscribe(version: ProtocolVersion) -> Subscribe {
    let mut options = SubscriptionOptions::with_qos(QoS::ExactlyOnce);
    let mut filters = vec![(s("a/+/c"), SubscriptionOptions::with_qos(QoS::AtLeastOnce))];
    let mut subscribe =
        Subscribe { packet_id: id(2), filters: Vec::new(), properties: Default::default() };
    if version.is_v5() {
        options.no_local = true;
        options.retain_as_published = true;
        options.retain_handling = RetainHandling::DoNotSend;
        subscribe.properties.subscription_identifier = Some(42);
        subscribe.properties.user_properties.push((s("k"), s("v")));
        filters.push((s("$share/g/x/#"), SubscriptionOptions::with_qos(QoS::AtMostOnce)));
    }
    filters.push((s("sport/#"), options));
    subscribe.filters = filters;
    subscribe
}

/// The hand-made seeds: a name, the decoder that reads them, and the packets of the stream.
fn seeds() -> Vec<(&'static str, Side, Vec<Packet>)> {
    use Packet as P;
    let server = Side::Server;
    let c4 = Side::Client(V4);
    let c5 = Side::Client(V5);
    let c31 = Side::Client(V3_1);
    let mut v5_connack = ConnAck {
        session_present: true,
        reason_code: ReasonCode::SUCCESS,
        properties: Default::default(),
    };
    let p = &mut v5_connack.properties;
    p.session_expiry_interval = Some(60);
    p.receive_maximum = Some(100);
    p.maximum_qos = Some(QoS::AtLeastOnce);
    p.retain_available = Some(false);
    p.maximum_packet_size = Some(1 << 20);
    p.assigned_client_identifier = Some(s("auto-1"));
    p.topic_alias_maximum = Some(16);
    p.wildcard_subscription_available = Some(true);
    p.subscription_identifiers_available = Some(true);
    p.shared_subscription_available = Some(true);
    p.server_keep_alive = Some(30);
    p.response_information = Some(s("resp/"));
    let mut v5_unsubscribe = Unsubscribe {
        packet_id: id(3),
        filters: vec![s("a/b"), s("$share/g/c")],
        properties: Default::default(),
    };
    v5_unsubscribe.properties.user_properties.push((s("k"), s("v")));
    let mut alias = publish(QoS::AtMostOnce, "x", b"aliased");
    alias.topic = s("");
    alias.properties.topic_alias = Some(3);
    let mut disconnect = Disconnect::new(ReasonCode(0x8E)); // Session taken over
    disconnect.properties.session_expiry_interval = Some(0);
    disconnect.properties.reason_string = Some(s("bye"));
    disconnect.properties.server_reference = Some(s("other:1883"));
    let mut auth = Auth { reason_code: ReasonCode(0x18), properties: Default::default() };
    auth.properties.authentication_method = Some(s("SCRAM-SHA-1"));
    auth.properties.authentication_data = Some(Bytes::from_static(b"nonce"));
    let failed_puback =
        PubResponse { packet_id: id(9), reason_code: ReasonCode(0x10), properties: ack_props() };
    let v4_connack = |code| ConnAck {
        session_present: false,
        reason_code: ReasonCode(code),
        properties: Default::default(),
    };
    vec![
        // Server side: CONNECT of each version, then a session's worth of packets.
        ("server-v311-connect", server, vec![P::Connect(Box::new(connect(V4)))]),
        (
            "server-v31-connect-publish",
            server,
            vec![
                P::Connect(Box::new(connect(V3_1))),
                P::Publish(publish(QoS::AtMostOnce, "t", b"hi")),
            ],
        ),
        (
            "server-v311-session",
            server,
            vec![
                P::Connect(Box::new(connect_full(V4))),
                P::Subscribe(subscribe(V4)),
                P::Publish(publish(QoS::AtLeastOnce, "a/b", b"payload")),
                P::PubRec(PubResponse::new(id(1))),
                P::PubRel(PubResponse::new(id(7))),
                P::Unsubscribe(Unsubscribe {
                    packet_id: id(3),
                    filters: vec![s("a/b")],
                    properties: Default::default(),
                }),
                P::PingReq,
                P::Disconnect(Disconnect::default()),
            ],
        ),
        ("server-v5-connect", server, vec![P::Connect(Box::new(connect_full(V5)))]),
        (
            "server-v5-session",
            server,
            vec![
                P::Connect(Box::new(connect(V5))),
                P::Auth(auth.clone()),
                P::Subscribe(subscribe(V5)),
                P::Publish(publish_v5_props()),
                P::Publish(alias.clone()),
                P::PubAck(failed_puback.clone()),
                P::PubComp(PubResponse::new(id(4))),
                P::Unsubscribe(v5_unsubscribe.clone()),
                P::PingReq,
                P::Disconnect(disconnect.clone()),
            ],
        ),
        // Client side, 3.1.1: one packet of every type a client receives (and a few it sends).
        ("client-v311-connack", c4, vec![P::ConnAck(Box::new(v4_connack(0)))]),
        ("client-v311-connack-refused", c4, vec![P::ConnAck(Box::new(v4_connack(0x87)))]),
        ("client-v311-publish-qos0", c4, vec![P::Publish(publish(QoS::AtMostOnce, "a/b", b"x"))]),
        (
            "client-v311-publish-qos1",
            c4,
            vec![P::Publish(publish(QoS::AtLeastOnce, "a/b", &[0xAB; 64]))],
        ),
        (
            "client-v311-publish-qos2-dup-retain",
            c4,
            vec![P::Publish({
                let mut p = publish(QoS::ExactlyOnce, "$SYS/x", b"");
                p.dup = true;
                p.retain = true;
                p
            })],
        ),
        ("client-v311-puback", c4, vec![P::PubAck(PubResponse::new(id(1)))]),
        ("client-v311-pubrec", c4, vec![P::PubRec(PubResponse::new(id(2)))]),
        ("client-v311-pubrel", c4, vec![P::PubRel(PubResponse::new(id(3)))]),
        ("client-v311-pubcomp", c4, vec![P::PubComp(PubResponse::new(id(4)))]),
        (
            "client-v311-suback",
            c4,
            vec![P::SubAck(SubAck {
                packet_id: id(2),
                reason_codes: vec![ReasonCode(0), ReasonCode(1), ReasonCode(2), ReasonCode(0x80)],
                properties: Default::default(),
            })],
        ),
        (
            "client-v311-unsuback",
            c4,
            vec![P::UnsubAck(UnsubAck {
                packet_id: id(3),
                reason_codes: Vec::new(),
                properties: Default::default(),
            })],
        ),
        ("client-v311-pingresp", c4, vec![P::PingResp]),
        ("client-v311-disconnect", c4, vec![P::Disconnect(Disconnect::default())]),
        ("client-v311-subscribe", c4, vec![P::Subscribe(subscribe(V4))]),
        // Client side, 5.0.
        ("client-v5-connack", c5, vec![P::ConnAck(Box::new(v5_connack))]),
        (
            "client-v5-connack-refused",
            c5,
            vec![P::ConnAck(Box::new(ConnAck {
                session_present: false,
                reason_code: ReasonCode(0x9C), // Use another server
                properties: {
                    let mut p = musqratt_proto::mqtt::ConnAckProperties::default();
                    p.server_reference = Some(s("other:1883"));
                    p.reason_string = Some(s("moved"));
                    p
                },
            }))],
        ),
        ("client-v5-publish-props", c5, vec![P::Publish(publish_v5_props())]),
        ("client-v5-publish-alias", c5, vec![P::Publish(alias)]),
        (
            "client-v5-publish-qos1",
            c5,
            vec![P::Publish(publish(QoS::AtLeastOnce, "a/b", &[0x5A; 64]))],
        ),
        ("client-v5-puback-short", c5, vec![P::PubAck(PubResponse::new(id(1)))]),
        ("client-v5-puback-reason", c5, vec![P::PubAck(failed_puback)]),
        (
            "client-v5-pubrec",
            c5,
            vec![P::PubRec(PubResponse {
                packet_id: id(2),
                reason_code: ReasonCode(0x97), // Quota exceeded
                properties: Default::default(),
            })],
        ),
        (
            "client-v5-pubrel",
            c5,
            vec![P::PubRel(PubResponse {
                packet_id: id(3),
                reason_code: ReasonCode(0x92), // Packet Identifier not found
                properties: ack_props(),
            })],
        ),
        ("client-v5-pubcomp", c5, vec![P::PubComp(PubResponse::new(id(4)))]),
        (
            "client-v5-suback",
            c5,
            vec![P::SubAck(SubAck {
                packet_id: id(2),
                reason_codes: vec![
                    ReasonCode(1),
                    ReasonCode(0x87),
                    ReasonCode(0x9E),
                    ReasonCode(0xA2),
                ],
                properties: ack_props(),
            })],
        ),
        (
            "client-v5-unsuback",
            c5,
            vec![P::UnsubAck(UnsubAck {
                packet_id: id(3),
                reason_codes: vec![ReasonCode(0), ReasonCode(0x11)],
                properties: ack_props(),
            })],
        ),
        ("client-v5-pingresp", c5, vec![P::PingResp]),
        ("client-v5-disconnect", c5, vec![P::Disconnect(disconnect)]),
        ("client-v5-disconnect-short", c5, vec![P::Disconnect(Disconnect::default())]),
        ("client-v5-auth", c5, vec![P::Auth(auth)]),
        ("client-v5-auth-short", c5, vec![P::Auth(Auth::default())]),
        ("client-v5-unsubscribe", c5, vec![P::Unsubscribe(v5_unsubscribe)]),
        // 3.1 (MQIsdp) client.
        ("client-v31-connack", c31, vec![P::ConnAck(Box::new(v4_connack(0x86)))]),
        ("client-v31-publish", c31, vec![P::Publish(publish(QoS::AtLeastOnce, "t/1", b"old"))]),
    ]
}

/// A seed's bytes: the selector byte, then the encoded packets.
fn seed_bytes(side: Side, packets: &[Packet]) -> Vec<u8> {
    let mut version = match side {
        Side::Server => V5,
        Side::Client(version) => version,
    };
    let mut buf = BytesMut::new();
    for packet in packets {
        if let Packet::Connect(connect) = packet {
            version = connect.protocol;
        }
        packet.encode(version, &mut buf).unwrap();
    }
    let mut bytes = vec![Input::selector(side)];
    bytes.extend_from_slice(&buf);
    bytes
}

const TARGETS: [&str; 2] = ["mqtt_decode", "mqtt_roundtrip"];

#[test]
fn seeds_decode_to_themselves() {
    let seeds = seeds();
    assert!(seeds.len() >= 20);
    for (name, side, packets) in seeds {
        let bytes = seed_bytes(side, &packets);
        let decoded = fuzzing::decode_stream(&Input::parse(&bytes).unwrap());
        assert_eq!(decoded.error, None, "{name}");
        assert_eq!(decoded.rest, 0, "{name}");
        let got: Vec<_> = decoded.packets.into_iter().map(|(_, packet, _)| packet).collect();
        assert_eq!(got, packets, "{name}");
        fuzzing::check_decode(&bytes);
        fuzzing::check_roundtrip(&bytes);
    }
}

#[test]
fn corpus_has_the_seeds() {
    for target in TARGETS {
        for (name, side, packets) in seeds() {
            let path = corpus_dir().join(target).join(format!("seed-{name}"));
            let committed = fs::read(&path)
                .unwrap_or_else(|e| panic!("{}: {e}; run write_seed_corpus", path.display()));
            assert_eq!(committed, seed_bytes(side, &packets), "{} is stale", path.display());
        }
    }
}

/// Every file of every target's corpus through that target's checks.
#[test]
fn replay_corpus() {
    let mut count = 0;
    for dir in fs::read_dir(corpus_dir()).unwrap() {
        let dir = dir.unwrap().path();
        let target = dir.file_name().unwrap().to_str().unwrap().to_owned();
        let check: fn(&[u8]) = match target.as_str() {
            "mqtt_decode" => fuzzing::check_decode,
            "mqtt_roundtrip" => fuzzing::check_roundtrip,
            "sn_roundtrip" => fuzzing::check_sn_roundtrip,
            other => panic!("no check for the corpus of fuzz target {other}"),
        };
        for file in fs::read_dir(&dir).unwrap() {
            let path = file.unwrap().path();
            let data = fs::read(&path).unwrap();
            check(&data);
            if target.starts_with("mqtt_") {
                // Both MQTT targets read the same layout: run every check on every file.
                fuzzing::check_decode(&data);
            }
            count += 1;
        }
    }
    assert!(count >= 40, "only {count} corpus files");
}

/// Writes the seeds into `fuzz/corpus/<target>/seed-<name>`.
#[test]
#[ignore = "writes fuzz/corpus; run by hand after changing the seeds"]
fn write_seed_corpus() {
    for target in TARGETS {
        let dir = corpus_dir().join(target);
        fs::create_dir_all(&dir).unwrap();
        for (name, side, packets) in seeds() {
            fs::write(dir.join(format!("seed-{name}")), seed_bytes(side, &packets)).unwrap();
        }
    }
}

/// The decoder of a server refuses anything before CONNECT and then follows its version.
#[test]
fn server_decoder_follows_connect() {
    let mut decoder = Decoder::new(1024);
    let mut buf =
        BytesMut::from(&seed_bytes(Side::Server, &[Packet::Connect(Box::new(connect(V3_1)))])[1..]);
    assert!(matches!(decoder.decode(&mut buf), Ok(Some(Packet::Connect(_)))));
    assert_eq!(decoder.version(), Some(V3_1));
}

/// The PUBLISH topic checks keep their order and errors (decoding fuses them into one pass).
#[test]
fn publish_topic_checks() {
    use musqratt_proto::DecodeError;
    use musqratt_proto::topic::TopicError;
    let decode = |version: ProtocolVersion, topic: &[u8]| {
        let props = usize::from(version.is_v5()); // an empty Property Length
        let remaining = (2 + topic.len() + props) as u8;
        let mut buf = BytesMut::from(&[0x30, remaining, 0, topic.len() as u8][..]);
        buf.extend_from_slice(topic);
        buf.extend_from_slice(&[0][..props]);
        Decoder::with_version(version, 1024).decode(&mut buf)
    };
    assert!(matches!(decode(V4, b"a/b"), Ok(Some(Packet::Publish(_)))));
    assert!(matches!(decode(V5, b""), Ok(Some(Packet::Publish(_)))));
    assert_eq!(decode(V4, b""), Err(DecodeError::InvalidTopicName(TopicError::Empty)));
    assert_eq!(decode(V4, b"a/+"), Err(DecodeError::InvalidTopicName(TopicError::WildcardInName)));
    assert_eq!(decode(V5, b"#"), Err(DecodeError::InvalidTopicName(TopicError::WildcardInName)));
    assert_eq!(decode(V4, b"a\0#"), Err(DecodeError::NullCharacter));
    assert_eq!(decode(V4, b"#\xED\xA0\x80"), Err(DecodeError::InvalidUtf8));
}
