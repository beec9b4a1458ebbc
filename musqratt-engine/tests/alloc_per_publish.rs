//! The cost of routing a QoS 0 PUBLISH to one subscriber through the whole engine
//! (`handle_input` with the bytes read, `poll_action` until empty, `Written` for what was sent):
//! allocations per publish after warm-up, counted by a global allocator, and no copy of the
//! payload (issue 3, "Speed of the core").
//!
//! This file is its own test binary with a single test, so no other test allocates meanwhile.

use musqratt_engine::bytes::{Bytes, BytesMut};
use musqratt_engine::proto::mqtt::{
    Connect, Packet, Publish, Subscribe, SubscribeProperties, SubscriptionOptions,
};
use musqratt_engine::proto::{PacketId, ProtocolVersion, QoS};
use musqratt_engine::{Action, Config, ConnectionId, Engine, Input, Instant};

mod common;

/// One measured setup.
#[derive(Clone, Copy)]
struct Case {
    subscribers: u64,
    /// Filters that do not match, on 100 other connections.
    other_filters: u64,
    /// PUBLISH packets per buffer handed to the engine (one `Input::Data`): 1 models a runtime
    /// that reads one packet at a time; a busy publisher's 8 KiB reads hold about 80.
    per_read: usize,
    /// The publisher's protocol version (the subscribers use 5.0).
    publisher: ProtocolVersion,
    /// Each subscriber subscribes with its own Subscription Identifier, so every delivery's
    /// header differs.
    subscription_ids: bool,
}

const ONE: Case = Case {
    subscribers: 1,
    other_filters: 0,
    per_read: 1,
    publisher: ProtocolVersion::V5,
    subscription_ids: false,
};

fn encode(version: ProtocolVersion, packet: &Packet) -> BytesMut {
    let mut buf = BytesMut::new();
    packet.encode(version, &mut buf).expect("encodes");
    buf
}

fn connect(version: ProtocolVersion, name: &str) -> BytesMut {
    encode(version, &Packet::Connect(Box::new(Connect::new(version, name))))
}

/// Hands every action to `sink`, then reports every byte sent as written (`written` is the
/// caller's, so that the test's own bookkeeping does not allocate while counting).
fn drain(
    engine: &mut Engine,
    now: Instant,
    written: &mut Vec<(ConnectionId, usize)>,
    mut sink: impl FnMut(&Action),
) {
    written.clear();
    while let Some(action) = engine.poll_action() {
        sink(&action);
        if let Action::Send { conn, bytes } = &action {
            match written.iter_mut().find(|(c, _)| c == conn) {
                Some((_, n)) => *n += bytes.len(),
                None => written.push((*conn, bytes.len())),
            }
        }
    }
    for (conn, bytes) in written.drain(..) {
        engine.handle_input(now, Input::Written { conn, bytes });
    }
}

fn subscribe(filters: impl IntoIterator<Item = String>, id: Option<u32>) -> BytesMut {
    let options = SubscriptionOptions { qos: QoS::AtMostOnce, ..Default::default() };
    let mut properties = SubscribeProperties::default();
    properties.subscription_identifier = id;
    encode(
        ProtocolVersion::V5,
        &Packet::Subscribe(Subscribe {
            packet_id: PacketId::MIN,
            filters: filters.into_iter().map(|f| (f.as_str().into(), options)).collect(),
            properties,
        }),
    )
}

const PUBLISHER: ConnectionId = ConnectionId(0);

/// The same setup as `benches/routing.rs`: `subscribers` connections (1..) subscribed to
/// `sensors/+/temp`, a publisher (0), and `other_filters` filters that do not match on 100
/// other connections.
fn engine(case: Case) -> Engine {
    let mut config = Config::default();
    config.max_unwritten_bytes = usize::MAX / 2;
    let mut engine = Engine::new(config);
    let now = Instant::ZERO;
    let open = |engine: &mut Engine, conn: u64, name: String, then: Option<BytesMut>| {
        let version = if conn == 0 { case.publisher } else { ProtocolVersion::V5 };
        let conn = ConnectionId(conn);
        engine.handle_input(now, Input::Accepted { conn });
        engine.handle_input(now, Input::Data { conn, bytes: connect(version, &name) });
        if let Some(bytes) = then {
            engine.handle_input(now, Input::Data { conn, bytes });
        }
        drain(engine, now, &mut Vec::new(), |_| {});
    };
    open(&mut engine, 0, "publisher".into(), None);
    for s in 1..=case.subscribers {
        let filters = [String::from("sensors/+/temp")];
        let id = case.subscription_ids.then(|| u32::try_from(s).expect("small"));
        open(&mut engine, s, format!("sub{s}"), Some(subscribe(filters, id)));
    }
    const HOLDERS: u64 = 100;
    if case.other_filters > 0 {
        let per = case.other_filters / HOLDERS;
        for h in 0..HOLDERS {
            let filters = (0..per).map(|i| format!("sensors/room{}/temp{}", h * per + i, i % 7));
            open(&mut engine, 1_000_000 + h, format!("other{h}"), Some(subscribe(filters, None)));
        }
    }
    engine
}

/// Allocations per publish after warm-up, checking that every subscriber got the payload as a
/// view into the buffer it was read into (no copy).
fn allocations_per_publish(case: Case, measured_reads: usize) -> f64 {
    let mut engine = engine(case);
    let now = Instant::ZERO;
    let warm_up = measured_reads / 10;
    let payload = Bytes::from(vec![0x5a; 64]);
    let publish = Packet::Publish(Publish::new("sensors/kitchen/temp".into(), payload.clone()));
    // The bytes "read from the socket", `per_read` publishes per buffer, prepared before
    // counting.
    let inputs: Vec<BytesMut> = (0..warm_up + measured_reads)
        .map(|_| {
            let mut read = BytesMut::new();
            for _ in 0..case.per_read {
                read.extend_from_slice(&encode(case.publisher, &publish));
            }
            read
        })
        .collect();
    let mut measured_allocations = 0;
    let subscribers = usize::try_from(case.subscribers).expect("small");
    let mut written = Vec::with_capacity(2 * subscribers + 8);
    for (index, bytes) in inputs.into_iter().enumerate() {
        let read = bytes.as_ptr() as usize..bytes.as_ptr() as usize + bytes.len();
        // Looked at without allocating (cloning a `Bytes` may allocate).
        let (mut got_payload, mut shared) = (0, 0);
        let before = common::allocations();
        engine.handle_input(now, Input::Data { conn: PUBLISHER, bytes });
        drain(&mut engine, now, &mut written, |action| {
            if let Action::Send { conn, bytes } = action
                && *conn != PUBLISHER
                && bytes[..] == payload[..]
            {
                got_payload += 1;
                shared += usize::from(read.contains(&(bytes.as_ptr() as usize)));
            }
        });
        let allocations = common::allocations() - before;
        if index >= warm_up {
            measured_allocations += allocations;
        }
        let deliveries = subscribers * case.per_read;
        assert_eq!(got_payload, deliveries, "every subscriber got the payload");
        // No copy: the payload sent out is a view into the buffer the publish was read into.
        assert_eq!(shared, deliveries, "the payload was copied");
    }
    let per_publish = measured_allocations as f64 / (measured_reads * case.per_read) as f64;
    let Case { subscribers, other_filters, per_read, publisher, subscription_ids } = case;
    println!(
        "QoS 0 publish to {subscribers} subscriber(s), {other_filters} other filters, \
         {per_read} per read, publisher {publisher:?}, subscription ids {subscription_ids}: \
         {per_publish:.3} allocations per publish ({measured_reads} reads after {warm_up})"
    );
    per_publish
}

#[test]
fn routing_a_qos0_publish() {
    // The case: one publish per read (the worst case for the read buffer), its header
    // forwarded as received.
    let one = allocations_per_publish(ONE, 10_000);
    let fifty = allocations_per_publish(Case { subscribers: 50, ..ONE }, 1_000);
    let thousand = allocations_per_publish(Case { subscribers: 1000, ..ONE }, 100);
    let big_trie = allocations_per_publish(Case { other_filters: 100_000, ..ONE }, 1_000);
    // A busy publisher: 80 publishes (101 B each) in one 8 KiB read share its promotion.
    let batched = allocations_per_publish(Case { per_read: 80, ..ONE }, 1_000);
    // A header that differs from the one received but is the same for every delivery (a 3.1.1
    // publisher, 5.0 subscribers): copied once, then shared.
    let v3 = Case { publisher: ProtocolVersion::V3_1_1, ..ONE };
    let other_version = allocations_per_publish(v3, 10_000);
    let other_version_50 = allocations_per_publish(Case { subscribers: 50, ..v3 }, 1_000);
    // A header of its own for every delivery (each subscriber's Subscription Identifier): one
    // copy per delivery.
    let own_ids = Case { subscribers: 50, subscription_ids: true, ..ONE };
    let own_headers = allocations_per_publish(own_ids, 1_000);
    // What the engine does today (see docs/BENCHMARKS.md): bounds equal to the measurements,
    // so that a regression shows.
    assert!(one <= 1.0, "{one} allocations per publish");
    assert!(fifty <= 1.0, "{fifty} allocations per publish to 50 subscribers");
    assert!(thousand <= 1.0, "{thousand} allocations per publish to 1000 subscribers");
    assert!(big_trie <= 1.0, "{big_trie} allocations per publish with 100k filters");
    assert!(batched <= 1.0 / 80.0 + 1e-9, "{batched} allocations per publish, 80 per read");
    assert!(other_version <= 1.0, "{other_version} allocations per publish, 3.1.1 publisher");
    assert!(other_version_50 <= 1.0, "{other_version_50} allocations, 3.1.1 publisher, 50 subs");
    assert!(own_headers <= 51.0, "{own_headers} allocations per publish, 50 own headers");
}
