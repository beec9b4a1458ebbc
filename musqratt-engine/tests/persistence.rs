//! Persistence (docs/PERSISTENCE.md): the records the engine emits for each durable change, in
//! the order of the step's actions (snapshots), and restore from them (a property: what a
//! fresh engine restores from the records is what the first engine held).

use core::fmt::Write as _;
use std::collections::BTreeMap;

use musqratt_engine::bytes::{Bytes, BytesMut};
use musqratt_engine::proto::mqtt::{
    Connect, Disconnect, Packet, PubResponse, Publish, Subscribe, SubscribeProperties,
    SubscriptionOptions,
};
use musqratt_engine::proto::{PacketId, ProtocolVersion, QoS};
use musqratt_engine::{Action, Config, ConnectionId, Engine, Input, Instant, Record};
use quickcheck::{Arbitrary, Gen, QuickCheck};

const V5: ProtocolVersion = ProtocolVersion::V5;

fn engine() -> Engine {
    let mut config = Config::default();
    config.persistence = true;
    Engine::new(config)
}

fn bytes(packet: &Packet) -> BytesMut {
    let mut buf = BytesMut::new();
    packet.encode(V5, &mut buf).unwrap();
    buf
}

fn connect(client_id: &str, clean: bool, expiry: u32) -> BytesMut {
    let mut connect = Connect::new(V5, client_id);
    connect.clean_start = clean;
    connect.properties.session_expiry_interval = Some(expiry);
    bytes(&Packet::Connect(Box::new(connect)))
}

fn subscribe(filter: &str, qos: QoS, id: Option<u32>) -> BytesMut {
    let mut options = SubscriptionOptions::with_qos(qos);
    options.retain_as_published = true;
    let mut properties = SubscribeProperties::default();
    properties.subscription_identifier = id;
    let subscribe =
        Subscribe { packet_id: PacketId::MIN, filters: vec![(filter.into(), options)], properties };
    bytes(&Packet::Subscribe(subscribe))
}

fn publish(topic: &str, payload: &'static [u8], qos: QoS, retain: bool, id: u16) -> BytesMut {
    let mut publish = Publish::new(topic.into(), Bytes::from_static(payload));
    publish.qos = qos;
    publish.retain = retain;
    publish.packet_id = (qos != QoS::AtMostOnce).then(|| PacketId::new(id).unwrap());
    bytes(&Packet::Publish(publish))
}

fn puback(id: u16) -> BytesMut {
    bytes(&Packet::PubAck(PubResponse::new(PacketId::new(id).unwrap())))
}

/// A record as one line.
fn show(record: &Record) -> String {
    match record {
        Record::Retained { topic, message: None } => format!("store retained {topic} removed"),
        Record::Retained { topic, message: Some(m) } => format!(
            "store retained {topic} {:?} qos={} expires_at={:?}",
            m.payload(),
            m.qos().bits(),
            m.expires_at().map(Instant::as_micros)
        ),
        Record::Session(s) => {
            let mut line = format!("store session {} expiry={}", s.client_id, s.expiry_interval);
            if let Some(at) = s.expires_at {
                let _ = write!(line, " expires_at={}", at.as_micros());
            }
            for sub in &s.subscriptions {
                let o = sub.options;
                let _ = write!(
                    line,
                    " [{} qos={} nl={} rap={} rh={} id={:?}]",
                    sub.filter,
                    o.qos.bits(),
                    u8::from(o.no_local),
                    u8::from(o.retain_as_published),
                    o.retain_handling as u8,
                    sub.id
                );
            }
            line
        }
        Record::SessionEnded { client_id } => format!("store session {client_id} ended"),
        Record::Queued(d) => format!(
            "store queued {} #{} qos={} retain={} ids={:?} {} {:?}",
            d.client_id,
            d.seq,
            d.qos.bits(),
            u8::from(d.retain),
            d.subscription_ids.as_slice(),
            d.message.topic(),
            d.message.payload()
        ),
        Record::Acknowledged { client_id, seq } => format!("store acknowledged {client_id} #{seq}"),
        Record::AwaitingRelease { client_id, packet_id } => {
            format!("store {client_id} awaits PUBREL {}", packet_id.get())
        }
        Record::Released { client_id, packet_id } => {
            format!("store {client_id} released {}", packet_id.get())
        }
        Record::OutboundQos2 { client_id, seq, packet_id, released } => format!(
            "store {client_id} #{seq} in flight as {} {}",
            packet_id.get(),
            if *released { "PUBREL sent" } else { "PUBLISH sent" }
        ),
        Record::Will(w) => format!(
            "store will of {} {} {:?} delay={} due_at={:?}",
            w.client_id,
            w.message.topic(),
            w.message.payload(),
            w.delay,
            w.due_at.map(Instant::as_micros)
        ),
        Record::WillRemoved { client_id } => format!("store will of {client_id} removed"),
        other => format!("store {other:?}"),
    }
}

/// Runs a script of (client, bytes) steps; the transcript shows, per step, each action in
/// order: packets sent (their type) and records to store.
struct Run {
    engine: Engine,
    conns: BTreeMap<&'static str, u64>,
    next: u64,
    out: String,
    records: Vec<Record>,
    now: Instant,
    /// Packet ids of the QoS 1 PUBLISHes each client received and has not acknowledged, in
    /// the order received.
    unacked: BTreeMap<&'static str, std::collections::VecDeque<u16>>,
    /// `Action::LoadQueue`s not answered yet: (client, after, max).
    loads: Vec<(String, u64, usize)>,
    /// Payloads of the PUBLISHes each client received, in order.
    payloads: BTreeMap<&'static str, std::collections::VecDeque<String>>,
}

impl Run {
    fn new(engine: Engine) -> Self {
        Self {
            engine,
            conns: BTreeMap::new(),
            next: 0,
            out: String::new(),
            records: Vec::new(),
            now: Instant::ZERO,
            unacked: BTreeMap::new(),
            loads: Vec::new(),
            payloads: BTreeMap::new(),
        }
    }

    fn open(&mut self, name: &'static str, bytes: BytesMut) {
        self.next += 1;
        self.conns.insert(name, self.next);
        self.unacked.remove(name); // a new connection: what was in flight is sent again
        let conn = ConnectionId(self.next);
        self.engine.handle_input(self.now, Input::Accepted { conn });
        self.data(name, bytes);
    }

    fn data(&mut self, name: &'static str, bytes: BytesMut) {
        let conn = ConnectionId(self.conns[name]);
        let _ = writeln!(self.out, "> {name} {}", packet_name(bytes[0]));
        self.engine.handle_input(self.now, Input::Data { conn, bytes });
        self.drain();
    }

    fn close(&mut self, name: &'static str) {
        let conn = ConnectionId(self.conns[name]);
        let _ = writeln!(self.out, "> {name} network close");
        self.engine.handle_input(self.now, Input::Closed { conn });
        self.drain();
    }

    fn drain(&mut self) {
        // Bytes of PUBLISH payload still to come: a payload is a send of its own.
        let mut payload = 0;
        let mut to = "?";
        while let Some(action) = self.engine.poll_action() {
            match action {
                Action::Send { bytes, .. } if payload > 0 => {
                    payload -= bytes.len();
                    let text = String::from_utf8_lossy(&bytes).into_owned();
                    self.payloads.entry(to).or_default().push_back(text);
                }
                Action::Send { conn, bytes } => {
                    payload = publish_payload_len(&bytes);
                    let name = self.conns.iter().find(|(_, c)| **c == conn.0).map(|(n, _)| *n);
                    // A PUBLISH payload is a second send: only packet headers are shown.
                    if let Some(kind) = packet_kind(bytes[0]) {
                        let name = name.unwrap_or("?");
                        to = name;
                        // The reason code of PUBACK and of the QoS 2 flow, when not 0x00
                        // Success (§3.4.2.1, §3.5.2.1).
                        let reason = match bytes[0] >> 4 {
                            4..=7 if bytes.len() > 4 => format!(" 0x{:02x}", bytes[4]),
                            _ => String::new(),
                        };
                        let _ = writeln!(self.out, "  {name} <- {kind}{reason}");
                        if let Some(id) = publish_id(&bytes) {
                            self.unacked.entry(name).or_default().push_back(id);
                        }
                    }
                }
                Action::Store(record) => {
                    let _ = writeln!(self.out, "  {}", show(&record));
                    self.records.push(record);
                }
                Action::LoadQueue { client_id, after, max } => {
                    let _ = writeln!(
                        self.out,
                        "  load queue of {client_id} after #{after}, {max} at most"
                    );
                    self.loads.push((client_id.to_string(), after, max));
                }
                _ => {}
            }
        }
    }
}

/// The payload length a PUBLISH header announces (0 for another packet): its remaining
/// length less what follows the fixed header in `header`.
fn publish_payload_len(header: &[u8]) -> usize {
    if header[0] >> 4 != 3 {
        return 0;
    }
    let (mut remaining, mut at) = (0usize, 1);
    loop {
        remaining |= usize::from(header[at] & 0x7f) << (7 * (at - 1));
        at += 1;
        if header[at - 1] & 0x80 == 0 {
            break;
        }
    }
    remaining.saturating_sub(header.len() - at)
}

/// The packet id of a QoS 1 or 2 PUBLISH header: after the fixed header and the topic.
fn publish_id(header: &[u8]) -> Option<u16> {
    if header[0] >> 4 != 3 || (header[0] >> 1) & 3 == 0 {
        return None;
    }
    let mut at = 1;
    while header[at] & 0x80 != 0 {
        at += 1;
    }
    at += 1;
    let topic = usize::from(u16::from_be_bytes([header[at], header[at + 1]]));
    at += 2 + topic;
    Some(u16::from_be_bytes([header[at], header[at + 1]]))
}

fn packet_name(first: u8) -> &'static str {
    packet_kind(first).unwrap_or("?")
}

fn packet_kind(first: u8) -> Option<&'static str> {
    Some(match first >> 4 {
        1 => "CONNECT",
        2 => "CONNACK",
        3 => "PUBLISH",
        4 => "PUBACK",
        5 => "PUBREC",
        6 => "PUBREL",
        7 => "PUBCOMP",
        8 => "SUBSCRIBE",
        9 => "SUBACK",
        10 => "UNSUBSCRIBE",
        11 => "UNSUBACK",
        14 => "DISCONNECT",
        _ => return None,
    })
}

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

/// A store as the runtime's: the records applied in order, keyed as docs/PERSISTENCE.md says.
#[derive(Default, Clone)]
struct Model {
    retained: BTreeMap<String, Record>,
    sessions: BTreeMap<String, Record>,
    queued: BTreeMap<(String, u64), Record>,
    awaiting: BTreeMap<(String, u16), Record>,
    outbound: BTreeMap<(String, u64), Record>,
    wills: BTreeMap<String, Record>,
}

impl Model {
    fn apply(&mut self, record: Record) {
        match &record {
            Record::Retained { topic, message: None } => {
                self.retained.remove(&topic.to_string());
            }
            Record::Retained { topic, .. } => {
                self.retained.insert(topic.to_string(), record);
            }
            Record::Session(s) => {
                self.sessions.insert(s.client_id.to_string(), record);
            }
            Record::SessionEnded { client_id } => {
                self.sessions.remove(&client_id.to_string());
                self.queued.retain(|(c, _), _| c != &client_id.to_string());
                self.awaiting.retain(|(c, _), _| c != &client_id.to_string());
                self.outbound.retain(|(c, _), _| c != &client_id.to_string());
                self.wills.remove(&client_id.to_string());
            }
            Record::Will(w) => {
                self.wills.insert(w.client_id.to_string(), record);
            }
            Record::WillRemoved { client_id } => {
                self.wills.remove(&client_id.to_string());
            }
            Record::Queued(d) => {
                self.queued.insert((d.client_id.to_string(), d.seq), record);
            }
            Record::Acknowledged { client_id, seq } => {
                self.queued.remove(&(client_id.to_string(), *seq));
                self.outbound.remove(&(client_id.to_string(), *seq));
            }
            Record::OutboundQos2 { client_id, seq, .. } => {
                self.outbound.insert((client_id.to_string(), *seq), record);
            }
            Record::AwaitingRelease { client_id, packet_id } => {
                self.awaiting.insert((client_id.to_string(), packet_id.get()), record);
            }
            Record::Released { client_id, packet_id } => {
                self.awaiting.remove(&(client_id.to_string(), packet_id.get()));
            }
            _ => {}
        }
    }

    fn restore(self, now: Instant) -> Engine {
        self.restore_into(engine(), now)
    }

    /// Restored as the store does at start: of each queue the first `head` messages, then
    /// where its tail ends.
    fn restore_head(mut self, now: Instant, head: usize) -> Engine {
        let mut kept = BTreeMap::new();
        let mut tails = Vec::new();
        let mut count: BTreeMap<String, usize> = BTreeMap::new();
        for ((client, seq), record) in core::mem::take(&mut self.queued) {
            let n = count.entry(client.clone()).or_default();
            *n += 1;
            if *n <= head {
                kept.insert((client, seq), record);
            } else {
                tails.retain(|(c, _): &(String, u64)| *c != client);
                tails.push((client, seq));
            }
        }
        self.queued = kept;
        let mut engine = self.restore_into(bounded_engine(head), now);
        for (client, last_seq) in tails {
            let tail = Record::QueueTail { client_id: client.into(), last_seq };
            engine.restore(now, tail).unwrap();
        }
        engine
    }

    fn restore_into(self, mut engine: Engine, now: Instant) -> Engine {
        let all = self.retained.into_values().chain(self.sessions.into_values());
        let all = all.chain(self.queued.into_values()).chain(self.awaiting.into_values());
        let all = all.chain(self.outbound.into_values()).chain(self.wills.into_values());
        for record in all {
            engine.restore(now, record).unwrap();
        }
        while engine.poll_action().is_some() {}
        engine
    }
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

fn pubrel(id: u16) -> BytesMut {
    bytes(&Packet::PubRel(PubResponse::new(PacketId::new(id).unwrap())))
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

fn v3(packet: &Packet) -> BytesMut {
    let mut buf = BytesMut::new();
    packet.encode(ProtocolVersion::V3_1_1, &mut buf).unwrap();
    buf
}

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

fn pubrec(id: u16) -> BytesMut {
    bytes(&Packet::PubRec(PubResponse::new(PacketId::new(id).unwrap())))
}

fn pubcomp(id: u16) -> BytesMut {
    bytes(&Packet::PubComp(PubResponse::new(PacketId::new(id).unwrap())))
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

fn connect_with_will(client_id: &str, expiry: u32, delay: u32) -> BytesMut {
    let mut connect = Connect::new(V5, client_id);
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(expiry);
    let mut properties = musqratt_engine::proto::mqtt::WillProperties::default();
    properties.will_delay_interval = Some(delay);
    connect.will = Some(musqratt_engine::proto::mqtt::LastWill {
        topic: format!("will/{client_id}").into(),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties,
    });
    bytes(&Packet::Connect(Box::new(connect)))
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

impl Model {
    /// The store's answer to a `LoadQueue`.
    fn load_queue(
        &self,
        client: &str,
        after: u64,
        max: usize,
    ) -> Vec<musqratt_engine::StoredDelivery> {
        self.queued
            .range((client.to_owned(), after + 1)..(client.to_owned(), u64::MAX))
            .filter_map(|(_, r)| match r {
                Record::Queued(d) => Some(d.clone()),
                _ => None,
            })
            .take(max)
            .collect()
    }
}

impl Run {
    /// Answers the `LoadQueue`s from what the store holds, as `musqratt_store::Steps` does
    /// after writing the step's records.
    fn answer_loads(&mut self, store: &Model) {
        while !self.loads.is_empty() {
            for (client, after, max) in core::mem::take(&mut self.loads) {
                let read = store.load_queue(&client, after, max);
                let _ = writeln!(self.out, "  (store gives {} of {client})", read.len());
                let complete = read.len() < max;
                self.engine.queue_loaded(&client, read, complete);
                self.drain();
            }
        }
    }
}

fn bounded_engine(max_ram: usize) -> Engine {
    let mut config = Config::default();
    config.persistence = true;
    config.max_ram_per_session = max_ram;
    Engine::new(config)
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
