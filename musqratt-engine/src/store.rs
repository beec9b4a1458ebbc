//! What the engine asks a runtime to keep across a restart ([`Record`]), and what it is
//! restored from. Plain data: the runtime's store chooses the bytes (docs/PERSISTENCE.md,
//! docs/adr/0017-persistence-store.md).
//!
//! The engine never does I/O (docs/DESIGN.md, "The engine contract"): with
//! [`crate::Config::persistence`] on, every change to durable state comes out as an
//! [`crate::Action::Store`] in the same step as the packets it concerns, and
//! [`crate::Engine::restore`] takes the records back at start.

use alloc::sync::Arc;
use alloc::vec::Vec;

use bytes::Bytes;
use musqratt_proto::bytestring::ByteString;
use musqratt_proto::mqtt::{PublishProperties, SubscriptionIds, SubscriptionOptions};
use musqratt_proto::{PacketId, QoS};

use crate::session::Message;
use crate::time::Instant;

/// One change to what must survive a restart, in the order the engine made it. A store applies
/// the records of one step together, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Record {
    /// The retained message of a topic (§3.3.1.3), replacing the previous one; `None` removes
    /// it (a retained PUBLISH with an empty payload, MQTT-3.3.1-6).
    Retained {
        /// The topic.
        topic: ByteString,
        /// The message, or `None` to remove it.
        message: Option<StoredMessage>,
    },
    /// A session with a Session Expiry Interval above 0 (§3.1.2.11.2; 3.1.1: Clean Session 0):
    /// its subscriptions as they are now. Replaces the previous record of this client.
    Session(StoredSession),
    /// The session of this client ended (expired, cleaned, its expiry set to 0): forget it and
    /// every message kept for it.
    SessionEnded {
        /// The client identifier.
        client_id: ByteString,
    },
    /// A QoS 1 or 2 message for a durable session, queued or in flight.
    Queued(StoredDelivery),
    /// The message `seq` of this client's session is done with (acknowledged, or dropped):
    /// forget it.
    Acknowledged {
        /// The client identifier.
        client_id: ByteString,
        /// [`StoredDelivery::seq`] of the message.
        seq: u64,
    },
    /// An inbound QoS 2 packet id of this client's durable session now awaits PUBREL: the
    /// message went onward at PUBLISH (Method B of §4.3.3), so a PUBLISH resent with DUP
    /// under this id must be acknowledged again and not delivered twice, a restart between
    /// PUBREC and PUBREL included. Emitted in the step of the PUBREC it precedes.
    AwaitingRelease {
        /// The client identifier.
        client_id: ByteString,
        /// The packet id.
        packet_id: PacketId,
    },
    /// The PUBREL for [`Record::AwaitingRelease`] came (§4.3.3): forget the id.
    Released {
        /// The client identifier.
        client_id: ByteString,
        /// The packet id.
        packet_id: PacketId,
    },
    /// A QoS 2 message of a durable session ([`Record::Queued`] `seq`) is in flight to its
    /// client under `packet_id`: PUBLISH sent (`released` false), or PUBREC received and
    /// PUBREL sent (`released` true). After a restart the broker resends the PUBLISH with DUP
    /// under the same id, or the PUBREL, not a new PUBLISH (§4.3.3, §4.4, MQTT-4.4.0-1), so
    /// the subscriber gets the message exactly once. Forgotten with the message
    /// ([`Record::Acknowledged`] at PUBCOMP, [`Record::SessionEnded`]).
    OutboundQos2 {
        /// The client identifier.
        client_id: ByteString,
        /// [`StoredDelivery::seq`] of the message.
        seq: u64,
        /// The packet id the client saw.
        packet_id: PacketId,
        /// PUBREC received, PUBREL sent.
        released: bool,
    },
    /// The will of a durable session's client (§3.1.2.5, §3.1.3.2), as it is now: held while
    /// the client is connected, or pending after an abnormal end of its connection until its
    /// Will Delay Interval passes. Replaces the previous one of this client.
    Will(StoredWill),
    /// At restore only: this client's queue goes on in the store after the messages restored
    /// ([`Record::Queued`]), up to `last_seq`; read when the queue drains
    /// ([`crate::Action::LoadQueue`]). The store reads only a bounded head of each queue at
    /// start.
    QueueTail {
        /// The client identifier.
        client_id: ByteString,
        /// The highest number of its messages in the store.
        last_seq: u64,
    },
    /// The durable session's will is gone (published, discarded by a normal DISCONNECT, or
    /// replaced by a CONNECT without one).
    WillRemoved {
        /// The client identifier.
        client_id: ByteString,
    },
}

/// A will of a durable session (§3.1.3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoredWill {
    /// The client identifier.
    pub client_id: ByteString,
    /// The will message ([`StoredMessage::expires_at`] is `None`: a will's expiry counts from
    /// its publication, [`StoredWill::expiry_interval`]).
    pub message: StoredMessage,
    /// Its Message Expiry Interval in seconds (§3.1.3.2.4), counted from publication.
    pub expiry_interval: Option<u32>,
    /// Will Delay Interval in seconds (§3.1.3.2.2).
    pub delay: u32,
    /// When it goes out, in the engine's time, if its client's connection had ended; `None`
    /// while the client was connected. Kept in wall-clock time by the store, so the time
    /// the broker was down counts.
    pub due_at: Option<Instant>,
}

impl StoredWill {
    /// A will to restore.
    #[must_use]
    pub fn new(
        client_id: ByteString,
        message: StoredMessage,
        expiry_interval: Option<u32>,
        delay: u32,
        due_at: Option<Instant>,
    ) -> Self {
        Self { client_id, message, expiry_interval, delay, due_at }
    }
}

/// An application message as stored: shared with the engine's queues, so emitting a record
/// copies nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage(pub(crate) Arc<Message>);

impl StoredMessage {
    /// A message to restore. `expires_at` is in the engine's time (the runtime converts from
    /// the wall clock it stored).
    #[must_use]
    pub fn new(
        topic: ByteString,
        payload: Bytes,
        qos: QoS,
        retain: bool,
        properties: PublishProperties,
        expires_at: Option<Instant>,
    ) -> Self {
        let mut properties = properties;
        // Not part of a stored message: they belong to one hop (§3.3.2.3.4, §3.3.2.3.8), and
        // the expiry is `expires_at` (§3.3.2.3.3).
        properties.topic_alias = None;
        properties.subscription_identifiers = SubscriptionIds::new();
        properties.message_expiry_interval = None;
        Self(Arc::new(Message {
            topic,
            payload,
            qos,
            retain,
            properties,
            expires_at,
            publisher: None,
            wire_header: Bytes::new(),
            received_at: None,
        }))
    }

    /// The topic name.
    #[must_use]
    pub fn topic(&self) -> &ByteString {
        &self.0.topic
    }

    /// The payload.
    #[must_use]
    pub fn payload(&self) -> &Bytes {
        &self.0.payload
    }

    /// The QoS it was published with.
    #[must_use]
    pub fn qos(&self) -> QoS {
        self.0.qos
    }

    /// The RETAIN flag it was published with.
    #[must_use]
    pub fn retain(&self) -> bool {
        self.0.retain
    }

    /// The publisher's properties, without Topic Alias, Subscription Identifiers and Message
    /// Expiry Interval (the expiry is [`StoredMessage::expires_at`]).
    #[must_use]
    pub fn properties(&self) -> PublishProperties {
        let mut properties = self.0.properties.clone();
        properties.message_expiry_interval = None;
        properties
    }

    /// When it expires, in the engine's time (§3.3.2.3.3).
    #[must_use]
    pub fn expires_at(&self) -> Option<Instant> {
        self.0.expires_at
    }
}

/// A subscription of a stored session (§3.8.3.1 options, §3.8.2.1.2 identifier).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoredSubscription {
    /// The Topic Filter, `$share/...` included.
    pub filter: ByteString,
    /// Its options as granted.
    pub options: SubscriptionOptions,
    /// Its Subscription Identifier.
    pub id: Option<u32>,
}

impl StoredSubscription {
    /// A subscription to restore.
    #[must_use]
    pub fn new(filter: ByteString, options: SubscriptionOptions, id: Option<u32>) -> Self {
        Self { filter, options, id }
    }
}

/// A durable session: what a client that reconnects with Clean Start 0 finds again.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoredSession {
    /// The client identifier.
    pub client_id: ByteString,
    /// Session Expiry Interval in seconds (above 0).
    pub expiry_interval: u32,
    /// Its subscriptions, in filter order.
    pub subscriptions: Vec<StoredSubscription>,
    /// When it expires, in the engine's time, if it was disconnected when this record was
    /// made; `None` while connected (or never expiring, `u32::MAX`). The expiry runs from the
    /// disconnection (§3.1.2.11.2), so the time the broker was down counts: the store keeps
    /// it in wall-clock time, like a message's expiry.
    pub expires_at: Option<Instant>,
}

impl StoredSession {
    /// A session to restore.
    #[must_use]
    pub fn new(
        client_id: ByteString,
        expiry_interval: u32,
        subscriptions: Vec<StoredSubscription>,
    ) -> Self {
        Self { client_id, expiry_interval, subscriptions, expires_at: None }
    }

    /// The same session, disconnected and expiring at `expires_at` (engine time).
    #[must_use]
    pub fn expiring_at(mut self, expires_at: Option<Instant>) -> Self {
        self.expires_at = expires_at;
        self
    }
}

/// A QoS 1 or 2 message on its way to a durable session.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoredDelivery {
    /// The session's client identifier.
    pub client_id: ByteString,
    /// Its number within the session, increasing in delivery order; restored in this order.
    pub seq: u64,
    /// The QoS of this delivery (the lower of the message's and the subscription's).
    pub qos: QoS,
    /// The RETAIN flag of this delivery (MQTT-3.3.1-12, -13).
    pub retain: bool,
    /// The Subscription Identifiers of the subscriptions it matched (§3.3.4).
    pub subscription_ids: SubscriptionIds,
    /// The message.
    pub message: StoredMessage,
}

impl StoredDelivery {
    /// A delivery to restore.
    #[must_use]
    pub fn new(
        client_id: ByteString,
        seq: u64,
        qos: QoS,
        retain: bool,
        subscription_ids: SubscriptionIds,
        message: StoredMessage,
    ) -> Self {
        Self { client_id, seq, qos, retain, subscription_ids, message }
    }
}

/// Why [`crate::Engine::restore`] refused a record. The engine is unchanged by a refused
/// record; the runtime reports it and goes on with the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RestoreError {
    /// A change, not state ([`Record::SessionEnded`], [`Record::Acknowledged`],
    /// [`Record::Released`], [`Record::WillRemoved`]): a store
    /// applies those, it does not hand them back.
    NotState,
    /// A [`Record::Queued`], [`Record::AwaitingRelease`], [`Record::OutboundQos2`] or
    /// [`Record::Will`] for a client this shard owns but
    /// has no restored session for.
    NoSession,
    /// A [`Record::Queued`] whose `seq` is not above the previous one of its session.
    OutOfOrder,
    /// A [`Record::Session`] with a Session Expiry Interval of 0, or a [`Record::Queued`] at
    /// QoS 0: neither is ever stored.
    Invalid,
    /// Restored after the engine took its first connection: a session could be in use.
    TooLate,
}

impl core::fmt::Display for RestoreError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::NotState => "a change record, not state",
            Self::NoSession => "a queued message of a session that was not restored",
            Self::OutOfOrder => "a queued message out of order",
            Self::Invalid => "a record the engine never stores",
            Self::TooLate => "restored after the first connection",
        })
    }
}

impl core::error::Error for RestoreError {}
