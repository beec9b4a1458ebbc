//! `latency --sn`: the publisher is an MQTT-SN 1.2 client over UDP (REGISTER, then PUBLISH QoS 0
//! with the topic id), the subscriber either another MQTT-SN client (SN → SN) or an MQTT client
//! (SN → MQTT). Against musqratt's `mqtt-sn://` listener, or against any MQTT-SN gateway (the
//! Paho gateway in front of Mosquitto in docs/BENCHMARKS.md). The pacing, the payload header and
//! the accounting are the `latency` scenario's.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use core::time::Duration;
use std::net::UdpSocket;
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use anyhow::Context;
use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use musqratt_proto::QoS;
use musqratt_proto::sn::{self, Message, MsgId, PublishTopic, ReturnCode, SnQoS, TopicId};

use crate::latency::{LatencyCfg, LatencyOut, Seen, Subscribed, pace, record, spawn_subscriber};
use crate::report::histogram;
use crate::sys::precise_timer_slack;
use crate::transport::SyncConn;
use crate::wire;

/// How long a setup step (CONNACK, REGACK, SUBACK) may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the subscriber of an SN latency run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SnPath {
    /// An MQTT-SN subscriber on the same gateway.
    SnToSn,
    /// An MQTT subscriber on the broker of `--url`.
    SnToMqtt,
}

/// An MQTT-SN client on a connected UDP socket.
struct SnClient {
    socket: UdpSocket,
    buf: Vec<u8>,
}

impl SnClient {
    fn connect(gateway: &str, client_id: &str) -> anyhow::Result<Self> {
        let socket = UdpSocket::bind("0.0.0.0:0").context("binding a UDP socket")?;
        socket.connect(gateway).with_context(|| format!("UDP to {gateway}"))?;
        socket.set_read_timeout(Some(SETUP_TIMEOUT))?;
        let mut client = Self { socket, buf: vec![0; 65_535] };
        let connect = sn::Connect {
            will: false,
            clean_session: true,
            duration: wire::KEEP_ALIVE,
            client_id: client_id.into(),
        };
        client.send(&Message::Connect(connect))?;
        match client.recv()? {
            Message::ConnAck(ReturnCode::Accepted) => Ok(client),
            other => anyhow::bail!("{gateway} refused the MQTT-SN CONNECT: {other:?}"),
        }
    }

    fn send(&self, message: &Message) -> anyhow::Result<()> {
        let mut out = BytesMut::new();
        sn::encode(message, &mut out)?;
        self.socket.send(&out)?;
        Ok(())
    }

    /// The next datagram, decoded (setup only: the timeout is long).
    fn recv(&mut self) -> anyhow::Result<Message> {
        let len = self.socket.recv(&mut self.buf).context("waiting for the gateway")?;
        Ok(sn::decode(Bytes::copy_from_slice(&self.buf[..len]))?)
    }

    /// REGISTER (§6.5): the topic id to publish with.
    fn register(&mut self, topic: &str) -> anyhow::Result<TopicId> {
        let register =
            sn::Register { topic_id: TopicId(0), msg_id: MsgId(1), topic_name: topic.into() };
        self.send(&Message::Register(register))?;
        match self.recv()? {
            Message::RegAck(ack) if ack.return_code == ReturnCode::Accepted => Ok(ack.topic_id),
            other => anyhow::bail!("REGISTER {topic} refused: {other:?}"),
        }
    }

    /// SUBSCRIBE by name at QoS 0 (§6.9).
    fn subscribe(&mut self, topic: &str) -> anyhow::Result<()> {
        let topic = sn::SubscribeTopic::Name(topic.into());
        let subscribe = sn::Subscribe { dup: false, qos: QoS::AtMostOnce, msg_id: MsgId(2), topic };
        self.send(&Message::Subscribe(subscribe))?;
        match self.recv()? {
            Message::SubAck(ack) if ack.return_code == ReturnCode::Accepted => Ok(()),
            other => anyhow::bail!("SUBSCRIBE refused: {other:?}"),
        }
    }
}

/// Runs one SN latency measurement at QoS 0 (blocking: call from a blocking thread).
pub(crate) fn run(
    cfg: &LatencyCfg,
    gateway: &str,
    path: SnPath,
    progress: &Arc<AtomicU64>,
) -> anyhow::Result<LatencyOut> {
    anyhow::ensure!(cfg.qos == 0, "latency --sn measures QoS 0 only");
    let topic = format!("mqb/{}/sn", wire::client_id("t", 0));
    let total = (cfg.rate as f64 * (cfg.warmup + cfg.duration).as_secs_f64()).round() as u64;
    let warmup_ns = cfg.warmup.as_nanos() as u64;
    let stop = Arc::new(AtomicBool::new(false));
    let base = Instant::now() + Duration::from_millis(5);

    let sub_thread = match path {
        SnPath::SnToMqtt => {
            let id = wire::client_id("snlat-sub", 0);
            let mut sub = SyncConn::connect(&cfg.target, &id, wire::KEEP_ALIVE, &cfg.login)?;
            sub.subscribe(&topic, 0)?;
            let mqtt = spawn_subscriber(sub, total, warmup_ns, base, &stop, progress)?;
            Subscriber::Mqtt(mqtt)
        }
        SnPath::SnToSn => {
            let mut sub = SnClient::connect(gateway, &wire::client_id("snsub", 0))?;
            sub.subscribe(&topic)?;
            Subscriber::Sn(spawn_sn_subscriber(sub, total, warmup_ns, base, &stop, progress)?)
        }
    };
    let mut publisher = SnClient::connect(gateway, &wire::client_id("snpub", 0))?;
    let topic_id = publisher.register(&topic)?;

    precise_timer_slack();
    let mut lag = histogram();
    let payload_len = cfg.payload.max(wire::HEADER_LEN);
    let mut data = vec![0u8; payload_len];
    let mut datagram = BytesMut::with_capacity(payload_len + 16);
    let mut sent = 0;
    pace(total, cfg.rate, base, cfg.spin, |seq, slot_ns| {
        data[..8].copy_from_slice(&seq.to_le_bytes());
        let publish = sn::Publish {
            dup: false,
            qos: SnQoS::AtMostOnce,
            retain: false,
            topic: PublishTopic::Normal(topic_id),
            msg_id: MsgId(0),
            data: Bytes::copy_from_slice(&data),
        };
        datagram.clear();
        sn::encode(&Message::Publish(publish), &mut datagram)?;
        // The payload ends the datagram: its send time is 8 bytes into it.
        let at = datagram.len() - payload_len + 8;
        let now = base.elapsed().as_nanos() as u64;
        datagram[at..at + 8].copy_from_slice(&now.to_le_bytes());
        publisher.socket.send(&datagram)?;
        let _ = lag.record(now.saturating_sub(slot_ns).max(1));
        sent += 1;
        Ok(())
    })?;
    let elapsed = base.elapsed().as_secs_f64();

    let drain_until = Instant::now() + cfg.drain;
    while Instant::now() < drain_until && !sub_thread.is_finished() {
        thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    let (latency, seen) = sub_thread.join()?;
    let _ = publisher.send(&Message::Disconnect(None));
    Ok(LatencyOut {
        latency,
        send_lag: lag,
        sent,
        acked: sent,
        seen,
        window_waits: 0,
        send_rate: sent as f64 / (elapsed - 0.005).max(1e-6),
    })
}

type Recorded = anyhow::Result<(Histogram<u64>, Seen)>;

enum Subscriber {
    Mqtt(thread::JoinHandle<anyhow::Result<Subscribed>>),
    Sn(thread::JoinHandle<Recorded>),
}

impl Subscriber {
    fn is_finished(&self) -> bool {
        match self {
            Self::Mqtt(thread) => thread.is_finished(),
            Self::Sn(thread) => thread.is_finished(),
        }
    }

    fn join(self) -> Recorded {
        let panicked = || anyhow::anyhow!("subscriber thread panicked");
        match self {
            Self::Mqtt(thread) => {
                let (latency, seen, mut sub) = thread.join().map_err(|_| panicked())??;
                let _ = sub.write_all(&[0xE0, 0]);
                Ok((latency, seen))
            }
            Self::Sn(thread) => thread.join().map_err(|_| panicked())?,
        }
    }
}

/// The MQTT-SN subscriber's thread: one datagram, one PUBLISH (QoS 0: nothing to acknowledge).
fn spawn_sn_subscriber(
    mut sub: SnClient,
    total: u64,
    warmup_ns: u64,
    base: Instant,
    stop: &Arc<AtomicBool>,
    progress: &Arc<AtomicU64>,
) -> anyhow::Result<thread::JoinHandle<Recorded>> {
    sub.socket.set_read_timeout(Some(Duration::from_millis(50)))?;
    let stop = Arc::clone(stop);
    let progress = Arc::clone(progress);
    Ok(thread::Builder::new().name("snlat-sub".into()).spawn(move || -> Recorded {
        let mut hist = histogram();
        let mut seen = Seen::default();
        while seen.distinct < total && !stop.load(Ordering::Relaxed) {
            let len = match sub.socket.recv(&mut sub.buf) {
                Ok(len) => len,
                Err(error)
                    if matches!(
                        error.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue;
                }
                Err(error) => return Err(error.into()),
            };
            let now = base.elapsed().as_nanos() as u64;
            if let Ok(Message::Publish(publish)) =
                sn::decode(Bytes::copy_from_slice(&sub.buf[..len]))
            {
                record(&publish.data, now, warmup_ns, &mut hist, &mut seen);
                progress.fetch_add(1, Ordering::Relaxed);
            }
        }
        let _ = sub.send(&Message::Disconnect(None));
        Ok((hist, seen))
    })?)
}

/// The `host:port` of an MQTT-SN URL (`mqtt-sn://host:port`, or `host:port`; port 1884 when
/// omitted).
pub(crate) fn gateway_addr(url: &str) -> anyhow::Result<String> {
    let rest = match url.split_once("://") {
        Some(("mqtt-sn" | "udp", rest)) => rest,
        Some((scheme, _)) => {
            anyhow::bail!("unsupported URL {url} ({scheme}://): use mqtt-sn://host:port")
        }
        None => url,
    };
    let rest = rest.trim_end_matches('/');
    let with_port = if rest.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        && !rest.ends_with(']')
    {
        rest.to_owned()
    } else {
        format!("{rest}:1884")
    };
    use std::net::ToSocketAddrs;
    let addr = with_port
        .to_socket_addrs()
        .with_context(|| format!("resolving {with_port}"))?
        .next()
        .with_context(|| format!("no address for {with_port}"))?;
    Ok(addr.to_string())
}
