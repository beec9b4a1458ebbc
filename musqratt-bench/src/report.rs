//! Results: one [`Report`] per scenario run, printed as one JSON object per line or as a table;
//! the progress bar.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use core::time::Duration;
use std::io::IsTerminal;
use std::sync::Arc;

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::{Map, Value, json};

/// The result of one scenario run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `latency`, `throughput`, `fanout`, `conns` or `floor`.
    pub scenario: String,
    /// What was measured: `--label`, or the URL.
    pub broker: String,
    /// The broker URL (or the relay's address for `floor`).
    pub url: String,
    /// Unix time of the end of the run, seconds.
    pub timestamp: u64,
    /// The parameters of the run.
    pub params: Map<String, Value>,
    /// The measurements.
    pub results: Map<String, Value>,
}

impl Report {
    pub(crate) fn new(scenario: &str, broker: &str, url: &str) -> Self {
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Self {
            scenario: scenario.to_owned(),
            broker: broker.to_owned(),
            url: url.to_owned(),
            timestamp,
            params: Map::new(),
            results: Map::new(),
        }
    }

    pub(crate) fn param(&mut self, key: &str, value: impl Serialize) {
        self.params.insert(key.to_owned(), json!(value));
    }

    pub(crate) fn result(&mut self, key: &str, value: impl Serialize) {
        self.results.insert(key.to_owned(), json!(value));
    }

    /// Adds `latency_us` (p50, p90, p99, p99.9, max, mean, count) and, with `cdf`, a list of
    /// `[quantile, µs]` points for plots, from a histogram in nanoseconds.
    pub(crate) fn latency(&mut self, key: &str, hist: &Histogram<u64>, cdf: bool) {
        let us = |ns: u64| (ns as f64 / 1000.0 * 100.0).round() / 100.0;
        let mut map = Map::new();
        if hist.is_empty() {
            map.insert("count".into(), json!(0));
        } else {
            for (name, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99_9", 0.999)] {
                map.insert(name.into(), json!(us(hist.value_at_quantile(q))));
            }
            map.insert("max".into(), json!(us(hist.max())));
            map.insert("min".into(), json!(us(hist.min())));
            map.insert("mean".into(), json!((hist.mean() / 10.0).round() / 100.0));
            map.insert("count".into(), json!(hist.len()));
            if cdf {
                let mut points = Vec::new();
                let mut q = 0.0_f64;
                // Dense in the tail: 0..0.9 by 0.05, then each nine split in 10.
                while q < 0.9 {
                    points.push(q);
                    q += 0.05;
                }
                for nines in 1..=5 {
                    let base = 1.0 - 0.1_f64.powi(nines);
                    let step = 0.1_f64.powi(nines + 1);
                    for k in 0..9 {
                        points.push(base + step * f64::from(k));
                    }
                }
                points.push(1.0);
                let cdf: Vec<Value> = points
                    .iter()
                    .map(|&q| json!([(q * 1e6).round() / 1e6, us(hist.value_at_quantile(q))]))
                    .collect();
                map.insert("cdf".into(), Value::Array(cdf));
            }
        }
        self.results.insert(key.to_owned(), Value::Object(map));
    }

    /// Prints the report: one JSON line, or a table.
    pub fn print(&self, json: bool) {
        if json {
            println!("{}", serde_json::to_string(self).unwrap_or_default());
            return;
        }
        println!("== {} · {} ({})", self.scenario, self.broker, self.url);
        let params: Vec<String> =
            self.params.iter().map(|(k, v)| format!("{k}={}", plain(v))).collect();
        println!("   {}", params.join(" "));
        let mut rows = Vec::new();
        for (key, value) in &self.results {
            match value {
                Value::Object(map) => {
                    let cells: Vec<String> = map
                        .iter()
                        .filter(|(k, _)| k.as_str() != "cdf")
                        .map(|(k, v)| format!("{k} {}", plain(v)))
                        .collect();
                    rows.push((key.clone(), cells.join("  ")));
                }
                other => rows.push((key.clone(), plain(other))),
            }
        }
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (key, value) in rows {
            println!("   {key:<width$}  {value}");
        }
    }
}

fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.abs() >= 1000.0 => format!("{f:.0}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// A progress bar over a run's duration showing a message count; hidden when standard error is
/// not a terminal or the run is shorter than 2 s. Stops when dropped.
pub(crate) struct Progress {
    done: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<()>>,
    bar: Option<ProgressBar>,
}

impl Progress {
    pub(crate) fn start(
        label: &str,
        total: Duration,
        counter: Arc<AtomicU64>,
        unit: &'static str,
    ) -> Self {
        let done = Arc::new(AtomicBool::new(false));
        if !std::io::stderr().is_terminal() || total < Duration::from_secs(2) {
            return Self { done, task: None, bar: None };
        }
        let bar = ProgressBar::new(total.as_millis() as u64);
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {elapsed}/{duration} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(label.to_owned());
        let flag = Arc::clone(&done);
        let handle = bar.clone();
        let task = tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            while !flag.load(Ordering::Relaxed) {
                tick.tick().await;
                let elapsed = start.elapsed();
                bar.set_position((elapsed.as_millis() as u64).min(total.as_millis() as u64));
                let n = counter.load(Ordering::Relaxed);
                let rate = n as f64 / elapsed.as_secs_f64().max(1e-3);
                bar.set_message(format!("{n} {unit} ({rate:.0}/s)"));
            }
        });
        Self { done, task: Some(task), bar: Some(handle) }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// A latency histogram in nanoseconds, 1 ns to 100 s, 3 significant digits.
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).unwrap_or_else(|_| Histogram::new(3).unwrap())
}
