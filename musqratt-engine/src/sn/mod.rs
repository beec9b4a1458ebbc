//! MQTT-SN 1.2 over UDP, natively: a second protocol front-end of the same engine (ADR 5).
//!
//! An MQTT-SN client is an ordinary [`crate::connection::Connection`] whose `sn` field holds the
//! state MQTT-SN adds (its UDP peer, its topic registry, the will exchange, sleep,
//! retransmission). Its session is an ordinary [`crate::session::Session`] keyed by its client
//! id on the owner shard, so subscriptions, the inflight window, the session queue, retained
//! messages, wills and message expiry are the MQTT code paths. Three seams reach this module:
//! inbound datagrams ([`Engine::handle_datagram`]), outbound PUBLISH ([`Engine::sn_send_publish`],
//! with the topic registered first when needed) and the packets the MQTT paths send, translated
//! to their MQTT-SN form ([`Engine::sn_send_packet_at`]).
//!
//! Section numbers are those of "MQTT For Sensor Networks (MQTT-SN) Protocol Specification
//! Version 1.2".

use alloc::boxed::Box;
use alloc::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use musqratt_proto::QoS;
use musqratt_proto::bytestring::ByteString;
use musqratt_proto::sn::{
    self, Encapsulated, Message as SnMessage, PublishTopic, SnQoS, WillTopic,
};

use crate::config::Config;
use crate::ids::{ConnectionId, PeerId};
use crate::time::Instant;

/// Internal connection numbers of MQTT-SN clients: the top half of the range, which runtimes
/// leave alone (their numbers for TCP connections stay below 2^63).
mod inbound;
mod outbound;
pub(crate) mod peers;

const SN_CONN_BASE: u64 = 1 << 63;

/// The wireless node id of a forwarder-encapsulated datagram (§5.5), empty for a direct one: with
/// the peer, the key a runtime routes MQTT-SN datagrams by after [`Action::HandoffPeer`](crate::Action::HandoffPeer). A
/// zero-copy slice of `datagram`.
#[must_use]
pub fn wireless_node(datagram: &Bytes) -> Bytes {
    // Encapsulation: Length (1 octet), MsgType 0xFE, Ctrl, Wireless Node Id (Length - 3 octets).
    match datagram.get(..2) {
        Some([len, 0xFE]) if usize::from(*len) >= 3 && usize::from(*len) <= datagram.len() => {
            datagram.slice(3..usize::from(*len))
        }
        _ => Bytes::new(),
    }
}

/// The engine-wide MQTT-SN state.
#[derive(Debug, Default)]
pub(crate) struct SnFront {
    /// Which connection a (peer, wireless node) is.
    peers: BTreeMap<(PeerId, Bytes), ConnectionId>,
    next_conn: u64,
    /// Predefined topics by name, for outbound PUBLISH (§2.3).
    predefined_ids: BTreeMap<ByteString, u16>,
    predefined: BTreeMap<u16, ByteString>,
}

impl SnFront {
    pub(crate) fn new(config: &Config) -> Self {
        let predefined: BTreeMap<u16, ByteString> = config
            .sn_predefined_topics
            .iter()
            .map(|(id, topic)| (*id, ByteString::from(topic.as_str())))
            .collect();
        let predefined_ids = predefined.iter().map(|(id, t)| (t.clone(), *id)).collect();
        Self { peers: BTreeMap::new(), next_conn: 0, predefined_ids, predefined }
    }
}

/// Where an MQTT-SN client is in its life (§6.14, Figure 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SnState {
    /// CONNECT with the Will flag: WILLTOPICREQ sent (§6.3).
    AwaitingWillTopic,
    /// WILLTOPIC received: WILLMSGREQ sent.
    AwaitingWillMsg,
    /// Connected and awake.
    Active,
    /// DISCONNECT with a duration: messages are buffered (§6.14).
    Asleep,
    /// PINGREQ with the client id: buffered messages go out, then PINGRESP, then asleep again.
    Awake,
}

/// What MQTT-SN adds to a connection.
#[derive(Debug)]
pub(crate) struct SnConn {
    pub(crate) peer: PeerId,
    /// The forwarder's radius and the wireless node id, when the client sits behind one (§5.5).
    node: Option<(u8, Bytes)>,
    state: SnState,
    connect: Option<sn::Connect>,
    will_topic: Option<WillTopic>,
    will_msg: Bytes,
    /// Normal topic ids of this client, both directions (§6.5, §6.10): the broker assigns them.
    topics: BTreeMap<u16, ByteString>,
    topic_ids: BTreeMap<ByteString, u16>,
    next_topic_id: u16,
    /// A REGISTER sent and waiting for REGACK: (msg id, topic id, topic).
    registering: Option<(u16, u16, ByteString)>,
    /// Tretry deadline and retransmissions so far (§6.13).
    retry_at: Option<Instant>,
    retries: u8,
    /// The sleep duration of a sleeping client (§6.14).
    sleep: u16,
    /// The topic id and message id an acknowledgement being translated refers to.
    ack_topic: u16,
    ack_msg_id: u16,
}

impl SnConn {
    fn new(peer: PeerId, node: Option<(u8, Bytes)>) -> Self {
        Self {
            peer,
            node,
            state: SnState::Active,
            connect: None,
            will_topic: None,
            will_msg: Bytes::new(),
            topics: BTreeMap::new(),
            topic_ids: BTreeMap::new(),
            next_topic_id: 1,
            registering: None,
            retry_at: None,
            retries: 0,
            sleep: 0,
            ack_topic: 0,
            ack_msg_id: 0,
        }
    }

    /// The key of this connection's peer in `SnFront::peers`: its address and wireless node.
    fn peer_key(&self) -> (PeerId, Bytes) {
        (self.peer, self.node.as_ref().map(|(_, node)| node.clone()).unwrap_or_default())
    }

    /// A normal topic id for `topic`, registering it when new; `None` when the registry is full.
    fn register(&mut self, topic: &ByteString, max: usize) -> Option<u16> {
        if let Some(id) = self.topic_ids.get(topic) {
            return Some(*id);
        }
        if self.topics.len() >= max {
            return None;
        }
        let mut id = self.next_topic_id;
        // 0x0000 and 0xFFFF are reserved (§5.3.11).
        while id == 0 || id == 0xFFFF || self.topics.contains_key(&id) {
            id = id.wrapping_add(1);
        }
        self.next_topic_id = id.wrapping_add(1);
        self.topics.insert(id, topic.clone());
        self.topic_ids.insert(topic.clone(), id);
        Some(id)
    }
}

/// Whether a delivery's topic can be named to an MQTT-SN client now.
pub(crate) enum TopicReady {
    /// Predefined, short or registered.
    Ready,
    /// A REGISTER is out: wait for REGACK.
    Wait,
    /// The client's registry is full: the delivery cannot be named.
    Drop,
}

/// The topic id field of an outbound PUBLISH.
fn topic_id_of(topic: PublishTopic) -> u16 {
    match topic {
        PublishTopic::Normal(id) | PublishTopic::Predefined(id) => id.0,
        PublishTopic::Short(name) => u16::from_be_bytes(name),
    }
}

fn sn_qos(qos: QoS) -> SnQoS {
    match qos {
        QoS::AtMostOnce => SnQoS::AtMostOnce,
        QoS::AtLeastOnce => SnQoS::AtLeastOnce,
        QoS::ExactlyOnce => SnQoS::ExactlyOnce,
    }
}

/// One datagram: the message, inside the forwarder's encapsulation when there is one (§5.5).
fn encode(node: Option<&(u8, Bytes)>, message: &SnMessage) -> Option<Bytes> {
    let mut buf = BytesMut::new();
    let result = match node {
        Some((radius, node)) => {
            let encapsulated = SnMessage::Encapsulated(Encapsulated {
                radius: *radius,
                wireless_node_id: node.clone(),
                message: Box::new(message.clone()),
            });
            sn::encode(&encapsulated, &mut buf)
        }
        None => sn::encode(message, &mut buf),
    };
    result.ok().map(|()| buf.freeze())
}

/// A short topic name (two characters, TopicIdType 0b10, §5.3.4), when it is UTF-8.
fn short_name(name: [u8; 2]) -> Option<ByteString> {
    let text = core::str::from_utf8(&name).ok()?;
    Some(ByteString::from(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wireless_node_is_the_encapsulation_node_id_or_empty() {
        // §5.5: Length 6, MsgType 0xFE, Ctrl, Wireless Node Id "abc", then the message.
        let datagram = Bytes::from_static(b"\x06\xfe\x00abc\x02\x18");
        assert_eq!(&wireless_node(&datagram)[..], b"abc");
        assert!(wireless_node(&Bytes::from_static(b"\x02\x18")).is_empty());
        assert!(wireless_node(&Bytes::from_static(b"\x09\xfe\x00ab")).is_empty());
        assert!(wireless_node(&Bytes::new()).is_empty());
    }

    #[test]
    fn topic_ids_skip_the_reserved_values_and_stay_bounded() {
        let mut sn = SnConn::new(PeerId(1), None);
        sn.next_topic_id = 0xFFFF;
        let a = sn.register(&ByteString::from("a/b"), 2);
        assert_eq!(a, Some(1), "0xFFFF and 0x0000 are reserved (§5.3.11)");
        assert_eq!(sn.register(&ByteString::from("a/b"), 2), Some(1));
        assert_eq!(sn.register(&ByteString::from("c/d"), 2), Some(2));
        assert_eq!(sn.register(&ByteString::from("e/f"), 2), None);
    }
}
