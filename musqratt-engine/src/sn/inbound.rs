//! Inbound MQTT-SN: datagrams from clients, fed into the MQTT paths (§6).

use alloc::boxed::Box;
use alloc::sync::Arc;

use bytes::Bytes;
use musqratt_proto::mqtt::{
    Connect as MqttConnect, ConnectProperties, PubResponse, Publish as MqttPublish,
    PublishProperties, ReasonCode, Subscribe as MqttSubscribe, SubscriptionOptions,
    Unsubscribe as MqttUnsubscribe,
};
use musqratt_proto::sn::{
    self, GwInfo, Message as SnMessage, PubAck, Publish, PublishTopic, RegAck, Register,
    ReturnCode, SnQoS, SubAck, SubscribeTopic, TopicId,
};
use musqratt_proto::{PacketId, ProtocolVersion, QoS};

use crate::connection::{Connection, Phase};
use crate::engine::{Engine, keep_alive_deadline};
use crate::ids::{ConnectionId, PeerId};
use crate::io::Action;
use crate::session::Message;
use crate::shards::owner_of;
use crate::time::Instant;
use crate::timers::Timer;

use super::state::{SN_CONN_BASE, SnConn, SnState};
use super::wire::{short_name, topic_id_of};

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
    pub(super) fn sn_connectionless(
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
                let mut connection = Box::new(Connection::new(self.config.max_packet_size));
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
                self.counters.received(QoS::AtMostOnce, publish.data.len());
                // Only the broker publishes into `$SYS` (MQTT-4.7.2-1, `crate::sys`).
                if crate::publish::is_sys_topic(&topic) {
                    self.counters.not_authorized();
                    return;
                }
                let message = Message {
                    topic,
                    payload: publish.data,
                    qos: QoS::AtMostOnce,
                    retain: publish.retain && self.config.retain_available,
                    properties: PublishProperties::default(),
                    expires_at: None,
                    publisher: None,
                    wire_header: bytes::Bytes::new(),
                    received_at: Some(now),
                };
                self.route(now, crate::deliver::state::Routed::Owned(message));
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
    pub(super) fn sn_connect(&mut self, now: Instant, conn: ConnectionId, connect: sn::Connect) {
        // §5.3.3: the client id is 1 to 23 characters; this broker takes longer ones (as MQTT
        // 3.1.1 servers may), but not an empty one.
        if connect.client_id.is_empty() {
            self.sn_send(conn, &SnMessage::ConnAck(ReturnCode::NotSupported));
            self.counters.refused(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID.0);
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
    pub(super) fn sn_accept(&mut self, now: Instant, conn: ConnectionId) {
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
                protocol: ProtocolVersion::V3_1_1,
                cert_cn: None,
                username_verified: false,
            };
            if let Some(connection) = self.connections.get_mut(&conn) {
                connection.phase = Phase::Authenticating(Box::new(mqtt));
            }
            return self.push_action(Action::Authenticate { conn, request });
        }
        self.accept(now, conn, mqtt, None);
    }

    /// A message from a client with a connection here.
    pub(super) fn sn_message(
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
        let connected = matches!(connection.phase, Phase::Connected(_));
        match message {
            SnMessage::Connect(_) => {
                // A new CONNECT from the same address (§6.14: also how a sleeping client goes
                // active): the old connection ends quietly (no will: the client is here) and
                // the CONNECT is handled afresh, resuming the session if CleanSession is 0.
                // The peer stays here (or is handed to the owner of the new client id, which
                // replaces its route), so the old connection ends without `ReleasePeer`: that
                // would drop the runtime's route to this shard while the new connection lives
                // here, and the peer's next datagrams would go to its default shard, which does
                // not know it. A CONNECT refused below releases the peer when its connection
                // ends.
                let key = sn.peer_key();
                connection.will = None;
                self.sn.peers.remove(&key);
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
                    self.handle_pubrel(now, conn, PubResponse::new(id));
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
    pub(super) fn sn_register(&mut self, conn: ConnectionId, register: &Register) {
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
    pub(super) fn sn_regack(&mut self, now: Instant, conn: ConnectionId, ack: RegAck) {
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
    pub(super) fn sn_acked(&mut self, now: Instant, conn: ConnectionId) {
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
    pub(super) fn sn_publish(&mut self, now: Instant, conn: ConnectionId, publish: Publish) {
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
        if self.refused_while_full(&topic, qos, publish.retain) {
            // The store cannot write (`crate::store_full`): the MQTT 5.0 0x97 Quota exceeded
            // is "rejected: congestion" here (§5.3.10), which a client may retry later.
            self.counters.metrics.dropped.store_full += 1;
            self.sn_send(conn, &reject(ReturnCode::Congestion));
            return;
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
        self.handle_publish(now, conn, mqtt, bytes::Bytes::new());
    }

    /// SUBSCRIBE (§6.9): by topic name (wildcards allowed), predefined id or short name.
    pub(super) fn sn_subscribe(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        subscribe: sn::Subscribe,
    ) {
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
    pub(super) fn sn_sleep(&mut self, now: Instant, conn: ConnectionId, duration: u16) {
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
    pub(super) fn sn_wake(&mut self, now: Instant, conn: ConnectionId) {
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
    pub(super) fn sn_check_awake(&mut self, conn: ConnectionId) {
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

    pub(super) fn sn_rebuild_will(&mut self, conn: ConnectionId) {
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
                wire_header: bytes::Bytes::new(),
                received_at: None,
            };
            (Arc::new(message), 0)
        });
    }
}
