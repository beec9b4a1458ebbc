//! Outbound MQTT-SN: topic registration before PUBLISH, the MQTT packets translated to MQTT-SN,
//! retransmission and advertisement (§6.10, §6.13, §6.1).

use alloc::vec::Vec;

use bytes::{Bytes, BytesMut};
use musqratt_proto::bytestring::ByteString;
use musqratt_proto::mqtt::{Packet, PubResponse, ReasonCode};
use musqratt_proto::sn::{
    self, Advertise, Message as SnMessage, MsgId, PubAck, Publish, PublishTopic, Register,
    ReturnCode, SubAck, TopicId,
};
use musqratt_proto::{PacketId, QoS};

use crate::engine::Engine;
use crate::ids::{ConnectionId, PeerId, SessionId};
use crate::io::Action;
use crate::session::{Delivery, Inflight};
use crate::time::Instant;
use crate::timers::Timer;

use super::state::{SnConn, TopicReady};
use super::wire::{encode, sn_qos};

impl Engine {
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
        delivery: &Delivery<impl core::ops::Deref<Target = crate::session::Message>>,
        packet_id: Option<PacketId>,
        dup: bool,
    ) -> bool {
        let message = &*delivery.message;
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
    pub(crate) fn sn_send_packet_at(
        &mut self,
        now: Instant,
        mark: usize,
        conn: ConnectionId,
        packet: &Packet,
    ) {
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
                // §6.13: a PUBREL waits for PUBCOMP like a PUBLISH for its acknowledgement.
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
                Some((seq, Inflight::Released(stored))) => {
                    session.inflight.insert(id, (seq, Inflight::Released(stored)));
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
            self.send_packet(now, conn, &Packet::PubRel(PubResponse::new(id)));
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
    pub(super) fn sn_resend(&mut self, now: Instant, conn: ConnectionId) {
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
                Inflight::Released(_) => {
                    self.send_packet(now, conn, &Packet::PubRel(PubResponse::new(id)));
                }
            }
        }
    }

    pub(super) fn sn_arm_retry(&mut self, now: Instant, conn: ConnectionId) {
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
        let key = sn.peer_key();
        if self.sn.peers.get(&key) == Some(&conn) {
            self.sn.peers.remove(&key);
            self.push_action(Action::ReleasePeer { peer: sn.peer, node: key.1 });
        }
    }

    pub(super) fn sn_conn(&mut self, conn: ConnectionId) -> Option<&mut SnConn> {
        self.connections.get_mut(&conn)?.sn.as_deref_mut()
    }

    /// Sends one message to a connection's client; false when it cannot be encoded (too long).
    pub(crate) fn sn_send(&mut self, conn: ConnectionId, message: &SnMessage) -> bool {
        self.sn_send_at(None, conn, message)
    }

    pub(super) fn sn_send_at(
        &mut self,
        mark: Option<usize>,
        conn: ConnectionId,
        message: &SnMessage,
    ) -> bool {
        let Some(sn) = self.connections.get(&conn).and_then(|c| c.sn.as_ref()) else {
            return false;
        };
        let (peer, node) = (sn.peer, sn.node.clone());
        let Some(bytes) = encode(node.as_ref(), message) else { return false };
        self.counters.bytes_out(bytes.len());
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

    pub(super) fn sn_send_to(
        &mut self,
        peer: PeerId,
        node: Option<&(u8, Bytes)>,
        message: &SnMessage,
    ) {
        if let Some(bytes) = encode(node, message) {
            self.counters.bytes_out(bytes.len());
            self.push_action(Action::SendDatagram { peer, bytes });
        }
    }
}
