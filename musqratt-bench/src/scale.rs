//! The scale scenarios of issue 19 as the command line gives them: `subs` and `retained`
//! (arguments and reports; the measuring is in `subs.rs` and `retained.rs`). The storm and the
//! idle connections are `conns`, the fan-out `fanout`.

use core::sync::atomic::AtomicU64;
use core::time::Duration;
use std::sync::Arc;

use clap::ValueEnum;

use crate::{Args, Report, parse_duration, report, retained, subs, transport, wire};

/// The filters `subs` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FilterShape {
    /// `PREFIX/f/<i>/x`: no wildcard.
    Exact,
    /// Every filter has a `+`: `PREFIX/f/<i>/+` and `PREFIX/f/+/<i>`, half each.
    Wildcard,
}

/// `subs` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct SubsArgs {
    /// Distinct filters to subscribe and hold.
    #[arg(long, short = 'n', default_value_t = 10_000)]
    pub filters: usize,
    /// Exact filters or wildcard ones.
    #[arg(long, value_enum, default_value_t = FilterShape::Exact)]
    pub shape: FilterShape,
    /// Connections the filters are spread over (filter i on connection i mod C).
    #[arg(long, short = 'c', default_value_t = 10)]
    pub clients: usize,
    /// SUBSCRIBE packets unacknowledged at once per connection.
    #[arg(long, short = 'w', default_value_t = 100)]
    pub window: usize,
    /// Filters per SUBSCRIBE packet.
    #[arg(long, default_value_t = 1)]
    pub per_packet: usize,
    /// QoS of the subscriptions and of the latency pair.
    #[arg(long, short = 'q', default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// Messages per second of the latency pair (for --duration after --warmup); 0: none.
    #[arg(long, short = 'r', default_value_t = 1000)]
    pub rate: u64,
    /// The shard count of the musqratt broker under test: the pair's client ids are chosen so
    /// that musqratt serves both on one shard (as `latency --placement same`), so that a hop
    /// between threads, which depends on the ids' luck, does not move the curve.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..))]
    pub shards: u16,
    /// How long the subscriptions are held before RSS is read.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub hold: Duration,
}

/// `retained` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct RetainedArgs {
    /// Retained messages, each on its own topic.
    #[arg(long, short = 'n', default_value_t = 10_000)]
    pub topics: u64,
    /// Payload bytes (at least 20).
    #[arg(long, short = 's', default_value_t = 64)]
    pub payload: usize,
    /// Unacknowledged publications allowed at once (they are published at QoS 1).
    #[arg(long, short = 'w', default_value_t = 100)]
    pub window: usize,
    /// QoS of the `#` subscription.
    #[arg(long, short = 'q', default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// How long the broker is left alone after the last publication before RSS is read.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub hold: Duration,
}

/// Runs `subs` and reports it.
pub(crate) async fn subs_report(label: &str, args: &Args, a: &SubsArgs) -> anyhow::Result<Report> {
    anyhow::ensure!(a.filters > 0, "--filters must be at least 1");
    let target = transport::Target::parse(&args.url, args.cafile.as_deref())?;
    let mut latency =
        (a.rate > 0).then(|| crate::latency_cfg(args, target.clone(), a.qos, a.rate, 64, 1000, 20));
    let ids = crate::latency::ClientIds::pick(crate::Placement::Same, a.shards)?;
    if let Some(cfg) = &mut latency {
        cfg.pub_id.clone_from(&ids.pub_id);
        cfg.sub_id.clone_from(&ids.sub_id);
    }
    let cfg = subs::SubsCfg {
        target,
        login: wire::Login::from_url(&args.url),
        filters: a.filters,
        wildcard: a.shape == FilterShape::Wildcard,
        clients: a.clients,
        window: a.window,
        per_packet: a.per_packet,
        qos: a.qos,
        hold: a.hold,
        pid: args.pid,
        latency,
    };
    let counter = Arc::new(AtomicU64::new(0));
    let progress =
        report::Progress::start("subs", Duration::from_secs(2), Arc::clone(&counter), "acked");
    let out = subs::run(&cfg, counter).await?;
    drop(progress);
    let mut report = Report::new("subs", label, &args.url);
    report.param("filters", a.filters);
    report.param("shape", if cfg.wildcard { "wildcard" } else { "exact" });
    report.param("clients", a.clients.clamp(1, a.filters));
    report.param("window", a.window);
    report.param("per_packet", a.per_packet);
    report.param("qos", a.qos);
    report.param("hold_s", a.hold.as_secs_f64());
    report.result("acknowledged", out.acknowledged);
    report.result("refused", out.refused);
    let secs = out.subscribe_time.as_secs_f64().max(1e-6);
    report.result("subscribe_s", (secs * 1e4).round() / 1e4);
    report.result("subscribes_per_s", (out.acknowledged as f64 / secs).round());
    if let (Some(before), Some(after)) = (out.rss_before, out.rss_after) {
        report.result("rss_before_bytes", before);
        report.result("rss_after_bytes", after);
        let per = after.saturating_sub(before) as f64 / out.acknowledged.max(1) as f64;
        report.result("rss_per_sub_bytes", (per * 10.0).round() / 10.0);
    }
    if let (Some(lat), Some(out)) = (&cfg.latency, &out.latency) {
        report.param("rate", lat.rate);
        report.param("shards", a.shards);
        report.param("pub_shard", ids.pub_shard);
        report.param("sub_shard", ids.sub_shard);
        report.param("duration_s", lat.duration.as_secs_f64());
        report.latency("latency_us", &out.latency, false);
        let lost = out.sent - out.seen.distinct.min(out.sent);
        report.result("sent", out.sent);
        report.result("lost", lost);
        crate::warn_loss(a.qos, lost, label);
    }
    Ok(report)
}

/// Runs `retained` and reports it.
pub(crate) async fn retained_report(
    label: &str,
    args: &Args,
    a: &RetainedArgs,
) -> anyhow::Result<Report> {
    anyhow::ensure!(a.topics > 0, "--topics must be at least 1");
    let cfg = retained::RetainedCfg {
        target: transport::Target::parse(&args.url, args.cafile.as_deref())?,
        login: wire::Login::from_url(&args.url),
        topics: a.topics,
        payload: a.payload.max(wire::HEADER_LEN),
        window: a.window,
        qos: a.qos,
        hold: a.hold,
        drain: args.drain,
        pid: args.pid,
    };
    let out = retained::run(&cfg).await?;
    let mut report = Report::new("retained", label, &args.url);
    report.param("topics", cfg.topics);
    report.param("payload", cfg.payload);
    report.param("window", cfg.window);
    report.param("qos", cfg.qos);
    report.param("hold_s", a.hold.as_secs_f64());
    let rate = |time: Duration| (cfg.topics as f64 / time.as_secs_f64().max(1e-6)).round();
    report.result("publish_s", (out.publish_time.as_secs_f64() * 1e4).round() / 1e4);
    report.result("publish_per_s", rate(out.publish_time));
    report.result("receive_all_s", (out.receive_time.as_secs_f64() * 1e4).round() / 1e4);
    report.result("receive_per_s", rate(out.receive_time));
    report.result("received", out.received);
    let lost = cfg.topics.saturating_sub(out.received);
    report.result("lost", lost);
    report.result("duplicates", out.duplicates);
    if let (Some(before), Some(after)) = (out.rss_before, out.rss_after) {
        report.result("rss_before_bytes", before);
        report.result("rss_after_bytes", after);
        let per = after.saturating_sub(before) as f64 / cfg.topics as f64;
        report.result("rss_per_retained_bytes", (per * 10.0).round() / 10.0);
    }
    if lost > 0 {
        eprintln!(
            "warning: {label} delivered {} of {} retained messages",
            out.received, cfg.topics
        );
    }
    Ok(report)
}
