//! `throughput` and `fanout`: P publishers, S subscribers, tokio tasks. Publishers send as fast
//! as the broker takes (or at `--rate`), QoS 1 and 2 with a bounded inflight window per
//! publisher; subscribers count deliveries received inside the measurement window and check
//! every sequence number of every publisher arrived.

use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;
use std::sync::Arc;

use bytes::BytesMut;
use hdrhistogram::Histogram;
use musqratt_proto::mqtt::Packet;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;

use crate::latency::Seen;
use crate::report::histogram;
use crate::transport::{AsyncConn, AsyncWriter, Target};
use crate::wire;

/// Parameters of one run.
#[derive(Debug, Clone)]
pub(crate) struct PubSubCfg {
    pub(crate) target: Target,
    /// Who the clients log in as.
    pub(crate) login: wire::Login,
    /// Where musqratt serves the publishers relative to the first subscriber, and its shard count.
    pub(crate) placement: (crate::Placement, u16),
    pub(crate) publishers: usize,
    pub(crate) subscribers: usize,
    pub(crate) qos: u8,
    pub(crate) payload: usize,
    pub(crate) window: usize,
    /// Total messages per second over all publishers; 0: as fast as possible.
    pub(crate) rate: u64,
    pub(crate) duration: Duration,
    pub(crate) warmup: Duration,
    pub(crate) drain: Duration,
    /// Subscribe to `prefix/+` (each publisher has its own topic) rather than one shared topic.
    pub(crate) wildcard: bool,
}

/// What one run measured.
pub(crate) struct PubSubOut {
    pub(crate) sent: u64,
    pub(crate) acked: u64,
    /// Deliveries received by all subscribers inside the measurement window.
    pub(crate) delivered_in_window: u64,
    pub(crate) measured: Duration,
    /// Messages published inside the measurement window (by send time).
    pub(crate) published_in_window: u64,
    pub(crate) expected: u64,
    pub(crate) distinct: u64,
    pub(crate) duplicates: u64,
    pub(crate) reordered: u64,
    pub(crate) latency: Histogram<u64>,
    /// Fan-out (1 publisher, several subscribers): per message published in the window and
    /// received by every subscriber (during the window or the drain), its latency to the last.
    pub(crate) last_subscriber: Option<Histogram<u64>>,
    /// Every expected delivery arrived before the drain ended.
    pub(crate) drained: bool,
    /// Time from the last publication to the end of the drain.
    pub(crate) drain_time: Duration,
}

/// Longest wait for the backlog after the last publication at QoS 1 and 2, and at QoS 0.
const DRAIN_CAP_QOS1: Duration = Duration::from_secs(60);
const DRAIN_CAP_QOS0: Duration = Duration::from_secs(10);

struct SubStats {
    seen: Vec<Seen>,
    latency: Histogram<u64>,
    /// Fan-out only: latency in ns of message `seq` (index) if it was published in the window
    /// and received (at any time before the run stopped), else 0.
    per_seq: Vec<u64>,
}

struct Clock {
    base: Instant,
    warm_ns: u64,
    end_ns: u64,
    /// Fan-out: subscribers keep each message's latency, for the time to the last of them.
    per_message: bool,
}

impl Clock {
    fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }
}

/// Runs one measurement. `progress` counts deliveries.
pub(crate) async fn run(cfg: &PubSubCfg, progress: Arc<AtomicU64>) -> anyhow::Result<PubSubOut> {
    let prefix = format!("mqb/{}", wire::client_id("t", 0));
    let filter = if cfg.wildcard { format!("{prefix}/+") } else { format!("{prefix}/t") };
    let topic =
        |i: usize| if cfg.wildcard { format!("{prefix}/p{i}") } else { format!("{prefix}/t") };

    let mut subs = Vec::new();
    for i in 0..cfg.subscribers {
        let mut conn = AsyncConn::connect(
            &cfg.target,
            &wire::client_id("sub", i),
            wire::KEEP_ALIVE,
            &cfg.login,
        )
        .await?;
        conn.subscribe(&filter, cfg.qos).await?;
        subs.push(conn);
    }
    let mut pubs = Vec::new();
    let (placement, shards) = cfg.placement;
    let sub_shard = musqratt_engine::owner_of(&wire::client_id("sub", 0), shards).0;
    for i in 0..cfg.publishers {
        let id =
            crate::latency::id_placed(&wire::client_id("pub", i), sub_shard, placement, shards)?;
        pubs.push(AsyncConn::connect(&cfg.target, &id, wire::KEEP_ALIVE, &cfg.login).await?);
    }

    let base = Instant::now();
    let clock = Arc::new(Clock {
        base,
        warm_ns: cfg.warmup.as_nanos() as u64,
        end_ns: (cfg.warmup + cfg.duration).as_nanos() as u64,
        per_message: cfg.publishers == 1 && cfg.subscribers > 1,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let in_window = Arc::new(AtomicU64::new(0));
    let distinct: Vec<Arc<AtomicU64>> =
        (0..cfg.subscribers).map(|_| Arc::new(AtomicU64::new(0))).collect();

    let mut sub_tasks = Vec::new();
    for (i, conn) in subs.into_iter().enumerate() {
        sub_tasks.push(tokio::spawn(subscriber(
            conn,
            cfg.publishers,
            Arc::clone(&clock),
            Arc::clone(&in_window),
            Arc::clone(&progress),
            Arc::clone(&distinct[i]),
            stop_rx.clone(),
        )));
    }
    let mut pub_tasks = Vec::new();
    let rate_each = cfg.rate as f64 / cfg.publishers.max(1) as f64;
    for (i, conn) in pubs.into_iter().enumerate() {
        pub_tasks.push(tokio::spawn(publisher(
            conn,
            i as u32,
            topic(i),
            cfg.clone(),
            rate_each,
            Arc::clone(&clock),
        )));
    }

    let mut sent = 0;
    let mut acked = 0;
    let mut published_in_window = 0;
    let mut sent_by = Vec::new();
    let mut pub_writers = Vec::new();
    for task in pub_tasks {
        let stats = task.await??;
        sent += stats.sent;
        acked += stats.acked;
        published_in_window += stats.in_window;
        sent_by.push(stats.sent);
        pub_writers.push(stats.writer);
    }
    let expected_each: u64 = sent;
    // Drain: wait while deliveries keep coming (a broker may have acknowledged far more than it
    // has delivered yet), until all arrived, `drain` passes without a new one, or the cap.
    let drain_start = Instant::now();
    let cap = if cfg.qos > 0 { DRAIN_CAP_QOS1 } else { DRAIN_CAP_QOS0 };
    let count = || distinct.iter().map(|d| d.load(Ordering::Relaxed)).sum::<u64>();
    let (mut last, mut last_change) = (count(), Instant::now());
    let mut drained = false;
    while drain_start.elapsed() < cap && last_change.elapsed() < cfg.drain {
        if distinct.iter().all(|d| d.load(Ordering::Relaxed) >= expected_each) {
            drained = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        let now = count();
        if now != last {
            (last, last_change) = (now, Instant::now());
        }
    }
    let drain_time = drain_start.elapsed();
    let _ = stop_tx.send(true);
    let mut out = PubSubOut {
        sent,
        acked,
        delivered_in_window: in_window.load(Ordering::Relaxed),
        measured: cfg.duration,
        published_in_window,
        expected: expected_each * cfg.subscribers as u64,
        distinct: 0,
        duplicates: 0,
        reordered: 0,
        latency: histogram(),
        last_subscriber: None,
        drained,
        drain_time,
    };
    let mut per_sub = Vec::with_capacity(cfg.subscribers);
    for task in sub_tasks {
        let stats = task.await??;
        for seen in &stats.seen {
            out.distinct += seen.distinct;
            out.duplicates += seen.duplicates;
            out.reordered += seen.reordered;
        }
        let _ = out.latency.add(&stats.latency);
        per_sub.push(stats.per_seq);
    }
    if cfg.publishers == 1 && cfg.subscribers > 1 {
        out.last_subscriber = Some(last_subscriber(&per_sub));
    }
    for mut writer in pub_writers {
        let _ = writer.write_all(&[0xE0, 0]).await;
    }
    Ok(out)
}

async fn subscriber(
    mut conn: AsyncConn,
    publishers: usize,
    clock: Arc<Clock>,
    in_window: Arc<AtomicU64>,
    progress: Arc<AtomicU64>,
    distinct: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<SubStats> {
    let mut stats =
        SubStats { seen: vec![Seen::default(); publishers], latency: histogram(), per_seq: vec![] };
    let mut out = BytesMut::with_capacity(4096);
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            filled = conn.fill() => if !filled? {
                anyhow::bail!("the broker closed a subscriber's connection");
            },
        }
        let now = clock.now_ns();
        let (mut n, mut counted) = (0, 0);
        while let Some(packet) = conn.try_decode()? {
            match packet {
                Packet::Publish(p) => {
                    n += 1;
                    let header = wire::parse_header(&p.payload);
                    if let Some((seq, sent, seen)) = header.and_then(|(seq, sent, publisher)| {
                        stats.seen.get_mut(publisher as usize).map(|seen| (seq, sent, seen))
                    }) {
                        seen.mark(seq);
                        let took = now.saturating_sub(sent).max(1);
                        if (clock.warm_ns..clock.end_ns).contains(&now) {
                            counted += 1;
                            let _ = stats.latency.record(took);
                        }
                        // Per message published in the window, whenever it arrives (the drain
                        // included): a lagging subscriber is the one this measures.
                        if clock.per_message && (clock.warm_ns..clock.end_ns).contains(&sent) {
                            let at = seq as usize;
                            if at >= stats.per_seq.len() {
                                stats.per_seq.resize(at + 1, 0);
                            }
                            stats.per_seq[at] = took;
                        }
                    }
                    match (p.qos as u8, p.packet_id) {
                        (1, Some(id)) => wire::ack(&mut out, wire::PUBACK, id.get()),
                        (2, Some(id)) => wire::ack(&mut out, wire::PUBREC, id.get()),
                        _ => {}
                    }
                }
                Packet::PubRel(r) => wire::ack(&mut out, wire::PUBCOMP, r.packet_id.get()),
                _ => {}
            }
        }
        progress.fetch_add(n, Ordering::Relaxed);
        in_window.fetch_add(counted, Ordering::Relaxed);
        distinct.store(stats.seen.iter().map(|s| s.distinct).sum(), Ordering::Relaxed);
        if !out.is_empty() {
            conn.write_all(&out).await?;
            out.clear();
        }
    }
    let _ = conn.write_all(&[0xE0, 0]).await;
    Ok(stats)
}

/// Per message published in the window that every subscriber received, the latency to the last of them (the
/// maximum over subscribers): how long a fan-out takes to reach everyone.
fn last_subscriber(per_sub: &[Vec<u64>]) -> Histogram<u64> {
    let len = per_sub.iter().map(Vec::len).max().unwrap_or(0);
    let (mut last, mut reached) = (vec![0u64; len], vec![0usize; len]);
    for per_seq in per_sub {
        for (seq, &took) in per_seq.iter().enumerate().filter(|(_, took)| **took > 0) {
            last[seq] = last[seq].max(took);
            reached[seq] += 1;
        }
    }
    let mut hist = histogram();
    for (took, n) in last.into_iter().zip(reached) {
        if n == per_sub.len() {
            let _ = hist.record(took);
        }
    }
    hist
}

struct PubStats {
    sent: u64,
    acked: u64,
    in_window: u64,
    writer: AsyncWriter,
}

/// Messages encoded per write when nothing limits them.
const BATCH: u64 = 32;

async fn publisher(
    conn: AsyncConn,
    index: u32,
    topic: String,
    cfg: PubSubCfg,
    rate: f64,
    clock: Arc<Clock>,
) -> anyhow::Result<PubStats> {
    let qos = cfg.qos;
    let (mut reader, mut writer) = conn.into_split();
    let window = Arc::new(Semaphore::new(if qos == 0 { 0 } else { cfg.window }));
    let acked = Arc::new(AtomicU64::new(0));
    let (rel_tx, mut rel_rx) = mpsc::unbounded_channel::<u16>();
    let reader_task = (qos > 0).then(|| {
        let window = Arc::clone(&window);
        let acked = Arc::clone(&acked);
        tokio::spawn(async move {
            loop {
                if !reader.fill().await? {
                    return anyhow::Ok(());
                }
                while let Some(packet) = reader.try_decode()? {
                    match packet {
                        Packet::PubAck(_) | Packet::PubComp(_) => {
                            acked.fetch_add(1, Ordering::Relaxed);
                            window.add_permits(1);
                        }
                        Packet::PubRec(r) => {
                            let _ = rel_tx.send(r.packet_id.get());
                        }
                        _ => {}
                    }
                }
            }
        })
    });

    let deadline = clock.base + cfg.warmup + cfg.duration;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let (mut seq, mut in_window) = (0u64, 0u64);
    while Instant::now() < deadline {
        buf.clear();
        while let Ok(id) = rel_rx.try_recv() {
            wire::ack(&mut buf, wire::PUBREL, id);
        }
        let mut n = BATCH;
        if rate > 0.0 {
            let due = (clock.base.elapsed().as_secs_f64() * rate) as u64;
            n = n.min(due.saturating_sub(seq));
        }
        if qos > 0 {
            let mut granted = 0;
            while granted < n {
                match window.try_acquire() {
                    Ok(permit) => {
                        permit.forget();
                        granted += 1;
                    }
                    Err(_) => break,
                }
            }
            n = granted;
        }
        if n == 0 && buf.is_empty() {
            let sleep = tokio::time::sleep_until(if rate > 0.0 {
                Instant::now() + Duration::from_millis(1)
            } else {
                deadline
            });
            if qos == 0 {
                sleep.await;
                continue;
            }
            tokio::select! {
                permit = window.acquire() => { permit?.forget(); n = 1; }
                Some(id) = rel_rx.recv() => wire::ack(&mut buf, wire::PUBREL, id),
                () = sleep => continue,
            }
        }
        let now = clock.now_ns();
        for _ in 0..n {
            let id = (seq % 65_535) as u16 + 1;
            wire::publish(&mut buf, &topic, qos, id, seq, now, index, cfg.payload);
            seq += 1;
        }
        writer.write_all(&buf).await?;
        // Counted when the kernel took the bytes: with a backlog, at the rate the broker reads.
        if (clock.warm_ns..clock.end_ns).contains(&clock.now_ns()) {
            in_window += n;
        }
    }
    // Wait for the last acknowledgements, still answering PUBREC.
    if qos > 0 {
        let drain_until = Instant::now() + cfg.drain;
        while acked.load(Ordering::Relaxed) < seq && Instant::now() < drain_until {
            buf.clear();
            tokio::select! {
                Some(id) = rel_rx.recv() => wire::ack(&mut buf, wire::PUBREL, id),
                () = tokio::time::sleep(Duration::from_millis(2)) => {}
            }
            while let Ok(id) = rel_rx.try_recv() {
                wire::ack(&mut buf, wire::PUBREL, id);
            }
            writer.write_all(&buf).await?;
        }
    }
    if let Some(task) = reader_task {
        task.abort();
        if let Ok(Err(error)) = task.await {
            return Err(error);
        }
    }
    Ok(PubStats { sent: seq, acked: acked.load(Ordering::Relaxed), in_window, writer })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_last_subscriber_is_the_slowest_and_partial_messages_are_left_out() {
        // Message 0: 10 and 30 µs; message 1: only the first subscriber (lost by the second);
        // message 2: 5 and 7 µs; message 3: received by neither in the window.
        let per_sub = vec![vec![10_000, 4_000, 5_000], vec![30_000, 0, 7_000, 0]];
        let hist = super::last_subscriber(&per_sub);
        assert_eq!(hist.len(), 2);
        assert!(hist.equivalent(hist.max(), 30_000), "{}", hist.max());
        assert!(hist.equivalent(hist.min(), 7_000), "{}", hist.min());
    }
}
