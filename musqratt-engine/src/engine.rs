//! The engine: the `Engine` struct, the inputs it takes and the packets it dispatches, the
//! actions it queues.
//!
//! The state the `Engine` holds lives in leaf modules that do not know it (connections,
//! sessions, the SUBACK barrier's `route_sync::state`, `deliver::state`, `sn::state`...); what
//! it does with a packet or a timer lives in feature modules that `impl Engine` (`connect`,
//! `publish`, `subscribe`, `deliver`, `close`, `sn::inbound`...). This module imports state
//! modules only, so the modules import each other without a cycle
//! (docs/adr/0014-engine-layers.md, checked by `tests/layers.rs`).

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};

use bytes::{Bytes, BytesMut};
use musqratt_proto::bytestring::ByteString;
use musqratt_proto::mqtt::{Packet, ReasonCode};
use musqratt_proto::{DecodeError, ProtocolVersion};

use crate::backlog::Backlog;
use crate::config::Config;
use crate::connection::{Connection, Phase};
use crate::deliver::state::Headers;
use crate::ids::{ConnectionId, SessionId};
use crate::io::{Action, Event, Input};
use crate::metrics::Counters;
use crate::retained::Retained;
use crate::route_sync::state::RouteSync;
use crate::session::Session;
use crate::shards::{Routes, SharedGroups};
use crate::sn::state::SnFront;
use crate::store_sync::state::StoreSync;
use crate::subscribers::Subscribers;
use crate::time::Instant;
use crate::timers::{Timer, Timers};

/// One shard of the broker: the MQTT state machine of the connections and sessions it owns.
///
/// See the crate documentation for the call order.
#[derive(Debug)]
pub struct Engine {
    pub(crate) config: Config,
    /// Boxed: the map's nodes hold 11 entries and, with connection numbers that only grow, stay
    /// about half full; inline, every idle connection paid for about two `Connection`s.
    pub(crate) connections: BTreeMap<ConnectionId, Box<Connection>>,
    /// Boxed for the same reason as `connections`.
    pub(crate) sessions: BTreeMap<SessionId, Box<Session>>,
    pub(crate) client_ids: BTreeMap<ByteString, SessionId>,
    /// The last session number given (`SessionId`s are never reused).
    pub(crate) next_session: u64,
    pub(crate) subscribers: Subscribers,
    pub(crate) retained: Retained,
    pub(crate) backlog: Backlog,
    pub(crate) timers: Timers,
    pub(crate) routes: Routes,
    pub(crate) shared_groups: SharedGroups,
    /// SUBACKs waiting until every shard routes their subscriptions.
    pub(crate) route_sync: RouteSync,
    /// With persistence, acknowledgements waiting until other shards stored their message.
    pub(crate) store_sync: StoreSync,
    pub(crate) actions: VecDeque<Action>,
    /// Where PUBLISH headers are encoded, and those that can be sent again.
    pub(crate) headers: Headers,
    /// MQTT-SN front-end state: peers, predefined topics.
    pub(crate) sn: SnFront,
    /// State of the generator of assigned client identifiers (xorshift64*, seeded by the config).
    pub(crate) rng: u64,
    /// The number the next stored message gets ([`crate::Record::Queued`]): one counter for
    /// the shard rather than one per session (8 bytes every session would pay for); numbers
    /// increase within each session, which is all the store needs.
    pub(crate) store_seq: u64,
    /// The runtime's store cannot write (`crate::store_full`): new durable messages are refused.
    pub(crate) store_full: bool,
    /// The time of the last input or timeout: for answers that come without one
    /// ([`Engine::queue_loaded`]).
    pub(crate) last_now: Instant,
    /// What the operator sees of this shard (`crate::metrics`): plain integers, this shard's
    /// alone, read with [`Engine::metrics`].
    pub(crate) counters: Counters,
}

impl Engine {
    /// An engine with this configuration and no connections.
    #[must_use]
    pub fn new(config: Config) -> Self {
        let rng = config.seed | 1;
        let mut timers = Timers::default();
        if config.sn_advertise_interval.is_some() && config.shard == crate::ids::ShardId(0) {
            timers.arm(Instant::ZERO, Timer::SnAdvertise);
        }
        let sn = SnFront::new(&config);
        Self {
            config,
            connections: BTreeMap::new(),
            sessions: BTreeMap::new(),
            client_ids: BTreeMap::new(),
            next_session: 0,
            subscribers: Subscribers::default(),
            retained: Retained::default(),
            backlog: Backlog::default(),
            timers,
            routes: Routes::default(),
            shared_groups: SharedGroups::default(),
            route_sync: RouteSync::default(),
            store_sync: StoreSync::default(),
            actions: VecDeque::new(),
            headers: Headers::default(),
            sn,
            rng,
            store_seq: 1,
            store_full: false,
            last_now: Instant::ZERO,
            counters: Counters::default(),
        }
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Feeds one input at time `now`. Then take actions with [`Engine::poll_action`].
    pub fn handle_input(&mut self, now: Instant, input: Input) {
        self.last_now = now;
        self.dispatch_input(now, input);
        if self.config.persistence {
            self.send_store_syncs();
        }
    }

    fn dispatch_input(&mut self, now: Instant, input: Input) {
        match input {
            Input::Accepted { conn } => {
                let mut connection = Box::new(Connection::new(self.config.max_packet_size));
                let deadline = now.saturating_add(self.config.connect_timeout);
                // Kept until CONNECT is accepted, to disarm the timer then (see `Connection`).
                connection.deadline = Some(deadline);
                self.connections.insert(conn, connection);
                self.timers.arm(deadline, Timer::Connect(conn));
            }
            Input::Data { conn, bytes } => {
                self.counters.bytes_in(bytes.len());
                self.handle_data(now, conn, bytes);
            }
            Input::Datagram { peer, bytes } => {
                self.counters.bytes_in(bytes.len());
                self.handle_datagram(now, peer, bytes);
            }
            Input::Adopted { conn, bytes } => {
                self.dispatch_input(now, Input::Accepted { conn });
                self.handle_data(now, conn, bytes);
            }
            Input::FromShard { from, message } => self.handle_shard_message(now, from, message.0),
            Input::Written { conn, bytes } => {
                if let Some(connection) = self.connections.get_mut(&conn) {
                    connection.unwritten = connection.unwritten.saturating_sub(bytes);
                    if let Some(session) = connection.session {
                        self.drain_queue(now, session);
                    }
                }
            }
            Input::Closed { conn } => {
                self.connection_lost(now, conn, ReasonCode::UNSPECIFIED_ERROR)
            }
            Input::AuthDecision { conn, decision } => {
                self.handle_auth_decision(now, conn, decision)
            }
            Input::Shutdown => {
                let conns: alloc::vec::Vec<ConnectionId> =
                    self.connections.keys().copied().collect();
                for conn in conns {
                    if let Some(connection) = self.connections.get_mut(&conn) {
                        connection.will = None;
                    }
                    self.close(now, conn, ReasonCode::SERVER_SHUTTING_DOWN, true);
                }
            }
        }
    }

    /// Fires every deadline due at `now`: connect and keep-alive timeouts, delayed wills,
    /// session expiry.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_now = now;
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                Timer::Connect(conn) => {
                    let waiting = self
                        .connections
                        .get(&conn)
                        .is_some_and(|c| !matches!(c.phase, Phase::Connected(_)));
                    if waiting {
                        self.close(now, conn, ReasonCode::MAXIMUM_CONNECT_TIME, false);
                    }
                }
                Timer::KeepAlive(conn) => {
                    let Some(deadline) = self.connections.get(&conn).and_then(|c| c.deadline)
                    else {
                        continue;
                    };
                    if deadline <= now {
                        // §3.1.2.10: close; 5.0 may say why (0x8D Keep Alive timeout).
                        self.close(now, conn, ReasonCode::KEEP_ALIVE_TIMEOUT, true);
                    } else {
                        self.timers.arm(deadline, Timer::KeepAlive(conn));
                    }
                }
                Timer::AuthExpiry(conn) => self.expire_credentials(now, conn),
                Timer::Will(session) => self.fire_will(now, session),
                Timer::SessionExpiry(session) => self.expire_session(now, session),
                Timer::SnRetry(conn) => self.sn_retry(now, conn),
                Timer::SnAdvertise => self.sn_advertise(now),
            }
        }
        if self.config.persistence {
            self.send_store_syncs();
        }
    }

    /// The next action for the runtime, until `None`.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Engine::handle_timeout`] must be called next, if ever.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Connections open on this engine.
    #[must_use]
    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }

    /// Sessions held by this engine, connected or not.
    #[must_use]
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    fn handle_data(&mut self, now: Instant, conn: ConnectionId, bytes: BytesMut) {
        let Some(connection) = self.connections.get_mut(&conn) else { return };
        if connection.read_buf.is_empty() {
            connection.read_buf = bytes;
        } else {
            connection.read_buf.extend_from_slice(&bytes);
        }
        self.process_input(now, conn);
    }

    /// Decodes and handles the packets buffered for a connection, until a partial packet, an
    /// error, or a SUBSCRIBE whose SUBACK waits for the other shards (`route_sync`).
    pub(crate) fn process_input(&mut self, now: Instant, conn: ConnectionId) {
        loop {
            if self.route_sync.is_waiting(conn) {
                return;
            }
            let Some(connection) = self.connections.get_mut(&conn) else { return };
            match connection.decoder.decode_frame(&mut connection.read_buf) {
                Ok(Some((packet, frame))) => {
                    if let Some(ka) = keep_alive_deadline(now, connection.keep_alive) {
                        connection.deadline = Some(ka);
                    }
                    self.handle_packet(now, conn, packet, frame);
                }
                Ok(None) => return,
                Err(error) => {
                    self.decode_failed(now, conn, error);
                    return;
                }
            }
        }
    }

    fn decode_failed(&mut self, now: Instant, conn: ConnectionId, error: DecodeError) {
        let Some(connection) = self.connections.get(&conn) else { return };
        match (&connection.phase, error) {
            // MQTT-3.1.2-2: an unsupported protocol level is answered with CONNACK return code
            // 0x01 (3.1.1 form, which every version's client can read) before closing.
            (Phase::AwaitingConnect, DecodeError::UnsupportedProtocolLevel(_)) => {
                self.send(conn, Bytes::from_static(&[0x20, 0x02, 0x00, 0x01]));
                self.counters.refused(ReasonCode::UNSUPPORTED_PROTOCOL_VERSION.0);
                self.close(now, conn, ReasonCode::UNSUPPORTED_PROTOCOL_VERSION, false);
            }
            // §4.13.1 and §3.2.2.2: a 5.0 CONNECT that breaks a rule (a property twice, Receive
            // Maximum 0, a will topic with a wildcard) may be answered with CONNACK and a reason
            // code of 0x80 or more before closing, so that the client can report why. Every
            // code `reason_code` gives (0x81, 0x82, 0x84, 0x90, 0x95) is a CONNACK code. 3.x
            // return codes have no such answer (3.1.1 §3.2.2.3): those close silently.
            (Phase::AwaitingConnect, _)
                if connection.decoder.version() == Some(ProtocolVersion::V5) =>
            {
                self.refuse(now, conn, error.reason_code());
            }
            (Phase::AwaitingConnect, _) => {
                self.close(now, conn, error.reason_code(), false);
            }
            _ => self.close(now, conn, error.reason_code(), true),
        }
    }

    /// Handles a decoded packet; `frame` is the packet as received (see
    /// [`musqratt_proto::mqtt::Decoder::decode_frame`]).
    fn handle_packet(&mut self, now: Instant, conn: ConnectionId, packet: Packet, frame: Bytes) {
        let Some(connection) = self.connections.get(&conn) else { return };
        let connected = matches!(connection.phase, Phase::Connected(_));
        match packet {
            Packet::Connect(connect) if matches!(connection.phase, Phase::AwaitingConnect) => {
                self.handle_connect(now, conn, *connect);
            }
            // MQTT-3.1.0-2: a second CONNECT is a Protocol Error.
            Packet::Connect(_) => self.close(now, conn, ReasonCode::PROTOCOL_ERROR, true),
            Packet::Auth(auth) => self.handle_auth(now, conn, auth),
            // Nothing but AUTH may come before CONNACK (MQTT-3.1.4-?, §4.12).
            _ if !connected => self.close(now, conn, ReasonCode::PROTOCOL_ERROR, true),
            Packet::Publish(publish) => self.handle_publish(now, conn, publish, frame),
            Packet::PubAck(ack) => self.handle_puback(now, conn, ack),
            Packet::PubRec(rec) => self.handle_pubrec(now, conn, rec),
            Packet::PubRel(rel) => self.handle_pubrel(now, conn, rel),
            Packet::PubComp(comp) => self.handle_pubcomp(now, conn, comp),
            Packet::Subscribe(subscribe) => self.handle_subscribe(now, conn, subscribe),
            Packet::Unsubscribe(unsubscribe) => self.handle_unsubscribe(now, conn, unsubscribe),
            Packet::PingReq => self.send_packet(now, conn, &Packet::PingResp),
            Packet::Disconnect(disconnect) => self.handle_disconnect(now, conn, disconnect),
            // Packets only a server sends (§2.1.2): a client sending them breaks the protocol.
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp | _ => {
                self.close(now, conn, ReasonCode::PROTOCOL_ERROR, true)
            }
        }
    }

    /// Queues `bytes` for a connection.
    pub(crate) fn send(&mut self, conn: ConnectionId, bytes: Bytes) {
        if let Some(connection) = self.connections.get_mut(&conn) {
            connection.unwritten += bytes.len();
        }
        self.counters.bytes_out(bytes.len());
        self.actions.push_back(Action::Send { conn, bytes });
    }

    /// Encodes and queues a packet in the connection's version. `now` is for MQTT-SN, whose
    /// PUBREL arms the retransmission timer (§6.13).
    pub(crate) fn send_packet(&mut self, now: Instant, conn: ConnectionId, packet: &Packet) {
        self.send_packet_at(now, self.actions.len(), conn, packet);
    }

    /// Where the next action will be queued: a mark for [`Engine::send_packet_at`].
    pub(crate) fn action_mark(&self) -> usize {
        self.actions.len()
    }

    /// Encodes a packet and queues it at `mark`, ahead of the actions queued since the mark
    /// was taken.
    pub(crate) fn send_packet_at(
        &mut self,
        now: Instant,
        mark: usize,
        conn: ConnectionId,
        packet: &Packet,
    ) {
        let Some(connection) = self.connections.get_mut(&conn) else { return };
        if connection.sn.is_some() {
            return self.sn_send_packet_at(now, mark, conn, packet);
        }
        let version = connection.version();
        let mut buf = BytesMut::new();
        // Packets the engine builds always fit the format; one that does not is not sent.
        if packet.encode(version, &mut buf).is_ok() {
            connection.unwritten += buf.len();
            self.counters.bytes_out(buf.len());
            let at = mark.min(self.actions.len());
            self.actions.insert(at, Action::Send { conn, bytes: buf.freeze() });
        }
    }

    pub(crate) fn emit(&mut self, event: Event) {
        if let Event::MessageDropped { reason, .. } = &event {
            self.counters.dropped(*reason);
        }
        self.actions.push_back(Action::Event(event));
    }

    pub(crate) fn push_action(&mut self, action: Action) {
        self.actions.push_back(action);
    }
}

/// When a connection with this Keep Alive is closed for silence: 1.5 × Keep Alive after `now`
/// (MQTT-3.1.2-22 of 5.0, MQTT-3.1.2-24 of 3.1.1); `None` when Keep Alive is off.
pub(crate) fn keep_alive_deadline(now: Instant, keep_alive: u16) -> Option<Instant> {
    (keep_alive > 0).then(|| {
        let micros = u64::from(keep_alive) * 1_500_000;
        Instant::from_micros(now.as_micros().saturating_add(micros))
    })
}

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;

    use super::*;

    #[test]
    fn shutdown_tells_v5_clients_and_closes_everyone() {
        let mut engine = Engine::new(Config::default());
        let now = Instant::ZERO;
        // c1: MQTT 5.0, connected. c2: accepted, no CONNECT yet.
        engine.handle_input(now, Input::Accepted { conn: ConnectionId(1) });
        let connect = BytesMut::from(&b"\x10\x0e\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x01a"[..]);
        engine.handle_input(now, Input::Data { conn: ConnectionId(1), bytes: connect });
        engine.handle_input(now, Input::Accepted { conn: ConnectionId(2) });
        while engine.poll_action().is_some() {}
        engine.handle_input(now, Input::Shutdown);
        let actions: Vec<Action> = core::iter::from_fn(|| engine.poll_action()).collect();
        let sends: Vec<&Bytes> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Send { conn: ConnectionId(1), bytes } => Some(bytes),
                _ => None,
            })
            .collect();
        assert_eq!(sends.len(), 1);
        assert_eq!((sends[0][0], sends[0][2]), (0xE0, 0x8B));
        let closes = actions.iter().filter(|a| matches!(a, Action::Close { .. })).count();
        assert_eq!(closes, 2);
        assert_eq!(engine.connection_count(), 0);
    }

    /// An accepted CONNECT disarms the connect timer: left armed, every connection kept a timer
    /// entry for `connect_timeout` after connecting (measured: ~70 bytes per idle connection
    /// in the 10k-connection bench).
    #[test]
    fn accepted_connect_disarms_the_connect_timer() {
        let mut engine = Engine::new(Config::default());
        engine.handle_input(Instant::ZERO, Input::Accepted { conn: ConnectionId(1) });
        let connect_deadline = engine.poll_timeout();
        assert!(connect_deadline.is_some());
        // MQTT 3.1.1, Keep Alive 60 s: closed for silence after 90 s.
        let connect = BytesMut::from(&b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01a"[..]);
        engine.handle_input(Instant::ZERO, Input::Data { conn: ConnectionId(1), bytes: connect });
        assert_eq!(engine.connection_count(), 1);
        assert_eq!(engine.poll_timeout(), Some(Instant::from_micros(90_000_000)));
    }
}
