//! Deadlines: one ordered set, checked lazily.
//!
//! A keep-alive deadline moves with every packet; re-inserting a timer per packet would put a
//! tree update on the publish path. Instead an entry is armed once and, when it fires, the owner's
//! current deadline is checked: a deadline that moved re-arms the entry at its new time.

use alloc::collections::BTreeSet;

use crate::ids::{ConnectionId, SessionId};
use crate::time::Instant;

/// What a deadline is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    /// CONNECT did not arrive in time.
    Connect(ConnectionId),
    /// 1.5 × Keep Alive without a packet (§3.1.2.10).
    KeepAlive(ConnectionId),
    /// The credentials a connection was accepted with expire ([`crate::AuthDecision::AcceptFor`]).
    AuthExpiry(ConnectionId),
    /// A delayed will is due (§3.1.3.2.2).
    Will(SessionId),
    /// A disconnected session expires (§3.1.2.11.2).
    SessionExpiry(SessionId),
    /// MQTT-SN: retransmission of what the broker sent and the client has not acknowledged
    /// (Tretry, §6.13).
    SnRetry(ConnectionId),
    /// MQTT-SN: the next ADVERTISE (T_ADV, §6.1).
    SnAdvertise,
}

#[derive(Debug, Default)]
pub(crate) struct Timers {
    set: BTreeSet<(Instant, Timer)>,
}

impl Timers {
    pub(crate) fn arm(&mut self, at: Instant, timer: Timer) {
        self.set.insert((at, timer));
    }

    /// Removes a timer armed at `at`, if it still is.
    pub(crate) fn disarm(&mut self, at: Instant, timer: Timer) {
        self.set.remove(&(at, timer));
    }

    pub(crate) fn next(&self) -> Option<Instant> {
        self.set.first().map(|(at, _)| *at)
    }

    /// The earliest timer due at `now`, removed.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        match self.set.first() {
            Some((at, _)) if *at <= now => self.set.pop_first().map(|(_, timer)| timer),
            _ => None,
        }
    }
}
