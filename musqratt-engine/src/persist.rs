//! Persistence: the records of durable state the engine emits ([`Action::Store`]) and the
//! restore from them at start (docs/PERSISTENCE.md, docs/adr/0017-persistence-store.md).
//!
//! What is durable: retained messages (§3.3.1.3) and sessions whose Session Expiry Interval is
//! above 0 (§3.1.2.11.2; a 3.1.1 Clean Session 0 session has `Config::v3_session_expiry`),
//! with their subscriptions and their QoS 1 and 2 messages, queued or in flight. Each change
//! is emitted in the step that makes it; the runtime writes a step's records before it writes
//! that step's packets, so a PUBACK or PUBREC never reaches a publisher before the write that
//! holds its message was handed to the operating system (the acknowledgement rule, ADR 17).
//!
//! With [`crate::Config::persistence`] off (the default) every hook returns at its first
//! test: no record is built, nothing is allocated.

use alloc::vec::Vec;

use musqratt_proto::PacketId;

use crate::engine::Engine;
use crate::ids::SessionId;
use crate::io::Action;
use crate::session::{Delivery, Inflight, Message, Session, Subscription};
use crate::shards::owner_of;
use crate::store::{
    Record, RestoreError, StoredDelivery, StoredMessage, StoredSession, StoredSubscription,
};
use crate::time::Instant;
use crate::timers::Timer;

impl Engine {
    /// Restores one record a store kept, before the first connection. Every shard may be
    /// given every record: sessions and their messages are taken only by the shard that owns
    /// their client identifier (ADR 1), retained messages by every shard (each holds a
    /// replica). A session is restored disconnected: its expiry runs from `now`, and a
    /// message whose expiry has passed is not restored (§3.3.2.3.3).
    ///
    /// Give a session's [`Record::Session`] before its [`Record::Queued`] records, those in
    /// increasing `seq`. Then drain [`Engine::poll_action`]: restored subscriptions are
    /// announced to the other shards as new ones are.
    ///
    /// # Errors
    /// [`RestoreError`] says why a record was refused; the engine is unchanged by it.
    pub fn restore(&mut self, now: Instant, record: Record) -> Result<(), RestoreError> {
        if !self.connections.is_empty() {
            return Err(RestoreError::TooLate);
        }
        match record {
            Record::Retained { message: None, .. } => Ok(()),
            Record::Retained { message: Some(message), .. } => {
                if !message.0.is_expired(now) && !message.0.payload.is_empty() {
                    self.retained.store(&message.0);
                }
                Ok(())
            }
            Record::Session(stored) => self.restore_session(now, stored),
            Record::Queued(stored) => self.restore_delivery(now, stored),
            Record::AwaitingRelease { client_id, packet_id } => {
                if !self.owns(&client_id) {
                    return Ok(());
                }
                let id = self.client_ids.get(&client_id).ok_or(RestoreError::NoSession)?;
                let session = self.sessions.get_mut(id).ok_or(RestoreError::NoSession)?;
                session.inbound_qos2.insert(packet_id);
                Ok(())
            }
            Record::OutboundQos2 { client_id, seq, packet_id, released } => {
                self.restore_outbound_qos2(&client_id, seq, packet_id, released)
            }
            Record::Will(will) => self.restore_will(now, will),
            Record::QueueTail { client_id, last_seq } => {
                if !self.owns(&client_id) {
                    return Ok(());
                }
                let id = self.client_ids.get(&client_id).ok_or(RestoreError::NoSession)?;
                let session = self.sessions.get_mut(id).ok_or(RestoreError::NoSession)?;
                if last_seq > session.last_stored_in_ram() {
                    // The count of the tail is not read at start: at least one.
                    session.tail.set_count(session.tail.count().max(1));
                    self.store_seq = self.store_seq.max(last_seq.saturating_add(1));
                }
                Ok(())
            }
            Record::SessionEnded { .. }
            | Record::Acknowledged { .. }
            | Record::Released { .. }
            | Record::WillRemoved { .. } => Err(RestoreError::NotState),
        }
    }

    pub(crate) fn owns(&self, client_id: &str) -> bool {
        owner_of(client_id, self.config.shard_count) == self.config.shard
    }

    fn restore_session(&mut self, now: Instant, stored: StoredSession) -> Result<(), RestoreError> {
        if stored.expiry_interval == 0 {
            return Err(RestoreError::Invalid);
        }
        if !self.owns(&stored.client_id) {
            return Ok(());
        }
        if let Some(old) = self.client_ids.get(&stored.client_id).copied() {
            self.end_session(now, old);
        }
        let id = self.new_session(stored.client_id.clone());
        let Some(session) = self.sessions.get_mut(&id) else { return Ok(()) };
        session.expiry_interval = stored.expiry_interval;
        session.stored = true;
        for sub in &stored.subscriptions {
            let subscription = Subscription { options: sub.options, id: sub.id };
            session.subscriptions.insert(sub.filter.clone(), subscription);
        }
        for sub in stored.subscriptions {
            let subscription = Subscription { options: sub.options, id: sub.id };
            self.subscription_changed(&sub.filter, id, &stored.client_id, Some(subscription));
        }
        // §3.1.2.11.2: the expiry runs from the disconnection. A session stored disconnected
        // expires when it said, the time the broker was down included (one already past
        // ends at the first `handle_timeout`, its records removed then); one stored while
        // connected lost its connection with the broker, at a time the store does not know:
        // `expiry_interval` from now. u32::MAX never expires.
        if stored.expiry_interval != u32::MAX {
            let at = stored.expires_at.unwrap_or_else(|| now.plus_secs(stored.expiry_interval));
            if let Some(session) = self.sessions.get_mut(&id) {
                session.expires_at = Some(at);
            }
            self.timers.arm(at, Timer::SessionExpiry(id));
        }
        Ok(())
    }

    /// A QoS 2 message that was in flight goes back in flight under its packet id, out of the
    /// queue: at reconnection `resume` sends the PUBLISH again with DUP under that id, or the
    /// PUBREL (§4.4). A released one needs no message (the PUBREL carries none): restored
    /// even if the message expired meanwhile or was not restored.
    fn restore_outbound_qos2(
        &mut self,
        client_id: &str,
        seq: u64,
        packet_id: PacketId,
        released: bool,
    ) -> Result<(), RestoreError> {
        if !self.owns(client_id) {
            return Ok(());
        }
        let id = self.client_ids.get(client_id).ok_or(RestoreError::NoSession)?;
        let session = self.sessions.get_mut(id).ok_or(RestoreError::NoSession)?;
        if session.inflight.contains_key(&packet_id) {
            return Err(RestoreError::Invalid);
        }
        let delivery = match session.queue.iter().position(|d| d.stored == seq) {
            Some(at) => session.queue.remove(at),
            None => None,
        };
        if let Some(d) = &delivery {
            session.queued_bytes = session.queued_bytes.saturating_sub(d.message.payload.len());
        }
        match (released, delivery) {
            (true, _) => session.add_inflight(packet_id, Inflight::Released(seq)),
            (false, Some(delivery)) => {
                session.add_inflight(packet_id, Inflight::Published(delivery))
            }
            (false, None) => {} // expired while the broker was down: not sent again
        }
        Ok(())
    }

    /// A stored QoS 2 delivery went in flight under `packet_id` (PUBLISH sent, `released`
    /// false) or got its PUBREC (PUBREL sent, true): stored in the step that sends the packet,
    /// so written before it goes out.
    #[inline]
    pub(crate) fn persist_outbound_qos2(
        &mut self,
        id: SessionId,
        seq: u64,
        packet_id: PacketId,
        released: bool,
    ) {
        if seq == 0 {
            return;
        }
        let Some(session) = self.sessions.get(&id) else { return };
        if !session.stored {
            return;
        }
        let client_id = session.client_id.clone();
        let record = Record::OutboundQos2 { client_id, seq, packet_id, released };
        self.push_action(Action::Store(record));
    }

    fn restore_delivery(
        &mut self,
        now: Instant,
        stored: StoredDelivery,
    ) -> Result<(), RestoreError> {
        if stored.qos == musqratt_proto::QoS::AtMostOnce || stored.seq == 0 {
            return Err(RestoreError::Invalid);
        }
        if !self.owns(&stored.client_id) {
            return Ok(());
        }
        let id = self.client_ids.get(&stored.client_id).ok_or(RestoreError::NoSession)?;
        let session = self.sessions.get_mut(id).ok_or(RestoreError::NoSession)?;
        if session.queue.back().is_some_and(|last| last.stored >= stored.seq) {
            return Err(RestoreError::OutOfOrder);
        }
        self.store_seq = self.store_seq.max(stored.seq.saturating_add(1));
        if stored.message.0.is_expired(now) {
            return Ok(());
        }
        let delivery = Delivery {
            message: stored.message.0,
            qos: stored.qos,
            retain: stored.retain,
            subscription_ids: stored.subscription_ids,
            stored: stored.seq,
        };
        session.queued_bytes += delivery.message.payload.len();
        session.queue.push_back(delivery);
        Ok(())
    }

    /// A retained message was stored or removed (an empty payload) on this shard.
    #[inline]
    pub(crate) fn persist_retained(&mut self, message: &alloc::sync::Arc<Message>) {
        // The `$SYS` tree is made again every `sys_interval` (`crate::sys`): storing it would
        // write the disk every period (a sync each with `fsync = "always"`) for numbers that
        // are stale after a restart anyway. Only the broker publishes there.
        if !self.config.persistence || crate::publish::is_sys_topic(&message.topic) {
            return;
        }
        let topic = message.topic.clone();
        let message =
            (!message.payload.is_empty()).then(|| StoredMessage(alloc::sync::Arc::clone(message)));
        self.push_action(Action::Store(Record::Retained { topic, message }));
    }

    /// The durable part of a session changed (connected, subscribed, unsubscribed, its expiry
    /// changed): its record is written again, or removed once its expiry is 0.
    #[inline]
    pub(crate) fn persist_session(&mut self, id: SessionId) {
        if !self.config.persistence {
            return;
        }
        let Some(session) = self.sessions.get_mut(&id) else { return };
        if session.expiry_interval == 0 {
            if session.stored {
                session.stored = false;
                let client_id = session.client_id.clone();
                self.push_action(Action::Store(Record::SessionEnded { client_id }));
            }
            return;
        }
        let was_stored = core::mem::replace(&mut session.stored, true);
        let subscriptions: Vec<StoredSubscription> = session
            .subscriptions
            .iter()
            .map(|(filter, sub)| StoredSubscription::new(filter.clone(), sub.options, sub.id))
            .collect();
        // While connected, `expires_at` holds the credentials' limit, not the session's expiry.
        let expires_at = session.expires_at.filter(|_| session.conn.is_none());
        let record =
            StoredSession::new(session.client_id.clone(), session.expiry_interval, subscriptions)
                .expiring_at(expires_at);
        // A session that becomes durable now stores the ids it already holds awaiting PUBREL
        // along with it: from now on its client may resend those PUBLISHes after a restart as
        // after a reconnection (§4.3.3, §4.4).
        let awaiting: Vec<_> = match was_stored {
            true => Vec::new(),
            false => session.inbound_qos2.iter().copied().collect(),
        };
        let client_id = record.client_id.clone();
        self.push_action(Action::Store(Record::Session(record)));
        for packet_id in awaiting {
            let client_id = client_id.clone();
            self.push_action(Action::Store(Record::AwaitingRelease { client_id, packet_id }));
        }
    }

    /// An inbound QoS 2 packet id of a durable session entered (`released` false) or left
    /// (true) the awaiting-PUBREL state (Method B of §4.3.3). Emitted in the step of the
    /// PUBREC, so the runtime writes it before the PUBREC goes out: a client that saw the
    /// PUBREC may resend the PUBLISH with DUP after a restart, and it must not be delivered
    /// again (exactly once, §4.3.3).
    #[inline]
    pub(crate) fn persist_inbound_qos2(
        &mut self,
        id: SessionId,
        packet_id: PacketId,
        released: bool,
    ) {
        if !self.config.persistence {
            return;
        }
        let Some(session) = self.sessions.get(&id) else { return };
        if !session.stored {
            return;
        }
        let client_id = session.client_id.clone();
        let record = match released {
            false => Record::AwaitingRelease { client_id, packet_id },
            true => Record::Released { client_id, packet_id },
        };
        self.push_action(Action::Store(record));
    }

    /// A session ended: its record and messages go.
    #[inline]
    pub(crate) fn persist_session_ended(&mut self, session: &Session) {
        if self.config.persistence && session.stored {
            let client_id = session.client_id.clone();
            self.push_action(Action::Store(Record::SessionEnded { client_id }));
        }
    }

    /// A QoS 1 or 2 delivery enters a durable session's queue or inflight window: it gets its
    /// number and is stored, once.
    #[inline]
    pub(crate) fn persist_delivery(&mut self, id: SessionId, delivery: &mut Delivery) {
        if !self.config.persistence || delivery.stored != 0 {
            return;
        }
        let Some(session) = self.sessions.get_mut(&id) else { return };
        if !session.stored || delivery.qos == musqratt_proto::QoS::AtMostOnce {
            return;
        }
        let seq = self.store_seq;
        self.store_seq += 1;
        delivery.stored = seq;
        let record = StoredDelivery::new(
            session.client_id.clone(),
            seq,
            delivery.qos,
            delivery.retain,
            delivery.subscription_ids.clone(),
            StoredMessage(alloc::sync::Arc::clone(&delivery.message)),
        );
        self.push_action(Action::Store(Record::Queued(record)));
    }

    /// A stored delivery is done with: acknowledged (PUBACK, PUBCOMP, an error PUBREC) or
    /// dropped (expired, too large for the client).
    #[inline]
    pub(crate) fn persist_acknowledged(&mut self, id: SessionId, seq: u64) {
        if seq == 0 {
            return;
        }
        let Some(session) = self.sessions.get(&id) else { return };
        if !session.stored {
            return;
        }
        let client_id = session.client_id.clone();
        self.push_action(Action::Store(Record::Acknowledged { client_id, seq }));
    }
}
