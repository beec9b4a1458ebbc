//! The state of the store barrier (ADR 17): per other shard, the `StoreSync`s and `RelaySync`s
//! sent and answered, and the acknowledgements and answers waiting for them. The barrier's
//! steps are in `store_sync/mod.rs`; this module knows nothing of the `Engine`
//! (docs/adr/0014-engine-layers.md).

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;

use musqratt_proto::mqtt::Packet;
use smallvec::SmallVec;

use crate::ids::{ConnectionId, ShardId};

/// What something held waits for: per shard, the number of a sync that shard must answer.
pub(crate) type Needs = SmallVec<[(ShardId, u64); 2]>;

/// One of the two kinds of sync: `StoreSync` from a publisher's shard, `RelaySync` from a
/// shared group's owner to the shards it forwarded the group's messages to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Answered once the receiver has stored what it was sent and what it relayed is stored.
    Store,
    /// Answered at once: a relayed message is never forwarded again.
    Relay,
}

/// One direction of one kind of sync to one shard.
#[derive(Debug, Default, Clone, Copy)]
struct Counter {
    /// Something that needs confirming was sent since the last sync: one is due at the end of
    /// the input.
    due: bool,
    sent: u64,
    answered: u64,
}

impl Counter {
    /// The sync that covers what is sent now: the next one when one is due.
    fn covering(&self) -> u64 {
        self.sent + u64::from(self.due)
    }
}

/// This shard's side of the store barrier.
#[derive(Debug, Default)]
pub(crate) struct StoreSync {
    /// Per shard (this shard's own entry is unused): `[Kind::Store, Kind::Relay]`.
    counters: Vec<[Counter; 2]>,
    /// Some counter is `due`.
    due: bool,
    /// Collecting the shards the current PUBLISH was forwarded to (`begin`, `end`).
    collecting: bool,
    step: Needs,
    /// Acknowledgements (PUBACK, PUBREC) held per connection, in the order they were made:
    /// §4.6, they go out in the order of the PUBLISHes.
    held: BTreeMap<ConnectionId, VecDeque<(Packet, Needs)>>,
    /// `StoreSynced` answers waiting for relays, in the order the `StoreSync`s came.
    replies: VecDeque<(ShardId, u64, Needs)>,
}

impl StoreSync {
    fn counter(&mut self, shard: ShardId, kind: Kind) -> &mut Counter {
        let index = usize::from(shard.0);
        if self.counters.len() <= index {
            self.counters.resize(index + 1, [Counter::default(); 2]);
        }
        &mut self.counters[index][kind as usize]
    }

    /// Starts collecting where a PUBLISH is forwarded.
    pub(crate) fn begin(&mut self) {
        self.collecting = true;
        self.step.clear();
    }

    /// What the PUBLISH since `begin` waits for.
    pub(crate) fn end(&mut self) -> Needs {
        self.collecting = false;
        core::mem::take(&mut self.step)
    }

    /// A message that needs confirming went to `shard`.
    pub(crate) fn forwarded(&mut self, shard: ShardId, kind: Kind) {
        let counter = self.counter(shard, kind);
        counter.due = true;
        let covering = counter.covering();
        self.due = true;
        if kind == Kind::Store && self.collecting && !self.step.iter().any(|(s, _)| *s == shard) {
            self.step.push((shard, covering));
        }
    }

    /// The syncs due, each numbered, to send at the end of the input.
    pub(crate) fn take_due(&mut self) -> SmallVec<[(ShardId, Kind, u64); 2]> {
        let mut out = SmallVec::new();
        if !core::mem::take(&mut self.due) {
            return out;
        }
        for (shard, counters) in self.counters.iter_mut().enumerate() {
            for (kind, counter) in [Kind::Store, Kind::Relay].into_iter().zip(counters.iter_mut()) {
                if core::mem::take(&mut counter.due) {
                    counter.sent += 1;
                    out.push((ShardId(shard as u16), kind, counter.sent));
                }
            }
        }
        out
    }

    /// Every `StoreSync` sent or due and not answered yet: what a resent QoS 2 PUBLISH, whose
    /// first copy may be among them, waits for.
    pub(crate) fn outstanding(&self) -> Needs {
        let store = |(shard, c): (usize, &[Counter; 2])| {
            let c = c[Kind::Store as usize];
            (c.covering() > c.answered).then_some((ShardId(shard as u16), c.covering()))
        };
        self.counters.iter().enumerate().filter_map(store).collect()
    }

    /// Whether every need is answered.
    fn ready(&self, needs: &Needs, kind: Kind) -> bool {
        needs.iter().all(|(shard, seq)| {
            self.counters
                .get(usize::from(shard.0))
                .is_some_and(|c| c[kind as usize].answered >= *seq)
        })
    }

    /// Whether this connection has acknowledgements held.
    pub(crate) fn holds(&self, conn: ConnectionId) -> bool {
        !self.held.is_empty() && self.held.contains_key(&conn)
    }

    /// Holds an acknowledgement until `needs` are answered and every one held before it for
    /// the connection has gone.
    pub(crate) fn hold(&mut self, conn: ConnectionId, packet: Packet, needs: Needs) {
        self.held.entry(conn).or_default().push_back((packet, needs));
    }

    /// Forgets a closed connection's held acknowledgements: the client sends those PUBLISHes
    /// again (§4.4).
    pub(crate) fn forget(&mut self, conn: ConnectionId) {
        if !self.held.is_empty() {
            self.held.remove(&conn);
        }
    }

    /// Records an answer; returns the acknowledgements it releases, in order per connection.
    pub(crate) fn answered(
        &mut self,
        from: ShardId,
        kind: Kind,
        seq: u64,
    ) -> Vec<(ConnectionId, Packet)> {
        let counter = self.counter(from, kind);
        counter.answered = counter.answered.max(seq);
        let mut released = Vec::new();
        if kind != Kind::Store {
            return released;
        }
        let mut emptied = Vec::new();
        let conns: Vec<ConnectionId> = self.held.keys().copied().collect();
        for conn in conns {
            loop {
                let ready = match self.held.get(&conn).and_then(VecDeque::front) {
                    Some((_, needs)) => self.ready(needs, Kind::Store),
                    None => false,
                };
                if !ready {
                    break;
                }
                if let Some((packet, _)) = self.held.get_mut(&conn).and_then(VecDeque::pop_front) {
                    released.push((conn, packet));
                }
            }
            if self.held.get(&conn).is_some_and(VecDeque::is_empty) {
                emptied.push(conn);
            }
        }
        for conn in emptied {
            self.held.remove(&conn);
        }
        released
    }

    /// A `StoreSync` came from `from`: what this shard relayed before it must be stored before
    /// the answer. Returns the answer when it can go now; holds it otherwise.
    pub(crate) fn store_sync(&mut self, from: ShardId, seq: u64) -> Option<(ShardId, u64)> {
        let needs: Needs = self
            .counters
            .iter()
            .enumerate()
            .map(|(shard, c)| (ShardId(shard as u16), c[Kind::Relay as usize]))
            .filter(|(_, relay)| relay.covering() > relay.answered)
            .map(|(shard, relay)| (shard, relay.covering()))
            .collect();
        if needs.is_empty() && self.replies.is_empty() {
            return Some((from, seq));
        }
        self.replies.push_back((from, seq, needs));
        None
    }

    /// The held `StoreSynced` answers that can go now, in order.
    pub(crate) fn ready_replies(&mut self) -> Vec<(ShardId, u64)> {
        let mut out = Vec::new();
        while let Some((_, _, needs)) = self.replies.front() {
            if !self.ready(needs, Kind::Relay) {
                break;
            }
            if let Some((to, seq, _)) = self.replies.pop_front() {
                out.push((to, seq));
            }
        }
        out
    }
}
