//! The topic backlog of the user's product spec: "if there are no subscribers yet for that
//! topic, the data packets are queued ... after subscribing clients are acknowledged, they are
//! able to immediately receive the queued data packets". Off by default.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::sync::Arc;
use alloc::vec::Vec;

use musqratt_proto::bytestring::ByteString;
use musqratt_proto::topic::matches;

use crate::config::BacklogConfig;
use crate::session::Message;
use crate::time::Instant;

#[derive(Debug, Default)]
struct TopicBacklog {
    /// Messages with their global publish sequence number, oldest first.
    messages: VecDeque<(u64, Arc<Message>)>,
    bytes: usize,
}

#[derive(Debug, Default)]
pub(crate) struct Backlog {
    topics: BTreeMap<ByteString, TopicBacklog>,
    seq: u64,
}

impl Backlog {
    /// Keeps a message nobody subscribed to; false when the topic's backlog is full, in which
    /// case the new message is dropped (the oldest ones are what the first subscriber expects).
    pub(crate) fn push(&mut self, message: Arc<Message>, limits: &BacklogConfig) -> bool {
        let topic = self.topics.entry(message.topic.clone()).or_default();
        let size = message.payload.len();
        if topic.messages.len() >= limits.max_messages_per_topic
            || topic.bytes + size > limits.max_bytes_per_topic
        {
            return false;
        }
        self.seq += 1;
        topic.bytes += size;
        topic.messages.push_back((self.seq, message));
        true
    }

    /// Takes every unexpired message of the topics `filter` matches, in publish order; those
    /// topics are forgotten.
    pub(crate) fn take_matching(&mut self, filter: &str, now: Instant) -> Vec<Arc<Message>> {
        let topics: Vec<ByteString> =
            self.topics.keys().filter(|topic| matches(filter, topic)).cloned().collect();
        let mut taken: Vec<(u64, Arc<Message>)> = Vec::new();
        for topic in topics {
            if let Some(backlog) = self.topics.remove(&topic) {
                taken.extend(backlog.messages.into_iter().filter(|(_, m)| !m.is_expired(now)));
            }
        }
        taken.sort_unstable_by_key(|(seq, _)| *seq);
        taken.into_iter().map(|(_, message)| message).collect()
    }
}
