//! Bad input over real sockets (issue 4, item 6): an oversize packet, connections that never
//! send CONNECT, a client that never reads, a flood of CONNECTs. The broker runs in-process on an
//! ephemeral port; well-behaved clients use `musqratt-client`, bad ones its `RawConnection`.

use core::net::SocketAddr;
use core::time::Duration;

use bytes::Bytes;
use musqratt::proto::mqtt::{Packet, ReasonCode};
use musqratt::proto::{ProtocolVersion, QoS};
use musqratt::{Broker, BrokerConfig};
use musqratt_client::{Client, ConnectOptions, RawConnection};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(5);

fn start(configure: impl FnOnce(&mut BrokerConfig)) -> Broker {
    let mut config = BrokerConfig::default();
    config.listeners = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
    config.threads = 2;
    configure(&mut config);
    Broker::start(config).expect("broker starts")
}

fn url(broker: &Broker) -> String {
    format!("mqtt://{}", broker.local_addr())
}

async fn client(broker: &Broker, id: &str) -> Client {
    let options = ConnectOptions::new(id).url(url(broker)).version(ProtocolVersion::V5);
    Client::connect(options).await.expect("connects").0
}

/// Resident memory of this process (the broker runs in it), from /proc.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    let kib: u64 = line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("number");
    kib * 1024
}

/// MQTT-3.1.2-24 / §3.2.2.3.6: a packet above the broker's Maximum Packet Size gets DISCONNECT
/// 0x95 and a close as soon as its fixed header announces the size: the 200 MB body is never
/// sent, so it cannot have been waited for or buffered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_packet_is_refused_from_its_fixed_header() {
    let broker = start(|c| c.engine.max_packet_size = 4096);
    let mut raw = RawConnection::connect(&url(&broker), ProtocolVersion::V5, WAIT).await.unwrap();
    // CONNECT v5, client id "big".
    raw.send_bytes(b"\x10\x10\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x03big").await.unwrap();
    assert!(matches!(raw.recv_timeout(WAIT).await.unwrap(), Packet::ConnAck(_)));
    // PUBLISH QoS 0 announcing 200,000,000 bytes: 0x30, then the Remaining Length.
    raw.send_bytes(&[0x30, 0x80, 0x84, 0xAF, 0x5F]).await.unwrap();
    let packets = raw.wait_closed(WAIT).await.expect("closed");
    let told = packets.iter().any(
        |p| matches!(p, Packet::Disconnect(d) if d.reason_code == ReasonCode::PACKET_TOO_LARGE),
    );
    assert!(told, "expected DISCONNECT 0x95, got {packets:?}");
    broker.shutdown().unwrap();
}

/// The soft limit on open files of this process (each test connection costs two: ours and the
/// in-process broker's).
fn open_files_limit() -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("procfs");
    let line = limits.lines().find(|l| l.starts_with("Max open files")).expect("limit line");
    line.split_whitespace().nth(3).and_then(|n| n.parse().ok()).unwrap_or(1024)
}

/// 1000 connections that never send CONNECT are closed by the connect timeout while another
/// client keeps publishing and receiving (fewer if the open-files limit is too low for 1000:
/// .ci/run raises it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_time_out_while_others_work() {
    let broker = start(|c| c.engine.connect_timeout = Duration::from_millis(800));
    let addr = broker.local_addr();
    let count = 1000.min(open_files_limit().saturating_sub(200) / 2);
    println!("{count} silent connections");
    let mut silent = Vec::new();
    for _ in 0..count {
        silent.push(TcpStream::connect(addr).await.expect("connects"));
    }
    let mut worker = client(&broker, "worker").await;
    worker.subscribe("alive", QoS::AtLeastOnce).await.unwrap();
    for i in 0..20u8 {
        worker.publish("alive", vec![i], QoS::AtLeastOnce, false).await.unwrap();
        let message = tokio::time::timeout(WAIT, worker.next_message()).await.unwrap().unwrap();
        assert_eq!(&message.payload[..], &[i]);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // By now (over 1 s) every silent connection must have been closed by the broker.
    for (i, stream) in silent.iter_mut().enumerate() {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(WAIT, stream.read(&mut byte)).await;
        assert!(matches!(read, Ok(Ok(0) | Err(_))), "silent connection {i} still open: {read:?}");
    }
    worker.disconnect().await.unwrap();
    broker.shutdown().unwrap();
}

/// Publishes `total` bytes in 64 KiB messages at `qos` to a subscriber that never reads, and
/// returns how much the process's resident memory grew.
async fn slow_reader_growth(qos: QoS, total: usize) -> u64 {
    let broker = start(|c| {
        c.engine.max_unwritten_bytes = 1024 * 1024;
        c.engine.max_queued_bytes = 8 * 1024 * 1024;
    });
    // The slow reader: subscribes, then never reads its socket again.
    let mut slow =
        RawConnection::connect(&url(&broker), ProtocolVersion::V3_1_1, WAIT).await.unwrap();
    slow.send_bytes(b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x00\x00\x02sr").await.unwrap();
    assert!(matches!(slow.recv_timeout(WAIT).await.unwrap(), Packet::ConnAck(_)));
    let qos_byte = qos.bits();
    slow.send_bytes(&[0x82, 0x09, 0x00, 0x01, 0x00, 0x04, b'f', b'l', b'o', b'o', qos_byte])
        .await
        .unwrap();
    assert!(matches!(slow.recv_timeout(WAIT).await.unwrap(), Packet::SubAck(_)));
    let publisher = client(&broker, "flood-publisher").await;
    let payload = Bytes::from(vec![0x5A; 64 * 1024]);
    let before = rss_bytes();
    for _ in 0..total / payload.len() {
        publisher.publish("floo", payload.clone(), qos, false).await.unwrap();
    }
    let growth = rss_bytes().saturating_sub(before);
    // The broker still serves others.
    let mut other = client(&broker, "other").await;
    other.subscribe("ping", QoS::AtMostOnce).await.unwrap();
    other.publish("ping", "pong", QoS::AtLeastOnce, false).await.unwrap();
    assert!(tokio::time::timeout(WAIT, other.next_message()).await.unwrap().is_some());
    drop(slow);
    broker.shutdown().unwrap();
    growth
}

/// A client that never reads while 100 MB is published to it at QoS 0: the broker drops what
/// it cannot write (counted, `SlowReader`) and its memory stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_reader_qos0_memory_stays_bounded() {
    let growth = slow_reader_growth(QoS::AtMostOnce, 100 * 1024 * 1024).await;
    println!("slow reader, QoS 0, 100 MB published: RSS grew by {} KiB", growth / 1024);
    assert!(growth < 64 * 1024 * 1024, "RSS grew by {growth} bytes");
}

/// The same at QoS 1: what cannot be written waits in the session queue up to its byte bound
/// (8 MiB here), beyond which drops are reported; memory stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_reader_qos1_memory_stays_bounded() {
    let growth = slow_reader_growth(QoS::AtLeastOnce, 100 * 1024 * 1024).await;
    println!("slow reader, QoS 1, 100 MB published: RSS grew by {} KiB", growth / 1024);
    assert!(growth < 64 * 1024 * 1024, "RSS grew by {growth} bytes");
}

/// 2000 CONNECT/DISCONNECT cycles from 8 tasks at once; the broker then still serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_flood_then_normal_service() {
    let broker = start(|_| {});
    let url = url(&broker);
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let url = url.clone();
            tokio::spawn(async move {
                for i in 0..250 {
                    let options = ConnectOptions::new(format!("flood-{t}-{i}")).url(url.clone());
                    let (client, _) = Client::connect(options).await.expect("connects");
                    client.disconnect().await.expect("disconnects");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let mut after = client(&broker, "after-flood").await;
    after.subscribe("still/here", QoS::ExactlyOnce).await.unwrap();
    after.publish("still/here", "yes", QoS::ExactlyOnce, false).await.unwrap();
    let message = tokio::time::timeout(WAIT, after.next_message()).await.unwrap().unwrap();
    assert_eq!(&message.payload[..], b"yes");
    after.disconnect().await.unwrap();
    broker.shutdown().unwrap();
}
