//! Outbound delivery: inflight window, session queue, slow readers, the client's limits
//! (§4.9 flow control, §3.1.2.11.4 Maximum Packet Size, §3.3.2.3.4 topic aliases).

use alloc::sync::Arc;
use core::ops::Deref;

use bytes::{Bytes, BytesMut};
use musqratt_proto::QoS;
use musqratt_proto::bytestring::ByteString;
use musqratt_proto::mqtt::Publish;

use crate::connection::AliasUse;
use crate::engine::Engine;
use crate::ids::{ConnectionId, SessionId};
use crate::io::{DropReason, Event};
use crate::session::{Delivery, Inflight, Message};
use crate::time::Instant;
use musqratt_proto::PacketId;

/// A message being routed: owned until something has to keep it (a session queue, an inflight
/// window, the retained store, the backlog, another shard), then shared behind an [`Arc`]. A
/// message every subscriber takes at once (QoS 0 to connections with room) is never shared,
/// which saves the `Arc`'s allocation.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "boxing the owned message is the allocation this type avoids; it lives for one route"
)]
pub(crate) enum Routed {
    Owned(Message),
    Shared(Arc<Message>),
}

impl Routed {
    /// The message behind an [`Arc`], moved there the first time (the payload is not copied).
    pub(crate) fn share(&mut self) -> Arc<Message> {
        let shared = match self {
            Routed::Shared(message) => return Arc::clone(message),
            Routed::Owned(message) => Arc::new(core::mem::take(message)),
        };
        *self = Routed::Shared(Arc::clone(&shared));
        shared
    }
}

impl Deref for Routed {
    type Target = Message;

    fn deref(&self) -> &Message {
        match self {
            Routed::Owned(message) => message,
            Routed::Shared(message) => message,
        }
    }
}

/// The message of a delivery: a shared one, or one being routed that is shared only when the
/// delivery has to be kept.
pub(crate) trait Keep: Deref<Target = Message> {
    /// The message as a delivery keeps it.
    fn keep(self) -> Arc<Message>;
}

impl Keep for Arc<Message> {
    fn keep(self) -> Arc<Message> {
        self
    }
}

/// A message being routed, lent to one delivery: shared if the delivery is kept.
#[derive(Debug)]
pub(crate) struct Lent<'a>(pub(crate) &'a mut Routed);

impl Deref for Lent<'_> {
    type Target = Message;

    fn deref(&self) -> &Message {
        self.0
    }
}

impl Keep for Lent<'_> {
    fn keep(self) -> Arc<Message> {
        self.0.share()
    }
}

impl<M: Keep> Delivery<M> {
    /// The delivery as a queue or inflight window keeps it.
    fn kept(self) -> Delivery {
        let Delivery { message, qos, retain, subscription_ids } = self;
        Delivery { message: message.keep(), qos, retain, subscription_ids }
    }
}

/// Where PUBLISH headers are encoded, and the headers that can be sent again.
///
/// A header is encoded into a reused buffer, then sent as:
/// - the message's own header as received, when it is the same bytes (QoS 0 between clients of
///   one version, no alias, no subscription identifier, no expiry): that part of the read
///   buffer, which the payload shares, so no allocation;
/// - the header two deliveries in a row needed, when it is the same bytes again (every
///   subscriber of a message that was received in another form, say at QoS 1 or from a client
///   of another version): shared, so no allocation after the second;
/// - otherwise a copy at its exact length: one allocation (a fresh `BytesMut` per header cost
///   three: its allocation, the encoder's `reserve`, sized for the whole packet, growing it, and
///   `freeze` boxing a shared buffer because its length is not its capacity).
///
/// Only exact-length headers are kept, so no delivery pins more memory than its own bytes.
#[derive(Debug, Default)]
pub(crate) struct Headers {
    /// The header being encoded; allocates only when a header outgrows it.
    scratch: BytesMut,
    /// The bytes of the header copied out last.
    previous: BytesMut,
    /// A header that two deliveries in a row needed, shared by the deliveries that need it
    /// since.
    repeated: Bytes,
}

impl Headers {
    /// The header in `scratch` as bytes to send (see [`Headers`]). A header is never empty, so
    /// the empty `wire` of a message not received as a PUBLISH matches none.
    fn take(&mut self, wire: &Bytes) -> Bytes {
        if wire[..] == self.scratch[..] {
            return wire.clone();
        }
        if self.repeated[..] == self.scratch[..] {
            return self.repeated.clone();
        }
        let header = Bytes::copy_from_slice(&self.scratch);
        if self.previous[..] == self.scratch[..] {
            // The clone shares the copy: one more allocation, then none while it repeats.
            self.repeated = header.clone();
        } else {
            core::mem::swap(&mut self.previous, &mut self.scratch);
        }
        header
    }
}

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
        let Some(session) = self.sessions.get(&session_id) else { return };
        match session.conn {
            None if delivery.qos == QoS::AtMostOnce => {}
            Some(conn) if session.queue.is_empty() => {
                if let Some(delivery) = self.try_send(now, session_id, conn, delivery) {
                    self.enqueue(now, session_id, delivery.kept());
                }
            }
            _ => self.enqueue(now, session_id, delivery.kept()),
        }
    }

    /// Sends what the session queue holds while the connection has room.
    pub(crate) fn drain_queue(&mut self, now: Instant, session_id: SessionId) {
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
            return None; // §3.3.2.3.3: an expired message is not delivered
        }
        let mut connection = self.connections.get(&conn)?;
        if connection.sn.is_some() {
            // MQTT-SN: held while asleep or waiting for a REGACK (§6.14, §6.10).
            match self.sn_topic_ready(now, conn, &delivery.message.topic) {
                crate::sn::TopicReady::Ready => {}
                crate::sn::TopicReady::Wait => return Some(delivery),
                crate::sn::TopicReady::Drop => return None,
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
        if self.send_publish(now, conn, &delivery, Some(packet_id), false)
            && let Some(session) = self.sessions.get_mut(&session_id)
        {
            session.add_inflight(packet_id, Inflight::Published(delivery.kept()));
        }
        None
    }

    /// Queues a delivery for later, within the session's bounds; a drop is reported.
    fn enqueue(&mut self, now: Instant, session_id: SessionId, delivery: Delivery) {
        let Some(session) = self.sessions.get_mut(&session_id) else { return };
        let size = delivery.message.payload.len();
        let full = |session: &crate::session::Session| {
            session.queue.len() >= self.config.max_queued_messages
                || session.queued_bytes + size > self.config.max_queued_bytes
        };
        if full(session) {
            // Expired messages leave the queue before a live one is refused (§3.3.2.3.3).
            session.remove_expired(now);
        }
        if session.queue.len() >= self.config.max_queued_messages
            || session.queued_bytes + size > self.config.max_queued_bytes
        {
            let client_id = session.client_id.clone();
            self.emit(Event::MessageDropped { client_id, reason: DropReason::QueueFull });
            return;
        }
        session.queued_bytes += size;
        session.queue.push_back(delivery);
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
            return self.sn_send_publish(now, conn, delivery, packet_id, dup);
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
        self.headers.scratch.clear();
        if publish.encode_header(version, &mut self.headers.scratch).is_err() {
            return false;
        }
        let header = self.headers.take(&message.wire_header);
        self.send(conn, header);
        if !publish.payload.is_empty() {
            self.send(conn, publish.payload);
        }
        true
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
