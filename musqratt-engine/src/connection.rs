//! A network connection's protocol state: what lives and dies with the socket.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;

use bytes::BytesMut;
use musqratt_proto::ProtocolVersion;
use musqratt_proto::bytestring::ByteString;
use musqratt_proto::mqtt::{Connect, Decoder};

use crate::ids::SessionId;
use crate::session::Message;
use crate::time::Instant;
use alloc::sync::Arc;

/// Where a connection is in its life.
#[derive(Debug)]
pub(crate) enum Phase {
    /// Accepted; CONNECT has not arrived.
    AwaitingConnect,
    /// CONNECT arrived and the runtime is deciding (§4.12 when AUTH steps are exchanged).
    Authenticating(Box<Connect>),
    /// CONNACK sent: packets flow. What the operator is shown of the client
    /// ([`crate::Engine::clients`]) is boxed: one pointer, in the space `Authenticating`
    /// already takes, so a connection does not grow.
    Connected(Box<Connected>),
}

/// What a connected client presented, kept for the operator (`GET /api/v1/clients`).
#[derive(Debug)]
pub(crate) struct Connected {
    pub(crate) protocol: ProtocolVersion,
    pub(crate) username: Option<ByteString>,
    pub(crate) since: Instant,
}

#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) phase: Phase,
    pub(crate) decoder: Decoder,
    /// A partial packet waiting for more bytes.
    pub(crate) read_buf: BytesMut,
    pub(crate) session: Option<SessionId>,
    /// Keep Alive in effect, in seconds (the server's when it imposes one).
    pub(crate) keep_alive: u16,
    /// When the connection is closed for silence: 1.5 × Keep Alive after the last packet
    /// (MQTT-3.1.2-22 of 5.0). Updated per packet; the timer checks it when it fires.
    /// Before CONNECT is accepted: when the connect timer fires, so that accepting CONNECT (or
    /// handing the connection to another shard) can disarm it. Left armed, each connection's
    /// connect timer stayed in the timer set for `connect_timeout` (10 s) after it connected:
    /// about 80 bytes per freshly connected idle connection.
    pub(crate) deadline: Option<Instant>,
    /// The client's Receive Maximum: outbound QoS 1/2 deliveries in flight at most (§3.1.2.11.3).
    pub(crate) client_receive_maximum: u16,
    /// The client's Maximum Packet Size (§3.1.2.11.4).
    pub(crate) client_max_packet_size: u32,
    /// Topic aliases the client set towards the broker (§3.3.2.3.4).
    pub(crate) inbound_aliases: InboundAliases,
    /// Topic aliases the broker set towards the client.
    pub(crate) outbound_aliases: OutboundAliases,
    /// The will of this connection (§3.1.2.5), dropped on a normal DISCONNECT.
    pub(crate) will: Option<(Arc<Message>, u32)>,
    /// Bytes handed to the runtime and not yet reported written.
    pub(crate) unwritten: usize,
    /// Whether the client asked for reason strings and user properties on errors (§3.1.2.11.7).
    pub(crate) request_problem_information: bool,
    /// Session Expiry Interval of the CONNECT, to refuse a DISCONNECT raising it from 0
    /// (MQTT-3.14.2-2).
    pub(crate) connect_session_expiry: u32,
    /// The authentication method of an enhanced authentication in progress. Boxed: 8 bytes
    /// instead of 32 in every connection, for a 5.0 feature few clients use.
    pub(crate) auth_method: Option<Box<ByteString>>,
    /// MQTT-SN: deliveries wait in the session queue (the client is asleep, or a REGISTER
    /// awaits its REGACK). Always false for MQTT.
    pub(crate) held: bool,
    /// MQTT-SN state; `None` for MQTT over a stream.
    pub(crate) sn: Option<Box<crate::sn::state::SnConn>>,
}

impl Connection {
    pub(crate) fn new(max_packet_size: u32) -> Self {
        Self {
            phase: Phase::AwaitingConnect,
            decoder: Decoder::new(max_packet_size),
            read_buf: BytesMut::new(),
            session: None,
            keep_alive: 0,
            deadline: None,
            client_receive_maximum: u16::MAX,
            client_max_packet_size: u32::MAX,
            inbound_aliases: InboundAliases::default(),
            outbound_aliases: OutboundAliases::new(0),
            will: None,
            unwritten: 0,
            request_problem_information: true,
            connect_session_expiry: 0,
            auth_method: None,
            held: false,
            sn: None,
        }
    }

    /// The connect timer's deadline while CONNECT has not been accepted, taken (see `deadline`).
    pub(crate) fn take_connect_deadline(&mut self) -> Option<Instant> {
        if matches!(self.phase, Phase::Connected(_)) { None } else { self.deadline.take() }
    }

    /// The version of the connection; 3.1.1 until CONNECT has fixed it.
    pub(crate) fn version(&self) -> ProtocolVersion {
        self.decoder.version().unwrap_or(ProtocolVersion::V3_1_1)
    }
}

/// The aliases a client set towards the broker (§3.3.2.3.4): a map allocated with the first
/// alias. An empty `BTreeMap` allocates nothing but is 24 bytes in every connection; this is 8.
#[derive(Debug, Default)]
// The box is the point: 8 bytes in every connection, the map's 24 only in those with aliases.
#[allow(clippy::box_collection)]
pub(crate) struct InboundAliases(Option<Box<BTreeMap<u16, ByteString>>>);

impl InboundAliases {
    pub(crate) fn get(&self, alias: &u16) -> Option<&ByteString> {
        self.0.as_ref()?.get(alias)
    }

    pub(crate) fn insert(&mut self, alias: u16, topic: ByteString) {
        self.0.get_or_insert_default().insert(alias, topic);
    }
}

/// The aliases the broker assigns to topics it sends to one client, within the client's Topic
/// Alias Maximum (§3.3.2.3.4), replacing the least recently used when full. Without a maximum
/// (every MQTT 3.1.1 client, most 5.0 ones) there is no table: 8 bytes in the connection
/// instead of 64.
#[derive(Debug)]
pub(crate) struct OutboundAliases(Option<Box<AliasTable>>);

#[derive(Debug)]
struct AliasTable {
    maximum: u16,
    by_topic: BTreeMap<ByteString, (u16, u64)>,
    by_use: BTreeMap<u64, ByteString>,
    clock: u64,
}

/// How a PUBLISH should name its topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AliasUse {
    /// No alias: topic in full.
    None,
    /// A new alias: send the topic and the alias, which sets it (§3.3.2.3.4).
    Set(u16),
    /// A known alias: send an empty topic and the alias.
    Reuse(u16),
}

impl OutboundAliases {
    pub(crate) fn new(maximum: u16) -> Self {
        Self((maximum > 0).then(|| {
            Box::new(AliasTable {
                maximum,
                by_topic: BTreeMap::new(),
                by_use: BTreeMap::new(),
                clock: 0,
            })
        }))
    }

    /// Picks how to name `topic` in the next PUBLISH, updating recency.
    pub(crate) fn assign(&mut self, topic: &ByteString) -> AliasUse {
        match &mut self.0 {
            Some(table) => table.assign(topic),
            None => AliasUse::None,
        }
    }
}

impl AliasTable {
    fn assign(&mut self, topic: &ByteString) -> AliasUse {
        self.clock += 1;
        if let Some((alias, used)) = self.by_topic.get_mut(topic) {
            self.by_use.remove(used);
            *used = self.clock;
            self.by_use.insert(self.clock, topic.clone());
            return AliasUse::Reuse(*alias);
        }
        let alias = if self.by_topic.len() < usize::from(self.maximum) {
            self.by_topic.len() as u16 + 1
        } else {
            let Some((_, oldest)) = self.by_use.pop_first() else { return AliasUse::None };
            self.by_topic.remove(&oldest).map_or(1, |(alias, _)| alias)
        };
        self.by_topic.insert(topic.clone(), (alias, self.clock));
        self.by_use.insert(self.clock, topic.clone());
        AliasUse::Set(alias)
    }
}

#[cfg(test)]
mod tests {
    use super::Connection;
    use crate::session::Session;

    /// Every connection, idle or not, pays for these (boxed, in the engine's maps): the 1 KB
    /// per idle connection target of issue 5 leaves no room for state an idle MQTT 3.1.1 client
    /// never uses.
    #[test]
    fn per_connection_state_stays_small() {
        extern crate std;
        std::println!(
            "Connection {} B, Session {} B",
            size_of::<Connection>(),
            size_of::<Session>()
        );
        assert!(size_of::<Connection>() <= 160, "Connection: {}", size_of::<Connection>());
        // 208 until issue 14: its ACL pointer (8 B) is what authorization costs each session.
        // 216 until issue 16's bounded queues: the count of a queue's part in the store and
        // its loading flag (`session::Tail`, 4 B) did not fit in the padding left.
        assert!(size_of::<Session>() <= 224, "Session: {}", size_of::<Session>());
    }
}
