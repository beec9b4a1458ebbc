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
        store.write(&[Record::Acknowledged { client_id: "a".into(), seq: 2 }]).unwrap();
        store.write(&[Record::SessionEnded { client_id: "b".into() }]).unwrap();
    }
    let store = Store::open(&path, Fsync::Never, epoch).unwrap();
    let loaded = store.load().unwrap();
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
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(kinds, ["retained r/1", "retained r/2", "session a 1", "queued a 1 b\"a1\""]);
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
    let loaded = store.load().unwrap();
    assert_eq!(loaded.records.len(), 1);
    let what: Vec<&str> = loaded.corrupt.iter().map(|(what, _)| *what).collect();
    assert_eq!(what, ["retained", "session"]);
}
