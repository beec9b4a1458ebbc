//! The broker's own numbers: the snapshot a runtime reads ([`Engine::metrics`]) and the
//! messages the broker publishes itself into `$SYS` ([`Engine::publish_broker_message`];
//! docs/adr/0018-metrics.md, docs/OBSERVABILITY.md).

use bytes::Bytes;
use musqratt_proto::QoS;
use musqratt_proto::bytestring::ByteString;

use crate::deliver::state::Routed;
use crate::engine::Engine;
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
        metrics
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
