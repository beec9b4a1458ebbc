//! Wills of durable sessions in the store (§3.1.2.5, §3.1.3.2; docs/PERSISTENCE.md): a will
//! survives a restart with its session, whether its client was connected when the broker died
//! or its delay was running.
//!
//! A client connected when the broker died lost its connection without a DISCONNECT: an
//! abnormal end (§3.1.2.5 lists "the Server closes the Network Connection" among the cases that
//! publish the will), so its will is due after its Will Delay Interval from the restart (the
//! moment of the crash is unknown; the restart is the first the broker can know of it). A will
//! whose delay was running goes out when it said, the time the broker was down counted; one
//! already due goes out at once. "At once" is [`RESTORED_WILL_GRACE_SECS`] after the start: every
//! shard restores its sessions before it serves, but learns the other shards' restored
//! subscriptions by message, and a will published before those arrive would miss subscribers
//! on other shards.

use alloc::sync::Arc;

use crate::engine::Engine;
use crate::ids::{ConnectionId, SessionId};
use crate::io::Action;
use crate::session::{Message, PendingWill};
use crate::store::{Record, RestoreError, StoredMessage, StoredWill};
use crate::time::Instant;
use crate::timers::Timer;

/// How long after the start a restored will that is due goes out (module doc).
pub(crate) const RESTORED_WILL_GRACE_SECS: u32 = 1;

impl Engine {
    /// After a CONNECT of a durable session: its new will is stored (held while connected), or
    /// the stored one removed when the CONNECT has none.
    pub(crate) fn persist_will_at_connect(&mut self, session_id: SessionId, conn: ConnectionId) {
        if !self.config.persistence {
            return;
        }
        let will = self.connections.get(&conn).and_then(|c| c.will.clone());
        match will {
            Some((message, delay)) => self.persist_will(session_id, &message, delay, None),
            None => self.persist_will_removed(session_id),
        }
    }

    /// The will of a durable session, held (`due_at` `None`) or pending.
    pub(crate) fn persist_will(
        &mut self,
        session_id: SessionId,
        message: &Arc<Message>,
        delay: u32,
        due_at: Option<Instant>,
    ) {
        if !self.config.persistence {
            return;
        }
        let Some(session) = self.sessions.get_mut(&session_id) else { return };
        if !session.stored {
            return;
        }
        session.will_stored = true;
        let will = StoredWill {
            client_id: session.client_id.clone(),
            message: StoredMessage(Arc::clone(message)),
            expiry_interval: message.properties.message_expiry_interval,
            delay,
            due_at,
        };
        self.push_action(Action::Store(Record::Will(will)));
    }

    /// The durable session's will is gone (published, discarded, replaced by none).
    pub(crate) fn persist_will_removed(&mut self, session_id: SessionId) {
        if !self.config.persistence {
            return;
        }
        let Some(session) = self.sessions.get_mut(&session_id) else { return };
        if !core::mem::replace(&mut session.will_stored, false) || !session.stored {
            return;
        }
        let client_id = session.client_id.clone();
        self.push_action(Action::Store(Record::WillRemoved { client_id }));
    }

    /// A stored will back in its session, pending (module doc for when it goes out).
    pub(crate) fn restore_will(
        &mut self,
        now: Instant,
        will: StoredWill,
    ) -> Result<(), RestoreError> {
        if !self.owns(&will.client_id) {
            return Ok(());
        }
        let id = *self.client_ids.get(&will.client_id).ok_or(RestoreError::NoSession)?;
        let session = self.sessions.get_mut(&id).ok_or(RestoreError::NoSession)?;
        let earliest = now.plus_secs(RESTORED_WILL_GRACE_SECS);
        // Connected when the broker died: the delay runs from the restart, the session's end
        // if sooner (§3.1.3.2.2).
        let at = will
            .due_at
            .unwrap_or_else(|| now.plus_secs(will.delay.min(session.expiry_interval)))
            .max(earliest);
        let mut message = Arc::unwrap_or_clone(will.message.0);
        message.properties.message_expiry_interval = will.expiry_interval;
        session.will = Some(PendingWill { message: Arc::new(message), at });
        session.will_stored = true;
        self.timers.arm(at, Timer::Will(id));
        Ok(())
    }
}
