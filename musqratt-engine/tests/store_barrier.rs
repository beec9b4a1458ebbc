//! Shards driven by hand, with persistence: a PUBACK or PUBREC goes out only once every shard
//! the message was forwarded to has answered a `StoreSync` sent after it, which it does in a
//! later step than the one that emitted the message's records (the runtime writes a step's
//! records before the step's packets and shard messages). A `kill -9` between the PUBACK and
//! the subscriber's shard writing its record would otherwise lose an acknowledged message
//! (ADR 17). Transcripts show, per input, each shard's packets, records and shard messages.

use core::fmt::Write as _;
use std::collections::{BTreeMap, VecDeque};

use musqratt_engine::bytes::{Bytes, BytesMut};
use musqratt_engine::proto::mqtt::{
    Connect, Packet, Publish, Subscribe, SubscribeProperties, SubscriptionOptions,
};
use musqratt_engine::proto::{PacketId, ProtocolVersion, QoS};
use musqratt_engine::{
    Action, Config, ConnectionId, Engine, Input, Instant, Record, ShardId, ShardMessage,
};

const V5: ProtocolVersion = ProtocolVersion::V5;
const NOW: Instant = Instant::ZERO;

fn bytes(packet: &Packet) -> BytesMut {
    let mut buf = BytesMut::new();
    packet.encode(V5, &mut buf).unwrap();
    buf
}

fn connect(client_id: &str, expiry: u32) -> BytesMut {
    let mut connect = Connect::new(V5, client_id);
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(expiry);
    bytes(&Packet::Connect(Box::new(connect)))
}

fn subscribe(filter: &str) -> BytesMut {
    let options = SubscriptionOptions::with_qos(QoS::ExactlyOnce);
    let properties = SubscribeProperties::default();
    let subscribe =
        Subscribe { packet_id: PacketId::MIN, filters: vec![(filter.into(), options)], properties };
    bytes(&Packet::Subscribe(subscribe))
}

fn publish(topic: &str, qos: QoS, id: u16) -> BytesMut {
    let mut publish = Publish::new(topic.into(), Bytes::from_static(b"m"));
    publish.qos = qos;
    publish.packet_id = (qos != QoS::AtMostOnce).then(|| PacketId::new(id).unwrap());
    bytes(&Packet::Publish(publish))
}

/// The first of `prefix0`, `prefix1`... that `shards` shards give to `shard`.
fn id_on(shard: u16, shards: u16, prefix: &str) -> String {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|id| musqratt_engine::owner_of(id, shards).0 == shard)
        .unwrap()
}

fn packet_name(first: u8) -> Option<&'static str> {
    Some(match first >> 4 {
        2 => "CONNACK",
        3 => "PUBLISH",
        4 => "PUBACK",
        5 => "PUBREC",
        7 => "PUBCOMP",
        9 => "SUBACK",
        _ => return None,
    })
}

/// A shard message's kind, without the message it carries.
fn mail_name(message: &ShardMessage) -> String {
    let debug = format!("{message:?}");
    let inner = debug.trim_start_matches("ShardMessage(");
    let end = inner.find([' ', '{']).unwrap_or(inner.len());
    let name = inner[..end].trim_end_matches(')');
    if name.contains('(') { format!("{name})") } else { name.to_owned() }
}

/// Shards, their FIFO links, and the transcript of what each step does.
struct Net {
    shards: Vec<Engine>,
    links: BTreeMap<(u16, u16), VecDeque<ShardMessage>>,
    out: String,
    /// Connection number → (shard, client name).
    conns: BTreeMap<u64, (u16, &'static str)>,
}

impl Net {
    fn new(count: u16, persistence: bool) -> Self {
        let shards = (0..count)
            .map(|index| {
                let mut config = Config::default();
                config.shard = ShardId(index);
                config.shard_count = count;
                config.persistence = persistence;
                Engine::new(config)
            })
            .collect();
        Self { shards, links: BTreeMap::new(), out: String::new(), conns: BTreeMap::new() }
    }

    /// Connects a client on the shard that owns it; returns its connection number.
    fn open(&mut self, name: &'static str, client_id: &str, expiry: u32) -> u64 {
        let count = u16::try_from(self.shards.len()).unwrap();
        let shard = musqratt_engine::owner_of(client_id, count).0;
        let conn = self.conns.len() as u64 + 1;
        self.conns.insert(conn, (shard, name));
        let engine = &mut self.shards[usize::from(shard)];
        engine.handle_input(NOW, Input::Accepted { conn: ConnectionId(conn) });
        self.data(conn, connect(client_id, expiry));
        conn
    }

    fn data(&mut self, conn: u64, bytes: BytesMut) {
        let (shard, name) = self.conns[&conn];
        let packet = packet_name(bytes[0]).unwrap_or("packet");
        let _ = writeln!(self.out, "> {name} {packet} on s{shard}");
        let input = Input::Data { conn: ConnectionId(conn), bytes };
        self.shards[usize::from(shard)].handle_input(NOW, input);
        self.drain(shard);
    }

    fn close(&mut self, conn: u64) {
        let (shard, name) = self.conns[&conn];
        let _ = writeln!(self.out, "> {name} network close");
        self.shards[usize::from(shard)]
            .handle_input(NOW, Input::Closed { conn: ConnectionId(conn) });
        self.drain(shard);
    }

    /// Delivers the mail waiting from `from` to `to`, one step each.
    fn deliver(&mut self, from: u16, to: u16) {
        let mail = self.links.remove(&(from, to)).unwrap_or_default();
        for message in mail {
            let _ = writeln!(self.out, "> s{to} takes {} from s{from}", mail_name(&message));
            let input = Input::FromShard { from: ShardId(from), message };
            self.shards[usize::from(to)].handle_input(NOW, input);
            self.drain(to);
        }
    }

    /// Delivers every link's mail until none is left.
    fn settle(&mut self) {
        while let Some(&(from, to)) = self.links.keys().next() {
            self.deliver(from, to);
        }
    }

    fn drain(&mut self, shard: u16) {
        while let Some(action) = self.shards[usize::from(shard)].poll_action() {
            match action {
                Action::Send { conn, bytes } => {
                    if let Some(packet) = packet_name(bytes[0]) {
                        let name = self.conns.get(&conn.0).map_or("?", |(_, name)| name);
                        let _ = writeln!(self.out, "  s{shard} {name} <- {packet}");
                    }
                }
                Action::ToShard { to, message } => {
                    let _ = writeln!(self.out, "  s{shard} -> s{} {}", to.0, mail_name(&message));
                    self.links.entry((shard, to.0)).or_default().push_back(message);
                }
                Action::Store(Record::Queued(d)) => {
                    let _ = writeln!(self.out, "  s{shard} store queued {}", d.client_id);
                }
                Action::Store(_) => {
                    let _ = writeln!(self.out, "  s{shard} store");
                }
                _ => {}
            }
        }
    }
}

/// A durable subscriber's session, offline, on shard 0; the publisher on shard 1. Each PUBACK
/// waits until shard 0 answers the `StoreSync` that follows the message, which it does after
/// the step that emitted the message's `Queued` record. A QoS 0 publish waits for nothing.
#[test]
fn puback_waits_until_the_subscribers_shard_stored_the_message() {
    let mut net = Net::new(2, true);
    let sub = net.open("sub", &id_on(0, 2, "sub"), 3600);
    net.data(sub, subscribe("t/#"));
    net.settle();
    net.close(sub);
    let publisher = net.open("pub", &id_on(1, 2, "pub"), 0);
    net.out.clear();

    net.data(publisher, publish("t/1", QoS::AtLeastOnce, 1));
    assert!(!net.out.contains("PUBACK"), "{}", net.out);
    // Two more in the same state: one QoS 1 (held behind the first, §4.6), one QoS 2.
    net.data(publisher, publish("t/2", QoS::AtLeastOnce, 2));
    net.data(publisher, publish("t/3", QoS::ExactlyOnce, 3));
    net.data(publisher, publish("t/4", QoS::AtMostOnce, 0));
    assert!(!net.out.contains("PUBACK") && !net.out.contains("PUBREC"), "{}", net.out);
    net.deliver(1, 0);
    assert!(!net.out.contains("PUBACK"), "not before shard 1 has the answer");
    net.deliver(0, 1);
    insta::assert_snapshot!(net.out);
}

/// Acknowledgements of one connection leave in the order of its PUBLISHes (§4.6): one that
/// waits for nothing (no subscriber anywhere) waits behind one that waits for another shard.
#[test]
fn a_local_acknowledgement_waits_behind_a_held_one() {
    let mut net = Net::new(2, true);
    let sub = net.open("sub", &id_on(0, 2, "sub"), 3600);
    net.data(sub, subscribe("t/#"));
    net.settle();
    let publisher = net.open("pub", &id_on(1, 2, "pub"), 0);
    net.out.clear();
    net.data(publisher, publish("t/1", QoS::AtLeastOnce, 1));
    net.data(publisher, publish("nobody/here", QoS::AtLeastOnce, 2));
    assert!(!net.out.contains("PUBACK"), "{}", net.out);
    net.settle();
    let acks: Vec<&str> = net.out.lines().filter(|l| l.contains("PUBACK")).collect();
    assert_eq!(acks, ["  s1 pub <- PUBACK", "  s1 pub <- PUBACK"], "{}", net.out);
    // A closed connection's held acknowledgements are forgotten: nothing is sent to it.
    net.data(publisher, publish("t/2", QoS::AtLeastOnce, 3));
    net.close(publisher);
    net.out.clear();
    net.settle();
    assert!(!net.out.contains("PUBACK"), "{}", net.out);
}

/// Without persistence nothing waits: the PUBACK is the publish's first action, and no sync
/// goes to the other shard.
#[test]
fn without_persistence_the_puback_goes_at_once() {
    let mut net = Net::new(2, false);
    let sub = net.open("sub", &id_on(0, 2, "sub"), 3600);
    net.data(sub, subscribe("t/#"));
    net.settle();
    let publisher = net.open("pub", &id_on(1, 2, "pub"), 0);
    net.out.clear();
    net.data(publisher, publish("t/1", QoS::AtLeastOnce, 1));
    assert_eq!(net.out, "> pub PUBLISH on s1\n  s1 pub <- PUBACK\n  s1 -> s0 Publish\n");
}

/// A shared group owned by a third shard: the publisher's shard (0) sends the message to the
/// owner (1), which relays it to the member's shard (2). The owner answers the publisher's
/// `StoreSync` only once shard 2 has answered the `RelaySync` that follows the relay.
#[test]
fn a_relayed_shared_message_is_stored_before_the_puback() {
    let group = (0..)
        .map(|i| format!("g{i}"))
        .find(|g| musqratt_engine::owner_of(&format!("{g}/t/#"), 3).0 == 1)
        .unwrap();
    let mut net = Net::new(3, true);
    let member = net.open("member", &id_on(2, 3, "member"), 3600);
    net.data(member, subscribe(&format!("$share/{group}/t/#")));
    net.settle();
    net.close(member);
    let publisher = net.open("pub", &id_on(0, 3, "pub"), 0);
    net.settle();
    net.out.clear();
    net.data(publisher, publish("t/1", QoS::AtLeastOnce, 1));
    // The owner takes the message and the sync; its answer waits for shard 2.
    net.deliver(0, 1);
    net.deliver(1, 0);
    assert!(!net.out.contains("PUBACK"), "{}", net.out);
    net.deliver(1, 2);
    net.deliver(2, 1);
    net.deliver(1, 0);
    insta::assert_snapshot!(net.out);
    let stored = net.out.find("s2 store queued").unwrap();
    assert!(stored < net.out.find("PUBACK").unwrap(), "{}", net.out);
}

/// Syncs are batched per input: many PUBLISHes read at once send one `StoreSync`, whose
/// answer releases all their PUBACKs, in order.
#[test]
fn one_sync_per_input() {
    let mut net = Net::new(2, true);
    let sub = net.open("sub", &id_on(0, 2, "sub"), 3600);
    net.data(sub, subscribe("t/#"));
    net.settle();
    net.close(sub);
    let publisher = net.open("pub", &id_on(1, 2, "pub"), 0);
    net.out.clear();
    let mut read = BytesMut::new();
    for id in 1..=3 {
        read.extend_from_slice(&publish("t/1", QoS::AtLeastOnce, id));
    }
    net.data(publisher, read);
    assert_eq!(net.out.matches("StoreSync(").count(), 1, "{}", net.out);
    net.settle();
    assert_eq!(net.out.matches("store queued").count(), 3, "{}", net.out);
    let after = &net.out[net.out.find("takes StoreSynced").unwrap()..];
    assert_eq!(after.matches("PUBACK").count(), 3, "{}", net.out);
}

/// A QoS 2 PUBLISH sent again (DUP) on a new connection, before the first copy's shard has
/// answered: its PUBREC waits for that answer too (exactly once, §4.3.3, and stored).
#[test]
fn a_resent_qos2_publish_waits_for_the_first_copy() {
    let mut net = Net::new(2, true);
    let sub = net.open("sub", &id_on(0, 2, "sub"), 3600);
    net.data(sub, subscribe("t/#"));
    net.settle();
    net.close(sub);
    let client_id = id_on(1, 2, "pub");
    let publisher = net.open("pub", &client_id, 3600);
    net.data(publisher, publish("t/1", QoS::ExactlyOnce, 9));
    net.close(publisher);
    let again = net.open("pub", &client_id, 3600);
    net.out.clear();
    let mut dup = publish("t/1", QoS::ExactlyOnce, 9);
    dup[0] |= 0x08;
    net.data(again, dup);
    assert!(!net.out.contains("PUBREC"), "{}", net.out);
    net.settle();
    assert_eq!(net.out.matches("PUBREC").count(), 1, "{}", net.out);
    assert_eq!(net.out.matches("store queued").count(), 1, "delivered once: {}", net.out);
}
