//! Sessions (MQTT 5.0 §4.1): the state that outlives a network connection.

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::sync::Arc;

use bytes::Bytes;
use musqratt_proto::bytestring::ByteString;
use musqratt_proto::mqtt::{PublishProperties, SubscriptionIds, SubscriptionOptions};
use musqratt_proto::{PacketId, QoS};

use crate::acl::SessionAcl;
use crate::ids::{ConnectionId, SessionId};
use crate::time::Instant;

/// An application message as the broker holds it, shared by every queue it sits in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Message {
    pub(crate) topic: ByteString,
    pub(crate) payload: Bytes,
    pub(crate) qos: QoS,
    pub(crate) retain: bool,
    /// The publisher's properties, without Topic Alias and Subscription Identifiers, which
    /// belong to one hop (§3.3.2.3.4, §3.3.2.3.8).
    pub(crate) properties: PublishProperties,
    /// When the Message Expiry Interval runs out (§3.3.2.3.3).
    pub(crate) expires_at: Option<Instant>,
    /// The publishing session, for No Local (§3.8.3.1).
    pub(crate) publisher: Option<SessionId>,
    /// The PUBLISH as received up to its payload (fixed header, topic, packet id,
    /// properties), a view into the buffer it was read into; empty when it was not received as
    /// an MQTT PUBLISH. A delivery whose header encodes to the same bytes sends this instead.
    pub(crate) wire_header: Bytes,
    /// When its PUBLISH was handed to the engine, for the in-broker latency histogram
    /// ([`crate::Metrics::latency`]); `None` for messages the broker made (wills, restored,
    /// `$SYS`), whose delay is not the broker's.
    pub(crate) received_at: Option<Instant>,
}

impl Message {
    pub(crate) fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// One message on its way to one session: the QoS and flags of this delivery. What is kept
/// (queued, in flight) holds the shared message; on the way out it may be a message that is
/// shared only once something has to keep it (`crate::deliver::state::Routed`).
#[derive(Debug, Clone)]
pub(crate) struct Delivery<M = Arc<Message>> {
    pub(crate) message: M,
    pub(crate) qos: QoS,
    pub(crate) retain: bool,
    pub(crate) subscription_ids: SubscriptionIds,
    /// Its number in the store ([`crate::Record::Queued`]); 0 when it is not stored.
    pub(crate) stored: u64,
}

/// An outbound QoS 1 or 2 delivery not yet completed (§4.3.2, §4.3.3).
#[derive(Debug, Clone)]
pub(crate) enum Inflight {
    /// PUBLISH sent, waiting for PUBACK or PUBREC.
    Published(Delivery),
    /// PUBREC received and PUBREL sent, waiting for PUBCOMP. On resume the PUBREL is resent,
    /// not the PUBLISH (MQTT-4.3.3-?; §4.4). Keeps the delivery's number in the store
    /// ([`Delivery::stored`]), forgotten at PUBCOMP.
    Released(u64),
}

impl Inflight {
    /// The delivery's number in the store; 0 when it is not stored.
    pub(crate) fn stored(&self) -> u64 {
        match self {
            Inflight::Published(delivery) => delivery.stored,
            Inflight::Released(stored) => *stored,
        }
    }
}

/// A subscription of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Subscription {
    pub(crate) options: SubscriptionOptions,
    pub(crate) id: Option<u32>,
}

/// A will waiting for its delay (§3.1.3.2.2) after its connection ended.
#[derive(Debug, Clone)]
pub(crate) struct PendingWill {
    pub(crate) message: Arc<Message>,
    pub(crate) at: Instant,
}

/// The part of a durable session's queue in the store only, after what it holds in memory
/// (`crate::store_queue`): how many messages (at least one when not 0: after a restart the
/// count is not known and is 1 until read), and whether a [`crate::Action::LoadQueue`] is out.
/// One u32, the flag in its top bit, so that it fits in the session's padding: every session
/// pays for it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tail(u32);

impl Tail {
    const LOADING: u32 = 1 << 31;

    /// Messages in the store only.
    pub(crate) fn count(self) -> u32 {
        self.0 & !Self::LOADING
    }

    pub(crate) fn is_empty(self) -> bool {
        self.count() == 0
    }

    pub(crate) fn set_count(&mut self, count: u32) {
        self.0 = (self.0 & Self::LOADING) | count.min(!Self::LOADING);
    }

    pub(crate) fn loading(self) -> bool {
        self.0 & Self::LOADING != 0
    }

    pub(crate) fn set_loading(&mut self, loading: bool) {
        self.0 = match loading {
            true => self.0 | Self::LOADING,
            false => self.0 & !Self::LOADING,
        };
    }
}

/// A session: subscriptions and undelivered messages of one client identifier.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) client_id: ByteString,
    pub(crate) conn: Option<ConnectionId>,
    /// Session Expiry Interval in seconds; 0 ends the session with its connection.
    pub(crate) expiry_interval: u32,
    /// When a disconnected session ends; while connected, when the credentials the client
    /// connected with expire, if they do (`AuthDecision::AcceptFor`). One field for both: a
    /// session is either connected or not, and every session pays for this field.
    pub(crate) expires_at: Option<Instant>,
    pub(crate) subscriptions: BTreeMap<ByteString, Subscription>,
    pub(crate) next_packet_id: PacketId,
    /// Outbound QoS 1/2 deliveries by packet id, with their send order for resending in the
    /// original order (MQTT-4.6.0-1).
    pub(crate) inflight: BTreeMap<PacketId, (u64, Inflight)>,
    pub(crate) inflight_seq: u64,
    /// Deliveries waiting for the connection, for inflight room or for the socket to drain.
    pub(crate) queue: VecDeque<Delivery>,
    pub(crate) queued_bytes: usize,
    /// Inbound QoS 2 packet ids delivered onward and waiting for PUBREL (Method B, §4.3.3).
    pub(crate) inbound_qos2: BTreeSet<PacketId>,
    pub(crate) will: Option<PendingWill>,
    /// What the client may publish, subscribe to and receive; `None`: everything
    /// (`AuthDecision::Accept`, or no authentication).
    pub(crate) acl: Option<Box<SessionAcl>>,
    /// With persistence on: whether the session has a record in the store. A bool, which
    /// sits in padding: every session pays for what is added here.
    pub(crate) stored: bool,
    /// With persistence on: whether the store holds a will of this session
    /// (`crate::store_will`). In padding too.
    pub(crate) will_stored: bool,
    /// With persistence: the part of its queue in the store only (`crate::store_queue`).
    pub(crate) tail: Tail,
}

impl Session {
    pub(crate) fn new(client_id: ByteString) -> Self {
        Self {
            client_id,
            conn: None,
            expiry_interval: 0,
            expires_at: None,
            subscriptions: BTreeMap::new(),
            next_packet_id: PacketId::MIN,
            inflight: BTreeMap::new(),
            inflight_seq: 0,
            queue: VecDeque::new(),
            queued_bytes: 0,
            inbound_qos2: BTreeSet::new(),
            will: None,
            acl: None,
            stored: false,
            will_stored: false,
            tail: Tail::default(),
        }
    }

    /// A packet id not used by an inflight delivery (MQTT-2.2.1-3); the caller has checked
    /// that fewer than 65,535 are in flight.
    pub(crate) fn allocate_packet_id(&mut self) -> PacketId {
        loop {
            let id = self.next_packet_id;
            self.next_packet_id = id.next();
            if !self.inflight.contains_key(&id) {
                return id;
            }
        }
    }

    pub(crate) fn add_inflight(&mut self, id: PacketId, inflight: Inflight) {
        self.inflight_seq += 1;
        self.inflight.insert(id, (self.inflight_seq, inflight));
    }

    /// Drops queued deliveries whose message has expired; returns how many.
    pub(crate) fn remove_expired(&mut self, now: Instant) -> usize {
        let before = self.queue.len();
        self.queue.retain(|delivery| !delivery.message.is_expired(now));
        self.queued_bytes = self.queue.iter().map(|d| d.message.payload.len()).sum();
        before - self.queue.len()
    }

    /// Removes a queued delivery from the front, keeping the byte count.
    /// The highest number of a stored message this session holds in memory (queued or in
    /// flight), 0 if none: the part of its queue in the store comes after it. Messages below it
    /// that are not in memory were acknowledged or dropped, so left the store (not kept as a
    /// field: every session would pay 8 bytes for what only a session with a tail needs).
    pub(crate) fn last_stored_in_ram(&self) -> u64 {
        let queued = self.queue.iter().map(|d| d.stored).max().unwrap_or(0);
        let in_flight = self.inflight.values().map(|(_, i)| i.stored()).max().unwrap_or(0);
        queued.max(in_flight)
    }

    pub(crate) fn pop_queued(&mut self) -> Option<Delivery> {
        let delivery = self.queue.pop_front()?;
        self.queued_bytes -= delivery.message.payload.len();
        Some(delivery)
    }
}
