//! What the persistence tests share: a scripted engine whose transcript shows packets and
//! records ([`Run`]), and a model of the store ([`Model`]) that applies records as the
//! runtime's store does and answers `LoadQueue`s.
#![allow(dead_code, unreachable_pub)]

pub use core::fmt::Write as _;
pub use std::collections::BTreeMap;

pub use musqratt_engine::bytes::{Bytes, BytesMut};
pub use musqratt_engine::proto::mqtt::{
    Connect, Disconnect, Packet, PubResponse, Publish, Subscribe, SubscribeProperties,
    SubscriptionOptions,
};
pub use musqratt_engine::proto::{PacketId, ProtocolVersion, QoS};
pub use musqratt_engine::{Action, Config, ConnectionId, Engine, Input, Instant, Record};

pub const V5: ProtocolVersion = ProtocolVersion::V5;

pub fn engine() -> Engine {
    let mut config = Config::default();
    config.persistence = true;
    Engine::new(config)
}

pub fn bytes(packet: &Packet) -> BytesMut {
    let mut buf = BytesMut::new();
    packet.encode(V5, &mut buf).unwrap();
    buf
}

pub fn connect(client_id: &str, clean: bool, expiry: u32) -> BytesMut {
    let mut connect = Connect::new(V5, client_id);
    connect.clean_start = clean;
    connect.properties.session_expiry_interval = Some(expiry);
    bytes(&Packet::Connect(Box::new(connect)))
}

pub fn subscribe(filter: &str, qos: QoS, id: Option<u32>) -> BytesMut {
    let mut options = SubscriptionOptions::with_qos(qos);
    options.retain_as_published = true;
    let mut properties = SubscribeProperties::default();
    properties.subscription_identifier = id;
    let subscribe =
        Subscribe { packet_id: PacketId::MIN, filters: vec![(filter.into(), options)], properties };
    bytes(&Packet::Subscribe(subscribe))
}

pub fn publish(topic: &str, payload: &'static [u8], qos: QoS, retain: bool, id: u16) -> BytesMut {
    let mut publish = Publish::new(topic.into(), Bytes::from_static(payload));
    publish.qos = qos;
    publish.retain = retain;
    publish.packet_id = (qos != QoS::AtMostOnce).then(|| PacketId::new(id).unwrap());
    bytes(&Packet::Publish(publish))
}

pub fn puback(id: u16) -> BytesMut {
    bytes(&Packet::PubAck(PubResponse::new(PacketId::new(id).unwrap())))
}

/// A record as one line.
pub fn show(record: &Record) -> String {
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
pub struct Run {
    pub engine: Engine,
    pub conns: BTreeMap<&'static str, u64>,
    pub next: u64,
    pub out: String,
    pub records: Vec<Record>,
    pub now: Instant,
    /// Packet ids of the QoS 1 PUBLISHes each client received and has not acknowledged, in
    /// the order received.
    pub unacked: BTreeMap<&'static str, std::collections::VecDeque<u16>>,
    /// `Action::LoadQueue`s not answered yet: (client, after, max).
    pub loads: Vec<(String, u64, usize)>,
    /// Payloads of the PUBLISHes each client received, in order.
    pub payloads: BTreeMap<&'static str, std::collections::VecDeque<String>>,
}

impl Run {
    pub fn new(engine: Engine) -> Self {
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

    pub fn open(&mut self, name: &'static str, bytes: BytesMut) {
        self.next += 1;
        self.conns.insert(name, self.next);
        self.unacked.remove(name); // a new connection: what was in flight is sent again
        let conn = ConnectionId(self.next);
        self.engine.handle_input(self.now, Input::Accepted { conn });
        self.data(name, bytes);
    }

    pub fn data(&mut self, name: &'static str, bytes: BytesMut) {
        let conn = ConnectionId(self.conns[name]);
        let _ = writeln!(self.out, "> {name} {}", packet_name(bytes[0]));
        self.engine.handle_input(self.now, Input::Data { conn, bytes });
        self.drain();
    }

    pub fn close(&mut self, name: &'static str) {
        let conn = ConnectionId(self.conns[name]);
        let _ = writeln!(self.out, "> {name} network close");
        self.engine.handle_input(self.now, Input::Closed { conn });
        self.drain();
    }

    pub fn drain(&mut self) {
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
pub fn publish_payload_len(header: &[u8]) -> usize {
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
pub fn publish_id(header: &[u8]) -> Option<u16> {
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

pub fn packet_name(first: u8) -> &'static str {
    packet_kind(first).unwrap_or("?")
}

pub fn packet_kind(first: u8) -> Option<&'static str> {
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

/// A store as the runtime's: the records applied in order, keyed as docs/PERSISTENCE.md says.
#[derive(Default, Clone)]
pub struct Model {
    pub retained: BTreeMap<String, Record>,
    pub sessions: BTreeMap<String, Record>,
    pub queued: BTreeMap<(String, u64), Record>,
    pub awaiting: BTreeMap<(String, u16), Record>,
    pub outbound: BTreeMap<(String, u64), Record>,
    pub wills: BTreeMap<String, Record>,
}

impl Model {
    pub fn apply(&mut self, record: Record) {
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

    pub fn restore(self, now: Instant) -> Engine {
        self.restore_into(engine(), now)
    }

    /// Restored as the store does at start: of each queue the first `head` messages, then
    /// where its tail ends.
    pub fn restore_head(mut self, now: Instant, head: usize) -> Engine {
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

    pub fn restore_into(self, mut engine: Engine, now: Instant) -> Engine {
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

pub fn pubrel(id: u16) -> BytesMut {
    bytes(&Packet::PubRel(PubResponse::new(PacketId::new(id).unwrap())))
}

pub fn v3(packet: &Packet) -> BytesMut {
    let mut buf = BytesMut::new();
    packet.encode(ProtocolVersion::V3_1_1, &mut buf).unwrap();
    buf
}

pub fn pubrec(id: u16) -> BytesMut {
    bytes(&Packet::PubRec(PubResponse::new(PacketId::new(id).unwrap())))
}

pub fn pubcomp(id: u16) -> BytesMut {
    bytes(&Packet::PubComp(PubResponse::new(PacketId::new(id).unwrap())))
}

pub fn connect_with_will(client_id: &str, expiry: u32, delay: u32) -> BytesMut {
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

pub fn bounded_engine(max_ram: usize) -> Engine {
    let mut config = Config::default();
    config.persistence = true;
    config.max_ram_per_session = max_ram;
    Engine::new(config)
}

impl Model {
    /// The store's answer to a `LoadQueue`.
    pub fn load_queue(
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
    pub fn answer_loads(&mut self, store: &Model) {
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
