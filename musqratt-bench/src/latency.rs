//! `latency`: one publisher, one subscriber, a fixed rate. The tight path: blocking sockets with
//! TCP_NODELAY, one OS thread per direction (publisher writer, publisher acknowledgement reader,
//! subscriber reader and acknowledger), the send slots paced by a sleep-then-spin timer, the
//! send time stamped into the payload just before the write.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use core::time::Duration;
use std::io::ErrorKind;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Instant;

use bytes::BytesMut;
use hdrhistogram::Histogram;
use musqratt_proto::mqtt::Packet;

use crate::Placement;
use crate::report::histogram;
use crate::sys::{precise_timer_slack, spin_sleep_until};
use crate::transport::{SyncConn, Target};
use crate::wire;

/// Parameters of one latency run.
#[derive(Debug, Clone)]
pub(crate) struct LatencyCfg {
    pub(crate) target: Target,
    /// Who the clients log in as.
    pub(crate) login: wire::Login,
    pub(crate) qos: u8,
    pub(crate) rate: u64,
    pub(crate) payload: usize,
    pub(crate) duration: Duration,
    pub(crate) warmup: Duration,
    pub(crate) window: u64,
    pub(crate) spin: Duration,
    pub(crate) drain: Duration,
    /// Client ids of the MQTT publisher and subscriber (the MQTT-SN path names its own).
    pub(crate) pub_id: String,
    pub(crate) sub_id: String,
    /// The topic (default: one of the run's own, `mqb/<id>/lat`); `subs` puts it among the
    /// filters it holds, so that the broker's matcher walks past them.
    pub(crate) topic: Option<String>,
}

/// The latency clients' ids, chosen for a [`Placement`], and the shards musqratt puts them on.
#[derive(Debug, Clone)]
pub(crate) struct ClientIds {
    pub(crate) pub_id: String,
    pub(crate) sub_id: String,
    pub(crate) pub_shard: u16,
    pub(crate) sub_shard: u16,
}

impl ClientIds {
    /// The plain ids for `Any`; otherwise the publisher's id gets a counter appended until
    /// `musqratt_engine::owner_of` puts it on the subscriber's shard (`Same`) or another one
    /// (`Different`) among `shards`. Choosing ids rather than asking the broker keeps the bench
    /// usable against any broker, and a latency figure comes with the placement it had.
    pub(crate) fn pick(placement: Placement, shards: u16) -> anyhow::Result<Self> {
        anyhow::ensure!(
            placement != Placement::Different || shards > 1,
            "--placement different needs --shards 2 or more"
        );
        let shard = |id: &str| musqratt_engine::owner_of(id, shards).0;
        let sub_id = wire::client_id("lat-sub", 0);
        let sub_shard = shard(&sub_id);
        let pub_id = id_placed(&wire::client_id("lat-pub", 0), sub_shard, placement, shards)?;
        let pub_shard = shard(&pub_id);
        Ok(Self { pub_id, sub_id, pub_shard, sub_shard })
    }
}

/// `base`, or `base-N` for the first N that makes `musqratt_engine::owner_of` put the id on
/// `shard` (`Same`) or on another one (`Different`) among `shards`; `base` for `Any`.
pub(crate) fn id_placed(
    base: &str,
    shard: u16,
    placement: Placement,
    shards: u16,
) -> anyhow::Result<String> {
    anyhow::ensure!(
        placement != Placement::Different || shards > 1,
        "--placement different needs --shards 2 or more"
    );
    let wanted = |id_shard: u16| match placement {
        Placement::Any => true,
        Placement::Same => id_shard == shard,
        Placement::Different => id_shard != shard,
    };
    // With a well-mixed hash each try succeeds with probability 1/shards or more.
    for n in 0..100_000_u32 {
        let id = if n == 0 { base.to_owned() } else { format!("{base}-{n}") };
        if wanted(musqratt_engine::owner_of(&id, shards).0) {
            return Ok(id);
        }
    }
    anyhow::bail!("no client id found for placement {placement:?} over {shards} shards")
}

/// What one latency run measured.
pub(crate) struct LatencyOut {
    /// End-to-end latency of the messages sent after the warm-up, nanoseconds.
    pub(crate) latency: Histogram<u64>,
    /// How late each send was against its slot, nanoseconds (the generator's own jitter).
    pub(crate) send_lag: Histogram<u64>,
    pub(crate) sent: u64,
    pub(crate) acked: u64,
    pub(crate) seen: Seen,
    /// Sends that waited for the inflight window.
    pub(crate) window_waits: u64,
    pub(crate) send_rate: f64,
}

/// Which sequence numbers arrived: distinct, duplicated, out of order.
#[derive(Debug, Default, Clone)]
pub(crate) struct Seen {
    bits: Vec<u64>,
    pub(crate) distinct: u64,
    pub(crate) duplicates: u64,
    pub(crate) reordered: u64,
    next: u64,
}

impl Seen {
    pub(crate) fn mark(&mut self, seq: u64) {
        let word = (seq / 64) as usize;
        if word >= self.bits.len() {
            self.bits.resize((word + 1).next_power_of_two(), 0);
        }
        let bit = 1u64 << (seq % 64);
        if self.bits[word] & bit != 0 {
            self.duplicates += 1;
            return;
        }
        self.bits[word] |= bit;
        self.distinct += 1;
        if seq < self.next {
            self.reordered += 1;
        } else {
            self.next = seq + 1;
        }
    }
}

fn timed_out(error: &std::io::Error) -> bool {
    matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Runs one latency measurement (blocking: call from a blocking thread). `progress` counts
/// messages received.
pub(crate) fn run(cfg: &LatencyCfg, progress: &Arc<AtomicU64>) -> anyhow::Result<LatencyOut> {
    let topic = cfg.topic.clone().unwrap_or_else(|| format!("mqb/{}/lat", wire::client_id("t", 0)));
    let mut sub = SyncConn::connect(&cfg.target, &cfg.sub_id, wire::KEEP_ALIVE, &cfg.login)?;
    sub.subscribe(&topic, cfg.qos)?;
    let publisher = SyncConn::connect(&cfg.target, &cfg.pub_id, wire::KEEP_ALIVE, &cfg.login)?;

    let total = (cfg.rate as f64 * (cfg.warmup + cfg.duration).as_secs_f64()).round() as u64;
    let warmup_ns = cfg.warmup.as_nanos() as u64;
    let qos = cfg.qos;
    let stop = Arc::new(AtomicBool::new(false));
    let inflight = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(AtomicU64::new(0));
    let pub_writer = Arc::new(Mutex::new(publisher.writer()?));
    let base = Instant::now() + Duration::from_millis(5);

    let sub_thread = spawn_subscriber(sub, total, warmup_ns, base, &stop, progress)?;

    // Publisher acknowledgements (QoS 1 and 2).
    let mut pub_reader = publisher;
    pub_reader.set_read_timeout(Duration::from_millis(50))?;
    let ack_thread = (qos > 0).then(|| {
        let stop = Arc::clone(&stop);
        let inflight = Arc::clone(&inflight);
        let acked = Arc::clone(&acked);
        let writer = Arc::clone(&pub_writer);
        thread::Builder::new().name("lat-acks".into()).spawn(move || -> anyhow::Result<()> {
            let mut out = BytesMut::with_capacity(64);
            while acked.load(Ordering::Relaxed) < total && !stop.load(Ordering::Relaxed) {
                match pub_reader.fill() {
                    Ok(true) => {}
                    Ok(false) => anyhow::bail!("the broker closed the publisher's connection"),
                    Err(error) if timed_out(&error) => continue,
                    Err(error) => return Err(error.into()),
                }
                while let Some(packet) = pub_reader.try_decode()? {
                    match packet {
                        Packet::PubAck(_) | Packet::PubComp(_) => {
                            inflight.fetch_sub(1, Ordering::Relaxed);
                            acked.fetch_add(1, Ordering::Relaxed);
                        }
                        Packet::PubRec(r) => wire::ack(&mut out, wire::PUBREL, r.packet_id.get()),
                        _ => {}
                    }
                }
                if !out.is_empty() {
                    writer.lock().unwrap_or_else(PoisonError::into_inner).write_all(&out)?;
                    out.clear();
                }
            }
            Ok(())
        })
    });
    let ack_thread = ack_thread.transpose()?;

    // Publisher: paced sends.
    let pub_thread = {
        let cfg = cfg.clone();
        let inflight = Arc::clone(&inflight);
        let shared_writer = Arc::clone(&pub_writer);
        let stop = Arc::clone(&stop);
        thread::Builder::new().name("lat-pub".into()).spawn(move || -> anyhow::Result<_> {
            precise_timer_slack();
            let mut lag = histogram();
            let mut buf = BytesMut::with_capacity(cfg.payload + 64);
            let offset = wire::sent_ns_offset(&topic, qos, cfg.payload);
            let mut waits = 0;
            let mut sent = 0;
            let mut writer =
                shared_writer.lock().unwrap_or_else(PoisonError::into_inner).try_clone()?;
            let shared = qos == 2;
            pace(total, cfg.rate, base, cfg.spin, |seq, slot_ns| {
                if qos > 0 && inflight.load(Ordering::Relaxed) >= cfg.window {
                    waits += 1;
                    while inflight.load(Ordering::Relaxed) >= cfg.window {
                        if stop.load(Ordering::Relaxed) {
                            anyhow::bail!("stopped while waiting for acknowledgements");
                        }
                        thread::yield_now();
                    }
                }
                buf.clear();
                let id = (seq % 65_535) as u16 + 1;
                wire::publish(&mut buf, &topic, qos, id, seq, 0, 0, cfg.payload);
                if qos > 0 {
                    inflight.fetch_add(1, Ordering::Relaxed);
                }
                let now = base.elapsed().as_nanos() as u64;
                buf[offset..offset + 8].copy_from_slice(&now.to_le_bytes());
                if shared {
                    // PUBRELs go out on the acknowledgement thread: one writer at a time.
                    shared_writer.lock().unwrap_or_else(PoisonError::into_inner).write_all(&buf)?;
                } else {
                    writer.write_all(&buf)?;
                }
                let _ = lag.record(now.saturating_sub(slot_ns).max(1));
                sent += 1;
                Ok(())
            })?;
            let elapsed = base.elapsed().as_secs_f64();
            Ok((lag, sent, waits, elapsed))
        })?
    };
    let (lag, sent, window_waits, elapsed) =
        pub_thread.join().map_err(|_| anyhow::anyhow!("publisher thread panicked"))??;

    let drain_until = Instant::now() + cfg.drain;
    while Instant::now() < drain_until
        && !(sub_thread.is_finished()
            && ack_thread.as_ref().is_none_or(thread::JoinHandle::is_finished))
    {
        thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    let (latency, seen, mut sub) =
        sub_thread.join().map_err(|_| anyhow::anyhow!("subscriber thread panicked"))??;
    if let Some(thread) = ack_thread {
        thread.join().map_err(|_| anyhow::anyhow!("ack thread panicked"))??;
    }
    let _ = sub.write_all(&[0xE0, 0]);
    let _ = pub_writer.lock().unwrap_or_else(PoisonError::into_inner).write_all(&[0xE0, 0]);
    let send_rate = sent as f64 / (elapsed - 0.005).max(1e-6);
    Ok(LatencyOut {
        latency,
        send_lag: lag,
        sent,
        acked: if qos == 0 { sent } else { acked.load(Ordering::Relaxed) },
        seen,
        window_waits,
        send_rate,
    })
}

/// What a subscriber thread recorded, and its connection.
pub(crate) type Subscribed = (Histogram<u64>, Seen, SyncConn);

/// The subscriber's thread: reads PUBLISH packets until `total` distinct messages arrived or
/// `stop`, records the latency of those sent after `warmup_ns` (times are nanoseconds since
/// `base`), acknowledges QoS 1 and 2.
pub(crate) fn spawn_subscriber(
    mut sub: SyncConn,
    total: u64,
    warmup_ns: u64,
    base: Instant,
    stop: &Arc<AtomicBool>,
    progress: &Arc<AtomicU64>,
) -> anyhow::Result<thread::JoinHandle<anyhow::Result<Subscribed>>> {
    sub.set_read_timeout(Duration::from_millis(50))?;
    let stop = Arc::clone(stop);
    let progress = Arc::clone(progress);
    Ok(thread::Builder::new().name("lat-sub".into()).spawn(move || -> anyhow::Result<_> {
        let mut hist = histogram();
        let mut seen = Seen::default();
        let mut out = BytesMut::with_capacity(4096);
        let mut writer = sub.writer()?;
        while seen.distinct < total && !stop.load(Ordering::Relaxed) {
            match sub.fill() {
                Ok(true) => {}
                Ok(false) => anyhow::bail!("the broker closed the subscriber's connection"),
                Err(error) if timed_out(&error) => continue,
                Err(error) => return Err(error.into()),
            }
            let now = base.elapsed().as_nanos() as u64;
            let mut n = 0;
            while let Some(packet) = sub.try_decode()? {
                match packet {
                    Packet::Publish(p) => {
                        record(&p.payload, now, warmup_ns, &mut hist, &mut seen);
                        n += 1;
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
            if !out.is_empty() {
                writer.write_all(&out)?;
                out.clear();
            }
        }
        Ok((hist, seen, sub))
    })?)
}

/// Records a received payload (its header: sequence number, send time) at `now`.
pub(crate) fn record(
    payload: &[u8],
    now: u64,
    warmup_ns: u64,
    hist: &mut Histogram<u64>,
    seen: &mut Seen,
) {
    if let Some((seq, sent, _)) = wire::parse_header(payload) {
        seen.mark(seq);
        if sent >= warmup_ns {
            let _ = hist.record(now.saturating_sub(sent).max(1));
        }
    }
}

/// Calls `send(seq, slot_ns)` for `total` slots `rate` per second from `base`, sleeping until
/// `spin` before each slot and spinning the rest.
pub(crate) fn pace(
    total: u64,
    rate: u64,
    base: Instant,
    spin: Duration,
    mut send: impl FnMut(u64, u64) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let interval_ns = 1e9 / rate.max(1) as f64;
    for seq in 0..total {
        let slot_ns = (seq as f64 * interval_ns) as u64;
        spin_sleep_until(base + Duration::from_nanos(slot_ns), spin);
        send(seq, slot_ns)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_land_where_asked() {
        for shards in [2, 3, 4, 8] {
            for _ in 0..20 {
                let same = ClientIds::pick(Placement::Same, shards).unwrap();
                assert_eq!(same.pub_shard, same.sub_shard);
                assert_eq!(musqratt_engine::owner_of(&same.pub_id, shards).0, same.pub_shard);
                assert_eq!(musqratt_engine::owner_of(&same.sub_id, shards).0, same.sub_shard);
                let different = ClientIds::pick(Placement::Different, shards).unwrap();
                assert_ne!(different.pub_shard, different.sub_shard);
                assert_eq!(
                    musqratt_engine::owner_of(&different.pub_id, shards).0,
                    different.pub_shard
                );
                let any = ClientIds::pick(Placement::Any, shards).unwrap();
                assert!(any.pub_id.ends_with("lat-pub0"), "{}", any.pub_id);
            }
        }
        assert!(ClientIds::pick(Placement::Different, 1).is_err());
        assert!(ClientIds::pick(Placement::Same, 1).is_ok());
    }
}
