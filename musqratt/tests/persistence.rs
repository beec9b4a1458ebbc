//! `[persistence]` over real sockets (docs/PERSISTENCE.md): the `musqratt` binary is killed
//! with SIGKILL and started again on the same store; nothing it acknowledged is lost. Two
//! shards, the publisher and the subscriber on different ones: the subscriber's shard stores
//! each message a mail after the publisher's shard handled it, and the PUBACK waits for it
//! (ADR 17, the acknowledgement rule across shards).

use core::net::SocketAddr;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use musqratt::proto::bytestring::ByteString;
use musqratt::proto::mqtt::{Connect, Packet, Publish, ReasonCode};
use musqratt::proto::{ProtocolVersion, QoS};
use musqratt_testkit::{BrokerProcess, Client, free_port, open};

const V5: ProtocolVersion = ProtocolVersion::V5;
/// QoS 1 messages published while the subscriber is away.
const MESSAGES: usize = 500;
/// Shards of the broker (`threads`).
const SHARDS: u64 = 2;

/// A broker's configuration: its directory (where `BrokerProcess` writes `musqratt.toml`),
/// the file's text and the port it listens on (the same across restarts).
struct Setup {
    dir: PathBuf,
    text: String,
    port: u16,
}

/// Starts the binary on `setup` and `runtime`; returns it and the address it listens on, once
/// it logged that it listens (after restoring the store: the io-uring runtime's port accepts
/// before its shards restored, and a client connecting then may be closed).
fn start(setup: &Setup, runtime: &str) -> (BrokerProcess, SocketAddr) {
    let broker =
        BrokerProcess::musqratt(env!("CARGO_BIN_EXE_musqratt"), &setup.dir, runtime, &setup.text)
            .port(setup.port)
            .start();
    let deadline = std::time::Instant::now() + core::time::Duration::from_secs(10);
    while !broker.log().contains("listening") {
        assert!(std::time::Instant::now() < deadline, "{}", broker.log());
        std::thread::sleep(core::time::Duration::from_millis(20));
    }
    (broker, SocketAddr::from(([127, 0, 0, 1], setup.port)))
}

/// SIGKILL (`Child::kill` on Unix): no shutdown, no flush.
fn kill_9(broker: BrokerProcess) {
    drop(broker.stop());
}

/// Connects with Clean Start 0 and a Session Expiry Interval of an hour; returns whether the
/// broker had the session (Session Present, §3.2.2.1.1).
async fn connect_durable(addr: SocketAddr, client_id: &str) -> (Client, bool) {
    connect_expiring(addr, client_id, 3600).await
}

/// As [`connect_durable`], with this Session Expiry Interval in seconds.
async fn connect_expiring(addr: SocketAddr, client_id: &str, expiry: u32) -> (Client, bool) {
    let mut client = open(addr, V5).await;
    let mut connect = Connect::new(V5, client_id);
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(expiry);
    client.send(&Packet::Connect(Box::new(connect)));
    match client.recv().await {
        Packet::ConnAck(ack) => {
            assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
            (client, ack.session_present)
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

fn config(dir: &Path, fsync: &str) -> Setup {
    let store = dir.join("store.db");
    let port = free_port();
    let text = format!(
        "listeners = [\"mqtt://127.0.0.1:{port}\"]\nthreads = {SHARDS}\n\n[persistence]\n\
         path = \"{}\"\nfsync = \"{fsync}\"\n",
        store.display()
    );
    Setup { dir: dir.to_owned(), text, port }
}

/// Issue 16: a persistent subscriber subscribes at QoS 1 and leaves; a publisher sends
/// [`MESSAGES`] QoS 1 messages, each PUBACKed, and one retained message; the broker is killed
/// with SIGKILL (no shutdown, no flush) right after the last PUBACK. Started again, it still
/// has the session (Session Present), delivers every acknowledged message to the subscriber,
/// and the retained message to a new subscriber.
#[test]
fn acknowledged_messages_and_retained_survive_kill_9_tokio() {
    acknowledged_messages_and_retained_survive_kill_9("tokio");
}

/// As on tokio, on the io-uring (compio) runtime.
#[test]
fn acknowledged_messages_and_retained_survive_kill_9_io_uring() {
    acknowledged_messages_and_retained_survive_kill_9("io-uring");
}

/// As on tokio, on the blocking runtime.
#[test]
fn acknowledged_messages_and_retained_survive_kill_9_blocking() {
    acknowledged_messages_and_retained_survive_kill_9("blocking");
}

fn acknowledged_messages_and_retained_survive_kill_9(runtime_name: &str) {
    let _one = musqratt_testkit::one_broker_process_at_a_time();
    let dir = std::env::temp_dir()
        .join(format!("musqratt-persist-{runtime_name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // "never": the acknowledgement rule (written to the OS before the PUBACK) is all that
    // SIGKILL needs; no fsync is involved.
    let config = config(&dir, "never");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();

    // On different shards: every message crosses from shard 1 to shard 0.
    let sub_id = musqratt_testkit::id_on_shard("durable-sub", 0, SHARDS);
    let pub_id = musqratt_testkit::id_on_shard("publisher", 1, SHARDS);
    let (broker, addr) = start(&config, runtime_name);
    runtime.block_on(async {
        let (mut sub, present) = connect_durable(addr, &sub_id).await;
        assert!(!present);
        sub.subscribe("k/#", QoS::AtLeastOnce).await;
        sub.disconnect().await;
        let mut publisher = musqratt_testkit::connect(addr, &pub_id, V5).await;
        for i in 0..MESSAGES {
            let mut publish = Publish::new(
                ByteString::from(format!("k/{}", i % 7)),
                Bytes::from(format!("m{i}")),
            );
            publish.qos = QoS::AtLeastOnce;
            let ack = publisher.publish(publish).await.expect("PUBACK");
            assert_eq!(ack.reason_code, ReasonCode::SUCCESS, "message {i}");
        }
        let mut retained = Publish::new("r/kept".into(), Bytes::from_static(b"retained"));
        retained.qos = QoS::AtLeastOnce;
        retained.retain = true;
        publisher.publish(retained).await.expect("PUBACK");
    });
    kill_9(broker);

    let (broker, addr) = start(&config, runtime_name);
    runtime.block_on(async {
        let (mut sub, present) = connect_durable(addr, &sub_id).await;
        assert!(present, "the session survived");
        let mut got = BTreeSet::new();
        while got.len() < MESSAGES {
            let publish = sub.recv_publish().await;
            sub.ack(&publish).await;
            got.insert(String::from_utf8(publish.payload.to_vec()).unwrap());
        }
        let want: BTreeSet<String> = (0..MESSAGES).map(|i| format!("m{i}")).collect();
        assert_eq!(got, want);
        // A PUBACK has no answer: the PINGRESP leaves after the broker handled the PUBACKs
        // sent before it, and so after the records forgetting those messages were written
        // (ADR 17). Without it the kill -9 below may come first and they are delivered again.
        sub.ping().await;
        let mut late = musqratt_testkit::connect(addr, "late", V5).await;
        late.subscribe("r/#", QoS::AtLeastOnce).await;
        let publish = late.recv_publish().await;
        assert_eq!((&*publish.topic, &publish.payload[..]), ("r/kept", &b"retained"[..]));
        assert!(publish.retain);
    });
    kill_9(broker);

    // Acknowledged by the subscriber: gone from the store, not delivered a third time.
    let (broker, addr) = start(&config, runtime_name);
    runtime.block_on(async {
        let (mut sub, present) = connect_durable(addr, &sub_id).await;
        assert!(present);
        sub.expect_silence().await;
    });
    kill_9(broker);
    let _ = std::fs::remove_dir_all(&dir);
}

/// §3.1.2.11.2: a session expires its Session Expiry Interval after its client disconnected,
/// and the time the broker was down counts. A session of 2 s whose client left just before a
/// kill -9 is gone when the broker comes back 3 s later (Session Present 0); one of an hour is
/// still there.
#[test]
fn session_expiry_counts_the_time_the_broker_was_down() {
    let _one = musqratt_testkit::one_broker_process_at_a_time();
    let dir = std::env::temp_dir().join(format!("musqratt-persist3-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = config(&dir, "never");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (broker, addr) = start(&config, "tokio");
    runtime.block_on(async {
        for (id, expiry) in [("short", 2), ("long", 3600)] {
            let (mut client, present) = connect_expiring(addr, id, expiry).await;
            assert!(!present);
            client.subscribe("x/#", QoS::AtLeastOnce).await;
            // The broker closes the connection in the step that handled the DISCONNECT, after
            // writing that step's records: the session's, with its expiry.
            client.send(&Packet::Disconnect(Default::default()));
            client.expect_closed().await;
        }
    });
    kill_9(broker);
    std::thread::sleep(core::time::Duration::from_secs(3));
    let (broker, addr) = start(&config, "tokio");
    runtime.block_on(async {
        let (_short, present) = connect_expiring(addr, "short", 2).await;
        assert!(!present, "expired while the broker was down");
        let (_long, present) = connect_expiring(addr, "long", 3600).await;
        assert!(present, "an hour has not passed");
    });
    kill_9(broker);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two brokers on one store: the second refuses to start, naming the file (exit status 1).
#[test]
fn a_second_broker_on_the_same_store_refuses_to_start() {
    let _one = musqratt_testkit::one_broker_process_at_a_time();
    let dir = std::env::temp_dir().join(format!("musqratt-persist2-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (setup, other) = (config(&dir, "interval"), config(&dir, "interval"));
    let (first, _) = start(&setup, "tokio");
    // The same store, another port: refused for the store, not the port.
    let second = dir.join("second.toml");
    std::fs::write(&second, other.text).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_musqratt"))
        .args(["broker", "--config"])
        .arg(&second)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("another broker is using this store"), "{stderr}");
    assert!(stderr.contains("store.db"), "{stderr}");
    kill_9(first);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Exactly once across a kill -9 (Method B of §4.3.3, docs/adr/0004): a durable publisher
/// sends a QoS 2 PUBLISH and gets its PUBREC, so the message went onward and the broker owes
/// it a PUBCOMP; the broker is killed before the PUBREL. Started again, it still knows the
/// packet id: the PUBLISH resent with DUP at reconnection (§4.4, MQTT-4.4.0-1) is answered with a PUBREC and
/// not delivered again, and the PUBREL finds the id (PUBCOMP 0x00, not 0x92). The durable
/// subscriber, on the other shard, receives the message exactly once.
#[test]
fn inbound_qos2_is_exactly_once_across_kill_9_tokio() {
    inbound_qos2_is_exactly_once_across_kill_9("tokio");
}

/// As on tokio, on the io-uring (compio) runtime.
#[test]
fn inbound_qos2_is_exactly_once_across_kill_9_io_uring() {
    inbound_qos2_is_exactly_once_across_kill_9("io-uring");
}

/// As on tokio, on the blocking runtime.
#[test]
fn inbound_qos2_is_exactly_once_across_kill_9_blocking() {
    inbound_qos2_is_exactly_once_across_kill_9("blocking");
}

fn inbound_qos2_is_exactly_once_across_kill_9(runtime_name: &str) {
    let _one = musqratt_testkit::one_broker_process_at_a_time();
    let dir = std::env::temp_dir()
        .join(format!("musqratt-persist-qos2-{runtime_name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = config(&dir, "never");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let sub_id = musqratt_testkit::id_on_shard("qos2-sub", 0, SHARDS);
    let pub_id = musqratt_testkit::id_on_shard("qos2-pub", 1, SHARDS);
    let packet_id = musqratt::proto::PacketId::new(9).unwrap();
    let publish = |dup: bool| {
        let mut publish = Publish::new("q2/t".into(), Bytes::from_static(b"exactly once"));
        publish.qos = QoS::ExactlyOnce;
        publish.packet_id = Some(packet_id);
        publish.dup = dup;
        Packet::Publish(publish)
    };
    let (broker, addr) = start(&config, runtime_name);
    runtime.block_on(async {
        let (mut sub, _) = connect_durable(addr, &sub_id).await;
        sub.subscribe("q2/#", QoS::AtLeastOnce).await;
        sub.disconnect().await;
        let (mut publisher, _) = connect_durable(addr, &pub_id).await;
        publisher.send(&publish(false));
        match publisher.recv().await {
            Packet::PubRec(rec) => assert_eq!(rec.packet_id, packet_id),
            other => panic!("expected PUBREC, got {other:?}"),
        }
    });
    kill_9(broker);

    let (broker, addr) = start(&config, runtime_name);
    runtime.block_on(async {
        let (mut publisher, present) = connect_durable(addr, &pub_id).await;
        assert!(present, "the publisher's session survived");
        publisher.send(&publish(true));
        match publisher.recv().await {
            Packet::PubRec(rec) => assert_eq!(rec.packet_id, packet_id),
            other => panic!("expected PUBREC, got {other:?}"),
        }
        publisher.send(&Packet::PubRel(musqratt::proto::mqtt::PubResponse::new(packet_id)));
        match publisher.recv().await {
            Packet::PubComp(comp) => {
                assert_eq!(comp.packet_id, packet_id);
                assert_eq!(comp.reason_code, ReasonCode::SUCCESS, "the id was remembered");
            }
            other => panic!("expected PUBCOMP, got {other:?}"),
        }
        let (mut sub, present) = connect_durable(addr, &sub_id).await;
        assert!(present);
        let got = sub.recv_publish().await;
        assert_eq!(&got.payload[..], b"exactly once");
        sub.ack(&got).await;
        sub.expect_silence().await;
    });
    kill_9(broker);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Exactly once to a subscriber across a kill -9 (§4.3.3, §4.4, MQTT-4.4.0-1): a durable
/// subscriber at QoS 2 gets two messages; it PUBRECs the first (the broker's PUBREL comes) and
/// not the second; the broker is killed. Started again, at reconnection it resends the PUBREL
/// under the first one's id (not its PUBLISH) and the second PUBLISH with DUP under its id
/// (not a new message); once both flows complete nothing is sent again, even after another
/// kill -9.
#[test]
fn outbound_qos2_is_exactly_once_across_kill_9_tokio() {
    outbound_qos2_is_exactly_once_across_kill_9("tokio");
}

/// As on tokio, on the io-uring (compio) runtime.
#[test]
fn outbound_qos2_is_exactly_once_across_kill_9_io_uring() {
    outbound_qos2_is_exactly_once_across_kill_9("io-uring");
}

/// As on tokio, on the blocking runtime.
#[test]
fn outbound_qos2_is_exactly_once_across_kill_9_blocking() {
    outbound_qos2_is_exactly_once_across_kill_9("blocking");
}

fn outbound_qos2_is_exactly_once_across_kill_9(runtime_name: &str) {
    use musqratt::proto::mqtt::PubResponse;
    let _one = musqratt_testkit::one_broker_process_at_a_time();
    let dir = std::env::temp_dir()
        .join(format!("musqratt-persist-out2-{runtime_name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = config(&dir, "never");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let sub_id = musqratt_testkit::id_on_shard("out2-sub", 0, SHARDS);
    let pub_id = musqratt_testkit::id_on_shard("out2-pub", 1, SHARDS);
    let (broker, addr) = start(&config, runtime_name);
    let (first, second) = runtime.block_on(async {
        let (mut sub, _) = connect_durable(addr, &sub_id).await;
        sub.subscribe("o2/#", QoS::ExactlyOnce).await;
        let mut publisher = musqratt_testkit::connect(addr, &pub_id, V5).await;
        for text in ["first", "second"] {
            let mut publish = Publish::new("o2/t".into(), Bytes::from(text));
            publish.qos = QoS::ExactlyOnce;
            let comp = publisher.publish(publish).await.expect("PUBCOMP");
            assert!(!comp.reason_code.is_error());
        }
        let a = sub.recv_publish().await;
        let b = sub.recv_publish().await;
        assert_eq!((&a.payload[..], &b.payload[..]), (&b"first"[..], &b"second"[..]));
        let (a, b) = (a.packet_id.unwrap(), b.packet_id.unwrap());
        sub.send(&Packet::PubRec(PubResponse::new(a)));
        match sub.recv().await {
            Packet::PubRel(rel) => assert_eq!(rel.packet_id, a),
            other => panic!("expected PUBREL, got {other:?}"),
        }
        (a, b)
    });
    kill_9(broker);

    let (broker, addr) = start(&config, runtime_name);
    runtime.block_on(async {
        let (mut sub, present) = connect_durable(addr, &sub_id).await;
        assert!(present);
        match sub.recv().await {
            Packet::PubRel(rel) => assert_eq!(rel.packet_id, first, "the PUBREL, not the PUBLISH"),
            other => panic!("expected PUBREL, got {other:?}"),
        }
        match sub.recv().await {
            Packet::Publish(p) => {
                assert_eq!((p.packet_id, p.dup), (Some(second), true), "resent under its id");
                assert_eq!(&p.payload[..], b"second");
            }
            other => panic!("expected PUBLISH, got {other:?}"),
        }
        sub.send(&Packet::PubComp(PubResponse::new(first)));
        sub.send(&Packet::PubRec(PubResponse::new(second)));
        match sub.recv().await {
            Packet::PubRel(rel) => assert_eq!(rel.packet_id, second),
            other => panic!("expected PUBREL, got {other:?}"),
        }
        sub.send(&Packet::PubComp(PubResponse::new(second)));
        // The PINGRESP leaves after the PUBCOMP's records are written (ADR 17).
        sub.ping().await;
        sub.expect_silence().await;
    });
    kill_9(broker);

    let (broker, addr) = start(&config, runtime_name);
    runtime.block_on(async {
        let (mut sub, present) = connect_durable(addr, &sub_id).await;
        assert!(present);
        sub.expect_silence().await;
    });
    kill_9(broker);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Wills survive a kill -9 with their durable session (§3.1.2.5, §3.1.3.2.2): a client
/// connected when the broker died lost its connection without a DISCONNECT, so its will is
/// published its Will Delay Interval after the restart; a client that had disconnected
/// normally (its will discarded, MQTT-3.14.4-3) has none published.
#[test]
fn a_will_survives_kill_9_tokio() {
    a_will_survives_kill_9("tokio");
}

/// As on tokio, on the io-uring (compio) runtime.
#[test]
fn a_will_survives_kill_9_io_uring() {
    a_will_survives_kill_9("io-uring");
}

/// As on tokio, on the blocking runtime.
#[test]
fn a_will_survives_kill_9_blocking() {
    a_will_survives_kill_9("blocking");
}

async fn connect_with_will(addr: SocketAddr, client_id: &str, delay: u32) -> Client {
    let mut client = open(addr, V5).await;
    let mut connect = Connect::new(V5, client_id);
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(3600);
    let mut properties = musqratt::proto::mqtt::WillProperties::default();
    properties.will_delay_interval = Some(delay);
    connect.will = Some(musqratt::proto::mqtt::LastWill {
        topic: format!("lw/{client_id}").into(),
        payload: Bytes::from(format!("{client_id} is gone")),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties,
    });
    client.send(&Packet::Connect(Box::new(connect)));
    match client.recv().await {
        Packet::ConnAck(ack) => assert_eq!(ack.reason_code, ReasonCode::SUCCESS),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    client
}

fn a_will_survives_kill_9(runtime_name: &str) {
    let _one = musqratt_testkit::one_broker_process_at_a_time();
    let dir = std::env::temp_dir()
        .join(format!("musqratt-persist-will-{runtime_name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = config(&dir, "never");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (broker, addr) = start(&config, runtime_name);
    let _kept = runtime.block_on(async {
        let mut quiet = connect_with_will(addr, "quiet", 1).await;
        // The broker closes the connection in the step that handled the DISCONNECT, after
        // writing that step's records (the will removed).
        quiet.send(&Packet::Disconnect(Default::default()));
        quiet.expect_closed().await;
        // The will is stored before the CONNACK that accepts it.
        connect_with_will(addr, "willer", 3).await
    });
    kill_9(broker);

    let (broker, addr) = start(&config, runtime_name);
    runtime.block_on(async {
        let mut watcher = musqratt_testkit::connect(addr, "watcher", V5).await;
        watcher.subscribe("lw/#", QoS::AtLeastOnce).await;
        let will = watcher.recv_publish().await;
        assert_eq!((&*will.topic, &will.payload[..]), ("lw/willer", &b"willer is gone"[..]));
        watcher.ack(&will).await;
        watcher.expect_silence().await;
    });
    kill_9(broker);
    let _ = std::fs::remove_dir_all(&dir);
}
