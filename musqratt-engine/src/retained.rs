//! Retained messages (§3.3.1.3): the last retained message of each topic.

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;

use musqratt_proto::bytestring::ByteString;
use musqratt_proto::topic::matches;

use crate::session::Message;
use crate::time::Instant;

#[derive(Debug, Default)]
pub(crate) struct Retained {
    by_topic: BTreeMap<ByteString, Arc<Message>>,
}

impl Retained {
    /// Keeps a retained message, replacing the topic's previous one; an empty payload deletes
    /// it and is not kept (MQTT-3.3.1-5, -6, -7).
    pub(crate) fn store(&mut self, message: &Arc<Message>) {
        if message.payload.is_empty() {
            self.by_topic.remove(&message.topic);
        } else {
            self.by_topic.insert(message.topic.clone(), Arc::clone(message));
        }
    }

    /// The retained messages whose topic matches `filter` (a plain filter: shared
    /// subscriptions get none), in topic order; expired ones are dropped on the way
    /// (§3.3.2.3.3: expiry applies to retained messages too).
    pub(crate) fn matching(&mut self, filter: &str, now: Instant) -> Vec<Arc<Message>> {
        self.by_topic.retain(|_, message| !message.is_expired(now));
        if !filter.contains(['+', '#']) {
            return self.by_topic.get(filter).cloned().into_iter().collect();
        }
        self.by_topic
            .iter()
            .filter(|(topic, _)| matches(filter, topic))
            .map(|(_, message)| Arc::clone(message))
            .collect()
    }

    /// How many topics hold a retained message.
    #[allow(dead_code, reason = "used by tests and metrics")]
    pub(crate) fn len(&self) -> usize {
        self.by_topic.len()
    }
}
