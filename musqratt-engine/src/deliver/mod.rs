//! Outbound delivery: inflight window, session queue, slow readers, the client's limits
//! (§4.9 flow control, §3.1.2.11.4 Maximum Packet Size, §3.3.2.3.4 topic aliases).
//!
//! What delivery keeps and lends ([`state::Routed`], [`state::Headers`]) is a leaf module the
//! `Engine` holds; this module's steps work on the `Engine` (docs/adr/0014-engine-layers.md).

pub(crate) mod state;

use core::ops::Deref;

use musqratt_proto::QoS;
use musqratt_proto::bytestring::ByteString;
use musqratt_proto::mqtt::Publish;

use crate::connection::AliasUse;
use crate::deliver::state::Keep;
use crate::engine::Engine;
use crate::ids::{ConnectionId, SessionId};
use crate::io::{DropReason, Event};
use crate::session::{Delivery, Inflight, Message};
use crate::time::Instant;
use musqratt_proto::PacketId;

impl Engine {
    /// Hands a delivery to a session: sent now when its connection has room, queued otherwise.
    /// QoS 0 is not kept for a disconnected session (MQTT allows dropping it; Mosquitto's
    /// default does the same).
    pub(crate) fn deliver(
        &mut self,
        now: Instant,
        session_id: SessionId,
        delivery: Delivery<impl Keep>,
    ) {
        let Some(session) = self.sessions.get_mut(&session_id) else { return };
        // Read access is checked per delivery (retained and queued messages included): a
        // subscription wider than the ACL receives only what the ACL lets it read.
        if session.acl.as_deref_mut().is_some_and(|acl| !acl.may_receive(&delivery.message.topic)) {
            return;
        }
        match session.conn {
            None if delivery.qos == QoS::AtMostOnce => {}
            Some(conn) if session.queue.is_empty() && session.tail.is_empty() => {
                if let Some(delivery) = self.try_send(now, session_id, conn, delivery) {
                    self.enqueue(now, session_id, delivery.kept());
                }
            }
            _ => self.enqueue(now, session_id, delivery.kept()),
        }
    }

    /// Sends what the session queue holds while the connection has room; with persistence,
    /// then asks for the part of the queue in the store if memory ran low (`store_queue`).
    pub(crate) fn drain_queue(&mut self, now: Instant, session_id: SessionId) {
        self.drain_queue_in_ram(now, session_id);
        if self.config.persistence {
            self.load_queue_if_low(session_id);
        }
    }

    fn drain_queue_in_ram(&mut self, now: Instant, session_id: SessionId) {
        loop {
            let Some(session) = self.sessions.get_mut(&session_id) else { return };
            let Some(conn) = session.conn else { return };
            let Some(delivery) = session.pop_queued() else { return };
            if let Some(delivery) = self.try_send(now, session_id, conn, delivery) {
                // No room: back to the front, in order.
                if let Some(session) = self.sessions.get_mut(&session_id) {
                    session.queued_bytes += delivery.message.payload.len();
                    session.queue.push_front(delivery);
                }
                return;
            }
        }
    }

    /// Sends a delivery if the connection has room; gives it back when it must wait.
    fn try_send<M: Keep>(
        &mut self,
        now: Instant,
        session_id: SessionId,
        conn: ConnectionId,
        delivery: Delivery<M>,
    ) -> Option<Delivery<M>> {
        if delivery.message.is_expired(now) {
            // §3.3.2.3.3: an expired message is not delivered (nor kept in the store).
            self.counters.expired(1);
            self.persist_acknowledged(session_id, delivery.stored);
            return None;
        }
        let mut connection = self.connections.get(&conn)?;
        if connection.sn.is_some() {
            // MQTT-SN: held while asleep or waiting for a REGACK (§6.14, §6.10).
            match self.sn_topic_ready(now, conn, &delivery.message.topic) {
                crate::sn::state::TopicReady::Ready => {}
                crate::sn::state::TopicReady::Wait => return Some(delivery),
                crate::sn::state::TopicReady::Drop => return None,
            }
            connection = self.connections.get(&conn)?;
        }
        let congested = connection.unwritten > self.config.max_unwritten_bytes;
        let window = usize::from(connection.client_receive_maximum);
        if delivery.qos == QoS::AtMostOnce {
            if congested {
                // The session is looked up only for the report: QoS 0 sent at once needs it not.
                let client_id = self.sessions.get(&session_id)?.client_id.clone();
                self.emit(Event::MessageDropped { client_id, reason: DropReason::SlowReader });
                return None;
            }
            self.send_publish(now, conn, &delivery, None, false);
            return None;
        }
        let session = self.sessions.get_mut(&session_id)?;
        // §4.9: no more QoS 1/2 in flight than the client's Receive Maximum (MQTT-3.3.4-7).
        if congested || session.inflight.len() >= window.min(usize::from(u16::MAX) - 1) {
            return Some(delivery);
        }
        let packet_id = session.allocate_packet_id();
        if !self.send_publish(now, conn, &delivery, Some(packet_id), false) {
            self.persist_acknowledged(session_id, delivery.stored); // dropped, too large
            return None;
        }
        let mut delivery = delivery.kept();
        self.persist_delivery(session_id, &mut delivery);
        if delivery.qos == QoS::ExactlyOnce {
            self.persist_outbound_qos2(session_id, delivery.stored, packet_id, false);
        }
        if let Some(session) = self.sessions.get_mut(&session_id) {
            session.add_inflight(packet_id, Inflight::Published(delivery));
        }
        None
    }

    /// Queues a delivery for later, within the session's bounds; a drop is reported.
    fn enqueue(&mut self, now: Instant, session_id: SessionId, mut delivery: Delivery) {
        let Some(session) = self.sessions.get_mut(&session_id) else { return };
        let size = delivery.message.payload.len();
        let full = |session: &crate::session::Session| {
            session.queue.len() >= self.config.max_queued_messages
                || session.queued_bytes + size > self.config.max_queued_bytes
        };
        if full(session) {
            // Expired messages leave the queue before a live one is refused (§3.3.2.3.3).
            let expired = session.remove_expired(now);
            self.counters.expired(expired);
        }
        if session.queue.len() + session.tail.count() as usize >= self.config.max_queued_messages
            || session.queued_bytes + size > self.config.max_queued_bytes
        {
            let client_id = session.client_id.clone();
            self.emit(Event::MessageDropped { client_id, reason: DropReason::QueueFull });
            return;
        }
        // `store_queue`: the tail of a durable session's queue is in the store only.
        let to_disk = self.config.persistence
            && session.stored
            && (!session.tail.is_empty() || session.queue.len() >= self.config.max_ram_per_session);
        if delivery.qos != QoS::AtMostOnce && to_disk {
            return self.enqueue_on_disk(session_id, delivery);
        }
        let Some(session) = self.sessions.get_mut(&session_id) else { return };
        session.queued_bytes += size;
        self.persist_delivery(session_id, &mut delivery);
        if let Some(session) = self.sessions.get_mut(&session_id) {
            session.queue.push_back(delivery);
        }
    }

    /// Encodes a PUBLISH for one connection and hands header and payload to the runtime as two
    /// sends (the payload is the shared [`bytes::Bytes`], never copied). Returns false when the
    /// packet exceeds the client's Maximum Packet Size and was dropped (MQTT-3.1.2-25).
    pub(crate) fn send_publish(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        delivery: &Delivery<impl Deref<Target = Message>>,
        packet_id: Option<PacketId>,
        dup: bool,
    ) -> bool {
        let Some(connection) = self.connections.get_mut(&conn) else { return false };
        if connection.sn.is_some() {
            let sent = self.sn_send_publish(now, conn, delivery, packet_id, dup);
            if sent {
                self.count_sent(now, delivery, dup);
            }
            return sent;
        }
        let version = connection.version();
        let message = &*delivery.message;
        let mut publish = Publish {
            dup,
            qos: delivery.qos,
            retain: delivery.retain,
            topic: message.topic.clone(),
            packet_id,
            payload: message.payload.clone(),
            properties: message.properties.clone(),
        };
        if version.is_v5() {
            publish.properties.subscription_identifiers = delivery.subscription_ids.clone();
            // MQTT-3.3.2-6: forward the interval that remains, not the one received.
            if let Some(at) = message.expires_at {
                let remaining = at.saturating_duration_since(now).as_micros().div_ceil(1_000_000);
                publish.properties.message_expiry_interval =
                    Some(u32::try_from(remaining).unwrap_or(u32::MAX));
            }
        }
        let fits = publish
            .encoded_len(version)
            .is_ok_and(|len| len <= connection.client_max_packet_size as usize);
        if !fits {
            let client_id = self.client_id_of(conn);
            self.emit(Event::MessageDropped { client_id, reason: DropReason::TooLargeForClient });
            return false;
        }
        if version.is_v5() {
            match connection.outbound_aliases.assign(&message.topic) {
                AliasUse::None => {}
                AliasUse::Set(alias) => publish.properties.topic_alias = Some(alias),
                AliasUse::Reuse(alias) => {
                    publish.properties.topic_alias = Some(alias);
                    publish.topic = ByteString::new();
                }
            }
        }
        let Some(header) = self.headers.encode(&publish, version, &message.wire_header) else {
            return false;
        };
        self.send(conn, header);
        if !publish.payload.is_empty() {
            self.send(conn, publish.payload);
        }
        self.count_sent(now, delivery, dup);
        true
    }

    /// Counts a PUBLISH handed to the runtime and, for a first send of a message a client
    /// published, its time in the broker (issue 17's in-broker latency: from the PUBLISH's
    /// input to this action). Not timed: a retransmission (it would time the client's
    /// acknowledgement) and a delivery with the retain flag, which is a retained message sent
    /// on subscribe (MQTT-3.3.1-9) whose age is not the broker's delay (or, rarely, a live one
    /// under Retain As Published, which cannot be told apart here).
    fn count_sent(
        &mut self,
        now: Instant,
        delivery: &Delivery<impl Deref<Target = Message>>,
        dup: bool,
    ) {
        let message = &*delivery.message;
        let latency = match (dup || delivery.retain, message.received_at) {
            (false, Some(at)) => Some(
                u64::try_from(now.saturating_duration_since(at).as_micros()).unwrap_or(u64::MAX),
            ),
            _ => None,
        };
        self.counters.sent(delivery.qos, message.payload.len(), latency);
    }

    fn client_id_of(&self, conn: ConnectionId) -> ByteString {
        self.connections
            .get(&conn)
            .and_then(|c| c.session)
            .and_then(|s| self.sessions.get(&s))
            .map(|s| s.client_id.clone())
            .unwrap_or_default()
    }
}
