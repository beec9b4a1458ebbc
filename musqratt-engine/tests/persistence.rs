//! Persistence (docs/PERSISTENCE.md): the records the engine emits for each durable change, in
//! the order of the step's actions (snapshots), and restore from them (a property: what a
//! fresh engine restores from the records is what the first engine held).

mod persist_kit;

use persist_kit::*;
use quickcheck::{Arbitrary, Gen, QuickCheck};

/// A persistent subscriber's session, its subscription and its offline queue; the PUBACK to
/// the publisher comes first in the step's actions, the record of the message after it: the
/// runtime writes the records of a step before its sends (ADR 17).
#[test]
fn records_of_a_durable_session() {
    let mut run = Run::new(engine());
    run.open("sub", connect("sub", false, 3600));
    run.data("sub", subscribe("t/#", QoS::AtLeastOnce, Some(7)));
    run.close("sub");
    run.open("pub", connect("pub", true, 0));
    run.data("pub", publish("t/1", b"one", QoS::AtLeastOnce, false, 1));
    run.data("pub", publish("t/2", b"two", QoS::AtLeastOnce, false, 2));
    run.data("pub", publish("t/0", b"zero", QoS::AtMostOnce, false, 0));
    run.open("sub", connect("sub", false, 3600));
    run.data("sub", puback(1));
    run.data("sub", puback(2));
    run.data("sub", bytes(&Packet::Disconnect(Disconnect::default())));
    run.open("sub", connect("sub", true, 0));
    insta::assert_snapshot!(run.out);
}

/// Retained messages: stored, replaced, removed by an empty payload (MQTT-3.3.1-6); a message
/// expiry is kept as an instant of the engine (the store converts it to wall-clock time).
#[test]
fn records_of_retained_messages() {
    let mut run = Run::new(engine());
    run.open("pub", connect("pub", true, 0));
    run.data("pub", publish("r/1", b"a", QoS::AtLeastOnce, true, 1));
    run.data("pub", publish("r/1", b"b", QoS::AtMostOnce, true, 0));
    run.data("pub", publish("r/2", b"c", QoS::AtMostOnce, true, 0));
    run.data("pub", publish("r/2", b"", QoS::AtMostOnce, true, 0));
    let mut expiring = Publish::new("r/3".into(), Bytes::from_static(b"d"));
    expiring.retain = true;
    expiring.properties.message_expiry_interval = Some(60);
    run.data("pub", bytes(&Packet::Publish(expiring)));
    insta::assert_snapshot!(run.out);
}

/// The `$SYS` tree is published again every period: it is not stored (a write per topic and
/// period, stale after a restart anyway); another retained message of the broker is.
#[test]
fn the_sys_tree_is_not_stored() {
    let mut engine = engine();
    for topic in ["$SYS/broker/uptime", "broker/own"] {
        engine.publish_broker_message(Instant::ZERO, topic.into(), Bytes::from_static(b"1"));
    }
    let stored: Vec<String> = core::iter::from_fn(|| engine.poll_action())
        .filter_map(|action| match action {
            Action::Store(Record::Retained { topic, .. }) => Some(topic.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(stored, ["broker/own"]);
}

/// Off by default: an engine without `persistence` emits no record for the same script.
#[test]
fn no_records_without_persistence() {
    let mut run = Run::new(Engine::new(Config::default()));
    run.open("sub", connect("sub", false, 3600));
    run.data("sub", subscribe("t/#", QoS::AtLeastOnce, None));
    run.close("sub");
    run.open("pub", connect("pub", true, 0));
    run.data("pub", publish("t/1", b"one", QoS::AtLeastOnce, true, 1));
    assert!(run.records.is_empty(), "{:?}", run.records);
    assert!(run.out.contains("pub <- PUBACK"));
}

/// One step of a random run against one broker: a durable subscriber "s" (Session Expiry
/// 3600 s) on filter `t/#`, which connects, disconnects and acknowledges; a publisher on
/// topics t/0..t/3, retained or not.
#[derive(Debug, Clone)]
enum Op {
    Publish { topic: u8, qos1: bool, retain: bool, empty: bool },
    SubscriberOnline,
    SubscriberOffline,
    AckOldest,
}

impl Arbitrary for Op {
    fn arbitrary(g: &mut Gen) -> Self {
        match u8::arbitrary(g) % 8 {
            0 => Op::SubscriberOnline,
            1 => Op::SubscriberOffline,
            2 | 3 => Op::AckOldest,
            _ => Op::Publish {
                topic: u8::arbitrary(g) % 4,
                qos1: bool::arbitrary(g),
                retain: bool::arbitrary(g),
                empty: u8::arbitrary(g) % 5 == 0,
            },
        }
    }
}

const TOPICS: [&str; 4] = ["t/0", "t/1", "t/2", "t/3"];

/// What a client sees of an engine: the retained messages a new subscriber to `#` gets, and
/// the messages the durable subscriber gets when it connects with Clean Start 0 (a restored
/// session resends the unacknowledged ones from its queue: at least once, §4.3.2).
/// Messages a client received, as (topic, payload).
type Received = Vec<(String, Bytes)>;

fn observe(engine: Engine) -> (Received, Received, bool) {
    observe_with(engine, None)
}

/// As [`observe`]; with `store`, the engine's `LoadQueue`s are answered from it (a bounded
/// `max_ram_per_session`).
fn observe_with(mut engine: Engine, mut store: Option<Model>) -> (Received, Received, bool) {
    let mut messages = |engine: &mut Engine, conn: u64, input: BytesMut| {
        engine.handle_input(Instant::ZERO, Input::Data { conn: ConnectionId(conn), bytes: input });
        let mut sends = BytesMut::new();
        while let Some(action) = engine.poll_action() {
            match action {
                Action::Send { conn: c, bytes } if c.0 == conn => sends.extend_from_slice(&bytes),
                Action::Store(record) => {
                    if let Some(store) = store.as_mut() {
                        store.apply(record);
                    }
                }
                Action::LoadQueue { client_id, after, max } => {
                    let store = store.as_ref().expect("a store to load from");
                    let read = store.load_queue(&client_id, after, max);
                    let complete = read.len() < max;
                    engine.queue_loaded(&client_id, read, complete);
                }
                _ => {}
            }
        }
        let mut decoder = musqratt_engine::proto::mqtt::Decoder::with_version(V5, 1 << 20);
        let mut out = Vec::new();
        let mut present = false;
        while let Some(packet) = decoder.decode(&mut sends).unwrap() {
            match packet {
                Packet::Publish(p) => out.push((p.topic.to_string(), p.payload)),
                Packet::ConnAck(c) => present = c.session_present,
                _ => {}
            }
        }
        (out, present)
    };
    engine.handle_input(Instant::ZERO, Input::Accepted { conn: ConnectionId(900) });
    messages(&mut engine, 900, connect("observer", true, 0));
    let (retained, _) = messages(&mut engine, 900, subscribe("#", QoS::AtLeastOnce, None));
    engine.handle_input(Instant::ZERO, Input::Accepted { conn: ConnectionId(901) });
    let (queued, present) = messages(&mut engine, 901, connect("s", false, 3600));
    (retained, queued, present)
}

fn run_ops(ops: &[Op]) -> (Engine, Vec<Record>, bool) {
    run_ops_on(Run::new(engine()), ops, None)
}

/// [`run_ops`] on `run`; with `store`, the records are applied to it after each step and the
/// engine's `LoadQueue`s answered from it.
fn run_ops_on(
    mut run: Run,
    ops: &[Op],
    mut store: Option<&mut Model>,
) -> (Engine, Vec<Record>, bool) {
    let mut sync = |run: &mut Run| {
        if let Some(store) = store.as_deref_mut() {
            for record in run.records.clone() {
                store.apply(record);
            }
            let before = run.records.len();
            run.answer_loads(store);
            for record in run.records[before..].iter().cloned() {
                store.apply(record);
            }
            run.records.clear();
        }
    };
    run.open("pub", connect("pub", true, 0));
    let mut online = false;
    let mut packet_id = 0u16;
    let mut subscribed = false;
    for op in ops {
        match *op {
            Op::SubscriberOnline if !online => {
                run.open("s", connect("s", false, 3600));
                if !subscribed {
                    run.data("s", subscribe("t/#", QoS::AtLeastOnce, None));
                    subscribed = true;
                }
                online = true;
            }
            Op::SubscriberOffline if online => {
                run.close("s");
                online = false;
            }
            Op::AckOldest if online => {
                if let Some(id) = run.unacked.get_mut("s").and_then(|ids| ids.pop_front()) {
                    run.data("s", puback(id));
                }
            }
            Op::Publish { topic, qos1, retain, empty } => {
                packet_id = packet_id % 60000 + 1;
                let qos = if qos1 { QoS::AtLeastOnce } else { QoS::AtMostOnce };
                let payload: &'static [u8] = if empty { b"" } else { b"m" };
                let topic = TOPICS[usize::from(topic)];
                run.data("pub", publish(topic, payload, qos, retain, packet_id));
            }
            _ => {}
        }
        sync(&mut run);
    }
    if online {
        run.close("s");
        sync(&mut run);
    }
    let Run { engine, records, .. } = run;
    (engine, records, subscribed)
}

#[test]
fn restore_from_the_records_gives_the_same_state() {
    fn property(ops: Vec<Op>) -> bool {
        let (original, records, subscribed) = run_ops(&ops);
        let mut model = Model::default();
        for record in records {
            model.apply(record);
        }
        let restored = model.restore(Instant::ZERO);
        let before = observe(original);
        let after = observe(restored);
        if before != after {
            eprintln!("ops {ops:?}\nbefore {before:?}\nafter  {after:?}");
        }
        before == after && (!subscribed || after.2)
    }
    QuickCheck::new().tests(300).quickcheck(property as fn(Vec<Op>) -> bool);
}

/// The reference model with RAM bounded (`max_ram_per_session` = 2, docs/PERSISTENCE.md): the
/// same random runs on an engine that keeps 2 queued messages in memory and the rest in the
/// store, loaded as the queue drains. What the subscriber then receives, and what a new
/// subscriber gets retained, is what the unbounded engine gives; and so after a restart that
/// restores only each queue's head (2) and where its tail ends. Nothing acknowledged is lost,
/// nothing is reordered.
#[test]
fn a_bounded_queue_in_ram_gives_what_an_unbounded_one_does_and_after_a_restart() {
    fn property(ops: Vec<Op>) -> bool {
        let (unbounded, _, _) = run_ops(&ops);
        let mut store = Model::default();
        let (bounded, _, subscribed) =
            run_ops_on(Run::new(bounded_engine(2)), &ops, Some(&mut store));
        let want = observe(unbounded);
        let got = observe_with(bounded, Some(store.clone()));
        let restarted = observe_with(store.clone().restore_head(Instant::ZERO, 2), Some(store));
        if want != got || want != restarted {
            eprintln!("ops {ops:?}\nwant {want:?}\ngot  {got:?}\nrestarted {restarted:?}");
        }
        want == got && want == restarted && (!subscribed || restarted.2)
    }
    QuickCheck::new().tests(300).quickcheck(property as fn(Vec<Op>) -> bool);
}

/// §3.1.2.11.2: a session's expiry runs from its disconnection, and the time the broker was
/// down counts. The record made at the network close says when it expires; restored with
/// that instant, the session is gone at its first deadline, not `expiry` after the restart.
/// One stored while connected (the broker died with it) expires `expiry` after the restart.
#[test]
fn session_expiry_counts_the_time_the_broker_was_down() {
    let mut run = Run::new(engine());
    run.open("sub", connect("sub", false, 60));
    run.data("sub", subscribe("t/#", QoS::AtLeastOnce, None));
    run.now = Instant::from_micros(5_000_000);
    run.close("sub");
    let stored = run.records.iter().rev().find_map(|r| match r {
        Record::Session(s) => Some(s.clone()),
        _ => None,
    });
    let stored = stored.expect("a session record at the network close");
    assert_eq!(stored.expires_at, Some(Instant::from_micros(65_000_000)));

    // Restarted 30 s after the close (in the new engine's time, the store having converted
    // the wall-clock instant): it expires 30 s later, at the instant stored.
    let mut restored = engine();
    let now = Instant::ZERO;
    let at = Instant::from_micros(30_000_000);
    let session = stored.clone().expiring_at(Some(at));
    restored.restore(now, Record::Session(session)).unwrap();
    while restored.poll_action().is_some() {}
    assert_eq!(restored.poll_timeout(), Some(at));
    restored.handle_timeout(at);
    assert_eq!(restored.session_count(), 0);
    let ended = core::iter::from_fn(|| restored.poll_action())
        .any(|a| matches!(a, Action::Store(Record::SessionEnded { .. })));
    assert!(ended, "its records leave the store");

    // Down longer than the expiry: the instant has passed; the session ends at the first
    // `handle_timeout`, and a client finds no session (Session Present 0).
    let mut late = engine();
    let past = stored.clone().expiring_at(Some(Instant::ZERO));
    late.restore(Instant::from_micros(1), Record::Session(past)).unwrap();
    late.handle_timeout(Instant::from_micros(1));
    assert_eq!(late.session_count(), 0);

    // Stored while connected (no instant): `expiry` after the restart.
    let mut connected = engine();
    connected.restore(now, Record::Session(stored.expiring_at(None))).unwrap();
    assert_eq!(connected.poll_timeout(), Some(Instant::from_micros(60_000_000)));
}

/// Exactly once across a restart (Method B of §4.3.3): the packet id of a QoS 2 PUBLISH of a
/// durable session is stored in the step of its PUBREC (so written before it goes out) and
/// forgotten at PUBREL. Restored from the records, the engine answers the PUBLISH resent with
/// DUP under that id with a PUBREC and delivers nothing; the PUBREL finds the id (PUBCOMP
/// 0x00, not 0x92 Packet Identifier not found); the id is then free for a new message.
#[test]
fn inbound_qos2_awaiting_pubrel_survives_a_restart() {
    let mut run = Run::new(engine());
    run.open("pub", connect("pub", false, 3600));
    run.data("pub", publish("t/1", b"once", QoS::ExactlyOnce, false, 7));
    // A session that is not durable keeps its ids in memory only.
    run.open("volatile", connect("volatile", true, 0));
    run.data("volatile", publish("t/2", b"x", QoS::ExactlyOnce, false, 8));
    let mut model = Model::default();
    for record in run.records.drain(..) {
        model.apply(record);
    }
    let mut after = Run::new(model.restore(Instant::ZERO));
    after.open("sub", connect("sub", true, 0));
    after.data("sub", subscribe("t/#", QoS::ExactlyOnce, None));
    after.open("pub", connect("pub", false, 3600));
    let mut resent = publish("t/1", b"once", QoS::ExactlyOnce, false, 7);
    resent[0] |= 0x08; // DUP
    after.data("pub", resent);
    after.data("pub", pubrel(7));
    after.data("pub", publish("t/1", b"new", QoS::ExactlyOnce, false, 7));
    insta::assert_snapshot!(format!("{}\n---- after the restart\n{}", run.out, after.out));
}
