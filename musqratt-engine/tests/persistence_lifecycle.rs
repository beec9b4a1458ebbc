//! Persistence beyond the records of state (docs/PERSISTENCE.md): a store that cannot write
//! (0x97), outbound QoS 2 and wills across a restart, queues bounded in memory and loaded from
//! the store. Transcripts show the packets and records of each step.

mod persist_kit;

use persist_kit::*;

/// A store that cannot write (a full disk, docs/PERSISTENCE.md): a QoS 1 or 2 PUBLISH that
/// would be stored (for a durable session, or retained) is refused, MQTT 5.0 with 0x97 Quota
/// exceeded (§3.4.2.1, §3.5.2.1), MQTT 3.1.1 not acknowledged (§4.3.2: the receiver
/// acknowledges once it accepted ownership); no record is emitted for it. QoS 0 and QoS 1
/// between sessions that are not durable keep flowing; once the store can write again the same
/// message is accepted and stored.
#[test]
fn a_full_store_refuses_new_durable_messages() {
    let mut run = Run::new(engine());
    run.open("durable", connect("durable", false, 3600));
    run.data("durable", subscribe("d/#", QoS::AtLeastOnce, None));
    run.close("durable");
    run.open("volatile", connect("volatile", true, 0));
    run.data("volatile", subscribe("v/#", QoS::AtLeastOnce, None));
    run.open("pub", connect("pub", true, 0));
    let mut old = Connect::new(ProtocolVersion::V3_1_1, "old");
    old.clean_start = true;
    run.open("old", v3(&Packet::Connect(Box::new(old))));
    run.engine.set_store_full(true);
    let _ = writeln!(run.out, "---- the store cannot write");
    run.data("pub", publish("d/1", b"refused", QoS::AtLeastOnce, false, 1));
    run.data("pub", publish("d/2", b"refused", QoS::ExactlyOnce, false, 2));
    run.data("pub", publish("v/1", b"flows", QoS::AtLeastOnce, false, 3));
    run.data("pub", publish("d/3", b"qos 0", QoS::AtMostOnce, false, 0));
    run.data("pub", publish("v/r", b"retained", QoS::AtLeastOnce, true, 4));
    run.data("pub", publish("nobody", b"no subscriber", QoS::AtLeastOnce, false, 5));
    let mut refused = Publish::new("d/4".into(), Bytes::from_static(b"3.1.1"));
    refused.qos = QoS::AtLeastOnce;
    refused.packet_id = PacketId::new(9);
    run.data("old", v3(&Packet::Publish(refused.clone())));
    assert_eq!(run.engine.metrics().dropped.store_full, 4);
    run.engine.set_store_full(false);
    let _ = writeln!(run.out, "---- the store writes again");
    run.data("pub", publish("d/1", b"accepted", QoS::AtLeastOnce, false, 1));
    refused.dup = true;
    run.data("old", v3(&Packet::Publish(refused)));
    run.open("durable", connect("durable", false, 3600));
    let refused_stored = run.records.iter().any(|r| match r {
        Record::Queued(d) => d.message.payload().as_ref() == b"refused",
        _ => false,
    });
    assert!(!refused_stored, "a refused message has no record");
    insta::assert_snapshot!(run.out);
}

/// Exactly once to a subscriber across a restart (§4.3.3, §4.4): a QoS 2 message of a durable
/// session in flight is stored with its packet id when its PUBLISH is sent, and again when
/// its PUBREC comes (PUBREL sent). Restored from the records, the engine resends at
/// reconnection the PUBREL under the same id for the released one, and the PUBLISH with DUP
/// under the same id for the one whose PUBREC had not come (MQTT-4.4.0-1): never a new
/// PUBLISH, which the client would take for another message. PUBCOMP forgets it.
#[test]
fn outbound_qos2_state_survives_a_restart() {
    let mut run = Run::new(engine());
    run.open("sub", connect("sub", false, 3600));
    run.data("sub", subscribe("t/#", QoS::ExactlyOnce, None));
    run.open("pub", connect("pub", true, 0));
    run.data("pub", publish("t/1", b"released", QoS::ExactlyOnce, false, 1));
    run.data("pub", publish("t/2", b"published", QoS::ExactlyOnce, false, 2));
    let first = run.unacked.get_mut("sub").unwrap().pop_front().unwrap();
    let second = run.unacked.get_mut("sub").unwrap().pop_front().unwrap();
    run.data("sub", pubrec(first));
    run.data("pub", pubrel(1));
    run.data("pub", pubrel(2));
    let mut model = Model::default();
    for record in run.records.drain(..) {
        model.apply(record);
    }
    let mut after = Run::new(model.restore(Instant::ZERO));
    after.open("sub", connect("sub", false, 3600));
    // The second PUBLISH, resent, kept its id.
    assert_eq!(
        after.unacked.get("sub").map(|q| q.iter().copied().collect::<Vec<_>>()),
        Some(vec![second])
    );
    after.data("sub", pubcomp(first));
    after.data("sub", pubrec(second));
    after.data("sub", pubcomp(second));
    insta::assert_snapshot!(format!("{}\n---- after the restart\n{}", run.out, after.out));
}

/// Wills survive a restart with their durable session (§3.1.2.5, §3.1.3.2.2): one whose client
/// disconnected abnormally has its delay running and is stored with the instant it is due (the
/// time the broker is down counts); one whose client was connected when the broker died
/// (stored held, with its delay) is due its delay after the restart, the connection having
/// ended abnormally. A will discarded by a normal DISCONNECT (MQTT-3.14.4-3) or published is
/// removed from the store. After the restart at 5 s, the first goes out at 10 s (as it said),
/// the second at the restart plus its 3 s, and neither before.
#[test]
fn wills_survive_a_restart() {
    let mut run = Run::new(engine());
    run.open("delayed", connect_with_will("delayed", 3600, 10));
    run.open("connected", connect_with_will("connected", 3600, 3));
    run.open("normal", connect_with_will("normal", 3600, 0));
    run.close("delayed");
    run.data("normal", bytes(&Packet::Disconnect(Disconnect::default())));
    run.close("normal");
    let mut model = Model::default();
    for record in run.records.drain(..) {
        model.apply(record);
    }
    let restart = Instant::from_micros(5_000_000);
    let mut after = Run::new(engine());
    after.now = restart;
    after.engine = model.restore_into(engine(), restart);
    after.open("watcher", connect("watcher", true, 0));
    after.data("watcher", subscribe("will/#", QoS::AtMostOnce, None));
    for secs in [6, 8, 9, 10] {
        after.now = Instant::from_micros(secs * 1_000_000);
        let _ = writeln!(after.out, "---- {secs} s");
        after.engine.handle_timeout(after.now);
        after.drain();
    }
    insta::assert_snapshot!(format!("{}\n---- restarted at 5 s\n{}", run.out, after.out));
}

/// RAM bounded for any backlog (docs/PERSISTENCE.md): with `max_ram_per_session` = 2, an
/// offline durable session keeps 2 queued messages in memory and the others in the store
/// only (each is stored, none is dropped). Reconnected, it gets the 2, and as its queue drains
/// the engine asks for the next part of it (`LoadQueue` after the last number it holds), which
/// comes in order; a message published meanwhile goes after the tail, not ahead of it. After a
/// restart that restored only the head (2) and where the tail ends, the same happens.
#[test]
fn a_queue_beyond_max_ram_per_session_stays_in_the_store_and_loads_in_order() {
    let mut run = Run::new(bounded_engine(2));
    run.open("sub", connect("sub", false, 3600));
    run.data("sub", subscribe("t/#", QoS::AtLeastOnce, None));
    run.close("sub");
    run.open("pub", connect("pub", true, 0));
    for (i, payload) in [b"m1", b"m2", b"m3", b"m4", b"m5"].iter().enumerate() {
        run.data("pub", publish("t/1", &payload[..], QoS::AtLeastOnce, false, i as u16 + 1));
    }
    let mut store = Model::default();
    for record in run.records.drain(..) {
        store.apply(record);
    }
    // What a restart now would find: restored with the head only.
    let mut restarted_store = store.clone();
    let mut restarted = Run::new(store.clone().restore_head(Instant::ZERO, 2));

    run.open("sub", connect("sub", false, 3600));
    run.data("pub", publish("t/1", b"m6", QoS::AtLeastOnce, false, 6));
    let received = drain_with_loads(&mut run, &mut store);
    assert_eq!(received, ["m1", "m2", "m3", "m4", "m5", "m6"], "every message, in order, once");
    assert!(store.queued.is_empty(), "all acknowledged");
    insta::assert_snapshot!(run.out);

    restarted.open("sub", connect("sub", false, 3600));
    let received = drain_with_loads(&mut restarted, &mut restarted_store);
    assert_eq!(received, ["m1", "m2", "m3", "m4", "m5"], "after a restart too");
    assert!(restarted_store.queued.is_empty());
}

/// Acknowledges every PUBLISH "sub" receives, the store kept up to date and `LoadQueue`s
/// answered; returns the payloads in the order received.
fn drain_with_loads(run: &mut Run, store: &mut Model) -> Vec<String> {
    let mut received = Vec::new();
    loop {
        for record in run.records.drain(..) {
            store.apply(record);
        }
        run.answer_loads(store);
        for record in run.records.drain(..) {
            store.apply(record);
        }
        let Some(id) = run.unacked.get_mut("sub").and_then(|q| q.pop_front()) else { break };
        let payload = run.payloads.get_mut("sub").and_then(|q| q.pop_front()).unwrap();
        received.push(payload);
        run.data("sub", puback(id));
    }
    received
}
