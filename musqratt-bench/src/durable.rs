//! `durable`: QoS 1 to a persistent session (MQTT 3.1.1, Clean Session 0), the load a broker's
//! persistence carries (issue 16). One publisher sends N messages with a bounded inflight
//! window to one topic that one persistent subscriber holds:
//!
//! - `online`: the subscriber is connected throughout; deliveries per second from the first
//!   publication to the last delivery.
//! - `offline`: the subscriber subscribes and leaves; the publisher's N messages are accepted
//!   (acknowledged) into its stored session (the accept rate is what a durable broker's write
//!   path sustains); then the subscriber comes back and drains them (the drain rate).
//!
//! Every message must arrive (counted by sequence number; duplicates, which QoS 1 allows after
//! a reconnection, are counted apart). With the broker's `--pid`, the bytes it wrote to disk
//! meanwhile (`/proc/PID/io`, `write_bytes`) are divided by the payload bytes: the write
//! amplification.

use core::time::Duration;
use std::sync::Arc;

use bytes::BytesMut;
use musqratt_proto::mqtt::Packet;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::latency::Seen;
use crate::transport::{AsyncConn, Target};
use crate::wire;

/// Parameters of one run.
#[derive(Debug, Clone)]
pub(crate) struct DurableCfg {
    pub(crate) target: Target,
    pub(crate) login: wire::Login,
    pub(crate) messages: u64,
    pub(crate) payload: usize,
    pub(crate) window: usize,
    pub(crate) offline: bool,
    pub(crate) pid: Option<u32>,
}

/// What one run measured.
#[derive(Debug)]
pub(crate) struct DurableOut {
    /// From the first publication to its last acknowledgement.
    pub(crate) publish_time: Duration,
    /// From the first publication (online) or the subscriber's return (offline) to the last
    /// delivery.
    pub(crate) delivery_time: Duration,
    pub(crate) delivered: u64,
    pub(crate) duplicates: u64,
    /// Bytes the broker process wrote to storage during the run, if its pid was given and its
    /// `/proc/PID/io` is readable.
    pub(crate) disk_bytes: Option<u64>,
}

/// Longest wait for any one packet: a broker that stops answering fails the run.
const PATIENCE: Duration = Duration::from_secs(30);

/// Runs one measurement.
pub(crate) async fn run(cfg: &DurableCfg) -> anyhow::Result<DurableOut> {
    let topic = format!("mqb/{}/durable", wire::client_id("t", 0));
    let sub_id = wire::client_id("dsub", 0);
    let (mut sub, _) = AsyncConn::connect_session(&cfg.target, &sub_id, &cfg.login, false).await?;
    sub.subscribe(&topic, 1).await?;
    let written_before = cfg.pid.and_then(disk_written);
    let start = Instant::now();
    let online = if cfg.offline {
        // DISCONNECT: the session stays, with its subscription (MQTT-3.1.2-4).
        sub.write_all(&[0xe0, 0]).await?;
        drop(sub);
        None
    } else {
        let messages = cfg.messages;
        Some(tokio::spawn(async move { receive(sub, messages, PATIENCE).await }))
    };
    let publish_time = publish_acked(
        &cfg.target,
        &cfg.login,
        cfg.messages,
        cfg.window,
        cfg.payload,
        false,
        |_, name| name.push_str(&topic),
    )
    .await?;
    let (seen, delivery_time) = match online {
        Some(task) => {
            let (seen, done) = task.await??;
            (seen, done - start)
        }
        None => {
            let back = Instant::now();
            let (sub, present) =
                AsyncConn::connect_session(&cfg.target, &sub_id, &cfg.login, false).await?;
            anyhow::ensure!(present, "the subscriber's session was not kept (session present 0)");
            let (seen, done) = receive(sub, cfg.messages, PATIENCE).await?;
            (seen, done - back)
        }
    };
    let disk_bytes = written_before
        .and_then(|before| Some(cfg.pid.and_then(disk_written)?.saturating_sub(before)));
    Ok(DurableOut {
        publish_time,
        delivery_time,
        delivered: seen.distinct,
        duplicates: seen.duplicates,
        disk_bytes,
    })
}

/// Publishes `messages` at QoS 1 (`payload` bytes each, sequence numbers 0, 1, ...) with at
/// most `window` unacknowledged, with the RETAIN flag if `retain`, message `seq` on the topic
/// `topic(seq, name)` writes into an empty `name`; returns the time to the last acknowledgement.
pub(crate) async fn publish_acked(
    target: &Target,
    login: &wire::Login,
    messages: u64,
    window: usize,
    payload: usize,
    retain: bool,
    mut topic: impl FnMut(u64, &mut String),
) -> anyhow::Result<Duration> {
    let (conn, _) =
        AsyncConn::connect_session(target, &wire::client_id("dpub", 0), login, true).await?;
    let (mut reader, mut writer) = conn.into_split();
    let window = Arc::new(Semaphore::new(window.clamp(1, 30_000)));
    let acks = {
        let window = Arc::clone(&window);
        tokio::spawn(async move {
            let mut acked = 0;
            while acked < messages {
                while let Some(packet) = reader.try_decode()? {
                    if let Packet::PubAck(_) = packet {
                        acked += 1;
                        window.add_permits(1);
                    }
                }
                if acked < messages {
                    let filled = tokio::time::timeout(PATIENCE, reader.fill()).await;
                    anyhow::ensure!(
                        matches!(filled, Ok(Ok(true))),
                        "no PUBACK within {PATIENCE:?} ({acked} of {messages} acknowledged)"
                    );
                }
            }
            anyhow::Ok(Instant::now())
        })
    };
    let start = Instant::now();
    let mut out = BytesMut::new();
    let mut name = String::new();
    let mut seq = 0;
    while seq < messages {
        // As many as the window allows, in one write.
        window.acquire().await?.forget();
        let mut batch = 1;
        while batch < 64 && seq + batch < messages {
            match window.try_acquire() {
                Ok(permit) => permit.forget(),
                Err(_) => break,
            }
            batch += 1;
        }
        for _ in 0..batch {
            let id = u16::try_from(seq % 65_535 + 1).unwrap_or(1);
            name.clear();
            topic(seq, &mut name);
            let at = out.len();
            wire::publish(&mut out, &name, 1, id, seq, 0, 0, payload);
            if retain {
                out[at] |= 0x01; // the RETAIN flag of the fixed header (§3.3.1.3)
            }
            seq += 1;
        }
        writer.write_all(&out).await?;
        out.clear();
    }
    let done = acks.await??;
    Ok(done - start)
}

/// Receives until `messages` distinct ones came, acknowledging each (one write per read), or
/// nothing came for `quiet` (then what came is returned: the caller counts the loss); returns
/// what came and when the last new one did.
pub(crate) async fn receive(
    mut conn: AsyncConn,
    messages: u64,
    quiet: Duration,
) -> anyhow::Result<(Seen, Instant)> {
    let mut seen = Seen::default();
    let mut out = BytesMut::new();
    let mut last = Instant::now();
    while seen.distinct < messages {
        while let Some(packet) = conn.try_decode()? {
            if let Packet::Publish(p) = packet {
                if let Some((seq, _, _)) = wire::parse_header(&p.payload) {
                    let before = seen.distinct;
                    seen.mark(seq);
                    if seen.distinct > before {
                        last = Instant::now();
                    }
                }
                if let Some(id) = p.packet_id {
                    wire::ack(&mut out, wire::PUBACK, id.get());
                }
            }
        }
        if !out.is_empty() {
            conn.write_all(&out).await?;
            out.clear();
        }
        if seen.distinct < messages {
            match tokio::time::timeout(quiet, conn.fill()).await {
                Ok(Ok(true)) => {}
                Err(_) => break,
                Ok(Ok(false)) => anyhow::bail!(
                    "the broker closed the subscriber ({} of {messages} received)",
                    seen.distinct
                ),
                Ok(Err(error)) => return Err(error.into()),
            }
        }
    }
    Ok((seen, last))
}

/// The bytes process `pid` has caused to be written to storage (`/proc/PID/io`, `write_bytes`).
fn disk_written(pid: u32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    io.lines().find_map(|line| line.strip_prefix("write_bytes:")?.trim().parse().ok())
}
