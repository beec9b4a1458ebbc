//! Deterministic one-line renderings of the packets a client receives, for transcripts.

use core::fmt::{Display, Write};

use musqratt_proto::ProtocolVersion;
use musqratt_proto::mqtt::{
    AckProperties, AuthProperties, ConnAckProperties, DisconnectProperties, Packet,
    PublishProperties, ReasonCode, UserProperties,
};

/// `name=value` pairs of the properties that are present, in a fixed order.
#[derive(Default)]
struct Props(Vec<String>);

impl Props {
    fn opt<T: Display>(&mut self, name: &str, value: Option<&T>) {
        if let Some(value) = value {
            self.0.push(format!("{name}={value}"));
        }
    }

    fn opt_str(&mut self, name: &str, value: Option<&musqratt_proto::bytestring::ByteString>) {
        if let Some(value) = value {
            self.0.push(format!("{name}={}", quoted(value.as_bytes())));
        }
    }

    fn opt_bin(&mut self, name: &str, value: Option<&bytes::Bytes>) {
        if let Some(value) = value {
            self.0.push(format!("{name}={}", quoted(value)));
        }
    }

    fn user(&mut self, pairs: &UserProperties) {
        for (name, value) in pairs {
            self.0.push(format!("user({})={}", quoted(name.as_bytes()), quoted(value.as_bytes())));
        }
    }

    /// ` props{a=1, b=2}`, or nothing when no property is present.
    fn finish(self) -> String {
        if self.0.is_empty() { String::new() } else { format!(" props{{{}}}", self.0.join(", ")) }
    }
}

/// A byte string as a quoted, escaped string when it is UTF-8, as hex otherwise.
#[must_use]
pub fn quoted(bytes: &[u8]) -> String {
    match core::str::from_utf8(bytes) {
        Ok(text) => format!("\"{}\"", text.escape_debug()),
        Err(_) => {
            let mut out = String::from("0x");
            for byte in bytes {
                let _ = write!(out, "{byte:02x}");
            }
            out
        }
    }
}

/// A reason code as its name and value.
#[must_use]
pub fn reason(code: ReasonCode) -> String {
    match code.name() {
        Some(name) => format!("{name}(0x{:02X})", code.0),
        None => format!("0x{:02X}", code.0),
    }
}

fn connack_props(p: &ConnAckProperties) -> String {
    let mut out = Props::default();
    out.opt("session_expiry", p.session_expiry_interval.as_ref());
    out.opt("receive_maximum", p.receive_maximum.as_ref());
    out.opt("maximum_qos", p.maximum_qos.map(|q| q.bits()).as_ref());
    out.opt("retain_available", p.retain_available.as_ref());
    out.opt("maximum_packet_size", p.maximum_packet_size.as_ref());
    out.opt_str("assigned_client_id", p.assigned_client_identifier.as_ref());
    out.opt("topic_alias_maximum", p.topic_alias_maximum.as_ref());
    out.opt_str("reason_string", p.reason_string.as_ref());
    out.opt("wildcard_available", p.wildcard_subscription_available.as_ref());
    out.opt("subscription_ids_available", p.subscription_identifiers_available.as_ref());
    out.opt("shared_available", p.shared_subscription_available.as_ref());
    out.opt("server_keep_alive", p.server_keep_alive.as_ref());
    out.opt_str("response_information", p.response_information.as_ref());
    out.opt_str("server_reference", p.server_reference.as_ref());
    out.opt_str("auth_method", p.authentication_method.as_ref());
    out.opt_bin("auth_data", p.authentication_data.as_ref());
    out.user(&p.user_properties);
    out.finish()
}

fn publish_props(p: &PublishProperties) -> String {
    let mut out = Props::default();
    out.opt("payload_format", p.payload_format_indicator.map(u8::from).as_ref());
    out.opt("expiry", p.message_expiry_interval.as_ref());
    out.opt("alias", p.topic_alias.as_ref());
    out.opt_str("response_topic", p.response_topic.as_ref());
    out.opt_bin("correlation", p.correlation_data.as_ref());
    out.opt_str("content_type", p.content_type.as_ref());
    for id in &p.subscription_identifiers {
        out.0.push(format!("subid={id}"));
    }
    out.user(&p.user_properties);
    out.finish()
}

fn ack_props(p: &AckProperties) -> String {
    let mut out = Props::default();
    out.opt_str("reason_string", p.reason_string.as_ref());
    out.user(&p.user_properties);
    out.finish()
}

fn disconnect_props(p: &DisconnectProperties) -> String {
    let mut out = Props::default();
    out.opt("session_expiry", p.session_expiry_interval.as_ref());
    out.opt_str("reason_string", p.reason_string.as_ref());
    out.opt_str("server_reference", p.server_reference.as_ref());
    out.user(&p.user_properties);
    out.finish()
}

fn auth_props(p: &AuthProperties) -> String {
    let mut out = Props::default();
    out.opt_str("method", p.authentication_method.as_ref());
    out.opt_bin("data", p.authentication_data.as_ref());
    out.opt_str("reason_string", p.reason_string.as_ref());
    out.user(&p.user_properties);
    out.finish()
}

/// One packet received by a client of `version`, on one line. Reason codes are shown only
/// for 5.0, where they are on the wire (3.x CONNACK shows its return code instead).
#[must_use]
pub fn packet(version: ProtocolVersion, packet: &Packet) -> String {
    let v5 = version.is_v5();
    match packet {
        Packet::ConnAck(c) if v5 => format!(
            "CONNACK session_present={} reason={}{}",
            c.session_present,
            reason(c.reason_code),
            connack_props(&c.properties)
        ),
        Packet::ConnAck(c) => format!(
            "CONNACK session_present={} rc={}",
            c.session_present,
            c.reason_code.to_v3_connack()
        ),
        Packet::Publish(p) => {
            let id = p.packet_id.map_or_else(|| "-".to_owned(), |id| id.to_string());
            format!(
                "PUBLISH topic={} qos={} id={id} retain={} dup={} payload={}{}",
                quoted(p.topic.as_bytes()),
                p.qos.bits(),
                p.retain,
                p.dup,
                quoted(&p.payload),
                publish_props(&p.properties)
            )
        }
        Packet::PubAck(r) | Packet::PubRec(r) | Packet::PubRel(r) | Packet::PubComp(r) => {
            let name = match packet {
                Packet::PubAck(_) => "PUBACK",
                Packet::PubRec(_) => "PUBREC",
                Packet::PubRel(_) => "PUBREL",
                _ => "PUBCOMP",
            };
            if v5 {
                format!(
                    "{name} id={} reason={}{}",
                    r.packet_id,
                    reason(r.reason_code),
                    ack_props(&r.properties)
                )
            } else {
                format!("{name} id={}", r.packet_id)
            }
        }
        Packet::SubAck(s) => {
            let codes: Vec<String> = s.reason_codes.iter().map(|c| reason(*c)).collect();
            format!("SUBACK id={} [{}]{}", s.packet_id, codes.join(", "), ack_props(&s.properties))
        }
        Packet::UnsubAck(u) => {
            let codes: Vec<String> = u.reason_codes.iter().map(|c| reason(*c)).collect();
            format!(
                "UNSUBACK id={} [{}]{}",
                u.packet_id,
                codes.join(", "),
                ack_props(&u.properties)
            )
        }
        Packet::PingResp => "PINGRESP".to_owned(),
        Packet::Disconnect(d) => format!(
            "DISCONNECT reason={}{}",
            reason(d.reason_code),
            disconnect_props(&d.properties)
        ),
        Packet::Auth(a) => {
            format!("AUTH reason={}{}", reason(a.reason_code), auth_props(&a.properties))
        }
        other => format!("unexpected {other:?}"),
    }
}

/// One MQTT-SN message as a transcript line (after `<-`), fields in wire order.
#[must_use]
pub fn sn(message: &musqratt_proto::sn::Message) -> String {
    use musqratt_proto::sn::{Message as M, PublishTopic, SnQoS, SubscribeTopic};
    let ptopic = |t: &PublishTopic| match t {
        PublishTopic::Normal(id) => format!("topic_id={}", id.0),
        PublishTopic::Predefined(id) => format!("predefined={}", id.0),
        PublishTopic::Short(n) => format!("short={}", quoted(n)),
    };
    let stopic = |t: &SubscribeTopic| match t {
        SubscribeTopic::Name(n) => format!("name={}", quoted(n.as_bytes())),
        SubscribeTopic::Predefined(id) => format!("predefined={}", id.0),
        SubscribeTopic::Short(n) => format!("short={}", quoted(n)),
    };
    let qos = |q: SnQoS| match q {
        SnQoS::MinusOne => "-1".to_owned(),
        q => q.bits().to_string(),
    };
    match message {
        M::Advertise(a) => format!("ADVERTISE gw_id={} duration={}", a.gw_id, a.duration),
        M::SearchGw(s) => format!("SEARCHGW radius={}", s.radius),
        M::GwInfo(g) => format!(
            "GWINFO gw_id={}{}",
            g.gw_id,
            g.gw_add.as_ref().map(|a| format!(" gw_add={}", quoted(a))).unwrap_or_default()
        ),
        M::Connect(c) => format!(
            "CONNECT will={} clean={} duration={} client_id={}",
            u8::from(c.will),
            u8::from(c.clean_session),
            c.duration,
            quoted(c.client_id.as_bytes())
        ),
        M::ConnAck(rc) => format!("CONNACK {rc:?}"),
        M::WillTopicReq => "WILLTOPICREQ".to_owned(),
        M::WillTopic(None) => "WILLTOPIC (empty)".to_owned(),
        M::WillTopic(Some(w)) | M::WillTopicUpd(Some(w)) => format!(
            "{} qos={} retain={} topic={}",
            if matches!(message, M::WillTopic(_)) { "WILLTOPIC" } else { "WILLTOPICUPD" },
            w.qos.bits(),
            u8::from(w.retain),
            quoted(w.topic.as_bytes())
        ),
        M::WillMsgReq => "WILLMSGREQ".to_owned(),
        M::WillMsg(m) => format!("WILLMSG {}", quoted(m)),
        M::Register(r) => format!(
            "REGISTER topic_id={} msg_id={} topic={}",
            r.topic_id.0,
            r.msg_id.0,
            quoted(r.topic_name.as_bytes())
        ),
        M::RegAck(r) => {
            format!("REGACK topic_id={} msg_id={} {:?}", r.topic_id.0, r.msg_id.0, r.return_code)
        }
        M::Publish(p) => format!(
            "PUBLISH {} qos={} retain={} dup={} msg_id={} data={}",
            ptopic(&p.topic),
            qos(p.qos),
            u8::from(p.retain),
            u8::from(p.dup),
            p.msg_id.0,
            quoted(&p.data)
        ),
        M::PubAck(a) => {
            format!("PUBACK topic_id={} msg_id={} {:?}", a.topic_id.0, a.msg_id.0, a.return_code)
        }
        M::PubRec(id) => format!("PUBREC msg_id={}", id.0),
        M::PubRel(id) => format!("PUBREL msg_id={}", id.0),
        M::PubComp(id) => format!("PUBCOMP msg_id={}", id.0),
        M::Subscribe(s) => {
            format!("SUBSCRIBE qos={} msg_id={} {}", s.qos.bits(), s.msg_id.0, stopic(&s.topic))
        }
        M::SubAck(s) => format!(
            "SUBACK qos={} topic_id={} msg_id={} {:?}",
            s.qos.bits(),
            s.topic_id.0,
            s.msg_id.0,
            s.return_code
        ),
        M::Unsubscribe(u) => format!("UNSUBSCRIBE msg_id={} {}", u.msg_id.0, stopic(&u.topic)),
        M::UnsubAck(id) => format!("UNSUBACK msg_id={}", id.0),
        M::PingReq(None) => "PINGREQ".to_owned(),
        M::PingReq(Some(id)) => format!("PINGREQ client_id={}", quoted(id.as_bytes())),
        M::PingResp => "PINGRESP".to_owned(),
        M::Disconnect(None) => "DISCONNECT".to_owned(),
        M::Disconnect(Some(d)) => format!("DISCONNECT duration={d}"),
        M::WillTopicUpd(None) => "WILLTOPICUPD (empty)".to_owned(),
        M::WillTopicResp(rc) => format!("WILLTOPICRESP {rc:?}"),
        M::WillMsgUpd(m) => format!("WILLMSGUPD {}", quoted(m)),
        M::WillMsgResp(rc) => format!("WILLMSGRESP {rc:?}"),
        M::Encapsulated(e) => format!(
            "ENCAPSULATED radius={} node={} {}",
            e.radius,
            quoted(&e.wireless_node_id),
            sn(&e.message)
        ),
        other => format!("{other:?}"),
    }
}
