//! SUBSCRIBE and UNSUBSCRIBE (§3.8-3.11): subscriptions, retained messages on subscribe
//! (§3.8.4, Retain Handling), and the topic backlog handed to a first subscriber.

use alloc::vec::Vec;

use musqratt_proto::ProtocolVersion;
use musqratt_proto::mqtt::{
    AckProperties, Packet, ReasonCode, RetainHandling, SubAck, Subscribe, UnsubAck, Unsubscribe,
};
use musqratt_proto::topic::split_shared;

use crate::engine::Engine;
use crate::ids::ConnectionId;
use crate::route_sync::state::Subscribed;
use crate::session::Subscription;
use crate::time::Instant;

impl Engine {
    pub(crate) fn handle_subscribe(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        subscribe: Subscribe,
    ) {
        let Some(connection) = self.connections.get(&conn) else { return };
        let Some(session_id) = connection.session else { return };
        let id = subscribe.properties.subscription_identifier;
        if id.is_some() && !self.config.subscription_identifiers_available {
            // §3.8.2.1.2: a Protocol Error when the CONNACK said they are not available.
            return self.close(now, conn, ReasonCode::SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED, true);
        }
        let mut reason_codes = Vec::with_capacity(subscribe.filters.len());
        let mut retained = Vec::new();
        let mut new_filters = Vec::new();
        for (filter, mut options) in subscribe.filters {
            let shared = split_shared(&filter).is_some();
            let wildcard = filter.contains(['+', '#']);
            if shared && !self.config.shared_subscription_available {
                reason_codes.push(ReasonCode::SHARED_SUBSCRIPTIONS_NOT_SUPPORTED);
                continue;
            }
            if wildcard && !self.config.wildcard_subscription_available {
                reason_codes.push(ReasonCode::WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED);
                continue;
            }
            // The client's ACL (§3.9.3: 0x87 Not authorized; 3.1.1 encodes any failure 0x80).
            let plain = split_shared(&filter).and_then(Result::ok).map_or(&*filter, |(_, f)| f);
            let session = self.sessions.get(&session_id);
            if session.and_then(|s| s.acl.as_deref()).is_some_and(|acl| !acl.may_subscribe(plain)) {
                reason_codes.push(ReasonCode::NOT_AUTHORIZED);
                continue;
            }
            // §3.9.3: the granted QoS may be lower than the one asked for.
            options.qos = options.qos.min(self.config.maximum_qos);
            let subscription = Subscription { options, id };
            let Some(session) = self.sessions.get_mut(&session_id) else { return };
            // MQTT-3.8.4-3: a subscription to the same filter replaces the old one.
            let existed = session.subscriptions.insert(filter.clone(), subscription).is_some();
            let client_id = session.client_id.clone();
            self.subscription_changed(&filter, session_id, &client_id, Some(subscription));
            reason_codes.push(ReasonCode(options.qos.bits()));
            // Retained messages: never for a shared subscription (§4.8.2), and per Retain
            // Handling otherwise (MQTT-3.3.1-9, -10, -11).
            let send_retained = !shared
                && match options.retain_handling {
                    RetainHandling::SendAtSubscribe => true,
                    RetainHandling::SendIfNew => !existed,
                    RetainHandling::DoNotSend => false,
                };
            if send_retained {
                retained.push((filter.clone(), subscription));
            }
            if !existed {
                new_filters.push(filter);
            }
        }
        let suback = SubAck {
            packet_id: subscribe.packet_id,
            reason_codes,
            properties: AckProperties::default(),
        };
        self.persist_session(session_id);
        let mut done = Subscribed::new(session_id, suback);
        done.retained = retained;
        done.new_filters = new_filters;
        self.finish_subscribe(now, conn, done);
    }

    /// Hands the backlog of every topic the new filter matches to the subscribers now matching
    /// it, in publish order, and forgets those topics' backlogs.
    pub(crate) fn release_backlog(&mut self, now: Instant, filter: &str) {
        let plain = split_shared(filter).map_or(Some(filter), |shared| shared.ok().map(|(_, f)| f));
        let Some(plain) = plain else { return };
        for message in self.backlog.take_matching(plain, now) {
            self.route(now, crate::deliver::state::Routed::Shared(message));
        }
    }

    pub(crate) fn handle_unsubscribe(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        unsubscribe: Unsubscribe,
    ) {
        let Some(connection) = self.connections.get(&conn) else { return };
        let Some(session_id) = connection.session else { return };
        let version = connection.version();
        let mut reason_codes = Vec::new();
        for filter in &unsubscribe.filters {
            let Some(session) = self.sessions.get_mut(&session_id) else { return };
            let existed = session.subscriptions.remove(filter).is_some();
            if existed {
                let client_id = session.client_id.clone();
                self.subscription_changed(filter, session_id, &client_id, None);
            }
            // §3.11.3: 0x11 No subscription existed.
            reason_codes.push(if existed {
                ReasonCode::SUCCESS
            } else {
                ReasonCode::NO_SUBSCRIPTION_EXISTED
            });
        }
        self.persist_session(session_id);
        if version != ProtocolVersion::V5 {
            reason_codes.clear();
        }
        let unsuback = UnsubAck {
            packet_id: unsubscribe.packet_id,
            reason_codes,
            properties: AckProperties::default(),
        };
        self.send_packet(now, conn, &Packet::UnsubAck(unsuback));
    }
}
