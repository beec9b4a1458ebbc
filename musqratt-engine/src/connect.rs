//! CONNECT, enhanced authentication, session takeover and resume, DISCONNECT (§3.1, §3.2, §3.14,
//! §4.12).

use alloc::boxed::Box;
use alloc::sync::Arc;

use bytes::BytesMut;
use musqratt_proto::bytestring::ByteString;
use musqratt_proto::mqtt::{
    Auth, ConnAck, ConnAckProperties, Connect, Disconnect, Packet, PublishProperties, ReasonCode,
};
use musqratt_proto::{ProtocolVersion, QoS};

use crate::acl::{Acl, SessionAcl};
use crate::connection::{Connected, OutboundAliases, Phase};
use crate::deliver::state::Routed;
use crate::engine::{Engine, keep_alive_deadline};
use crate::ids::{ConnectionId, SessionId, ShardId};
use crate::io::{Action, AuthDecision, AuthRequest, Event};
use crate::session::{Inflight, Message, Session};
use crate::shards::owner_of;
use crate::time::Instant;
use crate::timers::Timer;

impl Engine {
    pub(crate) fn handle_connect(&mut self, now: Instant, conn: ConnectionId, connect: Connect) {
        let v5 = connect.protocol.is_v5();
        // §3.1.3.1: 3.1.1 refuses an empty identifier with Clean Session 0 (MQTT-3.1.3-8), 3.1
        // refuses any empty identifier (it has no assigned identifiers) and, when
        // `strict_v31_client_id` is set, one longer than 23 characters (3.1 §3.1, "Client
        // Identifier": return code 2 Identifier Rejected). Mosquitto and EMQX accept long ones,
        // and many old clients send them, so the length rule is off by default.
        let bad_client_id = match connect.protocol {
            ProtocolVersion::V3_1 => {
                connect.client_id.is_empty()
                    || (self.config.strict_v31_client_id && connect.client_id.chars().count() > 23)
            }
            ProtocolVersion::V3_1_1 => connect.client_id.is_empty() && !connect.clean_start,
            _ => false,
        };
        if bad_client_id {
            return self.refuse(now, conn, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
        }
        // The session of a client identifier lives on the shard that owns it: hand the
        // connection over, CONNECT and all, before anything is answered.
        let owner = owner_of(&connect.client_id, self.config.shard_count);
        if !connect.client_id.is_empty() && owner != self.config.shard {
            return self.hand_off(conn, owner, &connect);
        }
        if let Some(reference) = self.config.server_reference.clone() {
            // §4.11: redirect 5.0 clients with a Server Reference; 3.x has no way to say where.
            if v5 {
                let mut properties = ConnAckProperties::default();
                properties.server_reference = Some(reference.into());
                let connack = ConnAck {
                    session_present: false,
                    reason_code: ReasonCode::USE_ANOTHER_SERVER,
                    properties,
                };
                self.send_packet(now, conn, &Packet::ConnAck(Box::new(connack)));
                self.counters.refused(ReasonCode::USE_ANOTHER_SERVER.0);
                self.push_action(Action::Close { conn });
                return self.connection_lost(now, conn, ReasonCode::USE_ANOTHER_SERVER);
            }
            return self.refuse(now, conn, ReasonCode::SERVER_UNAVAILABLE);
        }
        let method = connect.properties.authentication_method.clone();
        if !self.config.authenticate {
            if method.is_some() {
                // §4.12: enhanced authentication the broker was not set up for.
                return self.refuse(now, conn, ReasonCode::BAD_AUTHENTICATION_METHOD);
            }
            return self.accept(now, conn, connect, None);
        }
        let request = AuthRequest {
            client_id: connect.client_id.clone(),
            username: connect.username.clone(),
            password: connect.password.clone(),
            method: method.clone(),
            data: connect.properties.authentication_data.clone(),
            protocol: connect.protocol,
            cert_cn: None,
            username_verified: false,
        };
        if let Some(connection) = self.connections.get_mut(&conn) {
            connection.auth_method = method.map(Box::new);
            connection.phase = Phase::Authenticating(Box::new(connect));
        }
        self.push_action(Action::Authenticate { conn, request });
    }

    fn hand_off(&mut self, conn: ConnectionId, to: ShardId, connect: &Connect) {
        let Some(mut connection) = self.connections.remove(&conn) else { return };
        if let Some(at) = connection.take_connect_deadline() {
            self.timers.disarm(at, Timer::Connect(conn));
        }
        let mut bytes = BytesMut::new();
        if Packet::Connect(Box::new(connect.clone())).encode(connect.protocol, &mut bytes).is_err()
        {
            return self.push_action(Action::Close { conn });
        }
        bytes.extend_from_slice(&connection.read_buf);
        self.push_action(Action::Handoff { conn, to, bytes });
    }

    /// An AUTH packet from the client: the next step of enhanced authentication (§4.12).
    pub(crate) fn handle_auth(&mut self, now: Instant, conn: ConnectionId, auth: Auth) {
        let Some(connection) = self.connections.get(&conn) else { return };
        let method = auth.properties.authentication_method.clone();
        // MQTT-4.12.0-? : AUTH only with the method of the CONNECT, and only when one was used.
        if connection.auth_method.is_none() || method.as_ref() != connection.auth_method.as_deref()
        {
            return self.close(now, conn, ReasonCode::PROTOCOL_ERROR, true);
        }
        let client_id = match &connection.phase {
            Phase::Authenticating(connect) => connect.client_id.clone(),
            _ => self.session_client_id(conn).unwrap_or_default(),
        };
        let request = AuthRequest {
            client_id,
            username: None,
            password: None,
            method,
            data: auth.properties.authentication_data,
            // AUTH exists in MQTT 5.0 only.
            protocol: ProtocolVersion::V5,
            cert_cn: None,
            username_verified: false,
        };
        self.push_action(Action::Authenticate { conn, request });
    }

    pub(crate) fn handle_auth_decision(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        decision: AuthDecision,
    ) {
        let Some(connection) = self.connections.get_mut(&conn) else { return };
        match decision {
            AuthDecision::Continue(data) => {
                let mut auth =
                    Auth { reason_code: ReasonCode::CONTINUE_AUTHENTICATION, ..Auth::default() };
                auth.properties.authentication_method = connection.auth_method.as_deref().cloned();
                auth.properties.authentication_data = Some(data);
                self.send_packet(now, conn, &Packet::Auth(auth));
            }
            AuthDecision::Accept
            | AuthDecision::AcceptWithAcl(_)
            | AuthDecision::AcceptFor { .. }
            | AuthDecision::AcceptWithData { .. } => {
                let (acl, valid_for, data) = match decision {
                    AuthDecision::AcceptWithAcl(acl) => (Some(acl), None, None),
                    AuthDecision::AcceptFor { acl, valid_for } => (acl, Some(valid_for), None),
                    AuthDecision::AcceptWithData { acl, data } => (acl, None, Some(data)),
                    _ => (None, None, None),
                };
                let until = valid_for.map(|valid_for| now.saturating_add(valid_for));
                match core::mem::replace(&mut connection.phase, Phase::AwaitingConnect) {
                    Phase::Authenticating(connect) => {
                        self.accept_with_data(now, conn, *connect, acl, data);
                        self.limit_credentials(conn, until);
                    }
                    phase => {
                        // Re-authentication of a connected client succeeded (§4.12.1): what it
                        // may do from now on, and for how long, is what this decision says.
                        connection.phase = phase;
                        if let Some(session) =
                            connection.session.and_then(|id| self.sessions.get_mut(&id))
                        {
                            session.acl = acl.map(SessionAcl::new);
                        }
                        self.limit_credentials(conn, until);
                        let Some(connection) = self.connections.get_mut(&conn) else { return };
                        let mut auth = Auth::default();
                        auth.properties.authentication_method =
                            connection.auth_method.as_deref().cloned();
                        auth.properties.authentication_data = data;
                        self.send_packet(now, conn, &Packet::Auth(auth));
                    }
                }
            }
            AuthDecision::Refuse(reason) => match connection.phase {
                // §4.12.1: a failed re-authentication ends with DISCONNECT, whose reason codes
                // (§3.14.2.1) have no 0x86 Bad user name or password nor 0x88 Server
                // unavailable: the nearest ones it has instead.
                Phase::Connected(_) => {
                    let reason = match reason {
                        ReasonCode::BAD_USERNAME_OR_PASSWORD => ReasonCode::NOT_AUTHORIZED,
                        ReasonCode::SERVER_UNAVAILABLE => ReasonCode::SERVER_BUSY,
                        other => other,
                    };
                    self.close(now, conn, reason, true);
                }
                _ => self.refuse(now, conn, reason),
            },
        }
    }

    /// Sets when the credentials of `conn`, connected, expire (`None`: never) and arms the
    /// timer that closes it then ([`AuthDecision::AcceptFor`]). A timer armed for an earlier
    /// limit stays in the set and finds, when it fires, that the limit moved
    /// ([`Engine::expire_credentials`]): no disarming needed.
    fn limit_credentials(&mut self, conn: ConnectionId, until: Option<Instant>) {
        let Some(connection) = self.connections.get(&conn) else { return };
        if !matches!(connection.phase, Phase::Connected(_)) {
            return; // refused meanwhile (for instance a CONNECT redirected)
        }
        let Some(session) = connection.session.and_then(|id| self.sessions.get_mut(&id)) else {
            return;
        };
        session.expires_at = until;
        if let Some(at) = until {
            self.timers.arm(at, Timer::AuthExpiry(conn));
        }
    }

    /// The credentials of `conn` may have expired: if they have (and the limit did not move
    /// since the timer was armed), close it with 0xA0 Maximum connect time (§3.14.2.1; 3.x:
    /// closed without a word, its DISCONNECT goes from client to server only, §3.14 of 3.1.1).
    /// The will is due
    /// (MQTT-3.1.2-8 of 5.0: the server closes the connection without a normal DISCONNECT).
    pub(crate) fn expire_credentials(&mut self, now: Instant, conn: ConnectionId) {
        let expired = self
            .connections
            .get(&conn)
            .and_then(|c| c.session)
            .and_then(|id| self.sessions.get(&id))
            .is_some_and(|s| s.conn == Some(conn) && s.expires_at.is_some_and(|at| at <= now));
        if expired {
            self.close(now, conn, ReasonCode::MAXIMUM_CONNECT_TIME, true);
        }
    }

    /// Answers CONNECT with a failure and closes (§3.2.2.2; 3.1.1's return codes through
    /// [`ReasonCode::to_v3_connack`]).
    pub(crate) fn refuse(&mut self, now: Instant, conn: ConnectionId, reason: ReasonCode) {
        let connack = ConnAck {
            session_present: false,
            reason_code: reason,
            properties: ConnAckProperties::default(),
        };
        self.send_packet(now, conn, &Packet::ConnAck(Box::new(connack)));
        self.counters.refused(reason.0);
        if self.connections.get(&conn).is_some_and(|c| c.sn.is_none()) {
            self.push_action(Action::Close { conn });
        }
        self.connection_lost(now, conn, reason);
    }

    /// Completes a CONNECT: takes over or resumes the session, sends CONNACK, resends what was
    /// in flight.
    pub(crate) fn accept(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        connect: Connect,
        acl: Option<Arc<Acl>>,
    ) {
        self.accept_with_data(now, conn, connect, acl, None);
    }

    /// [`Engine::accept`], with the enhanced authentication's last Authentication Data for the
    /// CONNACK (§3.2.2.3.17, §4.12: SCRAM's server-final message).
    fn accept_with_data(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        connect: Connect,
        acl: Option<Arc<Acl>>,
        auth_data: Option<bytes::Bytes>,
    ) {
        let v5 = connect.protocol.is_v5();
        let assigned = connect.client_id.is_empty().then(|| self.assign_client_id());
        let client_id = assigned.clone().unwrap_or_else(|| connect.client_id.clone());
        let requested_expiry = if v5 {
            connect.properties.session_expiry_interval.unwrap_or(0)
        } else if connect.clean_start {
            0
        } else {
            self.config.v3_session_expiry
        };
        let expiry = requested_expiry.min(self.config.max_session_expiry);

        // Session takeover (§3.1.4, MQTT-3.1.4-3): the old connection is told 0x8E and closed;
        // its will follows the usual rules (it did not disconnect normally).
        // Its will is held back until this connection has the session, so that where it goes
        // does not depend on whether it travels through another shard.
        let existing = self.client_ids.get(&client_id).copied();
        let mut taken_over_will = None;
        if let Some(old_conn) = existing.and_then(|id| self.sessions.get(&id)).and_then(|s| s.conn)
        {
            taken_over_will = self.connections.get_mut(&old_conn).and_then(|c| c.will.take());
            // MQTT-3.1.2-4: with Clean Start 0 the new connection resumes the session: detach
            // it first, so that closing the old connection does not end it. Not a session that
            // ends with its connection (Session Expiry Interval 0: a 3.1.1 CleanSession 1
            // session must not be reused by any later one, MQTT-3.1.2-6 of 3.1.1; §3.1.2.11.2):
            // the takeover closes that connection, and so ends it. This also keeps the answer
            // the same when the old connection's DISCONNECT is still unread on another shard.
            if !connect.clean_start
                && let Some(session) = existing.and_then(|id| self.sessions.get_mut(&id))
                && session.expiry_interval > 0
            {
                session.conn = None;
                self.counters.client_disconnected();
            }
            self.close(now, old_conn, ReasonCode::SESSION_TAKEN_OVER, true);
        }
        let existing = self.client_ids.get(&client_id).copied();
        let (session_id, session_present) = match existing {
            Some(id) if !connect.clean_start => (id, true),
            Some(id) => {
                self.end_session(now, id);
                (self.new_session(client_id.clone()), false)
            }
            None => (self.new_session(client_id.clone()), false),
        };
        let Some(session) = self.sessions.get_mut(&session_id) else { return };
        if session.conn.replace(conn).is_none() {
            self.counters.client_connected();
        }
        session.expiry_interval = expiry;
        session.expires_at = None;
        // A reconnect within the will delay cancels the pending will (§3.1.3.2.2).
        session.will = None;
        // A will the client may not publish is not kept (Mosquitto drops it the same way).
        let will =
            connect.will.filter(|will| acl.as_ref().is_none_or(|a| a.may_publish(&will.topic)));
        session.acl = acl.map(SessionAcl::new);

        let keep_alive = self.config.server_keep_alive.filter(|_| v5).unwrap_or(connect.keep_alive);
        let will = will.map(|will| {
            let properties = &will.properties;
            let mut publish_properties = PublishProperties::default();
            publish_properties.payload_format_indicator = properties.payload_format_indicator;
            publish_properties.content_type = properties.content_type.clone();
            publish_properties.response_topic = properties.response_topic.clone();
            publish_properties.correlation_data = properties.correlation_data.clone();
            publish_properties.user_properties = properties.user_properties.clone();
            // Kept as an interval: a will's expiry counts from when it is published.
            publish_properties.message_expiry_interval = properties.message_expiry_interval;
            let message = Message {
                topic: will.topic,
                payload: will.payload,
                qos: will.qos,
                retain: will.retain,
                properties: publish_properties,
                expires_at: None,
                publisher: Some(session_id),
                wire_header: bytes::Bytes::new(),
                received_at: None,
            };
            let delay = properties.will_delay_interval.unwrap_or(0);
            (Arc::new(message), delay)
        });
        let Some(connection) = self.connections.get_mut(&conn) else { return };
        if let Some(at) = connection.take_connect_deadline() {
            self.timers.disarm(at, Timer::Connect(conn));
        }
        connection.phase = Phase::Connected(Box::new(Connected {
            protocol: connect.protocol,
            username: connect.username.clone(),
            since: now,
        }));
        connection.session = Some(session_id);
        connection.keep_alive = keep_alive;
        connection.deadline = keep_alive_deadline(now, keep_alive);
        connection.client_receive_maximum = if connection.sn.is_some() {
            self.config.sn_max_inflight.max(1)
        } else {
            connect.properties.receive_maximum.unwrap_or(u16::MAX)
        };
        connection.client_max_packet_size =
            connect.properties.maximum_packet_size.unwrap_or(u32::MAX);
        connection.outbound_aliases =
            OutboundAliases::new(connect.properties.topic_alias_maximum.unwrap_or(0));
        connection.request_problem_information =
            connect.properties.request_problem_information.unwrap_or(true);
        connection.connect_session_expiry = requested_expiry;
        connection.will = will;
        if let Some(deadline) = connection.deadline {
            self.timers.arm(deadline, Timer::KeepAlive(conn));
        }

        let mut properties = ConnAckProperties::default();
        if v5 {
            let config = &self.config;
            properties.assigned_client_identifier = assigned;
            if expiry != requested_expiry {
                properties.session_expiry_interval = Some(expiry);
            }
            if config.receive_maximum != u16::MAX {
                properties.receive_maximum = Some(config.receive_maximum);
            }
            if config.maximum_qos != QoS::ExactlyOnce {
                properties.maximum_qos = Some(config.maximum_qos);
            }
            if !config.retain_available {
                properties.retain_available = Some(false);
            }
            properties.maximum_packet_size = Some(config.max_packet_size);
            if config.topic_alias_maximum > 0 {
                properties.topic_alias_maximum = Some(config.topic_alias_maximum);
            }
            if !config.wildcard_subscription_available {
                properties.wildcard_subscription_available = Some(false);
            }
            if !config.subscription_identifiers_available {
                properties.subscription_identifiers_available = Some(false);
            }
            if !config.shared_subscription_available {
                properties.shared_subscription_available = Some(false);
            }
            if let Some(server_keep_alive) = config.server_keep_alive {
                properties.server_keep_alive = Some(server_keep_alive);
            }
            if let Some(connection) = self.connections.get(&conn) {
                properties.authentication_method = connection.auth_method.as_deref().cloned();
                // Authentication Data only with an Authentication Method (§3.2.2.3.17).
                if properties.authentication_method.is_some() {
                    properties.authentication_data = auth_data;
                }
            }
        }
        // A durable session is in the store before the CONNACK that tells the client so.
        self.persist_session(session_id);
        self.persist_will_at_connect(session_id, conn);
        let connack = ConnAck { session_present, reason_code: ReasonCode::SUCCESS, properties };
        self.send_packet(now, conn, &Packet::ConnAck(Box::new(connack)));
        self.emit(Event::Connected { conn, client_id, session_present });
        if session_present {
            self.resume(now, session_id, conn);
        }
        if let Some((message, delay)) = taken_over_will {
            // §3.1.3.2.2: a will with a delay is cancelled by this reconnect when the session
            // goes on; otherwise it is due now.
            if delay == 0 || !session_present {
                self.publish_will(now, message);
            }
        }
    }

    /// Resends what was in flight, in the original order (MQTT-4.4.0-1, MQTT-4.6.0-1): PUBLISH
    /// with DUP for unacknowledged messages, PUBREL for released ones; then the queue.
    fn resume(&mut self, now: Instant, session_id: SessionId, conn: ConnectionId) {
        if self.connections.get(&conn).is_some_and(|c| c.sn.is_some()) {
            return self.sn_resume(now, session_id, conn);
        }
        let Some(session) = self.sessions.get(&session_id) else { return };
        let mut pending: alloc::vec::Vec<_> = session
            .inflight
            .iter()
            .map(|(id, (seq, inflight))| (*seq, *id, inflight.clone()))
            .collect();
        pending.sort_unstable_by_key(|(seq, _, _)| *seq);
        for (_, packet_id, inflight) in pending {
            match inflight {
                Inflight::Published(delivery) => {
                    self.send_publish(now, conn, &delivery, Some(packet_id), true);
                }
                Inflight::Released(_) => {
                    let rel = musqratt_proto::mqtt::PubResponse::new(packet_id);
                    self.send_packet(now, conn, &Packet::PubRel(rel));
                }
            }
        }
        self.drain_queue(now, session_id);
    }

    pub(crate) fn handle_disconnect(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        disconnect: Disconnect,
    ) {
        let Some(connection) = self.connections.get_mut(&conn) else { return };
        if let Some(expiry) = disconnect.properties.session_expiry_interval {
            // MQTT-3.14.2-2: a session expiry of 0 at CONNECT cannot be raised at DISCONNECT.
            if connection.connect_session_expiry == 0 && expiry != 0 {
                return self.close(now, conn, ReasonCode::PROTOCOL_ERROR, true);
            }
            let expiry = expiry.min(self.config.max_session_expiry);
            let session_id = connection.session;
            if let Some(session) = session_id.and_then(|id| self.sessions.get_mut(&id)) {
                session.expiry_interval = expiry;
            }
            if let Some(id) = session_id {
                self.persist_session(id);
            }
        }
        // MQTT-3.14.4-3: a normal DISCONNECT discards the will; 0x04 asks for it (§3.14.2.1).
        let Some(connection) = self.connections.get_mut(&conn) else { return };
        if disconnect.reason_code != ReasonCode::DISCONNECT_WITH_WILL {
            connection.will = None;
        }
        self.push_action(Action::Close { conn });
        self.connection_lost(now, conn, disconnect.reason_code);
    }

    /// Publishes a will: its Message Expiry Interval starts now.
    pub(crate) fn publish_will(&mut self, now: Instant, message: Arc<Message>) {
        let mut message = Arc::unwrap_or_clone(message);
        message.expires_at = message.properties.message_expiry_interval.map(|s| now.plus_secs(s));
        self.route(now, Routed::Owned(message));
    }

    fn session_client_id(&self, conn: ConnectionId) -> Option<ByteString> {
        let session = self.connections.get(&conn)?.session?;
        Some(self.sessions.get(&session)?.client_id.clone())
    }

    /// A new session for `client_id`, under the next session number.
    pub(crate) fn new_session(&mut self, client_id: ByteString) -> SessionId {
        self.next_session += 1;
        let id = SessionId(self.next_session);
        self.client_ids.insert(client_id.clone(), id);
        self.sessions.insert(id, Box::new(Session::new(client_id)));
        id
    }

    /// A fresh client identifier for a client that sent an empty one (§3.1.3.1), from the
    /// seeded generator so that runs are reproducible.
    pub(crate) fn assign_client_id(&mut self) -> ByteString {
        loop {
            // xorshift64*: small, deterministic, good enough for unique identifiers.
            self.rng ^= self.rng >> 12;
            self.rng ^= self.rng << 25;
            self.rng ^= self.rng >> 27;
            let value = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
            let id = ByteString::from(alloc::format!("musqratt-{value:016x}"));
            // The identifier must belong to this shard, where its session is created.
            let here = owner_of(&id, self.config.shard_count) == self.config.shard;
            if here && !self.client_ids.contains_key(&id) {
                return id;
            }
        }
    }
}
