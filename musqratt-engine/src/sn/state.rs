//! The MQTT-SN state (ADR 5): the engine-wide peer map and predefined topics, and what
//! MQTT-SN adds to a connection. A leaf module the `Engine` and `Connection` hold; the steps
//! that work on the `Engine` are in `inbound.rs` and `outbound.rs`
//! (docs/adr/0014-engine-layers.md).

use alloc::collections::BTreeMap;

use bytes::Bytes;
use musqratt_proto::bytestring::ByteString;
use musqratt_proto::sn::{self, WillTopic};

use crate::config::Config;
use crate::ids::{ConnectionId, PeerId};
use crate::time::Instant;

/// Internal connection numbers of MQTT-SN clients: the top half of the range, which runtimes
/// leave alone (their numbers for TCP connections stay below 2^63).
pub(super) const SN_CONN_BASE: u64 = 1 << 63;

/// The engine-wide MQTT-SN state.
#[derive(Debug, Default)]
pub(crate) struct SnFront {
    /// Which connection a (peer, wireless node) is.
    pub(super) peers: BTreeMap<(PeerId, Bytes), ConnectionId>,
    pub(super) next_conn: u64,
    /// Predefined topics by name, for outbound PUBLISH (§2.3).
    pub(super) predefined_ids: BTreeMap<ByteString, u16>,
    pub(super) predefined: BTreeMap<u16, ByteString>,
}

impl SnFront {
    /// MQTT-SN clients this shard knows by their address (and wireless node), for the
    /// operator's count of peers.
    pub(crate) fn peer_count(&self) -> usize {
        self.peers.len()
    }

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
    pub(super) node: Option<(u8, Bytes)>,
    pub(super) state: SnState,
    pub(super) connect: Option<sn::Connect>,
    pub(super) will_topic: Option<WillTopic>,
    pub(super) will_msg: Bytes,
    /// Normal topic ids of this client, both directions (§6.5, §6.10): the broker assigns them.
    pub(super) topics: BTreeMap<u16, ByteString>,
    pub(super) topic_ids: BTreeMap<ByteString, u16>,
    pub(super) next_topic_id: u16,
    /// A REGISTER sent and waiting for REGACK: (msg id, topic id, topic).
    pub(super) registering: Option<(u16, u16, ByteString)>,
    /// Tretry deadline and retransmissions so far (§6.13).
    pub(super) retry_at: Option<Instant>,
    pub(super) retries: u8,
    /// The sleep duration of a sleeping client (§6.14).
    pub(super) sleep: u16,
    /// The topic id and message id an acknowledgement being translated refers to.
    pub(super) ack_topic: u16,
    pub(super) ack_msg_id: u16,
}

impl SnConn {
    /// Whether the client is in its sleep cycle (§6.14: asleep, or awake only to fetch what
    /// was buffered for it).
    pub(crate) fn sleeping(&self) -> bool {
        matches!(self.state, SnState::Asleep | SnState::Awake)
    }

    pub(super) fn new(peer: PeerId, node: Option<(u8, Bytes)>) -> Self {
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
    pub(super) fn peer_key(&self) -> (PeerId, Bytes) {
        (self.peer, self.node.as_ref().map(|(_, node)| node.clone()).unwrap_or_default())
    }

    /// A normal topic id for `topic`, registering it when new; `None` when the registry is full.
    pub(super) fn register(&mut self, topic: &ByteString, max: usize) -> Option<u16> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
