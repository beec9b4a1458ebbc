//! The store against a real SQLite file in a temporary directory.

use core::time::Duration;
use std::path::PathBuf;
use std::time::SystemTime;

use bytes::Bytes;
use musqratt_engine::proto::QoS;
use musqratt_engine::proto::mqtt::{SubscriptionIds, SubscriptionOptions};
use musqratt_engine::{Record, StoredDelivery, StoredMessage, StoredSession, StoredSubscription};

use super::{Fsync, Store, StoreError};

fn dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("musqratt-store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("store.db")
}

fn message(topic: &str, payload: &'static [u8]) -> StoredMessage {
    StoredMessage::new(
        topic.into(),
        Bytes::from_static(payload),
        QoS::AtLeastOnce,
        false,
        Default::default(),
        None,
    )
}

fn queued(client: &str, seq: u64, payload: &'static [u8]) -> Record {
    let ids = SubscriptionIds::from_slice(&[4]);
    Record::Queued(StoredDelivery::new(
        client.into(),
        seq,
        QoS::AtLeastOnce,
        false,
        ids,
        message("q", payload),
    ))
}

#[test]
fn records_written_are_loaded_back_in_restore_order() {
    let path = dir("round-trip");
    let epoch = SystemTime::now();
    {
        let store = Store::open(&path, Fsync::Never, epoch).unwrap();
        let sub = StoredSubscription::new(
            "q/#".into(),
            SubscriptionOptions::with_qos(QoS::AtLeastOnce),
            Some(4),
        );
        store
            .write(&[
                Record::Retained { topic: "r/2".into(), message: Some(message("r/2", b"two")) },
                Record::Retained { topic: "r/1".into(), message: Some(message("r/1", b"one")) },
                Record::Retained { topic: "r/3".into(), message: Some(message("r/3", b"x")) },
                Record::Retained { topic: "r/3".into(), message: None },
                Record::Session(StoredSession::new("b".into(), 60, vec![sub.clone()])),
                Record::Session(StoredSession::new("a".into(), 60, vec![sub])),
                queued("b", 3, b"b3"),
                queued("a", 2, b"a2"),
                queued("a", 1, b"a1"),
            ])
            .unwrap();
        let id = |n| musqratt_engine::proto::PacketId::new(n).unwrap();
        store
            .write(&[
                Record::AwaitingRelease { client_id: "a".into(), packet_id: id(3) },
                Record::AwaitingRelease { client_id: "a".into(), packet_id: id(5) },
                Record::AwaitingRelease { client_id: "b".into(), packet_id: id(4) },
            ])
            .unwrap();
        store.write(&[Record::Released { client_id: "a".into(), packet_id: id(5) }]).unwrap();
        store.write(&[Record::Acknowledged { client_id: "a".into(), seq: 2 }]).unwrap();
        store.write(&[Record::SessionEnded { client_id: "b".into() }]).unwrap();
    }
    let store = Store::open(&path, Fsync::Never, epoch).unwrap();
    let loaded = store.load(usize::MAX).unwrap();
    assert!(loaded.corrupt.is_empty());
    let kinds: Vec<String> = loaded
        .records
        .iter()
        .map(|r| match r {
            Record::Retained { topic, .. } => format!("retained {topic}"),
            Record::Session(s) => format!("session {} {}", s.client_id, s.subscriptions.len()),
            Record::Queued(d) => {
                format!("queued {} {} {:?}", d.client_id, d.seq, d.message.payload())
            }
            Record::AwaitingRelease { client_id, packet_id } => {
                format!("awaiting PUBREL {client_id} {}", packet_id.get())
            }
            other => format!("{other:?}"),
        })
        .collect();
    // After its session, in the order `Engine::restore` takes them; b's went with its session.
    assert_eq!(
        kinds,
        [
            "retained r/1",
            "retained r/2",
            "session a 1",
            "queued a 1 b\"a1\"",
            "awaiting PUBREL a 3"
        ]
    );
}

#[test]
fn a_second_broker_on_the_same_store_is_refused() {
    let path = dir("locked");
    let _first =
        Store::open(&path, Fsync::Interval(Duration::from_millis(50)), SystemTime::now()).unwrap();
    let second = Store::open(&path, Fsync::Never, SystemTime::now());
    assert!(matches!(second, Err(StoreError::Locked(_))), "{second:?}");
}

#[test]
fn a_file_that_is_not_a_store_is_a_clear_error() {
    let path = dir("garbage");
    std::fs::write(&path, vec![0x5a; 8192]).unwrap();
    let error = Store::open(&path, Fsync::Never, SystemTime::now()).unwrap_err();
    assert!(error.to_string().contains("store.db"), "{error}");
}

#[test]
fn another_format_version_is_refused() {
    let path = dir("version");
    drop(Store::open(&path, Fsync::Never, SystemTime::now()).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute("UPDATE meta SET value = 99 WHERE key = 'format'", []).unwrap();
    drop(conn);
    let error = Store::open(&path, Fsync::Never, SystemTime::now()).unwrap_err();
    assert!(matches!(error, StoreError::Version { found: 99, .. }), "{error}");
}

#[test]
fn a_corrupt_record_is_reported_and_skipped() {
    let path = dir("corrupt");
    drop(Store::open(&path, Fsync::Always, SystemTime::now()).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute("INSERT INTO retained VALUES (x'7431', x'000000')", []).unwrap();
    conn.execute("INSERT INTO sessions VALUES (x'ff', x'0000003c00000000')", []).unwrap();
    drop(conn);
    let store = Store::open(&path, Fsync::Never, SystemTime::now()).unwrap();
    store
        .write(&[Record::Retained { topic: "ok".into(), message: Some(message("ok", b"fine")) }])
        .unwrap();
    let loaded = store.load(usize::MAX).unwrap();
    assert_eq!(loaded.records.len(), 1);
    let what: Vec<&str> = loaded.corrupt.iter().map(|(what, _)| *what).collect();
    assert_eq!(what, ["retained", "session"]);
}

/// A full disk (docs/PERSISTENCE.md, "A full disk"): the database may not grow
/// (`PRAGMA max_page_count`, SQLITE_FULL on the next page), a durable subscriber is offline,
/// and a publisher sends a QoS 1 message too large for the pages there are. The write of its
/// record fails: the PUBACK is held (not acknowledged while not stored, §4.3.2 and ADR 17)
/// and nothing is lost; once space returns the write is tried again, succeeds, and the PUBACK
/// goes out after it.
#[test]
fn a_full_disk_holds_the_acknowledgement_until_the_write_succeeds() {
    use core::sync::atomic::{AtomicBool, Ordering};

    use musqratt_engine::proto::ProtocolVersion;
    use musqratt_engine::proto::mqtt::{Connect, Packet, Publish, Subscribe};
    use musqratt_engine::{Action, Config, ConnectionId, Engine, Input, Instant};

    use crate::Steps;

    const V5: ProtocolVersion = ProtocolVersion::V5;
    fn send(engine: &mut Engine, conn: u64, packet: Packet) {
        let mut bytes = bytes::BytesMut::new();
        packet.encode(V5, &mut bytes).unwrap();
        engine.handle_input(Instant::ZERO, Input::Data { conn: ConnectionId(conn), bytes });
    }
    fn connect(engine: &mut Engine, conn: u64, id: &str, expiry: u32) {
        engine.handle_input(Instant::ZERO, Input::Accepted { conn: ConnectionId(conn) });
        let mut connect = Connect::new(V5, id);
        connect.clean_start = false;
        connect.properties.session_expiry_interval = Some(expiry);
        send(engine, conn, Packet::Connect(Box::new(connect)));
    }
    /// The first bytes of each packet sent, in order.
    fn drain(steps: &mut Steps, engine: &mut Engine) -> Vec<u8> {
        core::iter::from_fn(|| steps.poll_action(engine))
            .filter_map(|action| match action {
                Action::Send { bytes, .. } => Some(bytes[0]),
                _ => None,
            })
            .collect()
    }

    let path = dir("full");
    let store = Store::open(&path, Fsync::Never, SystemTime::now()).unwrap();
    let mut steps = Steps::new(Some(store.clone()));
    let mut config = Config::default();
    config.persistence = true;
    let mut engine = Engine::new(config);
    connect(&mut engine, 1, "sub", 3600);
    let filters = vec![("big/#".into(), SubscriptionOptions::with_qos(QoS::AtLeastOnce))];
    let subscribe = Subscribe {
        packet_id: musqratt_engine::proto::PacketId::MIN,
        filters,
        properties: Default::default(),
    };
    send(&mut engine, 1, Packet::Subscribe(subscribe));
    engine.handle_input(Instant::ZERO, Input::Closed { conn: ConnectionId(1) });
    connect(&mut engine, 2, "pub", 0);
    drain(&mut steps, &mut engine);

    // Full: not one page more than the database has.
    let set_max_pages = |pages: &str| {
        let inner = store.inner.lock().unwrap();
        let count: i64 = inner.conn.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
        let max = if pages == "now" { count.to_string() } else { pages.to_owned() };
        inner.conn.execute_batch(&format!("PRAGMA max_page_count = {max};")).unwrap();
    };
    set_max_pages("now");
    let mut publish = Publish::new("big/1".into(), Bytes::from(vec![7u8; 64 * 1024]));
    publish.qos = QoS::AtLeastOnce;
    publish.packet_id = musqratt_engine::proto::PacketId::new(5);
    send(&mut engine, 2, Packet::Publish(publish));

    let sent_anything = AtomicBool::new(false);
    let sent = std::thread::scope(|scope| {
        let stepping = scope.spawn(|| {
            let sent = drain(&mut steps, &mut engine);
            sent_anything.store(true, Ordering::SeqCst);
            sent
        });
        // The write fails and is tried again: nothing of the step went out, nothing stored.
        std::thread::sleep(Duration::from_millis(300));
        assert!(!sent_anything.load(Ordering::SeqCst), "the PUBACK left before its write");
        let loaded = store.load(usize::MAX).unwrap();
        assert!(!loaded.records.iter().any(|r| matches!(r, Record::Queued(_))));
        // Space returns: the next try succeeds and the step's actions follow.
        set_max_pages("1073741823");
        stepping.join().unwrap()
    });
    assert_eq!(sent, [0x40], "the PUBACK, once stored: {sent:x?}");
    drop(engine);
    let loaded = store.load(usize::MAX).unwrap();
    let queued: Vec<_> = loaded
        .records
        .iter()
        .filter_map(|r| match r {
            Record::Queued(d) => Some((d.client_id.to_string(), d.message.payload().len())),
            _ => None,
        })
        .collect();
    assert_eq!(queued, [("sub".to_owned(), 64 * 1024)]);
}

/// A store of format 1 as the first brokers wrote it (tables `meta`, `retained`, `sessions`,
/// `queue` only) opens: the tables added since within format 1 (`inbound_qos2`,
/// `outbound_qos2`, `wills`) are created at open, what it held is read, and the new records
/// (an outbound QoS 2 state, a will) are written and read back (docs/PERSISTENCE.md,
/// "Format").
#[test]
fn a_store_of_the_first_format_1_layout_opens_and_gains_the_new_tables() {
    use musqratt_engine::StoredWill;
    use musqratt_engine::proto::PacketId;
    let path = dir("format-1");
    let epoch = SystemTime::now();
    let session = StoredSession::new("c".into(), 60, Vec::new());
    {
        let store = Store::open(&path, Fsync::Never, epoch).unwrap();
        store.write(&[Record::Session(session.clone()), queued("c", 1, b"old")]).unwrap();
    }
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "DROP TABLE inbound_qos2; DROP TABLE outbound_qos2; DROP TABLE wills; \
             DELETE FROM meta WHERE key = 'format'; INSERT INTO meta VALUES ('format', 1);",
        )
        .unwrap();
    }
    let store = Store::open(&path, Fsync::Never, epoch).unwrap();
    let loaded = store.load(usize::MAX).unwrap();
    assert_eq!(loaded.records, vec![Record::Session(session.clone()), queued("c", 1, b"old")]);
    let packet_id = PacketId::new(7).unwrap();
    let outbound =
        Record::OutboundQos2 { client_id: "c".into(), seq: 1, packet_id, released: true };
    let will = StoredWill::new("c".into(), message("w", b"gone"), Some(30), 5, None);
    store.write(&[outbound.clone(), Record::Will(will.clone())]).unwrap();
    let loaded = store.load(usize::MAX).unwrap();
    assert!(loaded.corrupt.is_empty(), "{:?}", loaded.corrupt);
    assert_eq!(
        loaded.records,
        vec![Record::Session(session), queued("c", 1, b"old"), outbound, Record::Will(will)]
    );
    // The message acknowledged: its outbound state goes with it; the session ended: its will.
    store
        .write(&[
            Record::Acknowledged { client_id: "c".into(), seq: 1 },
            Record::SessionEnded { client_id: "c".into() },
        ])
        .unwrap();
    assert!(store.load(usize::MAX).unwrap().records.is_empty());
}

/// At start each queue is read up to `head` messages, and a [`Record::QueueTail`] says where
/// the rest ends; a QoS 2 message in flight beyond the head is read with it (it is restored
/// in flight under its packet id). `load_queue` reads the rest in order.
#[test]
fn a_queue_is_read_by_its_head_and_the_rest_on_demand() {
    use musqratt_engine::proto::PacketId;
    let path = dir("head");
    let store = Store::open(&path, Fsync::Never, SystemTime::now()).unwrap();
    let session = StoredSession::new("c".into(), 60, Vec::new());
    let mut records = vec![Record::Session(session.clone())];
    records.extend((1..=10).map(|seq| queued("c", seq, b"m")));
    store.write(&records).unwrap();
    let loaded = store.load(3).unwrap();
    let mut want = vec![Record::Session(session.clone())];
    want.extend((1..=3).map(|seq| queued("c", seq, b"m")));
    want.push(Record::QueueTail { client_id: "c".into(), last_seq: 10 });
    assert_eq!(loaded.records, want);
    let rest = store.load_queue(&"c".into(), 3, 4).unwrap();
    assert_eq!(rest.iter().map(|d| d.seq).collect::<Vec<_>>(), [4, 5, 6, 7]);
    let packet_id = PacketId::new(9).unwrap();
    let outbound =
        Record::OutboundQos2 { client_id: "c".into(), seq: 5, packet_id, released: false };
    store.write(&[outbound]).unwrap();
    let seqs: Vec<u64> = store
        .load(3)
        .unwrap()
        .records
        .iter()
        .filter_map(|r| match r {
            Record::Queued(d) => Some(d.seq),
            _ => None,
        })
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6], "the head reaches the message in flight");
}
