//! The broker's own numbers: the snapshot a runtime reads ([`Engine::metrics`]) and the
//! messages the broker publishes itself into `$SYS` ([`Engine::publish_broker_message`];
//! docs/adr/0018-metrics.md, docs/OBSERVABILITY.md).

use bytes::Bytes;
use musqratt_proto::bytestring::ByteString;
use musqratt_proto::{ProtocolVersion, QoS};

use crate::connection::Phase;
use crate::deliver::state::Routed;
use crate::engine::Engine;
use crate::ids::{ConnectionId, PeerId};
use crate::metrics::Metrics;
use crate::session::Message;
use crate::time::Instant;

impl Engine {
    /// This shard's numbers now: the counters it keeps and the gauges read from its state
    /// (clients, retained messages, subscriptions, queues). `&self`, so a runtime reads them
    /// between steps without disturbing one; walking the sessions costs O(sessions), which is
    /// why it is meant for an operator's period (seconds), not for each message.
    #[must_use]
    pub fn metrics(&self) -> Metrics {
        let mut metrics = self.counters.metrics.clone();
        metrics.clients_total = self.sessions.len() as u64;
        metrics.retained = self.retained.len() as u64;
        let (mut connected, mut subscriptions, mut shared) = (0, 0, 0);
        let (mut queued, mut queued_bytes) = (0, 0);
        for session in self.sessions.values() {
            connected += u64::from(session.conn.is_some());
            subscriptions += session.subscriptions.len() as u64;
            shared +=
                session.subscriptions.keys().filter(|f| f.starts_with("$share/")).count() as u64;
            queued += session.queue.len() as u64;
            queued_bytes += session.queued_bytes as u64;
        }
        metrics.clients_connected = connected;
        metrics.subscriptions = subscriptions;
        metrics.shared_subscriptions = shared;
        metrics.queued_messages = queued;
        metrics.queued_bytes = queued_bytes;
        metrics.sn_peers = self.sn.peer_count() as u64;
        metrics.sn_sleeping = self
            .connections
            .values()
            .filter(|c| c.sn.as_ref().is_some_and(|sn| sn.sleeping()))
            .count() as u64;
        metrics
    }

    /// The clients connected to this shard, in the order of their client identifiers, for the
    /// operator's list (`GET /api/v1/clients`). Borrowed: the runtime copies what it shows
    /// while it holds the shard, between steps; walking them costs O(clients), once per
    /// request, nothing on the publish path.
    pub fn clients(&self) -> impl Iterator<Item = ClientInfo<'_>> + '_ {
        self.client_ids.values().filter_map(move |id| {
            let session = self.sessions.get(id)?;
            let conn = session.conn?;
            let connection = self.connections.get(&conn)?;
            let Phase::Connected(connected) = &connection.phase else { return None };
            Some(ClientInfo {
                client_id: &session.client_id,
                username: connected.username.as_deref(),
                protocol: if connection.sn.is_some() {
                    ClientProtocol::MqttSn
                } else {
                    ClientProtocol::Mqtt(connected.protocol)
                },
                conn,
                sn_peer: connection.sn.as_ref().map(|sn| sn.peer),
                connected_since: connected.since,
                queued: session.queue.len(),
            })
        })
    }

    /// Publishes a message as the broker: retained, QoS 0, from no session, routed like a
    /// client's (to this shard's subscribers and every other shard that routes the topic;
    /// the retained copy is replicated, ADR 1). The runtime publishes the `$SYS` tree with it
    /// (MQTT-4.7.2-1 reserves `$` topics for the server; clients may not publish there,
    /// `crate::publish::is_sys_topic`). An empty payload deletes the retained message
    /// (MQTT-3.3.1-6).
    pub fn publish_broker_message(&mut self, now: Instant, topic: ByteString, payload: Bytes) {
        let message =
            Message { topic, payload, qos: QoS::AtMostOnce, retain: true, ..Message::default() };
        self.route(now, Routed::Owned(message));
    }
}

/// The protocol a client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientProtocol {
    /// MQTT over a byte stream, in this version.
    Mqtt(ProtocolVersion),
    /// MQTT-SN 1.2 over UDP.
    MqttSn,
}

impl ClientProtocol {
    /// The name shown to the operator: "3.1", "3.1.1", "5.0" or "MQTT-SN 1.2".
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Mqtt(ProtocolVersion::V3_1) => "3.1",
            Self::Mqtt(ProtocolVersion::V3_1_1) => "3.1.1",
            Self::Mqtt(ProtocolVersion::V5) => "5.0",
            Self::Mqtt(_) => "MQTT",
            Self::MqttSn => "MQTT-SN 1.2",
        }
    }
}

/// One connected client, as [`Engine::clients`] shows it.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct ClientInfo<'a> {
    /// Its Client Identifier (the one the broker assigned, for an empty one).
    pub client_id: &'a str,
    /// The User Name of its CONNECT.
    pub username: Option<&'a str>,
    /// The protocol and version it connected with.
    pub protocol: ClientProtocol,
    /// The runtime's number of its connection: the runtime knows the address (MQTT).
    pub conn: ConnectionId,
    /// For an MQTT-SN client, the runtime's number of its UDP peer.
    pub sn_peer: Option<PeerId>,
    /// When its CONNECT was accepted.
    pub connected_since: Instant,
    /// Messages waiting in its session's queue.
    pub queued: usize,
}
