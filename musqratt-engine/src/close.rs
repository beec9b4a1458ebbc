//! How connections and sessions end: the broker closing a connection, a connection lost, the
//! will (§3.1.3.2.2: published when the connection ends abnormally, after its delay or when the
//! session ends, whichever comes first), session expiry (§3.1.2.11.2).

use musqratt_proto::ProtocolVersion;
use musqratt_proto::mqtt::{Disconnect, Packet, ReasonCode};

use crate::connection::Phase;
use crate::engine::Engine;
use crate::ids::{ConnectionId, SessionId};
use crate::io::{Action, Event};
use crate::session::PendingWill;
use crate::time::Instant;
use crate::timers::Timer;

impl Engine {
    /// Closes a connection the broker gives up on: a 5.0 client that completed CONNECT is told
    /// why with DISCONNECT when `notify` is set (§4.13.2); the will is due unless the client
    /// disconnected normally.
    pub(crate) fn close(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        reason: ReasonCode,
        notify: bool,
    ) {
        let Some(connection) = self.connections.get(&conn) else { return };
        let can_notify = matches!(connection.phase, Phase::Connected(_))
            && connection.version() == ProtocolVersion::V5
            && reason.is_error();
        let is_sn = connection.sn.is_some();
        if notify && can_notify {
            self.send_packet(now, conn, &Packet::Disconnect(Disconnect::new(reason)));
        }
        if is_sn {
            // UDP has nothing to close: connection_lost releases the peer. A client taken over
            // or shut down is told with DISCONNECT (§5.4.21).
            if reason == ReasonCode::SESSION_TAKEN_OVER
                || reason == ReasonCode::SERVER_SHUTTING_DOWN
            {
                self.sn_send(conn, &musqratt_proto::sn::Message::Disconnect(None));
            }
            return self.connection_lost(now, conn, reason);
        }
        self.actions.push_back(Action::Close { conn });
        self.connection_lost(now, conn, reason);
    }

    /// Forgets a connection: publishes or schedules its will, detaches or ends its session.
    pub(crate) fn connection_lost(&mut self, now: Instant, conn: ConnectionId, reason: ReasonCode) {
        let Some(connection) = self.connections.remove(&conn) else { return };
        self.route_sync.forget(conn);
        self.store_sync.forget(conn);
        if let Some(sn) = &connection.sn {
            self.sn_forget(conn, sn);
        }
        self.emit(Event::Disconnected { conn, reason });
        let will = connection.will;
        let Some(session_id) = connection.session else { return };
        let Some(session) = self.sessions.get_mut(&session_id) else { return };
        if session.conn != Some(conn) {
            return; // taken over: the session belongs to another connection now
        }
        session.conn = None;
        // A `LoadQueue` not answered (the store could not be read) is asked again at the next
        // connection (`store_queue`).
        session.tail.set_loading(false);
        self.counters.client_disconnected();
        // While connected the field held the credentials' limit (AuthDecision::AcceptFor);
        // left there, an older session expiry timer would end a session that never expires.
        session.expires_at = None;
        let expiry = session.expiry_interval;
        if let Some((message, delay)) = will {
            // §3.1.3.2.2: the will goes out when the delay or the session ends, whichever first.
            if delay == 0 || expiry == 0 {
                self.persist_will_removed(session_id);
                self.publish_will(now, message);
            } else {
                let at = now.plus_secs(delay.min(expiry));
                self.persist_will(session_id, &message, delay, Some(at));
                if let Some(session) = self.sessions.get_mut(&session_id) {
                    session.will = Some(PendingWill { message, at });
                }
                self.timers.arm(at, Timer::Will(session_id));
            }
        } else {
            // Discarded by a normal DISCONNECT (MQTT-3.14.4-3), or there was none.
            self.persist_will_removed(session_id);
        }
        if expiry == 0 {
            self.end_session(now, session_id);
        } else if expiry != u32::MAX {
            let at = now.plus_secs(expiry);
            if let Some(session) = self.sessions.get_mut(&session_id) {
                session.expires_at = Some(at);
            }
            self.timers.arm(at, Timer::SessionExpiry(session_id));
            // Stored again with its expiry: a restart counts the time the broker was down.
            self.persist_session(session_id);
        }
    }

    /// Removes a session and its subscriptions; a pending will goes out now (§3.1.3.2.2).
    pub(crate) fn end_session(&mut self, now: Instant, id: SessionId) {
        let Some(session) = self.sessions.remove(&id) else { return };
        self.persist_session_ended(&session);
        if self.client_ids.get(&session.client_id) == Some(&id) {
            self.client_ids.remove(&session.client_id);
        }
        for filter in session.subscriptions.keys() {
            self.subscription_changed(filter, id, &session.client_id, None);
        }
        if let Some(will) = session.will {
            self.publish_will(now, will.message);
        }
    }

    pub(crate) fn fire_will(&mut self, now: Instant, id: SessionId) {
        let Some(session) = self.sessions.get_mut(&id) else { return };
        match &session.will {
            Some(will) if will.at <= now && session.conn.is_none() => {
                if let Some(will) = session.will.take() {
                    self.persist_will_removed(id);
                    self.publish_will(now, will.message);
                }
            }
            _ => {}
        }
    }

    pub(crate) fn expire_session(&mut self, now: Instant, id: SessionId) {
        let due = self
            .sessions
            .get(&id)
            .is_some_and(|s| s.conn.is_none() && s.expires_at.is_some_and(|at| at <= now));
        if due {
            self.end_session(now, id);
        }
    }
}
