//! Inbound PUBLISH and the acknowledgement flows (§3.3-3.7, §4.3), and routing a message to the
//! sessions whose subscriptions match it (§4.7, §4.8).

use bytes::Bytes;

use musqratt_proto::mqtt::{Packet, PubResponse, Publish, ReasonCode, SubscriptionIds};
use musqratt_proto::{PacketId, ProtocolVersion, QoS};

use crate::deliver::state::Routed;
use crate::engine::Engine;
use crate::ids::{ConnectionId, SessionId};
use crate::session::{Inflight, Message};
use crate::store_sync::state::Needs;
use crate::time::Instant;

/// Whether a topic is in the broker's `$SYS` tree, where only the broker publishes.
pub(crate) fn is_sys_topic(topic: &str) -> bool {
    topic == "$SYS" || topic.starts_with("$SYS/")
}

impl Engine {
    pub(crate) fn handle_publish(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        mut publish: Publish,
        frame: Bytes,
    ) {
        let Some(connection) = self.connections.get_mut(&conn) else { return };
        let Some(session_id) = connection.session else { return };
        let version = connection.version();
        // Topic aliases (§3.3.2.3.4): 0 or above our maximum is 0x94 (MQTT-3.3.2-8, -9); an
        // empty topic needs a known alias.
        match publish.properties.topic_alias.take() {
            Some(alias) if alias == 0 || alias > self.config.topic_alias_maximum => {
                return self.close(now, conn, ReasonCode::TOPIC_ALIAS_INVALID, true);
            }
            Some(alias) if publish.topic.is_empty() => {
                match connection.inbound_aliases.get(&alias) {
                    Some(topic) => publish.topic = topic.clone(),
                    None => return self.close(now, conn, ReasonCode::PROTOCOL_ERROR, true),
                }
            }
            Some(alias) => {
                connection.inbound_aliases.insert(alias, publish.topic.clone());
            }
            None if publish.topic.is_empty() => {
                return self.close(now, conn, ReasonCode::PROTOCOL_ERROR, true);
            }
            None => {}
        }
        // MQTT-3.2.2-11 and MQTT-3.2.2-14: what the CONNACK said is not available.
        if publish.qos > self.config.maximum_qos {
            return self.close(now, conn, ReasonCode::QOS_NOT_SUPPORTED, true);
        }
        if publish.retain && !self.config.retain_available {
            return self.close(now, conn, ReasonCode::RETAIN_NOT_SUPPORTED, true);
        }
        let packet_id = publish.packet_id;
        let qos = publish.qos;
        self.counters.received(qos, publish.payload.len());
        // MQTT-4.7.2-1 lets a server reserve `$` topics: `$SYS/...` is the broker's own
        // (`crate::sys`), so a client may not publish there, whatever its ACL says (Mosquitto
        // does the same).
        let denied = is_sys_topic(&publish.topic)
            || self
                .sessions
                .get_mut(&session_id)
                .and_then(|s| s.acl.as_deref_mut())
                .is_some_and(|acl| !acl.may_publish(&publish.topic));
        if denied {
            return self.refuse_publish(now, session_id, conn, version, qos, packet_id);
        }
        if qos == QoS::ExactlyOnce {
            let Some(session) = self.sessions.get(&session_id) else { return };
            let Some(id) = packet_id else { return };
            if session.inbound_qos2.contains(&id) {
                // A resent PUBLISH (DUP) of a message already delivered onward: acknowledge
                // again, deliver nothing (Method B of §4.3.3, exactly once). With persistence,
                // not before the first copy is stored wherever it went: it may still be on its
                // way if the connection that sent it closed before its PUBREC (`store_sync`).
                let needs = match self.config.persistence {
                    true => self.store_sync.outstanding(),
                    false => Needs::new(),
                };
                let (mark, rec) = (self.action_mark(), Packet::PubRec(PubResponse::new(id)));
                return self.send_ack(now, mark, conn, rec, needs);
            }
            // MQTT-3.3.4-9: more unacknowledged QoS 2 publications than our Receive Maximum.
            if session.inbound_qos2.len() >= usize::from(self.config.receive_maximum) {
                return self.close(now, conn, ReasonCode::RECEIVE_MAXIMUM_EXCEEDED, true);
            }
        }
        if self.refused_while_full(&publish.topic, qos, publish.retain) {
            return self.refuse_while_full(now, conn, version, qos, packet_id);
        }
        let mut properties = publish.properties;
        properties.subscription_identifiers = SubscriptionIds::new();
        let expires_at = properties.message_expiry_interval.map(|s| now.plus_secs(s));
        // The packet up to its payload, as received: the payload is the end of a PUBLISH.
        let mut wire_header = frame;
        wire_header.truncate(wire_header.len().saturating_sub(publish.payload.len()));
        let message = Message {
            topic: publish.topic,
            payload: publish.payload,
            qos,
            retain: publish.retain,
            properties,
            expires_at,
            publisher: Some(session_id),
            wire_header,
            received_at: Some(now),
        };
        // The acknowledgement goes out ahead of the deliveries the publish causes: a delivery on
        // another shard cannot come before it, so neither may a local one (sharding stays
        // invisible to clients), and the publisher learns of it soonest.
        let mark = self.action_mark();
        let collect = self.config.persistence && qos != QoS::AtMostOnce;
        if collect {
            self.store_sync.begin();
        }
        let matched = self.route(now, Routed::Owned(message));
        // With persistence, the shards it was forwarded to store it before it is acknowledged
        // (`store_sync`).
        let needs = if collect { self.store_sync.end() } else { Needs::new() };
        let Some(id) = packet_id else { return };
        let mut response = PubResponse::new(id);
        if !matched && version == ProtocolVersion::V5 {
            response.reason_code = ReasonCode::NO_MATCHING_SUBSCRIBERS;
        }
        if qos == QoS::AtLeastOnce {
            self.send_ack(now, mark, conn, Packet::PubAck(response), needs);
        } else {
            if let Some(session) = self.sessions.get_mut(&session_id) {
                session.inbound_qos2.insert(id);
            }
            self.persist_inbound_qos2(session_id, id, false);
            self.send_ack(now, mark, conn, Packet::PubRec(response), needs);
        }
    }

    /// A PUBLISH its client's ACL does not allow: not forwarded. MQTT 5.0 says why in the
    /// acknowledgement (0x87 Not authorized, §3.4.2.1, §3.5.2.1; a failed PUBREC ends the QoS 2
    /// flow, MQTT-4.3.3-6 no longer applies). 3.1.1 has no way to say it: acknowledged as if
    /// delivered, as Mosquitto does, so the client does not resend it forever.
    fn refuse_publish(
        &mut self,
        now: Instant,
        session_id: SessionId,
        conn: ConnectionId,
        version: ProtocolVersion,
        qos: QoS,
        packet_id: Option<PacketId>,
    ) {
        self.counters.not_authorized();
        let Some(id) = packet_id else { return };
        let mut response = PubResponse::new(id);
        if version == ProtocolVersion::V5 {
            response.reason_code = ReasonCode::NOT_AUTHORIZED;
        }
        let mark = self.action_mark();
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => {
                self.send_ack(now, mark, conn, Packet::PubAck(response), Needs::new());
            }
            QoS::ExactlyOnce => {
                if version != ProtocolVersion::V5
                    && let Some(session) = self.sessions.get_mut(&session_id)
                {
                    // The client goes on with PUBREL, which must find the id (§4.3.3).
                    session.inbound_qos2.insert(id);
                    self.persist_inbound_qos2(session_id, id, false);
                }
                self.send_ack(now, mark, conn, Packet::PubRec(response), Needs::new());
            }
        }
    }

    /// A PUBLISH that would need a durable write while the store cannot write
    /// (`crate::store_full`): not routed, not kept. MQTT 5.0: PUBACK or PUBREC 0x97 Quota
    /// exceeded (§3.4.2.1, §3.5.2.1; an error PUBREC ends the QoS 2 flow, so the id is not
    /// kept, MQTT-4.3.3-6 no longer applies). MQTT 3.1.1 has no negative acknowledgement and
    /// its receiver acknowledges once it "accepted ownership" of the message (§4.3.2, §4.3.3):
    /// not accepted, not acknowledged. The client keeps it in flight and sends it again when it
    /// reconnects (MQTT-4.4.0-1), by which time the disk may have room; a PUBACK would tell it
    /// the message was safe when it was not stored, which is the loss this avoids.
    fn refuse_while_full(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        version: ProtocolVersion,
        qos: QoS,
        packet_id: Option<PacketId>,
    ) {
        self.counters.metrics.dropped.store_full += 1;
        let Some(id) = packet_id.filter(|_| version == ProtocolVersion::V5) else { return };
        let mut response = PubResponse::new(id);
        response.reason_code = ReasonCode::QUOTA_EXCEEDED;
        let packet = match qos {
            QoS::ExactlyOnce => Packet::PubRec(response),
            _ => Packet::PubAck(response),
        };
        let mark = self.action_mark();
        self.send_ack(now, mark, conn, packet, Needs::new());
    }

    /// PUBREL: the sender releases a QoS 2 packet id; the message went onward at PUBLISH.
    pub(crate) fn handle_pubrel(&mut self, now: Instant, conn: ConnectionId, rel: PubResponse) {
        let session = self.connections.get(&conn).and_then(|c| c.session);
        let known = session
            .and_then(|id| self.sessions.get_mut(&id))
            .is_some_and(|s| s.inbound_qos2.remove(&rel.packet_id));
        if let Some(id) = session.filter(|_| known) {
            self.persist_inbound_qos2(id, rel.packet_id, true);
        }
        let mut comp = PubResponse::new(rel.packet_id);
        if !known {
            comp.reason_code = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
        }
        self.send_packet(now, conn, &Packet::PubComp(comp));
    }

    pub(crate) fn handle_puback(&mut self, now: Instant, conn: ConnectionId, ack: PubResponse) {
        let Some(session_id) = self.connections.get(&conn).and_then(|c| c.session) else { return };
        let Some(session) = self.sessions.get_mut(&session_id) else { return };
        if let Some((_, Inflight::Published(d))) = session.inflight.get(&ack.packet_id)
            && d.qos == QoS::AtLeastOnce
        {
            let stored = d.stored;
            session.inflight.remove(&ack.packet_id);
            self.persist_acknowledged(session_id, stored);
            self.drain_queue(now, session_id);
        }
    }

    pub(crate) fn handle_pubrec(&mut self, now: Instant, conn: ConnectionId, rec: PubResponse) {
        let Some(session_id) = self.connections.get(&conn).and_then(|c| c.session) else { return };
        let Some(session) = self.sessions.get_mut(&session_id) else { return };
        match session.inflight.get_mut(&rec.packet_id) {
            Some((_, inflight @ Inflight::Published(_))) => {
                if rec.reason_code.is_error() {
                    // §4.3.3: an error PUBREC ends the exchange; no PUBREL.
                    let stored = inflight.stored();
                    session.inflight.remove(&rec.packet_id);
                    self.persist_acknowledged(session_id, stored);
                    return self.drain_queue(now, session_id);
                }
                let stored = inflight.stored();
                *inflight = Inflight::Released(stored);
                self.persist_outbound_qos2(session_id, stored, rec.packet_id, true);
                self.send_packet(now, conn, &Packet::PubRel(PubResponse::new(rec.packet_id)));
            }
            Some((_, Inflight::Released(_))) => {
                self.send_packet(now, conn, &Packet::PubRel(PubResponse::new(rec.packet_id)));
            }
            None => {
                let mut rel = PubResponse::new(rec.packet_id);
                rel.reason_code = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
                self.send_packet(now, conn, &Packet::PubRel(rel));
            }
        }
    }

    pub(crate) fn handle_pubcomp(&mut self, now: Instant, conn: ConnectionId, comp: PubResponse) {
        let Some(session_id) = self.connections.get(&conn).and_then(|c| c.session) else { return };
        let Some(session) = self.sessions.get_mut(&session_id) else { return };
        if let Some((_, Inflight::Released(stored))) = session.inflight.get(&comp.packet_id) {
            let stored = *stored;
            session.inflight.remove(&comp.packet_id);
            self.persist_acknowledged(session_id, stored);
            self.drain_queue(now, session_id);
        }
    }
}
