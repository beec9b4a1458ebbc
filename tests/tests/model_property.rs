//! Property: the engine against a small reference model (issue 3, "Tests").
//!
//! Random sequences of operations (persistent subscriber sessions with an expiry, SUBSCRIBE at
//! QoS 0-2, PUBLISH at QoS 0-2 including a QoS 2 resend with DUP before PUBREL and PUBRELs
//! sent later or after a reconnect, network drops, reconnects and takeovers, acknowledgements
//! withheld by subscribers, time advances) are run through the simulator on 1 and on 3 shards.
//! The clients react to what they receive (acknowledge, or keep the acknowledgement back), and
//! a model of the sessions checks:
//!
//! - every message acknowledged to its publisher (PUBACK, PUBREC) at QoS ≥ 1 reaches, and is
//!   acknowledged by, every persistent subscriber that had a matching subscription of QoS ≥ 1
//!   when it was published and whose session has not expired (nor been cleaned) since
//!   (MQTT-4.3.2, MQTT-4.3.3, §4.1; the queue bounds are set out of reach);
//! - no message is delivered twice except as a DUP resend of an unacknowledged delivery with the
//!   same packet id (so QoS 2 is never duplicated, MQTT-4.3.3, and a publisher's own DUP resend
//!   is not routed again);
//! - first deliveries keep each publisher's order per topic and QoS (§4.6);
//! - a reconnect finds its session (session present) exactly when the model says it still
//!   exists, and the broker never closes a well-behaved client.
//!
//! `QUICKCHECK_TESTS` and `QUICKCHECK_GENERATOR_SIZE` scale the search (default 1000 cases of
//! up to 100 operations, each run on 1 and on 3 shards).

use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use musqratt_engine::Config;
use musqratt_engine::proto::mqtt::{
    Connect, ConnectProperties, Packet, PubResponse, Publish, Subscribe, SubscriptionOptions,
    Unsubscribe,
};
use musqratt_engine::proto::{PacketId, ProtocolVersion, QoS};
use musqratt_tests::sim::Simulator;
use quickcheck::{Arbitrary, Gen, QuickCheck, TestResult};

const PUBLISHERS: [&str; 2] = ["p0", "p1"];
const SUBSCRIBERS: [&str; 3] = ["s0", "s1", "s2"];
/// One filter per subscriber: overlapping subscriptions of one client may legitimately be
/// delivered as several copies in 5.0 (§3.3.4), which would blur the duplicate check.
const FILTERS: [&str; 3] = ["t/a", "t/+", "#"];
const TOPICS: [&str; 2] = ["t/a", "t/b"];
const EXPIRIES: [u32; 4] = [0, 5, 30, 600];

#[derive(Debug, Clone)]
enum Op {
    /// The subscriber connects (clean start 0 unless `clean`), taking over its connection if it
    /// has one.
    Connect {
        sub: usize,
        expiry: usize,
        clean: bool,
        receive_max: u8,
    },
    Subscribe {
        sub: usize,
        qos: u8,
    },
    Unsubscribe {
        sub: usize,
    },
    /// The publisher (reconnecting first if it must) publishes; at QoS 2 it may resend the
    /// PUBLISH with DUP before PUBREL, and may keep the PUBREL for later.
    Publish {
        publisher: usize,
        topic: usize,
        qos: u8,
        resend: bool,
        release_later: bool,
    },
    /// The publisher sends the PUBRELs it kept back.
    Release {
        publisher: usize,
    },
    /// The network connection of a subscriber (0..3) or publisher (3..5) drops.
    Close {
        client: usize,
    },
    /// The subscriber stops acknowledging, or acknowledges everything it kept back and goes on.
    Withhold {
        sub: usize,
        withhold: bool,
    },
    Advance {
        seconds: u8,
    },
}

impl Arbitrary for Op {
    fn arbitrary(g: &mut Gen) -> Self {
        let sub = usize::arbitrary(g) % SUBSCRIBERS.len();
        let publisher = usize::arbitrary(g) % PUBLISHERS.len();
        match u8::arbitrary(g) % 16 {
            0 | 1 => Op::Connect {
                sub,
                expiry: usize::arbitrary(g) % EXPIRIES.len(),
                clean: u8::arbitrary(g) % 8 == 0,
                receive_max: u8::arbitrary(g) % 3 * 2,
            },
            2 | 3 => Op::Subscribe { sub, qos: u8::arbitrary(g) % 3 },
            4 => Op::Unsubscribe { sub },
            5..=9 => Op::Publish {
                publisher,
                topic: usize::arbitrary(g) % TOPICS.len(),
                qos: u8::arbitrary(g) % 3,
                resend: bool::arbitrary(g),
                release_later: u8::arbitrary(g) % 3 == 0,
            },
            10 => Op::Release { publisher },
            11 | 12 => {
                Op::Close { client: usize::arbitrary(g) % (SUBSCRIBERS.len() + PUBLISHERS.len()) }
            }
            13 => Op::Withhold { sub, withhold: bool::arbitrary(g) },
            _ => Op::Advance { seconds: u8::arbitrary(g) % 40 },
        }
    }
}

/// The model of a subscriber's session on the broker.
#[derive(Debug, Clone)]
struct Session {
    expiry: u32,
    /// The QoS of its one subscription, if subscribed.
    qos: Option<u8>,
    /// When its network connection ended (seconds of virtual time), if it has none.
    disconnected_at: Option<u64>,
}

/// What a subscriber saw of one message.
#[derive(Debug, Clone)]
struct Seen {
    id: Option<u16>,
    /// PUBACK or PUBREC sent (or QoS 0).
    acked: bool,
}

#[derive(Debug, Default)]
struct Subscriber {
    session: Option<Session>,
    connected: bool,
    withhold: bool,
    /// Acknowledgements kept back on the current connection, with the message each settles.
    withheld: Vec<(Packet, Option<String>)>,
    /// Every message this client ever received, by payload.
    seen: BTreeMap<String, Seen>,
    /// The last sequence number first received, per (publisher, topic, publish QoS).
    last_first: BTreeMap<(usize, usize, u8), u32>,
    expect_present: Option<bool>,
    next_id: u16,
}

#[derive(Debug, Default)]
struct Publisher {
    connected: bool,
    ever_connected: bool,
    next_id: u16,
    seq: u32,
    /// QoS 2 publications PUBRECed and not released yet.
    unreleased: Vec<Publish>,
    /// Packet ids acknowledged (PUBACK / PUBREC) since the last look.
    acked: BTreeSet<u16>,
}

struct Harness {
    sim: Simulator,
    now: u64,
    subs: Vec<Subscriber>,
    pubs: Vec<Publisher>,
    /// (subscriber, payload): must be received and acknowledged by the end.
    owed: BTreeSet<(usize, String)>,
    delivered: usize,
}

fn matches(sub: usize, topic: usize) -> bool {
    match FILTERS[sub] {
        "#" | "t/+" => true,
        filter => filter == TOPICS[topic],
    }
}

fn id(value: u16) -> PacketId {
    PacketId::new(value).expect("non-zero packet id")
}

fn next_id(counter: &mut u16) -> u16 {
    *counter = if *counter >= 60_000 { 1 } else { *counter + 1 };
    *counter
}

fn connect_packet(name: &str, clean: bool, expiry: u32, receive_max: u8) -> Packet {
    let mut properties = ConnectProperties::default();
    properties.session_expiry_interval = Some(expiry);
    if receive_max > 0 {
        properties.receive_maximum = Some(u16::from(receive_max));
    }
    let mut connect = Connect::new(ProtocolVersion::V5, name);
    connect.clean_start = clean;
    connect.properties = properties;
    Packet::Connect(Box::new(connect))
}

/// `key=value` of a transcript line (values without spaces, quotes removed).
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.split_whitespace()
        .find_map(|t| t.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
        .map(|v| v.trim_matches('"'))
}

impl Harness {
    fn new(shards: u16) -> Self {
        let mut config = Config::default();
        config.max_queued_messages = 1_000_000;
        config.max_queued_bytes = usize::MAX / 2;
        config.max_unwritten_bytes = usize::MAX / 2;
        Self {
            sim: Simulator::new(&config, shards),
            now: 0,
            subs: (0..SUBSCRIBERS.len()).map(|_| Subscriber::default()).collect(),
            pubs: (0..PUBLISHERS.len()).map(|_| Publisher::default()).collect(),
            owed: BTreeSet::new(),
            delivered: 0,
        }
    }

    /// Ends the sessions whose expiry has passed, with what they were owed.
    fn expire(&mut self) {
        for (index, sub) in self.subs.iter_mut().enumerate() {
            if let Some(session) = &sub.session
                && let Some(at) = session.disconnected_at
                && self.now >= at + u64::from(session.expiry)
            {
                sub.session = None;
                self.owed.retain(|(s, _)| *s != index);
            }
        }
    }

    /// Handles everything the clients received, answering it, until nothing moves.
    fn pump(&mut self) -> Result<(), String> {
        loop {
            let lines = self.sim.take_lines();
            if lines.is_empty() {
                return Ok(());
            }
            for line in lines {
                if line.client.is_none() {
                    if line.text.contains("MessageDropped") {
                        return Err(format!("a bound was hit: {}", line.text));
                    }
                    continue;
                }
                self.line(&line.text)?;
            }
        }
    }

    fn line(&mut self, text: &str) -> Result<(), String> {
        let mut words = text.split_whitespace();
        let name = words.next().unwrap_or_default();
        if words.next() != Some("<-") {
            return Err(format!("unexpected: {text}"));
        }
        let kind = words.next().unwrap_or_default();
        let packet_id = field(text, "id").and_then(|v| v.parse::<u16>().ok());
        if let Some(p) = PUBLISHERS.iter().position(|n| *n == name) {
            return match kind {
                "PUBACK" | "PUBREC" => {
                    if !text.contains("(0x00)") && !text.contains("(0x10)") {
                        return Err(format!("refused: {text}"));
                    }
                    self.pubs[p].acked.insert(packet_id.unwrap_or_default());
                    Ok(())
                }
                "PUBCOMP" if text.contains("(0x00)") => Ok(()),
                "CONNACK" if text.contains("(0x00)") => {
                    let present = field(text, "session_present") == Some("true");
                    if present == self.pubs[p].ever_connected {
                        Ok(())
                    } else {
                        Err(format!("publisher session_present={present}: {text}"))
                    }
                }
                _ => Err(format!("unexpected: {text}")),
            };
        }
        let s = SUBSCRIBERS
            .iter()
            .position(|n| *n == name)
            .ok_or_else(|| format!("unknown client: {text}"))?;
        match kind {
            "CONNACK" => {
                let present = field(text, "session_present") == Some("true");
                let expected = self.subs[s].expect_present.take();
                if !text.contains("(0x00)") || expected != Some(present) {
                    return Err(format!("expected session_present={expected:?}: {text}"));
                }
                Ok(())
            }
            "SUBACK" | "UNSUBACK" => Ok(()),
            "PUBLISH" => self.publish_received(s, text, packet_id),
            "PUBREL" => {
                let id = packet_id.ok_or("PUBREL without id")?;
                self.respond(s, Packet::PubComp(PubResponse::new(self::id(id))), None);
                Ok(())
            }
            _ => Err(format!("unexpected: {text}")),
        }
    }

    fn publish_received(
        &mut self,
        s: usize,
        text: &str,
        packet_id: Option<u16>,
    ) -> Result<(), String> {
        let payload = field(text, "payload").ok_or("no payload")?.to_owned();
        let qos: u8 = field(text, "qos").and_then(|v| v.parse().ok()).ok_or("no qos")?;
        let dup = field(text, "dup") == Some("true");
        let topic = TOPICS
            .iter()
            .position(|t| Some(*t) == field(text, "topic"))
            .ok_or_else(|| format!("topic: {text}"))?;
        // Payload "publisher:seq:qos".
        let parts: Vec<u32> = payload.split(':').filter_map(|v| v.parse().ok()).collect();
        let [publisher, seq, publish_qos] = parts[..] else {
            return Err(format!("payload: {text}"));
        };
        let (publisher, publish_qos) = (publisher as usize, publish_qos as u8);
        if qos > publish_qos || !matches(s, topic) {
            return Err(format!("{}: wrong QoS or topic: {text}", SUBSCRIBERS[s]));
        }
        let sub = &mut self.subs[s];
        match sub.seen.get(&payload) {
            Some(seen) => {
                if qos == 0 || !dup || seen.id != packet_id || seen.acked {
                    return Err(format!(
                        "{}: delivered twice ({seen:?} before): {text}",
                        SUBSCRIBERS[s]
                    ));
                }
            }
            None => {
                let key = (publisher, topic, publish_qos);
                if let Some(last) = sub.last_first.get(&key)
                    && *last >= seq
                {
                    return Err(format!(
                        "{}: out of order (after seq {last}): {text}",
                        SUBSCRIBERS[s]
                    ));
                }
                sub.last_first.insert(key, seq);
                sub.seen.insert(payload.clone(), Seen { id: packet_id, acked: qos == 0 });
                self.delivered += 1;
            }
        }
        let Some(packet_id) = packet_id else { return Ok(()) };
        let ack = if qos == 1 {
            Packet::PubAck(PubResponse::new(id(packet_id)))
        } else {
            Packet::PubRec(PubResponse::new(id(packet_id)))
        };
        self.respond(s, ack, Some(payload));
        Ok(())
    }

    fn respond(&mut self, s: usize, packet: Packet, settles: Option<String>) {
        if self.subs[s].withhold {
            self.subs[s].withheld.push((packet, settles));
        } else {
            self.ack(s, &packet, settles);
        }
    }

    fn ack(&mut self, s: usize, packet: &Packet, settles: Option<String>) {
        if let Some(payload) = settles
            && let Some(seen) = self.subs[s].seen.get_mut(&payload)
        {
            seen.acked = true;
        }
        self.sim.send(SUBSCRIBERS[s], packet);
    }

    fn release_withheld(&mut self, s: usize) -> Result<(), String> {
        self.subs[s].withhold = false;
        let withheld = core::mem::take(&mut self.subs[s].withheld);
        for (packet, settles) in withheld {
            self.ack(s, &packet, settles);
            self.pump()?;
        }
        Ok(())
    }

    fn connect_subscriber(
        &mut self,
        s: usize,
        expiry: u32,
        clean: bool,
        receive_max: u8,
    ) -> Result<(), String> {
        self.expire();
        let sub = &mut self.subs[s];
        sub.withheld.clear();
        // A takeover ends a session with expiry 0: it lasts as long as the connection that the
        // takeover closes (MQTT-3.1.2-6 of 3.1.1, §3.1.2.11.2), so it is not resumed.
        let ends_with_takeover =
            sub.connected && sub.session.as_ref().is_some_and(|s| s.expiry == 0);
        if clean || ends_with_takeover {
            sub.session = None;
            self.owed.retain(|(o, _)| *o != s);
        }
        let sub = &mut self.subs[s];
        sub.expect_present = Some(sub.session.is_some());
        match &mut sub.session {
            Some(session) => {
                session.expiry = expiry;
                session.disconnected_at = None;
            }
            None => sub.session = Some(Session { expiry, qos: None, disconnected_at: None }),
        }
        sub.connected = true;
        let shard = s % self.sim.shard_count();
        self.sim.open(SUBSCRIBERS[s], shard, ProtocolVersion::V5, u32::MAX);
        self.sim.send(SUBSCRIBERS[s], &connect_packet(SUBSCRIBERS[s], clean, expiry, receive_max));
        self.pump()
    }

    fn connect_publisher(&mut self, p: usize) -> Result<(), String> {
        let name = PUBLISHERS[p];
        let shard = (p + 1) % self.sim.shard_count();
        self.sim.open(name, shard, ProtocolVersion::V5, u32::MAX);
        self.sim.send(name, &connect_packet(name, false, u32::MAX, 0));
        self.pump()?;
        let publisher = &mut self.pubs[p];
        publisher.connected = true;
        publisher.ever_connected = true;
        // MQTT-4.4.0-1: resend what was not completed; a PUBLISH already PUBRECed may be sent
        // again with DUP (the broker must not route it again), then its PUBREL.
        let unreleased = publisher.unreleased.clone();
        for publish in &unreleased {
            if publish.payload.len() % 2 == 0 {
                let mut again = publish.clone();
                again.dup = true;
                self.sim.send(name, &Packet::Publish(again));
                self.pump()?;
            }
        }
        self.release(p)
    }

    fn release(&mut self, p: usize) -> Result<(), String> {
        if !self.pubs[p].connected {
            return Ok(());
        }
        for publish in core::mem::take(&mut self.pubs[p].unreleased) {
            let packet_id = publish.packet_id.expect("QoS 2 has an id");
            self.sim.send(PUBLISHERS[p], &Packet::PubRel(PubResponse::new(packet_id)));
            self.pump()?;
        }
        Ok(())
    }

    fn publish(
        &mut self,
        p: usize,
        topic: usize,
        qos: u8,
        resend: bool,
        release_later: bool,
    ) -> Result<(), String> {
        if !self.pubs[p].connected {
            self.connect_publisher(p)?;
        }
        let publisher = &mut self.pubs[p];
        publisher.seq += 1;
        let payload = format!("{p}:{}:{qos}", publisher.seq);
        let mut publish = Publish::new(TOPICS[topic].into(), Bytes::from(payload.clone()));
        publish.qos = QoS::from_bits(qos).expect("QoS 0-2");
        let packet_id = next_id(&mut publisher.next_id);
        if qos > 0 {
            publish.packet_id = Some(id(packet_id));
        }
        let owed: Vec<usize> = (0..SUBSCRIBERS.len())
            .filter(|s| {
                let session = &self.subs[*s].session;
                qos > 0
                    && matches(*s, topic)
                    && session.as_ref().is_some_and(|s| s.qos.is_some_and(|q| q > 0))
            })
            .collect();
        self.sim.send(PUBLISHERS[p], &Packet::Publish(publish.clone()));
        self.pump()?;
        if qos == 0 {
            return Ok(());
        }
        if !self.pubs[p].acked.remove(&packet_id) {
            return Err(format!("{} not acknowledged: {payload}", PUBLISHERS[p]));
        }
        for s in owed {
            self.owed.insert((s, payload.clone()));
        }
        if qos == 2 {
            if resend {
                let mut again = publish.clone();
                again.dup = true;
                self.sim.send(PUBLISHERS[p], &Packet::Publish(again));
                self.pump()?;
                self.pubs[p].acked.remove(&packet_id);
            }
            self.pubs[p].unreleased.push(publish);
            if !release_later {
                self.release(p)?;
            }
        }
        Ok(())
    }

    fn subscribe(&mut self, s: usize, qos: u8) -> Result<(), String> {
        if !self.subs[s].connected {
            return Ok(());
        }
        let sub = &mut self.subs[s];
        let packet_id = next_id(&mut sub.next_id);
        if let Some(session) = &mut sub.session {
            session.qos = Some(qos);
        }
        let options = SubscriptionOptions {
            qos: QoS::from_bits(qos).expect("QoS 0-2"),
            ..Default::default()
        };
        let subscribe = Subscribe {
            packet_id: id(packet_id),
            filters: vec![(FILTERS[s].into(), options)],
            properties: Default::default(),
        };
        self.sim.send(SUBSCRIBERS[s], &Packet::Subscribe(subscribe));
        self.pump()
    }

    fn unsubscribe(&mut self, s: usize) -> Result<(), String> {
        if !self.subs[s].connected {
            return Ok(());
        }
        let sub = &mut self.subs[s];
        let packet_id = next_id(&mut sub.next_id);
        if let Some(session) = &mut sub.session {
            session.qos = None;
        }
        // §3.10.4: buffered messages not yet sent MAY still be delivered; those started MUST.
        let seen = &sub.seen;
        self.owed.retain(|(o, payload)| *o != s || seen.contains_key(payload));
        let unsubscribe = Unsubscribe {
            packet_id: id(packet_id),
            filters: vec![FILTERS[s].into()],
            properties: Default::default(),
        };
        self.sim.send(SUBSCRIBERS[s], &Packet::Unsubscribe(unsubscribe));
        self.pump()
    }

    fn close(&mut self, client: usize) -> Result<(), String> {
        if let Some(p) = client.checked_sub(SUBSCRIBERS.len()) {
            self.pubs[p].connected = false;
            self.sim.close(PUBLISHERS[p]);
        } else {
            let sub = &mut self.subs[client];
            if !sub.connected {
                return Ok(());
            }
            sub.connected = false;
            sub.withheld.clear();
            if let Some(session) = &mut sub.session {
                session.disconnected_at = Some(self.now);
            }
            self.sim.close(SUBSCRIBERS[client]);
            self.expire();
        }
        self.pump()
    }

    fn advance(&mut self, seconds: u8) -> Result<(), String> {
        self.sim.advance(Duration::from_secs(u64::from(seconds)));
        self.now += u64::from(seconds);
        self.pump()?;
        self.expire();
        Ok(())
    }

    fn run(&mut self, op: &Op) -> Result<(), String> {
        match *op {
            Op::Connect { sub, expiry, clean, receive_max } => {
                self.connect_subscriber(sub, EXPIRIES[expiry], clean, receive_max)
            }
            Op::Subscribe { sub, qos } => self.subscribe(sub, qos),
            Op::Unsubscribe { sub } => self.unsubscribe(sub),
            Op::Publish { publisher, topic, qos, resend, release_later } => {
                self.publish(publisher, topic, qos, resend, release_later)
            }
            Op::Release { publisher } => self.release(publisher),
            Op::Close { client } => self.close(client),
            Op::Withhold { sub, withhold: true } => {
                self.subs[sub].withhold = true;
                Ok(())
            }
            Op::Withhold { sub, withhold: false } => self.release_withheld(sub),
            Op::Advance { seconds } => self.advance(seconds),
        }
    }

    /// Publishers release everything; every subscriber whose session lives reconnects and
    /// acknowledges everything; then nothing may be owed.
    fn finish(&mut self) -> Result<(), String> {
        for p in 0..PUBLISHERS.len() {
            if !self.pubs[p].unreleased.is_empty() {
                if self.pubs[p].connected {
                    self.release(p)?;
                } else {
                    self.connect_publisher(p)?;
                }
            }
        }
        self.expire();
        for s in 0..SUBSCRIBERS.len() {
            if let Some(session) = &self.subs[s].session {
                let expiry = session.expiry;
                self.subs[s].withhold = false;
                self.connect_subscriber(s, expiry, false, 0)?;
            }
        }
        if self.owed.is_empty() {
            Ok(())
        } else {
            let missing: Vec<String> = self
                .owed
                .iter()
                .filter(|(s, payload)| !self.subs[*s].seen.get(payload).is_some_and(|x| x.acked))
                .map(|(s, payload)| format!("{} {payload}", SUBSCRIBERS[*s]))
                .collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!("acknowledged to the publisher, never delivered: {missing:?}"))
            }
        }
    }
}

/// Runs the operations on `shards` shards; the number of first deliveries, or what broke.
fn check(shards: u16, ops: &[Op]) -> Result<usize, String> {
    let mut harness = Harness::new(shards);
    for s in 0..SUBSCRIBERS.len() {
        harness.connect_subscriber(s, EXPIRIES[3], false, 0)?;
        harness.subscribe(s, 1)?;
    }
    for (index, op) in ops.iter().enumerate() {
        harness.run(op).map_err(|e| format!("op {index} {op:?}: {e}"))?;
    }
    harness.finish().map_err(|e| format!("at the end: {e}"))?;
    Ok(harness.delivered)
}

fn model_holds(ops: Vec<Op>) -> TestResult {
    for shards in [1, 3] {
        if let Err(e) = check(shards, &ops) {
            return TestResult::error(format!("{shards} shard(s): {e}\nops: {ops:#?}"));
        }
    }
    TestResult::passed()
}

#[test]
fn engine_keeps_the_model() {
    // 1000 cases by default (a few seconds in debug); QUICKCHECK_TESTS overrides.
    let tests = std::env::var("QUICKCHECK_TESTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    QuickCheck::new().tests(tests).quickcheck(model_holds as fn(Vec<Op>) -> TestResult);
}

/// A fixed sequence that goes through every operation, so that the property is known to see
/// deliveries, redeliveries and expiries whatever quickcheck draws.
#[test]
fn a_known_sequence_keeps_the_model() {
    let ops = vec![
        Op::Subscribe { sub: 0, qos: 2 },
        Op::Withhold { sub: 0, withhold: true },
        Op::Publish { publisher: 0, topic: 0, qos: 2, resend: true, release_later: true },
        Op::Publish { publisher: 1, topic: 0, qos: 1, resend: false, release_later: false },
        Op::Close { client: 0 },
        Op::Close { client: 3 },
        Op::Publish { publisher: 1, topic: 0, qos: 2, resend: true, release_later: false },
        Op::Advance { seconds: 20 },
        Op::Connect { sub: 0, expiry: 1, clean: false, receive_max: 2 },
        Op::Withhold { sub: 0, withhold: false },
        Op::Close { client: 1 },
        Op::Connect { sub: 1, expiry: 1, clean: false, receive_max: 0 },
        Op::Close { client: 1 },
        Op::Publish { publisher: 0, topic: 1, qos: 1, resend: false, release_later: false },
        Op::Advance { seconds: 6 },
        Op::Publish { publisher: 0, topic: 1, qos: 2, resend: false, release_later: false },
    ];
    for shards in [1, 3] {
        let delivered = check(shards, &ops).unwrap_or_else(|e| panic!("{shards} shard(s): {e}"));
        assert!(delivered >= 6, "{delivered} deliveries");
    }
}
