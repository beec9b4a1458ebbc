//! Two shards driven by hand: a SUBACK goes out only once the other shard routes the new
//! subscription, so a publish that any shard handles after the client saw its SUBACK reaches
//! the subscriber (`route_sync`). The simulator cannot show this: it delivers shard messages
//! before the next scripted step, which hides the race a real runtime has.

use std::collections::VecDeque;

use musqratt_engine::bytes::BytesMut;
use musqratt_engine::{
    Action, Config, ConnectionId, Engine, Input, Instant, ShardId, ShardMessage,
};

const NOW: Instant = Instant::ZERO;

/// The owner shard of a client id out of 2.
fn owner(client_id: &str) -> u16 {
    musqratt_engine::owner_of(client_id, 2).0
}

fn id_on(shard: u16, prefix: &str) -> String {
    (0..).map(|i| format!("{prefix}{i}")).find(|id| owner(id) == shard).unwrap()
}

fn shard(index: u16) -> Engine {
    let mut config = Config::default();
    config.shard = ShardId(index);
    config.shard_count = 2;
    Engine::new(config)
}

/// An MQTT 3.1.1 CONNECT, clean session, keep alive 0.
fn connect(client_id: &str) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 0];
    body.extend(u16::try_from(client_id.len()).unwrap().to_be_bytes());
    body.extend(client_id.as_bytes());
    let mut packet = vec![0x10, u8::try_from(body.len()).unwrap()];
    packet.extend(body);
    packet
}

const SUBSCRIBE_T: [u8; 8] = [0x82, 0x06, 0, 1, 0, 1, b't', 0]; // packet id 1, "t", QoS 0
const PINGREQ: [u8; 2] = [0xc0, 0x00];
const PUBLISH_T: [u8; 6] = [0x30, 0x04, 0, 1, b't', b'!']; // QoS 0, "t", payload "!"

fn data(engine: &mut Engine, conn: u64, bytes: &[u8]) {
    engine
        .handle_input(NOW, Input::Data { conn: ConnectionId(conn), bytes: BytesMut::from(bytes) });
}

/// Takes the engine's actions: bytes sent to clients (the first byte of each chunk: a packet's
/// type, or a payload's first byte) and
/// messages for the other shard, which stay in `link` until delivered.
fn drain(engine: &mut Engine, link: &mut VecDeque<ShardMessage>) -> Vec<(u64, u8)> {
    let mut sent = Vec::new();
    while let Some(action) = engine.poll_action() {
        match action {
            Action::Send { conn, bytes } => sent.push((conn.0, bytes[0])),
            Action::ToShard { message, .. } => link.push_back(message),
            _ => {}
        }
    }
    sent
}

fn deliver(link: &mut VecDeque<ShardMessage>, from: u16, to: &mut Engine) {
    for message in link.drain(..) {
        to.handle_input(NOW, Input::FromShard { from: ShardId(from), message });
    }
}

/// Two shards and their links (`to1`: shard 0 → 1, `to0`: shard 1 → 0): the subscriber
/// (connection 1) on shard 0, the publisher (connection 2) on shard 1, each on the shard that
/// owns its client id, both connected.
fn subscriber_and_publisher() -> (Engine, Engine, VecDeque<ShardMessage>, VecDeque<ShardMessage>) {
    let (mut s0, mut s1) = (shard(0), shard(1));
    let (mut to1, mut to0) = (VecDeque::new(), VecDeque::new());
    s0.handle_input(NOW, Input::Accepted { conn: ConnectionId(1) });
    data(&mut s0, 1, &connect(&id_on(0, "sub")));
    s1.handle_input(NOW, Input::Accepted { conn: ConnectionId(2) });
    data(&mut s1, 2, &connect(&id_on(1, "pub")));
    assert_eq!(drain(&mut s0, &mut to1), [(1, 0x20)]); // CONNACK
    assert_eq!(drain(&mut s1, &mut to0), [(2, 0x20)]);
    (s0, s1, to1, to0)
}

#[test]
fn suback_waits_until_every_shard_routes_the_subscription() {
    let (mut s0, mut s1, mut to1, mut to0) = subscriber_and_publisher();

    // SUBSCRIBE with a PINGREQ in the same read: neither is answered before shard 1 has the
    // route, so the client cannot yet have been told it is subscribed.
    data(&mut s0, 1, &[&SUBSCRIBE_T[..], &PINGREQ[..]].concat());
    assert_eq!(drain(&mut s0, &mut to1), []);
    assert_eq!(to1.len(), 2, "the route, then the sync");

    // Shard 1 applies the route and acknowledges; the SUBACK, then the PINGRESP, go out.
    deliver(&mut to1, 0, &mut s1);
    assert_eq!(drain(&mut s1, &mut to0), []);
    deliver(&mut to0, 1, &mut s0);
    assert_eq!(drain(&mut s0, &mut to1), [(1, 0x90), (1, 0xd0)]);

    // A publish handled by shard 1 from now on reaches the subscriber.
    data(&mut s1, 2, &PUBLISH_T);
    drain(&mut s1, &mut to0);
    deliver(&mut to0, 1, &mut s0);
    // The PUBLISH header, then the payload as a chunk of its own.
    assert_eq!(drain(&mut s0, &mut to1), [(1, 0x30), (1, b'!')]);

    // A second subscription to the same filter announces nothing new, but it may bring
    // retained messages, so it syncs again: the SUBACK waits for shard 1's acknowledgement.
    data(&mut s0, 1, &SUBSCRIBE_T);
    assert_eq!(drain(&mut s0, &mut to1), []);
    assert_eq!(to1.len(), 1, "the sync alone");
    deliver(&mut to1, 0, &mut s1);
    drain(&mut s1, &mut to0);
    deliver(&mut to0, 1, &mut s0);
    assert_eq!(drain(&mut s0, &mut to1), [(1, 0x90)]);
}

/// MQTT-3.3.1-6 (3.1.1): a retained message stored, and acknowledged to its
/// publisher, on one shard reaches a client that subscribes on another shard afterwards, even
/// when its replica is still on the link between the shards.
#[test]
fn a_retained_message_stored_on_another_shard_follows_the_suback() {
    let (mut s0, mut s1, mut to1, mut to0) = subscriber_and_publisher();

    // QoS 1, retained, packet id 7, "r", payload "!": PUBACK, and the replica for shard 0.
    data(&mut s1, 2, &[0x33, 0x06, 0, 1, b'r', 0, 7, b'!']);
    assert_eq!(drain(&mut s1, &mut to0), [(2, 0x40)]);
    assert!(!to0.is_empty(), "the retained message's replica, not yet delivered");

    // The client subscribes on shard 0 before the replica arrives there.
    data(&mut s0, 1, &[0x82, 0x06, 0, 1, 0, 1, b'r', 0]);
    assert_eq!(drain(&mut s0, &mut to1), []);
    deliver(&mut to1, 0, &mut s1);
    drain(&mut s1, &mut to0);
    // The replica, then the acknowledgement: SUBACK, then the retained PUBLISH (retain flag).
    deliver(&mut to0, 1, &mut s0);
    assert_eq!(drain(&mut s0, &mut to1), [(1, 0x90), (1, 0x31), (1, b'!')]);
}

#[test]
fn one_shard_answers_at_once() {
    let mut engine = Engine::new(Config::default());
    let mut link = VecDeque::new();
    engine.handle_input(NOW, Input::Accepted { conn: ConnectionId(1) });
    data(&mut engine, 1, &connect("solo"));
    data(&mut engine, 1, &[&SUBSCRIBE_T[..], &PINGREQ[..]].concat());
    assert_eq!(drain(&mut engine, &mut link), [(1, 0x20), (1, 0x90), (1, 0xd0)]);
    assert!(link.is_empty());
}
