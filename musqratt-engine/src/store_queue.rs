//! RAM bounded for any backlog (docs/PERSISTENCE.md, "Queues in memory and in the store"):
//! with persistence, a durable session keeps at most `Config::max_ram_per_session` of its
//! queued messages in memory; those after are in the store only, and read back in order
//! ([`crate::Action::LoadQueue`], [`Engine::queue_loaded`]) when its connection drained the
//! queue to half that. At start the store gives each queue's head and says where its tail ends
//! ([`crate::Record::QueueTail`]), so a broker with a million queued messages does not read
//! them all before it serves.
//!
//! Order: once a session's tail is in the store, every new message of it goes there too, after
//! the tail (never straight to the client, nor into memory ahead of the tail), and the tail
//! comes back in the order of its numbers.

use alloc::vec::Vec;

use crate::engine::Engine;
use crate::ids::SessionId;
use crate::io::Action;
use crate::session::Delivery;
use crate::store::StoredDelivery;

impl Engine {
    /// Stores a QoS 1 or 2 delivery of a durable session without keeping it in memory.
    pub(crate) fn enqueue_on_disk(&mut self, session_id: SessionId, mut delivery: Delivery) {
        self.persist_delivery(session_id, &mut delivery);
        if let Some(session) = self.sessions.get_mut(&session_id) {
            session.tail.set_count(session.tail.count().saturating_add(1));
        }
    }

    /// After the queue drained: when what is in memory fell to half the bound and more is in
    /// the store, asks the runtime for the next part (one request at a time).
    pub(crate) fn load_queue_if_low(&mut self, session_id: SessionId) {
        let max = self.config.max_ram_per_session.max(1);
        let Some(session) = self.sessions.get_mut(&session_id) else { return };
        if session.tail.is_empty() || session.tail.loading() || session.conn.is_none() {
            return;
        }
        if session.queue.len() > max / 2 {
            return;
        }
        session.tail.set_loading(true);
        let action = Action::LoadQueue {
            client_id: session.client_id.clone(),
            after: session.last_stored_in_ram(),
            max: max - session.queue.len(),
        };
        self.push_action(action);
    }

    /// The answer to [`crate::Action::LoadQueue`]: the messages read, in order; `complete` when
    /// the store had no more (fewer than asked). They join the queue and the connection is
    /// served. Messages that expired meanwhile are dropped and forgotten (§3.3.2.3.3). Then
    /// take actions with [`Engine::poll_action`].
    pub fn queue_loaded(
        &mut self,
        client_id: &str,
        deliveries: Vec<StoredDelivery>,
        complete: bool,
    ) {
        let now = self.last_now;
        let Some(&id) = self.client_ids.get(client_id) else { return };
        let Some(session) = self.sessions.get_mut(&id) else { return };
        session.tail.set_loading(false);
        let read = u32::try_from(deliveries.len()).unwrap_or(u32::MAX);
        let mut last = session.last_stored_in_ram();
        let mut expired = Vec::new();
        for stored in deliveries {
            if stored.seq <= last || stored.qos == musqratt_proto::QoS::AtMostOnce {
                continue;
            }
            last = stored.seq;
            if stored.message.0.is_expired(now) {
                expired.push(stored.seq);
                continue;
            }
            session.queued_bytes += stored.message.0.payload.len();
            session.queue.push_back(Delivery {
                message: stored.message.0,
                qos: stored.qos,
                retain: stored.retain,
                subscription_ids: stored.subscription_ids,
                stored: stored.seq,
            });
        }
        let left = match complete {
            true => 0,
            false => session.tail.count().saturating_sub(read).max(1),
        };
        session.tail.set_count(left);
        self.counters.metrics.dropped.expired += expired.len() as u64;
        for seq in expired {
            self.persist_acknowledged(id, seq);
        }
        self.drain_queue(now, id);
    }
}
