//! A large backlog across a restart (issue 16 item 5; docs/PERSISTENCE.md): a store holding
//! 100 offline durable sessions with 1,000 queued QoS 1 messages each (100,000, written straight
//! through the store API for speed) is opened by the broker with `max_ram_per_session = 100`:
//! it reads only the first 100 of each queue at start. A new client is served (CONNACK,
//! PINGRESP), then every session drains its whole backlog, in order, each message once, the
//! rest of each queue read from the store as it drains. On every runtime.
//! `bench/persistence-restart.sh` measures the start time and peak RSS of the same situation at
//! 1,000,000 messages.

use std::path::Path;
use std::time::SystemTime;

use bytes::Bytes;
use musqratt::proto::mqtt::{Connect, Packet, ReasonCode, SubscriptionIds, SubscriptionOptions};
use musqratt::proto::{ProtocolVersion, QoS};
use musqratt_engine::{Record, StoredDelivery, StoredMessage, StoredSession, StoredSubscription};
use musqratt_store::{Fsync, Store};
use musqratt_testkit::{BrokerProcess, free_port, open, scratch_dir};

const V5: ProtocolVersion = ProtocolVersion::V5;
const SESSIONS: u64 = 100;
const PER_SESSION: u64 = 1000;

/// The backlog: session `b-<n>` subscribed to `b/<n>/#`, its messages `<n> <k>` in order.
fn fill(path: &Path) {
    let store = Store::open(path, Fsync::Never, SystemTime::now()).unwrap();
    let mut seq = 1;
    for n in 0..SESSIONS {
        let client_id = format!("b-{n}");
        let sub = StoredSubscription::new(
            format!("b/{n}/#").into(),
            SubscriptionOptions::with_qos(QoS::AtLeastOnce),
            None,
        );
        let mut batch =
            vec![Record::Session(StoredSession::new(client_id.as_str().into(), 3600, vec![sub]))];
        for k in 0..PER_SESSION {
            let message = StoredMessage::new(
                format!("b/{n}/t").into(),
                Bytes::from(format!("{n} {k}")),
                QoS::AtLeastOnce,
                false,
                Default::default(),
                None,
            );
            let delivery = StoredDelivery::new(
                client_id.as_str().into(),
                seq,
                QoS::AtLeastOnce,
                false,
                SubscriptionIds::new(),
                message,
            );
            seq += 1;
            batch.push(Record::Queued(delivery));
        }
        store.write(&batch).unwrap();
    }
}

#[test]
fn a_restarted_broker_serves_at_once_and_drains_a_large_backlog_in_order_tokio() {
    a_restarted_broker_serves_at_once_and_drains_a_large_backlog_in_order("tokio");
}

#[test]
fn a_restarted_broker_serves_at_once_and_drains_a_large_backlog_in_order_io_uring() {
    a_restarted_broker_serves_at_once_and_drains_a_large_backlog_in_order("io-uring");
}

#[test]
fn a_restarted_broker_serves_at_once_and_drains_a_large_backlog_in_order_blocking() {
    a_restarted_broker_serves_at_once_and_drains_a_large_backlog_in_order("blocking");
}

fn a_restarted_broker_serves_at_once_and_drains_a_large_backlog_in_order(runtime_name: &str) {
    let _one = musqratt_testkit::one_broker_process_at_a_time();
    let dir = scratch_dir(&format!("backlog-{runtime_name}"));
    let store = dir.join("store.db");
    let _ = std::fs::remove_file(&store);
    fill(&store);
    let port = free_port();
    let config = format!(
        "listeners = [\"mqtt://127.0.0.1:{port}\"]\nthreads = 2\n\n[persistence]\npath = \"{}\"\n\
         fsync = \"never\"\nmax_ram_per_session = 100\n",
        store.display()
    );
    let broker =
        BrokerProcess::musqratt(env!("CARGO_BIN_EXE_musqratt"), &dir, runtime_name, &config)
            .port(port)
            .start();
    let addr = core::net::SocketAddr::from(([127, 0, 0, 1], port));
    // Read at start: the sessions, the first 100 messages of each and where each tail ends,
    // not the 100,000 messages.
    let deadline = std::time::Instant::now() + core::time::Duration::from_secs(10);
    while !broker.log().contains("listening") {
        assert!(std::time::Instant::now() < deadline, "{}", broker.log());
        std::thread::sleep(core::time::Duration::from_millis(20));
    }
    let log = broker.log();
    assert!(log.contains(&format!("records={}", SESSIONS * (1 + 100 + 1))), "{log}");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut fresh = musqratt_testkit::connect(addr, "fresh", V5).await;
        fresh.ping().await;
        for n in 0..SESSIONS {
            let mut client = open(addr, V5).await;
            let mut connect = Connect::new(V5, format!("b-{n}").as_str());
            connect.clean_start = false;
            connect.properties.session_expiry_interval = Some(3600);
            client.send(&Packet::Connect(Box::new(connect)));
            match client.recv().await {
                Packet::ConnAck(ack) => {
                    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
                    assert!(ack.session_present, "session b-{n} restored");
                }
                other => panic!("expected CONNACK, got {other:?}"),
            }
            for k in 0..PER_SESSION {
                let publish = client.recv_publish().await;
                assert_eq!(&publish.payload[..], format!("{n} {k}").as_bytes(), "in order, once");
                client.ack(&publish).await;
            }
            client.ping().await;
            client.disconnect().await;
        }
        fresh.ping().await;
    });
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
}
