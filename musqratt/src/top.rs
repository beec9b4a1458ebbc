//! `musqratt top` (issue 17, docs/OBSERVABILITY.md): the broker's numbers in a terminal, like
//! `htop`, read from a running broker's admin listener (`/api/v1/stats` every interval, and
//! `/api/v1/clients?sort=queued` for the longest queues). Plain ANSI escapes (home, clear), no
//! terminal library: the view is redrawn whole each second.

use core::fmt::Write as _;
use core::time::Duration;
use std::io::{self, Read as _, Write as _};
use std::net::TcpStream;

use base64::Engine as _;
use serde_json::Value;

/// How many of the longest queues are shown.
const TOP_QUEUES: usize = 10;
/// How long a request may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// An admin listener's address, from `http://[user:password@]host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminUrl {
    /// `host:port`, as given.
    pub authority: String,
    /// The `Authorization` header's value, when the URL has credentials.
    pub authorization: Option<String>,
}

impl AdminUrl {
    /// Parses `url`.
    ///
    /// # Errors
    /// Not `http://` (the admin listener speaks plain HTTP), or no host.
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url}: the admin listener's URL starts with http://"))?;
        let rest = rest.split('/').next().unwrap_or_default();
        let (credentials, authority) = match rest.rsplit_once('@') {
            Some((credentials, authority)) => (Some(credentials), authority),
            None => (None, rest),
        };
        if authority.is_empty() {
            return Err(format!("{url}: no host"));
        }
        let authority =
            if authority.contains(':') { authority.to_owned() } else { format!("{authority}:80") };
        let authorization = credentials
            .map(|c| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(c)));
        Ok(Self { authority, authorization })
    }

    /// `GET path`, parsed as JSON.
    ///
    /// # Errors
    /// The connection or request failed, the status is not 200, or the body is not JSON.
    pub fn get_json(&self, path: &str) -> Result<Value, String> {
        let fail = |e: io::Error| format!("http://{}{path}: {e}", self.authority);
        let mut stream = TcpStream::connect(&self.authority).map_err(fail)?;
        stream.set_read_timeout(Some(TIMEOUT)).map_err(fail)?;
        stream.set_write_timeout(Some(TIMEOUT)).map_err(fail)?;
        let auth = self
            .authorization
            .as_ref()
            .map(|value| format!("Authorization: {value}\r\n"))
            .unwrap_or_default();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {}\r\n{auth}Connection: close\r\n\r\n",
            self.authority
        )
        .map_err(fail)?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).map_err(fail)?;
        let answer = String::from_utf8_lossy(&answer);
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        let status = head.lines().next().unwrap_or_default();
        if !status.starts_with("HTTP/1.1 200") {
            return Err(format!("http://{}{path}: {status}", self.authority));
        }
        serde_json::from_str(body).map_err(|e| format!("http://{}{path}: {e}", self.authority))
    }
}

/// Runs the view: a frame every `every`, until interrupted; with `once`, one frame without
/// escapes (two reads `every` apart, so the rates are known).
///
/// # Errors
/// The broker cannot be read.
pub fn run(url: &str, every: Duration, once: bool) -> Result<(), String> {
    let admin = AdminUrl::parse(url)?;
    let mut previous = admin.get_json("/api/v1/stats")?;
    let mut out = io::stdout();
    loop {
        std::thread::sleep(every);
        let stats = admin.get_json("/api/v1/stats")?;
        let queues = admin.get_json(&format!("/api/v1/clients?sort=queued&limit={TOP_QUEUES}"))?;
        let frame = frame(url, &previous, &stats, &queues, every);
        if once {
            print!("{frame}");
            return out.flush().map_err(|e| e.to_string());
        }
        // Home, the frame, then clear what an older, longer frame left below.
        print!("\x1b[H{}\x1b[J", frame.replace('\n', "\x1b[K\n"));
        out.flush().map_err(|e| e.to_string())?;
        previous = stats;
    }
}

fn number(value: &Value) -> u64 {
    value.as_u64().unwrap_or(0)
}

fn sum(value: &Value) -> u64 {
    value.as_array().map_or(0, |values| values.iter().map(number).sum())
}

/// Per second, from two cumulative counts `every` apart.
fn rate(now: u64, before: u64, every: Duration) -> f64 {
    now.saturating_sub(before) as f64 / every.as_secs_f64().max(0.001)
}

fn micros(value: &Value) -> String {
    match value.as_u64() {
        None => "-".to_owned(),
        Some(us) if us >= 1_000_000 => format!("{:.1} s", us as f64 / 1e6),
        Some(us) if us >= 1_000 => format!("{:.1} ms", us as f64 / 1e3),
        Some(us) => format!("{us} µs"),
    }
}

fn uptime(seconds: u64) -> String {
    let (d, h, m, s) = (seconds / 86_400, seconds / 3600 % 24, seconds / 60 % 60, seconds % 60);
    if d > 0 { format!("{d}d {h:02}:{m:02}:{s:02}") } else { format!("{h:02}:{m:02}:{s:02}") }
}

/// One frame of the view: `stats` now, `previous` one interval before, `queues` the clients
/// with the longest queues.
#[must_use]
pub fn frame(
    url: &str,
    previous: &Value,
    stats: &Value,
    queues: &Value,
    every: Duration,
) -> String {
    let s = stats;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "musqratt {} at {url}, up {}",
        s["version"].as_str().unwrap_or("?"),
        uptime(number(&s["uptime_s"]))
    );
    let _ = writeln!(
        out,
        "Clients   {} connected, {} sessions, {} at most   MQTT-SN {} peers, {} asleep",
        number(&s["clients"]["connected"]),
        number(&s["clients"]["total"]),
        number(&s["clients"]["maximum"]),
        number(&s["mqtt_sn"]["peers"]),
        number(&s["mqtt_sn"]["sleeping"]),
    );
    let (received, sent) = (sum(&s["messages"]["received"]), sum(&s["messages"]["sent"]));
    let _ = writeln!(
        out,
        "Messages  in {:>9.1}/s  out {:>9.1}/s   (total in {received}, out {sent})",
        rate(received, sum(&previous["messages"]["received"]), every),
        rate(sent, sum(&previous["messages"]["sent"]), every),
    );
    let (bytes_in, bytes_out) = (number(&s["bytes"]["received"]), number(&s["bytes"]["sent"]));
    let _ = writeln!(
        out,
        "Bytes     in {:>9.0}/s  out {:>9.0}/s",
        rate(bytes_in, number(&previous["bytes"]["received"]), every),
        rate(bytes_out, number(&previous["bytes"]["sent"]), every),
    );
    for qos in 0..3 {
        let l = &s["latency"][format!("qos{qos}")];
        let _ = writeln!(
            out,
            "Latency   QoS {qos}  p50 {:>8}  p90 {:>8}  p99 {:>8}   ({} timed)",
            micros(&l["p50_us"]),
            micros(&l["p90_us"]),
            micros(&l["p99_us"]),
            number(&l["count"]),
        );
    }
    let d = &s["dropped"];
    let _ = writeln!(
        out,
        "Dropped   queue full {}, slow reader {}, expired {}, not authorized {}, too large {}",
        number(&d["queue_full"]),
        number(&d["slow_reader"]),
        number(&d["expired"]),
        number(&d["not_authorized"]),
        number(&d["too_large"]),
    );
    let _ = writeln!(
        out,
        "Retained  {}   subscriptions {} ({} shared)   queued {} messages, {} bytes",
        number(&s["retained"]),
        number(&s["subscriptions"]),
        number(&s["shared_subscriptions"]),
        number(&s["queued"]["messages"]),
        number(&s["queued"]["bytes"]),
    );
    let _ = writeln!(out, "\nLongest queues");
    let _ = writeln!(
        out,
        "{:<32} {:>8}  {:<12} {:<22} {:>10}",
        "CLIENT ID", "QUEUED", "PROTOCOL", "PEER", "CONNECTED"
    );
    for client in queues["clients"].as_array().into_iter().flatten() {
        let id = client["client_id"].as_str().unwrap_or_default();
        let id: String = id.chars().take(32).collect();
        let _ = writeln!(
            out,
            "{id:<32} {:>8}  {:<12} {:<22} {:>10}",
            number(&client["queued"]),
            client["protocol"].as_str().unwrap_or_default(),
            client["peer"].as_str().unwrap_or("-"),
            uptime(number(&client["connected_for_s"])),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_with_and_without_credentials() {
        let url = AdminUrl::parse("http://127.0.0.1:9090").unwrap();
        assert_eq!((url.authority.as_str(), url.authorization), ("127.0.0.1:9090", None));
        let url = AdminUrl::parse("http://admin:s3cret@localhost:9090/").unwrap();
        assert_eq!(url.authority, "localhost:9090");
        assert_eq!(url.authorization.as_deref(), Some("Basic YWRtaW46czNjcmV0"));
        assert_eq!(AdminUrl::parse("http://host").unwrap().authority, "host:80");
        assert!(AdminUrl::parse("https://host:1").is_err());
        assert!(AdminUrl::parse("http://").is_err());
    }

    #[test]
    fn a_frame_shows_rates_over_the_interval() {
        let before = serde_json::json!({"messages": {"received": [10, 0, 0], "sent": [0, 0, 0]}});
        let now = serde_json::json!({
            "version": "9.9.9", "uptime_s": 3725,
            "clients": {"connected": 4, "total": 5, "maximum": 6},
            "messages": {"received": [30, 0, 0], "sent": [5, 0, 0]},
            "latency": {"qos1": {"count": 2, "p50_us": 64, "p90_us": 2048, "p99_us": null}},
        });
        let queues = serde_json::json!({"clients": [{"client_id": "slow", "queued": 7,
            "protocol": "5.0", "peer": "127.0.0.1:5", "connected_for_s": 61}]});
        let text = frame("u", &before, &now, &queues, Duration::from_secs(2));
        assert!(text.starts_with("musqratt 9.9.9 at u, up 01:02:05\n"), "{text}");
        assert!(text.contains("4 connected, 5 sessions, 6 at most"), "{text}");
        assert!(text.contains("in      10.0/s  out       2.5/s"), "{text}");
        assert!(text.contains("QoS 1  p50    64 µs  p90   2.0 ms  p99        -"), "{text}");
        assert!(text.contains("\nslow                                    7  5.0"), "{text}");
    }
}
