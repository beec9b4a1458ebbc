//! Mosquitto's `$SYS/broker/load/...` topics: how many messages, bytes and connections per
//! minute, as exponentially weighted moving averages over 1, 5 and 15 minutes
//! (<https://mosquitto.org/man/mosquitto-8.html>, "$SYS topics"). Made from the counters of
//! successive `$SYS` trees, by the one task that publishes them: nothing on the publish path.

use core::time::Duration;

use musqratt_engine::Metrics;

/// How a counter is read from the merged metrics.
type Counter = fn(&Metrics) -> u64;

/// The counters averaged, with the topic each is published under.
const LOADS: [(&str, Counter); 9] = [
    ("bytes/received", |m| m.bytes_received),
    ("bytes/sent", |m| m.bytes_sent),
    ("connections", |m| m.clients_total),
    ("messages/received", Metrics::total_received),
    ("messages/sent", Metrics::total_sent),
    ("publish/dropped", super::dropped),
    ("publish/received", Metrics::total_received),
    ("publish/sent", Metrics::total_sent),
    ("sockets", |m| m.clients_total),
];

/// The averaging windows, in seconds, with their topic names.
const WINDOWS: [(&str, f64); 3] = [("1min", 60.0), ("5min", 300.0), ("15min", 900.0)];

/// The load averages, updated once per `$SYS` tree.
#[derive(Debug, Default)]
pub struct LoadAverages {
    /// The counters of the last update, and when (the broker's uptime).
    last: Option<(Duration, [u64; LOADS.len()])>,
    /// Per counter and window: the average number per minute.
    averages: [[f64; WINDOWS.len()]; LOADS.len()],
}

impl LoadAverages {
    /// Folds the counters of `metrics`, read at `uptime`, into the averages, and returns their
    /// `$SYS` topics and payloads (per minute, two decimals, as Mosquitto writes them); none
    /// at the first call, which only has a starting point.
    pub fn update(&mut self, metrics: &Metrics, uptime: Duration) -> Vec<(String, String)> {
        let counts = LOADS.map(|(_, count)| count(metrics));
        let Some((at, before)) = self.last.replace((uptime, counts)) else { return Vec::new() };
        let elapsed = uptime.saturating_sub(at).as_secs_f64();
        if elapsed > 0.0 {
            for ((averages, now), before) in self.averages.iter_mut().zip(counts).zip(before) {
                // Counters only grow; a smaller one (none expected) counts as no change.
                let per_minute = now.saturating_sub(before) as f64 * 60.0 / elapsed;
                for (average, (_, window)) in averages.iter_mut().zip(WINDOWS) {
                    let keep = (-elapsed / window).exp();
                    *average = *average * keep + per_minute * (1.0 - keep);
                }
            }
        }
        let mut topics = Vec::with_capacity(LOADS.len() * WINDOWS.len());
        for ((name, _), averages) in LOADS.iter().zip(&self.averages) {
            for ((window, _), average) in WINDOWS.iter().zip(averages) {
                topics.push((format!("$SYS/broker/load/{name}/{window}"), format!("{average:.2}")));
            }
        }
        topics
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(topics: &[(String, String)], topic: &str) -> f64 {
        topics.iter().find(|(t, _)| t == topic).map(|(_, v)| v.parse().unwrap()).unwrap()
    }

    /// A steady 600 messages a minute: the 1-minute average approaches it first, the 15-minute
    /// one last, none passes it; nothing is published before a second tree.
    #[test]
    fn averages_follow_a_steady_rate_from_below() {
        let mut load = LoadAverages::default();
        let mut metrics = Metrics::default();
        assert!(load.update(&metrics, Duration::from_secs(10)).is_empty());
        let mut topics = Vec::new();
        for tick in 2..=60u64 {
            metrics.messages_received[0] += 100; // 100 per 10 s tree: 600 a minute
            topics = load.update(&metrics, Duration::from_secs(10 * tick));
        }
        let (one, five, fifteen) = (
            value(&topics, "$SYS/broker/load/messages/received/1min"),
            value(&topics, "$SYS/broker/load/messages/received/5min"),
            value(&topics, "$SYS/broker/load/messages/received/15min"),
        );
        assert!(one > 599.0 && one <= 600.0, "{one}");
        assert!(five < one && fifteen < five && fifteen > 200.0, "{one} {five} {fifteen}");
        assert_eq!(value(&topics, "$SYS/broker/load/bytes/sent/1min"), 0.0);
        assert_eq!(topics.len(), 27);
    }
}
