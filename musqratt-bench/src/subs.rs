//! `subs`: N distinct subscriptions held by C connections (issue 19's subscription curve).
//!
//! 1. C clients connect (not timed; the broker's RSS is read once they are all in).
//! 2. Each subscribes its share of the N filters, filter `i` on client `i mod C`, SUBSCRIBE
//!    packets pipelined with at most `window` unacknowledged per client: the SUBSCRIBE rate is
//!    N over the time from the first SUBSCRIBE to the last SUBACK of all clients. A filter a
//!    broker refuses (reason code ≥ 0x80, MQTT-3.9.3) is counted as refused.
//! 3. After `hold`, RSS again: (after − before) / N is the memory per subscription.
//! 4. While they are held, a `latency` pair (1 → 1, fixed rate) publishes on a topic among the
//!    held filters, `PREFIX/f/lat/x`, which none of them matches: the broker's matcher walks
//!    past them on every publication, which is what the latency shows.
//!
//! Filter shapes: `exact`, filter `i` = `PREFIX/f/<i>/x`; `wildcard`, every filter has a
//! wildcard, half at the last level (`PREFIX/f/<i>/+`), half at the level every publication
//! under `PREFIX/f` enters (`PREFIX/f/+/<i>`).

use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;
use std::sync::Arc;

use bytes::BytesMut;
use musqratt_proto::mqtt::Packet;
use tokio::sync::{Barrier, Semaphore};
use tokio::time::Instant;

use crate::latency::{LatencyCfg, LatencyOut};
use crate::transport::{AsyncConn, Target};
use crate::wire;

/// Parameters of one run.
#[derive(Debug, Clone)]
pub(crate) struct SubsCfg {
    pub(crate) target: Target,
    pub(crate) login: wire::Login,
    pub(crate) filters: usize,
    pub(crate) wildcard: bool,
    pub(crate) clients: usize,
    /// SUBSCRIBE packets unacknowledged at once per client.
    pub(crate) window: usize,
    /// Filters per SUBSCRIBE packet.
    pub(crate) per_packet: usize,
    pub(crate) qos: u8,
    pub(crate) hold: Duration,
    pub(crate) pid: Option<u32>,
    /// The latency pair (its topic is set here); `None`: no publications.
    pub(crate) latency: Option<LatencyCfg>,
}

/// What one run measured.
pub(crate) struct SubsOut {
    pub(crate) acknowledged: u64,
    pub(crate) refused: u64,
    /// From the first SUBSCRIBE to the last SUBACK.
    pub(crate) subscribe_time: Duration,
    pub(crate) rss_before: Option<u64>,
    pub(crate) rss_after: Option<u64>,
    pub(crate) latency: Option<LatencyOut>,
}

/// Longest wait for a SUBACK: a broker that stops answering fails the run.
const PATIENCE: Duration = Duration::from_secs(30);

/// Filter `i` of a run under `prefix`.
pub(crate) fn filter(prefix: &str, i: usize, wildcard: bool) -> String {
    match (wildcard, i % 2) {
        (false, _) => format!("{prefix}/f/{i}/x"),
        (true, 0) => format!("{prefix}/f/{i}/+"),
        (true, _) => format!("{prefix}/f/+/{i}"),
    }
}

/// Runs one measurement. `progress` counts acknowledged subscriptions.
pub(crate) async fn run(cfg: &SubsCfg, progress: Arc<AtomicU64>) -> anyhow::Result<SubsOut> {
    let prefix = format!("mqb/{}", wire::client_id("t", 0));
    let clients = cfg.clients.clamp(1, cfg.filters.max(1));
    let mut conns = Vec::with_capacity(clients);
    for c in 0..clients {
        let id = wire::client_id("subs", c);
        conns.push(AsyncConn::connect(&cfg.target, &id, wire::KEEP_ALIVE, &cfg.login).await?);
    }
    let rss = || cfg.pid.and_then(|pid| crate::sys::proc_status(pid, "VmRSS").ok());
    let rss_before = rss();
    // Every client starts subscribing at once: the clock starts when the last one is ready.
    let barrier = Arc::new(Barrier::new(clients + 1));
    let mut tasks = Vec::with_capacity(clients);
    for (c, conn) in conns.into_iter().enumerate() {
        let filters: Vec<String> =
            (c..cfg.filters).step_by(clients).map(|i| filter(&prefix, i, cfg.wildcard)).collect();
        let (barrier, progress) = (Arc::clone(&barrier), Arc::clone(&progress));
        let (window, per_packet, qos) = (cfg.window.clamp(1, 65_535), cfg.per_packet, cfg.qos);
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            subscribe_all(conn, &filters, window, per_packet.max(1), qos, &progress).await
        }));
    }
    barrier.wait().await;
    let start = Instant::now();
    let mut held = Vec::with_capacity(clients);
    let (mut acknowledged, mut refused, mut last) = (0, 0, start);
    for task in tasks {
        let (conn, acked, no, done) = task.await??;
        (acknowledged, refused, last) = (acknowledged + acked, refused + no, last.max(done));
        held.push(conn);
    }
    let subscribe_time = last - start;
    tokio::time::sleep(cfg.hold).await;
    let rss_after = rss();
    let latency = match &cfg.latency {
        Some(lat) => {
            let mut lat = lat.clone();
            lat.topic = Some(format!("{prefix}/f/lat/x"));
            let counter = Arc::new(AtomicU64::new(0));
            Some(tokio::task::spawn_blocking(move || crate::latency::run(&lat, &counter)).await??)
        }
        None => None,
    };
    for conn in &mut held {
        let _ = conn.write_all(&[0xE0, 0]).await;
    }
    Ok(SubsOut { acknowledged, refused, subscribe_time, rss_before, rss_after, latency })
}

/// Subscribes `filters` on one connection, `per_packet` to a SUBSCRIBE, at most `window`
/// unacknowledged; returns the connection, the filters granted and refused, and when the last
/// SUBACK came.
async fn subscribe_all(
    conn: AsyncConn,
    filters: &[String],
    window: usize,
    per_packet: usize,
    qos: u8,
    progress: &AtomicU64,
) -> anyhow::Result<(AsyncConn, u64, u64, Instant)> {
    let packets = filters.len().div_ceil(per_packet);
    let (mut reader, mut writer) = conn.into_split();
    let gate = Arc::new(Semaphore::new(window));
    let acks = {
        let gate = Arc::clone(&gate);
        async move {
            let (mut subacks, mut granted, mut refused) = (0, 0, 0);
            while subacks < packets {
                while let Some(packet) = reader.try_decode()? {
                    if let Packet::SubAck(ack) = packet {
                        subacks += 1;
                        gate.add_permits(1);
                        let no = ack.reason_codes.iter().filter(|c| c.is_error()).count() as u64;
                        let yes = ack.reason_codes.len() as u64 - no;
                        progress.fetch_add(yes, Ordering::Relaxed);
                        (granted, refused) = (granted + yes, refused + no);
                    }
                }
                if subacks < packets {
                    let filled = tokio::time::timeout(PATIENCE, reader.fill()).await;
                    anyhow::ensure!(
                        matches!(filled, Ok(Ok(true))),
                        "no SUBACK within {PATIENCE:?} ({subacks} of {packets} packets answered)"
                    );
                }
            }
            anyhow::Ok((reader, granted, refused, Instant::now()))
        }
    };
    let sends = async {
        let mut out = BytesMut::new();
        let mut chunks = filters.chunks(per_packet);
        let mut id: u16 = 0;
        let mut sent = 0;
        while sent < packets {
            // As many as the window allows, in one write.
            gate.acquire().await?.forget();
            let mut batch = 1;
            while batch < 64 && sent + batch < packets {
                match gate.try_acquire() {
                    Ok(permit) => permit.forget(),
                    Err(_) => break,
                }
                batch += 1;
            }
            for chunk in chunks.by_ref().take(batch) {
                id = id % 65_535 + 1;
                wire::subscribe_many(&mut out, id, chunk, qos);
            }
            writer.write_all(&out).await?;
            out.clear();
            sent += batch;
        }
        anyhow::Ok(writer)
    };
    let (acked, writer) = tokio::join!(acks, sends);
    let (reader, granted, refused, done) = acked?;
    let writer = writer?;
    Ok((AsyncConn::from_split(reader, writer), granted, refused, done))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_distinct_and_match_no_latency_topic() {
        assert_eq!(filter("p", 7, false), "p/f/7/x");
        assert_eq!(filter("p", 8, true), "p/f/8/+");
        assert_eq!(filter("p", 9, true), "p/f/+/9");
        let all: std::collections::HashSet<String> =
            (0..1000).flat_map(|i| [filter("p", i, false), filter("p", i, true)]).collect();
        assert_eq!(all.len(), 2000);
        for f in &all {
            assert!(!musqratt_proto::topic::matches(f, "p/f/lat/x"), "{f}");
        }
    }

    #[test]
    fn subscribe_with_many_filters_decodes() {
        let mut buf = BytesMut::new();
        let filters = vec!["a/b".to_owned(), "c/+".to_owned()];
        wire::subscribe_many(&mut buf, 9, &filters, 1);
        let decoded = wire::decoder().decode(&mut buf);
        let Ok(Some(Packet::Subscribe(s))) = decoded else { panic!("{decoded:?}") };
        assert_eq!(s.packet_id.get(), 9);
        assert_eq!(s.filters.len(), 2);
        assert_eq!(&*s.filters[1].0, "c/+");
    }
}
