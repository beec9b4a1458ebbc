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
use alloc::sync::Arc;
use alloc::vec::Vec;

use bytes::{Bytes, BytesMut};
use musqratt_proto::bytestring::ByteString;
use musqratt_proto::mqtt::{
    Connect as MqttConnect, ConnectProperties, Packet, PubResponse, Publish as MqttPublish,
    PublishProperties, ReasonCode, Subscribe as MqttSubscribe, SubscriptionOptions,
    Unsubscribe as MqttUnsubscribe,
};
use musqratt_proto::sn::{
    self, Advertise, Encapsulated, GwInfo, Message as SnMessage, MsgId, PubAck, Publish,
    PublishTopic, RegAck, Register, ReturnCode, SnQoS, SubAck, SubscribeTopic, TopicId, WillTopic,
};
use musqratt_proto::{PacketId, ProtocolVersion, QoS};

use crate::config::Config;
use crate::connection::{Connection, Phase};
use crate::engine::{Engine, keep_alive_deadline};
use crate::ids::{ConnectionId, PeerId, SessionId};
use crate::io::Action;
use crate::session::{Delivery, Inflight, Message};
use crate::shards::owner_of;
use crate::time::Instant;
use crate::timers::Timer;

/// Internal connection numbers of MQTT-SN clients: the top half of the range, which runtimes
/// leave alone (their numbers for TCP connections stay below 2^63).
const SN_CONN_BASE: u64 = 1 << 63;

/// The wireless node id of a forwarder-encapsulated datagram (§5.5), empty for a direct one: with
/// the peer, the key a runtime routes MQTT-SN datagrams by after [`Action::HandoffPeer`]. A
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

    fn node_key(&self) -> Bytes {
        self.node.as_ref().map(|(_, node)| node.clone()).unwrap_or_default()
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

impl Engine {
    /// One datagram from a UDP peer.
    pub(crate) fn handle_datagram(&mut self, now: Instant, peer: PeerId, bytes: Bytes) {
        // A datagram that does not decode is dropped: UDP gives no way to answer it sensibly
        // and the specification defines no error message.
        let Ok(message) = sn::decode(bytes.clone()) else { return };
        let (node, message) = match message {
            // §5.5: a forwarder's encapsulation; the answer goes back inside the same one.
            SnMessage::Encapsulated(e) => (Some((e.radius, e.wireless_node_id)), *e.message),
            message => (None, message),
        };
        let key = (peer, node.as_ref().map(|(_, n)| n.clone()).unwrap_or_default());
        match self.sn.peers.get(&key).copied() {
            Some(conn) => self.sn_message(now, conn, peer, node, bytes, message),
            None => self.sn_connectionless(now, peer, node, bytes, message),
        }
    }

    /// A datagram from a peer without a connection here.
    fn sn_connectionless(
        &mut self,
        now: Instant,
        peer: PeerId,
        node: Option<(u8, Bytes)>,
        datagram: Bytes,
        message: SnMessage,
    ) {
        match message {
            // §6.1: a client looking for a gateway; the broker answers itself, without GwAdd.
            SnMessage::SearchGw(_) => {
                let info =
                    SnMessage::GwInfo(GwInfo { gw_id: self.config.sn_gateway_id, gw_add: None });
                self.sn_send_to(peer, node.as_ref(), &info);
            }
            SnMessage::Connect(connect) => {
                let owner = owner_of(&connect.client_id, self.config.shard_count);
                if !connect.client_id.is_empty() && owner != self.config.shard {
                    // ADR 1 and 5: the session lives on the owner shard; the peer moves there.
                    return self.push_action(Action::HandoffPeer {
                        peer,
                        to: owner,
                        bytes: datagram,
                    });
                }
                self.sn.next_conn += 1;
                let conn = ConnectionId(SN_CONN_BASE | self.sn.next_conn);
                let mut connection = Connection::new(self.config.max_packet_size);
                let key = (peer, node.as_ref().map(|(_, n)| n.clone()).unwrap_or_default());
                connection.sn = Some(Box::new(SnConn::new(peer, node)));
                self.connections.insert(conn, connection);
                self.sn.peers.insert(key, conn);
                let deadline = now.saturating_add(self.config.connect_timeout);
                self.timers.arm(deadline, Timer::Connect(conn));
                self.sn_connect(now, conn, connect);
            }
            // §6.8: QoS -1, published without a connection to a predefined id or short name.
            SnMessage::Publish(publish) if publish.qos == SnQoS::MinusOne => {
                let topic = match publish.topic {
                    PublishTopic::Predefined(id) => self.sn.predefined.get(&id.0).cloned(),
                    PublishTopic::Short(name) => short_name(name),
                    PublishTopic::Normal(_) => None,
                };
                let Some(topic) = topic else { return };
                let message = Message {
                    topic,
                    payload: publish.data,
                    qos: QoS::AtMostOnce,
                    retain: publish.retain && self.config.retain_available,
                    properties: PublishProperties::default(),
                    expires_at: None,
                    publisher: None,
                };
                self.route(now, Arc::new(message));
            }
            // A client the broker does not know (forgotten, lost, or its address changed) is
            // told to connect again.
            SnMessage::Publish(_)
            | SnMessage::Register(_)
            | SnMessage::Subscribe(_)
            | SnMessage::Unsubscribe(_)
            | SnMessage::PingReq(_) => {
                self.sn_send_to(peer, node.as_ref(), &SnMessage::Disconnect(None));
            }
            _ => {}
        }
    }

    /// CONNECT (§6.2): the will exchange first when asked for (§6.3), then CONNACK.
    fn sn_connect(&mut self, now: Instant, conn: ConnectionId, connect: sn::Connect) {
        // §5.3.3: the client id is 1 to 23 characters; this broker takes longer ones (as MQTT
        // 3.1.1 servers may), but not an empty one.
        if connect.client_id.is_empty() {
            self.sn_send(conn, &SnMessage::ConnAck(ReturnCode::NotSupported));
            return self.connection_lost(now, conn, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
        }
        let Some(sn) = self.sn_conn(conn) else { return };
        let will = connect.will;
        sn.connect = Some(connect);
        if will {
            sn.state = SnState::AwaitingWillTopic;
            self.sn_send(conn, &SnMessage::WillTopicReq);
        } else {
            self.sn_accept(now, conn);
        }
    }

    /// Completes CONNECT through the MQTT path: takeover, resume, session expiry, will.
    fn sn_accept(&mut self, now: Instant, conn: ConnectionId) {
        let Some(sn) = self.sn_conn(conn) else { return };
        let Some(connect) = sn.connect.take() else { return };
        sn.state = SnState::Active;
        let will = sn.will_topic.clone().map(|topic| musqratt_proto::mqtt::LastWill {
            topic: topic.topic,
            payload: sn.will_msg.clone(),
            qos: topic.qos,
            retain: topic.retain,
            properties: musqratt_proto::mqtt::WillProperties::default(),
        });
        let mqtt = MqttConnect {
            // Sessions of MQTT-SN clients follow MQTT 3.1.1's rules: CleanSession 0 keeps the
            // session for `v3_session_expiry`.
            protocol: ProtocolVersion::V3_1_1,
            clean_start: connect.clean_session,
            keep_alive: connect.duration,
            client_id: connect.client_id,
            will,
            username: None,
            password: None,
            properties: ConnectProperties::default(),
        };
        if self.config.authenticate {
            // MQTT-SN CONNECT has no credentials: the runtime decides on the client id (and
            // whatever it knows of the peer). A refusal is CONNACK "rejected: not supported".
            let request = crate::io::AuthRequest {
                client_id: mqtt.client_id.clone(),
                username: None,
                password: None,
                method: None,
                data: None,
            };
            if let Some(connection) = self.connections.get_mut(&conn) {
                connection.phase = Phase::Authenticating(Box::new(mqtt));
            }
            return self.push_action(Action::Authenticate { conn, request });
        }
        self.accept(now, conn, mqtt);
    }

    /// A message from a client with a connection here.
    fn sn_message(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        peer: PeerId,
        node: Option<(u8, Bytes)>,
        datagram: Bytes,
        message: SnMessage,
    ) {
        let Some(connection) = self.connections.get_mut(&conn) else { return };
        let Some(sn) = connection.sn.as_mut() else { return };
        let state = sn.state;
        // Any message shows the client alive (§6.6 keep alive; §6.14 the sleep timer restarts).
        let period = if state == SnState::Asleep || state == SnState::Awake {
            sn.sleep
        } else {
            connection.keep_alive
        };
        if let Some(deadline) = keep_alive_deadline(now, period) {
            connection.deadline = Some(deadline);
        }
        let connected = matches!(connection.phase, Phase::Connected);
        match message {
            SnMessage::Connect(_) => {
                // A new CONNECT from the same address (§6.14: also how a sleeping client goes
                // active): the old connection ends quietly (no will: the client is here) and
                // the CONNECT is handled afresh, resuming the session if CleanSession is 0.
                connection.will = None;
                self.connection_lost(now, conn, ReasonCode::SUCCESS);
                self.sn_connectionless(now, peer, node, datagram, message);
            }
            SnMessage::WillTopic(topic) if state == SnState::AwaitingWillTopic => {
                let Some(sn) = self.sn_conn(conn) else { return };
                match topic {
                    // §6.3: an empty WILLTOPIC: no will.
                    None => self.sn_accept(now, conn),
                    Some(topic) => {
                        sn.will_topic = Some(topic);
                        sn.state = SnState::AwaitingWillMsg;
                        self.sn_send(conn, &SnMessage::WillMsgReq);
                    }
                }
            }
            SnMessage::WillMsg(payload) if state == SnState::AwaitingWillMsg => {
                let Some(sn) = self.sn_conn(conn) else { return };
                sn.will_msg = payload;
                self.sn_accept(now, conn);
            }
            SnMessage::SearchGw(_) => {
                let info =
                    SnMessage::GwInfo(GwInfo { gw_id: self.config.sn_gateway_id, gw_add: None });
                self.sn_send(conn, &info);
            }
            // Everything else needs a completed CONNECT.
            _ if !connected => {}
            SnMessage::Register(register) => self.sn_register(conn, &register),
            SnMessage::RegAck(ack) => self.sn_regack(now, conn, ack),
            SnMessage::Publish(publish) => self.sn_publish(now, conn, publish),
            SnMessage::PubAck(ack) => {
                if let Some(id) = PacketId::new(ack.msg_id.0) {
                    self.handle_puback(now, conn, PubResponse::new(id));
                }
                self.sn_acked(now, conn);
            }
            SnMessage::PubRec(id) => {
                if let Some(id) = PacketId::new(id.0) {
                    self.handle_pubrec(now, conn, PubResponse::new(id));
                }
                self.sn_acked(now, conn);
            }
            SnMessage::PubRel(id) => {
                if let Some(id) = PacketId::new(id.0) {
                    self.handle_pubrel(conn, PubResponse::new(id));
                }
            }
            SnMessage::PubComp(id) => {
                if let Some(id) = PacketId::new(id.0) {
                    self.handle_pubcomp(now, conn, PubResponse::new(id));
                }
                self.sn_acked(now, conn);
            }
            SnMessage::Subscribe(subscribe) => self.sn_subscribe(now, conn, subscribe),
            SnMessage::Unsubscribe(unsubscribe) => {
                let filter = match unsubscribe.topic {
                    SubscribeTopic::Name(name) => Some(name),
                    SubscribeTopic::Predefined(id) => self.sn.predefined.get(&id.0).cloned(),
                    SubscribeTopic::Short(name) => short_name(name),
                };
                let Some(sn) = self.sn_conn(conn) else { return };
                sn.ack_msg_id = unsubscribe.msg_id.0;
                let unsubscribe = MqttUnsubscribe {
                    packet_id: PacketId::new(unsubscribe.msg_id.0).unwrap_or(PacketId::MIN),
                    filters: filter.into_iter().collect(),
                    properties: Default::default(),
                };
                self.handle_unsubscribe(now, conn, unsubscribe);
            }
            SnMessage::PingReq(client_id) => match (state, client_id) {
                // §6.14: a sleeping client wakes up to fetch what was buffered for it.
                (SnState::Asleep | SnState::Awake, Some(_)) => self.sn_wake(now, conn),
                _ => {
                    self.sn_send(conn, &SnMessage::PingResp);
                }
            },
            SnMessage::Disconnect(None) => {
                // §6.12 (and §6.14 for a sleeping client): acknowledged with DISCONNECT; the
                // will is discarded.
                self.sn_send(conn, &SnMessage::Disconnect(None));
                if let Some(connection) = self.connections.get_mut(&conn) {
                    connection.will = None;
                }
                self.connection_lost(now, conn, ReasonCode::SUCCESS);
            }
            SnMessage::Disconnect(Some(duration)) => self.sn_sleep(now, conn, duration),
            SnMessage::WillTopicUpd(topic) => {
                // §6.4: a new will topic (QoS, retain), or none.
                let Some(sn) = self.sn_conn(conn) else { return };
                if topic.is_none() {
                    sn.will_msg = Bytes::new();
                }
                sn.will_topic = topic;
                self.sn_rebuild_will(conn);
                self.sn_send(conn, &SnMessage::WillTopicResp(ReturnCode::Accepted));
            }
            SnMessage::WillMsgUpd(payload) => {
                let Some(sn) = self.sn_conn(conn) else { return };
                sn.will_msg = payload;
                self.sn_rebuild_will(conn);
                self.sn_send(conn, &SnMessage::WillMsgResp(ReturnCode::Accepted));
            }
            // Messages only a gateway sends, and out-of-place will messages: ignored.
            _ => {}
        }
    }

    /// REGISTER from the client (§6.5): a topic id for a topic name.
    fn sn_register(&mut self, conn: ConnectionId, register: &Register) {
        let max = self.config.sn_max_registered_topics;
        let Some(sn) = self.sn_conn(conn) else { return };
        let (topic_id, return_code) = match sn.register(&register.topic_name, max) {
            Some(id) => (id, ReturnCode::Accepted),
            None => (0, ReturnCode::Congestion),
        };
        let ack = RegAck { topic_id: TopicId(topic_id), msg_id: register.msg_id, return_code };
        self.sn_send(conn, &SnMessage::RegAck(ack));
    }

    /// REGACK to a REGISTER of the broker (§6.10): the PUBLISH that waited goes out.
    fn sn_regack(&mut self, now: Instant, conn: ConnectionId, ack: RegAck) {
        let Some(sn) = self.sn_conn(conn) else { return };
        let Some((msg_id, topic_id, topic)) = sn.registering.take() else { return };
        if msg_id != ack.msg_id.0 {
            sn.registering = Some((msg_id, topic_id, topic));
            return;
        }
        let asleep = sn.state == SnState::Asleep;
        let accepted = ack.return_code == ReturnCode::Accepted;
        if accepted {
            sn.topics.insert(topic_id, topic.clone());
            sn.topic_ids.insert(topic.clone(), topic_id);
        }
        let Some(connection) = self.connections.get_mut(&conn) else { return };
        connection.held = asleep;
        let session_id = connection.session;
        if !accepted {
            // The client refused the topic: what waited for it is not delivered.
            if let Some(session) = session_id.and_then(|id| self.sessions.get_mut(&id)) {
                session.queue.retain(|d| d.message.topic != topic);
                session.queued_bytes = session.queue.iter().map(|d| d.message.payload.len()).sum();
            }
        }
        self.sn_acked(now, conn);
    }

    /// Something the broker sent was acknowledged: restart or stop the retransmission timer,
    /// send what waits, and finish a wake-up when everything buffered is out.
    fn sn_acked(&mut self, now: Instant, conn: ConnectionId) {
        let Some(connection) = self.connections.get(&conn) else { return };
        if let Some(session) = connection.session {
            self.drain_queue(now, session);
        }
        let Some(connection) = self.connections.get(&conn) else { return };
        let outstanding = connection
            .session
            .and_then(|id| self.sessions.get(&id))
            .is_some_and(|s| !s.inflight.is_empty());
        let retry = self.config.sn_retry_interval;
        let Some(sn) = self.sn_conn(conn) else { return };
        sn.retries = 0;
        if outstanding || sn.registering.is_some() {
            let at = now.saturating_add(retry);
            sn.retry_at = Some(at);
            self.timers.arm(at, Timer::SnRetry(conn));
        } else {
            sn.retry_at = None;
        }
        self.sn_check_awake(conn);
    }

    /// PUBLISH from a connected client (§6.7, §6.8 for QoS -1).
    fn sn_publish(&mut self, now: Instant, conn: ConnectionId, publish: Publish) {
        let topic = match publish.topic {
            PublishTopic::Normal(id) => {
                self.sn_conn(conn).and_then(|sn| sn.topics.get(&id.0).cloned())
            }
            PublishTopic::Predefined(id) => self.sn.predefined.get(&id.0).cloned(),
            PublishTopic::Short(name) => short_name(name),
        };
        let topic_id = topic_id_of(publish.topic);
        let reject = |code| {
            SnMessage::PubAck(PubAck {
                topic_id: TopicId(topic_id),
                msg_id: publish.msg_id,
                return_code: code,
            })
        };
        let Some(topic) = topic else {
            // §6.7: an unknown topic id is answered with PUBACK "rejected: invalid topic ID",
            // whatever the QoS.
            self.sn_send(conn, &reject(ReturnCode::InvalidTopicId));
            return;
        };
        let qos = publish.qos.qos().unwrap_or(QoS::AtMostOnce);
        if qos > self.config.maximum_qos || (publish.retain && !self.config.retain_available) {
            self.sn_send(conn, &reject(ReturnCode::NotSupported));
            return;
        }
        let packet_id = PacketId::new(publish.msg_id.0);
        if qos != QoS::AtMostOnce && packet_id.is_none() {
            return; // QoS 1/2 with MsgId 0: malformed, dropped
        }
        if qos == QoS::ExactlyOnce {
            let session = self.connections.get(&conn).and_then(|c| c.session);
            let full = session.and_then(|id| self.sessions.get(&id)).is_some_and(|s| {
                packet_id.is_some_and(|id| !s.inbound_qos2.contains(&id))
                    && s.inbound_qos2.len() >= usize::from(self.config.receive_maximum)
            });
            if full {
                // The bounded window of unreleased QoS 2 messages is full (§5.3.10 congestion).
                self.sn_send(conn, &reject(ReturnCode::Congestion));
                return;
            }
        }
        let Some(sn) = self.sn_conn(conn) else { return };
        sn.ack_topic = topic_id;
        let mqtt = MqttPublish {
            dup: publish.dup,
            qos,
            retain: publish.retain,
            topic,
            packet_id: if qos == QoS::AtMostOnce { None } else { packet_id },
            payload: publish.data,
            properties: PublishProperties::default(),
        };
        self.handle_publish(now, conn, mqtt);
    }

    /// SUBSCRIBE (§6.9): by topic name (wildcards allowed), predefined id or short name.
    fn sn_subscribe(&mut self, now: Instant, conn: ConnectionId, subscribe: sn::Subscribe) {
        let max = self.config.sn_max_registered_topics;
        let fail = |code| {
            SnMessage::SubAck(SubAck {
                qos: QoS::AtMostOnce,
                topic_id: TopicId(0),
                msg_id: subscribe.msg_id,
                return_code: code,
            })
        };
        let (filter, topic_id) = match &subscribe.topic {
            SubscribeTopic::Name(name) if name.contains(['+', '#']) => (name.clone(), 0),
            SubscribeTopic::Name(name) => {
                // §6.9: a topic name without wildcards gets its topic id in SUBACK.
                let Some(sn) = self.sn_conn(conn) else { return };
                match sn.register(name, max) {
                    Some(id) => (name.clone(), id),
                    None => {
                        self.sn_send(conn, &fail(ReturnCode::Congestion));
                        return;
                    }
                }
            }
            SubscribeTopic::Predefined(id) => match self.sn.predefined.get(&id.0) {
                Some(name) => (name.clone(), id.0),
                None => {
                    self.sn_send(conn, &fail(ReturnCode::InvalidTopicId));
                    return;
                }
            },
            SubscribeTopic::Short(name) => match short_name(*name) {
                Some(filter) => (filter, 0),
                None => {
                    self.sn_send(conn, &fail(ReturnCode::InvalidTopicId));
                    return;
                }
            },
        };
        let Some(sn) = self.sn_conn(conn) else { return };
        sn.ack_topic = topic_id;
        sn.ack_msg_id = subscribe.msg_id.0;
        let options = SubscriptionOptions { qos: subscribe.qos, ..SubscriptionOptions::default() };
        let mqtt = MqttSubscribe {
            packet_id: PacketId::new(subscribe.msg_id.0).unwrap_or(PacketId::MIN),
            filters: alloc::vec![(filter, options)],
            properties: Default::default(),
        };
        self.handle_subscribe(now, conn, mqtt);
    }

    /// DISCONNECT with a duration (§6.14): asleep; messages are buffered until it wakes up,
    /// and missing the end of the duration makes the client lost.
    fn sn_sleep(&mut self, now: Instant, conn: ConnectionId, duration: u16) {
        self.sn_send(conn, &SnMessage::Disconnect(None));
        let Some(connection) = self.connections.get_mut(&conn) else { return };
        connection.held = true;
        // The same tolerance as keep alive: 1.5 × the duration.
        connection.deadline = keep_alive_deadline(now, duration);
        let deadline = connection.deadline;
        let Some(sn) = connection.sn.as_mut() else { return };
        sn.state = SnState::Asleep;
        sn.sleep = duration;
        // No retransmissions to a sleeping client; what is unacknowledged is resent on wake-up.
        sn.retry_at = None;
        if let Some(deadline) = deadline {
            self.timers.arm(deadline, Timer::KeepAlive(conn));
        }
    }

    /// PINGREQ with the client id from a sleeping client (§6.14): buffered messages, then
    /// PINGRESP (sent by [`Engine::sn_check_awake`] once nothing is left).
    fn sn_wake(&mut self, now: Instant, conn: ConnectionId) {
        let Some(connection) = self.connections.get_mut(&conn) else { return };
        connection.held = false;
        let session = connection.session;
        let Some(sn) = connection.sn.as_mut() else { return };
        sn.state = SnState::Awake;
        if sn.registering.is_some() {
            connection.held = true;
            self.sn_resend(now, conn);
            return;
        }
        if session.is_some_and(|id| self.sessions.get(&id).is_some_and(|s| !s.inflight.is_empty()))
        {
            self.sn_resend(now, conn);
        }
        self.sn_acked(now, conn);
    }

    /// Ends a wake-up once the buffered messages are out: PINGRESP, asleep again (§6.14).
    fn sn_check_awake(&mut self, conn: ConnectionId) {
        let Some(connection) = self.connections.get(&conn) else { return };
        let Some(sn) = connection.sn.as_ref() else { return };
        if sn.state != SnState::Awake || sn.registering.is_some() {
            return;
        }
        let empty = connection
            .session
            .and_then(|id| self.sessions.get(&id))
            .is_none_or(|s| s.queue.is_empty());
        if !empty {
            return;
        }
        self.sn_send(conn, &SnMessage::PingResp);
        let Some(connection) = self.connections.get_mut(&conn) else { return };
        connection.held = true;
        if let Some(sn) = connection.sn.as_mut() {
            sn.state = SnState::Asleep;
            sn.retry_at = None;
        }
    }

    fn sn_rebuild_will(&mut self, conn: ConnectionId) {
        let Some(connection) = self.connections.get_mut(&conn) else { return };
        let session = connection.session;
        let Some(sn) = connection.sn.as_ref() else { return };
        connection.will = sn.will_topic.as_ref().map(|topic| {
            let message = Message {
                topic: topic.topic.clone(),
                payload: sn.will_msg.clone(),
                qos: topic.qos,
                retain: topic.retain,
                properties: PublishProperties::default(),
                expires_at: None,
                publisher: session,
            };
            (Arc::new(message), 0)
        });
    }

    /// Whether a delivery's topic can be named now; sends REGISTER when it needs one (§6.10:
    /// "the gateway sends a REGISTER message to the client ... before sending the PUBLISH").
    pub(crate) fn sn_topic_ready(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        topic: &ByteString,
    ) -> TopicReady {
        let Some(connection) = self.connections.get(&conn) else { return TopicReady::Drop };
        if connection.held {
            return TopicReady::Wait;
        }
        // A topic the client registered (or got in SUBACK) is named by that id; then
        // predefined ids, then short names; anything else is registered first.
        let registered = connection.sn.as_ref().is_some_and(|sn| sn.topic_ids.contains_key(topic));
        if registered || self.sn.predefined_ids.contains_key(topic) || topic.len() == 2 {
            return TopicReady::Ready;
        }
        let max = self.config.sn_max_registered_topics;
        let Some(connection) = self.connections.get_mut(&conn) else { return TopicReady::Drop };
        let Some(session_id) = connection.session else { return TopicReady::Drop };
        let Some(sn) = connection.sn.as_mut() else { return TopicReady::Drop };
        if sn.topic_ids.contains_key(topic) {
            return TopicReady::Ready;
        }
        if sn.registering.is_some() {
            return TopicReady::Wait;
        }
        if sn.topics.len() >= max {
            return TopicReady::Drop;
        }
        let Some(topic_id) = sn.register(topic, max) else { return TopicReady::Drop };
        // Registered only once the client accepts it.
        sn.topics.remove(&topic_id);
        sn.topic_ids.remove(topic);
        let Some(session) = self.sessions.get_mut(&session_id) else { return TopicReady::Drop };
        let msg_id = session.allocate_packet_id().get();
        let Some(connection) = self.connections.get_mut(&conn) else { return TopicReady::Drop };
        connection.held = true;
        let Some(sn) = connection.sn.as_mut() else { return TopicReady::Drop };
        sn.registering = Some((msg_id, topic_id, topic.clone()));
        let register = Register {
            topic_id: TopicId(topic_id),
            msg_id: MsgId(msg_id),
            topic_name: topic.clone(),
        };
        self.sn_send(conn, &SnMessage::Register(register));
        self.sn_arm_retry(now, conn);
        TopicReady::Wait
    }

    /// Encodes an outbound PUBLISH (one datagram: header and payload together).
    pub(crate) fn sn_send_publish(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        delivery: &Delivery,
        packet_id: Option<PacketId>,
        dup: bool,
    ) -> bool {
        let message = &delivery.message;
        let registered = self
            .connections
            .get(&conn)
            .and_then(|c| c.sn.as_ref())
            .and_then(|sn| sn.topic_ids.get(&message.topic).copied());
        let topic = if let Some(id) = registered {
            PublishTopic::Normal(TopicId(id))
        } else if let Some(id) = self.sn.predefined_ids.get(&message.topic) {
            PublishTopic::Predefined(TopicId(*id))
        } else if let Ok(name) = <[u8; 2]>::try_from(message.topic.as_bytes().as_ref()) {
            PublishTopic::Short(name)
        } else {
            return false;
        };
        let publish = Publish {
            dup,
            qos: sn_qos(delivery.qos),
            retain: delivery.retain,
            topic,
            msg_id: MsgId(packet_id.map_or(0, PacketId::get)),
            data: message.payload.clone(),
        };
        if !self.sn_send(conn, &SnMessage::Publish(publish)) {
            let client_id = self
                .connections
                .get(&conn)
                .and_then(|c| c.session)
                .and_then(|s| self.sessions.get(&s))
                .map(|s| s.client_id.clone())
                .unwrap_or_default();
            let reason = crate::io::DropReason::TooLargeForClient;
            self.emit(crate::io::Event::MessageDropped { client_id, reason });
            return false;
        }
        if packet_id.is_some() {
            self.sn_arm_retry(now, conn);
        }
        true
    }

    /// A packet of the MQTT paths, in its MQTT-SN form (CONNACK, PUBACK, PUBREC, PUBREL,
    /// PUBCOMP, SUBACK, UNSUBACK, PINGRESP, DISCONNECT); the others have none and are not sent.
    pub(crate) fn sn_send_packet_at(&mut self, mark: usize, conn: ConnectionId, packet: &Packet) {
        let Some(sn) = self.connections.get(&conn).and_then(|c| c.sn.as_ref()) else { return };
        let message = match packet {
            Packet::ConnAck(connack) => SnMessage::ConnAck(if connack.reason_code.is_error() {
                ReturnCode::NotSupported
            } else {
                ReturnCode::Accepted
            }),
            Packet::PubAck(ack) => SnMessage::PubAck(PubAck {
                topic_id: TopicId(sn.ack_topic),
                msg_id: MsgId(ack.packet_id.get()),
                return_code: ReturnCode::Accepted,
            }),
            Packet::PubRec(r) => SnMessage::PubRec(MsgId(r.packet_id.get())),
            Packet::PubRel(r) => {
                let now = self.clock;
                self.sn_arm_retry(now, conn);
                SnMessage::PubRel(MsgId(r.packet_id.get()))
            }
            Packet::PubComp(r) => SnMessage::PubComp(MsgId(r.packet_id.get())),
            Packet::SubAck(suback) => {
                let code = suback.reason_codes.first().map_or(0x80, |c| c.0);
                let (qos, return_code) = match QoS::from_bits(code) {
                    Some(qos) => (qos, ReturnCode::Accepted),
                    None => (QoS::AtMostOnce, ReturnCode::NotSupported),
                };
                SnMessage::SubAck(SubAck {
                    qos,
                    topic_id: TopicId(sn.ack_topic),
                    msg_id: MsgId(sn.ack_msg_id),
                    return_code,
                })
            }
            Packet::UnsubAck(_) => SnMessage::UnsubAck(MsgId(sn.ack_msg_id)),
            Packet::PingResp => SnMessage::PingResp,
            Packet::Disconnect(_) => SnMessage::Disconnect(None),
            _ => return,
        };
        self.sn_send_at(Some(mark), conn, &message);
    }

    /// Resumes a session on a new MQTT-SN connection. Topic ids do not survive the connection
    /// (§6.5: registrations belong to it), so unacknowledged PUBLISH messages go back to the
    /// front of the queue and are sent again, registered afresh, with new message ids; PUBREL
    /// is resent as is.
    pub(crate) fn sn_resume(&mut self, now: Instant, session_id: SessionId, conn: ConnectionId) {
        let Some(session) = self.sessions.get_mut(&session_id) else { return };
        let mut pending: Vec<_> =
            session.inflight.iter().map(|(id, (seq, _))| (*seq, *id)).collect();
        pending.sort_unstable();
        let mut released = Vec::new();
        let mut requeue = Vec::new();
        for (_, id) in pending {
            match session.inflight.remove(&id) {
                Some((seq, Inflight::Released)) => {
                    session.inflight.insert(id, (seq, Inflight::Released));
                    released.push(id);
                }
                Some((_, Inflight::Published(delivery))) => requeue.push(delivery),
                None => {}
            }
        }
        for delivery in requeue.into_iter().rev() {
            session.queued_bytes += delivery.message.payload.len();
            session.queue.push_front(delivery);
        }
        for id in released {
            self.send_packet(conn, &Packet::PubRel(PubResponse::new(id)));
        }
        self.drain_queue(now, session_id);
    }

    /// Tretry expired (§6.13): retransmit, or after Nretry give the client up as lost (its
    /// will goes out).
    pub(crate) fn sn_retry(&mut self, now: Instant, conn: ConnectionId) {
        let max = self.config.sn_max_retries;
        let interval = self.config.sn_retry_interval;
        let Some(sn) = self.sn_conn(conn) else { return };
        let Some(at) = sn.retry_at else { return };
        if at > now {
            return self.timers.arm(at, Timer::SnRetry(conn));
        }
        if sn.retries >= max {
            sn.retry_at = None;
            return self.close(now, conn, ReasonCode::UNSPECIFIED_ERROR, false);
        }
        sn.retries += 1;
        let at = now.saturating_add(interval);
        sn.retry_at = Some(at);
        self.timers.arm(at, Timer::SnRetry(conn));
        self.sn_resend(now, conn);
    }

    /// Sends again what waits for an acknowledgement: the REGISTER, then the inflight
    /// messages in their order (PUBLISH with DUP, or PUBREL).
    fn sn_resend(&mut self, now: Instant, conn: ConnectionId) {
        let Some(connection) = self.connections.get(&conn) else { return };
        let Some(sn) = connection.sn.as_ref() else { return };
        if let Some((msg_id, topic_id, topic)) = sn.registering.clone() {
            let register =
                Register { topic_id: TopicId(topic_id), msg_id: MsgId(msg_id), topic_name: topic };
            self.sn_send(conn, &SnMessage::Register(register));
            return self.sn_arm_retry(now, conn);
        }
        let Some(session) = connection.session.and_then(|id| self.sessions.get(&id)) else {
            return;
        };
        let mut pending: Vec<_> =
            session.inflight.iter().map(|(id, (seq, i))| (*seq, *id, i.clone())).collect();
        pending.sort_unstable_by_key(|(seq, _, _)| *seq);
        for (_, id, inflight) in pending {
            match inflight {
                Inflight::Published(delivery) => {
                    self.sn_send_publish(now, conn, &delivery, Some(id), true);
                }
                Inflight::Released => {
                    self.send_packet(conn, &Packet::PubRel(PubResponse::new(id)));
                }
            }
        }
    }

    fn sn_arm_retry(&mut self, now: Instant, conn: ConnectionId) {
        let retry = self.config.sn_retry_interval;
        let Some(sn) = self.sn_conn(conn) else { return };
        if sn.retry_at.is_none() {
            let at = now.saturating_add(retry);
            sn.retry_at = Some(at);
            sn.retries = 0;
            self.timers.arm(at, Timer::SnRetry(conn));
        }
    }

    /// T_ADV (§6.1): ADVERTISE to the runtime's broadcast address(es), and the next one.
    pub(crate) fn sn_advertise(&mut self, now: Instant) {
        let Some(interval) = self.config.sn_advertise_interval else { return };
        let duration = u16::try_from(interval.as_secs()).unwrap_or(u16::MAX);
        let advertise =
            SnMessage::Advertise(Advertise { gw_id: self.config.sn_gateway_id, duration });
        let mut buf = BytesMut::new();
        if sn::encode(&advertise, &mut buf).is_ok() {
            self.push_action(Action::SnBroadcast { bytes: buf.freeze() });
        }
        self.timers.arm(now.saturating_add(interval), Timer::SnAdvertise);
    }

    /// Forgets the peer of a connection that ends.
    pub(crate) fn sn_forget(&mut self, conn: ConnectionId, sn: &SnConn) {
        let key = (sn.peer, sn.node_key());
        if self.sn.peers.get(&key) == Some(&conn) {
            self.sn.peers.remove(&key);
            self.push_action(Action::ReleasePeer { peer: sn.peer, node: key.1 });
        }
    }

    fn sn_conn(&mut self, conn: ConnectionId) -> Option<&mut SnConn> {
        self.connections.get_mut(&conn)?.sn.as_deref_mut()
    }

    /// Sends one message to a connection's client; false when it cannot be encoded (too long).
    pub(crate) fn sn_send(&mut self, conn: ConnectionId, message: &SnMessage) -> bool {
        self.sn_send_at(None, conn, message)
    }

    fn sn_send_at(&mut self, mark: Option<usize>, conn: ConnectionId, message: &SnMessage) -> bool {
        let Some(sn) = self.connections.get(&conn).and_then(|c| c.sn.as_ref()) else {
            return false;
        };
        let (peer, node) = (sn.peer, sn.node.clone());
        let Some(bytes) = encode(node.as_ref(), message) else { return false };
        let action = Action::SendDatagram { peer, bytes };
        match mark {
            Some(mark) => {
                let at = mark.min(self.actions.len());
                self.actions.insert(at, action);
            }
            None => self.push_action(action),
        }
        true
    }

    fn sn_send_to(&mut self, peer: PeerId, node: Option<&(u8, Bytes)>, message: &SnMessage) {
        if let Some(bytes) = encode(node, message) {
            self.push_action(Action::SendDatagram { peer, bytes });
        }
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
