//! What one shard counts for the operator (issue 17, docs/OBSERVABILITY.md): plain integers the
//! engine bumps as it works, read through [`crate::Engine::metrics`] and merged across shards
//! by the runtime ([`Metrics::merge`]).
//!
//! Nothing here is shared between threads: each shard's engine owns its counters, so counting
//! a PUBLISH costs a few additions in memory the shard already has in cache, with no atomic
//! and no lock on the publish path (docs/adr/0018-metrics.md). Counters only grow (they wrap
//! after 2^64, which no broker reaches); gauges (`clients_connected`, `retained`...) are taken
//! from the engine's state when the snapshot is made, so they cannot drift.

use alloc::collections::BTreeMap;

use musqratt_proto::QoS;

use crate::io::DropReason;

/// Sub-buckets per power of two of a [`Histogram`] from 4 µs up: each octave `(2^k, 2^(k+1)]`
/// is cut into this many equal steps, so a bucket's upper bound over-states a value by at most
/// a quarter.
const STEPS: usize = 4;

/// The largest bound, 2^23 µs (about 8.4 s): above it, one overflow bucket.
const TOP_OCTAVE: usize = 23;

/// Buckets of a [`Histogram`]: 1, 2, 3 and 4 µs, then [`STEPS`] per power of two up to 2^23 µs
/// (5, 6, 7, 8, 10, 12, 14, 16, 20, ... µs), then one for everything above.
pub const LATENCY_BUCKETS: usize = STEPS + STEPS * (TOP_OCTAVE - 2) + 1;

/// A latency histogram with fixed log-linear buckets: four per power of two of microseconds.
///
/// Fixed buckets rather than a per-shard HDR histogram (docs/adr/0018-metrics.md): the same
/// bounds on every shard and every broker, so histograms are merged by adding (several brokers
/// can be summed in Prometheus), recording is a `leading_zeros`, a shift and two additions, and
/// nothing is allocated. A percentile is known to within a quarter of its value (the bucket's
/// upper bound is reported), as fine as an HDR histogram of two significant bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Histogram {
    /// Values per bucket (not cumulative).
    pub buckets: [u64; LATENCY_BUCKETS],
    /// The sum of the values recorded, in microseconds.
    pub sum_micros: u64,
    /// The number of values recorded.
    pub count: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self { buckets: [0; LATENCY_BUCKETS], sum_micros: 0, count: 0 }
    }
}

impl Histogram {
    /// The upper bound of bucket `index` in microseconds; `None` for the last (unbounded) one.
    #[must_use]
    pub fn upper_bound_micros(index: usize) -> Option<u64> {
        if index + 1 >= LATENCY_BUCKETS {
            return None;
        }
        if index < STEPS {
            return Some(index as u64 + 1);
        }
        // Octave k (from 2) of (2^k, 2^(k+1)], step j (from 0) of its STEPS.
        let (k, j) = (2 + (index - STEPS) / STEPS, (index - STEPS) % STEPS);
        Some((1u64 << k) + (j as u64 + 1) * (1u64 << (k - 2)))
    }

    /// The bucket a value of `micros` falls in: the first whose upper bound is at least it.
    #[must_use]
    pub fn bucket_of(micros: u64) -> usize {
        if micros <= STEPS as u64 {
            return micros.saturating_sub(1) as usize;
        }
        // micros in (2^k, 2^(k+1)], k >= 2.
        let k = (u64::BITS - 1 - (micros - 1).leading_zeros()) as usize;
        if k > TOP_OCTAVE - 1 {
            return LATENCY_BUCKETS - 1;
        }
        let step = 1u64 << (k - 2);
        let j = ((micros - (1u64 << k)).div_ceil(step) - 1) as usize;
        STEPS + (k - 2) * STEPS + j
    }

    /// Records one value.
    pub fn record(&mut self, micros: u64) {
        self.buckets[Self::bucket_of(micros)] += 1;
        self.sum_micros = self.sum_micros.wrapping_add(micros);
        self.count += 1;
    }

    /// Adds another histogram's counts to this one.
    pub fn merge(&mut self, other: &Self) {
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *mine += theirs;
        }
        self.sum_micros = self.sum_micros.wrapping_add(other.sum_micros);
        self.count += other.count;
    }

    /// The upper bound (µs) of the bucket holding the quantile `per_mille`/1000 (500 for the
    /// median, 990 for p99), `None` when nothing was recorded. Values in the last bucket report
    /// its lower bound (2^23 µs). Integer arithmetic: the engine is `no_std`, without `f64::ceil`.
    #[must_use]
    pub fn quantile_micros(&self, per_mille: u32) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        // The rank of the quantile, 1-based: at least the first value.
        let rank = u128::from(self.count) * u128::from(per_mille.min(1000));
        let rank = u64::try_from(rank.div_ceil(1000)).unwrap_or(u64::MAX).max(1);
        let mut seen = 0;
        for (index, count) in self.buckets.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(Self::upper_bound_micros(index).unwrap_or(1 << TOP_OCTAVE));
            }
        }
        None
    }
}

/// Messages dropped by the broker, by cause.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    /// A session's queue was full (`max_queued_messages` / `max_queued_bytes`).
    pub queue_full: u64,
    /// QoS 0 to a connection with more than `max_unwritten_bytes` unwritten.
    pub slow_reader: u64,
    /// The Message Expiry Interval ran out before delivery (§3.3.2.3.3).
    pub expired: u64,
    /// A PUBLISH its client may not publish (ACL, or a `$SYS` topic): not forwarded.
    pub not_authorized: u64,
    /// Larger than the receiving client's Maximum Packet Size (MQTT-3.1.2-25).
    pub too_large: u64,
    /// A topic backlog was full.
    pub backlog_full: u64,
    /// A QoS 1 or 2 PUBLISH refused because the persistence store could not write (a full
    /// disk): 0x97 Quota exceeded, or not acknowledged (docs/PERSISTENCE.md).
    pub store_full: u64,
}

impl Dropped {
    fn merge(&mut self, other: &Self) {
        self.queue_full += other.queue_full;
        self.slow_reader += other.slow_reader;
        self.expired += other.expired;
        self.not_authorized += other.not_authorized;
        self.too_large += other.too_large;
        self.backlog_full += other.backlog_full;
        self.store_full += other.store_full;
    }

    pub(crate) fn count(&mut self, reason: DropReason) {
        match reason {
            DropReason::QueueFull => self.queue_full += 1,
            DropReason::SlowReader => self.slow_reader += 1,
            DropReason::TooLargeForClient => self.too_large += 1,
            DropReason::BacklogFull => self.backlog_full += 1,
        }
    }
}

/// One shard's counters, or the sum of several ([`Metrics::merge`]). Arrays indexed by QoS
/// hold QoS 0, 1 and 2 in that order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metrics {
    /// Clients connected now (MQTT and MQTT-SN).
    pub clients_connected: u64,
    /// Sessions held, connected or not (Mosquitto's `clients/total`).
    pub clients_total: u64,
    /// The most clients connected at once on this shard; merged, the largest of the shards'
    /// maxima (a lower bound of the broker's, which a reader refines by sampling).
    pub clients_maximum: u64,
    /// Application messages received from clients (PUBLISH), by QoS.
    pub messages_received: [u64; 3],
    /// Their payload bytes, by QoS.
    pub payload_bytes_received: [u64; 3],
    /// PUBLISH packets sent to clients (retransmissions included), by QoS of the delivery.
    pub messages_sent: [u64; 3],
    /// Their payload bytes, by QoS.
    pub payload_bytes_sent: [u64; 3],
    /// Every byte read from clients (all packets, MQTT-SN datagrams included).
    pub bytes_received: u64,
    /// Every byte handed to the runtime to send.
    pub bytes_sent: u64,
    /// Messages dropped, by cause.
    pub dropped: Dropped,
    /// Retained messages held. Every shard holds all of them (they are replicated), so merging
    /// takes the largest, not the sum.
    pub retained: u64,
    /// Subscriptions of the sessions held (shared ones included).
    pub subscriptions: u64,
    /// Of which shared subscriptions (`$share/...`, §4.8.2).
    pub shared_subscriptions: u64,
    /// Messages waiting in session queues.
    pub queued_messages: u64,
    /// Their payload bytes.
    pub queued_bytes: u64,
    /// MQTT-SN clients known by their UDP address (and wireless node, behind a forwarder).
    pub sn_peers: u64,
    /// MQTT-SN clients in their sleep cycle (§6.14): messages for them are buffered.
    pub sn_sleeping: u64,
    /// CONNECTs refused, by reason code (MQTT 5.0 codes; a 3.1.1 client got the matching
    /// return code).
    pub connect_refusals: BTreeMap<u8, u64>,
    /// Time from a PUBLISH's input to the engine to its delivery handed to the runtime, by QoS
    /// of the delivery (queueing included; retained messages sent on subscribe, messages the
    /// broker made and restored ones are not timed).
    pub latency: [Histogram; 3],
}

impl Metrics {
    /// Adds another shard's numbers to these (retained: the larger; maximum: the larger).
    pub fn merge(&mut self, other: &Self) {
        self.clients_connected += other.clients_connected;
        self.clients_total += other.clients_total;
        self.clients_maximum = self.clients_maximum.max(other.clients_maximum);
        for qos in 0..3 {
            self.messages_received[qos] += other.messages_received[qos];
            self.payload_bytes_received[qos] += other.payload_bytes_received[qos];
            self.messages_sent[qos] += other.messages_sent[qos];
            self.payload_bytes_sent[qos] += other.payload_bytes_sent[qos];
            self.latency[qos].merge(&other.latency[qos]);
        }
        self.bytes_received += other.bytes_received;
        self.bytes_sent += other.bytes_sent;
        self.dropped.merge(&other.dropped);
        self.retained = self.retained.max(other.retained);
        self.subscriptions += other.subscriptions;
        self.shared_subscriptions += other.shared_subscriptions;
        self.queued_messages += other.queued_messages;
        self.queued_bytes += other.queued_bytes;
        self.sn_peers += other.sn_peers;
        self.sn_sleeping += other.sn_sleeping;
        for (code, count) in &other.connect_refusals {
            *self.connect_refusals.entry(*code).or_default() += count;
        }
    }

    /// Messages received, all QoS.
    #[must_use]
    pub fn total_received(&self) -> u64 {
        self.messages_received.iter().sum()
    }

    /// Messages sent, all QoS.
    #[must_use]
    pub fn total_sent(&self) -> u64 {
        self.messages_sent.iter().sum()
    }
}

/// The counters the engine bumps as it works; the gauges of [`Metrics`] are read from its
/// state when a snapshot is made.
///
/// Every bump goes through a method here, so that a build without the `metrics` feature
/// (`default-features = false`) makes them all no-ops: the way to measure what counting costs
/// (issue 17, "Measure"). The gauges are still read from the state, which costs nothing on
/// the publish path.
#[derive(Debug, Clone, Default)]
pub(crate) struct Counters {
    pub(crate) metrics: Metrics,
    /// Clients connected now, kept to know the maximum without walking the sessions.
    pub(crate) connected: u64,
}

/// Whether the engine counts (the `metrics` feature, on by default).
const COUNTING: bool = cfg!(feature = "metrics");

impl Counters {
    pub(crate) fn client_connected(&mut self) {
        if COUNTING {
            self.connected += 1;
            self.metrics.clients_maximum = self.metrics.clients_maximum.max(self.connected);
        }
    }

    pub(crate) fn client_disconnected(&mut self) {
        if COUNTING {
            self.connected = self.connected.saturating_sub(1);
        }
    }

    pub(crate) fn received(&mut self, qos: QoS, payload: usize) {
        if COUNTING {
            let qos = qos as usize;
            self.metrics.messages_received[qos] += 1;
            self.metrics.payload_bytes_received[qos] += payload as u64;
        }
    }

    pub(crate) fn sent(&mut self, qos: QoS, payload: usize, latency_micros: Option<u64>) {
        if COUNTING {
            let qos = qos as usize;
            self.metrics.messages_sent[qos] += 1;
            self.metrics.payload_bytes_sent[qos] += payload as u64;
            if let Some(micros) = latency_micros {
                self.metrics.latency[qos].record(micros);
            }
        }
    }

    pub(crate) fn refused(&mut self, code: u8) {
        if COUNTING {
            *self.metrics.connect_refusals.entry(code).or_default() += 1;
        }
    }

    /// Bytes read from a client (an `Input::Data` or `Input::Datagram`).
    pub(crate) fn bytes_in(&mut self, bytes: usize) {
        if COUNTING {
            self.metrics.bytes_received += bytes as u64;
        }
    }

    /// Bytes handed to the runtime to send.
    pub(crate) fn bytes_out(&mut self, bytes: usize) {
        if COUNTING {
            self.metrics.bytes_sent += bytes as u64;
        }
    }

    pub(crate) fn dropped(&mut self, reason: DropReason) {
        if COUNTING {
            self.metrics.dropped.count(reason);
        }
    }

    pub(crate) fn expired(&mut self, messages: usize) {
        if COUNTING {
            self.metrics.dropped.expired += messages as u64;
        }
    }

    pub(crate) fn not_authorized(&mut self) {
        if COUNTING {
            self.metrics.dropped.not_authorized += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_four_per_power_of_two_of_microseconds() {
        let bounds: alloc::vec::Vec<u64> =
            (0..12).filter_map(Histogram::upper_bound_micros).collect();
        assert_eq!(bounds, [1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16]);
        assert_eq!(Histogram::bucket_of(0), 0);
        assert_eq!(Histogram::bucket_of(1), 0);
        assert_eq!(Histogram::bucket_of(9), 8);
        assert_eq!(Histogram::bucket_of(10), 8);
        assert_eq!(Histogram::bucket_of(11), 9);
        assert_eq!(Histogram::upper_bound_micros(LATENCY_BUCKETS - 2), Some(1 << 23));
        assert_eq!(Histogram::bucket_of(1 << 23), LATENCY_BUCKETS - 2);
        assert_eq!(Histogram::bucket_of((1 << 23) + 1), LATENCY_BUCKETS - 1);
        assert_eq!(Histogram::bucket_of(u64::MAX), LATENCY_BUCKETS - 1);
        let mut previous = 0;
        for index in 0..LATENCY_BUCKETS - 1 {
            let bound = Histogram::upper_bound_micros(index).unwrap();
            assert!(bound > previous);
            // At most a quarter above any value of the bucket.
            assert!(bound * 4 <= (previous + 1) * 5 || bound <= 4, "{previous} {bound}");
            assert_eq!(Histogram::bucket_of(bound), index);
            assert_eq!(Histogram::bucket_of(previous + 1), index);
            assert_eq!(Histogram::bucket_of(bound + 1), index + 1);
            previous = bound;
        }
        assert_eq!(Histogram::upper_bound_micros(LATENCY_BUCKETS - 1), None);
    }

    #[test]
    fn quantiles_and_merge() {
        let mut a = Histogram::default();
        assert_eq!(a.quantile_micros(500), None);
        for micros in [10, 10, 10, 100] {
            a.record(micros);
        }
        let mut b = Histogram::default();
        b.record(1000);
        a.merge(&b);
        assert_eq!((a.count, a.sum_micros), (5, 1130));
        assert_eq!(a.quantile_micros(500), Some(10));
        assert_eq!(a.quantile_micros(800), Some(112));
        assert_eq!(a.quantile_micros(990), Some(1024));
        assert_eq!(a.quantile_micros(0), Some(10));
    }

    #[test]
    fn merge_sums_counters_and_keeps_the_largest_replicated_gauge() {
        let mut a = Metrics { retained: 4, clients_maximum: 3, ..Metrics::default() };
        a.messages_received[1] = 2;
        a.connect_refusals.insert(0x86, 1);
        let mut b = Metrics { retained: 4, clients_maximum: 5, ..Metrics::default() };
        b.messages_received[1] = 3;
        b.connect_refusals.insert(0x86, 2);
        b.connect_refusals.insert(0x87, 1);
        a.merge(&b);
        assert_eq!(a.messages_received, [0, 5, 0]);
        assert_eq!((a.retained, a.clients_maximum), (4, 5));
        assert_eq!(a.connect_refusals.get(&0x86), Some(&3));
        assert_eq!(a.connect_refusals.get(&0x87), Some(&1));
    }
}
