//! Publish routing through the whole engine (issue 3, "Speed of the core"): a QoS 0 PUBLISH
//! handed to [`Engine::handle_input`] as the bytes read, every action polled, and what was
//! sent reported written, to 1, 50 and 1000 subscribers, and to 1 subscriber with 100k other
//! filters in the trie. Allocations per publish are counted by
//! `tests/alloc_per_publish.rs`; the figures are in docs/BENCHMARKS.md.
#![allow(missing_docs)]

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use musqratt_engine::bytes::{Bytes, BytesMut};
use musqratt_engine::proto::mqtt::{Connect, Packet, Publish, Subscribe, SubscriptionOptions};
use musqratt_engine::proto::{PacketId, ProtocolVersion, QoS};
use musqratt_engine::{Action, Config, ConnectionId, Engine, Input, Instant};

const VERSION: ProtocolVersion = ProtocolVersion::V5;
const TOPIC: &str = "sensors/kitchen/temp";

fn encode(packet: &Packet) -> BytesMut {
    let mut buf = BytesMut::new();
    packet.encode(VERSION, &mut buf).expect("encodes");
    buf
}

fn connect(name: &str) -> BytesMut {
    encode(&Packet::Connect(Box::new(Connect::new(VERSION, name))))
}

fn subscribe(filters: impl IntoIterator<Item = String>) -> BytesMut {
    let options = SubscriptionOptions { qos: QoS::AtMostOnce, ..Default::default() };
    encode(&Packet::Subscribe(Subscribe {
        packet_id: PacketId::MIN,
        filters: filters.into_iter().map(|f| (f.as_str().into(), options)).collect(),
        properties: Default::default(),
    }))
}

/// Polls every action and reports what was sent as written; returns the deliveries.
fn drain(engine: &mut Engine, now: Instant, written: &mut Vec<(ConnectionId, usize)>) -> usize {
    written.clear();
    let mut payloads = 0;
    while let Some(action) = engine.poll_action() {
        if let Action::Send { conn, bytes } = action {
            match written.last_mut() {
                Some((c, n)) if *c == conn => *n += bytes.len(),
                _ => written.push((conn, bytes.len())),
            }
            payloads += usize::from(bytes.len() == 64);
        }
    }
    for (conn, bytes) in written.drain(..) {
        engine.handle_input(now, Input::Written { conn, bytes });
    }
    payloads
}

/// An engine with `subscribers` connections subscribed to `sensors/+/temp` and a publisher
/// (connection 0); `other_filters` more filters that do not match, on 100 other connections.
fn engine(subscribers: u64, other_filters: u64) -> Engine {
    let mut config = Config::default();
    config.max_unwritten_bytes = usize::MAX / 2;
    let mut engine = Engine::new(config);
    let now = Instant::ZERO;
    let open = |engine: &mut Engine, conn: u64, name: String, then: Option<BytesMut>| {
        let conn = ConnectionId(conn);
        engine.handle_input(now, Input::Accepted { conn });
        engine.handle_input(now, Input::Data { conn, bytes: connect(&name) });
        if let Some(bytes) = then {
            engine.handle_input(now, Input::Data { conn, bytes });
        }
        drain(engine, now, &mut Vec::new());
    };
    open(&mut engine, 0, "publisher".into(), None);
    for s in 1..=subscribers {
        let filters = [String::from("sensors/+/temp")];
        open(&mut engine, s, format!("sub{s}"), Some(subscribe(filters)));
    }
    const HOLDERS: u64 = 100;
    if other_filters > 0 {
        let per = other_filters / HOLDERS;
        for h in 0..HOLDERS {
            // Siblings of the published topic's levels, so the trie walk meets wide nodes.
            let filters = (0..per).map(|i| format!("sensors/room{}/temp{}", h * per + i, i % 7));
            open(&mut engine, 1_000_000 + h, format!("other{h}"), Some(subscribe(filters)));
        }
    }
    engine
}

fn routing(c: &mut Criterion) {
    let payload = Bytes::from(vec![0x5a; 64]);
    let publish = encode(&Packet::Publish(Publish::new(TOPIC.into(), payload)));
    let mut group = c.benchmark_group("engine_routing_qos0");
    for (name, subscribers, others) in [
        ("1_subscriber", 1, 0),
        ("50_subscribers", 50, 0),
        ("1000_subscribers", 1000, 0),
        ("1_subscriber_100k_filters", 1, 100_000),
    ] {
        let mut engine = engine(subscribers, others);
        let mut written = Vec::with_capacity(1024);
        let now = Instant::ZERO;
        // Checks the setup: every subscriber gets the payload.
        engine.handle_input(now, Input::Data { conn: ConnectionId(0), bytes: publish.clone() });
        assert_eq!(drain(&mut engine, now, &mut written), subscribers as usize);
        group.throughput(Throughput::Elements(subscribers));
        group.bench_function(name, |b| {
            b.iter_batched(
                || publish.clone(),
                |bytes| {
                    engine.handle_input(now, Input::Data { conn: ConnectionId(0), bytes });
                    drain(&mut engine, now, &mut written)
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, routing);
criterion_main!(benches);
