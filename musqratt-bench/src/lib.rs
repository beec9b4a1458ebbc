//! `musqratt bench`: the measuring instrument of MusQraTT, runnable against any MQTT broker.
//!
//! Scenarios (see `docs/BENCHMARKS.md` for the method and results):
//! - `latency`: 1 publisher → 1 subscriber at a fixed rate; HDR histogram of the end-to-end
//!   latency; lost, duplicated and reordered messages.
//! - `throughput`: P publishers → S subscribers of a wildcard filter; delivered messages per
//!   second; at QoS ≥ 1 every message must arrive.
//! - `fanout`: 1 publisher → S subscribers of one topic; deliveries per second.
//! - `conns`: N idle connections; time to connect them all, broker RSS per connection; with
//!   `--parallel 0` a connection storm (`--clean false`: persistent sessions).
//! - `subs`: N distinct subscriptions held; SUBSCRIBE rate, RSS per subscription, latency of a
//!   1 → 1 pair meanwhile.
//! - `retained`: N retained messages; RSS per message, time for a `#` subscriber to get them.
//! - `floor`: `latency` (or `throughput`) through a trivial in-process TCP relay instead of a
//!   broker: the physical floor and the generator's own ceiling.
//!
//! The `musqratt` binary calls [`run`] as `musqratt bench ...`; this crate's own binary
//! `musqratt-bench` takes the same arguments.

mod conns;
mod durable;
mod latency;
mod pubsub;
mod relay;
mod report;
mod retained;
mod scale;
mod sn;
mod subs;
mod sys;
mod transport;
mod wire;

use core::sync::atomic::AtomicU64;
use core::time::Duration;
use std::sync::Arc;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};

pub use report::Report;
pub use scale::{FilterShape, RetainedArgs, SubsArgs};

/// `musqratt bench` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The scenario to run.
    #[command(subcommand)]
    pub scenario: Scenario,
    /// Broker URL: `mqtt://host:port`, `mqtts://host:port` (TLS, needs `--cafile`),
    /// `ws://host:port/path` or `wss://host:port/path` (WebSocket, path `/mqtt` by default;
    /// default ports 1883, 8883, 8083, 8084),
    /// with `user:password@` before the host to log in; ignored by `floor`.
    #[arg(long, short = 'u', global = true, default_value = "mqtt://127.0.0.1:1883")]
    pub url: String,
    /// The CA certificate (PEM) that signed the broker's certificate, for `mqtts://` and
    /// `wss://` (the bench trusts nothing else; the server name checked is the URL's host).
    #[arg(long, global = true, value_name = "PATH")]
    pub cafile: Option<std::path::PathBuf>,
    /// Measured time (`5s`, `500ms`, `2m`); the warm-up comes before it.
    #[arg(long, short = 'd', global = true, default_value = "5s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Warm-up: messages sent in it are not measured.
    #[arg(long, global = true, default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// After the last send, stop waiting for deliveries and acknowledgements when none came
    /// for this long (throughput and fan-out also stop after 60 s at QoS 1/2, 10 s at QoS 0).
    #[arg(long, global = true, default_value = "2s", value_parser = parse_duration)]
    pub drain: Duration,
    /// Print one JSON object per scenario run instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// Name of the broker in the report (default: the URL).
    #[arg(long, global = true)]
    pub label: Option<String>,
    /// The broker's process id. Every scenario then reports the broker's CPU use over the
    /// measured window (`broker_cpu_cores`) and leaves it out of `other_cpu_cores`, the load of
    /// the rest of the machine; `conns` also reads the broker's memory and threads.
    #[arg(long, global = true)]
    pub pid: Option<u32>,
}

/// The scenarios.
#[derive(Debug, Clone, Subcommand)]
pub enum Scenario {
    /// 1 publisher → 1 subscriber at a fixed rate: latency percentiles, loss, duplicates, order.
    Latency(LatencyArgs),
    /// P publishers → S subscribers of a wildcard filter: delivered messages per second.
    Throughput(ThroughputArgs),
    /// 1 publisher → S subscribers of one topic: deliveries per second.
    Fanout(FanoutArgs),
    /// N idle connections: time to connect all, broker RSS per connection (with --pid).
    Conns(ConnsArgs),
    /// N distinct subscriptions held over C connections: SUBSCRIBE rate, RSS per subscription
    /// (with --pid), publish latency of a 1 → 1 pair while they are held.
    Subs(SubsArgs),
    /// N retained messages on distinct topics: RSS per message (with --pid), time for a `#`
    /// subscriber to receive them all.
    Retained(RetainedArgs),
    /// QoS 1 to a persistent session (Clean Session 0), subscriber online or away and then
    /// draining: publish and delivery rates, and bytes written to disk per payload byte.
    Durable(DurableArgs),
    /// A trivial TCP relay in place of the broker: the latency floor and the generator ceiling.
    Floor(FloorArgs),
    /// Serve the `floor` relay on an address until killed, as a process of its own (so that
    /// other scenarios can run against it like against a broker).
    Relay(RelayArgs),
}

/// Whether the persistent subscriber of `durable` is connected while the messages come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DurableMode {
    /// Connected throughout: delivered as they are accepted.
    Online,
    /// Away while they come (each is stored in its session), then back to drain them.
    Offline,
}

/// `durable` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct DurableArgs {
    /// Messages to send (each must arrive).
    #[arg(long, short = 'n', default_value_t = 100_000)]
    pub messages: u64,
    /// Payload bytes (at least 20).
    #[arg(long, short = 's', default_value_t = 64)]
    pub payload: usize,
    /// Unacknowledged publications allowed at once.
    #[arg(long, short = 'w', default_value_t = 100)]
    pub window: usize,
    /// Subscriber connected throughout, or away and then draining.
    #[arg(long, value_enum, default_value_t = DurableMode::Online)]
    pub mode: DurableMode,
}

/// `relay` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct RelayArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:1883")]
    pub listen: core::net::SocketAddr,
    /// Terminate TLS with this certificate chain (PEM), as a broker's `mqtts://` listener:
    /// the floor of a TLS hop (clients connect with `mqtts://` and `--cafile`).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The key of `--tls-cert` (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
}

/// `latency` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct LatencyArgs {
    /// QoS of the publication and the subscription.
    #[arg(long, short = 'q', default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// Messages per second.
    #[arg(long, short = 'r', default_value_t = 10_000)]
    pub rate: u64,
    /// Payload bytes (at least 20: sequence number, send time, publisher).
    #[arg(long, short = 's', default_value_t = 64)]
    pub payload: usize,
    /// Most messages awaiting acknowledgement at QoS 1 and 2 before a send waits.
    #[arg(long, default_value_t = 1000)]
    pub window: u64,
    /// The pacing timer sleeps until this many microseconds before a slot, then spins.
    #[arg(long, default_value_t = 20)]
    pub spin_us: u64,
    /// Publish over MQTT-SN 1.2 (UDP, QoS 0) to this gateway, `mqtt-sn://host:port`; the
    /// subscriber is an MQTT client on `--url` (SN → MQTT) unless `--sn-sub`.
    #[arg(long, value_name = "URL")]
    pub sn: Option<String>,
    /// With `--sn`: subscribe over MQTT-SN on the same gateway too (SN → SN).
    #[arg(long, requires = "sn")]
    pub sn_sub: bool,
    /// Whether musqratt puts the publisher and the subscriber on the same shard: the client ids
    /// are chosen so (a shard hop costs a cross-thread handoff per message, so latency is only
    /// comparable between runs of the same placement). `any`: the plain ids, wherever they
    /// land. The report's `pub_shard`, `sub_shard` and `placement` describe musqratt only;
    /// for another broker they are just a hash of the ids. Not with `--sn`.
    #[arg(long, value_enum, default_value_t = Placement::Any)]
    pub placement: Placement,
    /// The shard count of the musqratt broker under test (its `--threads`), with which the
    /// placement is computed; nothing is sent to the broker about it.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..))]
    pub shards: u16,
}

/// Where the latency publisher and subscriber land among musqratt's shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Placement {
    /// Whatever shards the plain client ids hash to.
    Any,
    /// Both on one shard: no hop between threads.
    Same,
    /// On two different shards: one hop between threads per message.
    Different,
}

/// `throughput` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ThroughputArgs {
    /// Publishers, each on its own topic `PREFIX/pI`.
    #[arg(long, short = 'p', default_value_t = 1)]
    pub publishers: usize,
    /// Subscribers, each to `PREFIX/+`.
    #[arg(long, short = 'S', default_value_t = 1)]
    pub subscribers: usize,
    /// QoS of the publications and subscriptions.
    #[arg(long, short = 'q', default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// Payload bytes (at least 20).
    #[arg(long, short = 's', default_value_t = 64)]
    pub payload: usize,
    /// Messages awaiting acknowledgement per publisher at QoS 1 and 2.
    #[arg(long, default_value_t = 100)]
    pub window: usize,
    /// Total messages per second over all publishers; 0: as fast as the broker takes them.
    #[arg(long, short = 'r', default_value_t = 0)]
    pub rate: u64,
    /// Publish to one shared topic and subscribe to it exactly, not through a wildcard.
    #[arg(long)]
    pub single_topic: bool,
    /// Whether musqratt serves every publisher on the first subscriber's shard (`same`), on
    /// another one (`different`), or wherever the plain ids land (`any`): throughput 1→1
    /// differs by ~1.5× between the two, more than most changes measured with it.
    #[arg(long, value_enum, default_value_t = Placement::Any)]
    pub placement: Placement,
    /// The shard count of the musqratt broker under test, with which the placement is computed.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..))]
    pub shards: u16,
}

/// `fanout` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct FanoutArgs {
    /// Subscribers of the topic.
    #[arg(long, short = 'S', default_value_t = 50)]
    pub subscribers: usize,
    /// QoS of the publication and subscriptions.
    #[arg(long, short = 'q', default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// Payload bytes (at least 20).
    #[arg(long, short = 's', default_value_t = 64)]
    pub payload: usize,
    /// Messages awaiting acknowledgement at QoS 1 and 2.
    #[arg(long, default_value_t = 100)]
    pub window: usize,
    /// Messages per second published; 0: as fast as the broker takes them.
    #[arg(long, short = 'r', default_value_t = 0)]
    pub rate: u64,
}

/// `conns` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnsArgs {
    /// Connections to open (the bench raises its own open-file limit to the hard limit; the
    /// broker needs `ulimit -n` above this too).
    #[arg(long, short = 'n', default_value_t = 1000)]
    pub connections: usize,
    /// Connection attempts in flight at once; 0: all of them (a connection storm).
    #[arg(long, default_value_t = 128)]
    pub parallel: usize,
    /// Clean Session flag: `false` gives every connection a persistent session (a storm of
    /// reconnecting devices with `--parallel 0`).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub clean: bool,
    /// Spread the connections over this many local addresses 127.0.0.1, 127.0.0.2, ... (a
    /// loopback broker only); 0: as many as needed at 20,000 connections each, since one source
    /// address has only the ~28k ports of the ephemeral range.
    #[arg(long, default_value_t = 0)]
    pub source_ips: usize,
    /// Keep alive of the CONNECT, seconds (0: none, which rumqttd refuses).
    #[arg(long, default_value_t = 600)]
    pub keep_alive: u16,
    /// Log in as this many numbered users, `USER0` to `USER<N-1>` (the URL's
    /// `mqtt://USER:PASSWORD@host`, same password for all), connection i as user i mod N;
    /// 0: every connection as the URL's user.
    #[arg(long, default_value_t = 0)]
    pub users: usize,
    /// How long the connections stay open (idle) before RSS is read.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub hold: Duration,
}

/// What `floor` measures through the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FloorMode {
    /// Latency at a fixed rate (as `latency`, QoS 0).
    Latency,
    /// The generator's ceiling: 1 → 1 QoS 0 as fast as possible (as `throughput`).
    Throughput,
}

/// `floor` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct FloorArgs {
    /// Latency or throughput through the relay.
    #[arg(long, value_enum, default_value_t = FloorMode::Latency)]
    pub mode: FloorMode,
    /// Messages per second (latency mode).
    #[arg(long, short = 'r', default_value_t = 10_000)]
    pub rate: u64,
    /// Payload bytes (at least 20).
    #[arg(long, short = 's', default_value_t = 64)]
    pub payload: usize,
    /// The pacing timer sleeps until this many microseconds before a slot, then spins.
    #[arg(long, default_value_t = 20)]
    pub spin_us: u64,
    /// Publish over MQTT-SN 1.2 (UDP, QoS 0) to this gateway, `mqtt-sn://host:port`; the
    /// subscriber is an MQTT client on `--url` (SN → MQTT) unless `--sn-sub`.
    #[arg(long, value_name = "URL")]
    pub sn: Option<String>,
    /// With `--sn`: subscribe over MQTT-SN on the same gateway too (SN → SN).
    #[arg(long, requires = "sn")]
    pub sn_sub: bool,
}

/// Parses `5s`, `250ms`, `2m`, `1.5s` or a plain number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number.trim().parse().map_err(|_| format!("bad duration: {text}"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!("bad duration: {text}"));
    }
    Ok(Duration::from_secs_f64(value * scale))
}

/// Runs the scenario and prints its report (JSON line or table).
///
/// # Errors
/// The broker cannot be reached or closes a connection, or a scenario's arguments are invalid.
pub async fn run(args: Args) -> anyhow::Result<()> {
    for report in run_reports(&args).await? {
        report.print(args.json);
    }
    Ok(())
}

/// Runs the scenario and returns its reports without printing them.
///
/// # Errors
/// As [`run`].
pub async fn run_reports(args: &Args) -> anyhow::Result<Vec<Report>> {
    sys::raise_nofile();
    let label = args.label.clone().unwrap_or_else(|| args.url.clone());
    // The measured window: after the warm-up for the timed scenarios (a few milliseconds early:
    // their clock starts once connected), the whole run for `conns`.
    let now = std::time::Instant::now();
    let window = match &args.scenario {
        Scenario::Conns(_) | Scenario::Durable(_) | Scenario::Subs(_) | Scenario::Retained(_) => {
            sys::CpuWindow::new(args.pid, now, None)
        }
        _ => {
            let start = now + args.warmup;
            sys::CpuWindow::new(args.pid, start, Some(start + args.duration))
        }
    };
    let mut report = match &args.scenario {
        Scenario::Latency(a) => {
            let target = transport::Target::parse(&args.url, args.cafile.as_deref())?;
            let mut cfg = latency_cfg(args, target, a.qos, a.rate, a.payload, a.window, a.spin_us);
            let sn = match &a.sn {
                Some(url) => {
                    let path = if a.sn_sub { sn::SnPath::SnToSn } else { sn::SnPath::SnToMqtt };
                    Some((sn::gateway_addr(url)?, path))
                }
                None => None,
            };
            anyhow::ensure!(
                sn.is_none() || a.placement == Placement::Any,
                "--placement applies to MQTT clients only, not with --sn"
            );
            let ids = (sn.is_none())
                .then(|| latency::ClientIds::pick(a.placement, a.shards))
                .transpose()?;
            if let Some(ids) = &ids {
                cfg.pub_id.clone_from(&ids.pub_id);
                cfg.sub_id.clone_from(&ids.sub_id);
            }
            let mut report = latency_report("latency", &label, &args.url, &cfg, sn).await?;
            if let Some(ids) = ids {
                report.param("shards", a.shards);
                report.param("pub_shard", ids.pub_shard);
                report.param("sub_shard", ids.sub_shard);
                let same = ids.pub_shard == ids.sub_shard;
                report.param("placement", if same { "same" } else { "different" });
            }
            report
        }
        Scenario::Throughput(a) => {
            let cfg = pubsub::PubSubCfg {
                target: transport::Target::parse(&args.url, args.cafile.as_deref())?,
                login: wire::Login::from_url(&args.url),
                publishers: a.publishers.max(1),
                subscribers: a.subscribers.max(1),
                qos: a.qos,
                payload: a.payload,
                window: a.window.clamp(1, 30_000),
                rate: a.rate,
                duration: args.duration,
                warmup: args.warmup,
                drain: args.drain,
                wildcard: !a.single_topic,
                placement: (a.placement, a.shards),
            };
            let mut report = pubsub_report("throughput", &label, &args.url, &cfg).await?;
            if a.placement != Placement::Any {
                report.param("placement", format!("{:?}", a.placement).to_lowercase());
                report.param("shards", a.shards);
            }
            report
        }
        Scenario::Fanout(a) => {
            let cfg = pubsub::PubSubCfg {
                target: transport::Target::parse(&args.url, args.cafile.as_deref())?,
                login: wire::Login::from_url(&args.url),
                publishers: 1,
                subscribers: a.subscribers.max(1),
                qos: a.qos,
                payload: a.payload,
                window: a.window.clamp(1, 30_000),
                rate: a.rate,
                duration: args.duration,
                warmup: args.warmup,
                drain: args.drain,
                wildcard: false,
                placement: (Placement::Any, 1),
            };
            pubsub_report("fanout", &label, &args.url, &cfg).await?
        }
        Scenario::Conns(a) => {
            let target = transport::Target::parse(&args.url, args.cafile.as_deref())?;
            conns_report(&label, &args.url, target, a, args.pid).await?
        }
        Scenario::Durable(a) => durable_report(&label, args, a).await?,
        Scenario::Subs(a) => scale::subs_report(&label, args, a).await?,
        Scenario::Retained(a) => scale::retained_report(&label, args, a).await?,
        Scenario::Relay(a) => {
            let layers = match (&a.tls_cert, &a.tls_key) {
                (Some(cert), Some(key)) => Some(musqratt_kit::Layers::tls(
                    musqratt_kit::layer::tls::TlsSettings::new(cert, key).load()?,
                )),
                _ => None,
            };
            let relay = relay::Relay::start(a.listen, layers).context("starting the relay")?;
            eprintln!("relay listening on {}", relay.addr());
            loop {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
        }
        Scenario::Floor(a) => {
            let any = core::net::SocketAddr::from(([127, 0, 0, 1], 0));
            let relay = relay::Relay::start(any, None).context("starting the relay")?;
            let addr = relay.addr().to_string();
            let url = format!("mqtt://{addr}");
            let target = transport::Target::plain(addr);
            let label = args.label.clone().unwrap_or_else(|| "relay".into());
            let mut report = match a.mode {
                FloorMode::Latency => {
                    let cfg = latency_cfg(args, target, 0, a.rate, a.payload, 1000, a.spin_us);
                    latency_report("floor", &label, &url, &cfg, None).await?
                }
                FloorMode::Throughput => {
                    let cfg = pubsub::PubSubCfg {
                        target,
                        login: wire::Login::default(),
                        publishers: 1,
                        subscribers: 1,
                        qos: 0,
                        payload: a.payload,
                        window: 1,
                        rate: 0,
                        duration: args.duration,
                        warmup: args.warmup,
                        drain: args.drain,
                        wildcard: false,
                        placement: (Placement::Any, 1),
                    };
                    pubsub_report("floor", &label, &url, &cfg).await?
                }
            };
            report.params.insert(
                "mode".into(),
                serde_json::json!(match a.mode {
                    FloorMode::Latency => "latency",
                    FloorMode::Throughput => "throughput",
                }),
            );
            drop(relay);
            report
        }
    };
    if let Some(pid) = args.pid {
        report.param("pid", pid);
    }
    if let Some(used) = window.finish() {
        report.result("other_cpu_cores", used.other_cores);
        if let Some(broker) = used.broker_cores {
            report.result("broker_cpu_cores", broker);
        }
    }
    Ok(vec![report])
}

pub(crate) fn latency_cfg(
    args: &Args,
    target: transport::Target,
    qos: u8,
    rate: u64,
    payload: usize,
    window: u64,
    spin_us: u64,
) -> latency::LatencyCfg {
    latency::LatencyCfg {
        target,
        login: wire::Login::from_url(&args.url),
        qos,
        rate: rate.max(1),
        payload,
        duration: args.duration,
        warmup: args.warmup,
        window: window.clamp(1, 30_000),
        spin: Duration::from_micros(spin_us),
        drain: args.drain,
        pub_id: wire::client_id("lat-pub", 0),
        sub_id: wire::client_id("lat-sub", 0),
        topic: None,
    }
}

async fn latency_report(
    scenario: &str,
    label: &str,
    url: &str,
    cfg: &latency::LatencyCfg,
    sn: Option<(String, sn::SnPath)>,
) -> anyhow::Result<Report> {
    let counter = Arc::new(AtomicU64::new(0));
    let progress = report::Progress::start(
        scenario,
        cfg.warmup + cfg.duration,
        Arc::clone(&counter),
        "received",
    );
    let run_cfg = cfg.clone();
    let run_sn = sn.clone();
    let out = tokio::task::spawn_blocking(move || match run_sn {
        None => latency::run(&run_cfg, &counter),
        Some((gateway, path)) => sn::run(&run_cfg, &gateway, path, &counter),
    })
    .await??;
    drop(progress);
    let mut report = Report::new(scenario, label, url);
    if let Some((gateway, path)) = &sn {
        report.param("sn_gateway", gateway);
        report.param("path", if *path == sn::SnPath::SnToSn { "sn->sn" } else { "sn->mqtt" });
    }
    report.param("qos", cfg.qos);
    report.param("rate", cfg.rate);
    report.param("payload", cfg.payload.max(wire::HEADER_LEN));
    report.param("duration_s", cfg.duration.as_secs_f64());
    report.param("warmup_s", cfg.warmup.as_secs_f64());
    if cfg.qos > 0 {
        report.param("window", cfg.window);
    }
    report.latency("latency_us", &out.latency, true);
    report.result("sent", out.sent);
    report.result("send_rate", (out.send_rate * 10.0).round() / 10.0);
    report.result("received", out.seen.distinct);
    report.result("lost", out.sent - out.seen.distinct.min(out.sent));
    report.result("duplicates", out.seen.duplicates);
    report.result("reordered", out.seen.reordered);
    if cfg.qos > 0 {
        report.result("acked", out.acked);
        report.result("window_waits", out.window_waits);
    }
    report.latency("send_lag_us", &out.send_lag, false);
    warn_loss(cfg.qos, out.sent - out.seen.distinct.min(out.sent), label);
    Ok(report)
}

async fn pubsub_report(
    scenario: &str,
    label: &str,
    url: &str,
    cfg: &pubsub::PubSubCfg,
) -> anyhow::Result<Report> {
    let counter = Arc::new(AtomicU64::new(0));
    let progress = report::Progress::start(
        scenario,
        cfg.warmup + cfg.duration,
        Arc::clone(&counter),
        "delivered",
    );
    let out = pubsub::run(cfg, counter).await?;
    drop(progress);
    let mut report = Report::new(scenario, label, url);
    report.param("publishers", cfg.publishers);
    report.param("subscribers", cfg.subscribers);
    report.param("qos", cfg.qos);
    report.param("payload", cfg.payload.max(wire::HEADER_LEN));
    report.param("filter", if cfg.wildcard { "wildcard" } else { "topic" });
    if cfg.qos > 0 {
        report.param("window", cfg.window);
    }
    if cfg.rate > 0 {
        report.param("rate", cfg.rate);
    }
    report.param("duration_s", cfg.duration.as_secs_f64());
    report.param("warmup_s", cfg.warmup.as_secs_f64());
    let secs = out.measured.as_secs_f64().max(1e-6);
    let per_s = |n: u64| (n as f64 / secs).round();
    report.result("deliveries_per_s", per_s(out.delivered_in_window));
    report.result("publish_per_s", per_s(out.published_in_window));
    report.result("sent", out.sent);
    if cfg.qos > 0 {
        report.result("acked", out.acked);
    }
    report.result("expected", out.expected);
    report.result("delivered", out.distinct);
    let lost = out.expected.saturating_sub(out.distinct);
    report.result("lost", lost);
    report.result("duplicates", out.duplicates);
    report.result("reordered", out.reordered);
    report.result("no_loss", lost == 0);
    report.result("drain_complete", out.drained);
    report.result("drain_s", (out.drain_time.as_secs_f64() * 1000.0).round() / 1000.0);
    report.latency("latency_us", &out.latency, false);
    if let Some(last) = &out.last_subscriber {
        report.latency("last_subscriber_us", last, false);
    }
    warn_loss(cfg.qos, lost, label);
    Ok(report)
}

async fn durable_report(label: &str, args: &Args, a: &DurableArgs) -> anyhow::Result<Report> {
    let cfg = durable::DurableCfg {
        target: transport::Target::parse(&args.url, args.cafile.as_deref())?,
        login: wire::Login::from_url(&args.url),
        messages: a.messages.max(1),
        payload: a.payload.max(wire::HEADER_LEN),
        window: a.window,
        offline: a.mode == DurableMode::Offline,
        pid: args.pid,
    };
    let out = durable::run(&cfg).await?;
    let mut report = Report::new("durable", label, &args.url);
    report.param("mode", if cfg.offline { "offline" } else { "online" });
    report.param("messages", cfg.messages);
    report.param("payload", cfg.payload);
    report.param("window", cfg.window);
    let rate = |time: Duration| (cfg.messages as f64 / time.as_secs_f64().max(1e-6)).round();
    report.result("publish_per_s", rate(out.publish_time));
    report.result(
        if cfg.offline { "drain_per_s" } else { "deliveries_per_s" },
        rate(out.delivery_time),
    );
    report.result("delivered", out.delivered);
    report.result("lost", cfg.messages.saturating_sub(out.delivered));
    report.result("duplicates", out.duplicates);
    if let Some(bytes) = out.disk_bytes {
        report.result("disk_write_bytes", bytes);
        let payload = (cfg.messages * cfg.payload as u64) as f64;
        report.result("write_amplification", (bytes as f64 / payload * 100.0).round() / 100.0);
    }
    warn_loss(1, cfg.messages.saturating_sub(out.delivered), label);
    Ok(report)
}

pub(crate) fn warn_loss(qos: u8, lost: u64, label: &str) {
    if qos > 0 && lost > 0 {
        eprintln!("warning: {label} lost {lost} message(s) at QoS {qos}");
    }
}

async fn conns_report(
    label: &str,
    url: &str,
    target: transport::Target,
    a: &ConnsArgs,
    pid: Option<u32>,
) -> anyhow::Result<Report> {
    let limit = sys::raise_nofile();
    if (limit as usize) < a.connections + 64 {
        eprintln!(
            "warning: the open-file limit is {limit}, fewer than {} connections need; raise \
             `ulimit -n` (hard limit)",
            a.connections
        );
    }
    let target_addr = target.addr.clone();
    let cfg = conns::ConnsCfg {
        target,
        login: wire::Login::from_url(url),
        users: a.users,
        connections: a.connections,
        parallel: a.parallel,
        keep_alive: a.keep_alive,
        hold: a.hold,
        pid,
        clean: a.clean,
        sources: conns::sources(&target_addr, a.connections, a.source_ips)?,
    };
    let counter = Arc::new(AtomicU64::new(0));
    let progress =
        report::Progress::start("conns", Duration::from_secs(2), Arc::clone(&counter), "connected");
    let out = conns::run(&cfg, counter).await?;
    drop(progress);
    let mut report = Report::new("conns", label, url);
    report.param("connections", a.connections);
    report.param("parallel", a.parallel);
    report.param("keep_alive", a.keep_alive);
    report.param("hold_s", a.hold.as_secs_f64());
    report.param("clean", a.clean);
    if !cfg.sources.is_empty() {
        report.param("source_ips", cfg.sources.len());
    }
    report.result("connected", out.connected);
    if !a.clean {
        report.result("sessions_present", out.sessions_present);
    }
    report.result("failed", out.failed);
    if let Some(error) = &out.first_error {
        report.result("first_error", error);
    }
    report.result("connect_all_s", (out.connect_all.as_secs_f64() * 1e4).round() / 1e4);
    report.result(
        "connects_per_s",
        (out.connected as f64 / out.connect_all.as_secs_f64().max(1e-6)).round(),
    );
    report.latency("connect_us", &out.connect_latency, false);
    if let (Some(before), Some(after)) = (out.rss_before, out.rss_after) {
        report.result("rss_before_bytes", before);
        report.result("rss_after_bytes", after);
        let per = after.saturating_sub(before) as f64 / out.connected.max(1) as f64;
        report.result("rss_per_conn_bytes", per.round());
    }
    if let (Some(before), Some(after)) = (out.threads_before, out.threads_after) {
        report.result("threads_before", before);
        report.result("threads_after", after);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("x").is_err());
    }
}
