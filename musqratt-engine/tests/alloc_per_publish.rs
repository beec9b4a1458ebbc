//! Allocations per routed publish, counted by a global allocator (issue 3, "Speed of the core"):
//! a QoS 0 PUBLISH read from one connection and routed to one subscriber on the same engine.
//! Also checks the payload goes out without a copy: the subscriber's payload chunk points into
//! the buffer the publisher's bytes were read into.
//!
//! Its own test binary with one test, so nothing else allocates meanwhile.

use bytes::{Bytes, BytesMut};
use musqratt_engine::{Action, Config, ConnectionId, Engine, Input, Instant};

#[path = "common/counting.rs"]
mod counting;

fn drain(engine: &mut Engine) -> Vec<Action> {
    core::iter::from_fn(|| engine.poll_action()).collect()
}

fn connect(engine: &mut Engine, conn: ConnectionId, id: u8) {
    engine.handle_input(Instant::ZERO, Input::Accepted { conn });
    // MQTT 3.1.1 CONNECT, keep alive 0, client id of one byte.
    let bytes =
        BytesMut::from(&[0x10, 0x0d, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 0, 0, 1, id][..]);
    engine.handle_input(Instant::ZERO, Input::Data { conn, bytes });
}

#[test]
fn qos0_publish_to_one_subscriber() {
    let mut engine = Engine::new(Config::default());
    let (sub, publisher) = (ConnectionId(1), ConnectionId(2));
    connect(&mut engine, sub, b's');
    connect(&mut engine, publisher, b'p');
    // SUBSCRIBE packet id 1 to "t" at QoS 0.
    let bytes = BytesMut::from(&[0x82, 0x06, 0, 1, 0, 1, b't', 0][..]);
    engine.handle_input(Instant::ZERO, Input::Data { conn: sub, bytes });
    drain(&mut engine);

    // PUBLISH QoS 0 to "t" with a 64-byte payload; a fresh read buffer each time, as a runtime
    // hands over what it read.
    let mut frame = vec![0x30, 3 + 64, 0, 1, b't'];
    frame.extend_from_slice(&[0xAB; 64]);
    const ROUNDS: usize = 1000;
    let reads: Vec<BytesMut> = (0..ROUNDS + 10).map(|_| BytesMut::from(&frame[..])).collect();
    let mut reads = reads.into_iter();
    // Warm-up: queues and maps reach their steady size.
    for _ in 0..10 {
        engine.handle_input(
            Instant::ZERO,
            Input::Data { conn: publisher, bytes: reads.next().unwrap() },
        );
        drain(&mut engine);
    }
    let mut actions = Vec::with_capacity(16);
    let mut zero_copy = 0;
    let before = counting::allocations();
    for bytes in reads {
        let range = bytes.as_ptr_range();
        let (start, end) = (range.start as usize, range.end as usize);
        engine.handle_input(Instant::ZERO, Input::Data { conn: publisher, bytes });
        while let Some(action) = engine.poll_action() {
            actions.push(action);
        }
        for action in actions.drain(..) {
            if let Action::Send { conn, bytes } = action {
                assert_eq!(conn, sub);
                zero_copy += usize::from(points_into(&bytes, start, end) && bytes.len() == 64);
            }
        }
    }
    let per_publish = (counting::allocations() - before) as f64 / ROUNDS as f64;
    println!("allocations per QoS 0 publish routed to one subscriber: {per_publish:.2}");
    // Every payload went out as a slice of the publisher's read buffer: never copied.
    assert_eq!(zero_copy, ROUNDS, "payloads copied");
    // Measured 5 today (among them the Arc'd message, the per-recipient header buffer and the
    // read buffer turning into shared storage when the payload is sliced out of it): a
    // regression guard, not the "at most once", which is not reached yet.
    assert!(per_publish <= 6.0, "{per_publish} allocations per publish");
}

fn points_into(bytes: &Bytes, start: usize, end: usize) -> bool {
    let ptr = bytes.as_ptr() as usize;
    ptr >= start && ptr + bytes.len() <= end
}
