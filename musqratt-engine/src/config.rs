//! What an engine is configured with. Plain data: the runtime reads a file into it.

use alloc::collections::BTreeMap;
use alloc::string::String;
use core::time::Duration;

use musqratt_proto::QoS;

use crate::ids::ShardId;

/// The broker's limits, defaults and advertised capabilities (MQTT 5.0 §3.2.2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// The largest packet accepted from a client, fixed header included; advertised as Maximum
    /// Packet Size (§3.2.2.3.6). Default 1 MiB.
    pub max_packet_size: u32,
    /// QoS 1 and 2 publications a client may have unacknowledged towards the broker; advertised
    /// as Receive Maximum (§3.2.2.3.3); a client exceeding it is disconnected with 0x93.
    pub receive_maximum: u16,
    /// Topic aliases a client may use towards the broker (§3.2.2.3.8); 0 turns them off.
    pub topic_alias_maximum: u16,
    /// Highest QoS the broker accepts (§3.2.2.3.4).
    pub maximum_qos: QoS,
    /// Whether retained messages are supported (§3.2.2.3.5).
    pub retain_available: bool,
    /// Whether wildcard subscriptions are allowed (§3.2.2.3.11).
    pub wildcard_subscription_available: bool,
    /// Whether subscription identifiers are supported (§3.2.2.3.12).
    pub subscription_identifiers_available: bool,
    /// Whether shared subscriptions are supported (§3.2.2.3.13).
    pub shared_subscription_available: bool,
    /// Keep alive the broker imposes instead of the client's (§3.2.2.3.14); `None` keeps the
    /// client's.
    pub server_keep_alive: Option<u16>,
    /// The longest session expiry the broker grants, in seconds.
    pub max_session_expiry: u32,
    /// Session expiry, in seconds, for MQTT 3.x clients that connect with Clean Session 0 (they
    /// have no expiry of their own: their sessions would otherwise live forever).
    pub v3_session_expiry: u32,
    /// Messages kept per offline or congested session; beyond it new messages are dropped and an
    /// event reports each drop.
    pub max_queued_messages: usize,
    /// Payload bytes kept per session; beyond it new messages are dropped and reported.
    pub max_queued_bytes: usize,
    /// With persistence: queued messages of a durable session kept in memory; the rest of its
    /// queue (up to `max_queued_messages`) is in the store only and loaded as the queue
    /// drains ([`crate::Action::LoadQueue`]; docs/PERSISTENCE.md).
    pub max_ram_per_session: usize,
    /// Bytes handed to the runtime for a connection and not yet reported written beyond which
    /// QoS 0 messages to it are dropped and QoS 1/2 wait in the session queue (a slow reader
    /// cannot grow broker memory without bound).
    pub max_unwritten_bytes: usize,
    /// How long a new connection may take to send CONNECT.
    pub connect_timeout: Duration,
    /// When set, every MQTT 5.0 client is redirected here with CONNACK 0x9C Use another server
    /// and a Server Reference (§4.11); 3.x clients get "server unavailable".
    pub server_reference: Option<String>,
    /// Whether CONNECT and AUTH go to the runtime for a decision ([`crate::Action::Authenticate`]);
    /// otherwise every client is accepted.
    pub authenticate: bool,
    /// Whether MQTT 3.1 clients with a Client Identifier longer than 23 characters are refused
    /// with return code 2, as 3.1 §3.1 "Client Identifier" says. Off by default: Mosquitto and
    /// EMQX accept them, many old clients send them, and 3.1.1 dropped the rule
    /// (MQTT-3.1.3-5).
    pub strict_v31_client_id: bool,
    /// The topic backlog of the user's spec: off when `max_messages_per_topic` is 0.
    pub backlog: BacklogConfig,
    /// Seed for everything random (assigned client identifiers).
    pub seed: u64,
    /// This engine's shard.
    pub shard: ShardId,
    /// How many shards the broker runs.
    pub shard_count: u16,
    /// MQTT-SN predefined topic ids (§2.3, §6.7): the same for every client, by id. Ids are
    /// 1 to 65534 (0x0000 and 0xFFFF are reserved, §5.3.11); topics are topic names.
    pub sn_predefined_topics: BTreeMap<u16, String>,
    /// MQTT-SN GwId of this broker in ADVERTISE and GWINFO (§5.4.1, §5.4.3).
    pub sn_gateway_id: u8,
    /// MQTT-SN Tretry (§6.13): how long the broker waits for an acknowledgement before it
    /// retransmits REGISTER, PUBLISH (QoS 1/2) or PUBREL. Default 10 s.
    pub sn_retry_interval: Duration,
    /// MQTT-SN Nretry (§6.13): retransmissions before the client is considered lost (its will
    /// is published). Default 3.
    pub sn_max_retries: u8,
    /// MQTT-SN T_ADV (§6.1): when set, shard 0 emits [`crate::Action::SnBroadcast`] with an
    /// ADVERTISE this often. Off by default (the runtime then advertises nothing).
    pub sn_advertise_interval: Option<Duration>,
    /// MQTT-SN: topic ids registered per client (both directions); a client REGISTER beyond it
    /// gets REGACK "rejected: congestion" (§5.3.10).
    pub sn_max_registered_topics: usize,
    /// MQTT-SN: QoS 1/2 PUBLISH messages in flight to one client. Default 1: MQTT-SN clients
    /// handle one at a time (§6.13 describes one outstanding message).
    pub sn_max_inflight: u16,
    /// Whether the engine emits [`crate::Action::Store`] records of its durable state
    /// (retained messages, sessions with an expiry, their QoS 1/2 messages) for the runtime to
    /// write, and takes them back with [`crate::Engine::restore`]. Off by default: nothing is
    /// built or allocated for it (docs/PERSISTENCE.md).
    pub persistence: bool,
}

/// The topic backlog: messages published to a topic no subscription matches are kept for the
/// first subscriber (the user's product spec). Bounded per topic by count, bytes and message
/// expiry; a topic that holds nothing and has no subscriber is forgotten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct BacklogConfig {
    /// Messages kept per topic; 0 turns the backlog off (the default, which keeps the broker
    /// conformant to MQTT: a message without subscribers is dropped).
    pub max_messages_per_topic: usize,
    /// Payload bytes kept per topic.
    pub max_bytes_per_topic: usize,
}

impl BacklogConfig {
    /// A backlog keeping up to `messages` messages and `bytes` payload bytes per topic.
    #[must_use]
    pub const fn new(messages: usize, bytes: usize) -> Self {
        Self { max_messages_per_topic: messages, max_bytes_per_topic: bytes }
    }

    /// Whether the backlog is on.
    #[must_use]
    pub const fn enabled(&self) -> bool {
        self.max_messages_per_topic > 0 && self.max_bytes_per_topic > 0
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_packet_size: 1024 * 1024,
            receive_maximum: 1024,
            topic_alias_maximum: 64,
            maximum_qos: QoS::ExactlyOnce,
            retain_available: true,
            wildcard_subscription_available: true,
            subscription_identifiers_available: true,
            shared_subscription_available: true,
            server_keep_alive: None,
            max_session_expiry: u32::MAX,
            v3_session_expiry: u32::MAX,
            max_queued_messages: 1000,
            max_queued_bytes: 64 * 1024 * 1024,
            max_ram_per_session: 100,
            max_unwritten_bytes: 4 * 1024 * 1024,
            connect_timeout: Duration::from_secs(10),
            server_reference: None,
            authenticate: false,
            strict_v31_client_id: false,
            backlog: BacklogConfig::default(),
            seed: 0x6d75_7371_7261_7474,
            shard: ShardId(0),
            shard_count: 1,
            sn_predefined_topics: BTreeMap::new(),
            sn_gateway_id: 1,
            sn_retry_interval: Duration::from_secs(10),
            sn_max_retries: 3,
            sn_advertise_interval: None,
            sn_max_registered_topics: 256,
            sn_max_inflight: 1,
            persistence: false,
        }
    }
}
