//! Bad input over real sockets (issue 4, item 6): an in-process [`Broker`] on an ephemeral port,
//! driven by the workspace's raw test client (musqratt-testkit's).
//!
//! The tests run one at a time (a shared lock): the memory test reads the process's resident set,
//! and the connection tests count file descriptors against `ulimit -n`.

use core::net::SocketAddr;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use core::time::Duration;
use std::process::Command;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use musqratt::config::FileConfig;
use musqratt::proto::bytestring::ByteString;
use musqratt::proto::mqtt::{Connect, Disconnect, Packet, PubResponse, Publish, ReasonCode};
use musqratt::proto::{PacketId, ProtocolVersion, QoS};
use musqratt::{Broker, BrokerConfig};
use musqratt_testkit::{Client, Event, WAIT, open, subscribe};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::Mutex;

/// Serialises the tests of this file (see the module comment).
static SERIAL: Mutex<()> = Mutex::const_new(());

/// A broker on an ephemeral port with `threads` shards, the file configuration edited by `edit`.
fn start(threads: usize, edit: impl FnOnce(&mut FileConfig)) -> Broker {
    let mut file = FileConfig::default();
    edit(&mut file);
    let mut config: BrokerConfig = file.broker_config().unwrap();
    config.listeners = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
    config.threads = threads;
    Broker::start(config).expect("broker starts")
}

/// Runs blocking broker control (shutdown joins threads) off the test's runtime.
async fn stop(broker: Broker) {
    tokio::task::spawn_blocking(move || broker.shutdown()).await.unwrap().unwrap();
}

/// A `/proc/self/status` field in KiB (`VmRSS`, `VmHWM`).
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/self/status"))
}

fn rss_mib() -> f64 {
    status_kib("VmRSS") as f64 / 1024.0
}

/// The soft limit on open files, raised towards the hard limit (at most 4096) with `prlimit`
/// where that works.
fn open_files_limit() -> u64 {
    let read = || {
        let limits = std::fs::read_to_string("/proc/self/limits").expect("/proc/self/limits");
        let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap().to_owned();
        let mut fields = line["Max open files".len()..].split_whitespace();
        let parse = |v: Option<&str>| v.and_then(|v| v.parse::<u64>().ok()).unwrap_or(u64::MAX);
        (parse(fields.next()), parse(fields.next()))
    };
    let (soft, hard) = read();
    let wanted = hard.min(4096);
    if soft < wanted {
        let _ = Command::new("prlimit")
            .arg("--pid")
            .arg(std::process::id().to_string())
            .arg(format!("--nofile={wanted}:{hard}"))
            .status();
    }
    read().0
}

/// The TCP sockets this process has open (the broker's listeners and connections, and the
/// test's), as "local -> remote STATE" from /proc/net/tcp. Only TCP: every tokio runtime with a
/// signal driver holds a Unix socket of its own, and the test harness starts the next test's
/// runtime whenever it likes, which once made a count of all sockets go up by one.
fn tcp_sockets() -> Vec<String> {
    let inodes: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            Some(target.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let states = [
        "?",
        "ESTABLISHED",
        "SYN_SENT",
        "SYN_RECV",
        "FIN_WAIT1",
        "FIN_WAIT2",
        "TIME_WAIT",
        "CLOSE",
        "CLOSE_WAIT",
        "LAST_ACK",
        "LISTEN",
        "CLOSING",
    ];
    ["/proc/self/net/tcp", "/proc/self/net/tcp6"]
        .iter()
        .flat_map(|table| {
            let table = std::fs::read_to_string(table).unwrap_or_default();
            table.lines().skip(1).map(str::to_owned).collect::<Vec<_>>()
        })
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (local, remote, state, inode) = (f.get(1)?, f.get(2)?, f.get(3)?, f.get(9)?);
            inodes.iter().any(|i| i == inode).then(|| {
                let state = usize::from_str_radix(state, 16).ok().and_then(|s| states.get(s));
                format!("{local} -> {remote} {}", state.unwrap_or(&"?"))
            })
        })
        .collect()
}

/// File descriptors this process has open.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

/// Reads until the broker closes (within [`WAIT`]), returning the last packet it sent before.
async fn closed(client: &mut Client) -> Option<Packet> {
    client.packets_until_closed(WAIT).await.pop()
}

/// A PUBLISH packet with the client's next packet identifier when `qos` needs one.
fn publish_packet(
    client: &mut Client,
    topic: &str,
    payload: Bytes,
    qos: QoS,
) -> (Packet, Option<PacketId>) {
    let mut publish = Publish::new(ByteString::from(topic), payload);
    publish.qos = qos;
    let packet_id = (qos != QoS::AtMostOnce).then(|| client.next_pid());
    publish.packet_id = packet_id;
    (Packet::Publish(publish), packet_id)
}

/// Publishes at QoS 1 and waits for the PUBACK, which must be the next packet.
async fn publish_1(client: &mut Client, topic: &str, payload: Bytes) {
    let mut publish = Publish::new(ByteString::from(topic), payload);
    publish.qos = QoS::AtLeastOnce;
    publish.packet_id = Some(client.next_pid());
    musqratt_testkit::publish_packet(client, publish).await;
}

fn connect(version: ProtocolVersion, client_id: &str) -> Packet {
    Packet::Connect(Box::new(Connect::new(version, client_id)))
}

/// The fixed header of a PUBLISH announcing `remaining` bytes (variable byte integer).
fn publish_header(remaining: u32) -> Vec<u8> {
    let mut header = vec![0x30];
    let mut rest = remaining;
    loop {
        let byte = (rest % 128) as u8;
        rest /= 128;
        if rest == 0 {
            header.push(byte);
            return header;
        }
        header.push(byte | 0x80);
    }
}

/// A subscriber and a publisher on `topic` that exchange a QoS 1 message, proving the broker
/// still serves.
async fn still_serves(addr: SocketAddr, topic: &str) {
    let mut sub =
        musqratt_testkit::connect(addr, &format!("{topic}-sub"), ProtocolVersion::V5).await;
    subscribe(&mut sub, topic, QoS::AtLeastOnce).await;
    let mut publ =
        musqratt_testkit::connect(addr, &format!("{topic}-pub"), ProtocolVersion::V3_1_1).await;
    publish_1(&mut publ, topic, Bytes::from_static(b"alive")).await;
    match sub.recv().await {
        Packet::Publish(p) => {
            sub.send(&Packet::PubAck(PubResponse::new(p.packet_id.unwrap())));
            assert_eq!(&p.payload[..], b"alive");
        }
        other => panic!("the broker no longer delivers: {other:?}"),
    }
}

/// Malformed packets sent after a successful CONNECT, as raw bytes, with the reason code an MQTT
/// 5.0 client gets in the broker's DISCONNECT before the close (MQTT-4.13.1-1: a Malformed Packet
/// or Protocol Error closes the Network Connection; §4.13.2: in 5.0 the Server MAY send a
/// DISCONNECT with the Reason Code first).
const MALFORMED_V5: &[(&str, &[u8], ReasonCode)] = &[
    ("reserved packet type 0", &[0x00, 0x00], ReasonCode::MALFORMED_PACKET),
    // MQTT-3.8.1-1: SUBSCRIBE's fixed header flags are 0010.
    (
        "SUBSCRIBE with header flags 0000",
        &[0x80, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, b'a', 0x00],
        ReasonCode::MALFORMED_PACKET,
    ),
    // §1.5.5: a Variable Byte Integer has at most four bytes.
    (
        "Remaining Length of five bytes",
        &[0x30, 0xff, 0xff, 0xff, 0xff, 0x01],
        ReasonCode::MALFORMED_PACKET,
    ),
    // MQTT-3.3.1-4: a PUBLISH never has both QoS bits set.
    (
        "PUBLISH at QoS 3",
        &[0x36, 0x06, 0x00, 0x01, b'a', 0x00, 0x01, 0x00],
        ReasonCode::MALFORMED_PACKET,
    ),
    // MQTT-1.5.4-1: ill-formed UTF-8.
    (
        "PUBLISH topic not UTF-8",
        &[0x30, 0x05, 0x00, 0x02, 0xc3, 0x28, 0x00],
        ReasonCode::MALFORMED_PACKET,
    ),
    // MQTT-3.3.2-2: no wildcards in a Topic Name.
    (
        "PUBLISH topic with a wildcard",
        &[0x30, 0x06, 0x00, 0x03, b'a', b'/', b'+', 0x00],
        ReasonCode::TOPIC_NAME_INVALID,
    ),
    // §2.2.2.2: an unknown property identifier.
    (
        "PUBLISH with property 0x7f",
        &[0x30, 0x06, 0x00, 0x01, b'a', 0x02, 0x7f, 0x00],
        ReasonCode::MALFORMED_PACKET,
    ),
    // §3.3.2.3.2: Payload Format Indicator at most once.
    (
        "PUBLISH with a property twice",
        &[0x30, 0x08, 0x00, 0x01, b'a', 0x04, 0x01, 0x00, 0x01, 0x00],
        ReasonCode::PROTOCOL_ERROR,
    ),
    // The topic length runs past the end of the packet.
    ("PUBLISH truncated", &[0x30, 0x03, 0x00, 0x05, b'a'], ReasonCode::MALFORMED_PACKET),
    // MQTT-3.8.3-2: a SUBSCRIBE has at least one filter.
    ("SUBSCRIBE without filters", &[0x82, 0x03, 0x00, 0x01, 0x00], ReasonCode::MALFORMED_PACKET),
    // MQTT-2.2.1-3: packet identifiers are non-zero.
    ("PUBACK for packet identifier 0", &[0x40, 0x02, 0x00, 0x00], ReasonCode::MALFORMED_PACKET),
    // §2.1.2: CONNACK goes from server to client only.
    ("CONNACK from a client", &[0x20, 0x03, 0x00, 0x00, 0x00], ReasonCode::PROTOCOL_ERROR),
];

/// The 3.1.1 counterparts: closed without a word (3.1.1 has no server DISCONNECT).
const MALFORMED_V311: &[(&str, &[u8])] = &[
    ("reserved packet type 0", &[0x00, 0x00]),
    ("SUBSCRIBE with header flags 0000", &[0x80, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x00]),
    ("Remaining Length of five bytes", &[0x30, 0xff, 0xff, 0xff, 0xff, 0x01]),
    ("PUBLISH at QoS 3", &[0x36, 0x05, 0x00, 0x01, b'a', 0x00, 0x01]),
    ("PUBLISH topic not UTF-8", &[0x30, 0x04, 0x00, 0x02, 0xc3, 0x28]),
    ("PUBLISH topic with a wildcard", &[0x30, 0x05, 0x00, 0x03, b'a', b'/', b'#']),
    ("PUBLISH truncated", &[0x30, 0x03, 0x00, 0x05, b'a']),
    ("SUBSCRIBE without filters", &[0x82, 0x02, 0x00, 0x01]),
    ("PUBACK for packet identifier 0", &[0x40, 0x02, 0x00, 0x00]),
    ("CONNACK from a client", &[0x20, 0x02, 0x00, 0x00]),
];

#[tokio::test]
async fn malformed_packets_close_the_connection() {
    let _serial = SERIAL.lock().await;
    let broker = start(2, |_| {});
    let addr = broker.local_addr();
    for (i, (case, bytes, reason)) in MALFORMED_V5.iter().enumerate() {
        let mut client =
            musqratt_testkit::connect(addr, &format!("bad5-{i}"), ProtocolVersion::V5).await;
        client.write_all(bytes).await;
        match closed(&mut client).await {
            Some(Packet::Disconnect(d)) => {
                assert_eq!(
                    d.reason_code, *reason,
                    "5.0 {case}: DISCONNECT {:#04x}",
                    d.reason_code.0
                );
            }
            other => panic!("5.0 {case}: expected DISCONNECT {:#04x}, got {other:?}", reason.0),
        }
    }
    for (i, (case, bytes)) in MALFORMED_V311.iter().enumerate() {
        let id = format!("bad311-{i}");
        let mut client = musqratt_testkit::connect(addr, &id, ProtocolVersion::V3_1_1).await;
        client.write_all(bytes).await;
        assert_eq!(closed(&mut client).await, None, "3.1.1 {case}");
    }
    // A second CONNECT is a Protocol Error (MQTT-3.1.0-2).
    let mut client = musqratt_testkit::connect(addr, "twice", ProtocolVersion::V5).await;
    client.send(&connect(ProtocolVersion::V5, "twice"));
    match closed(&mut client).await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason_code, ReasonCode::PROTOCOL_ERROR),
        other => panic!("second CONNECT: expected DISCONNECT 0x82, got {other:?}"),
    }
    // Before CONNECT: anything else first, or not MQTT at all, is closed with nothing sent
    // (MQTT-3.1.0-1, MQTT-3.1.2-1).
    let before_connect: &[(&str, &[u8])] = &[
        ("PINGREQ first", &[0xc0, 0x00]),
        ("HTTP request", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        (
            "protocol name MQTX",
            &[
                0x10, 0x0d, 0x00, 0x04, b'M', b'Q', b'T', b'X', 0x04, 0x02, 0x00, 0x00, 0x00, 0x01,
                b'x',
            ],
        ),
        (
            "CONNECT reserved flag set",
            &[
                0x10, 0x0d, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x03, 0x00, 0x00, 0x00, 0x01,
                b'x',
            ],
        ),
        ("random bytes", &[0xde, 0xad, 0xbe, 0xef, 0x00, 0xff, 0x13, 0x37]),
    ];
    for (case, bytes) in before_connect {
        let mut client = open(addr, ProtocolVersion::V3_1_1).await;
        client.write_all(bytes).await;
        assert_eq!(closed(&mut client).await, None, "before CONNECT, {case}");
    }
    still_serves(addr, "malformed").await;
    stop(broker).await;
}

#[tokio::test]
async fn a_packet_over_the_maximum_size_is_refused_after_its_fixed_header() {
    let _serial = SERIAL.lock().await;
    // A small configured maximum, and a packet announcing 200 MB of which only the fixed header
    // is sent: the broker refuses it without waiting for (or buffering) the body.
    let broker = start(2, |c| c.max_packet_size = 64 * 1024);
    let addr = broker.local_addr();
    let huge = 200 * 1024 * 1024;
    let mut client = musqratt_testkit::connect(addr, "huge5", ProtocolVersion::V5).await;
    client.write_all(&publish_header(huge)).await;
    match closed(&mut client).await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason_code, ReasonCode::PACKET_TOO_LARGE),
        other => panic!("expected DISCONNECT 0x95, got {other:?}"),
    }
    // 3.1.1 has no reason codes: closed without a word.
    let mut client = musqratt_testkit::connect(addr, "huge311", ProtocolVersion::V3_1_1).await;
    client.write_all(&publish_header(huge)).await;
    assert_eq!(closed(&mut client).await, None);
    // One byte over the configured maximum (the whole packet is 64 KiB + 1).
    let mut client = musqratt_testkit::connect(addr, "edge5", ProtocolVersion::V5).await;
    client.write_all(&publish_header(64 * 1024 - 1)).await;
    match closed(&mut client).await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason_code, ReasonCode::PACKET_TOO_LARGE),
        other => panic!("expected DISCONNECT 0x95, got {other:?}"),
    }
    still_serves(addr, "huge").await;
    stop(broker).await;

    // The documented default maximum (1 MiB, docs/CONFIG.md `max_packet_size`).
    assert_eq!(FileConfig::default().max_packet_size, 1024 * 1024);
    let broker = start(1, |_| {});
    let mut client =
        musqratt_testkit::connect(broker.local_addr(), "def5", ProtocolVersion::V5).await;
    client.write_all(&publish_header(1024 * 1024)).await;
    match closed(&mut client).await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason_code, ReasonCode::PACKET_TOO_LARGE),
        other => panic!("expected DISCONNECT 0x95, got {other:?}"),
    }
    stop(broker).await;
}

#[tokio::test]
async fn connections_that_never_send_connect_are_closed_while_others_work() {
    let _serial = SERIAL.lock().await;
    let limit = open_files_limit();
    // Two descriptors per connection (client and broker side, one process), with room to spare.
    let idle_count = 1000usize.min(usize::try_from(limit.saturating_sub(200) / 2).unwrap());
    println!("open files limit {limit}: {idle_count} idle connections");
    assert!(idle_count >= 300, "ulimit -n is {limit}: too low for this test");
    let broker = start(2, |c| c.connect_timeout_ms = 500);
    let addr = broker.local_addr();

    // A client that keeps publishing to itself (QoS 1) the whole time.
    let mut worker = musqratt_testkit::connect(addr, "worker", ProtocolVersion::V5).await;
    subscribe(&mut worker, "work", QoS::AtLeastOnce).await;
    let done = Arc::new(AtomicBool::new(false));
    let round_trips = Arc::new(AtomicU64::new(0));
    let working = {
        let (done, round_trips) = (done.clone(), round_trips.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                let (packet, packet_id) =
                    publish_packet(&mut worker, "work", Bytes::from_static(b"w"), QoS::AtLeastOnce);
                worker.send(&packet);
                // The PUBACK and our own message, in either order.
                let (mut acked, mut received) = (false, false);
                while !(acked && received) {
                    match worker.recv().await {
                        Packet::PubAck(ack) => {
                            assert_eq!(Some(ack.packet_id), packet_id);
                            acked = true;
                        }
                        Packet::Publish(p) => {
                            assert_eq!(&p.payload[..], b"w");
                            let ack = PubResponse::new(p.packet_id.unwrap());
                            worker.send(&Packet::PubAck(ack));
                            received = true;
                        }
                        other => panic!("worker: unexpected {other:?}"),
                    }
                }
                round_trips.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    let started = tokio::time::Instant::now();
    let mut idle = Vec::with_capacity(idle_count);
    for _ in 0..idle_count {
        idle.push(TcpStream::connect(addr).await.expect("connects"));
    }
    let opened = started.elapsed();
    println!("{idle_count} idle connections opened in {opened:?}, {} fds open", open_fds());
    let before_timeout = round_trips.load(Ordering::Relaxed);

    // Every idle connection is closed by the broker (end of stream or reset), none answered.
    let closing = idle.into_iter().map(|mut stream| async move {
        let mut buf = [0u8; 16];
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => true,
            Ok(Ok(n)) => panic!("the broker sent {n} bytes before CONNECT"),
            Err(_) => false,
        }
    });
    let mut closed = 0;
    for handle in closing.map(tokio::spawn).collect::<Vec<_>>() {
        closed += usize::from(handle.await.unwrap());
    }
    let all_closed = started.elapsed();
    println!("all closed {all_closed:?} after the first was opened");
    assert_eq!(closed, idle_count, "connections still open after 10 s");
    assert!(all_closed >= Duration::from_millis(450), "closed before the timeout: {all_closed:?}");
    assert!(all_closed < opened + Duration::from_secs(5), "{all_closed:?}");

    // The worker kept going through it all, and keeps going.
    tokio::time::sleep(Duration::from_millis(100)).await;
    done.store(true, Ordering::Relaxed);
    working.await.expect("the worker never failed");
    let total = round_trips.load(Ordering::Relaxed);
    println!("worker round trips: {before_timeout} while opening, {total} in all");
    assert!(total > before_timeout, "the worker stalled while the idle connections closed");
    assert!(total >= 10, "{total}");
    assert!(broker.stats().accepted > idle_count as u64);
    still_serves(addr, "idle").await;
    stop(broker).await;
}

/// Publishes `total` bytes in `size`-byte messages at `qos` to a subscriber that never reads, and
/// returns (RSS before, peak RSS while publishing, RSS after) in MiB and how many messages the
/// subscriber got when it finally read.
async fn publish_to_a_non_reader(qos: QoS, total: usize, size: usize) -> (f64, f64, f64, usize) {
    let broker = start(1, |c| {
        c.max_queued_bytes = QUEUED_BYTES;
        c.max_unwritten_bytes = UNWRITTEN_BYTES;
    });
    let addr = broker.local_addr();
    let mut stuck = musqratt_testkit::connect(addr, "stuck", ProtocolVersion::V5).await;
    subscribe(&mut stuck, "flood", qos).await;
    let mut publ = musqratt_testkit::connect(addr, "flooder", ProtocolVersion::V5).await;

    let before = rss_mib();
    let peak = Arc::new(AtomicU64::new(status_kib("VmRSS")));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(status_kib("VmRSS"), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };

    let payload = Bytes::from(vec![0x5a; size]);
    let count = total / size;
    // QoS 1 in windows of 32 unacknowledged messages (under the broker's Receive Maximum).
    let window = if qos == QoS::AtMostOnce { count } else { 32 };
    let mut sent = 0;
    let mut out = BytesMut::new();
    while sent < count {
        let batch = window.min(count - sent);
        let mut ids = Vec::with_capacity(batch);
        for _ in 0..batch {
            let (packet, id) = publish_packet(&mut publ, "flood", payload.clone(), qos);
            ids.extend(id);
            out.clear();
            packet.encode(publ.version(), &mut out).unwrap();
            publ.write_all(&out).await;
        }
        for id in ids {
            match publ.recv().await {
                Packet::PubAck(ack) => assert_eq!(ack.packet_id, id),
                other => panic!("expected PUBACK, got {other:?}"),
            }
        }
        sent += batch;
    }
    // In order on the publisher's connection: once this is acknowledged the broker has handled
    // every message before it.
    publish_1(&mut publ, "flood/end", Bytes::from_static(b"end")).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = rss_mib();
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let peak = peak.load(Ordering::Relaxed) as f64 / 1024.0;

    // The non-reader now reads: it gets what the broker kept for it (its session queue, the
    // bytes handed to its socket, the kernel's buffers), not the 100 MB: the rest was dropped.
    let mut delivered = 0usize;
    loop {
        let packet = match stuck.next_event(Duration::from_secs(1)).await {
            Event::Packet(packet) => packet,
            Event::Timeout | Event::Closed => break,
            Event::Malformed(e) => panic!("the non-reader got a malformed packet: {e}"),
        };
        match packet {
            Packet::Publish(p) => {
                assert_eq!(p.payload.len(), size);
                if let Some(id) = p.packet_id {
                    stuck.send(&Packet::PubAck(PubResponse::new(id)));
                }
                delivered += 1;
            }
            other => panic!("the non-reader got {other:?}"),
        }
    }
    drop(stuck);
    still_serves(addr, "flood-after").await;
    stop(broker).await;
    (before, peak, after, delivered)
}

/// The non-reader's session queue (QoS 1 and 2 only) and unwritten-bytes bounds.
const QUEUED_BYTES: usize = 16 * 1024 * 1024;
const UNWRITTEN_BYTES: usize = 4 * 1024 * 1024;

#[tokio::test]
async fn a_subscriber_that_never_reads_keeps_broker_memory_bounded() {
    let _serial = SERIAL.lock().await;
    let total = 100 * 1024 * 1024;
    let limit = 64.0;
    for (qos, size) in [(QoS::AtMostOnce, 64 * 1024), (QoS::AtLeastOnce, 64 * 1024)] {
        let (before, peak, after, delivered) = publish_to_a_non_reader(qos, total, size).await;
        let count = total / size;
        println!(
            "non-reading subscriber, {} MiB published at {qos:?} in {} KiB messages: \
             VmRSS before {before:.1} MiB, peak {peak:.1} MiB (+{:.1}), after {after:.1} MiB \
             (+{:.1}); {delivered} of {count} messages delivered once it read, {} dropped",
            total >> 20,
            size >> 10,
            peak - before,
            after - before,
            count - delivered,
        );
        // Kept: the session queue (QoS >= 1), the unwritten bytes, and the kernel's socket
        // buffers on both sides (a few MiB on loopback).
        let queue = if qos == QoS::AtMostOnce { 0 } else { QUEUED_BYTES };
        let kept = (queue + UNWRITTEN_BYTES + 16 * 1024 * 1024) / size;
        assert!(delivered > 0, "{qos:?}: nothing delivered");
        assert!(delivered <= kept, "{qos:?}: {delivered} messages kept, bound {kept}");
        assert!(peak - before < limit, "{qos:?}: RSS grew {:.1} MiB", peak - before);
        assert!(after - before < limit, "{qos:?}: RSS grew {:.1} MiB", after - before);
    }
}

#[tokio::test]
async fn a_flood_of_connects_leaves_the_broker_serving() {
    let _serial = SERIAL.lock().await;
    let broker = start(2, |_| {});
    let addr = broker.local_addr();
    // The broker's connections are sockets of this process: once every flooder is gone, the
    // socket count is back to what it was before (the broker holds no connection any more).
    let sockets_before = tcp_sockets().len();
    let (tasks, per_task) = (8, 250);
    let started = std::time::Instant::now();
    let flooders: Vec<_> = (0..tasks)
        .map(|t| {
            tokio::spawn(async move {
                for i in 0..per_task {
                    let version =
                        if i % 2 == 0 { ProtocolVersion::V5 } else { ProtocolVersion::V3_1_1 };
                    let id = format!("flood-{t}-{i}");
                    let mut client = musqratt_testkit::connect(addr, &id, version).await;
                    if i % 3 == 2 {
                        // Gone without DISCONNECT: the broker sees the end of the stream.
                        drop(client);
                        continue;
                    }
                    client.send(&Packet::Disconnect(Disconnect::new(ReasonCode::SUCCESS)));
                    assert_eq!(closed(&mut client).await, None, "{id}");
                }
            })
        })
        .collect();
    for flooder in flooders {
        flooder.await.expect("every CONNECT is accepted");
    }
    let cycles = tasks * per_task;
    println!("{cycles} CONNECT/DISCONNECT cycles in {:?}", started.elapsed());
    assert!(broker.stats().accepted >= cycles as u64);
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut sockets = tcp_sockets().len();
    while sockets > sockets_before && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        sockets = tcp_sockets().len();
    }
    println!("open sockets: {sockets_before} before the flood, {sockets} after");
    assert!(
        sockets <= sockets_before,
        "the broker still holds {} connections; TCP sockets of this process: {:?}; {:?}",
        sockets - sockets_before,
        tcp_sockets(),
        broker.stats()
    );
    still_serves(addr, "fresh").await;
    // And the same client identifiers can connect again.
    let mut again = musqratt_testkit::connect(addr, "flood-0-0", ProtocolVersion::V5).await;
    publish_1(&mut again, "again", Bytes::from_static(b"x")).await;
    stop(broker).await;
}
