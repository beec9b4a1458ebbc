//! What goes into the engine ([`Input`]) and what comes out ([`Action`], [`Event`]).

use alloc::sync::Arc;

use bytes::{Bytes, BytesMut};
use musqratt_proto::ProtocolVersion;
use musqratt_proto::bytestring::ByteString;
use musqratt_proto::mqtt::ReasonCode;

use crate::acl::Acl;
use crate::ids::{ConnectionId, PeerId, ShardId};
pub use crate::shards::ShardMessage;
use crate::store::Record;

/// Something that happened outside the engine, handed in with the time by
/// [`crate::Engine::handle_input`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Input {
    /// The runtime accepted a network connection. The engine expects CONNECT within
    /// [`crate::Config::connect_timeout`].
    Accepted {
        /// The runtime's number for it.
        conn: ConnectionId,
    },
    /// Bytes arrived on a connection. The engine takes the buffer: complete packets are decoded
    /// from it in place (their payloads share its allocation) and a partial packet is kept for
    /// the next `Data`.
    Data {
        /// The connection.
        conn: ConnectionId,
        /// What was read.
        bytes: BytesMut,
    },
    /// The runtime wrote `bytes` bytes of what [`Action::Send`] handed it for `conn`. This is how
    /// the engine knows a slow reader from a fast one.
    Written {
        /// The connection.
        conn: ConnectionId,
        /// How many bytes left the runtime's hands.
        bytes: usize,
    },
    /// The connection is gone: the peer closed it, or a read or write failed. Unless the client
    /// sent DISCONNECT first, this is an abnormal close and its will is due.
    Closed {
        /// The connection.
        conn: ConnectionId,
    },
    /// A connection another shard handed over with [`Action::Handoff`]: the same as `Accepted`
    /// followed by `Data` with these bytes (its CONNECT and whatever followed it).
    Adopted {
        /// The connection, keeping its number.
        conn: ConnectionId,
        /// The bytes the other shard had read.
        bytes: BytesMut,
    },
    /// A message from another shard, delivered in the order that shard sent it (the links
    /// between shards are FIFO, which keeps MQTT's per-publisher ordering across shards).
    FromShard {
        /// The sender.
        from: ShardId,
        /// What it sent.
        message: ShardMessage,
    },
    /// The broker is stopping: every MQTT 5.0 client is sent DISCONNECT 0x8B Server shutting
    /// down (§3.14.2.1) and every connection is closed. Wills are not published: the clients
    /// did nothing wrong and their sessions end with the process.
    Shutdown,
    /// One MQTT-SN datagram from a UDP peer (docs/MQTT-SN.md, "Runtime contract"). A datagram
    /// whose peer (and, for a forwarder's encapsulated message, wireless node: see
    /// [`crate::wireless_node`]) was handed to a shard with [`Action::HandoffPeer`] goes to that
    /// shard until [`Action::ReleasePeer`]; any other goes to any shard the runtime likes (for
    /// instance always shard 0, or a hash of the address).
    Datagram {
        /// The sender.
        peer: PeerId,
        /// The datagram, exactly as received.
        bytes: Bytes,
    },
    /// The runtime's answer to [`Action::Authenticate`].
    AuthDecision {
        /// The connection that asked.
        conn: ConnectionId,
        /// The answer.
        decision: AuthDecision,
    },
}

/// The runtime's verdict on a CONNECT or an AUTH step (§4.12).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthDecision {
    /// Let the client in.
    Accept,
    /// Let the client in, allowed only what `Acl` allows: every PUBLISH, SUBSCRIBE and
    /// delivery of its session is checked against it (5.0: reason 0x87 Not authorized; 3.1.1:
    /// PUBLISH acknowledged and dropped, SUBACK 0x80), without a call out per message.
    AcceptWithAcl(Arc<Acl>),
    /// Let the client in for `valid_for` from the moment the engine takes this decision, with
    /// these rules (or none: [`AuthDecision::Accept`]'s freedom). Credentials that expire (a
    /// JWT's `exp`) must not outlive their expiry: when the time is up the engine closes the
    /// connection, telling a 5.0 client DISCONNECT 0xA0 Maximum connect time (§3.14.2.1: "the
    /// maximum connection time authorized for this connection has been exceeded"); 3.x has no
    /// way to say why and is just closed. Its will is then due, as after any close that is not a
    /// normal DISCONNECT (§3.1.2.5). A later re-authentication (§4.12.1) replaces the limit: with
    /// another `AcceptFor`, or lifts it with [`AuthDecision::Accept`] or
    /// [`AuthDecision::AcceptWithAcl`].
    ///
    /// A duration rather than an [`crate::Instant`]: whoever decides (another thread, a remote
    /// service) need not know the engine's epoch. The time the answer takes to reach the engine
    /// is added to the validity, microseconds in practice.
    AcceptFor {
        /// The client's rules; `None` for no restriction.
        acl: Option<Arc<Acl>>,
        /// How long it may stay connected.
        valid_for: core::time::Duration,
    },
    /// Refuse it with this CONNACK reason code (0x86 bad user name or password, 0x87 not
    /// authorized, 0x8C bad authentication method, ...).
    Refuse(ReasonCode),
    /// Enhanced authentication goes on: send AUTH 0x18 with this data and wait for the client's
    /// next AUTH.
    Continue(Bytes),
    /// Let the client in at the end of an enhanced authentication whose method has a last word
    /// for the client, such as SCRAM's server-final message carrying the ServerSignature that
    /// proves the server knew the credentials (RFC 5802 §3). §4.12 puts it in the CONNACK's
    /// Authentication Data, and §4.12.1 in the AUTH 0x00 that ends a re-authentication.
    AcceptWithData {
        /// What the client may do, as with [`AuthDecision::AcceptWithAcl`]; `None`: anything.
        acl: Option<Arc<Acl>>,
        /// The Authentication Data of that CONNACK or AUTH.
        data: Bytes,
    },
}

/// What the runtime is asked to check for [`Action::Authenticate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRequest {
    /// The Client Identifier of the CONNECT.
    pub client_id: ByteString,
    /// User Name, if any.
    pub username: Option<ByteString>,
    /// Password, if any.
    pub password: Option<Bytes>,
    /// Authentication Method (5.0 enhanced authentication), if any.
    pub method: Option<ByteString>,
    /// Authentication Data of this step, if any.
    pub data: Option<Bytes>,
    /// The MQTT version the client connected with (an HTTP service may answer per version).
    /// MQTT-SN clients count as 3.1.1, whose session rules they follow.
    pub protocol: ProtocolVersion,
    /// The common name of the client's TLS certificate, verified by the handshake. The engine
    /// has no TLS and always leaves it `None`: the runtime fills it in from its byte-stream
    /// layers before it asks the authenticator (runtime kit, `PeerIdentity::fill`).
    pub cert_cn: Option<ByteString>,
    /// `username` is `cert_cn`, put there by the runtime (the `identity_as_username` of a TLS
    /// listener, Mosquitto's `use_identity_as_username`): the certificate the handshake
    /// verified is the client's credential, so no password is checked, and the CONNECT's own
    /// User Name and Password are not used. Always `false` from the engine.
    pub username_verified: bool,
}

/// Something the runtime must do, taken from [`crate::Engine::poll_action`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Write these bytes to the connection, after whatever was handed before. A PUBLISH comes as
    /// two `Send`s, header then payload, so that the payload shared by every subscriber is never
    /// copied: write consecutive sends with one vectored write.
    Send {
        /// The connection.
        conn: ConnectionId,
        /// The bytes.
        bytes: Bytes,
    },
    /// Close the connection once everything sent before has been written. The engine has
    /// forgotten it: no `Closed` is needed (one is ignored).
    Close {
        /// The connection.
        conn: ConnectionId,
    },
    /// Move the connection to another shard (the owner of its client identifier, where its
    /// session lives) and give it these bytes there with [`Input::Adopted`]. This engine has
    /// forgotten it.
    Handoff {
        /// The connection.
        conn: ConnectionId,
        /// The shard that takes it.
        to: ShardId,
        /// Its CONNECT and the bytes read after it.
        bytes: BytesMut,
    },
    /// Deliver this to another shard with [`Input::FromShard`], after everything sent to that
    /// shard before.
    ToShard {
        /// The receiving shard.
        to: ShardId,
        /// The message.
        message: ShardMessage,
    },
    /// Decide whether this client may connect; answer with [`Input::AuthDecision`]. Only when
    /// [`crate::Config::authenticate`] is set.
    Authenticate {
        /// The connection that asks.
        conn: ConnectionId,
        /// What it presented.
        request: AuthRequest,
    },
    /// MQTT-SN: send this datagram to the peer (one message, or one forwarder encapsulation of
    /// one message, per datagram).
    SendDatagram {
        /// The peer.
        peer: PeerId,
        /// The whole datagram.
        bytes: Bytes,
    },
    /// MQTT-SN: the session of this peer's client lives on another shard. Deliver `bytes` (the
    /// datagram just received, a CONNECT) there as [`Input::Datagram`], and send every later
    /// datagram of this peer and wireless node ([`crate::wireless_node`] of `bytes`) there too,
    /// until that shard emits [`Action::ReleasePeer`].
    HandoffPeer {
        /// The peer.
        peer: PeerId,
        /// The shard that takes it.
        to: ShardId,
        /// The datagram to deliver there.
        bytes: Bytes,
    },
    /// MQTT-SN: this engine has forgotten the peer's connection (DISCONNECT, lost, taken over):
    /// its datagrams may go to any shard again. The UDP counterpart of [`Action::Close`].
    ReleasePeer {
        /// The peer.
        peer: PeerId,
        /// The wireless node behind a forwarder, empty for a direct client.
        node: Bytes,
    },
    /// MQTT-SN: broadcast this datagram (an ADVERTISE, §5.4.1) to the runtime's configured
    /// broadcast address(es). Emitted every [`crate::Config::sn_advertise_interval`] by shard 0.
    SnBroadcast {
        /// The datagram.
        bytes: Bytes,
    },
    /// Something worth logging or counting.
    Event(Event),
    /// Keep this change of durable state (only with [`crate::Config::persistence`]). Write
    /// every `Store` of a step, in order, before writing any [`Action::Send`] of that step to
    /// a socket: an acknowledgement (PUBACK, PUBREC) may come earlier in the same step than
    /// the record of the message it acknowledges, and must not reach the client before that
    /// record reached the operating system (docs/adr/0017-persistence-store.md).
    Store(Record),
    /// With persistence: read from the store, after the records of this step are written, up
    /// to `max` queued messages of this client's session whose numbers are above `after`, in
    /// order, and give them with [`crate::Engine::queue_loaded`]. Its queue in memory ran low
    /// and the rest of it is in the store only (`Config::max_ram_per_session`).
    LoadQueue {
        /// The client identifier.
        client_id: ByteString,
        /// The number ([`crate::StoredDelivery::seq`]) of the last message it holds.
        after: u64,
        /// How many to read at most.
        max: usize,
    },
}

/// What happened, for logs and metrics. Nothing here needs an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A client completed CONNECT.
    Connected {
        /// The connection.
        conn: ConnectionId,
        /// Its client identifier (assigned when it sent none).
        client_id: ByteString,
        /// Whether an existing session was resumed.
        session_present: bool,
    },
    /// A connection ended.
    Disconnected {
        /// The connection.
        conn: ConnectionId,
        /// Why: Normal disconnection when the client sent DISCONNECT, otherwise the reason the
        /// broker closed it or Unspecified error for a network close.
        reason: ReasonCode,
    },
    /// A message was not delivered to a session: its queue was full, it was larger than the
    /// client's Maximum Packet Size, or it was QoS 0 to a connection that does not read.
    MessageDropped {
        /// The client that missed it.
        client_id: ByteString,
        /// Why.
        reason: DropReason,
    },
}

/// Why a message was dropped ([`Event::MessageDropped`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// The session's queue reached [`crate::Config::max_queued_messages`] or
    /// [`crate::Config::max_queued_bytes`].
    QueueFull,
    /// The encoded PUBLISH exceeds the client's Maximum Packet Size (MQTT-3.1.2-25).
    TooLargeForClient,
    /// QoS 0 to a connection with more than [`crate::Config::max_unwritten_bytes`] unwritten.
    SlowReader,
    /// The topic backlog of a topic was full.
    BacklogFull,
}
