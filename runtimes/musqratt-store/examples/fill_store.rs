//! Fills a store with a backlog, straight through the store API (far faster than publishing
//! it): SESSIONS durable sessions (`fill-<n>`, Session Expiry an hour, subscribed to
//! `fill/<n>/#` at QoS 1), each with PER_SESSION queued QoS 1 messages of PAYLOAD bytes, in
//! transactions of 10,000 records. For `bench/persistence-restart.sh` and by hand:
//!
//!   cargo run --release -p musqratt-store --example fill_store -- PATH SESSIONS PER_SESSION PAYLOAD
//!
//! The payload of message `k` of a session starts with `k` in decimal then a space, so that a
//! drain can check the order.

use std::path::PathBuf;
use std::time::SystemTime;

use bytes::Bytes;
use musqratt_engine::proto::QoS;
use musqratt_engine::proto::mqtt::{SubscriptionIds, SubscriptionOptions};
use musqratt_engine::{Record, StoredDelivery, StoredMessage, StoredSession, StoredSubscription};
use musqratt_store::{Fsync, Store};

fn main() -> Result<(), Box<dyn core::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [path, sessions, per_session, payload] = args.as_slice() else {
        return Err("usage: fill_store PATH SESSIONS PER_SESSION PAYLOAD_BYTES".into());
    };
    let path = PathBuf::from(path);
    let (sessions, per_session, payload): (u64, u64, usize) =
        (sessions.parse()?, per_session.parse()?, payload.parse()?);
    let store = Store::open(&path, Fsync::Never, SystemTime::now())?;
    let mut batch = Vec::with_capacity(10_000);
    let mut seq = 1;
    for n in 0..sessions {
        let client_id = format!("fill-{n}");
        let sub = StoredSubscription::new(
            format!("fill/{n}/#").into(),
            SubscriptionOptions::with_qos(QoS::AtLeastOnce),
            None,
        );
        let session = StoredSession::new(client_id.as_str().into(), 3600, vec![sub]);
        batch.push(Record::Session(session));
        for k in 0..per_session {
            let mut body = format!("{k} ").into_bytes();
            body.resize(payload.max(body.len()), b'x');
            let message = StoredMessage::new(
                format!("fill/{n}/t").into(),
                Bytes::from(body),
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
            if batch.len() >= 10_000 {
                store.write(&batch)?;
                batch.clear();
            }
        }
    }
    store.write(&batch)?;
    println!("{} messages for {sessions} sessions in {}", seq - 1, path.display());
    Ok(())
}
