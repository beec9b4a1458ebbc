//! A simulator of N MusQraTT shards in one thread on a virtual clock.
//!
//! Every shard is a [`musqratt_engine::Engine`]. The simulator plays the runtime for all of them
//! and the network for scripted clients:
//!
//! - a client connects to a chosen shard ([`Simulator::open`]); the bytes it sends go to the
//!   engine of the shard that holds its connection now;
//! - [`Action::Send`] bytes are decoded on the client side with a client [`Decoder`] of the
//!   connection's version, and one transcript line is recorded per packet; every byte a
//!   reading client receives is reported back with [`Input::Written`]. A paused client
//!   ([`Simulator::pause`]) reads nothing, so the engine sees its unwritten bytes grow;
//! - [`Action::Close`] closes the client's side (`c1 closed`);
//! - [`Action::Handoff`] moves the connection to the target shard with [`Input::Adopted`];
//! - [`Action::ToShard`] goes into a FIFO link per (from, to) pair, delivered as
//!   [`Input::FromShard`] in order;
//! - [`Action::Authenticate`] is answered with the next scripted decision for that client
//!   (default: accept);
//! - [`Simulator::advance`] moves the virtual clock, firing every deadline on the way
//!   (`poll_timeout` / `handle_timeout`) at its own instant.
//!
//! Engine [`Event`]s are recorded as event lines ([`Line::client`] is `None`); they are not
//! client-visible and differ legitimately between shard counts (connection numbers are the
//! same, but which shard reports what is not).
//!
//! The script language that drives this is documented in `tests/transcripts/README.md` and
//! implemented in [`crate::script`].

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use bytes::BytesMut;
use core::time::Duration;
use musqratt_engine::proto::ProtocolVersion;
use musqratt_engine::proto::mqtt::{Decoder, Packet};
use musqratt_engine::proto::sn;
use musqratt_engine::{
    Action, AuthDecision, Config, ConnectionId, Engine, Event, Input, Instant, PeerId, ShardId,
    ShardMessage,
};

use crate::format;

/// One line of a transcript.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The client that saw it, or `None` for an engine event (not client-visible).
    pub client: Option<String>,
    /// When it happened, if during [`Simulator::advance`] (otherwise: at the command's time).
    pub at: Option<Instant>,
    /// The text, e.g. `c1 <- PINGRESP`.
    pub text: String,
}

/// The client side of one simulated connection.
#[derive(Debug)]
struct Client {
    conn: ConnectionId,
    shard: usize,
    version: ProtocolVersion,
    decoder: Decoder,
    /// Bytes received and not yet read (a paused client keeps them here).
    inbuf: BytesMut,
    /// Bytes read and not yet reported written to the engine.
    unreported: usize,
    reading: bool,
    open: bool,
}

/// A simulated MQTT-SN client: a UDP peer, possibly behind a forwarder.
#[derive(Debug, Clone)]
pub struct SnClient {
    /// Its current UDP source address.
    pub peer: PeerId,
    /// The shard its datagrams go to while no shard has taken its peer.
    pub shard: usize,
    /// The wireless node id when it sits behind a forwarder (§5.5).
    pub node: Option<Bytes>,
    /// Will topic and message, sent automatically when the broker asks (§6.3).
    pub will: Option<(sn::WillTopic, Bytes)>,
    /// Whether a REGISTER from the broker is answered automatically with REGACK accepted.
    pub auto_regack: bool,
}

/// N shards, their links, scripted clients and a virtual clock.
#[derive(Debug)]
pub struct Simulator {
    engines: Vec<Engine>,
    now: Instant,
    clients: BTreeMap<String, Client>,
    by_conn: BTreeMap<ConnectionId, String>,
    links: BTreeMap<(u16, u16), VecDeque<ShardMessage>>,
    next_conn: u64,
    auth: BTreeMap<String, VecDeque<AuthDecision>>,
    lines: Vec<Line>,
    /// Set while timers fire during [`Simulator::advance`].
    firing_at: Option<Instant>,
    /// Assigned client identifiers and the placeholder each is shown as: the identifier an
    /// engine assigns depends on which shard assigns it (it must hash to that shard), which is
    /// not observable by the client beyond "a unique identifier" (§3.2.2.3.7).
    assigned: BTreeMap<String, String>,
    sn_clients: BTreeMap<String, SnClient>,
    by_peer: BTreeMap<PeerId, String>,
    /// Which shard took a (peer, wireless node) ([`Action::HandoffPeer`]).
    peer_routes: BTreeMap<(PeerId, Bytes), usize>,
}

impl Simulator {
    /// `shards` engines with this configuration (its `shard` and `shard_count` are set here).
    #[must_use]
    pub fn new(config: &Config, shards: u16) -> Self {
        let shards = shards.max(1);
        let engines = (0..shards)
            .map(|shard| {
                let mut config = config.clone();
                config.shard = ShardId(shard);
                config.shard_count = shards;
                Engine::new(config)
            })
            .collect();
        Self {
            engines,
            now: Instant::ZERO,
            clients: BTreeMap::new(),
            by_conn: BTreeMap::new(),
            links: BTreeMap::new(),
            next_conn: 0,
            auth: BTreeMap::new(),
            lines: Vec::new(),
            firing_at: None,
            assigned: BTreeMap::new(),
            sn_clients: BTreeMap::new(),
            by_peer: BTreeMap::new(),
            peer_routes: BTreeMap::new(),
        }
    }

    /// How many shards run.
    #[must_use]
    pub fn shard_count(&self) -> usize {
        self.engines.len()
    }

    /// The virtual time.
    #[must_use]
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The engine of a shard, for inspection.
    #[must_use]
    pub fn engine(&self, shard: usize) -> &Engine {
        &self.engines[shard]
    }

    /// Takes the lines recorded since the last call.
    pub fn take_lines(&mut self) -> Vec<Line> {
        core::mem::take(&mut self.lines)
    }

    /// Whether a client's connection is open.
    #[must_use]
    pub fn is_open(&self, name: &str) -> bool {
        self.clients.get(name).is_some_and(|c| c.open)
    }

    /// A new network connection for client `name` on shard `shard` (modulo the shard count),
    /// replacing whatever connection the name had. The client speaks `version`.
    pub fn open(&mut self, name: &str, shard: usize, version: ProtocolVersion, max_packet: u32) {
        self.next_conn += 1;
        let conn = ConnectionId(self.next_conn);
        let shard = shard % self.engines.len();
        let client = Client {
            conn,
            shard,
            version,
            decoder: Decoder::with_version(version, max_packet),
            inbuf: BytesMut::new(),
            unreported: 0,
            reading: true,
            open: true,
        };
        self.clients.insert(name.to_owned(), client);
        self.by_conn.insert(conn, name.to_owned());
        self.engines[shard].handle_input(self.now, Input::Accepted { conn });
        self.settle();
    }

    /// The client sends a packet, encoded in its version.
    ///
    /// # Panics
    /// If the packet cannot be encoded (a script error).
    pub fn send(&mut self, name: &str, packet: &Packet) {
        let Some(client) = self.clients.get(name) else { return };
        let mut buf = BytesMut::new();
        packet.encode(client.version, &mut buf).expect("the script's packet encodes");
        self.send_raw(name, buf);
    }

    /// The client sends raw bytes.
    pub fn send_raw(&mut self, name: &str, bytes: BytesMut) {
        let Some(client) = self.clients.get(name) else { return };
        if !client.open {
            self.note(Some(name), format!("{name} !! not connected"));
            return;
        }
        let (conn, shard) = (client.conn, client.shard);
        self.engines[shard].handle_input(self.now, Input::Data { conn, bytes });
        self.settle();
    }

    /// The network connection drops (the client did not send DISCONNECT).
    pub fn close(&mut self, name: &str) {
        let Some(client) = self.clients.get_mut(name) else { return };
        if !client.open {
            return;
        }
        client.open = false;
        let (conn, shard) = (client.conn, client.shard);
        self.engines[shard].handle_input(self.now, Input::Closed { conn });
        self.settle();
    }

    /// The client stops reading: what the broker sends stays unread and unwritten.
    pub fn pause(&mut self, name: &str) {
        if let Some(client) = self.clients.get_mut(name) {
            client.reading = false;
        }
    }

    /// The client reads again: everything waiting is read and reported written.
    pub fn resume(&mut self, name: &str) {
        if let Some(client) = self.clients.get_mut(name) {
            client.reading = true;
        }
        self.read(name);
        self.settle();
    }

    /// The next [`Action::Authenticate`] for this client is answered with `decision`.
    pub fn queue_auth(&mut self, name: &str, decision: AuthDecision) {
        self.auth.entry(name.to_owned()).or_default().push_back(decision);
    }

    /// The broker stops: every shard is given [`Input::Shutdown`].
    pub fn shutdown(&mut self) {
        for engine in &mut self.engines {
            engine.handle_input(self.now, Input::Shutdown);
        }
        self.settle();
    }

    /// Moves the clock forward by `by`, firing every deadline on the way at its instant.
    pub fn advance(&mut self, by: Duration) {
        let target = self.now.saturating_add(by);
        for _ in 0..100_000 {
            let next = self.engines.iter().filter_map(Engine::poll_timeout).min();
            let Some(next) = next.filter(|next| *next <= target) else { break };
            self.now = self.now.max(next);
            self.firing_at = Some(self.now);
            let now = self.now;
            for engine in &mut self.engines {
                if engine.poll_timeout().is_some_and(|at| at <= now) {
                    engine.handle_timeout(now);
                }
            }
            self.settle();
        }
        self.firing_at = None;
        self.now = target;
    }

    /// Runs every engine and link until nothing moves.
    pub fn settle(&mut self) {
        loop {
            let mut progressed = false;
            for shard in 0..self.engines.len() {
                while let Some(action) = self.engines[shard].poll_action() {
                    progressed = true;
                    self.perform(shard, action);
                }
            }
            let pending: Vec<(u16, u16)> =
                self.links.iter().filter(|(_, q)| !q.is_empty()).map(|(k, _)| *k).collect();
            for (from, to) in pending {
                while let Some(message) =
                    self.links.get_mut(&(from, to)).and_then(VecDeque::pop_front)
                {
                    progressed = true;
                    let input = Input::FromShard { from: ShardId(from), message };
                    self.engines[usize::from(to)].handle_input(self.now, input);
                }
            }
            if !progressed {
                return;
            }
        }
    }

    fn perform(&mut self, shard: usize, action: Action) {
        match action {
            Action::Send { conn, bytes } => {
                let Some(name) = self.by_conn.get(&conn).cloned() else { return };
                let Some(client) = self.clients.get_mut(&name) else { return };
                if client.conn != conn || !client.open {
                    return;
                }
                client.inbuf.extend_from_slice(&bytes);
                if client.reading {
                    self.read(&name);
                }
            }
            Action::Close { conn } => {
                let Some(name) = self.by_conn.get(&conn).cloned() else { return };
                let Some(client) = self.clients.get_mut(&name) else { return };
                if client.conn != conn || !client.open {
                    return;
                }
                // What was sent before the close reaches the client first.
                client.reading = true;
                self.read(&name);
                if let Some(client) = self.clients.get_mut(&name) {
                    client.open = false;
                }
                self.note(Some(&name), format!("{name} closed"));
            }
            Action::Handoff { conn, to, bytes } => {
                let to = usize::from(to.0);
                if let Some(client) =
                    self.by_conn.get(&conn).and_then(|name| self.clients.get_mut(name))
                {
                    client.shard = to;
                }
                self.engines[to].handle_input(self.now, Input::Adopted { conn, bytes });
            }
            Action::ToShard { to, message } => {
                let from = u16::try_from(shard).unwrap_or(u16::MAX);
                self.links.entry((from, to.0)).or_default().push_back(message);
            }
            Action::Authenticate { conn, request } => {
                // MQTT-SN clients are known by client id (their connection numbers are the
                // engine's own).
                let name = self
                    .by_conn
                    .get(&conn)
                    .cloned()
                    .unwrap_or_else(|| request.client_id.to_string());
                let method = request.method.as_deref().map(str::as_bytes);
                let data = request.data.as_deref();
                self.note(
                    None,
                    format!(
                        "# authenticate {name} client_id={} method={} data={}",
                        format::quoted(request.client_id.as_bytes()),
                        method.map_or_else(|| "-".to_owned(), format::quoted),
                        data.map_or_else(|| "-".to_owned(), format::quoted),
                    ),
                );
                let decision = self
                    .auth
                    .get_mut(&name)
                    .and_then(VecDeque::pop_front)
                    .unwrap_or(AuthDecision::Accept);
                self.engines[shard].handle_input(self.now, Input::AuthDecision { conn, decision });
            }
            Action::SendDatagram { peer, bytes } => self.sn_receive(peer, bytes),
            Action::HandoffPeer { peer, to, bytes } => {
                let to = usize::from(to.0);
                let node = musqratt_engine::wireless_node(&bytes);
                self.peer_routes.insert((peer, node), to);
                self.engines[to].handle_input(self.now, Input::Datagram { peer, bytes });
            }
            Action::ReleasePeer { peer, node } => {
                // As `PeerTable::release`: a route to another shard (handed on since) stays.
                let key = (peer, node);
                if self.peer_routes.get(&key) == Some(&shard) {
                    self.peer_routes.remove(&key);
                }
            }
            Action::SnBroadcast { bytes } => {
                let text = match sn::decode(bytes) {
                    Ok(message) => format::sn(&message),
                    Err(error) => format!("undecodable: {error}"),
                };
                self.note(Some("~broadcast"), format!("broadcast <- {text}"));
            }
            Action::Event(event) => {
                let text = self.event_text(&event);
                self.note(None, text);
            }
            other => self.note(None, format!("# unknown action {other:?}")),
        }
    }

    /// A new UDP address for MQTT-SN client `name` (its first, or a changed source port),
    /// sending to shard `shard` until a shard takes it.
    pub fn sn_open(&mut self, name: &str, mut client: SnClient) {
        self.next_conn += 1;
        client.peer = PeerId(self.next_conn);
        client.shard %= self.engines.len();
        self.by_peer.insert(client.peer, name.to_owned());
        self.sn_clients.insert(name.to_owned(), client);
    }

    /// The MQTT-SN client of this name, if any.
    #[must_use]
    pub fn sn_client(&self, name: &str) -> Option<&SnClient> {
        self.sn_clients.get(name)
    }

    /// The MQTT-SN client sends a message (encapsulated when it is behind a forwarder).
    ///
    /// # Panics
    /// If the message cannot be encoded (a script error).
    pub fn sn_send(&mut self, name: &str, message: &sn::Message) {
        let Some(client) = self.sn_clients.get(name) else { return };
        let message = match &client.node {
            Some(node) => sn::Message::Encapsulated(sn::Encapsulated {
                radius: 0,
                wireless_node_id: node.clone(),
                message: Box::new(message.clone()),
            }),
            None => message.clone(),
        };
        let mut buf = BytesMut::new();
        sn::encode(&message, &mut buf).expect("the script's message encodes");
        self.sn_send_raw(name, buf.freeze());
    }

    /// The MQTT-SN client sends a raw datagram.
    pub fn sn_send_raw(&mut self, name: &str, bytes: Bytes) {
        let Some(client) = self.sn_clients.get(name) else { return };
        let node = musqratt_engine::wireless_node(&bytes);
        let shard = self.peer_routes.get(&(client.peer, node)).copied().unwrap_or(client.shard);
        let peer = client.peer;
        self.engines[shard].handle_input(self.now, Input::Datagram { peer, bytes });
        self.settle();
    }

    /// A datagram for an MQTT-SN client: one transcript line, and the automatic answers of
    /// the will exchange and of REGISTER.
    fn sn_receive(&mut self, peer: PeerId, bytes: Bytes) {
        let Some(name) = self.by_peer.get(&peer).cloned() else { return };
        let Some(client) = self.sn_clients.get(&name).cloned() else { return };
        if client.peer != peer {
            self.note(Some(&name), format!("{name} <- (old address) {}", sn_text(bytes)));
            return;
        }
        let message = match sn::decode(bytes.clone()) {
            Ok(message) => message,
            Err(error) => {
                self.note(Some(&name), format!("{name} <- undecodable: {error}"));
                return;
            }
        };
        let message = match (message, &client.node) {
            (sn::Message::Encapsulated(e), Some(node)) if e.wireless_node_id == *node => {
                self.note(Some(&name), format!("{name} <- via node {}", format::quoted(node)));
                *e.message
            }
            (message, _) => message,
        };
        self.note(Some(&name), format!("{name} <- {}", format::sn(&message)));
        let reply = match (&message, &client.will) {
            (sn::Message::WillTopicReq, Some((topic, _))) => {
                Some(sn::Message::WillTopic(Some(topic.clone())))
            }
            (sn::Message::WillMsgReq, Some((_, payload))) => {
                Some(sn::Message::WillMsg(payload.clone()))
            }
            (sn::Message::Register(register), _) if client.auto_regack => {
                Some(sn::Message::RegAck(sn::RegAck {
                    topic_id: register.topic_id,
                    msg_id: register.msg_id,
                    return_code: sn::ReturnCode::Accepted,
                }))
            }
            _ => None,
        };
        if let Some(reply) = reply {
            self.note(Some(&name), format!("{name} -> {}", format::sn(&reply)));
            let mut buf = BytesMut::new();
            let wrapped = match &client.node {
                Some(node) => sn::Message::Encapsulated(sn::Encapsulated {
                    radius: 0,
                    wireless_node_id: node.clone(),
                    message: Box::new(reply),
                }),
                None => reply,
            };
            if sn::encode(&wrapped, &mut buf).is_ok() {
                let bytes = buf.freeze();
                let node = musqratt_engine::wireless_node(&bytes);
                let shard = self.peer_routes.get(&(peer, node)).copied().unwrap_or(client.shard);
                self.engines[shard].handle_input(self.now, Input::Datagram { peer, bytes });
            }
        }
    }

    /// Decodes what a reading client has received and reports it written.
    fn read(&mut self, name: &str) {
        let Some(client) = self.clients.get_mut(name) else { return };
        if !client.reading {
            return;
        }
        let mut packets = Vec::new();
        let mut error = None;
        loop {
            let before = client.inbuf.len();
            match client.decoder.decode(&mut client.inbuf) {
                Ok(Some(packet)) => {
                    client.unreported += before - client.inbuf.len();
                    packets.push(packet);
                }
                Ok(None) => break,
                Err(e) => {
                    client.unreported += client.inbuf.len();
                    client.inbuf.clear();
                    error = Some(e);
                    break;
                }
            }
        }
        let version = client.version;
        let (conn, shard, written) = (client.conn, client.shard, client.unreported);
        client.unreported = 0;
        for mut packet in packets {
            self.normalize(&mut packet);
            let text = format!("{name} <- {}", format::packet(version, &packet));
            self.note(Some(name), text);
        }
        if let Some(error) = error {
            self.note(Some(name), format!("{name} <- undecodable: {error}"));
        }
        if written > 0 && self.clients.get(name).is_some_and(|c| c.open) {
            self.engines[shard].handle_input(self.now, Input::Written { conn, bytes: written });
        }
    }

    /// Replaces an assigned client identifier with a placeholder (see `assigned`).
    fn normalize(&mut self, packet: &mut Packet) {
        if let Packet::ConnAck(connack) = packet
            && let Some(id) = connack.properties.assigned_client_identifier.take()
        {
            let next = format!("<assigned-{}>", self.assigned.len() + 1);
            let shown = self.assigned.entry(id.to_string()).or_insert(next).clone();
            connack.properties.assigned_client_identifier = Some(shown.into());
        }
    }

    fn event_text(&mut self, event: &Event) -> String {
        let name = |conn: &ConnectionId| {
            self.by_conn.get(conn).cloned().unwrap_or_else(|| format!("conn{}", conn.0))
        };
        let shown = |id: &str| self.assigned.get(id).cloned().unwrap_or_else(|| id.to_owned());
        match event {
            Event::Connected { conn, client_id, session_present } => format!(
                "# event {} connected client_id={} session_present={session_present}",
                name(conn),
                format::quoted(shown(client_id).as_bytes())
            ),
            Event::Disconnected { conn, reason } => {
                format!("# event {} disconnected reason={}", name(conn), format::reason(*reason))
            }
            Event::MessageDropped { client_id, reason } => format!(
                "# event message dropped for client_id={} reason={reason:?}",
                format::quoted(shown(client_id).as_bytes())
            ),
            other => format!("# event {other:?}"),
        }
    }

    fn note(&mut self, client: Option<&str>, text: String) {
        self.lines.push(Line { client: client.map(str::to_owned), at: self.firing_at, text });
    }
}

fn sn_text(bytes: Bytes) -> String {
    match sn::decode(bytes) {
        Ok(message) => format::sn(&message),
        Err(error) => format!("undecodable: {error}"),
    }
}
