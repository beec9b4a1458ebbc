//! The engine's counters say what a client did (issue 17, "the counts match what a test did"):
//! N clients connected, M messages published, the bytes, the drops, the refusals, and the
//! in-broker latency of a message that waited in a queue, on the engine's virtual clock.

use musqratt_engine::bytes::{Bytes, BytesMut};
use musqratt_engine::proto::mqtt::{
    Connect, Packet, Publish, Subscribe, SubscribeProperties, SubscriptionOptions,
};
use musqratt_engine::proto::{PacketId, ProtocolVersion, QoS};
use musqratt_engine::{Action, Config, ConnectionId, Engine, Histogram, Input, Instant};

fn encode(packet: &Packet) -> BytesMut {
    let mut buf = BytesMut::new();
    packet.encode(ProtocolVersion::V3_1_1, &mut buf).unwrap();
    buf
}

struct Harness {
    engine: Engine,
    /// Bytes the engine asked to send, per connection, since the last `take`.
    sent: Vec<(ConnectionId, Bytes)>,
    /// Every byte the engine asked to send.
    total_sent: u64,
}

impl Harness {
    fn new() -> Self {
        Self { engine: Engine::new(Config::default()), sent: Vec::new(), total_sent: 0 }
    }

    fn feed(&mut self, now: u64, input: Input) {
        self.engine.handle_input(Instant::from_micros(now), input);
        while let Some(action) = self.engine.poll_action() {
            if let Action::Send { conn, bytes } = action {
                self.total_sent += bytes.len() as u64;
                self.engine.handle_input(
                    Instant::from_micros(now),
                    Input::Written { conn, bytes: bytes.len() },
                );
                self.sent.push((conn, bytes));
            }
        }
    }

    fn data(&mut self, now: u64, conn: u64, packet: &Packet) -> u64 {
        let bytes = encode(packet);
        let len = bytes.len() as u64;
        self.feed(now, Input::Data { conn: ConnectionId(conn), bytes });
        len
    }

    fn connect(&mut self, now: u64, conn: u64, id: &str, clean: bool) -> u64 {
        self.feed(now, Input::Accepted { conn: ConnectionId(conn) });
        let mut connect = Connect::new(ProtocolVersion::V3_1_1, id);
        connect.protocol = ProtocolVersion::V3_1_1;
        connect.clean_start = clean;
        self.data(now, conn, &Packet::Connect(Box::new(connect)))
    }

    fn subscribe(&mut self, conn: u64, filter: &str, qos: QoS) -> u64 {
        let subscribe = Subscribe {
            packet_id: PacketId::new(1).unwrap(),
            filters: vec![(filter.into(), SubscriptionOptions { qos, ..Default::default() })],
            properties: SubscribeProperties::default(),
        };
        self.data(0, conn, &Packet::Subscribe(subscribe))
    }

    fn publish(&mut self, now: u64, conn: u64, topic: &str, qos: QoS, id: u16) -> u64 {
        let mut publish = Publish::new(topic.into(), Bytes::from_static(b"hello"));
        publish.qos = qos;
        publish.packet_id = (qos != QoS::AtMostOnce).then(|| PacketId::new(id).unwrap());
        self.data(now, conn, &Packet::Publish(publish))
    }

    /// PUBLISH headers the connection was sent since the last call (payloads here never
    /// start with a byte 0x3_, so a payload send is not counted).
    fn publishes_to(&mut self, conn: u64) -> usize {
        let sent = core::mem::take(&mut self.sent);
        sent.iter().filter(|(c, b)| c.0 == conn && b[0] >> 4 == 3).count()
    }
}

#[test]
fn counts_match_what_the_clients_did() {
    let mut h = Harness::new();
    let mut read = 0;
    // N = 5 clients: one subscriber, four publishers.
    read += h.connect(0, 1, "sub", true);
    read += h.subscribe(1, "t/#", QoS::AtLeastOnce);
    for conn in 2..=5 {
        read += h.connect(0, conn, &format!("pub{conn}"), true);
    }
    h.sent.clear();
    // M = 8 messages: each publisher one at QoS 0 and one at QoS 1.
    for conn in 2..=5 {
        read += h.publish(100, conn, "t/a", QoS::AtMostOnce, 0);
        read += h.publish(100, conn, "t/b", QoS::AtLeastOnce, 7);
    }
    assert_eq!(h.publishes_to(1), 8);
    let m = h.engine.metrics();
    assert_eq!((m.clients_connected, m.clients_total, m.clients_maximum), (5, 5, 5));
    assert_eq!(m.messages_received, [4, 4, 0]);
    assert_eq!(m.payload_bytes_received, [20, 20, 0]);
    assert_eq!(m.total_received(), 8);
    // Delivered at the granted QoS: min(publish, subscription) (§3.8.4).
    assert_eq!(m.messages_sent, [4, 4, 0]);
    assert_eq!(m.payload_bytes_sent, [20, 20, 0]);
    assert_eq!(m.bytes_received, read);
    assert_eq!(m.bytes_sent, h.total_sent);
    assert_eq!(m.subscriptions, 1);
    // Delivered in the step that read them: under a microsecond of engine time.
    assert_eq!(m.latency[0].count, 4);
    assert_eq!(m.latency[1].count, 4);
    assert_eq!(m.latency[0].quantile_micros(500), Some(1));

    // A retained message sent on subscribe is as old as it is; the broker did not delay it.
    let mut retained = Publish::new("t/r".into(), Bytes::from_static(b"kept"));
    retained.retain = true;
    h.data(100, 2, &Packet::Publish(retained));
    h.connect(9_000, 6, "late", true);
    h.subscribe(6, "t/r", QoS::AtMostOnce);
    assert_eq!(h.publishes_to(6), 1);
    let m = h.engine.metrics();
    assert_eq!((m.latency[0].count, m.messages_sent[0], m.retained), (5, 6, 1));
    assert_eq!((m.clients_connected, m.clients_maximum), (6, 6));

    // Two publishers leave; the maximum stays.
    h.feed(200, Input::Closed { conn: ConnectionId(2) });
    h.feed(200, Input::Closed { conn: ConnectionId(3) });
    let m = h.engine.metrics();
    assert_eq!((m.clients_connected, m.clients_total, m.clients_maximum), (4, 4, 6));
}

#[test]
fn latency_includes_the_time_a_message_waited_in_the_queue() {
    let mut h = Harness::new();
    h.connect(0, 1, "sub", false);
    h.subscribe(1, "t", QoS::AtLeastOnce);
    h.feed(0, Input::Closed { conn: ConnectionId(1) });
    h.connect(0, 2, "pub", true);
    h.publish(1_000, 2, "t", QoS::AtLeastOnce, 1);
    h.publish(1_000, 2, "t", QoS::AtMostOnce, 0); // not kept for a disconnected session
    let m = h.engine.metrics();
    assert_eq!((m.clients_connected, m.clients_total, m.queued_messages), (1, 2, 1));
    assert_eq!(m.latency[1].count, 0);
    // The subscriber comes back 4 ms later and gets the message: 4,000 µs in the broker.
    h.connect(5_000, 3, "sub", false);
    assert_eq!(h.publishes_to(3), 1);
    let m = h.engine.metrics();
    assert_eq!(m.latency[1].count, 1);
    assert_eq!(m.latency[1].sum_micros, 4_000);
    assert_eq!(m.latency[1].buckets[Histogram::bucket_of(4_000)], 1);
    assert_eq!(m.latency[1].quantile_micros(990), Some(4_096));
    assert_eq!((m.clients_connected, m.clients_maximum, m.queued_messages), (2, 2, 0));
}

#[test]
fn takeover_keeps_the_connected_count() {
    let mut h = Harness::new();
    h.connect(0, 1, "a", false);
    h.connect(0, 2, "a", false); // takes the session over; connection 1 is closed
    h.connect(0, 3, "a", true); // again, with a clean start
    let m = h.engine.metrics();
    assert_eq!((m.clients_connected, m.clients_total, m.clients_maximum), (1, 1, 1));
    h.connect(0, 4, "b", true);
    assert_eq!(h.engine.metrics().clients_maximum, 2);
}

/// MQTT-4.7.2-1: `$SYS` is the broker's; a client's PUBLISH there is dropped and counted,
/// the broker's own reaches a `$SYS/#` subscriber and is retained.
#[test]
fn only_the_broker_publishes_into_sys() {
    let mut h = Harness::new();
    h.connect(0, 1, "sub", true);
    h.subscribe(1, "$SYS/#", QoS::AtMostOnce);
    h.connect(0, 2, "pub", true);
    h.sent.clear();
    h.publish(0, 2, "$SYS/broker/uptime", QoS::AtMostOnce, 0);
    h.publish(0, 2, "$SYS", QoS::AtLeastOnce, 1);
    assert_eq!(h.publishes_to(1), 0);
    let m = h.engine.metrics();
    assert_eq!((m.dropped.not_authorized, m.total_received(), m.retained), (2, 2, 0));
    h.engine.publish_broker_message(
        Instant::from_micros(10),
        "$SYS/broker/uptime".into(),
        Bytes::from_static(b"up 1 s"),
    );
    h.feed(10, Input::Written { conn: ConnectionId(1), bytes: 0 });
    assert_eq!(h.publishes_to(1), 1);
    let m = h.engine.metrics();
    assert_eq!((m.retained, m.total_received(), m.messages_sent[0]), (1, 2, 1));
    assert_eq!(m.latency[0].count, 0, "the broker's own messages are not timed");
}

#[test]
fn refused_connects_are_counted_by_reason_code() {
    let mut h = Harness::new();
    h.feed(0, Input::Accepted { conn: ConnectionId(1) });
    // MQTT 5.0 CONNECT with Receive Maximum 0, a Protocol Error (§3.1.2.11.3).
    let bytes =
        BytesMut::from(&b"\x10\x11\x00\x04MQTT\x05\x02\x00\x3c\x03\x21\x00\x00\x00\x01z"[..]);
    h.feed(0, Input::Data { conn: ConnectionId(1), bytes });
    let m = h.engine.metrics();
    assert_eq!(m.connect_refusals.iter().collect::<Vec<_>>(), vec![(&0x82, &1)]);
    assert_eq!((m.clients_connected, m.clients_maximum), (0, 0));
    // Protocol level 9: CONNACK 0x01 in 3.1.1 form (MQTT-3.1.2-2), counted as 0x84.
    h.feed(0, Input::Accepted { conn: ConnectionId(2) });
    let bytes = BytesMut::from(&b"\x10\x0d\x00\x04MQTT\x09\x02\x00\x3c\x00\x01a"[..]);
    h.feed(0, Input::Data { conn: ConnectionId(2), bytes });
    let m = h.engine.metrics();
    assert_eq!(m.connect_refusals.iter().collect::<Vec<_>>(), vec![(&0x82, &1), (&0x84, &1)]);
}
