//! The broker's numbers as operators read them (issue 17, docs/OBSERVABILITY.md): the `$SYS`
//! tree of Mosquitto's names, the Prometheus text format and a JSON document, all made from
//! the engines' [`Metrics`] merged across shards. Formatting only: a runtime gathers the
//! shards' snapshots (`Engine::metrics`) and publishes or serves the result
//! (docs/adr/0018-metrics.md).

use core::fmt::Write as _;
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;

use musqratt_engine::{Histogram, LATENCY_BUCKETS, Metrics};

mod load;

pub use load::LoadAverages;

/// The default `sys_interval_s` of the binary's configuration: Mosquitto's default period.
pub const DEFAULT_SYS_INTERVAL: Duration = Duration::from_secs(10);

/// The quantiles published under `$SYS/broker/latency/qosN/`, per mille, with their names.
pub const SYS_QUANTILES: [(&str, u32); 3] = [("p50", 500), ("p90", 900), ("p99", 990)];

/// The most clients connected at once, broker-wide. Each shard knows its own maximum; their
/// sum at one moment is only known when read, so the reader keeps the largest it has seen
/// (shared by the `$SYS` task and the HTTP listener; touched only when someone reads).
#[derive(Debug, Default)]
pub struct Maximum(AtomicU64);

impl Maximum {
    /// Sets `metrics.clients_maximum` to the largest of: what was seen before, the shards'
    /// largest maximum, and the clients connected now; remembers it.
    pub fn refine(&self, metrics: &mut Metrics) {
        let now = metrics.clients_maximum.max(metrics.clients_connected);
        let max = self.0.fetch_max(now, Ordering::Relaxed).max(now);
        metrics.clients_maximum = max;
    }
}

/// The `$SYS` topics and payloads for `metrics`, with Mosquitto's names
/// (<https://mosquitto.org/man/mosquitto-8.html>, "$SYS topics") and payload formats
/// (decimal numbers; `uptime` as "N seconds"), plus `$SYS/broker/latency/qosN/pXX` in
/// microseconds (omitted while no message of that QoS was timed). The load averages
/// (`$SYS/broker/load/...`) need the trees before this one: [`LoadAverages`].
#[must_use]
pub fn sys_tree(metrics: &Metrics, uptime: Duration, version: &str) -> Vec<(String, String)> {
    let m = metrics;
    let mut tree = vec![
        ("$SYS/broker/version".to_owned(), format!("musqratt version {version}")),
        ("$SYS/broker/uptime".to_owned(), format!("{} seconds", uptime.as_secs())),
    ];
    let numbers = [
        ("clients/connected", m.clients_connected),
        ("clients/active", m.clients_connected),
        ("clients/disconnected", m.clients_total.saturating_sub(m.clients_connected)),
        ("clients/inactive", m.clients_total.saturating_sub(m.clients_connected)),
        ("clients/total", m.clients_total),
        ("clients/maximum", m.clients_maximum),
        ("messages/received", m.total_received()),
        ("messages/sent", m.total_sent()),
        ("publish/messages/received", m.total_received()),
        ("publish/messages/sent", m.total_sent()),
        ("publish/messages/dropped", dropped(m)),
        ("bytes/received", m.bytes_received),
        ("bytes/sent", m.bytes_sent),
        ("subscriptions/count", m.subscriptions),
        ("shared_subscriptions/count", m.shared_subscriptions),
        ("retained messages/count", m.retained),
        ("store/messages/count", m.queued_messages),
        ("store/messages/bytes", m.queued_bytes),
        ("mqtt-sn/peers", m.sn_peers),
        ("mqtt-sn/clients/sleeping", m.sn_sleeping),
    ];
    for (name, value) in numbers {
        tree.push((format!("$SYS/broker/{name}"), value.to_string()));
    }
    for (qos, histogram) in m.latency.iter().enumerate() {
        for (name, per_mille) in SYS_QUANTILES {
            if let Some(micros) = histogram.quantile_micros(per_mille) {
                tree.push((format!("$SYS/broker/latency/qos{qos}/{name}"), micros.to_string()));
            }
        }
    }
    tree
}

fn dropped(m: &Metrics) -> u64 {
    let d = &m.dropped;
    d.queue_full
        + d.slow_reader
        + d.expired
        + d.not_authorized
        + d.too_large
        + d.backlog_full
        + d.store_full
}

/// One metric family of the Prometheus text format (version 0.0.4).
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// `metrics` in the Prometheus text exposition format 0.0.4
/// (<https://prometheus.io/docs/instrumenting/exposition_formats/>), names prefixed
/// `musqratt_`, times in seconds and sizes in bytes (Prometheus's base units), counters
/// suffixed `_total`. docs/OBSERVABILITY.md lists every family.
#[must_use]
pub fn prometheus(metrics: &Metrics, uptime: Duration) -> String {
    let m = metrics;
    let mut out = String::with_capacity(8 * 1024);
    let gauges = [
        ("musqratt_uptime_seconds", "Seconds since the broker started.", uptime.as_secs()),
        ("musqratt_clients_connected", "Clients connected now.", m.clients_connected),
        ("musqratt_clients_sessions", "Sessions held, connected or not.", m.clients_total),
        (
            "musqratt_clients_maximum",
            "The most clients connected at once since the start.",
            m.clients_maximum,
        ),
        ("musqratt_retained_messages", "Retained messages held.", m.retained),
        ("musqratt_subscriptions", "Subscriptions of the sessions held.", m.subscriptions),
        ("musqratt_shared_subscriptions", "Shared subscriptions.", m.shared_subscriptions),
        ("musqratt_queued_messages", "Messages waiting in session queues.", m.queued_messages),
        ("musqratt_queued_bytes", "Payload bytes waiting in session queues.", m.queued_bytes),
        ("musqratt_sn_peers", "MQTT-SN clients known by their UDP address.", m.sn_peers),
        ("musqratt_sn_sleeping_clients", "MQTT-SN clients in their sleep cycle.", m.sn_sleeping),
    ];
    for (name, help, value) in gauges {
        family(&mut out, name, "gauge", help);
        let _ = writeln!(out, "{name} {value}");
    }
    let by_qos = [
        (
            "musqratt_messages_received_total",
            "PUBLISH packets received from clients, by QoS.",
            &m.messages_received,
        ),
        (
            "musqratt_messages_sent_total",
            "PUBLISH packets sent to clients, by QoS of the delivery.",
            &m.messages_sent,
        ),
        (
            "musqratt_payload_received_bytes_total",
            "Payload bytes of the PUBLISH packets received, by QoS.",
            &m.payload_bytes_received,
        ),
        (
            "musqratt_payload_sent_bytes_total",
            "Payload bytes of the PUBLISH packets sent, by QoS.",
            &m.payload_bytes_sent,
        ),
    ];
    for (name, help, values) in by_qos {
        family(&mut out, name, "counter", help);
        for (qos, value) in values.iter().enumerate() {
            let _ = writeln!(out, "{name}{{qos=\"{qos}\"}} {value}");
        }
    }
    let counters = [
        ("musqratt_received_bytes_total", "Bytes read from clients.", m.bytes_received),
        ("musqratt_sent_bytes_total", "Bytes handed to the sockets.", m.bytes_sent),
    ];
    for (name, help, value) in counters {
        family(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {value}");
    }
    let name = "musqratt_dropped_messages_total";
    family(&mut out, name, "counter", "Messages dropped by the broker, by cause.");
    let d = &m.dropped;
    for (cause, value) in [
        ("queue_full", d.queue_full),
        ("slow_reader", d.slow_reader),
        ("expired", d.expired),
        ("not_authorized", d.not_authorized),
        ("too_large", d.too_large),
        ("backlog_full", d.backlog_full),
        ("store_full", d.store_full),
    ] {
        let _ = writeln!(out, "{name}{{cause=\"{cause}\"}} {value}");
    }
    let name = "musqratt_connect_refusals_total";
    family(&mut out, name, "counter", "CONNECTs refused, by MQTT 5.0 reason code.");
    for (code, value) in &m.connect_refusals {
        let _ = writeln!(out, "{name}{{reason_code=\"0x{code:02X}\"}} {value}");
    }
    let name = "musqratt_publish_latency_seconds";
    family(
        &mut out,
        name,
        "histogram",
        "Time from a PUBLISH's arrival in the broker to its delivery handed to the socket, by QoS of the delivery.",
    );
    for (qos, histogram) in m.latency.iter().enumerate() {
        histogram_lines(&mut out, name, qos, histogram);
    }
    out
}

fn histogram_lines(out: &mut String, name: &str, qos: usize, histogram: &Histogram) {
    let mut cumulative = 0;
    for index in 0..LATENCY_BUCKETS {
        cumulative += histogram.buckets[index];
        match Histogram::upper_bound_micros(index) {
            Some(micros) => {
                let le = seconds(micros);
                let _ = writeln!(out, "{name}_bucket{{qos=\"{qos}\",le=\"{le}\"}} {cumulative}");
            }
            None => {
                let _ = writeln!(out, "{name}_bucket{{qos=\"{qos}\",le=\"+Inf\"}} {cumulative}");
            }
        }
    }
    let sum = seconds(histogram.sum_micros);
    let _ = writeln!(out, "{name}_sum{{qos=\"{qos}\"}} {sum}");
    let _ = writeln!(out, "{name}_count{{qos=\"{qos}\"}} {}", histogram.count);
}

/// Microseconds as decimal seconds, exactly ("0.000001", "8.388608").
fn seconds(micros: u64) -> String {
    format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

/// `metrics` as a JSON object (`GET /api/v1/stats`): the same numbers as [`prometheus`], with
/// latency quantiles in microseconds (`null` while nothing was timed).
#[must_use]
pub fn json(metrics: &Metrics, uptime: Duration, version: &str) -> String {
    let m = metrics;
    let d = &m.dropped;
    let qos3 = |values: &[u64; 3]| format!("[{},{},{}]", values[0], values[1], values[2]);
    let mut refusals = String::new();
    for (code, count) in &m.connect_refusals {
        let comma = if refusals.is_empty() { "" } else { "," };
        let _ = write!(refusals, "{comma}\"0x{code:02X}\":{count}");
    }
    let mut latency = String::new();
    for (qos, histogram) in m.latency.iter().enumerate() {
        let comma = if qos == 0 { "" } else { "," };
        let _ = write!(latency, "{comma}\"qos{qos}\":{{\"count\":{}", histogram.count);
        for (name, per_mille) in SYS_QUANTILES {
            match histogram.quantile_micros(per_mille) {
                Some(micros) => {
                    let _ = write!(latency, ",\"{name}_us\":{micros}");
                }
                None => {
                    let _ = write!(latency, ",\"{name}_us\":null");
                }
            }
        }
        latency.push('}');
    }
    format!(
        concat!(
            "{{\"version\":\"{version}\",\"uptime_s\":{uptime},",
            "\"clients\":{{\"connected\":{},\"total\":{},\"maximum\":{}}},",
            "\"messages\":{{\"received\":{},\"sent\":{}}},",
            "\"payload_bytes\":{{\"received\":{},\"sent\":{}}},",
            "\"bytes\":{{\"received\":{},\"sent\":{}}},",
            "\"dropped\":{{\"queue_full\":{},\"slow_reader\":{},\"expired\":{},",
            "\"not_authorized\":{},\"too_large\":{},\"backlog_full\":{},\"store_full\":{}}},",
            "\"retained\":{},\"subscriptions\":{},\"shared_subscriptions\":{},",
            "\"queued\":{{\"messages\":{},\"bytes\":{}}},",
            "\"mqtt_sn\":{{\"peers\":{},\"sleeping\":{}}},",
            "\"connect_refusals\":{{{refusals}}},\"latency\":{{{latency}}}}}"
        ),
        m.clients_connected,
        m.clients_total,
        m.clients_maximum,
        qos3(&m.messages_received),
        qos3(&m.messages_sent),
        qos3(&m.payload_bytes_received),
        qos3(&m.payload_bytes_sent),
        m.bytes_received,
        m.bytes_sent,
        d.queue_full,
        d.slow_reader,
        d.expired,
        d.not_authorized,
        d.too_large,
        d.backlog_full,
        d.store_full,
        m.retained,
        m.subscriptions,
        m.shared_subscriptions,
        m.queued_messages,
        m.queued_bytes,
        m.sn_peers,
        m.sn_sleeping,
        version = json_escape(version),
        uptime = uptime.as_secs(),
        refusals = refusals,
        latency = latency,
    )
}

/// A page of clients as JSON (`GET /api/v1/clients`): `total`, `page`, `limit` and `clients`,
/// each with `client_id`, `username` (or `null`), `peer` (`"ip:port"` or `null`),
/// `protocol`, `connected_since` (Unix seconds), `connected_for_s` and `queued`.
#[must_use]
pub fn clients_json(page: &crate::ClientsPage) -> String {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let mut out = format!(
        "{{\"total\":{},\"page\":{},\"limit\":{},\"clients\":[",
        page.total, page.page, page.limit
    );
    for (index, client) in page.clients.iter().enumerate() {
        let comma = if index == 0 { "" } else { "," };
        let text = |value: Option<String>| match value {
            Some(value) => format!("\"{}\"", json_escape(&value)),
            None => "null".to_owned(),
        };
        let _ = write!(
            out,
            "{comma}{{\"client_id\":\"{}\",\"username\":{},\"peer\":{},\"protocol\":\"{}\",\
             \"connected_since\":{},\"connected_for_s\":{},\"queued\":{}}}",
            json_escape(&client.client_id),
            text(client.username.clone()),
            text(client.peer.map(|peer| peer.to_string())),
            client.protocol,
            now.saturating_sub(client.connected_for).as_secs(),
            client.connected_for.as_secs(),
            client.queued,
        );
    }
    out.push_str("]}");
    out
}

/// `text` with JSON's special characters escaped (RFC 8259 §7), for a string's inside.
#[must_use]
pub fn json_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| match c {
            '"' | '\\' => vec!['\\', c],
            c if c.is_control() => format!("\\u{:04x}", u32::from(c)).chars().collect(),
            c => vec![c],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Metrics {
        let mut m = Metrics::default();
        m.clients_connected = 3;
        m.clients_total = 4;
        m.messages_received = [5, 6, 0];
        m.messages_sent = [5, 6, 1];
        m.connect_refusals.insert(0x86, 2);
        m.latency[1].record(40);
        m.latency[1].record(3_000_000);
        m
    }

    #[test]
    fn sys_tree_has_mosquittos_names() {
        let tree = sys_tree(&sample(), Duration::from_secs(42), "1.2.3");
        let get = |topic: &str| {
            tree.iter().find(|(t, _)| t == topic).map(|(_, v)| v.as_str()).unwrap_or_default()
        };
        assert_eq!(get("$SYS/broker/uptime"), "42 seconds");
        assert_eq!(get("$SYS/broker/version"), "musqratt version 1.2.3");
        assert_eq!(get("$SYS/broker/clients/connected"), "3");
        assert_eq!(get("$SYS/broker/clients/disconnected"), "1");
        assert_eq!(get("$SYS/broker/messages/received"), "11");
        assert_eq!(get("$SYS/broker/messages/sent"), "12");
        assert_eq!(get("$SYS/broker/latency/qos1/p50"), "40");
        assert_eq!(get("$SYS/broker/latency/qos1/p99"), "3145728");
        assert!(!tree.iter().any(|(t, _)| t.starts_with("$SYS/broker/latency/qos0")));
    }

    #[test]
    fn prometheus_histogram_is_cumulative_in_seconds() {
        let text = prometheus(&sample(), Duration::from_secs(1));
        let bucket = "musqratt_publish_latency_seconds_bucket";
        assert!(text.contains(&format!("{bucket}{{qos=\"1\",le=\"0.000032\"}} 0\n")));
        assert!(text.contains(&format!("{bucket}{{qos=\"1\",le=\"0.000064\"}} 1\n")));
        assert!(text.contains(&format!("{bucket}{{qos=\"1\",le=\"+Inf\"}} 2\n")));
        assert!(text.contains("musqratt_publish_latency_seconds_sum{qos=\"1\"} 3.000040\n"));
        assert!(text.contains("musqratt_connect_refusals_total{reason_code=\"0x86\"} 2\n"));
        assert!(text.contains("musqratt_messages_received_total{qos=\"1\"} 6\n"));
    }

    #[test]
    fn json_is_one_object() {
        let text = json(&sample(), Duration::from_secs(7), "x\"y");
        assert!(text.starts_with("{\"version\":\"x\\\"y\",\"uptime_s\":7,"), "{text}");
        assert!(text.contains("\"messages\":{\"received\":[5,6,0],\"sent\":[5,6,1]}"), "{text}");
        assert!(text.contains("\"connect_refusals\":{\"0x86\":2}"), "{text}");
        assert!(text.contains("\"qos0\":{\"count\":0,\"p50_us\":null"), "{text}");
        assert!(text.contains("\"qos1\":{\"count\":2,\"p50_us\":40"), "{text}");
        let opens = text.matches('{').count();
        assert_eq!(opens, text.matches('}').count());
    }

    #[test]
    fn maximum_is_the_largest_seen() {
        let maximum = Maximum::default();
        let mut m = Metrics::default();
        (m.clients_connected, m.clients_maximum) = (7, 5);
        maximum.refine(&mut m);
        assert_eq!(m.clients_maximum, 7);
        (m.clients_connected, m.clients_maximum) = (2, 5);
        maximum.refine(&mut m);
        assert_eq!(m.clients_maximum, 7);
    }
}
